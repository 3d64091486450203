"""RGB pictures as the planes a codec codes: BT.601 full-range YCbCr 4:2:0 (the JFIF conversion
JPEG uses, so every codec of the image anchor sees the same colour space), or GBR 4:4:4 planes
unchanged (lossless coding: the exact pixels come back).

    Y  =  0.299 R + 0.587 G + 0.114 B
    Cb = -0.168736 R - 0.331264 G + 0.5 B + 128
    Cr =  0.5 R - 0.418688 G - 0.081312 B + 128          (full range: 0..255, no 16..235 footroom)

4:2:0 chroma: the mean of each 2×2 block (centred siting, as JPEG); back up with the triangle
filter libjpeg calls "fancy upsampling" (3/4 of the nearest sample, 1/4 of the next, per axis).
Odd sizes and codec alignment: edge-replicated padding, cropped again after decoding.
"""

from __future__ import annotations

import numpy as np

from vcfc.registry import Registry

from .errors import PackingError

_TO_YCC = np.array([[0.299, 0.587, 0.114],
                    [-0.168736, -0.331264, 0.5],
                    [0.5, -0.418688, -0.081312]])
_FROM_YCC = np.array([[1.0, 0.0, 1.402],
                      [1.0, -0.344136, -0.714136],
                      [1.0, 1.772, 0.0]])

# The colour formats a picture can be coded in: name -> what the header says about it.
# (4:2:0 filters: ours above for yuv420p, libjpeg's own for jpeg.)
COLOR_FORMATS: Registry[dict[str, str]] = Registry("colour format", [
    ("yuv420p", {"matrix": "bt601", "range": "full", "chroma": "420"}),
    ("gbrp", {"matrix": "rgb", "range": "full", "chroma": "444"}),
    ("jpeg", {"matrix": "bt601", "range": "full", "chroma": "420"}),
], error=PackingError)


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    """A (H, W, 3) uint8 array, or PackingError."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise PackingError(f"a picture must be a uint8 (H, W, 3) RGB array, got {getattr(rgb, 'dtype', type(rgb))} "
                           f"{getattr(rgb, 'shape', '')}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise PackingError(f"empty picture, shape {rgb.shape}")
    return rgb


def pad_to(planes: np.ndarray, multiple: int) -> np.ndarray:
    """(H, W, ...) padded at the bottom/right by edge replication to multiples of ``multiple``."""
    h, w = planes.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if not ph and not pw:
        return planes
    return np.pad(planes, ((0, ph), (0, pw)) + ((0, 0),) * (planes.ndim - 2), mode="edge")


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y (H, W), Cb and Cr (H/2, W/2), uint8, of an RGB picture whose sides are even."""
    rgb = check_rgb(rgb)
    h, w, _ = rgb.shape
    if h % 2 or w % 2:
        raise PackingError(f"4:2:0 needs even sides, got {h}x{w} (pad first)")
    ycc = rgb.astype(np.float64) @ _TO_YCC.T
    ycc[..., 1:] += 128.0
    y = ycc[..., 0]
    chroma = ycc[..., 1:].reshape(h // 2, 2, w // 2, 2, 2).mean(axis=(1, 3))
    return _u8(y), _u8(chroma[..., 0]), _u8(chroma[..., 1])


def yuv420_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """The (H, W, 3) uint8 RGB picture of 4:2:0 planes (inverse of rgb_to_yuv420 up to rounding)."""
    h, w = y.shape
    if cb.shape != (h // 2, w // 2) or cr.shape != cb.shape:
        raise PackingError(f"chroma planes {cb.shape}/{cr.shape} do not fit a {h}x{w} luma plane")
    ycc = np.stack([y.astype(np.float64), _upsample(cb), _upsample(cr)], axis=-1)
    ycc[..., 1:] -= 128.0
    return _u8(ycc @ _FROM_YCC.T)


def _upsample(c: np.ndarray) -> np.ndarray:
    """Twice the size per axis: each output sample 3/4 of its own input sample, 1/4 of the next
    one away from it (edges replicated)."""
    c = c.astype(np.float64)
    for axis in (0, 1):
        prev = np.concatenate([np.take(c, [0], axis), np.take(c, range(c.shape[axis] - 1), axis)], axis)
        nxt = np.concatenate([np.take(c, range(1, c.shape[axis]), axis), np.take(c, [-1], axis)], axis)
        even, odd = 0.75 * c + 0.25 * prev, 0.75 * c + 0.25 * nxt
        c = np.stack([even, odd], axis=axis + 1).reshape(*c.shape[:axis], 2 * c.shape[axis], *c.shape[axis + 1:])
    return c


def _u8(v: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)
