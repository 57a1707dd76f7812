"""Video Attribution Explorer: the browser demo (Gradio Blocks; also the Hugging Face Space's ``app_file``).

Why did a video classifier predict that class? Upload a clip, pick a model, and the app optimises a
spatio-temporal perturbation mask (STEP, Li et al., IEEE TCSVT 2021) that keeps only what the model needs,
then checks the explanation with deletion / insertion curves against a random map.

This file only lays out widgets and wires callbacks; the callbacks are plain functions that call the library
(``attribution``, ``model_zoo``) and convert its results for display. They are importable and testable without
a server: ``from app import demo, explain_clip, predict_clip, compare_clip``.

``python app.py`` serves the page (the offline ``toy`` model needs no network). Environment:
``GRADIO_SERVER_NAME`` (default 127.0.0.1; Spaces set 0.0.0.0), ``GRADIO_SERVER_PORT`` or ``PORT`` (default:
the first free port from 7860), ``VAE_CONCURRENCY`` (model jobs at once, default 1), ``VAE_MAX_QUEUE``
(waiting jobs, default 16), ``VAE_MAX_UPLOAD_MB`` (default 100), ``VAE_MAX_SECONDS`` (longest clip, default
600), ``VAE_TMP`` (where per-request folders live), ``VAE_CURVE_STEPS`` (the quick deletion/insertion curves' steps, default 32; the
paper's 128 are one click away),
``VAE_WARMUP`` (default 1: compile the default model's mask generator in the background at start, so the
first explanation does not pay the ~10 s of torch.compile; 0 turns it off; never on ZeroGPU),
``VAE_MAX_REQUEST_SECONDS`` (requests the cost model puts above it are refused; README: The Space on each kind of
hardware), ``VAE_GPU_SECONDS_CAP`` (longest ZeroGPU window, default 90), ``VAE_MODEL_CACHE`` (models kept loaded).
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from ui.runtime import MODEL_LOCK, ON_ZEROGPU, cancel_aware, gpu, stoppable  # first: it imports `spaces`

import atexit
import contextlib
import functools
import hashlib
import json
import logging
import re
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from attribution import available_methods, cost, explain, render
from attribution.errors import ExplorerError, InputError, VideoError
from ui.errors import user_errors
from attribution.metrics import deletion_insertion
from attribution.step import METHODS as PERTURBATION_METHODS
from attribution.step import PRECISIONS
from attribution.device import describe_device, device_sentence
from attribution.video import load_clip
from model_zoo import cached_models, get_entry, list_models, load_model

log = logging.getLogger("video-attribution-explorer")

# ------------------------------------------------------------------------------------------------ settings
ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
CONCURRENCY = int(os.environ.get("VAE_CONCURRENCY", "1"))   # model jobs at once (one model cache, shared)
MAX_QUEUE = int(os.environ.get("VAE_MAX_QUEUE", "16"))       # waiting jobs beyond which new ones are refused
MAX_UPLOAD_MB = int(os.environ.get("VAE_MAX_UPLOAD_MB", "100"))
MAX_SECONDS = float(os.environ.get("VAE_MAX_SECONDS", "600"))  # longest clip accepted (seconds)
CURVE_STEPS = int(os.environ.get("VAE_CURVE_STEPS", "32"))  # the quick curves' steps (benchmarks/curve_steps.py)
PAPER_CURVE_STEPS = 128       # the paper's deletion/insertion steps, one click away
MAX_PIXELS = 4096 * 4096      # largest frame accepted (4K UHD and DCI 4K fit); decoded frames are shrunk anyway
MAX_SIDE = 640                # frames are shrunk to this while decoding, before the model's own resize
KEEP_SECONDS = 3600           # per-request folders (and Gradio's copies) are deleted after an hour
TMP_ROOT = Path(os.environ.get("VAE_TMP") or Path(tempfile.gettempdir()) / "video-attribution-explorer")
DEFAULT_MODEL = "toy"
MARGIN = 0.01                 # AUC difference below which a map is said to do no better than random
TOP1 = ""                     # target value meaning "the model's top-1 class"
TOP1_CHOICE = ("Top-1 prediction (default)", TOP1)
DEFAULT_COMPARE = ["step", "gradient", "grad-cam", "random"]
HARDWARE = describe_device()  # what the models run on (logged at start-up, shown in the About tab)

METHOD_NAMES = {
    "step": "STEP: spatio-temporal perturbation (the paper's method)",
    "3d-ep": "3D-EP: perturbation without the smoothness term",
    "2d-ep": "2D-EP: perturbation frame by frame",
    "gradient": "Gradient (vanilla saliency)",
    "integrated-gradients": "Integrated Gradients",
    "smoothgrad": "SmoothGrad",
    "grad-cam": "Grad-CAM",
    "occlusion": "Occlusion (sliding 3-D box)",
    "random": "Random map (a baseline to beat)",
    "frame-difference": "Frame difference (motion only, a baseline)",
}
SHORT_NAMES = {"step": "STEP", "3d-ep": "3D-EP", "2d-ep": "2D-EP", "gradient": "Gradient",
               "integrated-gradients": "Integrated Gradients", "smoothgrad": "SmoothGrad",
               "grad-cam": "Grad-CAM", "occlusion": "Occlusion", "random": "Random",
               "frame-difference": "Frame difference"}



# ---------------------------------------------------------------------------------------- request folders
def _cleanup(max_age: float = KEEP_SECONDS, only_pid: int | None = None) -> None:
    """Delete request folders older than ``max_age`` seconds (or every folder of process ``only_pid``)."""
    if not TMP_ROOT.is_dir():
        return
    now = time.time()
    for d in TMP_ROOT.iterdir():
        try:
            mine = only_pid is not None and d.name.startswith(f"{only_pid}-")
            if mine or (only_pid is None and now - d.stat().st_mtime > max_age):
                shutil.rmtree(d, ignore_errors=True)
        except OSError:  # another process removed it first
            pass


def _request_dir() -> Path:
    """A fresh folder for one request's files; old ones are swept first."""
    TMP_ROOT.mkdir(parents=True, exist_ok=True)
    _cleanup()
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=TMP_ROOT))


atexit.register(_cleanup, only_pid=os.getpid())


