"""Helpers shared by the studies: figure saving, a layout check of the figures, JSON-safe conversion, progress."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np

#: Callables ``check(fig, name)`` run by `save_figure` on every figure before it is written (the tests add
#: `assert_clean_layout` here, so every study's figures are checked at the sizes the tests run them).
FIGURE_CHECKS: list = []


def to_jsonable(value):
    """Convert NumPy / JAX scalars and arrays (recursively) to plain Python types, floats rounded to 10 digits."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return to_jsonable(np.asarray(value).tolist())
    if isinstance(value, float):
        return float(f"{value:.10g}")
    return value


def save_figure(fig, out_dir: Path, name: str) -> str:
    """Save a matplotlib figure as ``out_dir/name.png`` (tight bounding box) and close it; returns the file name."""
    import matplotlib.pyplot as plt

    for check in FIGURE_CHECKS:
        check(fig, name)
    report(f"figure {name}.png")
    path = Path(out_dir) / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


# ---- layout check --------------------------------------------------------------------------------------------
def _texts(fig, renderer):
    """(description, bounding box) of every visible, non-empty text of the figure, and of every legend."""
    items, seen = [], set()

    def add(artist, what):
        if artist is None or not artist.get_visible() or id(artist) in seen:
            return
        seen.add(id(artist))
        if hasattr(artist, "get_text") and not artist.get_text().strip():
            return
        items.append((what, artist.get_window_extent(renderer)))

    suptitle = getattr(fig, "_suptitle", None)
    add(suptitle, "suptitle")
    for t in fig.texts:
        add(t, f"figure text {t.get_text()!r}")
    for leg in fig.legends:
        add(leg, "figure legend")
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        for loc in ("center", "left", "right"):
            title = {"center": ax.title}.get(loc) or getattr(ax, f"_{loc}_title", None)
            add(title, f"axes {i} title {ax.get_title(loc)!r}")
        add(ax.xaxis.label, f"axes {i} x label {ax.get_xlabel()!r}")
        add(ax.yaxis.label, f"axes {i} y label {ax.get_ylabel()!r}")
        if ax.axison:
            for axis, tag in ((ax.xaxis, "x"), (ax.yaxis, "y")):
                lo, hi = sorted(axis.get_view_interval())
                pad = 1e-9 * (hi - lo)
                labels = axis.get_ticklabels() + axis.get_ticklabels(minor=True)
                for label in labels:  # ticks outside the view limits are not drawn
                    if lo - pad <= label.get_position()[0 if tag == "x" else 1] <= hi + pad:
                        add(label, f"axes {i} {tag} tick {label.get_text()!r}")
        add(ax.get_legend(), f"axes {i} legend")
        for t in ax.texts:
            add(t, f"axes {i} text {t.get_text()!r}")
    return items


def _overlap(a, b, tol=1.0) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol


def _data_points(ax):
    """Display coordinates of the data the axes draw: line vertices and scatter offsets."""
    pts = []
    for line in ax.get_lines():
        if not line.get_visible():
            continue
        xy = line.get_xydata()
        if len(xy) == 2 and (np.ptp(xy[:, 0]) == 0 or np.ptp(xy[:, 1]) == 0):
            continue  # a reference line (axvline / axhline): it spans the axes, a legend may cross it
        pts.append(line.get_transform().transform(xy))
    for coll in ax.collections:
        offsets = coll.get_offsets()
        if coll.get_visible() and len(offsets) and coll.get_offset_transform() is not None:
            pts.append(coll.get_offset_transform().transform(offsets))
    pts = [p[np.all(np.isfinite(p), axis=1)] for p in pts]
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def layout_problems(fig, max_covered: float = 0.0) -> list[str]:
    """Texts whose bounding boxes overlap, and legends that cover plotted data.

    Args:
        fig: a matplotlib figure (drawn here).
        max_covered: the largest fraction of an axes' data points (line vertices, scatter points) its legend may
            cover.

    Returns:
        One line per problem; empty when the layout is clean.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    items = _texts(fig, renderer)
    problems = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            (wa, a), (wb, b) = items[i], items[j]
            same_tick = " tick " in wa and wa.split(" tick ")[1] == wb.split(" tick ")[-1] and \
                abs(a.x0 - b.x0) + abs(a.y0 - b.y0) < 1.0  # one tick label drawn by twinned axes
            if _overlap(a, b) and not same_tick:
                problems.append(f"{wa} overlaps {wb}")
    for i, ax in enumerate(fig.axes):
        leg = ax.get_legend()
        if leg is None or not leg.get_visible():
            continue
        box = leg.get_window_extent(renderer)
        pts = _data_points(ax)
        if len(pts):
            inside = (pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)
            if inside.mean() > max_covered:
                problems.append(f"axes {i} legend covers {int(inside.sum())} of {len(pts)} data points")
    return problems


def assert_clean_layout(fig, name: str) -> None:
    """Raise AssertionError naming the figure when `layout_problems` finds anything."""
    problems = layout_problems(fig)
    assert not problems, f"figure {name}: " + "; ".join(problems)


# ---- progress -----------------------------------------------------------------------------------------------
class Progress:
    """A status line for one running study, ``name: step, elapsed``, refreshed by a background thread.

    On a terminal the line is redrawn in place every `interval` seconds; elsewhere (a log file, CI) a line is
    printed every `log_interval` seconds. The step is what the study last reported through `report` (the
    runner's own steps, the figures as they are saved, or epochs where a study reports them).
    """

    def __init__(self, name: str, stream=None, interval: float = 1.0, log_interval: float = 10.0):
        self.name = name
        self.stream = stream if stream is not None else sys.stdout
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self._tty else log_interval
        self.step = "starting"
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def line(self) -> str:
        return f"      {self.name}: {self.step}, {time.perf_counter() - self.t0:.0f} s"

    def _run(self):
        while not self._stop.wait(self.interval):
            if self._tty:
                self.stream.write("\r" + self.line()[:119].ljust(119))
            else:
                self.stream.write(self.line() + "\n")
            self.stream.flush()

    def __enter__(self):
        global _ACTIVE
        _ACTIVE = self
        self._thread.start()
        return self

    def __exit__(self, *exc):
        global _ACTIVE
        _ACTIVE = None
        self._stop.set()
        self._thread.join()
        if self._tty:
            self.stream.write("\r" + " " * 119 + "\r")
            self.stream.flush()


_ACTIVE: Progress | None = None


def report(step: str) -> None:
    """Tell the runner's progress line what the running study is doing (``"epoch 3/20"``); a no-op otherwise."""
    if _ACTIVE is not None:
        _ACTIVE.step = step
