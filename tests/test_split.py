"""runners: model splitting is exact, presets have the documented shapes, weights fail cleanly."""

from __future__ import annotations

import logging
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from vcfc.errors import InputError
from vcfc.runners.models import FeatureDict, list_models, split
from vcfc.runners.presets import PRESETS
from vcfc.runners.weights import RANDOM_MESSAGE, build_model

pytestmark = pytest.mark.filterwarnings("ignore:.*random weights")

SHARED_WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "weights"
TOL = 1e-5

# preset -> (C, H, W) at 224×224, as documented in docs/splits.md
SHAPES_224 = {
    "vgg16": {"conv1": (64, 224, 224), "pool1": (64, 112, 112), "conv2": (128, 112, 112),
              "pool2": (128, 56, 56), "conv3": (256, 56, 56), "pool3": (256, 28, 28),
              "conv4": (512, 28, 28), "pool4": (512, 14, 14), "conv5": (512, 14, 14),
              "pool5": (512, 7, 7)},
    "resnet50": {"conv1": (64, 112, 112), "pool1": (64, 56, 56), "layer1": (256, 56, 56),
                 "layer2": (512, 28, 28), "layer3": (1024, 14, 14), "layer4": (2048, 7, 7)},
    "squeezenet1_1": {"conv1": (64, 111, 111), "pool1": (64, 55, 55), "fire2": (128, 55, 55),
                      "fire3": (128, 55, 55), "pool3": (128, 27, 27), "fire4": (256, 27, 27),
                      "fire5": (256, 27, 27), "pool5": (256, 13, 13), "fire6": (384, 13, 13),
                      "fire7": (384, 13, 13), "fire8": (512, 13, 13), "fire9": (512, 13, 13)},
    "mobilenet_v2": {"conv1": (32, 112, 112), "block1": (16, 112, 112), "block2": (24, 56, 56),
                     "block3": (24, 56, 56), "block4": (32, 28, 28), "block5": (32, 28, 28),
                     "block6": (32, 28, 28), "block7": (64, 14, 14), "block8": (64, 14, 14),
                     "block9": (64, 14, 14), "block10": (64, 14, 14), "block11": (96, 14, 14),
                     "block12": (96, 14, 14), "block13": (96, 14, 14), "block14": (160, 7, 7),
                     "block15": (160, 7, 7), "block16": (160, 7, 7), "block17": (320, 7, 7),
                     "conv_last": (1280, 7, 7)},
    "fcn_resnet50": {"conv1": (64, 112, 112), "pool1": (64, 56, 56), "layer1": (256, 56, 56),
                     "layer2": (512, 28, 28), "layer3": (1024, 28, 28), "layer4": (2048, 28, 28)},
}
FPN_224 = {"p2": (256, 200, 200), "p3": (256, 100, 100), "p4": (256, 50, 50),
           "p5": (256, 25, 25), "p6": (256, 13, 13)}   # after the default resize to 800×800
CLASSIFIERS = ["vgg16", "resnet50", "squeezenet1_1", "mobilenet_v2"]
PRE_DIM = {"vgg16": 4096, "resnet50": 2048, "squeezenet1_1": 512, "mobilenet_v2": 1280}
# small R-CNNs so each forward takes well under a second on CPU
RCNN_KW = dict(min_size=192, max_size=256, box_score_thresh=0.0, box_detections_per_img=10,
               rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=100)


def _image(n: int = 1, hw: tuple[int, int] = (64, 64), seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *hw, generator=g)


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # these forwards are small: one intra-op thread avoids OpenMP spin-waits when the cores are
    # shared (2 threads under load made this module 3-5x slower), and is as fast when idle
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def classifiers() -> dict[str, torch.nn.Module]:
    # built once: VGG16's random init of 138M parameters alone takes ~2 s
    return {name: build_model(name, None, seed=0)[0] for name in CLASSIFIERS}


# ----------------------------------------------------------------- classification