# -------------------------------------------------------------------------------------------- GPU windows
GPU_CAP = float(os.environ.get("VAE_GPU_SECONDS_CAP", "90"))  # longest ZeroGPU window one request asks for


def _window(model_name, methods, preset, overrides: dict, curve_steps: int) -> int:
    """ZeroGPU seconds to reserve: the cost model's estimate with a margin once the model's GPU passes are
    known (timed in an earlier window), else a default by preset (the paper preset runs 1200 iterations, fast a
    few hundred); at most ``VAE_GPU_SECONDS_CAP`` so that one request does not spend a visitor's daily quota."""
    est = None
    try:
        est = _estimate(load_model(model_name), methods if len(methods) > 1 else methods[0], preset, overrides,
                        curve_steps, measure=False)
    except Exception:  # noqa: BLE001 - no figures yet (or no GPU name outside the window): the defaults
        pass
    if est is not None:
        want = 1.5 * est.seconds + 10
    else:
        want = sum(60 if preset == "paper" and m in PERTURBATION_METHODS else 20 for m in methods)
    return int(min(GPU_CAP, max(15, want)))


def _gpu_seconds(model_name, video, target, method, preset, seed, event, overrides, curve_steps, *rest) -> int:
    return _window(model_name, [method], preset, overrides, curve_steps)


def _gpu_seconds_compare(model_name, video, target, methods, preset, seed, event, iterations, curve_steps,
                         *rest) -> int:
    return _window(model_name, list(methods), preset, {"iterations": iterations or None}, curve_steps)


# ------------------------------------------------------------------------------------------------ inputs
def model_choices() -> list[tuple[str, str]]:
    out = []
    for name in list_models():
        e = get_entry(name)
        where = "built in, works offline" if e.offline else "downloads weights on first use"
        out.append((f"{name}  ({where})", name))
    return out


def method_choices() -> list[tuple[str, str]]:
    return [(METHOD_NAMES.get(m, m), m) for m in available_methods()]


def _labels_of(model_name: str) -> list[str]:
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
    choices += [lbl for lbl in _labels_of(model_name) if lbl not in seen]
    return choices


def model_markdown(model_name: str) -> str:
    try:
        e = get_entry(model_name)
    except ExplorerError as err:
        return str(err)
    where = ("Ships with the app: works offline." if e.offline else
             "Its weights are downloaded the first time it is used (this needs a network connection).")
    return f"<small>{e.description.rstrip('.')}. {where}</small>"


def _path_of(video) -> str | None:
    """The file path inside whatever Gradio or a direct caller passed (str, Path, dict, FileData)."""
    if video is None:
        return None
    if isinstance(video, (str, Path)):
        return str(video) or None
    if isinstance(video, dict):
        inner = video.get("video", video)
        return _path_of(inner.get("path") if isinstance(inner, dict) else inner)
    return _path_of(getattr(video, "path", None))


def _number(x, name: str, *, integer=False, minimum=None):
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


def _areas(text) -> list[float] | None:
    if text is None or not str(text).strip():
        return None
    try:
        areas = [float(a) for a in re.split(r"[,;\s]+", str(text).strip()) if a]
    except ValueError:
        areas = []
    if not areas or any(not 0 < a < 1 for a in areas):
        raise InputError(f"Areas must be fractions between 0 and 1 separated by commas, such as "
                         f"'0.02, 0.05, 0.1'; got {text!r}.")
    return areas


def _overrides(method: str, areas, iterations, key_frames, perturbation, precision=None) -> dict:
    """Options of the perturbation methods; the comparison methods take none of them."""
    if method not in PERTURBATION_METHODS:
        return {}
    if precision not in (None, "", *PRECISIONS):
        raise InputError(f"Precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    out = dict(areas=_areas(areas), iterations=_number(iterations, "Iterations", integer=True, minimum=0),
               key_frames=_number(key_frames, "Key frames", integer=True, minimum=0),
               perturbation=perturbation or None, precision=precision or None)
    return {k: v for k, v in out.items() if v}  # 0 and "" mean "the preset's value"


def _target(target):
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
    for f in EXAMPLES.glob("*_ground_truth.json"):
        try:
            meta = json.loads(f.read_text())
            out.update({_sha1(EXAMPLES / n): tuple(m["event"]) for n, m in meta.items() if (EXAMPLES / n).exists()})
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def _event_for(path: str, model, video, trimmed: bool):
    """The known evidence window of a shipped example clip, when the model sees exactly its frames."""
    if trimmed or video.num_source_frames != model.num_frames:
        return None
    try:
        return _known_events().get(_sha1(path)) if os.path.getsize(path) < 5 * 2**20 else None
    except OSError:
        return None


def _load(video, model_name: str, start, end, progress):
    """Decode the clip and load the model: (path, model, Video, trimmed)."""
    path = _path_of(video)
    if not path:
        raise InputError("Upload a video first (or click one of the examples below the upload box).")
    start = _number(start, "Start", minimum=0) or None  # 0 and empty both mean "from the beginning" ...
    end = _number(end, "End", minimum=0) or None        # ... and "to the end"
    progress(0.02, desc="Loading the model")
    model = load_model(model_name or DEFAULT_MODEL)
    progress(0.06, desc="Decoding the video")
    v = load_clip(path, model, start=start, end=end, max_side=MAX_SIDE, max_bytes=MAX_UPLOAD_MB * 2**20,
                  max_seconds=MAX_SECONDS, max_pixels=MAX_PIXELS)
    if v.num_source_frames < 2:
        raise VideoError(f"The video '{Path(path).name}' has a single frame: a video classifier needs a "
                         "moving clip; upload a video of at least a second.")
    return path, model, v, start is not None or end is not None


def _engine_progress(progress, desc: str, unit: str):
    """The engine's progress(done, total, info) drawn as one stage of the bar: 'desc: done/total unit'."""
    if progress is None:
        return None

    def update(done, total, info=None):
        progress((int(done), int(total)), desc=desc, unit=unit)
    return update


# ------------------------------------------------------------------------------------------------ outputs
def _pct(p: float) -> str:
    return f"{100 * p:.0f} %" if p >= 0.01 else f"{100 * p:.1f} %"


