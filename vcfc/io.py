"""Reading and writing feature files (.npy, .safetensors), QP lists and JSON; atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

FEATURE_SUFFIXES = (".npy", ".safetensors")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")  # read/written with Pillow


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; moved onto ``path`` (after fsync) only when
    the block succeeds, so a crash or Ctrl-C never leaves a half-written file behind."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: the folder {path.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # survive a power cut, not just a process kill
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Where commands write, checked before any work (one rule for every command): an output file's
# folder must exist and take a new file, and an existing file is replaced only when asked; an
# output folder is created with its parents, so the nearest folder that exists must take files.

def _check_writable(folder: Path, what: Path) -> None:
    """Create and remove a file in ``folder``: the only test that holds for read-only mounts,
    ACLs and root alike (os.access says yes to root everywhere)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".vcfc-probe-", dir=folder)
    except OSError as exc:
        raise InputError(f"{what}: cannot write in {folder} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(tmp)


def output_file(path: str | Path, force: bool = False, in_new_folder: bool = False) -> Path:
    """Check that ``path`` can be written (before any work): its folder exists and is writable,
    it is not a folder, and it does not exist unless ``force`` (the CLI's --force).
    ``in_new_folder``: the folder may be created (a set of files under one prefix, as a profile)."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a file")
    if p.exists() and not force:
        raise InputError(f"{p}: exists; --force replaces it")
    if in_new_folder:
        output_dir(p.parent)
        return p
    if not p.parent.is_dir():
        raise InputError(f"{p}: the folder {p.parent} does not exist")
    _check_writable(p.parent, p)
    return p


def output_dir(path: str | Path, replace: bool = True) -> Path:
    """Check that folder ``path`` can be written or created (before any work). ``replace=False``
    refuses a folder that already holds files (the CLI's --force allows it); a report or a
    resumable run folder is written into as it is."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{p}: exists and is not a folder")
    if not replace and p.is_dir() and any(p.iterdir()):
        raise InputError(f"{p}: holds files already; --force writes over them")
    existing = p.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{p}: {existing} is not a folder")
    _check_writable(existing, p)
    return p


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (see atomic_path); str is written as UTF-8."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def bundled(*parts: str) -> Path:
    """A file or folder shipped inside the package (vcfc/data/...: the demo experiment, 24 Kodak
    images), found through importlib.resources wherever vcfc is installed."""
    return Path(os.fspath(resources.files("vcfc").joinpath("data", *parts)))


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: numpy scalars and arrays become numbers and lists, anything
    else JSON cannot hold becomes its ``str`` (paths, dtypes, devices)."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def load_features(path: str | Path) -> Any:
    """A .npy file gives one array; a .safetensors file gives a dict of tensors (bf16 kept)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() in PICTURE_SUFFIXES:
        return load_picture(path)
    if path.suffix == ".npy":
        try:
            # allow_pickle=False: a .npy from elsewhere must never run code.
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"{path}: not a readable .npy array ({_short(exc)})") from None
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .safetensors file ({_short(exc)})") from None
        if not tensors:
            raise InputError(f"{path}: the .safetensors file holds no tensors")
        return dict(tensors)
    raise InputError(f"{path}: features must be .npy or .safetensors (a picture: {', '.join(PICTURE_SUFFIXES)})")


def load_picture(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (what layout image codes)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"), np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: not a readable picture ({_short(exc)})") from None


def save_picture(path: str | Path, picture: Any) -> None:
    """Write a uint8 RGB picture ((H, W, 3), or (3, H, W) as torch gives it) as PNG/JPEG/…, atomically."""
    from PIL import Image

    from .picture import to_rgb  # deferred: feature files need no codec

    try:
        rgb, _ = to_rgb(picture)
    except InputError:
        shape = list(getattr(picture, "shape", []))
        raise InputError(f"{path}: only a uint8 RGB picture can be written as {Path(path).suffix}; "
                         f"this holds {getattr(picture, 'dtype', type(picture).__name__)} {shape} "
                         f"(write .npy or .safetensors)") from None
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(Path(path).suffix.lower(),
                                                                               Path(path).suffix[1:].upper())
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(tmp, format=fmt)


def save_features(path: str | Path, features: Any) -> None:
    """Write features as .npy (one tensor) or .safetensors (a dict, or one tensor named "x"), a
    picture as an image file (by suffix), atomically."""
    path = Path(path)
    if path.suffix.lower() in PICTURE_SUFFIXES:
        save_picture(path, features)
        return
    if path.suffix == ".npy":
        if isinstance(features, dict):
            raise InputError(f"{path}: the file holds {len(features)} tensors; write .safetensors instead of .npy")
        arr = features.float().numpy() if hasattr(features, "numpy") and str(features.dtype) == "torch.bfloat16" else features
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(arr))
        return
    if path.suffix == ".safetensors":
        import torch  # deferred: .npy users should not pay torch's import
        from safetensors.torch import save_file

        items = features if isinstance(features, dict) else {"x": features}
        tensors = {k: (v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))).contiguous()
                   for k, v in items.items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))
        return
    raise InputError(f"{path}: output must end in .npy or .safetensors (a picture: {', '.join(PICTURE_SUFFIXES)})")


def load_qps(path: str | Path) -> list[int]:
    """One integer per line (blank lines and # comments ignored)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read QP file ({_short(exc)})") from None
    qps = []
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            qps.append(int(line))
        except ValueError:
            raise InputError(f"{path}:{n}: expected one integer QP per line, got {line!r}") from None
    if not qps:
        raise InputError(f"{path}: no QPs in file")
    return qps


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
