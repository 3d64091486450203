"""Layout `image`: an RGB uint8 picture (the network input) coded as one colour picture, the way
image anchors are coded: YUV 4:2:0 (BT.601 full range) for x265, AV1 (8-bit) and VVenC (10-bit),
Pillow's JFIF 4:2:0 for JPEG, R/G/B planes 4:4:4 for lossless (the exact pixels come back).

The file is a .vcfc container like any other: its header says `layout: image`, the picture's
shape and kind as given, and the colour conversion (format, matrix, range, chroma filters); the
one stream is the codec's payload of that picture. `vcfc.encode`/`decode`/`inspect` dispatch
here for layout image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import container
from .codecs import Codec
from .errors import InputError
from .packing.layouts import IMAGE_LAYOUT
from .spec import CodingSpec
from .version import __version__

NAME = "x"  # the one tensor of a picture file (as for single feature tensors)
# The split point before the network, which every model has (vcfc.runners): its features are the
# uint8 network input, coded with layout image. The remote-inference anchor of every report.
INPUT_LAYER = "input"


@dataclass
class PictureMeta:
    shape: list[int]  # as given: (3, H, W), (1, 3, H, W) or (H, W, 3)
    order: str        # "chw" or "hwc"
    kind: str         # "torch" or "numpy"


def to_rgb(image: Any) -> tuple[np.ndarray, PictureMeta]:
    """(H, W, 3) uint8 RGB of an image given as a uint8 torch tensor or numpy array, (3, H, W),
    (1, 3, H, W) or (H, W, 3); torch tensors are read as C×H×W, numpy arrays of shape (3, H, 3)
    as H×W×C (what Pillow gives)."""
    kind = "torch" if type(image).__module__.startswith("torch") else "numpy"
    if kind == "torch":
        arr = image.detach().cpu().numpy()
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise InputError(f"layout image codes a uint8 RGB picture (numpy or torch), got {type(image).__name__}")
    shape = list(arr.shape)
    if arr.dtype != np.uint8:
        raise InputError(f"layout image codes uint8 RGB pixels, got dtype {arr.dtype} (features take another layout)")
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] == 3 and (kind == "torch" or arr.shape[2] != 3):
        order, rgb = "chw", np.moveaxis(arr, 0, -1)
    elif arr.ndim == 3 and arr.shape[2] == 3:
        order, rgb = "hwc", arr
    else:
        raise InputError(f"layout image codes one RGB picture, (3,H,W), (1,3,H,W) or (H,W,3); got shape {shape}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise InputError(f"empty picture, shape {shape}")
    return np.ascontiguousarray(rgb), PictureMeta(shape, order, kind)


def from_rgb(rgb: np.ndarray, meta: PictureMeta) -> Any:
    """The picture in the shape and kind it was given (inverse of to_rgb)."""
    arr = np.moveaxis(rgb, -1, 0) if meta.order == "chw" else rgb
    arr = np.ascontiguousarray(arr).reshape(meta.shape)
    if meta.kind == "torch":
        import torch  # deferred: numpy users do not pay torch's import

        return torch.from_numpy(arr)
    return arr


def picture_qp(spec: CodingSpec, qp: int | None, channel_qps: Any) -> int:
    """The one QP of a picture: ``qp``, or ``channel_qps`` when every value is the same."""
    if channel_qps is not None:
        values = np.unique(np.concatenate([np.ravel(v) for v in (channel_qps.values() if isinstance(channel_qps, dict)
                                                                  else [channel_qps])]))
        if qp is not None or values.size != 1:
            raise InputError("layout image codes one picture at one QP: give qp (or channel_qps all equal)")
        qp = int(values[0])
    if qp is None:
        if spec.uses_qp:
            raise InputError(f"codec {spec.codec} needs a QP: pass qp=N")
        return 0
    return spec.check_qp(int(qp)) if spec.uses_qp else 0


def encode_picture(image: Any, spec: CodingSpec, qp: int, *, ffmpeg: str | None = None,
                   threads: int | None = None) -> bytes:
    """The bytes of a .vcfc file holding one RGB picture coded with ``spec``'s codec at ``qp``."""
    rgb, meta = to_rgb(image)
    backend = spec.backend(ffmpeg, threads)
    return picture_file(rgb.shape[:2], meta, spec, backend, qp, backend.encode_image(rgb, qp, spec.preset))


def picture_file(hw: tuple[int, int], meta: PictureMeta, spec: CodingSpec, backend: Codec, qp: int,
                 payload: bytes) -> bytes:
    """The .vcfc file of one picture of size ``hw`` coded by ``backend`` (payload of its encode_image)."""
    height, width = int(hw[0]), int(hw[1])
    ch, cw = backend.image_size(height, width)
    header = {
        "vcfc": __version__,
        "single": True,
        "layout": IMAGE_LAYOUT,
        "codec": {"name": spec.codec, "preset": spec.preset, "bits": 8},
        "align": backend.image_align,
        "image": {"shape": meta.shape, "order": meta.order, "kind": meta.kind, "height": height, "width": width,
                  "color": backend.color()},
        "qps": {NAME: [int(qp)] * 3},
        "streams": [{"qp": int(qp), "frames": 1, "height": ch, "width": cw}],
        "input_hw": [height, width],
    }
    return container.write(container.Container(header=header, arrays={}, payloads=[payload]))