def _time_of(exp, frame: int) -> str:
    times = exp.source.get("times")
    return f" (t = {times[frame]:.2f} s)" if times and frame < len(times) else ""


def _seen(exp) -> str:
    """Which seconds of the upload the model saw, and by which sampling rule."""
    src = exp.source
    if not src.get("seen"):
        return ""
    a, b = src["seen"]
    rule = f" ({src['sampling']})" if src.get("sampling") else ""
    return (f"- **What the model saw:** {len(exp.temporal)} frames from **{a:.2f} s to {b:.2f} s** of the "
            f"{src.get('duration', 0):.1f} s upload{rule}.")


def summary_markdown(exp) -> str:
    """What the explanation says, in plain words."""
    top_label, top_p = exp.topk[0]
    lines = [f"### The model sees **{top_label}** ({_pct(top_p)})"]
    which = ("its top-1 class" if exp.label == top_label else
             f"the class you chose, **{exp.label}** ({_pct(exp.probability)})")
    how = SHORT_NAMES.get(exp.method, exp.method)
    if exp.preset:
        how += f" ({exp.preset} preset, {exp.iterations} iterations)"
    lines.append(f"Explained {which} with {how} in {exp.timings['total']:.1f} s.")
    seen = _seen(exp)
    if seen:
        lines.append(seen)
    peak = exp.peak_frame
    lines.append(f"- **Where and when:** the bright regions are what the model relies on; the most important "
                 f"moment is frame {peak + 1} of {len(exp.temporal)}{_time_of(exp, peak)}.")
    if exp.event:
        a, b = exp.event
        where = "inside" if a <= peak < b else "outside"
        lines.append(f"- **Known evidence:** in this toy clip the telling motion happens in frames {a + 1} to {b}; "
                     f"the peak is {where} that window.")
    c = exp.curves
    if c is not None:
        steps = getattr(c, "steps", None)
        which = ("" if not steps else f" ({steps} steps, the paper's)" if steps == PAPER_CURVE_STEPS else
                 f" ({steps} steps; the paper's {PAPER_CURVE_STEPS} are in the advanced settings)")
        text = (f"- **Faithfulness{which}:** deletion AUC **{c.auc_deletion:.3f}** (lower is better), insertion AUC "
                f"**{c.auc_insertion:.3f}** (higher is better)")
        if c.auc_random_deletion is not None:
            wins = (int(c.auc_deletion < c.auc_random_deletion - MARGIN)
                    + int(c.auc_insertion > c.auc_random_insertion + MARGIN))
            verdict = {2: "this map beats random on both", 1: "this map beats random on one of the two",
                       0: "this map does no better than random here"}[wins]
            text += (f", against {c.auc_random_deletion:.3f} and {c.auc_random_insertion:.3f} for a random map: "
                     f"{verdict}")
        lines.append(text + ".")
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "clip"


def _zip(folder: Path, out: Path) -> str:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.iterdir()):
            if f.is_file():
                z.write(f, arcname=f.name)
    return str(out)


def _topk_dict(topk) -> dict:
    return {label: float(p) for label, p in topk}


# ---------------------------------------------------------------------------------------------- callbacks
# ----------------------------------------------------------------------------------------------- the cost
TIME_IN_BACKGROUND = False  # set when the server runs (python app.py): never from an import (tests, tools)


def _measure_in_background(model) -> None:
    """Time ``model``'s passes once (for the estimates) without ever running it beside a request."""
    if not TIME_IN_BACKGROUND:
        return

    def work():
        with MODEL_LOCK:
            try:
                cost.pass_costs(model)
            except Exception as e:  # noqa: BLE001 - no estimate is better than a crashed thread
                log.warning("could not time the passes of %s: %s", model.name, e)
    threading.Thread(target=work, name="cost-measurement", daemon=True).start()


def _curve_steps(curves, paper_curves=False) -> int:
    """Steps of the deletion / insertion curves a request asks for (0: none)."""
    return 0 if not curves else PAPER_CURVE_STEPS if paper_curves else CURVE_STEPS


def _estimate(model, method_or_methods, preset, overrides: dict, curve_steps: int, measure: bool):
    """The cost model's estimate of a request, or None when the model's passes are not timed yet."""
    costs = cost.pass_costs(model, measure=measure)
    if costs is None:
        return None
    compare = method_or_methods if isinstance(method_or_methods, (list, tuple)) else None
    try:
        return cost.estimate(model, compare[0] if compare else method_or_methods, preset or "fast",
                             iterations=overrides.get("iterations"), areas=overrides.get("areas"),
                             curves=bool(curve_steps), curve_steps=curve_steps or CURVE_STEPS, compare=compare,
                             costs=costs,
                             engine=cost.engine_costs(preset or "fast", model.device, measure=False))
    except (ValueError, ExplorerError):  # an unknown method or setting: explain() says so in its own words
        return None


def _refuse_if_too_long(model, model_key: str, method_or_methods, preset, overrides: dict, curve_steps: int):
    """Refuse, before anything runs, a request the cost model puts above the limit (one sentence).

    On ZeroGPU the passes cannot be timed outside the GPU window, so only figures already known count there."""
    with MODEL_LOCK:
        est = _estimate(model, method_or_methods, preset, overrides, curve_steps, measure=not ON_ZEROGPU)
    if est is None:
        return None
    name = "+".join(method_or_methods) if isinstance(method_or_methods, (list, tuple)) else method_or_methods
    message = cost.refusal(est, cost.default_limit("zerogpu" if ON_ZEROGPU else est.device_kind), model_key, name,
                           preset)
    if message:
        raise InputError(message)
    return est


