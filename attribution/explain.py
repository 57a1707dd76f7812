"""``explain()``: one entry point for every attribution method, and the :class:`Explanation` it returns."""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from attribution import methods
from attribution.clip import Prepared, prepare_clip  # noqa: F401  (public here: pipeline, app, tests)
from attribution.common import frozen, resolve_device
from attribution.errors import InputError
from attribution.methods import available_methods  # noqa: F401  (public: the names explain() takes)
from attribution.methods.perturbation import make_settings  # noqa: F401  (public: the settings of one run)


@dataclasses.dataclass
class Explanation:
    """Everything one explanation produced, and everything needed to reproduce it (README: Python API)."""
    model_name: str
    target: int
    label: str
    topk: list                      # [(label, probability)] of the model on the clip
    probability: float              # p(target) on the unperturbed clip
    saliency: np.ndarray            # (T,H,W) float32 in [0,1]
    temporal: np.ndarray            # (T,) per-frame mean of the saliency
    frames: np.ndarray              # uint8 (T,H,W,3): the clip the map was computed on (model input grid)
    method: str
    preset: str | None
    settings: dict
    seed: int
    timings: dict                   # seconds: prepare, predict, attribution, total
    masks: np.ndarray | None = None          # (A,T,H,W) per-area masks (perturbation methods)
    areas: list | None = None
    area_temporal: np.ndarray | None = None  # (A,T) per-frame mean of each area's mask
    iterations: int | None = None
    evaluations: int | None = None           # clip forward+backward passes spent
    history: dict | None = None              # per-iteration traces (perturbation methods)
    curves: Any = None                       # metrics.Curves once computed
    source: dict = dataclasses.field(default_factory=dict)  # path, fps, frame indices and times
    event: tuple | None = None               # known evidence window (toy clips), for plots
    contrast: int | None = None              # "why target rather than contrast" (the pairwise game)
    contrast_label: str | None = None
    model_info: dict = dataclasses.field(default_factory=dict)

    @property
    def peak_frame(self) -> int:
        return int(np.argmax(self.temporal))

    def summary(self) -> dict:
        """JSON-ready description: model, preprocessing, method, parameters, seed, versions, timings, AUCs."""
        out = {
            "model": self.model_name, "model_info": self.model_info,
            "target": self.target, "label": self.label, "probability": self.probability,
            "topk": [{"label": lbl, "probability": p} for lbl, p in self.topk],
            "method": self.method, "preset": self.preset, "settings": self.settings, "seed": self.seed,
            "areas": self.areas, "iterations": self.iterations, "evaluations": self.evaluations,
            "frames": list(self.saliency.shape), "temporal": [round(float(x), 5) for x in self.temporal],
            "peak_frame": self.peak_frame, "timings": self.timings, "source": self.source,
            "event": list(self.event) if self.event else None, "versions": versions(),
            "contrast": None if self.contrast is None else {"index": self.contrast, "label": self.contrast_label},
        }
        if self.history and self.history.get("prob"):
            out["final_probability_per_mask"] = self.history["prob"][-1]
        if self.curves is not None:
            out["curves"] = self.curves.summary() if hasattr(self.curves, "summary") else self.curves
        return out

    def save(self, directory) -> Path:
        """Write overlay.mp4, temporal.png, curves.png (when curves exist), saliency.npz and summary.json."""
        from attribution import figures, render
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        t = len(self.frames)
        fps = max(2.0, min(8.0, t / 4))  # slow enough to follow a 16-frame clip
        times = self.source.get("times")
        labels = [f"t={s:.2f}s" for s in times] if times is not None and len(times) == t else None
        render.write_overlay(d / "overlay.mp4", self.frames, self.saliency, fps=fps, frame_labels=labels)
        fig = figures.temporal_figure(
            self.temporal, per_area=self.area_temporal,
            area_labels=[f"area {a:g}" for a in self.areas] if self.areas else None,
            event=self.event, frames=self.frames, times=times,
            title=f"{self.method}: which frames matter for '{self.label}'")
        figures.save_figure(fig, d / "temporal.png")
        if self.curves is not None:
            figures.save_figure(self.curves.figure(title=f"{self.method} on '{self.label}'"), d / "curves.png")
        arrays = {"saliency": self.saliency.astype(np.float32), "temporal": self.temporal.astype(np.float32),
                  "frames": self.frames}
        if self.masks is not None:
            arrays["masks"] = self.masks.astype(np.float16)
            arrays["areas"] = np.asarray(self.areas, dtype=np.float32)
        np.savez_compressed(d / "saliency.npz", **arrays)
        (d / "summary.json").write_text(json.dumps(self.summary(), indent=1, default=json_default))
        return d


def json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (Path, torch.device)):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def versions() -> dict:
    import importlib.metadata as md
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("numpy", "av", "captum", "transformers", "pytorchvideo", "gradio"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def resolve_target(model, target, probs: torch.Tensor) -> int:
    """Class index from an index, a label name (case-insensitive) or None (top-1)."""
    k = len(model.labels)
    if target is None:
        return int(probs.argmax())
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if not 0 <= int(target) < k:
            raise InputError(f"Target index {int(target)} is out of range: this model has {k} classes (0..{k - 1}).")
        return int(target)
    if isinstance(target, str):
        name = target.strip()
        if name.isdigit():
            return resolve_target(model, int(name), probs)
        lower = [lbl.lower() for lbl in model.labels]
        if name.lower() in lower:
            return lower.index(name.lower())
        close = difflib.get_close_matches(name.lower(), lower, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(model.labels[lower.index(c)]) for c in close)}?" if close else ""
        raise InputError(f"Unknown target label {target!r} for model {model.name!r}.{hint}")
    raise InputError(f"target must be a class index, a label name or None, not {type(target).__name__}.")


