"""Test helpers: what the product wrote (a video file's streams, a figure's pixels) and the ideal map of known evidence."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import av
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg


def probe_video(path) -> dict:
    """What a video file contains, without decoding it.

    Returns a dict: codec (e.g. "h264"), profile (e.g. "High"), pix_fmt (e.g. "yuv420p"), width,
    height (coded size), rotation (degrees counter-clockwise, from the display matrix), frames (counted
    by demuxing where the container does not say), fps (average), duration (seconds), has_audio, and
    faststart (True when an mp4/mov index precedes its data, None for other containers).
    """
    path = Path(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        cc = stream.codec_context
        info = dict(codec=cc.name, profile=cc.profile, pix_fmt=cc.pix_fmt, width=cc.width,
                    height=cc.height, frames=stream.frames,
                    fps=float(stream.average_rate) if stream.average_rate else None,
                    duration=float(stream.duration * stream.time_base) if stream.duration else (container.duration / 1e6 if container.duration else None),
                    has_audio=bool(container.streams.audio), rotation=0,
                    faststart=_moov_first(path) if "mp4" in container.format.name else None)
        count, rotation = 0, None
        for packet in container.demux(stream):
            count += bool(packet.size)
            if rotation is None:  # the rotation travels on decoded frames: decode until the first one
                try:
                    frames = stream.decode(packet)
                except av.error.FFmpegError:
                    frames = []
                if frames:
                    rotation = info["rotation"] = frames[0].rotation
        if not info["frames"]:
            info["frames"] = count
    return info


def _moov_first(path: Path):
    """True if the mp4 index (moov) comes before the media data (mdat), walking the top-level boxes."""
    with open(path, "rb") as f:
        while True:
            header = f.read(8)
            if len(header) < 8:
                return None
            size, kind = int.from_bytes(header[:4], "big"), header[4:]
            if kind in (b"moov", b"mdat"):
                return kind == b"moov"
            if size == 1:
                size = int.from_bytes(f.read(8), "big") - 8
            elif size == 0:
                return None
            f.seek(size - 8, os.SEEK_CUR)


def figure_to_array(fig) -> np.ndarray:
    """Draw the figure on an Agg canvas and return its pixels, uint8 (H,W,3)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def box_map(boxes: Sequence, T: int, H: int, W: int) -> np.ndarray:
    """The evidence as a map (T,H,W): 1 inside each frame's box, 0 elsewhere (a perfect explanation)."""
    m = np.zeros((T, H, W), dtype=np.float32)
    for t, b in enumerate(boxes):
        if b is not None:
            m[t, max(0, b[1]):b[3], max(0, b[0]):b[2]] = 1
    return m
