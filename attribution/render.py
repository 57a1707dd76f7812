"""Raster pictures of an explanation: heat-maps, the side-by-side overlay video and the comparison strip.

Everything here is a pure function of arrays; images are composed with numpy and ``PIL.ImageDraw``. The
matplotlib figures (the temporal plot, the deletion / insertion curves) are in :mod:`attribution.figures`.

Shapes: frames uint8 (T,H,W,3); saliency (T,H,W) in [0,1] on the same grid as the frames (a map on another
spatial grid is resized bilinearly to the frames); images uint8 (H,W,3).

Colour always uses a **fixed** [0, 1] scale: a frame whose saliency is low everywhere looks dim, it is never
renormalised to look as bright as the clip's most important frame.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, NamedTuple, Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from attribution.common import check_frames
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


# ------------------------------------------------------------------------------------------------ helpers
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
    """Pillow's default font at that size (its fixed bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    """Width in pixels of the text drawn in that font."""
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
    """n rounded up to an even number (H.264 in yuv420p needs even frame sizes)."""
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


class _Layout(NamedTuple):
    """Where the parts of an overlay frame go, in pixels."""
    ph: int                   # panel height and width
    pw: int
    fs: int                   # font size
    gap: int
    line: int                 # height of one text line
    xs: list                  # left edge of each of the three panels
    y_img: int                # top of the panels
    y_foot: int               # top of the text under the panels
    bar_y0: int               # top and bottom of the importance bar and of the colour bar
    bar_y1: int
    out_h: int
    out_w: int


def _overlay_layout(ph: int, pw: int, titled: bool) -> _Layout:
    """The layout of an overlay frame around three ph x pw panels (a title strip above them when titled)."""
    fs = int(np.clip(round(ph / 17), 11, 26))          # font size follows the panel size
    gap = max(4, fs // 3)
    line = fs + gap                                     # height of one text line
    title_h = line + gap if titled else gap
    foot_h = 2 * line + gap
    out_h, out_w = _even(title_h + ph + foot_h), _even(3 * pw + 4 * gap)
    xs = [gap + i * (pw + gap) for i in range(3)]
    y_img, y_foot = title_h, title_h + ph + gap // 2
    bar_y0, bar_y1 = y_foot + line + gap // 2, y_foot + 2 * line - gap // 2
    return _Layout(ph=ph, pw=pw, fs=fs, gap=gap, line=line, xs=xs, y_img=y_img, y_foot=y_foot, bar_y0=bar_y0,
                   bar_y1=bar_y1, out_h=out_h, out_w=out_w)


def _check_overlay_options(T: int, titles, frame_labels, alpha: float) -> None:
    """Raise InputError unless there are three titles (or none), T frame labels (or none) and alpha in [0, 1]."""
    if titles is not None and len(titles) != 3:
        raise InputError(f"titles must name the three panels; got {len(titles)} titles.")
    if frame_labels is not None and len(frame_labels) != T:
        raise InputError(f"frame_labels must hold one label per frame ({T}); got {len(frame_labels)}.")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1]; got {alpha}.")


def _overlay_panels(frames: np.ndarray, sal: np.ndarray, min_height: int, lut: np.ndarray, alpha: float):
    """The three panels, each uint8 (T,ph,pw,3): input (nearest-upscaled), heat-map over it, preserved region."""
    T, H, W = frames.shape[:3]
    k = max(1, math.ceil(min_height / H))
    ph, pw = H * k, W * k
    big = _upscale_nearest(frames, k)
    sal_big = _resize_bilinear(sal, ph, pw) if k > 1 else sal
    return big, _blend(big, sal_big, lut, alpha), _preserved(big, sal_big)


def _relative_importance(sal: np.ndarray) -> np.ndarray:
    """Each frame's mean saliency relative to the clip's most important frame (all 0 for an all-zero map)."""
    means = sal.mean(axis=(1, 2))
    return means / means.max() if means.max() > 0 else np.zeros_like(means)


