"""Pictures of an explanation: heat-maps, the side-by-side overlay video, the temporal plot and the curves.

Everything here is a pure function of arrays. Raster images are composed with numpy and ``PIL.ImageDraw``;
figures are ``matplotlib.figure.Figure`` objects drawn by the Agg canvas through the object-oriented API only
(no ``pyplot``, so nothing touches matplotlib's global state and a web server may render from many threads).

Shapes: frames uint8 (T,H,W,3); saliency (T,H,W) in [0,1] on the same grid as the frames (a map on another
spatial grid is resized bilinearly to the frames); temporal (T,); images uint8 (H,W,3).

Colour always uses a **fixed** [0, 1] scale: a frame whose saliency is low everywhere looks dim, it is never
renormalised to look as bright as the clip's most important frame.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory
from PIL import Image, ImageDraw, ImageFont

from attribution.errors import InputError

# ----------------------------------------------------------------------------------------------- constants
CMAP = "inferno"              # perceptually uniform, dark = unimportant, readable in grey-scale print
ALPHA = 0.5                   # weight of the heat-map over the frame in the middle panel
PRESERVED_DIM = 0.3           # brightness of the grey the "preserved" panel fades unimportant pixels to
MIN_HEIGHT = 256              # px: the toy model's 64x64 clips are upscaled x4 to stay readable
TITLES = ("input", "attribution", "preserved")
BACKGROUND = (22, 22, 24)     # video canvas: dark, like a player, so the panels stand out
TEXT = (232, 232, 232)
TEXT_DIM = (160, 160, 165)
BAR = (255, 167, 38)          # fill of the per-frame importance bar (distinct from every inferno colour)
BAR_TRACK = (70, 70, 76)
FIG_BAR = "#e8743b"           # temporal-plot bars
FIG_EVENT = "#3d8bd9"         # shade of the ground-truth evidence window
FIG_AREAS = ("#1b3a6b", "#2a9d8f", "#7b3f9e", "#3a3a3a", "#0077b6", "#6b8e23")  # lines, none orange
FIG_METHOD = "#c4352b"        # the explanation's deletion / insertion curves
MAX_THUMBNAILS = 32           # temporal_figure shows at most this many frames under the bars


# ------------------------------------------------------------------------------------------------ helpers
def _as_frames(frames) -> np.ndarray:
    """uint8 (T,H,W,3) from uint8 or float-in-[0,1] input; raises InputError on any other shape."""
    a = np.asarray(frames)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise InputError(f"Frames must be an array of shape (T, H, W, 3); got shape {a.shape}.")
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(a, 0, 255).astype(np.uint8)


def _as_saliency(saliency, frames: np.ndarray) -> np.ndarray:
    """float32 (T,H,W) in [0,1] on the frames' grid (bilinear resize when only the spatial size differs)."""
    s = np.asarray(saliency, dtype=np.float32)
    if s.ndim != 3:
        raise InputError(f"The saliency map must have shape (T, H, W); got shape {s.shape}.")
    T, H, W = frames.shape[:3]
    if s.shape[0] != T:
        raise InputError(f"The saliency map has {s.shape[0]} frames but the clip has {T}; pass the frames "
                         "the explanation was computed on.")
    s = np.nan_to_num(np.clip(s, 0.0, 1.0), nan=0.0)
    if s.shape[1:] != (H, W):
        s = _resize_bilinear(s, H, W)
    return s


def _resize_bilinear(a: np.ndarray, h2: int, w2: int) -> np.ndarray:
    """Bilinear resize of a float (T,H,W) stack to (T,h2,w2), pixel centres aligned (like PIL / OpenCV)."""
    def axis(n_in, n_out):
        x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        x = np.clip(x, 0, n_in - 1)
        i0 = np.floor(x).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (x - i0).astype(np.float32)

    y0, y1, wy = axis(a.shape[1], h2)
    x0, x1, wx = axis(a.shape[2], w2)
    a = a[:, y0] * (1 - wy)[None, :, None] + a[:, y1] * wy[None, :, None]
    return a[:, :, x0] * (1 - wx)[None, None, :] + a[:, :, x1] * wx[None, None, :]