@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_presets_exact(name: str, classifiers: dict) -> None:
    model = classifiers[name]
    x = _image(2)
    with torch.no_grad():
        ref = model(x)
    for preset, shape224 in SHAPES_224[name].items():
        s = split(model, preset, model_name=name)
        assert s.task == "classification" and s.module_path == PRESETS[name][preset]
        f = s.head(x)
        assert isinstance(f, torch.Tensor)
        assert tuple(f.shape[1:]) == s.feature_shapes((64, 64)), preset
        assert s.feature_shapes((224, 224)) == shape224, preset
        assert _maxdiff(s.tail(f), ref) <= TOL, preset


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_penultimate_is_pre_logit(name: str, classifiers: dict) -> None:
    model = classifiers[name]
    x = _image(2)
    last = {"vgg16": lambda: model.classifier[6], "resnet50": lambda: model.fc,
            "mobilenet_v2": lambda: model.classifier[-1]}.get(name, lambda: None)()
    if name == "squeezenet1_1":   # classifier conv10 is the last stage: pooled fire9 output
        with torch.no_grad():
            want = model.features(x).mean(dim=(2, 3))
    else:
        seen = []
        h = last.register_forward_hook(lambda m, i, o: seen.append(i[0]))
        with torch.no_grad():
            model(x)
        h.remove()
        want = seen[0]
    s = split(model, list(SHAPES_224[name])[1], model_name=name)
    got = s.penultimate(s.head(x))
    assert got.shape == (2, PRE_DIM[name])
    assert _maxdiff(got, want) <= TOL


def test_raw_module_paths(classifiers: dict) -> None:
    model = classifiers["resnet50"]
    x = _image(1)
    with torch.no_grad():
        ref = model(x)
    s = split(model, "layer2.1", model_name="resnet50")
    assert s.feature_shapes((224, 224)) == (512, 28, 28)
    assert _maxdiff(s.tail(s.head(x)), ref) <= TOL
    sq = classifiers["squeezenet1_1"]
    a = split(sq, "features.4", model_name="squeezenet1_1").head(x)
    b = split(sq, "fire3", model_name="squeezenet1_1").head(x)
    assert torch.equal(a, b)


def test_invalid_cut_explains(classifiers: dict) -> None:
    with pytest.raises(InputError, match="not a valid cut") as e:
        split(classifiers["resnet50"], "layer1.0.conv2", model_name="resnet50")
    msg = str(e.value)
    assert "\n" not in msg and "layer1" in msg and "maxpool" in msg
    with pytest.raises(InputError, match="not a valid cut"):   # inside an inverted residual
        split(classifiers["mobilenet_v2"], "features.3.conv.0", model_name="mobilenet_v2")
    with pytest.raises(InputError, match="not a layer of"):
        split(classifiers["resnet50"], "layer9", model_name="resnet50")
    s = split(classifiers["resnet50"], "layer1", model_name="resnet50")
    assert {"conv1", "relu", "maxpool", "layer1", "layer2.0", "layer4", "fc"} <= set(s.valid_cuts())
    assert "layer1.0.conv2" not in s.valid_cuts()


def test_split_by_name_and_list_models() -> None:
    with pytest.warns(UserWarning, match="random weights"):
        s = split("resnet50", "pool1", weights=None)
    assert s.model_name == "resnet50" and s.layer == "pool1" and s.module_path == "maxpool"
    x = _image(1)
    assert s.transforms(torch.rand(3, 300, 260)).shape == (3, 224, 224)   # ImageNet preset
    with torch.no_grad():
        assert _maxdiff(s(x), s.model(x)) <= TOL
    rows = {r["model"]: r for r in list_models((224, 224))}
    assert set(rows) == set(PRESETS)
    for name, shapes in SHAPES_224.items():
        first, *presets = rows[name]["presets"]
        assert first["name"] == "input" and first["shape"] == [3, 224, 224]  # every model: the network input
        got = {p["name"]: tuple(p["shape"]) for p in presets}
        assert got == shapes, name
        assert [p["module"] for p in presets] == [PRESETS[name][k] for k in shapes]
    fpn = rows["maskrcnn_resnet50_fpn"]
    assert fpn["task"] == "instance" and {k: tuple(v) for k, v in fpn["presets"][1]["shape"].items()} == FPN_224


# ----------------------------------------------------------------- the input split

@pytest.mark.parametrize("name, other", [("squeezenet1_1", "pool1"), ("fcn_resnet50", "layer1"),
                                         ("fasterrcnn_resnet50_fpn", "fpn")])
