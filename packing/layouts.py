"""Frame layouts: place (C,H,W) integer codes into equal-size video frames and back.

A *channel* is ``(tensor_name, c)``; a *stream* (one ``FramePlan``) is a list of equal-size
frames coded at one QP.  Plans are a pure function of their arguments (the decoder re-derives
them from the header), so every choice here uses exact integer/rational arithmetic -- no float
ties that could break differently on another machine.

Layouts:
  mosaic        one frame.  Channels of one tile size: near-square raster grid.  Several tile
                sizes (FPN p2..p5): a shelf layout -- frame width from the largest group's
                near-square grid, each size group tiled in full-width rows, groups stacked
                vertically in order of first appearance.
  mosaic-level  one mosaic frame (and FramePlan) per tensor.
  frames        one frame per channel (channel-as-frame); one FramePlan per distinct tile size.

Unused cells and alignment padding are filled by edge replication (from the left, then from
above -- exactly np.pad(mode="edge") for bottom/right padding), which intra prediction codes
for almost nothing, unlike a zero border next to bright data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from vcfc.registry import Registry

from .errors import PackingError

__all__ = ["LAYOUTS", "IMAGE_LAYOUT", "feature_layouts", "Placement", "FramePlan", "plan_streams", "pack", "unpack", "occupied_fraction"]


@dataclass
class Placement:
    name: str
    c: int
    frame: int
    y: int  # top-left of the H x W tile
    x: int


@dataclass
class FramePlan:
    height: int  # padded frame size (multiple of align)
    width: int
    n_frames: int
    placements: list[Placement] = field(default_factory=list)


Channel = tuple[str, int]
Shape = tuple[int, int, int]
TileSize = Callable[[Channel], tuple[int, int]]  # (H, W) of a channel's tile


# ----------------------------------------------------------------------------- planning

def _align_up(v: int, align: int) -> int:
    return -(-v // align) * align


def _grid(n: int, h: int, w: int) -> tuple[int, int]:
    """(rows, cols) of a near-square raster grid for n tiles of h x w.

    Score = frame aspect (>= 1) x grid cells / n (>= 1), i.e. log-aspect plus ~wasted fraction:
    closest to square while not wasting cells.  Exact Fractions; ties -> fewer columns.
    """
    best: tuple[Fraction, int, int] | None = None
    for cols in range(1, n + 1):
        rows = -(-n // cols)
        a, b = rows * h, cols * w
        score = Fraction(max(a, b), min(a, b)) * Fraction(rows * cols, n)
        if best is None or score < best[0]:
            best = (score, rows, cols)
    assert best is not None
    return best[1], best[2]


def _grid_plan(items: list[Channel], h: int, w: int, align: int) -> FramePlan:
    rows, cols = _grid(len(items), h, w)
    pl = [Placement(name, c, 0, (i // cols) * h, (i % cols) * w) for i, (name, c) in enumerate(items)]
    return FramePlan(_align_up(rows * h, align), _align_up(cols * w, align), 1, pl)


def _shelf_plan(groups: list[tuple[tuple[int, int], list[Channel]]], align: int) -> FramePlan:
    # Width: the near-square grid of the group with the largest total area (ties -> first),
    # so that group (p2 in an FPN) is laid out as if alone and the smaller ones fill shelves
    # of the same width below it.
    big = max(range(len(groups)), key=lambda i: (len(groups[i][1]) * groups[i][0][0] * groups[i][0][1], -i))
    (bh, bw), bitems = groups[big]
    _, bcols = _grid(len(bitems), bh, bw)
    width = _align_up(max(bcols * bw, max(w for (_, w), _ in groups)), align)
    pl: list[Placement] = []
    y0 = 0
    for (h, w), items in groups:
        per_row = width // w  # the aligned width may admit an extra tile: use it
        for i, (name, c) in enumerate(items):
            pl.append(Placement(name, c, 0, y0 + (i // per_row) * h, (i % per_row) * w))
        y0 += -(-len(items) // per_row) * h
    return FramePlan(_align_up(y0, align), width, 1, pl)


def _group(channels: list[Channel], key) -> list[tuple[object, list[Channel]]]:
    """Group channels by key(ch), groups and members in first-appearance order."""
    groups: dict[object, list[Channel]] = {}
    for ch in channels:
        groups.setdefault(key(ch), []).append(ch)
    return list(groups.items())


def _validate_plan_args(shapes: dict[str, Shape], channels: list[Channel], layout: str, align: int) -> None:
    LAYOUTS.get(layout)
    if isinstance(align, bool) or not isinstance(align, (int, np.integer)) or align < 1:
        raise PackingError(f"align must be an integer >= 1, got {align!r}")
    for name, shp in shapes.items():
        if (len(tuple(shp)) != 3 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                             and v > 0 for v in shp)):
            raise PackingError(f"shape of {name!r} must be three positive ints (C,H,W), got {shp!r}")
    seen: set[Channel] = set()
    for ch in channels:
        try:
            name, c = ch
        except (TypeError, ValueError):
            raise PackingError(f"a channel must be a (tensor_name, c) pair, got {ch!r}") from None
        if name not in shapes:
            raise PackingError(f"channel {ch!r} names unknown tensor {name!r}")
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < shapes[name][0]:
            raise PackingError(f"channel {ch!r}: index out of range for {name!r} with {shapes[name][0]} channels")
        if (name, int(c)) in seen:
            raise PackingError(f"channel {ch!r} is listed twice")
        seen.add((name, int(c)))


# ----------------------------------------------------------------------------- the layouts
# Each takes the channels to place (in order), their tile size and the alignment, and returns
# the stream(s) they go in. Registered in LAYOUTS below.

def plan_frames(chans: list[Channel], size: TileSize, align: int) -> list[FramePlan]:
    """One picture per channel; one stream per distinct tile size."""
    plans = []
    for (h, w), items in _group(chans, size):
        pl = [Placement(name, c, i, 0, 0) for i, (name, c) in enumerate(items)]
        plans.append(FramePlan(_align_up(h, align), _align_up(w, align), len(items), pl))
    return plans


def plan_mosaic_level(chans: list[Channel], size: TileSize, align: int) -> list[FramePlan]:
    """One mosaic picture per tensor."""
    return [_grid_plan(items, *size(items[0]), align) for _, items in _group(chans, lambda ch: ch[0])]


def plan_mosaic(chans: list[Channel], size: TileSize, align: int) -> list[FramePlan]:
    """One picture: a near-square grid, or shelves when tile sizes differ (an FPN)."""
    groups = _group(chans, size)
    if len(groups) == 1:
        (h, w), items = groups[0]
        return [_grid_plan(items, h, w, align)]
    return [_shelf_plan(groups, align)]  # type: ignore[arg-type]


def plan_image(chans: list[Channel], size: TileSize, align: int) -> list[FramePlan]:
    """Layout image is not a plan of feature channels: an RGB picture coded as one colour picture
    (vcfc.picture; the codec converts it, see vcfc.packing.color)."""
    raise PackingError("layout image codes one uint8 RGB picture (the network input), not feature channels")


IMAGE_LAYOUT = "image"  # the one layout that codes a picture, not feature channels

LAYOUTS: Registry[Callable[[list[Channel], TileSize, int], list[FramePlan]]] = Registry(
    "layout", [("mosaic", plan_mosaic), ("mosaic-level", plan_mosaic_level), ("frames", plan_frames),
               (IMAGE_LAYOUT, plan_image)],
    error=PackingError)


def feature_layouts() -> list[str]:
    """The registered layouts that place feature channels (all but the picture layout)."""
    return [name for name in LAYOUTS if name != IMAGE_LAYOUT]


def plan_streams(shapes: dict[str, Shape], channels: list[Channel], layout: str, align: int) -> list[FramePlan]:
    """Place the listed channels (in list order) into one or more FramePlans.

    shapes: tensor name -> (C,H,W).  Only `channels` are placed.  Frame sizes are multiples
    of `align`.  Returns [] for an empty channel list.
    """
    _validate_plan_args(shapes, channels, layout, align)
    chans = [(name, int(c)) for name, c in channels]
    if not chans:
        return []

    def size(ch: Channel) -> tuple[int, int]:
        return int(shapes[ch[0]][1]), int(shapes[ch[0]][2])

    return LAYOUTS.get(layout)(chans, size, int(align))


def occupied_fraction(plan: FramePlan, shapes: dict[str, Shape]) -> float:
    """Fraction of the plan's frame area covered by tiles (1.0 = no padding at all)."""
    used = sum(int(shapes[p.name][1]) * int(shapes[p.name][2]) for p in plan.placements)
    return used / float(plan.n_frames * plan.height * plan.width)