def _upscale_nearest(a: np.ndarray, k: int) -> np.ndarray:
    """Repeat every pixel of a (T,H,W,...) stack k times along H and W."""
    if k == 1:
        return a
    return np.repeat(np.repeat(a, k, axis=1), k, axis=2)


def _lut(cmap: str) -> np.ndarray:
    """uint8 (256,3) colour table of a matplotlib colour map."""
    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise InputError(f"Unknown colour map {cmap!r}; use a matplotlib name such as 'inferno' or 'viridis'.")
    return (cm(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    box = draw.textbbox((0, 0), text, font=font)
    return box[2] - box[0]


def _fit(draw: ImageDraw.ImageDraw, text: str, font, max_w: int) -> str:
    """The text, shortened with '...' so that it fits max_w pixels."""
    if _text_width(draw, text, font) <= max_w:
        return text
    while text and _text_width(draw, text + "...", font) > max_w:
        text = text[:-1]
    return text + "..." if text else ""


def _even(n: int) -> int:
    return n + (n % 2)


# -------------------------------------------------------------------------------------------- raster images
def heatmap(saliency, cmap: str = CMAP) -> np.ndarray:
    """Colour-map a saliency map on a fixed [0, 1] scale.

    Args:
        saliency: (T,H,W) (or any shape) of values in [0, 1]; values outside are clipped, NaN counts as 0.
        cmap: a matplotlib colour-map name.
    Returns:
        uint8 (T,H,W,3). No per-frame renormalisation: a frame of 0.2 everywhere is darker than one of 0.9.
    """
    s = np.nan_to_num(np.clip(np.asarray(saliency, dtype=np.float32), 0.0, 1.0), nan=0.0)
    return _lut(cmap)[np.rint(s * 255.0).astype(np.intp)]


def _blend(frames_u8: np.ndarray, sal: np.ndarray, lut: np.ndarray, alpha: float) -> np.ndarray:
    """Heat-map of sal (T,H,W) blended over frames (T,H,W,3) with weight alpha -> uint8."""
    heat = lut[np.rint(sal * 255.0).astype(np.intp)].astype(np.float32)
    out = (1.0 - alpha) * frames_u8.astype(np.float32) + alpha * heat
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _preserved(frames_u8: np.ndarray, sal: np.ndarray) -> np.ndarray:
    """What the model relies on stays in colour, the rest fades to a dim grey: frame·s + grey·(1-s)."""
    f = frames_u8.astype(np.float32)
    grey = (f @ np.array([0.299, 0.587, 0.114], np.float32))[..., None] * PRESERVED_DIM
    s = sal[..., None]
    return np.clip(f * s + grey * (1.0 - s) + 0.5, 0, 255).astype(np.uint8)


def overlay_frames(frames, saliency, *, alpha: float = ALPHA, min_height: int = MIN_HEIGHT,
                   titles: Sequence[str] | None = TITLES, frame_labels: Sequence[str] | None = None,
                   legend: bool = True, cmap: str = CMAP) -> np.ndarray:
    """Side-by-side frames: input | heat-map over the input | preserved region, with titles and captions.

    Args:
        frames: uint8 (T,H,W,3) (float in [0,1] is accepted too).
        saliency: (T,H,W) in [0,1], on the frames' grid (another spatial size is resized bilinearly).
        alpha: weight of the heat-map in the middle panel.
        min_height: panels are upscaled by the smallest integer factor that makes them at least this tall
            (the input panel by nearest neighbour, so pixels stay honest; the map bilinearly).
        titles: three panel titles, or None for no title strip.
        frame_labels: optional T strings (e.g. "t=1.23 s", "event") shown after "frame i/T" (1-based).
        legend: draw the low -> high colour bar under the third panel.
        cmap: matplotlib colour map of the heat-map.
    Returns:
        uint8 (T, H2, W2, 3) with even H2 and W2. Under the panels: the caption, the frame's importance
        (its mean saliency relative to the clip's most important frame) as a bar, and the colour bar.
    """
    frames = _as_frames(frames)
    sal = _as_saliency(saliency, frames)
    T, H, W = frames.shape[:3]
    if titles is not None and len(titles) != 3:
        raise InputError(f"titles must name the three panels; got {len(titles)} titles.")
    if frame_labels is not None and len(frame_labels) != T:
        raise InputError(f"frame_labels must hold one label per frame ({T}); got {len(frame_labels)}.")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1]; got {alpha}.")

    k = max(1, math.ceil(min_height / H))
    ph, pw = H * k, W * k
    big = _upscale_nearest(frames, k)
    sal_big = _resize_bilinear(sal, ph, pw) if k > 1 else sal
    lut = _lut(cmap)
    panels = (big, _blend(big, sal_big, lut, alpha), _preserved(big, sal_big))

    fs = int(np.clip(round(ph / 17), 11, 26))          # font size follows the panel size
    gap = max(4, fs // 3)
    line = fs + gap                                     # height of one text line
    title_h = line + gap if titles is not None else gap
    foot_h = 2 * line + gap
    out_h, out_w = _even(title_h + ph + foot_h), _even(3 * pw + 4 * gap)
    xs = [gap + i * (pw + gap) for i in range(3)]
    y_img, y_foot = title_h, title_h + ph + gap // 2

    means = sal.mean(axis=(1, 2))
    rel = means / means.max() if means.max() > 0 else np.zeros_like(means)

    # Everything that is the same on every frame is drawn once.
    font, small = _font(fs), _font(max(10, fs - 2))
    base = Image.new("RGB", (out_w, out_h), BACKGROUND)
    d = ImageDraw.Draw(base)
    if titles is not None:
        for x, t in zip(xs, titles):
            t = _fit(d, str(t), font, pw)
            d.text((x + pw // 2, gap + fs // 2), t, font=font, fill=TEXT, anchor="mm")
    bar_y0, bar_y1 = y_foot + line + gap // 2, y_foot + 2 * line - gap // 2
    if legend:
        x = xs[2]
        d.text((x, y_foot), "attribution scale", font=small, fill=TEXT_DIM)
        lo_w, hi_w = _text_width(d, "low", small), _text_width(d, "high", small)
        g0, g1 = x + lo_w + gap, x + pw - hi_w - gap
        if g1 > g0:
            ramp = lut[np.linspace(0, 255, g1 - g0).astype(np.intp)]
            base.paste(Image.fromarray(np.repeat(ramp[None], bar_y1 - bar_y0, axis=0)), (g0, bar_y0))
        mid = (bar_y0 + bar_y1) // 2
        d.text((x, mid), "low", font=small, fill=TEXT_DIM, anchor="lm")
        d.text((x + pw, mid), "high", font=small, fill=TEXT_DIM, anchor="rm")
    d.rectangle((xs[1], bar_y0, xs[1] + pw - 1, bar_y1 - 1), fill=BAR_TRACK)
    base = np.asarray(base).copy()

    out = np.empty((T, out_h, out_w, 3), np.uint8)
    for t in range(T):
        canvas = base.copy()
        for x, p in zip(xs, panels):
            canvas[y_img:y_img + ph, x:x + pw] = p[t]
        img = Image.fromarray(canvas)
        d = ImageDraw.Draw(img)
        caption = f"frame {t + 1}/{T}"
        d.text((xs[0], y_foot), _fit(d, caption, font, pw), font=font, fill=TEXT)
        if frame_labels is not None and str(frame_labels[t]):
            d.text((xs[0], y_foot + line), _fit(d, str(frame_labels[t]), small, pw), font=small, fill=TEXT_DIM)
        d.text((xs[1], y_foot), _fit(d, f"frame importance {rel[t]:.0%} of top frame", small, pw),
               font=small, fill=TEXT_DIM)
        fill_w = int(round(rel[t] * pw))
        if fill_w > 0:
            d.rectangle((xs[1], bar_y0, xs[1] + fill_w - 1, bar_y1 - 1), fill=BAR)
        out[t] = np.asarray(img)
    return out


def write_overlay(path, frames, saliency, fps: float = 8, **kw) -> str:
    """Write the overlay of ``overlay_frames`` as a browser-playable H.264 mp4.

    Args:
        path: output .mp4 path.
        frames: uint8 (T,H,W,3); saliency: (T,H,W) in [0,1].
        fps: playback rate. Model clips are short: 16 frames at 4-8 fps plays for 2-4 s, long enough to
            follow; use the clip's real rate only for long clips.
        **kw: passed to ``overlay_frames`` (alpha, min_height, titles, frame_labels, legend, cmap).
    Returns:
        the path written.
    """
    from attribution.video import write_video  # imported here so render's images need no video stack

    video = overlay_frames(frames, saliency, **kw)
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    write_video(video, path, fps=fps)
    return os.fspath(path)


def compare_strip(frames, maps: Mapping[str, np.ndarray], frame_indices: Sequence[int] | None = None, *,
                  alpha: float = ALPHA, cell_height: int = 128, show_input: bool = True,
                  cmap: str = CMAP) -> np.ndarray:
    """A grid to compare methods: one row per method (name on the left), a few frames as columns.

    Args:
        frames: uint8 (T,H,W,3).
        maps: method name -> saliency (T,H,W) in [0,1]; rows keep the mapping's order.
        frame_indices: the 0-based frames to show; default up to 6 evenly spaced over the clip.
        alpha: heat-map weight over the frame in each cell.
        cell_height: cells are upscaled (nearest, integer factor) to at least this height.
        show_input: add a first row with the plain frames.
        cmap: matplotlib colour map; one fixed [0,1] scale for every method and frame.
    Returns:
        uint8 (H2, W2, 3), even dimensions, with a header of frame numbers and a colour bar at the bottom.
    """
    frames = _as_frames(frames)
    T, H, W = frames.shape[:3]
    if not maps:
        raise InputError("compare_strip needs at least one map to show.")
    if frame_indices is None:
        frame_indices = np.unique(np.linspace(0, T - 1, min(T, 6)).round().astype(int))
    idx = [int(i) for i in frame_indices]
    if not idx or any(not 0 <= i < T for i in idx):
        raise InputError(f"frame_indices must be frame numbers between 0 and {T - 1}; got {idx}.")

    k = max(1, math.ceil(cell_height / H))
    ch, cw = H * k, W * k
    big = _upscale_nearest(frames[idx], k)
    lut = _lut(cmap)
    rows = [("input", big)] if show_input else []
    for name, m in maps.items():
        s = _as_saliency(m, frames)[idx]
        rows.append((str(name), _blend(big, _resize_bilinear(s, ch, cw) if k > 1 else s, lut, alpha)))

    fs = int(np.clip(round(ch / 9), 11, 20))
    gap = max(3, fs // 4)
    font = _font(fs)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = min(max(_text_width(probe, n, font) for n, _ in rows) + 5 * gap, 260)
    header_h, legend_h = fs + 2 * gap, fs + 3 * gap
    out_w = _even(label_w + len(idx) * (cw + gap))
    out_h = _even(header_h + len(rows) * (ch + gap) + legend_h)
    canvas = np.empty((out_h, out_w, 3), np.uint8)
    canvas[:] = BACKGROUND
    for r, (_, cells) in enumerate(rows):
        y = header_h + r * (ch + gap)
        for c in range(len(idx)):
            x = label_w + c * (cw + gap)
            canvas[y:y + ch, x:x + cw] = cells[c]
    y_leg = header_h + len(rows) * (ch + gap) + gap
    g0, g1 = label_w, min(out_w - gap, label_w + max(cw, 3 * cw // 2))
    canvas[y_leg:y_leg + fs, g0:g1] = lut[np.linspace(0, 255, g1 - g0).astype(np.intp)][None]

    img = Image.fromarray(canvas)
    d = ImageDraw.Draw(img)
    for c, i in enumerate(idx):
        d.text((label_w + c * (cw + gap) + cw // 2, header_h // 2), f"frame {i + 1}/{T}", font=font,
               fill=TEXT, anchor="mm")
    for r, (name, _) in enumerate(rows):
        y = header_h + r * (ch + gap) + ch // 2
        d.text((2 * gap, y), _fit(d, name, font, label_w - 4 * gap), font=font, fill=TEXT, anchor="lm")
    d.text((g0 - gap, y_leg + fs // 2), "low", font=font, fill=TEXT_DIM, anchor="rm")
    d.text((g1 + gap, y_leg + fs // 2), "high", font=font, fill=TEXT_DIM, anchor="lm")
    return np.asarray(img).copy()


# ------------------------------------------------------------------------------------------------ figures
def _new_figure(width_in: float, height_in: float, **kw) -> Figure:
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
    thumbs = None
    if frames is not None:
        thumbs = _as_frames(frames)
        if len(thumbs) != T:
            raise InputError(f"frames must hold the clip's {T} frames; got {len(thumbs)}.")

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

    x = np.arange(T)
    ax.bar(x, temporal, width=0.8, color=FIG_BAR, label="frame importance (mean saliency)", zorder=2)
    top = float(temporal.max()) if temporal.max() > 0 else 1.0
    ax.set_ylim(0, top * 1.22)
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylabel("mean saliency")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.spines[["top"] if per_area is not None else ["top", "right"]].set_visible(False)
    handles, labels = ax.get_legend_handles_labels()
    if event is not None:
        span = ax.axvspan(s - 0.5, e - 0.5, color=FIG_EVENT, alpha=0.16, zorder=1, label="evidence window")
        span.set_gid("evidence-window")
        ax.text((s + e - 1) / 2, 0.97, "evidence window", transform=blended_transform_factory(ax.transData,
                ax.transAxes), ha="center", va="top", color=FIG_EVENT, fontsize=10, weight="bold")
        handles.append(span)
        labels.append("evidence window")
    if per_area is not None:
        ax2 = ax.twinx()
        for a, (row, lab) in enumerate(zip(per_area, area_labels)):
            ax2.plot(x, row, marker="o", ms=3.5, lw=1.8, label=str(lab), zorder=3,
                     color=FIG_AREAS[a % len(FIG_AREAS)])
        ax2.set_ylim(0, max(float(per_area.max()), 1e-6) * 1.22)
        ax2.set_ylabel("mask mass per area")
        ax2.spines[["top"]].set_visible(False)
        h2, l2 = ax2.get_legend_handles_labels()
        handles += h2
        labels += l2
    # Below the plot: an "outside upper" legend would collide with the suptitle in constrained layout.
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False,
               fontsize=9)
    if title:
        fig.suptitle(title, fontsize=13, weight="bold")

    pos, tick_labels = _frame_ticks(T, times)
    xlabel = "time (s)" if times is not None else "frame"
    if ax_t is None:
        ax.set_xticks(pos, tick_labels)
        ax.set_xlabel(xlabel)
    else:
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
    return fig


def _auc_label(name: str, auc) -> str:
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


def figure_to_array(fig: Figure) -> np.ndarray:
    """Draw the figure on an Agg canvas and return its pixels, uint8 (H,W,3)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