def cost_markdown(model_name: str, methods, preset: str = "fast", areas: str = "", iterations: float = 0,
                  curves: bool = True, paper_curves: bool = False) -> str:
    """The line next to Explain / Compare: how long the request with these settings should take."""
    try:
        name = model_name or DEFAULT_MODEL
        loaded = name in {n for n, _, _ in cached_models()}
        if not loaded and not get_entry(name).offline:
            return "<small>The time is estimated once the model has been loaded (its first run loads it).</small>"
        model = load_model(name)
        methods = [m for m in (methods if isinstance(methods, (list, tuple)) else [methods]) if m]
        if not methods:
            return ""
        overrides = {"areas": _areas(areas) if len(methods) == 1 else None,
                     "iterations": _number(iterations, "Iterations", integer=True, minimum=0) or None}
        est = _estimate(model, methods if len(methods) > 1 else methods[0], preset, overrides,
                        _curve_steps(curves, paper_curves),
                        measure=False)
    except ExplorerError as e:
        return f"<small>{e}</small>"
    if est is None:
        if not ON_ZEROGPU:
            _measure_in_background(model)
        return ("<small>Timing this model on this machine for an estimate…</small>" if TIME_IN_BACKGROUND else
                "<small>The time is estimated after the first run of this model.</small>")
    limit = cost.default_limit("zerogpu" if ON_ZEROGPU else est.device_kind)
    over = cost.refusal(est, limit, name, "+".join(methods), preset)
    return f"<small>**Expected time:** {est.words()}.{' ' + over if over else ''}</small>"


@contextlib.contextmanager
def _cleanup_on_failure(req: Path):
    """Delete the request's folder when the request does not finish (stopped or failed)."""
    try:
        yield req
    except BaseException:
        shutil.rmtree(req, ignore_errors=True)
        raise


@gpu(duration=20)
@user_errors("predicting the class")
def _predict_on_gpu(model_name: str, frames: np.ndarray) -> list:
    """``model_name``: what the request named (a registry name or a path), the model cache's key."""
    with MODEL_LOCK:
        m = load_model(model_name)
        return m.predict(m.prepare(frames), k=5)


@user_errors("predicting the class")
def predict_clip(video, model: str = DEFAULT_MODEL, start: float = 0, end: float = 0, progress=gr.Progress()):
    """Top-5 predictions of ``model`` on the clip, and the target choices they suggest."""
    _, m, v, _ = _load(video, model, start, end, progress)
    progress(0.5, desc="Predicting")
    top5 = _predict_on_gpu(model or DEFAULT_MODEL, v.frames)
    return _topk_dict(top5), gr.Dropdown(choices=target_choices(m.name, top5), value=TOP1)


def _engine_options(overrides: dict) -> dict:
    """No torch.compile on ZeroGPU (it is not supported there); everything else as asked."""
    return dict(overrides, compile=False) if ON_ZEROGPU and overrides else overrides


@gpu(duration=_gpu_seconds)
@user_errors("explaining the clip")
def _explain_on_gpu(model_name: str, video, target, method: str, preset: str, seed: int, event, overrides: dict,
                    curve_steps: int, progress=None, cancel=None):
    """The model work of one explanation (inside the ZeroGPU window): the map, then its curves (``curve_steps``
    steps; 0: none)."""
    with MODEL_LOCK:
        m = load_model(model_name)
        if ON_ZEROGPU:  # inside the window: time the GPU passes once, so later windows are sized by them
            cost.pass_costs(m)
        unit = "iterations" if method in PERTURBATION_METHODS else "steps"
        exp = explain(m, video, target=target, method=method, preset=preset, seed=seed, event=event,
                      progress=_engine_progress(progress, f"Computing the {SHORT_NAMES.get(method, method)} map",
                                                unit), cancel=cancel, **_engine_options(overrides))
        if curve_steps:
            if progress is not None:
                progress(0.8, desc="Measuring deletion / insertion curves")
            exp.curves = deletion_insertion(
                m, m.prepare(video.frames), exp.saliency, exp.target, steps=curve_steps, random_baseline=True,
                seed=seed, progress=cancel_aware(_engine_progress(progress, "Measuring the curves", "clips"), cancel))
    return exp


@user_errors("explaining the clip")
def explain_clip(video, model: str = DEFAULT_MODEL, target: str = TOP1, method: str = "step", preset: str = "fast",
                 start: float = 0, end: float = 0, areas: str = "", iterations: float = 0,
                 key_frames: float = 0, perturbation: str = "blur", seed: float = 0, curves: bool = True,
                 precision: str = "auto", paper_curves: bool = False, progress=gr.Progress(), cancel=None):
    """Explain why ``model`` predicts ``target`` (default: its top-1 class) on the clip.

    Returns the top-5 predictions (label -> probability), the overlay video (H.264 mp4), the temporal plot and
    the deletion/insertion plot (PNG paths; the latter None when ``curves`` is off; ``VAE_CURVE_STEPS`` steps, the
    paper's 128 with ``paper_curves``), a zip with every file,
    and a plain-language summary (Markdown). ``cancel`` (a ``threading.Event``) stops it after the current
    iteration. Decoding, model construction and rendering happen here; only the model work runs in
    :func:`_explain_on_gpu` (the ZeroGPU window).
    """
    method = method or "step"
    overrides = _overrides(method, areas, iterations, key_frames, perturbation, precision)
    seed = _number(seed, "Seed", integer=True, minimum=0) or 0
    path, m, v, trimmed = _load(video, model, start, end, progress)
    steps = _curve_steps(curves, paper_curves)
    _refuse_if_too_long(m, model or DEFAULT_MODEL, method, preset or "fast", overrides, steps)
    progress(0.1, desc="Predicting")
    exp = _explain_on_gpu(model or DEFAULT_MODEL, v, _target(target), method, preset or "fast", seed, _event_for(path, m, v, trimmed),
                          overrides, steps, *((None, None) if ON_ZEROGPU else (progress, cancel)))
    exp.source["path"] = Path(path).name
    progress(0.95, desc="Rendering")
    req = _request_dir()
    with _cleanup_on_failure(req):
        files = exp.save(req / "explanation")
        archive = _zip(files, req / f"explanation_{_slug(m.name)}_{_slug(method)}_{_slug(exp.label)}.zip")
    curves_png = files / "curves.png"
    return (_topk_dict(exp.topk), str(files / "overlay.mp4"), str(files / "temporal.png"),
            str(curves_png) if curves_png.exists() else None, archive, summary_markdown(exp))