# ----------------------------------------------------------------------------- pack / unpack

def _tile_hw(arrays: dict[str, np.ndarray], name: str, c: int, what: str) -> tuple[int, int]:
    if name not in arrays:
        raise PackingError(f"{what} has no tensor {name!r} named by the plan")
    a = arrays[name]
    if not isinstance(a, np.ndarray) or a.ndim != 3:
        raise PackingError(f"{what}[{name!r}] must be a (C,H,W) array, got shape {getattr(a, 'shape', None)}")
    if not 0 <= c < a.shape[0]:
        raise PackingError(f"plan places channel {c} of {name!r} but it has {a.shape[0]} channels")
    return int(a.shape[1]), int(a.shape[2])


def _check_inside(p: Placement, h: int, w: int, plan: FramePlan) -> None:
    if not (0 <= p.frame < plan.n_frames and p.y >= 0 and p.x >= 0
            and p.y + h <= plan.height and p.x + w <= plan.width):
        raise PackingError(f"tile {p.name!r}[{p.c}] ({h}x{w} at frame {p.frame}, y={p.y}, x={p.x}) "
                           f"does not fit a {plan.n_frames}x{plan.height}x{plan.width} plan")


def _fill_index(mask: np.ndarray) -> np.ndarray:
    """For each position, the index of the occupied position to copy: the nearest one to the
    left/above, or -- for a leading gap -- the first occupied one."""
    idx = np.where(mask, np.arange(mask.size), -1)
    idx = np.maximum.accumulate(idx)
    return np.where(idx < 0, int(np.argmax(mask)), idx)