def _draw_scale(base: Image.Image, d: ImageDraw.ImageDraw, lay: _Layout, lut: np.ndarray, small) -> None:
    """The low -> high colour bar under the third panel."""
    x, pw, gap = lay.xs[2], lay.pw, lay.gap
    d.text((x, lay.y_foot), "attribution scale", font=small, fill=TEXT_DIM)
    lo_w, hi_w = _text_width(d, "low", small), _text_width(d, "high", small)
    g0, g1 = x + lo_w + gap, x + pw - hi_w - gap
    if g1 > g0:
        ramp = lut[np.linspace(0, 255, g1 - g0).astype(np.intp)]
        base.paste(Image.fromarray(np.repeat(ramp[None], lay.bar_y1 - lay.bar_y0, axis=0)), (g0, lay.bar_y0))
    mid = (lay.bar_y0 + lay.bar_y1) // 2
    d.text((x, mid), "low", font=small, fill=TEXT_DIM, anchor="lm")
    d.text((x + pw, mid), "high", font=small, fill=TEXT_DIM, anchor="rm")


def _overlay_background(lay: _Layout, titles, legend: bool, lut: np.ndarray, font, small) -> np.ndarray:
    """What is the same on every frame, drawn once: background, titles, colour bar, empty importance bar."""
    base = Image.new("RGB", (lay.out_w, lay.out_h), BACKGROUND)
    d = ImageDraw.Draw(base)
    if titles is not None:
        for x, t in zip(lay.xs, titles):
            t = _fit(d, str(t), font, lay.pw)
            d.text((x + lay.pw // 2, lay.gap + lay.fs // 2), t, font=font, fill=TEXT, anchor="mm")
    if legend:
        _draw_scale(base, d, lay, lut, small)
    d.rectangle((lay.xs[1], lay.bar_y0, lay.xs[1] + lay.pw - 1, lay.bar_y1 - 1), fill=BAR_TRACK)
    return np.asarray(base).copy()


def _overlay_frame(base: np.ndarray, panels, t: int, T: int, label: str, rel: float, lay: _Layout, font,
                   small) -> np.ndarray:
    """Frame t of the overlay: the panels on the background, the caption, the label and the importance bar."""
    canvas = base.copy()
    for x, p in zip(lay.xs, panels):
        canvas[lay.y_img:lay.y_img + lay.ph, x:x + lay.pw] = p[t]
    img = Image.fromarray(canvas)
    d = ImageDraw.Draw(img)
    x0, x1, pw = lay.xs[0], lay.xs[1], lay.pw
    d.text((x0, lay.y_foot), _fit(d, f"frame {t + 1}/{T}", font, pw), font=font, fill=TEXT)
    if label:
        d.text((x0, lay.y_foot + lay.line), _fit(d, label, small, pw), font=small, fill=TEXT_DIM)
    d.text((x1, lay.y_foot), _fit(d, f"frame importance {rel:.0%} of top frame", small, pw),
           font=small, fill=TEXT_DIM)
    fill_w = int(round(rel * pw))
    if fill_w > 0:
        d.rectangle((x1, lay.bar_y0, x1 + fill_w - 1, lay.bar_y1 - 1), fill=BAR)
    return np.asarray(img)


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
    frames = check_frames(frames)
    sal = _as_saliency(saliency, frames)
    T = len(frames)
    _check_overlay_options(T, titles, frame_labels, alpha)
    lut = _lut(cmap)
    panels = _overlay_panels(frames, sal, min_height, lut, alpha)
    lay = _overlay_layout(*panels[0].shape[1:3], titled=titles is not None)
    rel = _relative_importance(sal)
    font, small = _font(lay.fs), _font(max(10, lay.fs - 2))
    base = _overlay_background(lay, titles, legend, lut, font, small)
    out = np.empty((T, lay.out_h, lay.out_w, 3), np.uint8)
    for t in range(T):
        label = str(frame_labels[t]) if frame_labels is not None else ""
        out[t] = _overlay_frame(base, panels, t, T, label, rel[t], lay, font, small)
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


class _Grid(NamedTuple):
    """Where the parts of the comparison grid go, in pixels."""
    ch: int                   # cell height and width
    cw: int
    fs: int                   # font size
    font: object
    gap: int
    label_w: int              # width of the method names' column
    header_h: int             # height of the frame numbers' row
    y_leg: int                # top of the colour bar, which spans g0..g1
    g0: int
    g1: int
    out_h: int
    out_w: int


def _strip_indices(frame_indices, T: int) -> list[int]:
    """The 0-based frames to show (default up to 6 evenly spaced); InputError unless all lie in 0..T-1."""
    if frame_indices is None:
        frame_indices = np.unique(np.linspace(0, T - 1, min(T, 6)).round().astype(int))
    idx = [int(i) for i in frame_indices]
    if not idx or any(not 0 <= i < T for i in idx):
        raise InputError(f"frame_indices must be frame numbers between 0 and {T - 1}; got {idx}.")
    return idx


def _strip_rows(frames: np.ndarray, maps: Mapping[str, np.ndarray], idx: list[int], k: int, lut: np.ndarray,
                alpha: float, show_input: bool) -> list[tuple[str, np.ndarray]]:
    """(name, cells) per row, cells uint8 (len(idx),ch,cw,3) upscaled k times; the plain frames first if asked."""
    big = _upscale_nearest(frames[idx], k)
    ch, cw = big.shape[1:3]
    rows = [("input", big)] if show_input else []
    for name, m in maps.items():
        s = _as_saliency(m, frames)[idx]
        rows.append((str(name), _blend(big, _resize_bilinear(s, ch, cw) if k > 1 else s, lut, alpha)))
    return rows


def _strip_grid(rows, n_cols: int) -> _Grid:
    """The grid's layout for these rows and n_cols frames (font size from the cell height)."""
    ch, cw = rows[0][1].shape[1:3]
    fs = int(np.clip(round(ch / 9), 11, 20))
    gap = max(3, fs // 4)
    font = _font(fs)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = min(max(_text_width(probe, n, font) for n, _ in rows) + 5 * gap, 260)
    header_h, legend_h = fs + 2 * gap, fs + 3 * gap
    out_w = _even(label_w + n_cols * (cw + gap))
    out_h = _even(header_h + len(rows) * (ch + gap) + legend_h)
    y_leg = header_h + len(rows) * (ch + gap) + gap
    g0, g1 = label_w, min(out_w - gap, label_w + max(cw, 3 * cw // 2))
    return _Grid(ch=ch, cw=cw, fs=fs, font=font, gap=gap, label_w=label_w, header_h=header_h, y_leg=y_leg,
                 g0=g0, g1=g1, out_h=out_h, out_w=out_w)


def _paste_cells(g: _Grid, rows, lut: np.ndarray) -> np.ndarray:
    """The grid's pixels without text: the cells on the background and the colour bar."""
    canvas = np.empty((g.out_h, g.out_w, 3), np.uint8)
    canvas[:] = BACKGROUND
    for r, (_, cells) in enumerate(rows):
        y = g.header_h + r * (g.ch + g.gap)
        for c in range(len(cells)):
            x = g.label_w + c * (g.cw + g.gap)
            canvas[y:y + g.ch, x:x + g.cw] = cells[c]
    canvas[g.y_leg:g.y_leg + g.fs, g.g0:g.g1] = lut[np.linspace(0, 255, g.g1 - g.g0).astype(np.intp)][None]
    return canvas


def _label_grid(canvas: np.ndarray, g: _Grid, rows, idx: list[int], T: int) -> np.ndarray:
    """The grid's text drawn on the canvas: frame numbers above the columns, names left of the rows, low/high."""
    img = Image.fromarray(canvas)
    d = ImageDraw.Draw(img)
    for c, i in enumerate(idx):
        d.text((g.label_w + c * (g.cw + g.gap) + g.cw // 2, g.header_h // 2), f"frame {i + 1}/{T}", font=g.font,
               fill=TEXT, anchor="mm")
    for r, (name, _) in enumerate(rows):
        y = g.header_h + r * (g.ch + g.gap) + g.ch // 2
        d.text((2 * g.gap, y), _fit(d, name, g.font, g.label_w - 4 * g.gap), font=g.font, fill=TEXT, anchor="lm")
    d.text((g.g0 - g.gap, g.y_leg + g.fs // 2), "low", font=g.font, fill=TEXT_DIM, anchor="rm")
    d.text((g.g1 + g.gap, g.y_leg + g.fs // 2), "high", font=g.font, fill=TEXT_DIM, anchor="lm")
    return np.asarray(img).copy()


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
    frames = check_frames(frames)
    T, H = frames.shape[:2]
    if not maps:
        raise InputError("compare_strip needs at least one map to show.")
    idx = _strip_indices(frame_indices, T)
    lut = _lut(cmap)
    rows = _strip_rows(frames, maps, idx, max(1, math.ceil(cell_height / H)), lut, alpha, show_input)
    g = _strip_grid(rows, len(idx))
    return _label_grid(_paste_cells(g, rows, lut), g, rows, idx, T)