@gpu(duration=_gpu_seconds_compare)
@user_errors("comparing methods")
def _compare_on_gpu(model_name: str, video, target, methods: list, preset: str, seed: int, event, iterations,
                    curve_steps: int, progress=None, cancel=None) -> list:
    """The model work of a comparison: each method's map and curves, as (method, Explanation) pairs; the first
    pair's curves carry the random map's AUCs."""
    out = []
    with MODEL_LOCK:
        m = load_model(model_name)
        clip = m.prepare(video.frames)
        for k, method in enumerate(methods):
            name = SHORT_NAMES.get(method, method)
            if progress is not None:
                progress(k / len(methods), desc=f"{name} ({k + 1}/{len(methods)})")
            exp = explain(m, video, target=target, method=method, preset=preset, seed=seed, event=event,
                          progress=_engine_progress(progress, f"{name} ({k + 1}/{len(methods)})",
                                                    "iterations" if method in PERTURBATION_METHODS else "steps"),
                          cancel=cancel, **_engine_options(_overrides(method, None, iterations, None, None)))
            target = exp.target
            if progress is not None:
                progress((k + 0.8) / len(methods), desc=f"{name}: measuring curves")
            exp.curves = deletion_insertion(m, clip, exp.saliency, exp.target, steps=curve_steps,
                                            random_baseline=not out, seed=seed, progress=cancel_aware(None, cancel))
            out.append((method, exp))
    return out


@user_errors("comparing methods")
def compare_clip(video, model: str = DEFAULT_MODEL, target: str = TOP1, methods=None, preset: str = "fast",
                 start: float = 0, end: float = 0, iterations: float = 0, seed: float = 0,
                 paper_curves: bool = False, progress=gr.Progress(), cancel=None):
    """Several methods on one clip: a strip of their maps, a table of AUCs and times, and a zip (the curves take
    ``VAE_CURVE_STEPS`` steps, the paper's 128 with ``paper_curves``)."""
    methods = [m for m in (methods or []) if m]
    if not methods:
        raise InputError("Tick at least one method to compare.")
    seed = _number(seed, "Seed", integer=True, minimum=0) or 0
    path, m, v, trimmed = _load(video, model, start, end, progress)
    steps = _curve_steps(True, paper_curves)
    _refuse_if_too_long(m, model or DEFAULT_MODEL, methods, preset or "fast",
                        {"iterations": _number(iterations, "Iterations", integer=True, minimum=0) or None}, steps)
    results = _compare_on_gpu(model or DEFAULT_MODEL, v, _target(target), methods, preset or "fast", seed,
                              _event_for(path, m, v, trimmed), iterations, steps,
                              *((None, None) if ON_ZEROGPU else (progress, cancel)))
    progress(0.97, desc="Rendering")
    req = _request_dir()
    with _cleanup_on_failure(req):
        return _compare_outputs(req, m, path, methods, preset, seed, results)


def _compare_outputs(req: Path, m, path, methods, preset, seed, results):
    out = req / "comparison"
    out.mkdir()
    maps, rows = {}, []
    for method, exp in results:
        name = SHORT_NAMES.get(method, method)
        c = exp.curves
        maps[name] = exp.saliency
        rows.append({"method": name, "deletion AUC ↓": round(c.auc_deletion, 3),
                     "insertion AUC ↑": round(c.auc_insertion, 3),
                     "time (s)": round(exp.timings["attribution"], 2), "peak frame": exp.peak_frame + 1})
        np.savez_compressed(out / f"saliency_{_slug(method)}.npz", saliency=exp.saliency.astype(np.float32))
    first = results[0][1]
    random_aucs = (first.curves.auc_random_deletion, first.curves.auc_random_insertion)
    if "random" not in methods and random_aucs[0] is not None:
        rows.append({"method": "random map (reference)", "deletion AUC ↓": round(random_aucs[0], 3),
                     "insertion AUC ↑": round(random_aucs[1], 3), "time (s)": None,
                     "peak frame": None})
    table = pd.DataFrame(rows)
    strip = render.compare_strip(first.frames, maps)
    strip_png = out / "comparison.png"
    Image.fromarray(strip).save(strip_png)
    table.to_csv(out / "comparison.csv", index=False)
    label = first.label
    (out / "comparison.json").write_text(json.dumps(
        {"model": m.name, "target": first.target, "label": label, "preset": preset, "seed": seed,
         "clip": Path(path).name, "rows": rows}, indent=1))
    archive = _zip(out, req / f"comparison_{_slug(m.name)}_{_slug(label)}.zip")
    note = (f"Explaining **{label}** on {len(methods)} method(s). Each row of the picture is one method "
            f"(bright = important); the table says how faithful each map is (curves of {first.curves.steps} "
            f"steps).\n{_seen(first)}")
    return str(strip_png), table, archive, note


async def explain_stoppable(video, model: str = DEFAULT_MODEL, target: str = TOP1, method: str = "step",
                            preset: str = "fast", start: float = 0, end: float = 0, areas: str = "",
                            iterations: float = 0, key_frames: float = 0, perturbation: str = "blur",
                            seed: float = 0, curves: bool = True, precision: str = "auto",
                            paper_curves: bool = False, progress=gr.Progress()):
    """:func:`explain_clip` as the Explain button and the ``/explain`` endpoint run it: Stop (or a client's
    ``Job.cancel()``) ends it after the current iteration."""
    return await stoppable(explain_clip, video, model, target, method, preset, start, end, areas, iterations,
                           key_frames, perturbation, seed, curves, precision, paper_curves, progress=progress)


async def compare_stoppable(video, model: str = DEFAULT_MODEL, target: str = TOP1, methods=None,
                            preset: str = "fast", start: float = 0, end: float = 0, iterations: float = 0,
                            seed: float = 0, paper_curves: bool = False, progress=gr.Progress()):
    """:func:`compare_clip` as the Compare button and the ``/compare`` endpoint run it (stoppable)."""
    return await stoppable(compare_clip, video, model, target, methods, preset, start, end, iterations, seed,
                           paper_curves, progress=progress)


def explain_example(video, model):
    """What an example shows (cached lazily): the default settings on that clip.

    Keep the curves on: Gradio's example cache cannot read back an empty image output.
    """
    return explain_clip(video, model)


def on_model_change(model):
    return gr.Dropdown(choices=target_choices(model), value=TOP1), model_markdown(model)


# --------------------------------------------------------------------------------------------------- page
INTRO = """
# Video Attribution Explorer
**Why did the video classifier say that?** Upload a short clip (mp4, webm, mov, avi or mkv; or record one with
your webcam, or click an example), press **Explain**, and see
*where* and *when* the model looked. The app searches for the smallest part of the video that still convinces the
model (the *STEP* method of Li et al., IEEE TCSVT 2021), then checks the answer against a random guess.
"""

