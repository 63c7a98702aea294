"""MaxRects 2-D bin packing with best-area-fit (FaST-GShare's placement, SYSTEMS.md 3).

Integer boxes ``(x, y, w, h)`` in a ``W x H`` bin (for a GPU: ``W = 1000`` thousandths
of the token window, ``H = 100`` SM percent; see :mod:`hasim.cluster.gpu`). The free
space is kept as the list of *maximal* free rectangles: placing a box splits every free
rectangle it intersects into up to four maximal pieces (left, right, below, above the
box) and then prunes the rectangles contained in another one. Because the list always
equals the set of all maximal empty rectangles, rebuilding it from the boxes of the
running pods (:func:`free_rects`) gives the same free space whatever the order of the
boxes.

Choice of a position (best-area-fit, BAF): among the free rectangles the box fits in,
the one whose area exceeds the box's area the least; ties by the smaller leftover of
the shorter side (best-short-side-fit), then lowest ``y``, then lowest ``x``. The box
goes to the free rectangle's corner ``(x, y)``.

Choice of a bin (:func:`choose_bin`, FaST-GShare's rule): the bin that leaves the least
free area (bin area minus used area minus the box) after placing; ``None`` means no
open bin fits, i.e. "open a new GPU". Pure functions and a small class; no simulation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

Box = tuple[int, int, int, int]  # x, y, w, h (integers)


def intersects(a: Box, b: Box) -> bool:
    """True when boxes ``a`` and ``b`` share interior area (touching edges do not count)."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def contains(outer: Box, inner: Box) -> bool:
    """True when ``inner`` lies entirely inside ``outer`` (equal boxes contain each other)."""
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[0] + inner[2] <= outer[0] + outer[2]
        and inner[1] + inner[3] <= outer[1] + outer[3]
    )


def prune(free: Iterable[Box]) -> list[Box]:
    """Drop duplicates and every rectangle contained in another one; sorted (y, x, w, h)."""
    uniq = sorted(set(free), key=lambda r: (r[1], r[0], r[2], r[3]))
    # corners (x0, y0, x1, y1); a rectangle that contains r starts at or below r's y, so
    # the scan (in y order) stops at the first one that starts above it
    edges = [(x, y, x + w, y + h) for x, y, w, h in uniq]
    out: list[Box] = []
    for r, e in zip(uniq, edges, strict=True):
        rx, ry, rx1, ry1 = e
        for o in edges:
            if o[1] > ry:
                out.append(r)
                break
            if o is not e and o[0] <= rx and rx1 <= o[2] and ry1 <= o[3]:
                break
        else:
            out.append(r)
    return out


def split(free: Sequence[Box], box: Box) -> list[Box]:
    """The maximal free rectangles after occupying ``box`` (MaxRects split + prune).

    Each free rectangle that intersects ``box`` is replaced by its (up to four) maximal
    parts left of, right of, below and above the box; the others are kept.
    """
    bx, by, bw, bh = box
    out: list[Box] = []
    changed = False
    for f in free:
        if not intersects(f, box):
            out.append(f)
            continue
        changed = True
        fx, fy, fw, fh = f
        if bx > fx:  # left part
            out.append((fx, fy, bx - fx, fh))
        if bx + bw < fx + fw:  # right part
            out.append((bx + bw, fy, fx + fw - (bx + bw), fh))
        if by > fy:  # part below
            out.append((fx, fy, fw, by - fy))
        if by + bh < fy + fh:  # part above
            out.append((fx, by + bh, fw, fy + fh - (by + bh)))
    return prune(out) if changed else list(free)


def _check_bin(width: int, height: int) -> None:
    if int(width) != width or int(height) != height or width <= 0 or height <= 0:
        raise ValueError(f"bin {width} x {height} must have positive integer sides")


def _check_box(box: Box, width: int, height: int) -> None:
    x, y, w, h = box
    if any(int(v) != v for v in box):
        raise ValueError(f"box {box} must have integer coordinates")
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(f"box {box} does not lie inside the {width} x {height} bin")


def free_rects(width: int, height: int, used: Iterable[Box]) -> list[Box]:
    """Maximal free rectangles of a ``width x height`` bin holding the boxes ``used``.

    Boxes may be given in any order (the result is the same set); overlapping boxes are
    allowed (their union is occupied). Raises ValueError for a box outside the bin.
    """
    _check_bin(width, height)
    free: list[Box] = [(0, 0, int(width), int(height))]
    for b in used:
        _check_box(b, width, height)
        free = split(free, tuple(int(v) for v in b))  # type: ignore[arg-type]
    return free


