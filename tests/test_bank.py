"""FrameBank: files with any per-channel QP vector assembled from pictures coded once."""

from __future__ import annotations

import pytest
import torch

import vcfc
from tests.conftest import feature_like
from vcfc.bank import FrameBank
from vcfc.errors import InputError
from vcfc.spec import CodingSpec

SPEC = CodingSpec("x265", layout="frames", preset="ultrafast")


def test_uniform_assembly_is_the_encode_byte_for_byte():
    x = feature_like(10, 20, 28, seed=1)
    bank = FrameBank(x, SPEC)
    for qp in (27, 37):
        assert bank.assemble(qp) == vcfc.encode(x, qp=qp, spec=SPEC)
    assert bank.encodes == 2  # one encoder run per QP, all channels at once


def test_mixed_qps_decode_like_a_direct_encode_and_cost_what_they_weigh():
    x = torch.from_numpy(feature_like(12, 16, 24, seed=2))
    bank = FrameBank(x, SPEC)
    qps = [30 + 4 * (c % 3) for c in range(12)]
    data = bank.assemble(qps)
    direct = vcfc.encode(x, channel_qps=qps, spec=SPEC)
    assert vcfc.inspect(data)["channel_qps"] == {"x": qps}
    assert torch.equal(vcfc.decode(data), vcfc.decode(direct))
    assert torch.equal(bank.reconstruct(qps), vcfc.decode(data))  # no decoder run needed
    assert bank.size(qps) == len(data)
    assert abs(len(data) - len(direct)) <= 8  # the same pictures; only the container may differ


def test_pictures_are_coded_once_and_only_when_missing():
    x = feature_like(6, 16, 16, seed=3)
    bank = FrameBank(x, SPEC)
    bank.ensure({32: [("x", 0), ("x", 1)]})
    assert bank.encoded_pictures == 2
    bank.assemble([32, 32, 40, 40, 40, 40])  # channels 0-1 banked, 2-5 coded now at 40
    assert bank.encoded_pictures == 6 and bank.has(40, [("x", c) for c in range(2, 6)])
    bank.assemble([32, 32, 40, 40, 40, 40])
    assert bank.encoded_pictures == 6


def test_rate_falls_with_qp_and_errors_are_clear():
    x = feature_like(4, 16, 16, seed=4)
    bank = FrameBank(x, SPEC)
    sizes = [bank.size(q) for q in (22, 32, 42)]
    assert sizes[0] > sizes[1] > sizes[2]
    with pytest.raises(InputError, match="layout frames"):
        FrameBank(x, CodingSpec("x265", layout="mosaic"))
    with pytest.raises(InputError, match="out of range"):
        bank.assemble(70)