def test_the_input_split_is_the_whole_network_on_the_uint8_picture(name: str, other: str) -> None:
    """head = resize/crop to the uint8 network input; tail = normalisation + the network: together
    bit-identical to the model on the usual float transforms, for every task."""
    from PIL import Image

    from vcfc.io import bundled

    kw = {"model_kwargs": {"min_size": 160, "max_size": 240}} if "rcnn" in name else {}
    sp, ref = split(name, "input", weights=None, **kw), split(name, other, weights=None, **kw)
    assert sp.task == ref.task and sp.module_path == "input"
    img = Image.open(bundled("kodak", "kodim03.jpg")).convert("RGB").resize((192, 128))
    x8, xf = sp.transforms(img), ref.transforms(img)
    assert x8.dtype == torch.uint8 and x8.shape == xf.shape
    head = sp.head(x8[None])
    assert torch.equal(head[0], x8)  # the features ARE the picture
    out = sp.tail(head)
    want = ref.tail(ref.head(xf[None] if "rcnn" not in name else [xf]))
    if isinstance(out, list):
        assert len(out) == 1 and torch.equal(out[0]["boxes"], want[0]["boxes"])
    else:
        assert torch.equal(out, want)


# ----------------------------------------------------------------- segmentation

@pytest.mark.parametrize("aux", [False, True])
def test_fcn_presets_exact(aux: bool) -> None:
    s0 = split("fcn_resnet50", "layer1", weights=None, model_kwargs={"aux_loss": aux})
    assert s0.task == "segmentation"
    model = s0.model
    x = _image(1, (72, 56))
    with torch.no_grad():
        ref = model(x)["out"]
    presets = SHAPES_224["fcn_resnet50"] if not aux else {"layer2": None}
    for preset, shape224 in presets.items():
        s = split(model, preset, model_name="fcn_resnet50")
        f = s.head(x)
        assert tuple(f.shape[1:]) == s.feature_shapes((72, 56))
        if shape224 is not None:
            assert s.feature_shapes((224, 224)) == shape224
        out = s.tail(f)
        assert out.shape == (1, 21, 72, 56)
        assert _maxdiff(out, ref) <= TOL, preset
        # decoupled tail: a fresh split with the stored meta
        other = split(model, preset, model_name="fcn_resnet50")
        assert _maxdiff(other.tail(f.clone(), meta=s.last_meta), ref) <= TOL
    with pytest.raises(InputError, match="input size"):
        split(model, "layer2", model_name="fcn_resnet50").tail(f)
    assert s.penultimate(f, meta=s.last_meta).shape == (1, 512, 9, 7)


# ----------------------------------------------------------------- detection

@pytest.mark.parametrize("name,extra", [("fasterrcnn_resnet50_fpn", ()),
                                        ("maskrcnn_resnet50_fpn", ("masks",)),
                                        ("keypointrcnn_resnet50_fpn", ("keypoints", "keypoints_scores"))])
def test_rcnn_fpn_exact(name: str, extra: tuple[str, ...]) -> None:
    # the keypoint head (8 convs of 512 channels per box) dominates: keep few boxes
    kw = dict(RCNN_KW, box_detections_per_img=2 if name.startswith("keypoint") else 10)
    s = split(name, "fpn", weights=None, model_kwargs=kw)
    assert s.task == {"fasterrcnn_resnet50_fpn": "detection", "maskrcnn_resnet50_fpn": "instance",
                      "keypointrcnn_resnet50_fpn": "keypoints"}[name]
    images = [_image(1, (150, 200), seed=2)[0], _image(1, (180, 130), seed=3)[0]]
    with torch.no_grad():
        ref = s.model(images)
    feats = s.head(images)
    assert isinstance(feats, FeatureDict) and list(feats) == ["p2", "p3", "p4", "p5", "p6"]
    assert feats.meta["original_sizes"] == [[150, 200], [180, 130]]
    assert all(v.shape[0] == 2 and v.shape[1] == 256 for v in feats.values())
    p6 = torch.nn.functional.max_pool2d(feats["p5"], 1, 2, 0)
    assert torch.equal(p6, feats["p6"])   # torchvision's LastLevelMaxPool
    for out in (s.tail(feats),
                # decoupled: plain dict without p6, meta passed separately
                split(s.model, "fpn", model_name=name, send_p6=False).tail(
                    {k: v.clone() for k, v in feats.items() if k != "p6"}, meta=feats.meta)):
        assert len(out) == 2
        for got, want in zip(out, ref):
            assert set(got) == set(want) and {"boxes", "labels", "scores", *extra} <= set(got)
            assert len(want["boxes"]) > 0   # there is something to compare
            for k in want:
                assert _maxdiff(got[k], want[k]) <= TOL, k
    # boxes are in original image coordinates (x ≤ W, y ≤ H)
    for r, (h, w) in zip(ref, [(150, 200), (180, 130)]):
        assert r["boxes"][:, 2].max() <= w + 1e-3 and r["boxes"][:, 3].max() <= h + 1e-3
    nop6 = split(s.model, "fpn", model_name=name, send_p6=False)
    assert "p6" not in nop6.head(images[:1]) and "p6" not in nop6.feature_shapes((224, 224))
    if name == "fasterrcnn_resnet50_fpn":
        # the model's own resize: 224 -> 192 here
        assert s.feature_shapes((224, 224))["p2"] == (256, 48, 48)
        with pytest.raises(InputError, match="fpn"):
            split(s.model, "layer2", model_name=name)


