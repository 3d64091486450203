"""Tests of packing.layouts (plans, pack/unpack, padding) and packing.reorder."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vcfc.packing import (
    IMAGE_LAYOUT,
    FramePlan,
    PackingError,
    Placement,
    feature_layouts,
    occupied_fraction,
    pack,
    plan_streams,
    similarity_order,
    unpack,
)

ALIGNS = (1, 8, 16, 64)
LAYOUTS = feature_layouts()  # the picture layout codes an RGB picture, tested below and in test_picture
FPN = {"p2": (256, 200, 336), "p3": (256, 100, 168), "p4": (256, 50, 84), "p5": (256, 25, 42)}
SMALL_FPN = {"p2": (6, 20, 34), "p3": (6, 10, 17), "p4": (6, 5, 9), "p5": (6, 3, 5)}
CASES = {
    "odd": {"x": (3, 7, 5)},
    "one": {"x": (1, 1, 1)},
    "square": {"x": (16, 4, 4)},
    "wide": {"x": (13, 3, 11)},
    "fpn": SMALL_FPN,
    "two_same_size": {"a": (5, 6, 7), "b": (4, 6, 7)},
}


def all_channels(shapes):
    return [(n, c) for n, s in shapes.items() for c in range(s[0])]


def random_codes(shapes, seed=0, hi=65536):
    r = np.random.default_rng(seed)
    return {n: r.integers(0, hi, s, dtype=np.uint16) for n, s in shapes.items()}


def roundtrip(shapes, channels, layout, align, seed=0):
    q = random_codes(shapes, seed)
    plans = plan_streams(shapes, channels, layout, align)
    out = {n: np.zeros_like(a) for n, a in q.items()}
    for plan in plans:
        frames = pack(q, plan)
        assert frames.dtype == np.uint16
        assert frames.shape == (plan.n_frames, plan.height, plan.width)
        unpack(frames, plan, out)
    return q, out, plans


def occupancy(plan, shapes):
    """Count of tiles covering each pixel."""
    occ = np.zeros((plan.n_frames, plan.height, plan.width), np.int32)
    for p in plan.placements:
        _, h, w = shapes[p.name]
        occ[p.frame, p.y:p.y + h, p.x:p.x + w] += 1
    return occ


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("align", ALIGNS)
def test_pack_unpack_is_identity(case, layout, align):
    shapes = CASES[case]
    chans = all_channels(shapes)
    q, out, plans = roundtrip(shapes, chans, layout, align)
    for n in q:
        np.testing.assert_array_equal(out[n], q[n])
    placed = [(p.name, p.c) for plan in plans for p in plan.placements]
    assert sorted(placed) == sorted(chans)
    for plan in plans:
        assert plan.height % align == 0 and plan.width % align == 0
        assert occupancy(plan, shapes).max() == 1  # no overlapping tiles


def test_real_fpn_mosaic_roundtrip():
    q, out, plans = roundtrip(FPN, all_channels(FPN), "mosaic", 64)
    assert len(plans) == 1 and plans[0].n_frames == 1
    for n in q:
        np.testing.assert_array_equal(out[n], q[n])


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=4),
    layout=st.sampled_from(LAYOUTS),
    align=st.sampled_from(ALIGNS),
    data=st.data(),
)
def test_property_roundtrip_subsets_in_any_order(sizes, layout, align, data):
    shapes = {f"t{i}": s for i, s in enumerate(sizes)}
    chans = data.draw(st.permutations(all_channels(shapes)))
    chans = chans[: data.draw(st.integers(1, len(chans)))]
    q, out, plans = roundtrip(shapes, chans, layout, align)
    for n, c in chans:
        np.testing.assert_array_equal(out[n][c], q[n][c])
    unplaced = set(all_channels(shapes)) - set(chans)
    assert all((out[n][c] == 0).all() for n, c in unplaced)  # only listed channels are written
    for plan in plans:
        assert plan.height % align == 0 and plan.width % align == 0
        assert occupancy(plan, shapes).max() == 1


# ----------------------------------------------------------------------------- plans

@pytest.mark.parametrize("layout", LAYOUTS)
def test_plans_are_deterministic(layout):
    chans = all_channels(FPN)[::-3]
    a = plan_streams(FPN, chans, layout, 16)
    b = plan_streams(dict(FPN), list(chans), layout, 16)
    assert a == b


def test_mosaic_single_tensor_near_square_raster_contiguous():
    plan, = plan_streams({"x": (16, 4, 4)}, all_channels({"x": (16, 4, 4)}), "mosaic", 1)
    assert (plan.height, plan.width) == (16, 16)
    assert [(p.y, p.x) for p in plan.placements[:5]] == [(0, 0), (0, 4), (0, 8), (0, 12), (4, 0)]
    # C=256 at 200x336: near-square frame, few unused cells
    shapes = {"x": FPN["p2"]}
    plan, = plan_streams(shapes, all_channels(shapes), "mosaic", 1)
    assert 0.8 < plan.height / plan.width < 1.25
    assert occupied_fraction(plan, shapes) > 0.95
    # tiles contiguous: every full grid row has no gaps, the grid starts at (0,0)
    occ = occupancy(plan, shapes)[0]
    full_rows = (len(plan.placements) // (plan.width // 336)) * 200
    assert occ[:full_rows].all()


def test_mosaic_follows_channel_list_order():
    shapes = {"x": (5, 2, 3)}
    chans = [("x", 3), ("x", 0), ("x", 4)]
    plan, = plan_streams(shapes, chans, "mosaic", 1)
    assert [(p.name, p.c) for p in plan.placements] == chans
    assert (plan.placements[0].y, plan.placements[0].x) == (0, 0)
    assert len(plan.placements) == 3


def test_fpn_shelf_is_one_compact_frame_with_levels_stacked_in_order():
    plan, = plan_streams(FPN, all_channels(FPN), "mosaic", 1)
    assert plan.n_frames == 1
    assert occupied_fraction(plan, FPN) >= 0.8
    # width is the p2 near-square mosaic width; levels stacked vertically in the given order
    p2_plan, = plan_streams({"p2": FPN["p2"]}, all_channels({"p2": FPN["p2"]}), "mosaic", 1)
    assert plan.width == p2_plan.width
    spans = {}
    for p in plan.placements:
        h = FPN[p.name][1]
        lo, hi = spans.get(p.name, (10**9, -1))
        spans[p.name] = (min(lo, p.y), max(hi, p.y + h))
    order = ["p2", "p3", "p4", "p5"]
    assert spans["p2"][0] == 0
    for a, b in zip(order, order[1:]):
        assert spans[a][1] == spans[b][0]  # no vertical gap between levels
    for align in (8, 64):
        plan, = plan_streams(FPN, all_channels(FPN), "mosaic", align)
        assert occupied_fraction(plan, FPN) >= 0.8


def test_fpn_shelf_order_follows_first_appearance():
    chans = [("p5", 0), ("p2", 1), ("p5", 1), ("p3", 0)]
    plan, = plan_streams(FPN, chans, "mosaic", 1)
    ys = {p.name: p.y for p in plan.placements}
    assert ys["p5"] == 0 and ys["p2"] == 25 and ys["p3"] == 225
    assert plan.width >= 336


def test_mosaic_level_one_plan_per_tensor():
    plans = plan_streams(FPN, all_channels(FPN), "mosaic-level", 8)
    assert len(plans) == 4
    for plan, name in zip(plans, FPN):
        assert plan.n_frames == 1
        assert {p.name for p in plan.placements} == {name}
        assert occupied_fraction(plan, {name: FPN[name]}) > 0.9


def test_frames_layout_groups_by_size_in_first_appearance_order():
    shapes = {"a": (3, 5, 7), "b": (2, 4, 4), "c": (2, 5, 7)}
    chans = [("b", 1), ("a", 0), ("c", 1), ("b", 0), ("a", 2)]
    plans = plan_streams(shapes, chans, "frames", 8)
    assert [(p.height, p.width, p.n_frames) for p in plans] == [(8, 8, 2), (8, 8, 3)]
    assert [(p.name, p.c, p.frame) for p in plans[0].placements] == [("b", 1, 0), ("b", 0, 1)]
    assert [(p.name, p.c, p.frame) for p in plans[1].placements] == [("a", 0, 0), ("c", 1, 1), ("a", 2, 2)]
    assert all((p.y, p.x) == (0, 0) for plan in plans for p in plan.placements)


def test_empty_channel_list_gives_no_plans():
    assert plan_streams({"x": (2, 3, 4)}, [], "mosaic", 8) == []


# ----------------------------------------------------------------------------- padding

def _check_edge_fill(frames, occ):
    """Every unoccupied pixel copies the nearest occupied pixel to its left in its row (the first
    occupied one for a leading gap); rows with no tile copy the nearest filled row above."""
    n, H, W = frames.shape
    for f in range(n):
        occ_rows = occ[f].any(axis=1)
        for y in range(H):
            row_occ = np.flatnonzero(occ[f, y])
            if row_occ.size == 0:
                above = np.flatnonzero(occ_rows[:y])
                src = above[-1] if above.size else np.flatnonzero(occ_rows)[0]
                np.testing.assert_array_equal(frames[f, y], frames[f, src])
                continue
            for x in np.flatnonzero(~occ[f, y].astype(bool)):
                left = row_occ[row_occ < x]
                sx = left[-1] if left.size else row_occ[0]
                assert frames[f, y, x] == frames[f, y, sx]


@pytest.mark.parametrize("case", ["odd", "wide", "fpn", "two_same_size"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("align", (1, 16))
def test_padding_is_edge_replication(case, layout, align):
    shapes = CASES[case]
    q = random_codes(shapes, seed=3, hi=1024)
    for plan in plan_streams(shapes, all_channels(shapes), layout, align):
        frames = pack(q, plan)
        _check_edge_fill(frames, occupancy(plan, shapes) > 0)


def test_alignment_padding_equals_np_pad_edge():
    # a full 2x2 grid of 3x5 tiles = a 6x10 content block, padded to 16x16
    shapes = {"x": (4, 3, 5)}
    q = random_codes(shapes, seed=4)
    plan, = plan_streams(shapes, all_channels(shapes), "mosaic", 16)
    frames = pack(q, plan)
    assert frames.shape == (1, 16, 16)
    content = frames[0, :6, :10]
    np.testing.assert_array_equal(frames[0], np.pad(content, ((0, 10), (0, 6)), mode="edge"))
    # frames layout: each 7x5 channel is padded like np.pad edge
    shapes = {"x": (3, 7, 5)}
    q = random_codes(shapes, seed=5)
    plan, = plan_streams(shapes, all_channels(shapes), "frames", 8)
    frames = pack(q, plan)
    for c in range(3):
        np.testing.assert_array_equal(frames[c], np.pad(q["x"][c], ((0, 1), (0, 3)), mode="edge"))


def test_padding_never_zero_next_to_bright_data():
    shapes = {"x": (3, 7, 5)}
    q = {"x": np.full((3, 7, 5), 1000, np.uint16)}
    for layout in LAYOUTS:
        for plan in plan_streams(shapes, all_channels(shapes), layout, 64):
            assert (pack(q, plan) == 1000).all()  # a constant input gives a constant frame


# ----------------------------------------------------------------------------- errors

def test_the_picture_layout_refuses_feature_channels():
    assert IMAGE_LAYOUT not in LAYOUTS and {"mosaic", "mosaic-level", "frames"} <= set(LAYOUTS)
    with pytest.raises(PackingError, match="RGB picture"):
        plan_streams({"x": (3, 4, 5)}, all_channels({"x": (3, 4, 5)}), IMAGE_LAYOUT, 8)


def test_plan_errors():
    shapes = {"x": (3, 4, 5)}
    with pytest.raises(PackingError, match="unknown layout 'tiles'"):
        plan_streams(shapes, [("x", 0)], "tiles", 8)
    with pytest.raises(PackingError, match="align"):
        plan_streams(shapes, [("x", 0)], "mosaic", 0)
    with pytest.raises(PackingError, match="unknown tensor 'y'"):
        plan_streams(shapes, [("y", 0)], "mosaic", 8)
    with pytest.raises(PackingError, match="out of range"):
        plan_streams(shapes, [("x", 3)], "mosaic", 8)
    with pytest.raises(PackingError, match="twice"):
        plan_streams(shapes, [("x", 1), ("x", 1)], "mosaic", 8)
    with pytest.raises(PackingError, match="three positive ints"):
        plan_streams({"x": (3, 0, 5)}, [("x", 0)], "mosaic", 8)


def test_pack_unpack_errors():
    shapes = {"x": (3, 4, 5)}
    q = random_codes(shapes)
    plan, = plan_streams(shapes, all_channels(shapes), "mosaic", 8)
    with pytest.raises(PackingError, match="no tensor 'x'"):
        pack({}, plan)
    with pytest.raises(PackingError, match="integers"):
        pack({"x": q["x"].astype(np.float32)}, plan)
    neg = q["x"].astype(np.int32)
    neg[1, 2, 3] = -1
    with pytest.raises(PackingError, match="uint16"):
        pack({"x": neg}, plan)
    frames = pack(q, plan)
    with pytest.raises(PackingError, match="plan expects"):
        unpack(frames[:, :-8], plan, {"x": np.zeros_like(q["x"])})
    with pytest.raises(PackingError, match="does not fit"):
        unpack(frames, plan, {"x": np.zeros((3, 40, 5), np.uint16)})
    bad = FramePlan(8, 8, 1, [Placement("x", 0, 0, 6, 0)])
    with pytest.raises(PackingError, match="does not fit"):
        pack(q, bad)


# ----------------------------------------------------------------------------- reorder

def test_similarity_order_is_permutation_and_groups_similar_channels():
    r = np.random.default_rng(6)
    base = r.standard_normal((4, 32, 32)).cumsum(1).cumsum(2)  # 4 smooth, distinct patterns
    labels = np.repeat(np.arange(4), 8)
    r.shuffle(labels)
    q = base[labels] + 0.3 * r.standard_normal((32, 32, 32)) * base.std()
    order = similarity_order(q.astype(np.float32))
    assert order.dtype == np.int64
    assert sorted(order.tolist()) == list(range(32))
    switches = int((np.diff(labels[order]) != 0).sum())
    assert switches == 3  # each pattern's channels form one contiguous run


def test_similarity_order_edge_cases_and_speed():
    assert similarity_order(np.zeros((0, 3, 3))).tolist() == []
    assert similarity_order(np.zeros((1, 3, 3))).tolist() == [0]
    const = np.stack([np.full((4, 4), v, np.uint16) for v in (5, 1, 9, 3)])
    assert similarity_order(const).tolist() == [1, 3, 0, 2]  # constants: by closeness of mean
    x = np.random.default_rng(7).integers(0, 1024, (256, 200, 336), dtype=np.uint16)
    t = time.perf_counter()
    order = similarity_order(x)
    assert time.perf_counter() - t < 1.0
    assert np.array_equal(np.sort(order), np.arange(256))
    assert np.array_equal(order, similarity_order(x))
    with pytest.raises(PackingError, match=r"\(C,H,W\)"):
        similarity_order(np.zeros((3, 3)))
