"""One registration is enough: a codec added to the registry is accepted by the CLI, the
experiment loader, the API and the header validator, and listed by `vcfc doctor`."""

from __future__ import annotations

import numpy as np
import pytest

import vcfc
from vcfc.runners.cli import build_parser
from vcfc.runners.experiment import experiment_from_dict
from tests.conftest import feature_like
from vcfc import codecs
from vcfc.codecs.x265 import LosslessCodec
from vcfc.spec import CodingSpec


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


def halves(job):
    """A per-image allocator that exists only in this test: the first half of the channels 2 QPs
    finer than the base, the rest 2 coarser (it also asks for a sweep, to prove it gets one)."""
    assert callable(job.sweep("penultimate"))
    c = job.features.shape[0]
    return np.where(np.arange(c) < c // 2, job.qp - 2, job.qp + 2)


def test_an_allocator_registered_once_is_used_by_the_cli_experiments_and_the_grid(monkeypatch, tmp_path, squeeze):
    from vcfc.runners.allocators import ImageContext, code_image
    from vcfc.runners.evaluate import EvalConfig
    from vcfc.sensitivity.allocation import ALLOCATORS, Allocator

    monkeypatch.setitem(ALLOCATORS, "halves", Allocator("halves", "image", "test-only", image_fn=f"{__name__}:halves"))
    args = build_parser().parse_args(["eval", "--model", "squeezenet1_1", "--layer", "pool1", "--data", "d",
                                      "--qp", "30", "--allocation", "halves"])
    assert args.allocation == "halves"
    exp = experiment_from_dict({"datasets": [{"path": "imgs"}], "models": [{"name": "squeezenet1_1"}],
                                "allocation": {"methods": ["uniform", "halves"]}}, base=tmp_path)
    assert exp.allocation.methods == ["uniform", "halves"]
    sp, feats = squeeze
    ctx = ImageContext(feats[0][0], (64, 64), None)
    data, _ = code_image(sp, ctx, EvalConfig(CodingSpec("x265", preset="ultrafast", layout="frames"), qp=30,
                                             allocation="halves"))
    qps = vcfc.inspect(data)["channel_qps"]["x"]
    c = feats[0].shape[1]
    assert qps == [28] * (c // 2) + [32] * (c - c // 2)
