"""Figures of an explanation: the temporal plot (which frames matter) and the deletion / insertion curves.

Everything here is a pure function of arrays. Figures are ``matplotlib.figure.Figure`` objects drawn by the Agg
canvas through the object-oriented API only (no ``pyplot``, so nothing touches matplotlib's global state and a
web server may render from many threads). The raster frames (heat-maps, the overlay video, the comparison
strip) are in :mod:`attribution.render`.

Shapes: temporal (T,); per-area mask mass (A,T); frames uint8 (T,H,W,3) (float in [0,1] is accepted too);
curves (S,) over S fractions of the clip.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from attribution.common import check_frames
from attribution.errors import InputError

# ----------------------------------------------------------------------------------------------- constants
FIG_BAR = "#e8743b"           # temporal-plot bars
FIG_EVENT = "#3d8bd9"         # shade of the ground-truth evidence window
FIG_AREAS = ("#1b3a6b", "#2a9d8f", "#7b3f9e", "#3a3a3a", "#0077b6", "#6b8e23")  # lines, none orange
FIG_METHOD = "#c4352b"        # the explanation's deletion / insertion curves
MAX_THUMBNAILS = 32           # temporal_figure shows at most this many frames under the bars


# ------------------------------------------------------------------------------------------------ helpers
def _new_figure(width_in: float, height_in: float, **kw) -> Figure:
    """A figure of that size in inches at dpi 100, on its own Agg canvas (no pyplot)."""
    fig = Figure(figsize=(width_in, height_in), dpi=100, **kw)
    FigureCanvasAgg(fig)
    return fig


def _frame_ticks(T: int, times: np.ndarray | None, max_ticks: int = 16):
    """Tick positions and labels for T frames: 1-based frame numbers, or seconds when times are given."""
    step = max(1, math.ceil(T / max_ticks))
    pos = np.arange(0, T, step)
    if times is None:
        return pos, [str(i + 1) for i in pos]
    t = np.asarray(times, dtype=float)[pos]
    dt = float(np.diff(t).min()) if len(t) > 1 else 1.0
    # Fewest decimals whose rounding stays within a tenth of a tick step (0.125 s steps need two).
    decimals = next((d for d in range(3) if np.abs(np.round(t, d) - t).max() <= abs(dt) / 10), 3)
    return pos, [f"{v:.{decimals}f}" for v in t]


# ------------------------------------------------------------------------------------------ temporal plot
def _check_temporal(temporal, per_area, area_labels, event, frames, times):
    """The temporal plot's inputs checked and converted: (temporal, per_area, area_labels, event, thumbs)."""
    temporal = np.asarray(temporal, dtype=float).reshape(-1)
    T = len(temporal)
    if T == 0:
        raise InputError("temporal must hold one value per frame; got an empty array.")
    if times is not None and len(times) != T:
        raise InputError(f"times must hold one value per frame ({T}); got {len(times)}.")
    if per_area is not None:
        per_area = np.atleast_2d(np.asarray(per_area, dtype=float))
        if per_area.shape[1] != T:
            raise InputError(f"per_area must have shape (A, {T}); got {per_area.shape}.")
        if area_labels is None:
            area_labels = [f"area {a + 1}" for a in range(len(per_area))]
        if len(area_labels) != len(per_area):
            raise InputError(f"area_labels must name the {len(per_area)} areas; got {len(area_labels)}.")
    if event is not None:
        s, e = int(event[0]), int(event[1])
        if not 0 <= s < e <= T:
            raise InputError(f"event must be a (start, end) frame window inside 0..{T}; got {tuple(event)}.")
        event = s, e
    thumbs = None
    if frames is not None:
        thumbs = check_frames(frames)
        if len(thumbs) != T:
            raise InputError(f"frames must hold the clip's {T} frames; got {len(thumbs)}.")
    return temporal, per_area, area_labels, event, thumbs


def _temporal_axes(T: int, thumbs, title):
    """The figure with the bars' axes and, under them, the thumbnails' axes (or None): (fig, ax, ax_t, shown),
    where ``shown`` are the frames that get a thumbnail."""
    plot_w = 7.4                                   # inches of axes inside the 9-inch figure
    bars_h = 3.2
    thumb_h = 0.0
    shown = np.arange(T)
    if thumbs is not None:
        shown = np.arange(0, T, max(1, math.ceil(T / MAX_THUMBNAILS)))
        slot = plot_w / T * (T / len(shown))
        thumb_h = float(np.clip(0.92 * slot * thumbs.shape[1] / thumbs.shape[2], 0.3, 1.6))
    fig = _new_figure(9.0, bars_h + thumb_h + (1.4 if title else 1.1), layout="constrained")
    if thumbs is not None:
        gs = fig.add_gridspec(2, 1, height_ratios=[bars_h, thumb_h])
        ax = fig.add_subplot(gs[0])
        ax_t = fig.add_subplot(gs[1], sharex=ax)
    else:
        ax, ax_t = fig.add_subplot(), None
    return fig, ax, ax_t, shown