def _fill(out: np.ndarray, fi: np.ndarray, rects: tuple[tuple[int, int, int, int], ...]) -> None:
    """Edge-replicate into the unoccupied pixels of frames `fi`, which share tiles `rects`."""
    _, H, W = out.shape
    if not rects:  # never produced by plan_streams; keep the frame flat
        out[fi] = 0
        return
    f3 = fi[:, None, None]
    bounds = sorted({0, H, *(y for y, _, _, _ in rects), *(y + h for y, _, h, _ in rects)})
    row_occ = np.zeros(H, dtype=bool)
    # 1) horizontally, band by band of rows that share the same occupied columns
    for b0, b1 in zip(bounds[:-1], bounds[1:]):
        cols = np.zeros(W, dtype=bool)
        for y, x, h, w in rects:
            if y <= b0 and y + h >= b1:
                cols[x:x + w] = True
        if not cols.any():
            continue
        row_occ[b0:b1] = True
        gap = np.flatnonzero(~cols)
        if gap.size:
            src = _fill_index(cols)[gap]
            rows = np.arange(b0, b1)[None, :, None]
            out[f3, rows, gap[None, None, :]] = out[f3, rows, src[None, None, :]]
    # 2) vertically, whole rows with no tile at all (bottom padding, gaps between shelves)
    empty = np.flatnonzero(~row_occ)
    if empty.size:
        src = _fill_index(row_occ)[empty]
        out[fi[:, None], empty[None, :]] = out[fi[:, None], src[None, :]]


def pack(q: dict[str, np.ndarray], plan: FramePlan) -> np.ndarray:
    """Lay codes q[name] (C,H,W) out as frames (n_frames, height, width) uint16."""
    out = np.empty((plan.n_frames, plan.height, plan.width), dtype=np.uint16)
    checked: set[str] = set()
    per_frame: dict[int, list[tuple[int, int, int, int]]] = {f: [] for f in range(plan.n_frames)}
    for p in plan.placements:
        h, w = _tile_hw(q, p.name, p.c, "codes")
        if p.name not in checked:
            a = q[p.name]
            if not np.issubdtype(a.dtype, np.integer):
                raise PackingError(f"codes[{p.name!r}] must be integers, got dtype {a.dtype}")
            if a.size and (int(a.min()) < 0 or int(a.max()) > 0xFFFF):
                raise PackingError(f"codes[{p.name!r}] do not fit uint16 (min {int(a.min())}, max {int(a.max())})")
            checked.add(p.name)
        _check_inside(p, h, w, plan)
        out[p.frame, p.y:p.y + h, p.x:p.x + w] = q[p.name][p.c]
        per_frame[p.frame].append((p.y, p.x, h, w))
    # Frames with the same tile geometry (all of them, for "frames") are filled together.
    by_geom: dict[tuple, list[int]] = {}
    for f, rects in per_frame.items():
        by_geom.setdefault(tuple(sorted(rects)), []).append(f)
    for rects, frames in by_geom.items():
        _fill(out, np.asarray(frames, dtype=np.intp), rects)
    return out


def unpack(frames: np.ndarray, plan: FramePlan, out: dict[str, np.ndarray]) -> None:
    """Copy every placed tile of `frames` back into out[name][c] (arrays pre-allocated (C,H,W))."""
    want = (plan.n_frames, plan.height, plan.width)
    if not isinstance(frames, np.ndarray) or frames.shape != want:
        raise PackingError(f"frames have shape {getattr(frames, 'shape', None)}, plan expects {want}")
    for p in plan.placements:
        h, w = _tile_hw(out, p.name, p.c, "out")
        _check_inside(p, h, w, plan)
        out[p.name][p.c] = frames[p.frame, p.y:p.y + h, p.x:p.x + w]