def _model_info(model) -> dict:
    """What summary.json records of the model: its info, input grid, preprocessing and frame sampling."""
    pre = getattr(model, "preprocess", None)
    return dict(getattr(model, "info", {}), num_frames=model.num_frames, crop_size=model.crop_size,
                input_size=list(getattr(model, "input_size", (model.crop_size, model.crop_size))),
                sampling_rate=getattr(model, "sampling_rate", None),
                preprocess=pre.describe() if hasattr(pre, "describe") else None,
                mean=model.mean.flatten().tolist(), std=model.std.flatten().tolist(),
                layout=getattr(model, "layout", None))


def explain(model, frames_or_clip, target=None, method: str = "step", preset: str = "fast", device=None,
            seed: int = 0, progress: Callable | None = None, cancel=None, event=None, contrast=None,
            **overrides) -> Explanation | list[Explanation]:
    """Explain why ``model`` predicts ``target`` on a clip.

    Args:
        model: a :class:`model_zoo.VideoClassifier` (any module that maps (B,3,T,H,W) in [0,1] to logits and
            has ``labels``, ``prepare``, ``num_frames`` and ``crop_size``).
        frames_or_clip: a path (read with the model's own frame sampling, see ``load_clip``), a
            :class:`attribution.video.Video`, uint8 frames (T,H,W,3) of any size (resized and cropped by
            ``model.prepare``), or a clip tensor (1,3,T,H,W) in [0,1] at the model's input size.
        target: class index, label name, or None for the model's top-1 class; a list of them explains each
            (in one optimisation batch for the perturbation methods) and returns a list of Explanations.
        method: ``step`` (the paper), ``3d-ep``, ``2d-ep``, or a comparison method (see
            :func:`available_methods`).
        preset: for perturbation methods, ``fast`` (default here), ``interactive`` (99 model passes, the app's
            default) or ``paper`` (the authors' schedule); docs/method.md §7.
        device: where to run; default the model's device (the GPU when the model was loaded there). Another
            device moves ``model`` there (``nn.Module.to`` moves it in place) and it stays there afterwards.
        seed: the same inputs and seed give the same map.
        progress: ``progress(done, total, info)``, called as the optimisation advances.
        cancel: ``threading.Event`` or callable; when set, raises ``step.Cancelled``.
        event: known evidence window (start, end) of the clip, only drawn in plots.
        contrast: a class (index or label): explain why the model sees ``target`` *rather than* it (the
            perturbation methods' pairwise game, docs/method.md).
        **overrides: any :class:`attribution.step.Settings` field (iterations, areas, lr, grid_step, sigma,
            key_frames, perturbation, game, area_weight, area_growth, core_weight, core_warmup, ...);
            ``precision="fp32"`` turns off the autocast a GPU gets by default.
    """
    t0 = time.perf_counter()
    if device is not None:
        device = resolve_device(device)
        if device != model.device:
            model = model.to(device)
    spec = methods.get(method)
    several = isinstance(target, (list, tuple))
    with frozen(model):
        prepared = prepare_clip(model, frames_or_clip)
        clip = prepared.clip
        t1 = time.perf_counter()
        with torch.no_grad():
            probs = model(clip).float().softmax(-1)[0]
        targets = [resolve_target(model, t, probs) for t in (target if several else [target])]
        if several and not targets:
            raise InputError("Give at least one target class.")
        if contrast is not None:
            if not spec.takes_settings:
                raise InputError(f"'Rather than' works with the perturbation methods "
                                 f"({', '.join(methods.perturbation_methods())}), not with {method!r}.")
            contrast = resolve_target(model, contrast, probs)
            overrides["contrast"] = contrast
        top = probs.topk(min(5, probs.numel()))
        topk = [(model.labels[i], float(v)) for v, i in zip(top.values.tolist(), top.indices.tolist())]
        t2 = time.perf_counter()
        torch.manual_seed(seed)
        results = spec.for_targets(model, clip, targets, seed=seed, progress=progress, cancel=cancel, preset=preset,
                                   **overrides)
        t3 = time.perf_counter()
    timings = {"prepare": round(t1 - t0, 4), "predict": round(t2 - t1, 4), "attribution": round(t3 - t2, 4),
               "total": round(time.perf_counter() - t0, 4)}
    frames = (clip[0].permute(1, 2, 3, 0).detach().cpu().numpy() * 255 + 0.5).astype(np.uint8)  # once, shared
    common = dict(model_name=model.name, topk=topk, method=method, seed=seed, source=prepared.source, frames=frames,
                  event=tuple(event) if event is not None else None, model_info=_model_info(model), timings=timings,
                  contrast=contrast, contrast_label=None if contrast is None else model.labels[contrast])
    out = [_explanation(model, tgt, float(probs[tgt]), res, common) for tgt, res in zip(targets, results)]
    return out if several else out[0]


def _explanation(model, target: int, probability: float, res, common: dict) -> Explanation:
    """The Explanation of one method result (``res``, a MethodResult) for ``target``."""
    sal = res.saliency.detach().float().cpu().numpy().astype(np.float32)
    extras = dict(res.extras)
    return Explanation(
        **{**common, "source": dict(common["source"]), "timings": dict(common["timings"])}, target=target,
        label=model.labels[target], probability=probability, saliency=sal, temporal=sal.mean((1, 2)),
        preset=extras.pop("preset", None), settings=res.settings, evaluations=res.evaluations, **extras)