@dataclass(frozen=True, order=True)
class Fit:
    """A candidate position: ``area_fit`` = free-rectangle area - box area (units^2),
    ``short_fit`` = the smaller leftover side; ordering = BAF preference."""

    area_fit: int
    short_fit: int
    y: int
    x: int


def best_area_fit(w: int, h: int, free: Iterable[Box]) -> Fit | None:
    """The BAF position of a ``w x h`` box among ``free`` rectangles (None: fits nowhere)."""
    if w <= 0 or h <= 0:
        raise ValueError(f"box size {w} x {h} must be positive")
    best: Fit | None = None
    for fx, fy, fw, fh in free:
        if w <= fw and h <= fh:
            cand = Fit(fw * fh - w * h, min(fw - w, fh - h), fy, fx)
            if best is None or cand < best:
                best = cand
    return best


def place(w: int, h: int, free: Iterable[Box]) -> tuple[int, int] | None:
    """Where (x, y) a ``w x h`` box goes by best-area-fit among ``free``; None: no room."""
    fit = best_area_fit(w, h, free)
    return None if fit is None else (fit.x, fit.y)


@dataclass
class MaxRectsBin:
    """One bin (a GPU): its size, the boxes placed in it and its maximal free rectangles."""

    width: int
    height: int
    used: list[Box] = field(default_factory=list)
    free: list[Box] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_bin(self.width, self.height)
        self.free = free_rects(self.width, self.height, self.used)

    @classmethod
    def from_boxes(cls, width: int, height: int, boxes: Iterable[Box]) -> MaxRectsBin:
        """A bin rebuilt from the boxes of the pods it holds."""
        return cls(width, height, [tuple(int(v) for v in b) for b in boxes])  # type: ignore[misc]

    @classmethod
    def with_free(
        cls, width: int, height: int, boxes: Iterable[Box], free: Iterable[Box]
    ) -> MaxRectsBin:
        """A bin holding ``boxes`` whose maximal free rectangles are known to be ``free``
        (as ``free_rects`` gives them: e.g. remembered from an earlier bin with the same
        boxes in any order)."""
        out = cls(width, height)
        out.used = list(boxes)
        out.free = list(free)
        return out

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def used_area(self) -> int:
        """Sum of the boxes' areas (units^2; boxes placed here never overlap)."""
        return sum(b[2] * b[3] for b in self.used)

    @property
    def free_area(self) -> int:
        return self.area - self.used_area

    def fit(self, w: int, h: int) -> Fit | None:
        """The BAF position for a ``w x h`` box, without placing it."""
        return best_area_fit(w, h, self.free)

    def add(self, box: Box) -> None:
        """Occupy ``box`` (must lie inside the bin and on free space)."""
        _check_box(box, self.width, self.height)
        if any(intersects(box, b) for b in self.used):
            raise ValueError(f"box {box} overlaps a placed box")
        self.used.append(box)
        self.free = split(self.free, box)

    def insert(self, w: int, h: int) -> Box | None:
        """Place a ``w x h`` box by BAF; returns the box, or None when it does not fit."""
        fit = self.fit(w, h)
        if fit is None:
            return None
        box = (fit.x, fit.y, w, h)
        self.add(box)
        return box


@dataclass(frozen=True)
class BinChoice:
    """Result of :func:`choose_bin`: the bin's index, the box placed, and the free area
    (units^2) the bin has left after it."""

    index: int
    box: Box
    free_after: int


def choose_bin(
    w: int,
    h: int,
    bins: Sequence[MaxRectsBin],
    allowed: Callable[[int], bool] | None = None,
) -> BinChoice | None:
    """The bin that leaves the least free area after a ``w x h`` box is placed in it.

    Only bins where the box fits by BAF (and ``allowed(index)`` holds, e.g. memory) are
    candidates; ties by the BAF score, then the lowest index. Nothing is placed.
    Returns None when no bin fits: the caller opens a new bin (GPU).
    """
    best: tuple[int, Fit, int] | None = None
    for i, b in enumerate(bins):
        if allowed is not None and not allowed(i):
            continue
        fit = b.fit(w, h)
        if fit is None:
            continue
        key = (b.free_area - w * h, fit, i)
        if best is None or key < best:
            best = key
    if best is None:
        return None
    left, fit, i = best
    return BinChoice(i, (fit.x, fit.y, w, h), left)