WAITING = """
**Results appear here.** Upload a clip or click an example, then press **Explain**.
With the built-in toy model this takes well under a minute on a CPU.
"""

CAPTION_VIDEO = ("**The video.** *Left:* the clip as the model sees it. *Middle:* the heat-map: bright = the model "
                 "needs this to recognise the class. *Right:* only the important part kept. The orange bar shows how "
                 "much each moment matters.")
CAPTION_TEMPORAL = ("**Which moments matter.** The importance of every frame (the mean of its heat-map). In the toy "
                    "clips the blue band marks where the real evidence is.")
CAPTION_CURVES = ("**Is the explanation faithful?** Remove the highlighted parts first (*deletion*: the probability "
                  "should fall fast, so a low area is good) or restore them first into a blurred clip (*insertion*: "
                  "it should rise fast, so a high area is good). The dashed grey line is a random map: the score to "
                  "beat.")

COMPARE_HELP = """
Run several attribution methods on the same clip and target. The picture shows each method's map on a few frames
(bright = important); the table gives each map's deletion AUC (lower is better), insertion AUC (higher is better)
and time. *Random* is the reference every method should beat.
"""

ABOUT = """
### What this does
A video classifier looks at a few frames of a clip and outputs a class (for example *"moving right"* for the toy
model, or one of 400 Kinetics actions such as *"playing guitar"*). An **attribution** says which pixels of which
frames the answer depends on. **STEP** (Li, Wang, Li, Huang, Sato, *Spatio-Temporal Perturbations for Video
Attribution*, IEEE TCSVT 2021) finds it by optimisation: it blurs as much of the clip as possible, in space *and*
time, while keeping the model's answer, and prefers a few whole space-time blobs over scattered pixels.
**3D-EP** and **2D-EP** are the paper's ablations; gradient, Integrated Gradients, SmoothGrad, Grad-CAM,
occlusion and random maps are the usual comparison methods.

### Presets
*fast* (default) optimises the same objective with fewer iterations and stops early once the mask settles;
*paper* is the authors' 1200-iteration schedule (minutes on a CPU for large models).

### The toy model
`toy` is a small 3-D CNN shipped with the app, trained on generated clips where one square moves steadily in one
direction during a few frames while look-alike squares jitter. Because we know where and when the evidence is, the
toy clips show whether an explanation finds it.

### Which frames a model sees
Each model is shown the frames it was trained on: Kinetics models take their recipe's window (for example
X3D-XS: 4 frames, one every 12, i.e. 1.6 s from the middle of the clip), Something-Something models and the toy
take frames spread over the whole clip. The trim (start / end) chooses the part of the upload this rule is
applied to, and the summary says which seconds the model saw.

### Hardware
{hardware}

### Privacy and limits
Uploads and results are deleted from the server after about an hour. Clips up to {mb} MB and {minutes:g} minutes.

### Credits
Example clip *bunny.mp4*: Big Buck Bunny, © Blender Foundation, CC BY 3.0 (see `examples/CREDITS.md`).
"""

CSS = """
.vae-caption { font-size: 0.9em; line-height: 1.4; color: var(--body-text-color-subdued); margin-bottom: -6px; }
#vae-summary { font-size: 0.95em; }
#vae-explain-btn, #vae-compare-btn { min-height: 48px; font-size: 1.05em; }
#vae-predict-btn { align-self: flex-end; margin-bottom: 10px; }
footer { display: none !important; }
"""


EXAMPLE_SECONDS = 20.0  # a cached example shows no progress bar: none may take longer than this


def _example_fits(model_name: str) -> bool:
    """Whether the default request on ``model_name`` fits an example: by the cost model once the model's passes
    are timed on this machine; before that, only the toy on a CPU (real models take minutes there), and every
    model whose weights can be had on a GPU."""
    on_gpu = ON_ZEROGPU or HARDWARE["device"].startswith("cuda")
    try:
        if model_name in {n for n, _, _ in cached_models()}:
            est = _estimate(load_model(model_name), "step", "fast", {}, True, measure=False)
            if est is not None:
                return est.seconds <= EXAMPLE_SECONDS
        return model_name == DEFAULT_MODEL or on_gpu
    except ExplorerError:
        return False


def _examples() -> tuple[list, list[str]]:
    """The example rows: the toy clips always; the ground-truth models' clips and the real clip (with a Kinetics
    model, which needs the network a Space has) only where such a request fits an example."""
    rows, labels = [], []
    for p in sorted(EXAMPLES.glob("toy_*.mp4")):
        rows.append([str(p), DEFAULT_MODEL])
        labels.append("toy: " + p.stem.removeprefix("toy_").replace("_", " "))
    for name in list_models():
        if name.startswith("gt_") and _example_fits(name):
            for p in sorted(EXAMPLES.glob(f"{name}_*.mp4"))[:2]:
                rows.append([str(p), name])
                labels.append(f"{name}: " + p.stem.removeprefix(f"{name}_").replace("_", " "))
    if (EXAMPLES / "bunny.mp4").exists():
        real = "x3d_xs" if os.environ.get("SPACE_ID") and _example_fits("x3d_xs") else DEFAULT_MODEL
        rows.append([str(EXAMPLES / "bunny.mp4"), real])
        labels.append("Big Buck Bunny (real clip)")
    return rows, labels


