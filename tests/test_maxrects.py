"""MaxRects bin packing (hasim.cluster.maxrects): geometry, BAF choice, rebuild, bins."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hasim.cluster.gpu import AREA_H, AREA_W, rect_width
from hasim.cluster.maxrects import (
    MaxRectsBin,
    best_area_fit,
    choose_bin,
    contains,
    free_rects,
    intersects,
    place,
    prune,
    split,
)


def _cells(box):
    x, y, w, h = box
    return {(i, j) for i in range(x, x + w) for j in range(y, y + h)}


def _check_free_space(width, height, used, free):
    """free = exactly the maximal empty rectangles of the bin minus ``used``."""
    occupied = set().union(*(_cells(b) for b in used)) if used else set()
    covered = set().union(*(_cells(f) for f in free)) if free else set()
    everything = {(i, j) for i in range(width) for j in range(height)}
    assert covered == everything - occupied  # free rects cover exactly the empty cells
    for f in free:
        x, y, w, h = f
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
        assert not any(intersects(f, b) for b in used)
        # maximal: growing it by one unit in any direction hits a box or the border
        for g in ((x - 1, y, w + 1, h), (x, y - 1, w, h + 1), (x, y, w + 1, h), (x, y, w, h + 1)):
            inside = g[0] >= 0 and g[1] >= 0 and g[0] + g[2] <= width and g[1] + g[3] <= height
            assert not inside or any(intersects(g, b) for b in used)
    for i, a in enumerate(free):  # no rectangle contained in another
        assert not any(i != j and contains(b, a) for j, b in enumerate(free))


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(4, 24),
    height=st.integers(4, 16),
    sizes=st.lists(st.tuples(st.integers(1, 12), st.integers(1, 10)), min_size=1, max_size=25),
    seed=st.integers(0, 1000),
)
def test_random_sequences_never_overlap_and_free_space_is_consistent(width, height, sizes, seed):
    b = MaxRectsBin(width, height)
    for w, h in sizes:
        fit_before = b.fit(w, h)
        box = b.insert(w, h)
        assert (box is None) == (fit_before is None)
        if box is not None:
            assert box[2:] == (w, h)
    for i, a in enumerate(b.used):
        assert 0 <= a[0] and a[0] + a[2] <= width and 0 <= a[1] and a[1] + a[3] <= height
        assert not any(intersects(a, c) for c in b.used[i + 1 :])
    assert b.used_area + b.free_area == width * height
    _check_free_space(width, height, b.used, b.free)
    # rebuilding from the boxes, in any order, gives the same free space
    shuffled = list(b.used)
    random.Random(seed).shuffle(shuffled)
    assert set(free_rects(width, height, shuffled)) == set(b.free)
    # a box reported as not fitting really fits nowhere
    for w, h in sizes:
        if b.fit(w, h) is None:
            for x in range(width - w + 1):
                for y in range(height - h + 1):
                    assert any(intersects((x, y, w, h), u) for u in b.used)


def test_split_of_a_centre_box_gives_four_maximal_rectangles():
    free = split([(0, 0, 10, 10)], (3, 4, 2, 2))
    assert set(free) == {(0, 0, 3, 10), (5, 0, 5, 10), (0, 0, 10, 4), (0, 6, 10, 4)}
    assert split(free, (20, 20, 1, 1)) == free  # a box elsewhere changes nothing


def test_best_area_fit_picks_the_tightest_free_rectangle():
    free = [(0, 0, 10, 10), (20, 0, 5, 5), (30, 0, 4, 9)]
    assert place(4, 4, free) == (20, 0)  # leftover 9 < 20 < 84
    assert place(4, 8, free) == (30, 0)
    assert place(11, 1, free) is None
    # equal leftover area (12): the smaller short-side leftover wins (0 < 2)
    fit = best_area_fit(2, 2, [(0, 0, 4, 4), (10, 0, 8, 2)])
    assert fit is not None and (fit.x, fit.y, fit.area_fit, fit.short_fit) == (10, 0, 12, 0)
    with pytest.raises(ValueError):
        place(0, 3, free)


def test_free_rects_rejects_boxes_outside_the_bin():
    with pytest.raises(ValueError):
        free_rects(10, 10, [(8, 0, 3, 1)])
    with pytest.raises(ValueError):
        MaxRectsBin(10, 10).add((-1, 0, 2, 2))
    b = MaxRectsBin(10, 10)
    b.add((0, 0, 5, 5))
    with pytest.raises(ValueError):
        b.add((4, 4, 2, 2))


def test_rebuilt_bin_matches_incremental_bin():
    b = MaxRectsBin(1000, 100)
    for w, h in [(400, 12), (600, 50), (200, 24), (400, 24), (1000, 6)]:
        b.insert(w, h)
    r = MaxRectsBin.from_boxes(1000, 100, reversed(b.used))
    assert set(r.free) == set(b.free) and r.used_area == b.used_area


# SYSTEMS.md 3: 4 ResNet (SM 12 %, q 40 %) + 2 RNNT (24 %, 40 %) + 2 BERT (50 %, 60 %)
RESNET = (rect_width(0.40), 12)
RNNT = (rect_width(0.40), 24)
BERT = (rect_width(0.60), 50)


@pytest.mark.parametrize(
    "order",
    [
        [BERT, BERT, RNNT, RNNT, RESNET, RESNET, RESNET, RESNET],  # largest first
        [BERT, RESNET, RNNT, BERT, RESNET, RNNT, RESNET, RESNET],  # interleaved
    ],
)
def test_systems_example_packs_onto_one_gpu(order):
    assert (AREA_W, AREA_H) == (1000, 100)
    gpus: list[MaxRectsBin] = []
    for w, h in order:
        choice = choose_bin(w, h, gpus)
        if choice is None:  # open a new GPU
            gpus.append(MaxRectsBin(AREA_W, AREA_H))
            choice = choose_bin(w, h, gpus)
            assert choice is not None
        gpus[choice.index].add(choice.box)
    assert len(gpus) == 1
    assert gpus[0].used_area == 98_400 and gpus[0].free_area == 1_600
    # time sharing alone (every pod the whole SM range) needs ceil(3.6) = 4 GPUs
    assert sum(w for w, _ in order) == 3_600


def test_choose_bin_prefers_the_gpu_left_with_least_free_area():
    a = MaxRectsBin.from_boxes(1000, 100, [(0, 0, 1000, 50)])  # 50,000 free
    b = MaxRectsBin.from_boxes(1000, 100, [(0, 0, 1000, 80)])  # 20,000 free
    c = MaxRectsBin.from_boxes(1000, 100, [(0, 0, 1000, 95)])  # too little room
    choice = choose_bin(400, 12, [a, b, c])
    assert choice is not None and choice.index == 1 and choice.box == (0, 80, 400, 12)
    assert choice.free_after == 20_000 - 4_800
    assert choose_bin(400, 12, [a, b, c], allowed=lambda i: i != 1).index == 0  # e.g. memory
    assert choose_bin(400, 60, [a, b, c]) is None  # open a new GPU
    assert choose_bin(400, 12, []) is None
    # nothing was placed
    assert b.used == [(0, 0, 1000, 80)]


def _prune_reference(free):
    """``prune`` by its definition: every pair checked with ``contains``."""
    uniq = sorted(set(free), key=lambda r: (r[1], r[0], r[2], r[3]))
    return [r for r in uniq if not any(o != r and contains(o, r) for o in uniq)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(1, 6), st.integers(1, 6)),
        max_size=40,
    )
)
def test_prune_is_the_pairwise_definition(free):
    """The early-exit ``prune`` keeps exactly the rectangles, in the order, that the
    all-pairs containment check keeps."""
    assert prune(free) == _prune_reference(free)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 400), st.integers(1, 60)), min_size=1, max_size=14),
    removals=st.lists(st.integers(0, 13), max_size=10),
    seed=st.integers(0, 10_000),
)
def test_rect_bins_rebuild_matches_a_rebuild_from_scratch(sizes, removals, seed):
    """``RectBins.rebuild`` (free space from the memo of box sets, or from the longest
    known first part of the boxes plus splits) gives the free rectangles of
    ``MaxRectsBin.from_boxes``, element for element, through placements and removals."""
    from hasim.cluster.placement import RectBins

    rng = random.Random(seed)
    bins = RectBins()
    live: list[tuple[int, int, int, int]] = []
    ops = [("add", s) for s in sizes] + [("remove", r) for r in removals]
    rng.shuffle(ops)
    for op, arg in ops:
        if op == "add":
            b = MaxRectsBin.from_boxes(AREA_W, AREA_H, live)
            box = b.insert(*arg)
            if box is None:
                continue
            live.append(box)
            bins.remember(frozenset(live), b)
        elif live:
            live.pop(arg % len(live))
        got = bins.rebuild(tuple(live))
        want = MaxRectsBin.from_boxes(AREA_W, AREA_H, live)
        assert got.free == want.free
        assert got.used == want.used
