"""A clip made ready for a model once per request: :class:`Prepared` and :func:`prepare_clip`.

What :func:`attribution.explain.explain`, :func:`attribution.pipeline.run` and
:func:`attribution.metrics.deletion_insertion` take as their clip: a path (read with the model's own frame
sampling), a ``Video``, uint8 frames or a clip tensor, all turned into one (1,3,T,H,W) tensor in [0,1] on the
model's device. PyAV is imported only when a path or a ``Video`` is given.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from attribution.errors import InputError


@dataclasses.dataclass
class Prepared:
    """A clip ready for the model: (1,3,T,H,W) in [0,1] on its device, and what it was made from (path, fps,
    frame indices and times). :func:`explain` and :func:`attribution.pipeline.run` take it as it is, so a clip
    is decoded and resized once per request."""
    clip: torch.Tensor
    source: dict


def prepare_clip(model, frames_or_clip) -> Prepared:
    """The :class:`Prepared` clip of a path, a ``Video``, uint8 frames or a clip tensor.

    A path is read with :func:`attribution.video.load_clip` (the model's own frame sampling); a ``Video`` with
    more frames than the model takes (e.g. ``load_video(path)`` with every frame) is sampled the same way,
    one with exactly ``num_frames`` frames is taken as already sampled.
    """
    from attribution.video import Video, load_clip
    if isinstance(frames_or_clip, Prepared):
        return frames_or_clip
    source: dict = {}
    x = frames_or_clip
    if isinstance(x, (str, os.PathLike)):
        source["path"] = str(x)
        x = load_clip(x, model)
    if isinstance(x, Video):
        if x.num_source_frames < 2:
            raise InputError("The clip has a single frame; a video classifier needs at least 2 frames.")
        pick = np.arange(len(x))
        if len(x) != model.num_frames and hasattr(model, "frame_indices"):
            pick = np.asarray(model.frame_indices(len(x), x.fps))
        times = np.asarray(x.times)[pick]
        source.update(fps=x.fps, duration=x.duration, size=list(x.size),
                      indices=[int(i) for i in np.asarray(x.indices)[pick]],
                      times=[round(float(s), 3) for s in times],
                      seen=[round(float(times[0]), 3), round(float(times[-1]), 3)])
        if hasattr(model, "sampling"):
            source["sampling"] = model.sampling()
        x = x.frames[pick]
    if isinstance(x, torch.Tensor):
        clip = x.detach().float()
        if clip.dim() == 4:
            clip = clip.unsqueeze(0)
        if clip.dim() != 5 or clip.shape[:2] != (1, 3):
            raise InputError(f"A clip tensor must be (1,3,T,H,W) in [0,1]; got {tuple(x.shape)}.")
        if float(clip.min()) < 0 or float(clip.max()) > 1:
            raise InputError("A clip tensor must hold values in [0,1] (RGB, not normalised).")
        return Prepared(clip.to(model.device), source)
    arr = np.asarray(x)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise InputError(f"Frames must be uint8 (T,H,W,3); got {arr.dtype} {arr.shape}.")
    if len(arr) < 2:
        raise InputError("The clip has a single frame; a video classifier needs at least 2 frames.")
    return Prepared(model.prepare(arr), source)