def _draw_bars(ax, temporal: np.ndarray, right_axis: bool) -> None:
    """The per-frame importance bars on ``ax`` (its right spine kept when a right-hand axis follows)."""
    T = len(temporal)
    ax.bar(np.arange(T), temporal, width=0.8, color=FIG_BAR, label="frame importance (mean saliency)", zorder=2)
    top = float(temporal.max()) if temporal.max() > 0 else 1.0
    ax.set_ylim(0, top * 1.22)
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylabel("mean saliency")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.spines[["top"] if right_axis else ["top", "right"]].set_visible(False)


def _draw_event(ax, event: tuple[int, int], handles: list, labels: list) -> None:
    """Shade and name the evidence window [start, end) on ``ax``; add it to the legend's handles and labels."""
    s, e = event
    span = ax.axvspan(s - 0.5, e - 0.5, color=FIG_EVENT, alpha=0.16, zorder=1, label="evidence window")
    span.set_gid("evidence-window")
    ax.text((s + e - 1) / 2, 0.97, "evidence window", transform=blended_transform_factory(ax.transData,
            ax.transAxes), ha="center", va="top", color=FIG_EVENT, fontsize=10, weight="bold")
    handles.append(span)
    labels.append("evidence window")


def _draw_areas(ax, per_area: np.ndarray, area_labels, handles: list, labels: list) -> None:
    """Each area's per-frame mask mass as a line on a right-hand axis; add them to the legend's handles/labels."""
    ax2 = ax.twinx()
    x = np.arange(per_area.shape[1])
    for a, (row, lab) in enumerate(zip(per_area, area_labels)):
        ax2.plot(x, row, marker="o", ms=3.5, lw=1.8, label=str(lab), zorder=3,
                 color=FIG_AREAS[a % len(FIG_AREAS)])
    ax2.set_ylim(0, max(float(per_area.max()), 1e-6) * 1.22)
    ax2.set_ylabel("mask mass per area")
    ax2.spines[["top"]].set_visible(False)
    h2, l2 = ax2.get_legend_handles_labels()
    handles += h2
    labels += l2


def _draw_frame_axis(ax, ax_t, thumbs, shown: np.ndarray, T: int, times) -> None:
    """The x axis (frame numbers or seconds): under the bars, or under the thumbnail strip when there is one."""
    pos, tick_labels = _frame_ticks(T, times)
    xlabel = "time (s)" if times is not None else "frame"
    if ax_t is None:
        ax.set_xticks(pos, tick_labels)
        ax.set_xlabel(xlabel)
        return
    ax.tick_params(axis="x", labelbottom=False)
    for i in shown:
        ax_t.imshow(thumbs[i], extent=(i - 0.46, i + 0.46, 0, 1), aspect="auto", interpolation="bilinear")
    ax_t.set_xlim(-0.5, T - 0.5)
    ax_t.set_ylim(0, 1)
    ax_t.set_yticks([])
    ax_t.set_xticks(pos, tick_labels)
    ax_t.set_xlabel(xlabel)
    for side in ("top", "right", "left"):
        ax_t.spines[side].set_visible(False)


