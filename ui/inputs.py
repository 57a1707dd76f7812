"""Widget values to library arguments: the clip's path, numbers, the perturbation settings, the target, the
choices the dropdowns offer, and the decoded clip with its model."""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from attribution import methods
from attribution.errors import ExplorerError, InputError, VideoError
from attribution.methods.perturbation import parse_areas
from attribution.step import PRECISIONS
from attribution.video import load_clip
from model_zoo import get_entry, list_models, load_model
from ui import config
from ui.config import TOP1, TOP1_CHOICE

def model_choices() -> list[tuple[str, str]]:
    out = []
    for name in list_models():
        e = get_entry(name)
        where = "built in, works offline" if e.offline else "downloads weights on first use"
        out.append((f"{name}  ({where})", name))
    return out


def method_choices() -> list[tuple[str, str]]:
    """(display name, name) of every registered method, the paper's first."""
    return [(m.display, m.name) for m in methods.REGISTRY.values()]


def labels_of(model_name: str) -> list[str]:
    try:
        labels = get_entry(model_name).labels
    except ExplorerError:
        return []
    return [] if callable(labels) else [str(x) for x in labels]


def target_choices(model_name: str, top5=None) -> list:
    """The target dropdown: top-1 first, then the top-5 predictions (with probabilities), then every label."""
    choices: list = [TOP1_CHOICE]
    seen = set()
    for i, (label, p) in enumerate(top5 or []):
        choices.append((f"#{i + 1} {label}  ({p:.0%})", label))
        seen.add(label)
    choices += [lbl for lbl in labels_of(model_name) if lbl not in seen]
    return choices


def contrast_choices(model_name: str) -> list:
    """The "rather than" dropdown: none first, then every label."""
    return [("— (no contrast)", config.NO_CONTRAST), *labels_of(model_name)]


def path_of(video) -> str | None:
    """The file path inside whatever Gradio or a direct caller passed (str, Path, dict, FileData)."""
    if video is None:
        return None
    if isinstance(video, (str, Path)):
        return str(video) or None
    if isinstance(video, dict):
        inner = video.get("video", video)
        return path_of(inner.get("path") if isinstance(inner, dict) else inner)
    return path_of(getattr(video, "path", None))


def number(x, name: str, *, integer=False, minimum=None):
    """None for an empty field, else a checked number."""
    if x is None or (isinstance(x, str) and not x.strip()):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, not {x!r}.") from None
    if not np.isfinite(v):
        raise InputError(f"{name} must be a finite number, not {x!r}.")
    if minimum is not None and v < minimum:
        raise InputError(f"{name} must be at least {minimum:g}, not {x!r}.")
    return int(round(v)) if integer else v


def overrides(method: str, areas, iterations, key_frames, perturbation, precision=None) -> dict:
    """Options of the perturbation methods; the comparison methods take none of them."""
    if not methods.get(method).takes_settings:
        return {}
    if precision not in (None, "", *PRECISIONS):
        raise InputError(f"Precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    out = dict(areas=parse_areas(areas), iterations=number(iterations, "Iterations", integer=True, minimum=0),
               key_frames=number(key_frames, "Key frames", integer=True, minimum=0),
               perturbation=perturbation or None, precision=precision or None)
    return {k: v for k, v in out.items() if v}  # 0 and "" mean "the preset's value"


def parse_target(target):
    if target is None:
        return None
    if isinstance(target, (int, np.integer)):
        return int(target)
    t = str(target).strip()
    return None if t in (TOP1, "top-1", TOP1_CHOICE[0]) else t


def _sha1(path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=1)
def _known_events() -> dict:
    """sha1 of each shipped example clip with ground truth (toy and ground-truth tasks) -> its evidence window
    (drawn in the temporal plot)."""
    out = {}
    for f in config.EXAMPLES.glob("*_ground_truth.json"):
        try:
            meta = json.loads(f.read_text())
            out.update({_sha1(config.EXAMPLES / n): tuple(m["event"]) for n, m in meta.items()
                        if (config.EXAMPLES / n).exists()})
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def event_for(path: str, model, video, trimmed: bool):
    """The known evidence window of a shipped example clip, when the model sees exactly its frames."""
    if trimmed or video.num_source_frames != model.num_frames:
        return None
    try:
        return _known_events().get(_sha1(path)) if os.path.getsize(path) < 5 * 2**20 else None
    except OSError:
        return None


def load(video, model_name: str, start, end, progress):
    """Decode the clip and load the model: (path, model, Video, trimmed)."""
    path = path_of(video)
    if not path:
        raise InputError("Upload a video first (or click one of the examples below the upload box).")
    start = number(start, "Start", minimum=0) or None  # 0 and empty both mean "from the beginning" ...
    end = number(end, "End", minimum=0) or None        # ... and "to the end"
    progress(0.02, desc="Loading the model")
    model = load_model(model_name or config.DEFAULT_MODEL)
    progress(0.06, desc="Decoding the video")
    v = load_clip(path, model, start=start, end=end, **config.limits())
    if v.num_source_frames < 2:
        raise VideoError(f"The video '{Path(path).name}' has a single frame: a video classifier needs a "
                         "moving clip; upload a video of at least a second.")
    return path, model, v, start is not None or end is not None
