"""Image datasets for vcfc runs: plain folders, ImageNet, COCO and PASCAL VOC segmentation.

Every dataset is a lazy, sorted index of file paths: images are decoded one at a time when a
sample is requested, so a run over 50k images never holds more than one batch in memory.
``open_dataset`` picks the layout; iterate the result (or index it, it is map-style and works
with ``torch.utils.data.DataLoader``) to get :class:`Sample` objects.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vcfc.errors import InputError

from .kinds import KINDS, dataset_class

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
_WNID = re.compile(r"n\d{8}")
_FLAT_WNID = re.compile(r"(n\d{8})_")

Transform = Callable[[Image.Image], Any]


@dataclass(frozen=True)
class Sample:
    """One image. ``image_id`` is the file's path relative to the dataset root, without suffix
    (unique and stable). ``target`` is an int (imagenet), a dict (coco), a LongTensor mask (voc)
    or None (folder). Iterating a Sample gives ``(image_id, image, target)`` -- the tuple the
    design contract promises -- so ``for image_id, x, target in dataset`` works."""

    image_id: str
    image: Any  # Tensor[3,H,W] with the default transform; whatever `transform` returns otherwise
    target: Any
    path: Path

    def __iter__(self) -> Iterator[Any]:
        return iter((self.image_id, self.image, self.target))


def default_transform(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> float32 Tensor[3,H,W] in [0,1] (what torchvision's ToTensor does)."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def load_rgb(path: Path) -> Image.Image:
    """Decode an image fully (so truncation is caught here, not later) as RGB."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise InputError(f"{path}: image file not found") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        msg = " ".join(str(e).split())  # keep the message on one line
        raise InputError(f"{path}: cannot read image ({msg})") from None


def _list_images(root: Path) -> list[Path]:
    """All image files under root (recursive), skipping hidden entries, sorted by relative path."""
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in IMAGE_EXTS and p.is_file():
            out.append(p)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def _image_id(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


class Dataset(torch.utils.data.Dataset):
    """Lazy list of (path, target-spec) items. Subclasses only build the index and the target."""

    kind = "base"

    def __init__(self, root: Path, items: Sequence[tuple[Path, Any]],
                 transform: Transform | None, limit: int | None,
                 target_transform: Callable[[Any], Any] | None = None) -> None:
        if limit is not None:
            if limit < 0:
                raise InputError(f"{root}: limit must be >= 0, got {limit}")
            items = items[:limit]
        self.root = root
        self.items = list(items)
        self.transform = transform or default_transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.items)

    def _target(self, path: Path, spec: Any) -> Any:
        return spec

    def __getitem__(self, i: int) -> Sample:
        path, spec = self.items[i]
        image = self.transform(load_rgb(path))
        target = self._target(path, spec)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return Sample(_image_id(path, self.root), image, target, path)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)})"


class FolderDataset(Dataset):
    """Any folder of images, no labels (fidelity-only runs)."""

    kind = "folder"

    def __init__(self, root: Path, transform: Transform | None = None, limit: int | None = None,
                 **kw: Any) -> None:
        paths = _list_images(root)
        if not paths:
            raise InputError(f"{root}: no images ({', '.join(sorted(IMAGE_EXTS))}) found")
        super().__init__(root, [(p, None) for p in paths], transform, limit, **kw)


