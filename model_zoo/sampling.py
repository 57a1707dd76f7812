"""Which source frames a model sees: the one rule every path (API, app, CLI, batch, benchmarks) applies.

PyTorchVideo and most Kinetics models were trained on ``num_frames`` frames taken every ``sampling_rate``
frames of a 30 fps video, i.e. on a window of ``num_frames * sampling_rate / 30`` seconds. At test time their
recipes take that window from the centre of the clip and subsample it uniformly. A model whose entry has no
sampling rate (Something-Something models, which see the whole action, and the toy) sees frames spread
uniformly over the whole clip, as TSN-style segment sampling does. A trim (start / end) chooses the part of
the clip the rule is applied to. See docs/sampling.md.
"""
from __future__ import annotations

import numpy as np

RECIPE_FPS = 30.0  # the frame rate the sampling rates of the recipes refer to (Kinetics videos)


def frame_indices(model_or_entry, num_source_frames: int, source_fps: float | None) -> np.ndarray:
    """Indices (num_frames,) into a clip of ``num_source_frames`` frames at ``source_fps``.

    ``model_or_entry`` is a :class:`VideoClassifier` or a :class:`ModelEntry` (anything with ``num_frames``
    and ``sampling_rate``). With a sampling rate the window covers ``num_frames * rate * source_fps / 30``
    source frames, centred, and the indices are uniform inside it; when the clip is shorter than the
    window, when there is no rate, or when the fps is unknown (None or <= 0: then 30 is assumed), they are
    uniform over the whole clip. Indices repeat when the clip has fewer frames than the model needs.
    """
    n = int(num_source_frames)
    frames = int(model_or_entry.num_frames)
    if n < 1:
        raise ValueError("the clip has no frames")
    rate = getattr(model_or_entry, "sampling_rate", None)
    fps = float(source_fps) if source_fps and source_fps > 0 else RECIPE_FPS
    window = frames * rate * fps / RECIPE_FPS if rate else None
    if window is None or window > n:
        return np.linspace(0, n - 1, frames).round().astype(np.int64)
    # Centre the window; linspace(0, window - 1) is how UniformTemporalSubsample picks inside a clip.
    start = (n - window) / 2
    idx = start + np.linspace(0, window - 1, frames)
    return np.clip(idx.round(), 0, n - 1).astype(np.int64)


def window_seconds(model_or_entry) -> float | None:
    """Length in seconds of the window the recipe covers, or None when the model spreads its frames uniformly."""
    rate = getattr(model_or_entry, "sampling_rate", None)
    return int(model_or_entry.num_frames) * rate / RECIPE_FPS if rate else None


def describe(model_or_entry) -> str:
    """The rule in words: '16 x 4 frames (2.13 s at 30 fps), centred' or '16 frames spread over the clip'."""
    frames = int(model_or_entry.num_frames)
    seconds = window_seconds(model_or_entry)
    if seconds is None:
        return f"{frames} frames spread uniformly over the clip"
    return (f"{frames} frames x rate {model_or_entry.sampling_rate} ({seconds:.2f} s of video), from the centre "
            "of the clip")
