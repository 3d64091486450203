"""The skip tool: a channel not coded (QP SKIP), restored by the decoder to its fill code; the
file says which channels and with what; rdo+skip leaves out channels the task does not use."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import vcfc
from vcfc import container
from vcfc.bank import FrameBank
from vcfc.coding import SKIP, fill_code, quantize_features
from vcfc.errors import FormatError
from vcfc.sensitivity.channel_sweep import ChannelSweep
from vcfc.sensitivity.distances import get_distance
from vcfc.sensitivity.options import RdoSettings, SweepOptions
from vcfc.sensitivity.rdo import rdo_qps, settings_for
from vcfc.spec import CodingSpec

SPEC = CodingSpec("x265", layout="frames", preset="ultrafast").checked()
QPS = [32, SKIP, 37, SKIP, 27, 32, SKIP, 42]


@pytest.fixture
def feats() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.random((8, 16, 24), dtype=np.float32) * np.arange(1, 9, dtype=np.float32)[:, None, None])


@pytest.mark.parametrize("layout", ["frames", "mosaic"])
def test_skipped_channels_decode_to_their_fill_code_and_cost_no_picture(feats, layout):
    spec = CodingSpec("x265", layout=layout, preset="ultrafast").checked()
    data = vcfc.encode(feats, channel_qps=QPS, spec=spec)
    coded = vcfc.encode(feats, channel_qps=[q if q != SKIP else 32 for q in QPS], spec=spec)
    assert len(data) < len(coded)
    codes = vcfc.decode_codes(data)["x"]
    q = quantize_features(feats, spec)
    for c, v in enumerate(QPS):
        if v == SKIP:  # every sample the rounded mean of the channel's codes
            assert np.all(codes[c] == fill_code(q.codes["x"][c]))
            assert fill_code(q.codes["x"][c]) == int(np.floor(q.codes["x"][c].mean() + 0.5))
    info = vcfc.inspect(data)
    assert info["skipped"] == {"x": 3} and info["channel_qps"]["x"] == QPS
    out = vcfc.decode(data)
    assert out.shape == feats.shape and np.allclose(out[1].mean(), feats[1].mean(), atol=0.05)


def test_the_bank_assembles_and_reconstructs_skips_exactly_as_the_decoder(feats):
    bank = FrameBank(feats, SPEC)
    data = bank.assemble(QPS)
    assert data == vcfc.encode(feats, channel_qps=QPS, spec=SPEC)  # the same bytes as a direct encode
    np.testing.assert_array_equal(vcfc.decode(data), bank.reconstruct(QPS))
    assert bank.size([SKIP] * 8) < 400  # nothing coded: the header and the fill codes
    np.testing.assert_array_equal(vcfc.decode(bank.assemble([SKIP] * 8)), bank.reconstruct([SKIP] * 8))


@pytest.mark.parametrize("edit, message", [
    (lambda h: h.pop("fill"), "fill"),
    (lambda h: h["fill"].update(x=[1, 2]), "bad fill codes"),
    (lambda h: h["fill"].update(x=[1, 2, 256]), "bad fill codes"),
    (lambda h: h["qps"].update(x=[32] * 8), "fill codes but no skipped channel"),
    (lambda h: h["qps"].update(x=[-2, *QPS[1:]]), "bad per-channel QP list"),
])
def test_a_damaged_skip_header_is_a_format_error(feats, edit, message):
    c = container.read(vcfc.encode(feats, channel_qps=QPS, spec=SPEC))
    edit(c.header)
    with pytest.raises(FormatError, match=message):
        vcfc.decode(container.write(c))


def test_the_cli_codes_a_qp_file_with_skips(tmp_path, feats):
    np.save(tmp_path / "f.npy", feats)
    (tmp_path / "q.txt").write_text("".join(f"{v}\n" for v in QPS))
    run = [sys.executable, "-m", "vcfc"]
    r = subprocess.run([*run, "encode", "f.npy", "f.vcfc", "--layout", "frames", "--channel-qps", "q.txt",
                        "--preset", "ultrafast"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*run, "info", "f.vcfc"], cwd=tmp_path, capture_output=True, text=True)
    assert "skipped     3 of 8 channels not coded" in r.stdout and "QPs         4 distinct, 27..42" in r.stdout
    r = subprocess.run([*run, "decode", "f.vcfc", "g.npy"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and np.load(tmp_path / "g.npy").shape == feats.shape


class HalfBlind(nn.Module):
    """A tail that reads only the first half of the channels (the rest cost bits for nothing)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(c, 10)
        with torch.no_grad():
            self.fc.weight[:, c // 2:] = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.amax((2, 3)))  # a channel's mean alone does not keep its maximum


def half_blind_case(c: int):
    """Features of c channels, a tail that reads only the first half, and its KL sweep."""
    torch.manual_seed(1)
    x = torch.rand(c, 16, 16) * torch.linspace(1, 3, c)[:, None, None]
    tail = HalfBlind(c).eval()
    return x, tail, ChannelSweep(tail, get_distance("kl"), SweepOptions(), SPEC, 32)


def test_rdo_with_skip_leaves_out_the_channels_the_task_ignores():
    c = 16
    x, tail, sweep = half_blind_case(c)
    bank = FrameBank(x, SPEC)
    plain = rdo_qps(x, tail=tail, bank=bank, qp=32, settings=settings_for("rdo", {"lam": 1e-3}), sweep=sweep)
    skip = rdo_qps(x, tail=tail, bank=bank, qp=32, settings=settings_for("rdo+skip", {"lam": 1e-3}), sweep=sweep)
    assert SKIP not in plain.qps  # without the tool, never
    skipped = np.flatnonzero(skip.qps == SKIP)
    assert set(skipped) == set(range(c // 2, c))  # exactly the ignored half: they cost bits and change nothing
    assert skip.cost < plain.cost and skip.bpfe < plain.bpfe
    assert skip.bpfe == pytest.approx(8 * bank.size(skip.qps.tolist()) / x.numel())  # the real file's bytes
    assert RdoSettings(lam=1.0, tools="skip").checked().tool_set == {"skip"}
    with pytest.raises(vcfc.errors.InputError, match="unknown rdo tool 'halve'"):
        RdoSettings(lam=1.0, tools="halve").checked()


@pytest.mark.parametrize("c", [16, 48])  # sensitivities swept exactly (16 channels) or by the Taylor estimate (48)
def test_rdo_fast_codes_a_bounded_share_of_pictures_and_still_finds_the_ignored_channels(c):
    from vcfc.sensitivity.rdo_fast import TAYLOR_FROM, coded_sets, rdo_fast_qps

    assert 16 <= TAYLOR_FROM < 48
    x, tail, sweep = half_blind_case(c)
    bank = FrameBank(x, SPEC)
    fast = rdo_fast_qps(x, tail=tail, bank=bank, qp=32, settings=settings_for("rdo-fast", {"lam": 1e-3}), sweep=sweep)
    assert bank.encoded_pictures == c + c // 2 + c // 4  # base for all, +step for half, −step for a quarter
    assert set(np.flatnonzero(fast.qps == SKIP)) == set(range(c // 2, c))
    coded = fast.qps[fast.qps != SKIP]
    assert set(coded.tolist()) <= {29, 32, 35}
    assert fast.bpfe == pytest.approx(8 * bank.size(fast.qps.tolist()) / x.numel())
    full = rdo_qps(x, tail=tail, bank=FrameBank(x, SPEC), qp=32, settings=settings_for("rdo", {"lam": 1e-3}), sweep=sweep)
    assert fast.cost < full.cost  # skipping beats every QP vector here
    sets = coded_sets(np.arange(8.0), 32, 3, (0, 51))
    assert sets[35].tolist() == [0, 1, 2, 3] and sets[29].tolist() == [6, 7] and sets[32].tolist() == list(range(8))
    assert set(coded_sets(np.arange(8.0), 50, 3, (0, 51))) == {50, 47}  # no QP past the codec's range


def test_rdo_with_skip_is_the_same_whatever_the_number_of_encoder_workers():
    c = 12
    x, tail, sweep = half_blind_case(c)
    runs = [rdo_qps(x, tail=tail, bank=FrameBank(x, SPEC, workers=w), qp=32,
                    settings=settings_for("rdo+skip", {"lam": 1e-3}), sweep=sweep) for w in (1, 3)]
    np.testing.assert_array_equal(runs[0].qps, runs[1].qps)
    assert runs[0].cost == runs[1].cost and runs[0].bpfe == runs[1].bpfe


def test_rdo_fast_orders_skips_by_sensitivity_times_the_fills_extra_error():
    from vcfc.sensitivity.rdo_fast import skip_order

    sens = np.array([1.0, 1.0, 2.0, 0.0, 0.5])
    base = np.array([1.0, 2.0, 1.0, 0.0, 0.0])
    fill = np.array([4.0, 4.0, 1.0, 0.0, 3.0])
    # estimated skip costs 4, 2, 2, 0 (exact either way), inf (exact coded, not when filled)
    assert skip_order(sens, base, fill).tolist() == [3, 1, 2, 0, 4]


def test_the_search_scores_candidates_alike_through_the_sweeps_channels_last_copy():
    from vcfc.sensitivity.rdo import _Search

    torch.manual_seed(2)
    c = 6
    tail = nn.Sequential(nn.Conv2d(c, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
    x = torch.rand(c, 16, 16) * 3
    bank = FrameBank(x, SPEC)
    sweep = ChannelSweep(tail, get_distance("kl"), SweepOptions(), SPEC, 32)
    s = settings_for("rdo+skip", {"lam": 1e-3})
    args = (x, tail, bank, [29, 32, 35], s, torch.device("cpu"), torch.float32, 32)
    plain, fast = _Search(*args), _Search(*args, sweep=sweep)
    assert fast.channels_last and not plain.channels_last
    cands = [np.full(c, k) for k in range(4)] + [np.array([0, 1, 2, 3, 0, 1])]
    for a, b in zip(plain.costs(cands), fast.costs(cands)):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-9)
    assert plain.costs(cands)[0][1] < plain.costs(cands)[2][1] < plain.costs(cands)[3][1]  # finer QP, lower KL
