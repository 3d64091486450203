"""One registration is enough: a codec, quantizer, layout, allocator or task added to its registry
(in one place: this module) is accepted by the CLI, the experiment loader, the API and the header
validator, and used by the grid's coder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vcfc
from tests.conftest import feature_like
from vcfc import codecs
from vcfc.codecs.x265 import LosslessCodec
from vcfc.errors import InputError
from vcfc.packing.layouts import LAYOUTS, FramePlan, Placement
from vcfc.packing.quantizers import QUANTIZERS
from vcfc.packing.quantizers.base import Quantizer, QuantParams, f32_up, uniform_codes
from vcfc.registry import Registry
from vcfc.runners.cli import build_parser
from vcfc.runners.config import experiment_from_dict
from vcfc.spec import CodingSpec


def _experiment(tmp_path, **coding):
    return experiment_from_dict({"datasets": [{"path": "imgs"}], "models": [{"name": "squeezenet1_1"}],
                                 "coding": {"qps": [30], **coding}}, base=tmp_path)


# --------------------------------------------------------------------------- the Registry type

def test_registry_errors_choices_and_duplicates():
    r = Registry("colour", [("red", 1), ("green", 2)])
    assert r.get("red") == 1 and r.choices() == ("red", "green") and "green" in r and list(r) == ["red", "green"]
    with pytest.raises(InputError, match=r"unknown colour 'blue'; choose from red, green"):
        r.get("blue")
    assert r.get("blue", None) is None  # with a default, like dict.get
    with pytest.raises(ValueError, match="registered twice"):
        r.register("red", 3)
    with pytest.raises(KeyError):
        r["blue"]  # plain indexing is a dict's


# --------------------------------------------------------------------------- a codec

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
    assert _experiment(tmp_path, codecs=[registered], qps=[0]).coding.codecs == [registered]
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


# --------------------------------------------------------------------------- a quantizer

class Symmetric(Quantizer):
    """A quantizer that exists only in this test: uniform over [-m, m], m = max |x|."""

    name = "symmetric"
    description = "test-only: uniform over [-max|x|, max|x|]"
    arrays = {"m": False}

    def quantize(self, x, maxc, bits, **opts):
        m = f32_up(np.array([np.abs(x).max()], np.float64))
        return uniform_codes(x, -m[0], m[0], maxc), QuantParams(self.name, bits, {"m": m})

    def dequantize(self, v, a, scalars):
        return -a["m"] + v * 2 * a["m"]

    def step(self, a, scalars, maxc):
        return 2 * a["m"] / maxc


def test_a_quantizer_registered_once_is_accepted_everywhere(monkeypatch, tmp_path):
    monkeypatch.setitem(QUANTIZERS, "symmetric", Symmetric())
    assert build_parser().parse_args(["encode", "a.npy", "b.vcfc", "--quant", "symmetric"]).quant == "symmetric"
    assert _experiment(tmp_path, quant="symmetric").coding.quants == ["symmetric"]
    x = feature_like(4, 16, 16, seed=3) - 1.0
    data = vcfc.encode(x, codec="lossless", quant="symmetric")
    assert vcfc.inspect(data)["quant"] == "symmetric"  # the header validator accepts it
    back = vcfc.decode(data)
    m = float(np.abs(x).max())
    assert np.abs(back - x).max() <= m / 255 + 1e-6  # half a step of 2m/255
    with pytest.raises(InputError, match="unknown quantizer 'asymmetric'; choose from .*symmetric"):
        vcfc.encode(x, codec="lossless", quant="asymmetric")


# --------------------------------------------------------------------------- a layout

def plan_column(chans, size, align):
    """A layout that exists only in this test: every tile in one column of one picture."""
    h, w = size(chans[0])
    placements = [Placement(name, c, 0, i * h, 0) for i, (name, c) in enumerate(chans)]
    return [FramePlan(-(-len(chans) * h // align) * align, -(-w // align) * align, 1, placements)]


def test_a_layout_registered_once_is_accepted_everywhere(monkeypatch, tmp_path):
    monkeypatch.setitem(LAYOUTS, "column", plan_column)
    assert build_parser().parse_args(["encode", "a.npy", "b.vcfc", "--layout", "column"]).layout == "column"
    assert _experiment(tmp_path, layouts=["column"]).coding.layouts == ["column"]
    x = feature_like(5, 12, 20, seed=4)
    data = vcfc.encode(x, codec="lossless", layout="column")
    info = vcfc.inspect(data)  # the header validator accepts it
    assert info["layout"] == "column" and info["streams"][0]["height"] == 64 and info["streams"][0]["width"] == 24
    frames = vcfc.decode_frames(data)[0]
    codes = vcfc.decode_codes(data)["x"]
    assert np.array_equal(frames[0, 12:24, :20], codes[1])  # channel 1 is the second tile down
    assert np.allclose(vcfc.decode(data), x, atol=float(x.max()) / 255)


# --------------------------------------------------------------------------- an allocator

def halves(job):
    """A per-image allocator that exists only in this test: the first half of the channels 2 QPs
    finer than the base, the rest 2 coarser (it also asks for a sweep, to prove it gets one)."""
    assert callable(job.sweep("penultimate"))
    assert job.options == {"qp_range": 8}  # the options it declared, nothing else
    c = job.features.shape[0]
    return np.where(np.arange(c) < c // 2, job.qp - 2, job.qp + 2)


def test_an_allocator_registered_once_is_used_by_the_cli_experiments_and_the_grid(monkeypatch, tmp_path, squeeze):
    from vcfc.runners.config import AllocationSpec
    from vcfc.runners.evaluate import eval_config
    from vcfc.runners.image_coding import ImageContext, code_image
    from vcfc.sensitivity.allocation import ALLOCATORS, Allocator

    monkeypatch.setitem(ALLOCATORS, "halves", Allocator("halves", "image", "test-only", fn=f"{__name__}:halves",
                                                        options=("qp_range",)))
    args = build_parser().parse_args(["eval", "--model", "squeezenet1_1", "--layer", "pool1", "--data", "d",
                                      "--qp", "30", "--allocation", "halves"])
    assert args.allocation == "halves"
    exp = experiment_from_dict({"datasets": [{"path": "imgs"}], "models": [{"name": "squeezenet1_1"}],
                                "allocation": {"methods": ["uniform", "halves"]}}, base=tmp_path)
    assert exp.allocation.methods == ["uniform", "halves"]
    sp, feats = squeeze
    ctx = ImageContext(feats[0][0], (64, 64), None)
    cfg = eval_config(CodingSpec("x265", preset="ultrafast", layout="frames"), "halves", 30, AllocationSpec(), lam=0.5)
    assert cfg.options == (("qp_range", 8),)  # λ was offered, but halves does not read it
    data, _ = code_image(sp, ctx, cfg)
    qps = vcfc.inspect(data)["channel_qps"]["x"]
    c = feats[0].shape[1]
    assert qps == [28] * (c // 2) + [32] * (c - c // 2)


# --------------------------------------------------------------------------- a task

class TinyRegressor(nn.Module):
    """A model type only this test knows: conv features → a 3-vector (not class scores)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def test_a_task_registered_once_cuts_scores_and_summarises_its_models(monkeypatch):
    from vcfc.runners.datasets import Batch
    from vcfc.runners.evaluate import EvalConfig, evaluate_batch
    from vcfc.runners.models import split
    from vcfc.runners.splits import ClassifierSplit
    from vcfc.runners.tasks import TASKS, Classification, Task, summarize

    class Regression(Task):
        name = "regression"
        description = "test-only: distance of the output vector to the uncompressed one"
        model_types = (TinyRegressor,)
        split_class = ClassifierSplit

        def default_transforms(self):
            return Classification().default_transforms()

        def score(self, ref, out, targets, image_ids):
            err = (out - ref).norm(dim=1) / ref.norm(dim=1).clamp(min=1e-9)
            return [{"fidelity": float(e < 0.05), "relative_error": float(e)} for e in err]

        def summarize(self, rows, coco_gt=None):
            return {"fidelity": float(np.mean([r["fidelity"] for r in rows])),
                    "relative_error": float(np.mean([r["relative_error"] for r in rows]))}

    monkeypatch.setitem(TASKS, "regression", Regression())
    torch.manual_seed(0)
    sp = split(TinyRegressor(), at="features.1", weights=None)
    assert sp.task == "regression" and isinstance(sp, ClassifierSplit)
    images = torch.rand(2, 3, 32, 32)
    batch = Batch(image_ids=["a", "b"], images=images, targets=None, paths=[None, None])
    rows = evaluate_batch(sp, batch, [EvalConfig(), EvalConfig(CodingSpec("x265", preset="ultrafast"), qp=12)])
    assert [r["relative_error"] for r in rows[:2]] == [0.0, 0.0]  # the reference
    coded = [r for r in rows if r["codec"] == "x265"]
    assert all(0 < r["relative_error"] < 0.2 for r in coded)
    assert summarize(coded, "regression")["relative_error"] == pytest.approx(np.mean([r["relative_error"] for r in coded]))
