"""Datasets: real shared data (imagenet-sample, kodak, coco128) + synthetic VOC / corrupt files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vcfc.errors import InputError
from vcfc.runners.datasets import Sample, batches, detect_kind, open_dataset

SHARED = Path(os.environ.get("VCFC_SHARED", Path(__file__).parents[1].parent / "shared"))
DATA = SHARED / "data"


def need(sub: str) -> Path:
    p = DATA / sub
    if not p.exists():
        pytest.skip(f"shared data {p} absent (set VCFC_SHARED to the shared/ folder)")
    return p


def _img(path: Path, size=(8, 6), color=(10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


# ---------------------------------------------------------------- imagenet

@pytest.mark.shared
def test_imagenet_sample_flat_with_classes_tsv():
    root = need("imagenet-sample")
    ds = open_dataset(root, limit=5)
    assert ds.kind == "imagenet" and len(ds) == 5
    s = next(iter(ds))
    assert s.image_id == "n01440764_tench" and s.target == 0  # tench is class 0
    assert s.image.dtype == torch.float32 and s.image.shape[0] == 3
    assert 0.0 <= s.image.min() and s.image.max() <= 1.0
    image_id, x, target = s  # the design contract's (image_id, tensor, target) unpacking
    assert target == 0 and x is s.image


@pytest.mark.shared
def test_imagenet_sample_labels_match_classes_tsv():
    root = need("imagenet-sample")
    ds = open_dataset(root, kind="imagenet")
    assert len(ds) == 250
    rows = [ln.split("\t") for ln in (root / "classes.tsv").read_text().splitlines()[1:]]
    wnid_to_idx = {r[1]: int(r[0]) for r in rows}
    # targets are known without decoding any image (lazy index)
    for path, target in ds.items:
        assert target == wnid_to_idx[path.name[:9]]
    assert [p for p, _ in ds.items] == sorted(p for p, _ in ds.items)


@pytest.mark.shared
def test_imagenet_with_torchvision_transform_and_batches():
    import torchvision

    root = need("imagenet-sample")
    tf = torchvision.models.SqueezeNet1_1_Weights.DEFAULT.transforms()
    ds = open_dataset(root, transform=tf, limit=5)
    got = list(batches(ds, 2))
    assert [len(b) for b in got] == [2, 2, 1]
    assert got[0].images.shape == (2, 3, 224, 224)
    assert got[0].targets.dtype == torch.int64 and got[0].targets.tolist() == [0, 4]  # tench, hammerhead


def test_imagenet_class_folders_without_tsv(tmp_path):
    _img(tmp_path / "n02000000" / "b.JPEG")
    _img(tmp_path / "n01000000" / "a.JPEG")
    _img(tmp_path / "n01000000" / "c.png")
    ds = open_dataset(tmp_path)
    assert ds.kind == "imagenet"
    assert [(s.image_id, s.target) for s in ds] == [
        ("n01000000/a", 0), ("n01000000/c", 0), ("n02000000/b", 1)]


def test_imagenet_class_folders_with_tsv(tmp_path):
    _img(tmp_path / "n01000000" / "a.JPEG")
    (tmp_path / "classes.tsv").write_text("index\twnid\tname\n7\tn01000000\tthing\n")
    assert [s.target for s in open_dataset(tmp_path)] == [7]


def test_imagenet_unknown_wnid(tmp_path):
    _img(tmp_path / "n09999999_x.JPEG")
    (tmp_path / "classes.tsv").write_text("index\twnid\n0\tn01000000\n")
    with pytest.raises(InputError, match="n09999999_x.JPEG"):
        open_dataset(tmp_path)


# ---------------------------------------------------------------- folder

@pytest.mark.shared
def test_kodak_folder():
    root = need("kodak")
    ds = open_dataset(root)
    assert ds.kind == "folder" and len(ds) == 24
    s = ds[0]
    assert s.image_id == "kodim01" and s.target is None
    assert tuple(s.image.shape) in {(3, 512, 768), (3, 768, 512)}
    # mixed orientations -> batches keep a list instead of stacking
    b = next(batches(open_dataset(root, limit=24), 24))
    shapes = {tuple(x.shape) for x in b.images} if isinstance(b.images, list) else None
    assert shapes is not None and len(shapes) == 2


def test_folder_extensions_case_insensitive_and_limit(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.Bmp", "d.webp", "e.JpEg"):
        _img(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    _img(tmp_path / ".hidden" / "z.png")
    ds = open_dataset(tmp_path, kind="folder")
    assert [s.image_id for s in ds] == ["a", "b", "c", "d", "e"]
    assert len(open_dataset(tmp_path, limit=2)) == 2
    b = next(batches(ds, 10))
    assert b.images.shape == (5, 3, 6, 8) and b.targets == [None] * 5


def test_grey_and_rgba_become_rgb(tmp_path):
    Image.new("L", (4, 4), 128).save(tmp_path / "g.png")
    Image.new("RGBA", (4, 4), (1, 2, 3, 4)).save(tmp_path / "r.png")
    for s in open_dataset(tmp_path):
        assert s.image.shape == (3, 4, 4)


def test_truncated_jpeg_names_file(tmp_path):
    good = _img(tmp_path / "ok.jpg", size=(64, 64))
    data = good.read_bytes()
    (tmp_path / "bad.jpg").write_bytes(data[: len(data) // 2])
    ds = open_dataset(tmp_path)
    with pytest.raises(InputError, match=r"bad\.jpg"):
        list(ds)


def test_missing_file_and_bad_args(tmp_path):
    _img(tmp_path / "a.png")
    ds = open_dataset(tmp_path)
    (tmp_path / "a.png").unlink()
    with pytest.raises(InputError, match=r"a\.png"):
        ds[0]
    with pytest.raises(InputError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(InputError, match="unknown dataset kind"):
        open_dataset(tmp_path, kind="mnist")
    with pytest.raises(InputError, match="no images"):
        open_dataset(tmp_path, kind="folder")
    with pytest.raises(InputError):
        list(batches([], 0))


# ---------------------------------------------------------------- coco

@pytest.mark.shared
def test_coco128():
    root = need("coco128")
    ds = open_dataset(root)
    assert ds.kind == "coco" and len(ds) == 128
    assert ds.coco is not None and len(ds.coco.getImgIds()) == 128
    s = ds[0]
    assert s.image_id == "000000000009"
    t = s.target
    assert t["image_id"] == 9 and t["orig_size"] == (480, 640)
    assert tuple(s.image.shape) == (3, 480, 640)
    anns = ds.coco.imgToAnns[9]
    assert t["boxes"].shape == (len(anns), 4) and t["labels"].tolist() == [a["category_id"] for a in anns]
    x, y, w, h = anns[0]["bbox"]
    assert torch.allclose(t["boxes"][0], torch.tensor([x, y, x + w, y + h]))
    # a json path works too, and limit applies
    ds2 = open_dataset(root / "annotations" / "instances.json", limit=3)
    assert [s.image_id for s in ds2] == [s.image_id for s in open_dataset(root, limit=3)]


def test_coco_image_without_annotations_and_missing_image(tmp_path):
    _img(tmp_path / "images" / "x.jpg")
    ann = {"images": [{"id": 5, "file_name": "x.jpg", "height": 6, "width": 8},
                      {"id": 6, "file_name": "y.jpg", "height": 6, "width": 8}],
           "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(ann))
    ds = open_dataset(tmp_path)
    s = ds[0]
    assert s.target["boxes"].shape == (0, 4) and s.target["labels"].numel() == 0
    with pytest.raises(InputError, match=r"y\.jpg"):
        ds[1]


def test_coco_bad_json(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("{not json")
    with pytest.raises(InputError, match=r"a\.json"):
        open_dataset(p)


# ---------------------------------------------------------------- voc

def _make_voc(root: Path) -> None:
    rng = np.random.default_rng(0)
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (252 * 3) + [224, 224, 192]
    for name in ("2007_000001", "2007_000002", "2007_000003"):
        _img(root / "JPEGImages" / f"{name}.jpg", size=(10, 7))
        mask = rng.integers(0, 3, size=(7, 10)).astype(np.uint8)
        mask[0, :] = 255  # object border / ignore
        m = Image.fromarray(mask)  # "L"; putpalette turns it into "P"
        m.putpalette(palette)
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        m.save(root / "SegmentationClass" / f"{name}.png")
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("2007_000003\n2007_000001\n")
    (sets / "train.txt").write_text("2007_000002\n")


def test_voc_synthetic(tmp_path):
    _make_voc(tmp_path)
    ds = open_dataset(tmp_path)
    assert ds.kind == "voc" and detect_kind(tmp_path) == "voc"
    got = list(ds)
    assert [s.image_id for s in got] == ["2007_000001", "2007_000003"]
    s = got[0]
    assert s.target.dtype == torch.int64 and s.target.shape == (7, 10)
    assert (s.target[0] == 255).all() and set(s.target[1:].unique().tolist()) <= {0, 1, 2}
    ref = np.array(Image.open(tmp_path / "SegmentationClass" / "2007_000001.png"))
    assert (s.target.numpy() == ref).all()
    assert [s.image_id for s in open_dataset(tmp_path, kind="voc", split="train")] == ["2007_000002"]
    b = next(batches(ds, 2))
    assert b.targets.shape == (2, 7, 10) and b.images.shape == (2, 3, 7, 10)


def test_voc_rgb_mask_rejected(tmp_path):
    _make_voc(tmp_path)
    Image.new("RGB", (10, 7)).save(tmp_path / "SegmentationClass" / "2007_000001.png")
    with pytest.raises(InputError, match=r"2007_000001\.png"):
        open_dataset(tmp_path)[0]


def test_sample_is_a_plain_record(tmp_path):
    _img(tmp_path / "a.png")
    s = open_dataset(tmp_path)[0]
    assert isinstance(s, Sample) and s.path == tmp_path / "a.png"