# ----------------------------------------------------------------- weights

@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    return tmp_path / "torch"


@pytest.mark.shared
@pytest.mark.parametrize("name,weights,at", [("squeezenet1_1", "DEFAULT", "fire3"),
                                             ("mobilenet_v2", "IMAGENET1K_V1", "block3")])
def test_real_weights_offline(name: str, weights: str, at: str, torch_home: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"real weights folder {SHARED_WEIGHTS} absent")
    files = list(SHARED_WEIGHTS.glob(f"{name}-*.pth"))
    if not files:
        pytest.skip(f"no {name} weights in {SHARED_WEIGHTS}")
    for f in files:
        shutil.copy(f, torch_home / "hub" / "checkpoints" / f.name)

    def no_network(*a, **k):  # any download attempt is a test failure
        raise AssertionError("tried to download")
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    s = split(name, at, weights=weights)
    state = torch.load(files[0], map_location="cpu", weights_only=True)
    own = s.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())
    x = s.transforms(torch.rand(3, 256, 256)).unsqueeze(0)
    with torch.no_grad():
        assert _maxdiff(s.tail(s.head(x)), s.model(x)) <= TOL


def test_download_failure_is_one_line(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(InputError) as e:
        split("squeezenet1_1", "fire2", weights="DEFAULT")
    msg = str(e.value)
    assert "\n" not in msg and "download" in msg and "failed" in msg
    assert "hub/checkpoints" in msg and "squeezenet1_1-b8a52dc0.pth" in msg
    assert "checkpoint path" in msg and "none" in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_random_weights_warn_and_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match=RANDOM_MESSAGE):
        a = split("squeezenet1_1", "fire2", weights="none", seed=3)
    assert RANDOM_MESSAGE in caplog.text
    b = split("squeezenet1_1", "fire2", weights=None, seed=3)
    c = split("squeezenet1_1", "fire2", weights=None, seed=4)
    w = "features.0.weight"
    assert torch.equal(a.model.state_dict()[w], b.model.state_dict()[w])
    assert not torch.equal(a.model.state_dict()[w], c.model.state_dict()[w])


def test_checkpoint_paths(tmp_path: Path) -> None:
    src = build_model("squeezenet1_1", None, seed=7)[0]
    good = tmp_path / "sq.pth"
    torch.save(src.state_dict(), good)
    s = split("squeezenet1_1", "pool1", weights=good)
    assert torch.equal(s.model.features[0].weight, src.features[0].weight)
    s = split("squeezenet1_1", "pool1", weights=str(good))   # str path works too
    torch.save({"state_dict": src.state_dict()}, tmp_path / "wrapped.pt")
    split("squeezenet1_1", "pool1", weights=tmp_path / "wrapped.pt")

    torch.save(torchvision.models.mobilenet_v2().state_dict(), tmp_path / "other.pth")
    with pytest.raises(InputError, match="does not match") as e:
        split("squeezenet1_1", "pool1", weights=tmp_path / "other.pth")
    assert "\n" not in str(e.value) and "missing" in str(e.value)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot load checkpoint"):
        split("squeezenet1_1", "pool1", weights=tmp_path / "junk.pth")
    with pytest.raises(InputError, match="not found"):
        split("squeezenet1_1", "pool1", weights=tmp_path / "missing.pth")


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="unknown weights"):
        split("squeezenet1_1", "pool1", weights="IMAGENET9K")
    with pytest.raises(InputError, match="do not belong"):
        split("squeezenet1_1", "pool1", weights=torchvision.models.ResNet50_Weights.DEFAULT)
    with pytest.raises(InputError, match="unknown model"):
        split("resnet9000", "pool1", weights=None)
    with pytest.raises(InputError):
        split(42, "pool1")   # type: ignore[arg-type]