def build_demo() -> gr.Blocks:
    models = model_choices()
    methods = method_choices()
    method_values = [v for _, v in methods]
    compare_default = [m for m in DEFAULT_COMPARE if m in method_values] or method_values[:2]
    with gr.Blocks(title="Video Attribution Explorer", delete_cache=(KEEP_SECONDS, KEEP_SECONDS)) as demo:
        gr.Markdown(INTRO)
        if HARDWARE["problem"]:
            gr.Markdown(f"**Note:** {HARDWARE['problem']}", elem_id="vae-hardware-problem")
        with gr.Tabs():
            # ------------------------------------------------------------------------------ Explain
            with gr.Tab("Explain", id="explain"):
                # Outputs are created first (not yet shown) so that the examples, placed under the upload box,
                # can name them; they are rendered in the right-hand column below.
                top5_out = gr.Label(num_top_classes=5, label="Top-5 predictions", render=False)
                summary_out = gr.Markdown(WAITING, render=False, elem_id="vae-summary")
                overlay_out = gr.Video(label="Input · heat-map · preserved region", height=330, autoplay=True,
                                       loop=True, buttons=["download"], interactive=False, show_label=False,
                                       render=False)
                temporal_out = gr.Image(label="Which moments matter", type="filepath", format="png", height=330,
                                        interactive=False, buttons=["download", "fullscreen"], show_label=False,
                                        render=False)
                curves_out = gr.Image(label="Is the explanation faithful?", type="filepath", format="png",
                                      height=330, interactive=False, buttons=["download", "fullscreen"],
                                      show_label=False, render=False)
                zip_out = gr.File(label="Download everything (overlay.mp4, PNGs, saliency.npz, summary.json)",
                                  interactive=False, height=90, render=False)
                outputs = [top5_out, overlay_out, temporal_out, curves_out, zip_out, summary_out]
                model_in = gr.Dropdown(models, value=DEFAULT_MODEL, label="2 · Model", render=False)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=340):
                        video_in = gr.Video(label="1 · Your clip (upload or webcam)",
                                            sources=["upload", "webcam"], height=240,
                                            webcam_options=gr.WebcamOptions(mirror=False))
                        rows, labels = _examples()
                        if rows:
                            gr.Examples(rows, inputs=[video_in, model_in], outputs=outputs, fn=explain_example,
                                        example_labels=labels, cache_examples=True, cache_mode="lazy",
                                        examples_per_page=8, label="…or try an example (computed once, then cached)")
                        with gr.Row():
                            start_in = gr.Number(label="Trim: start (s)", value=0, minimum=0)
                            end_in = gr.Number(label="Trim: end (s, 0 = the end)", value=0, minimum=0)
                        model_in.render()
                        model_md = gr.Markdown(model_markdown(DEFAULT_MODEL), elem_classes=["vae-caption"])
                        with gr.Row(equal_height=False):
                            target_in = gr.Dropdown(target_choices(DEFAULT_MODEL), value=TOP1, allow_custom_value=True,
                                                    label="3 · Class to explain", scale=3,
                                                    info="the top prediction, or pick / type any class")
                            predict_btn = gr.Button("Predict top-5", scale=1, min_width=120, size="md",
                                                    elem_id="vae-predict-btn")
                        method_in = gr.Dropdown(methods, value="step", label="4 · Method",
                                                info="STEP is the paper's method; the others are for comparison")
                        preset_in = gr.Radio([("fast (default)", "fast"), ("paper (1200 iterations, slow)", "paper")],
                                             value="fast", label="Preset (perturbation methods)")
                        with gr.Accordion("Advanced settings", open=False):
                            areas_in = gr.Textbox(label="Mask areas (fractions of the clip to keep)", value="",
                                                  placeholder="model default, e.g. 0.02, 0.05, 0.1")
                            with gr.Row():
                                iterations_in = gr.Number(label="Iterations", value=0, precision=0, minimum=0,
                                                          info="0 = the preset's")
                                key_frames_in = gr.Number(label="L_K key frames", value=0, precision=0, minimum=0,
                                                          info="0 = automatic")
                            with gr.Row():
                                perturbation_in = gr.Radio(["blur", "fade"], value="blur", label="Perturbation")
                                seed_in = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                            with gr.Row():
                                with gr.Column(min_width=160):
                                    curves_in = gr.Checkbox(value=True, label="Measure deletion / insertion curves")
                                    paper_curves_in = gr.Checkbox(
                                        value=False, label=f"Paper's {PAPER_CURVE_STEPS} curve steps",
                                        info=f"default: {CURVE_STEPS} steps, {PAPER_CURVE_STEPS // CURVE_STEPS}x "
                                             "cheaper (AUCs within about 0.01 of the paper's)")
                                precision_in = gr.Radio(
                                    [("automatic", "auto"), ("fp32", "fp32")], value="auto", label="Precision",
                                    info="automatic: bf16 / fp16 on a GPU (faster), fp32 on a CPU; fp32 forces it")
                        with gr.Row():
                            explain_btn = gr.Button("Explain", variant="primary", size="lg", scale=3,
                                                    elem_id="vae-explain-btn")
                            stop_btn = gr.Button("Stop", variant="stop", size="lg", scale=1, elem_id="vae-stop-btn")
                        cost_md = gr.Markdown(cost_markdown(DEFAULT_MODEL, "step"), elem_id="vae-cost")
                    with gr.Column(scale=3, min_width=420):
                        with gr.Row(equal_height=False):
                            with gr.Column(scale=2, min_width=220):
                                top5_out.render()
                            with gr.Column(scale=3, min_width=260):
                                summary_out.render()
                        gr.Markdown(CAPTION_VIDEO, elem_classes=["vae-caption"])
                        overlay_out.render()
                        gr.Markdown(CAPTION_TEMPORAL, elem_classes=["vae-caption"])
                        temporal_out.render()
                        gr.Markdown(CAPTION_CURVES, elem_classes=["vae-caption"])
                        curves_out.render()
                        zip_out.render()

            # ------------------------------------------------------------------------------ Compare
            with gr.Tab("Compare methods", id="compare"):
                gr.Markdown(COMPARE_HELP)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=340):
                        cmp_video = gr.Video(label="Clip (the one from the Explain tab, or another)",
                                             sources=["upload", "webcam"], height=220,
                                             webcam_options=gr.WebcamOptions(mirror=False))
                        with gr.Row():
                            cmp_start = gr.Number(label="Trim: start (s)", value=0, minimum=0)
                            cmp_end = gr.Number(label="Trim: end (s, 0 = the end)", value=0, minimum=0)
                        cmp_model = gr.Dropdown(models, value=DEFAULT_MODEL, label="Model")
                        cmp_target = gr.Dropdown(target_choices(DEFAULT_MODEL), value=TOP1, allow_custom_value=True,
                                                 label="Class to explain")
                        cmp_methods = gr.CheckboxGroup(methods, value=compare_default, label="Methods")
                        with gr.Row():
                            cmp_preset = gr.Radio([("fast", "fast"), ("paper", "paper")], value="fast",
                                                  label="Preset")
                            cmp_iterations = gr.Number(label="Iterations (0 = preset)", value=0, precision=0,
                                                       minimum=0)
                            cmp_seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                        cmp_paper_curves = gr.Checkbox(value=False, label=f"Paper's {PAPER_CURVE_STEPS} curve steps "
                                                                        f"(default {CURVE_STEPS})")
                        with gr.Row():
                            compare_btn = gr.Button("Compare", variant="primary", size="lg", scale=3,
                                                    elem_id="vae-compare-btn")
                            cmp_stop_btn = gr.Button("Stop", variant="stop", size="lg", scale=1,
                                                     elem_id="vae-compare-stop-btn")
                        cmp_cost_md = gr.Markdown(cost_markdown(DEFAULT_MODEL, compare_default),
                                                  elem_id="vae-compare-cost")
                    with gr.Column(scale=3, min_width=420):
                        cmp_note = gr.Markdown()
                        cmp_strip = gr.Image(label="Maps side by side (rows: methods; columns: frames)",
                                             type="filepath", format="png", interactive=False, show_label=False,
                                             buttons=["download", "fullscreen"])
                        cmp_table = gr.Dataframe(label="Faithfulness (deletion: lower is better; insertion: higher "
                                                       "is better) and time", interactive=False, wrap=True)
                        cmp_zip = gr.File(label="Download (picture, table, maps)", interactive=False, height=90)

            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT.format(mb=MAX_UPLOAD_MB, minutes=MAX_SECONDS / 60, hardware=device_sentence(HARDWARE)))

        # ---------------------------------------------------------------------------------- events
        model_in.change(on_model_change, model_in, [target_in, model_md], api_visibility="private")
        cmp_model.change(lambda m: gr.Dropdown(choices=target_choices(m), value=TOP1), cmp_model, cmp_target,
                         api_visibility="private")
        video_in.change(lambda v: v, video_in, cmp_video, api_visibility="private")
        # Every event that runs a model shares one concurrency group: the model cache is shared, and Grad-CAM's
        # hooks on a shared model must not see another request's activations.
        predict_btn.click(predict_clip, [video_in, model_in, start_in, end_in], [top5_out, target_in],
                          api_name="predict", concurrency_id="model", concurrency_limit=CONCURRENCY)
        explain_event = explain_btn.click(
            explain_stoppable, [video_in, model_in, target_in, method_in, preset_in, start_in, end_in, areas_in,
                                iterations_in, key_frames_in, perturbation_in, seed_in, curves_in, precision_in,
                                paper_curves_in],
            outputs, api_name="explain", concurrency_id="model", concurrency_limit=CONCURRENCY)
        compare_event = compare_btn.click(
            compare_stoppable, [cmp_video, cmp_model, cmp_target, cmp_methods, cmp_preset, cmp_start, cmp_end,
                                cmp_iterations, cmp_seed, cmp_paper_curves],
            [cmp_strip, cmp_table, cmp_zip, cmp_note], api_name="compare", concurrency_id="model",
            concurrency_limit=CONCURRENCY)
        # The expected time follows the settings (computed from figures already timed: nothing runs a model here).
        cost_inputs = [model_in, method_in, preset_in, areas_in, iterations_in, curves_in, paper_curves_in]
        for widget in cost_inputs:
            widget.change(cost_markdown, cost_inputs, cost_md, api_visibility="private", queue=False)
        cmp_cost_inputs = [cmp_model, cmp_methods, cmp_preset, cmp_iterations, cmp_paper_curves]
        for widget in cmp_cost_inputs:
            widget.change(lambda m, ms, p, it, pc: cost_markdown(m, ms, p, "", it, True, pc), cmp_cost_inputs,
                          cmp_cost_md, api_visibility="private", queue=False)
        # Stop cancels the running event; stoppable() turns that into the engine's cancel flag.
        stop_btn.click(None, None, None, cancels=[explain_event], api_visibility="private")
        cmp_stop_btn.click(None, None, None, cancels=[compare_event], api_visibility="private")
        # A lazily cached example runs the model on its first click: same concurrency group as the buttons.
        for fn in demo.fns.values():
            if fn.name == "load_example_output":
                fn.concurrency_id, fn.concurrency_limit = "model", CONCURRENCY
    demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=CONCURRENCY)
    return demo