def temporal_figure(temporal, *, per_area=None, area_labels: Sequence[str] | None = None,
                    event: tuple[int, int] | None = None, frames=None, times=None,
                    title: str | None = None) -> Figure:
    """Bar plot of per-frame importance, with the evidence window and a thumbnail strip.

    Args:
        temporal: (T,) per-frame importance (mean saliency of each frame).
        per_area: optional (A,T) per-frame mask mass of each area's mask, drawn as lines on a right-hand axis.
        area_labels: A names for the lines (default "area 1".."area A").
        event: optional (start, end) 0-based frame window, end exclusive, shaded as "evidence window".
        frames: optional uint8 (T,H,W,3); thumbnails are drawn under the x axis (at most 32, subsampled).
        times: optional (T,) seconds of each frame, used for the x labels (else 1-based frame numbers).
        title: optional figure title.
    Returns:
        a 9-inch-wide ``Figure`` (900 px at dpi 100) on an Agg canvas.
    """
    temporal, per_area, area_labels, event, thumbs = _check_temporal(temporal, per_area, area_labels, event,
                                                                     frames, times)
    T = len(temporal)
    fig, ax, ax_t, shown = _temporal_axes(T, thumbs, title)
    _draw_bars(ax, temporal, right_axis=per_area is not None)
    handles, labels = ax.get_legend_handles_labels()
    if event is not None:
        _draw_event(ax, event, handles, labels)
    if per_area is not None:
        _draw_areas(ax, per_area, area_labels, handles, labels)
    # Below the plot: an "outside upper" legend would collide with the suptitle in constrained layout.
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False,
               fontsize=9)
    if title:
        fig.suptitle(title, fontsize=13, weight="bold")
    _draw_frame_axis(ax, ax_t, thumbs, shown, T, times)
    return fig


# ------------------------------------------------------------------------------------------------- curves
def _auc_label(name: str, auc) -> str:
    """The legend entry of a curve: its name, with its AUC when known."""
    return name if auc is None else f"{name} (AUC {float(auc):.3f})"


def curves_figure(fractions, deletion, insertion, *, auc_deletion: float, auc_insertion: float,
                  random_deletion=None, random_insertion=None, auc_random_deletion: float | None = None,
                  auc_random_insertion: float | None = None, title: str | None = None,
                  xlabel: str = "fraction of the clip removed / restored",
                  label: str = "explanation") -> Figure:
    """Deletion and insertion curves side by side, each beside the random-map baseline when given.

    Args:
        fractions: (S,) fraction of the clip removed (deletion) / restored (insertion) at each step, in [0,1].
        deletion, insertion: (S,) probability of the target class at each step.
        auc_deletion, auc_insertion: the method's AUCs, shown in the legend.
        random_deletion, random_insertion: optional (S,) curves of a random map (dashed grey).
        auc_random_deletion, auc_random_insertion: their AUCs, if known.
        title: optional figure title; xlabel: shared x-axis label; label: legend name of the method.
    Returns:
        a 10x4.4-inch ``Figure``; y is the probability in [0, 1]. Deletion: lower is better; insertion:
        higher is better.
    """
    fr = np.asarray(fractions, dtype=float).reshape(-1)
    series = {"deletion": deletion, "insertion": insertion, "random_deletion": random_deletion,
              "random_insertion": random_insertion}
    for name, c in series.items():
        if c is not None and np.asarray(c).reshape(-1).shape != fr.shape:
            raise InputError(f"{name} must have one value per fraction ({len(fr)}); "
                             f"got shape {np.asarray(c).shape}.")

    fig = _new_figure(10.0, 4.4)
    top = 0.78 if title else 0.84
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.15, top=top, wspace=0.08)
    if title:
        fig.text(0.5, 0.975, title, ha="center", va="top", fontsize=13, weight="bold")
    fig.text(0.5, top + 0.09, "deletion: lower is better; insertion: higher is better", ha="center",
             va="center", fontsize=10, color="0.35")
    axes = fig.subplots(1, 2, sharey=True)
    panels = (("deletion", deletion, auc_deletion, random_deletion, auc_random_deletion, "upper right"),
              ("insertion", insertion, auc_insertion, random_insertion, auc_random_insertion, "lower right"))
    for ax, (name, curve, auc, rnd, rauc, loc) in zip(axes, panels):
        curve = np.asarray(curve, dtype=float).reshape(-1)
        ax.plot(fr, curve, color=FIG_METHOD, lw=2.2, label=_auc_label(label, auc), zorder=3)
        ax.fill_between(fr, 0, curve, color=FIG_METHOD, alpha=0.10, zorder=1)
        if rnd is not None:
            ax.plot(fr, np.asarray(rnd, dtype=float).reshape(-1), ls="--", color="0.5", lw=1.6,
                    label=_auc_label("random map", rauc), zorder=2)
        ax.set_title(name, fontsize=12)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(loc=loc, fontsize=9, framealpha=0.9)
    axes[0].set_ylabel("probability of the target class")
    fig.text(0.5 * (0.07 + 0.985), 0.03, xlabel, ha="center", va="bottom", fontsize=10)
    return fig


def save_figure(fig: Figure, path, dpi: int = 100) -> str:
    """Write the figure as a PNG (white background) and return the path."""
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png", facecolor="white")
    return os.fspath(path)
