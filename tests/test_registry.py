"""One registration is enough: a codec added to the registry is accepted by the CLI, the
experiment loader, the API and the header validator, and listed by `vcfc doctor`."""

from __future__ import annotations

import numpy as np
import pytest

import vcfc
from runners.cli import build_parser
from runners.experiment import experiment_from_dict
from tests.conftest import feature_like
from vcfc import codecs
from vcfc.codecs.x265 import LosslessCodec


class _ProbeCodec(LosslessCodec):
    """A codec that exists only in this test: x265 lossless under another name."""

    name = "probe-codec"
    description = "test-only registration"


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setattr(codecs, "BACKENDS", (*codecs.BACKENDS, _ProbeCodec))
    monkeypatch.setitem(codecs.CODECS, _ProbeCodec.name, _ProbeCodec)
    yield _ProbeCodec.name


def test_a_codec_registered_once_is_accepted_everywhere(registered, tmp_path):
    args = build_parser().parse_args(["encode", "in.npy", "out.vcfc", "--codec", registered])
    assert args.codec == registered
    exp = experiment_from_dict({"datasets": [{"path": "imgs"}], "models": [{"name": "squeezenet1_1"}],
                                "coding": {"codecs": [registered], "qps": [0]}}, base=tmp_path)
    assert exp.coding.codecs == [registered]
    x = feature_like(3, 16, 16)
    data = vcfc.encode(x, codec=registered, bits=10)
    assert vcfc.inspect(data)["codec"] == registered  # the header validator accepts it
    assert vcfc.decode(data).shape == x.shape


def test_av1_is_everywhere_without_being_listed_by_hand():
    parser = build_parser()
    for command in (["encode", "a.npy", "b.vcfc"], ["eval", "--model", "m", "--layer", "l", "--data", "d"]):
        assert parser.parse_args([*command, "--codec", "av1"]).codec == "av1"
    assert experiment_from_dict({"datasets": [{"path": "d"}], "models": [{"name": "m"}],
                                 "coding": {"codecs": ["av1"], "qps": [32, 63]}}).coding.codecs == ["av1"]
    with pytest.raises(vcfc.InputError, match="av1's QP range 0..63"):
        experiment_from_dict({"datasets": [{"path": "d"}], "models": [{"name": "m"}],
                              "coding": {"codecs": ["av1"], "qps": [64]}})
    x = feature_like(4, 24, 24, seed=2)
    back = vcfc.decode(vcfc.encode(x, codec="av1", qp=32))
    assert back.shape == x.shape and np.abs(back - x).mean() < 0.1 * x.std()