def launch_kwargs() -> dict:
    """Everything ``launch`` needs besides host and port (theme and CSS go here in Gradio 6)."""
    return dict(max_file_size=f"{MAX_UPLOAD_MB}mb", theme=gr.themes.Soft(primary_hue="orange", secondary_hue="blue"),
                css=CSS, footer_links=["api"])


demo = build_demo()


def warm_up(model_name: str = DEFAULT_MODEL) -> None:
    """Run one ``fast`` iteration of the default model on a blank clip, compiling the mask generator for the
    shape every default request has (the compiled kernel is then shared by all requests)."""
    import torch

    from attribution import step
    from attribution.explain import make_settings
    try:
        t0 = time.perf_counter()
        model = load_model(model_name)
        st = make_settings(model, "step", "fast", {"iterations": 1, "compile": True})
        device = next(model.parameters()).device
        clip = torch.zeros(1, 3, model.num_frames, *model.input_size, device=device)
        with MODEL_LOCK:   # never beside a request (or the timing of the passes) on the same model
            step.perturbation(model, clip, [0], settings=st)
        log.info("warm-up of %s done in %.1f s", model_name, time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - a failed warm-up only means the first request compiles
        log.warning("warm-up of %s failed: %s", model_name, e)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("hardware: %s", device_sentence(HARDWARE))
    TIME_IN_BACKGROUND = not ON_ZEROGPU   # the passes of the models in use are timed once, for the estimates
    if TIME_IN_BACKGROUND:
        _measure_in_background(load_model(DEFAULT_MODEL))
    if HARDWARE["problem"]:
        log.warning(HARDWARE["problem"])
    if os.environ.get("VAE_WARMUP", "1") != "0" and not ON_ZEROGPU:  # ZeroGPU does not support torch.compile
        threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    port = os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT")
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(port) if port else None, **launch_kwargs())