def read_classes_tsv(path: Path) -> dict[str, int]:
    """wnid -> torchvision class index, from a TSV with a header holding ``wnid`` and
    optionally ``index`` (row order is the index when that column is absent)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t"))
    except OSError as e:
        raise InputError(f"{path}: cannot read classes file ({e.strerror})") from None
    if not rows or "wnid" not in rows[0]:
        raise InputError(f"{path}: classes file needs a header row with a 'wnid' column")
    header = rows[0]
    iw = header.index("wnid")
    ii = header.index("index") if "index" in header else None
    out: dict[str, int] = {}
    for n, row in enumerate(rows[1:]):
        if not row:
            continue
        try:
            out[row[iw]] = int(row[ii]) if ii is not None else n
        except (IndexError, ValueError):
            raise InputError(f"{path}: malformed row {n + 2}") from None
    return out


class ImageNetDataset(Dataset):
    """ImageNet-style classification; target = torchvision class index (int).

    Layouts: ``root/<wnid>/*.JPEG`` (class folders), or flat ``root/<wnid>_*.JPEG`` with a
    ``classes.tsv`` beside them. The wnid->index map comes from ``classes.tsv`` (in root or its
    parent) when present; for class folders without one, the sorted folder index is used
    (torchvision's ImageFolder convention, equal to the torchvision index on full ImageNet)."""

    kind = "imagenet"

    def __init__(self, root: Path, transform: Transform | None = None, limit: int | None = None,
                 classes: Path | None = None, **kw: Any) -> None:
        tsv = classes or next((p for p in (root / "classes.tsv", root.parent / "classes.tsv")
                               if p.is_file()), None)
        class_dirs = sorted(d.name for d in root.iterdir() if d.is_dir() and _WNID.fullmatch(d.name))
        wnid_to_idx = read_classes_tsv(tsv) if tsv else {w: i for i, w in enumerate(class_dirs)}
        items: list[tuple[Path, Any]] = []
        for p in _list_images(root):
            rel = p.relative_to(root)
            if len(rel.parts) > 1 and _WNID.fullmatch(rel.parts[0]):
                wnid = rel.parts[0]
            else:
                m = _FLAT_WNID.match(p.name)
                if not m:
                    raise InputError(f"{p}: cannot tell the ImageNet class (expected a <wnid>/ "
                                     "folder or a <wnid>_ file-name prefix)")
                wnid = m.group(1)
            if wnid not in wnid_to_idx:
                raise InputError(f"{p}: wnid {wnid} not in {tsv or 'the class folders'}")
            items.append((p, wnid_to_idx[wnid]))
        if not items:
            raise InputError(f"{root}: no ImageNet images found")
        self.wnid_to_idx = wnid_to_idx
        super().__init__(root, items, transform, limit, **kw)


class CocoDataset(Dataset):
    """COCO instances/keypoints JSON. Target dict: ``image_id`` (COCO int id), ``boxes``
    (float32 [N,4] xyxy, original pixel coordinates -- not transformed), ``labels`` (int64 COCO
    category ids), ``iscrowd`` (int64 [N]), ``orig_size`` ((H, W)). ``dataset.coco`` is the
    pycocotools COCO object for :func:`results.coco.coco_ap`."""

    kind = "coco"

    def __init__(self, root: Path, transform: Transform | None = None, limit: int | None = None,
                 ann_file: Path | None = None, image_dir: Path | None = None, **kw: Any) -> None:
        import contextlib
        import io

        from pycocotools.coco import COCO

        ann_file = ann_file or _find_coco_json(root)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints timing lines
                self.coco = COCO(str(ann_file))
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
            msg = " ".join(str(e).split())
            raise InputError(f"{ann_file}: not a readable COCO annotation file ({msg})") from None
        imgs = self.coco.dataset.get("images")
        if not imgs:
            raise InputError(f"{ann_file}: COCO file lists no images")
        image_dir = image_dir or _find_coco_images(ann_file, imgs[0]["file_name"])
        self.ann_file = ann_file
        self.image_dir = image_dir
        items = [(image_dir / im["file_name"], im["id"])
                 for im in sorted(imgs, key=lambda im: (im["file_name"], im["id"]))]
        super().__init__(image_dir, items, transform, limit, **kw)

    def _target(self, path: Path, coco_id: int) -> dict[str, Any]:
        info = self.coco.imgs[coco_id]
        anns = self.coco.imgToAnns.get(coco_id, [])
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        return {
            "image_id": coco_id,
            "boxes": boxes,
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([a.get("iscrowd", 0) for a in anns], dtype=torch.int64),
            "orig_size": (int(info.get("height", 0)), int(info.get("width", 0))),
        }


def _find_coco_json(root: Path) -> Path:
    if root.is_file():
        return root
    jsons = sorted((root / "annotations").glob("*.json")) if (root / "annotations").is_dir() else []
    pick = [p for p in jsons if p.name.startswith(("instances", "person_keypoints"))] or jsons
    if len(pick) != 1:
        what = "no" if not pick else "several"
        raise InputError(f"{root}: {what} COCO annotation JSONs in annotations/; pass the json path")
    return pick[0]


def _find_coco_images(ann_file: Path, first: str) -> Path:
    """Where the images of a COCO json live: common layouts tried in order."""
    base = ann_file.parent.parent if ann_file.parent.name == "annotations" else ann_file.parent
    split = ann_file.stem.split("_", 1)[-1]  # instances_val2017 -> val2017
    for d in (base / "images", base / split, base / "images" / split, base, ann_file.parent):
        if (d / first).is_file():
            return d
    raise InputError(f"{ann_file}: cannot find its images (looked for {first} under {base})")


class VocDataset(Dataset):
    """PASCAL VOC segmentation: ``JPEGImages/``, ``SegmentationClass/`` (palette PNGs) and
    ``ImageSets/Segmentation/<split>.txt``. Target = LongTensor [H,W] of class indices with
    255 = ignore (object borders). The mask is not resized by ``transform``; pass
    ``target_transform`` if the model's output resolution should be matched here."""

    kind = "voc"

    def __init__(self, root: Path, transform: Transform | None = None, limit: int | None = None,
                 split: str = "val", **kw: Any) -> None:
        if (root / "VOCdevkit" / "VOC2012").is_dir():
            root = root / "VOCdevkit" / "VOC2012"
        list_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        try:
            names = sorted({ln.strip() for ln in list_file.read_text().splitlines() if ln.strip()})
        except OSError:
            raise InputError(f"{list_file}: VOC split list not found") from None
        if not names:
            raise InputError(f"{list_file}: VOC split list is empty")
        items = [(root / "JPEGImages" / f"{n}.jpg", root / "SegmentationClass" / f"{n}.png")
                 for n in names]
        super().__init__(root, items, transform, limit, **kw)

    def _target(self, path: Path, mask_path: Path) -> torch.Tensor:
        try:
            with Image.open(mask_path) as m:
                m.load()
                if m.mode not in ("P", "L"):  # RGB masks would need a palette lookup
                    raise InputError(f"{mask_path}: VOC mask must be a palette or grey PNG, "
                                     f"got mode {m.mode}")
                arr = np.array(m, dtype=np.int64)
        except FileNotFoundError:
            raise InputError(f"{mask_path}: mask file not found") from None
        except (OSError, UnidentifiedImageError, SyntaxError) as e:
            msg = " ".join(str(e).split())
            raise InputError(f"{mask_path}: cannot read mask ({msg})") from None
        return torch.from_numpy(arr)

    def __getitem__(self, i: int) -> Sample:
        s = super().__getitem__(i)
        return Sample(s.path.stem, s.image, s.target, s.path)  # id = VOC name, e.g. 2007_000033



def detect_kind(path: Path) -> str:
    """Guess the layout: json/annotations -> coco, VOC dirs -> voc, classes.tsv or wnid
    folders -> imagenet, else folder."""
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "coco"
        raise InputError(f"{path}: not a dataset folder or COCO json")
    if (path / "JPEGImages").is_dir() or (path / "VOCdevkit" / "VOC2012").is_dir():
        return "voc"
    if (path / "annotations").is_dir() and any((path / "annotations").glob("*.json")):
        return "coco"
    if (path / "classes.tsv").is_file():
        return "imagenet"
    if any(d.is_dir() and _WNID.fullmatch(d.name) for d in path.iterdir()):
        return "imagenet"
    return "folder"


def open_dataset(path: str | Path, kind: str = "auto", transform: Transform | None = None,
                 limit: int | None = None, **options: Any) -> Dataset:
    """Open a dataset lazily. ``kind``: auto|folder|imagenet|coco|voc. ``transform`` is applied
    to the RGB PIL image (default: float Tensor[3,H,W] in [0,1]); ``limit`` keeps the first N
    samples in sorted order. Extra ``options`` go to the dataset class (``target_transform``;
    imagenet: ``classes``; coco: ``ann_file``, ``image_dir``; voc: ``split``)."""
    path = Path(path)
    try:
        KINDS.get(kind)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if not path.exists():
        raise InputError(f"{path}: dataset path does not exist")
    if kind == "auto":
        kind = detect_kind(path)
    elif path.is_file() and kind != "coco":
        raise InputError(f"{path}: a {kind} dataset must be a folder")
    return dataset_class(kind)(path, transform=transform, limit=limit, **options)


@dataclass(frozen=True)
class Batch:
    image_ids: list[str]
    images: torch.Tensor | list[Any]  # stacked [B,3,H,W] when all sizes match, else a list
    targets: torch.Tensor | list[Any]  # LongTensor for int labels / equal-size masks, else list
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.image_ids)


def _maybe_stack(xs: list[Any]) -> torch.Tensor | list[Any]:
    if xs and all(isinstance(x, torch.Tensor) for x in xs) and len({x.shape for x in xs}) == 1:
        return torch.stack(xs)
    if xs and all(isinstance(x, int) and not isinstance(x, bool) for x in xs):
        return torch.tensor(xs, dtype=torch.int64)
    return list(xs)


def collate(samples: Sequence[Sample]) -> Batch:
    """Group samples; tensors are stacked only when their shapes agree."""
    return Batch([s.image_id for s in samples], _maybe_stack([s.image for s in samples]),
                 _maybe_stack([s.target for s in samples]), [s.path for s in samples])


def batches(dataset: Dataset | Sequence[Sample], batch_size: int) -> Iterator[Batch]:
    """Stream the dataset in batches of ``batch_size`` (the last one may be shorter)."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    buf: list[Sample] = []
    for s in dataset:
        buf.append(s)
        if len(buf) == batch_size:
            yield collate(buf)
            buf = []
    if buf:
        yield collate(buf)


def load_samples(dataset: Dataset, indices: Sequence[int]) -> tuple[list[Sample], list[tuple[str, str]]]:
    """The samples at ``indices`` that load, and (image id, one-line error) for those that don't
    (an unreadable image is recorded and the run goes on)."""
    samples: list[Sample] = []
    errors: list[tuple[str, str]] = []
    for i in indices:
        try:
            samples.append(dataset[i])
        except Exception as exc:  # noqa: BLE001 - any decoder failure of one file
            path = dataset.items[i][0] if hasattr(dataset, "items") else i
            image_id = _image_id(path, dataset.root) if isinstance(path, Path) else str(path)
            errors.append((image_id, " ".join(str(exc).split()) or type(exc).__name__))
    return samples, errors
