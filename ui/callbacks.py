"""The app's callbacks: widget values in, :mod:`attribution.pipeline` in the middle, display values out.

Each callback decodes the clip and loads the model (outside any GPU window), checks the cost, hands one
:class:`Job` to :func:`model_work` (the only function that runs the model: inside the ZeroGPU window on a
ZeroGPU Space, see :mod:`ui.runtime`), then renders and zips the result into its request folder. They are
plain functions, importable and testable without a server: ``from ui.callbacks import explain_clip``.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from attribution import cost, pipeline, sanity
from attribution import methods as registry
from attribution.cache import ResultCache
from attribution.common import check_cancel
from attribution.errors import InputError
from model_zoo import list_models, load_model
from ui import config, costs, files, inputs, text
from ui.config import DEFAULT_MODEL, DEFAULT_PRESET, TOP1
from ui.errors import to_user_error, user_errors
from ui.runtime import MODEL_LOCK, ON_ZEROGPU, gpu, stoppable

log = logging.getLogger("video-attribution-explorer")
RESULTS = ResultCache()   # a repeated request (an example, the same upload again) is answered from disk at once


# ---------------------------------------------------------------------------------------------- the model
@dataclasses.dataclass
class Job:
    """One request's model work, as it crosses into the GPU window (pickled on ZeroGPU)."""
    model: str                  # what the request named (a registry name or a path): the model cache's key
    video: object               # the decoded attribution.video.Video
    methods: list[str]
    compare: str = ""           # "method": a Comparison of ``methods``; "target": of the top ``top_k`` classes;
    #                             "sanity": the model-randomisation check of ``methods``
    top_k: int = 0
    target: object = None
    preset: str = DEFAULT_PRESET
    seed: int = 0
    event: tuple | None = None
    settings: dict = dataclasses.field(default_factory=dict)
    curve_steps: int = 0
    repeats: int = 1            # the sanity check explains the clip once per stage of its cascade
    what: str = "explaining the clip"   # the error message's "while ..."


def _gpu_seconds(job: Job, *rest) -> int:
    return costs.window(job.model, job.methods, job.preset, job.settings, job.curve_steps, job.repeats)


def _progress(progress):
    """The pipeline's progress(done, total, info) drawn as one stage of Gradio's bar."""
    if progress is None:
        return None

    def update(done, total, info=None):
        info = info or {}
        of = f" ({info['index'] + 1}/{info['count']})" if "count" in info else ""
        spec = registry.get(info.get("method", "step"))
        if info.get("stage") == "curves":
            desc, unit = f"{spec.short}{of}: measuring the curves", "clips"
        else:
            desc, unit = f"Computing the {spec.short} map{of}", spec.unit
        progress((int(done), int(total)), desc=desc, unit=unit)
    return update


@gpu(duration=_gpu_seconds)
def model_work(job: Job, progress=None, cancel=None):
    """The model work of a request: :func:`attribution.pipeline.run` or :func:`~attribution.pipeline.compare`.
    Errors become their one-sentence ``gr.Error`` here, inside the window (ZeroGPU keeps no other message)."""
    try:
        check_cancel(cancel, "The explanation was stopped.")   # stopped while it waited: never take the model
        with MODEL_LOCK:
            check_cancel(cancel, "The explanation was stopped.")
            m = load_model(job.model)
            if ON_ZEROGPU:  # inside the window: time the GPU passes once, so later windows are sized by them
                cost.pass_costs(m)
            common = dict(target=job.target, preset=job.preset, seed=job.seed, event=job.event,
                          curve_steps=job.curve_steps, progress=_progress(progress), cancel=cancel, cache=RESULTS,
                          **job.settings)
            if job.compare:
                common.pop("contrast", None)
            if job.compare == "sanity":   # on a copy of the model: the cached one is never randomised
                for key in ("curve_steps", "event", "cache"):
                    del common[key]
                return sanity.sanity_check(m, job.video, job.methods, **common)
            if job.compare == "target":
                del common["target"]
                return pipeline.compare_targets(m, job.video, job.methods[0], job.top_k, **common)
            if job.compare:
                return pipeline.compare(m, job.video, job.methods, **common)
            return pipeline.run(m, job.video, job.methods[0], **common)
    except Exception as e:  # noqa: BLE001 - the page must get a sentence, the log the traceback
        raise to_user_error(e, job.what) from None


def _engine_settings(settings: dict, method: str | None = None) -> dict:
    """No torch.compile on ZeroGPU (unsupported there) for the perturbation methods (``method`` None: a comparison,
    whose settings reach only those): set before the cache lookup, so the key is the run's."""
    perturbation = method is None or registry.get(method).takes_settings
    return dict(settings, compile=False) if ON_ZEROGPU and perturbation else settings


def _run(job: Job, progress, cancel):
    return model_work(job, *((None, None) if ON_ZEROGPU else (progress, cancel)))


# ---------------------------------------------------------------------------------------------- callbacks
def _topk_dict(topk) -> dict:
    return {label: float(p) for label, p in topk}


@gpu(duration=20)
@user_errors("predicting the class")
def _predict_on_gpu(model_name: str, frames: np.ndarray) -> list:
    with MODEL_LOCK:
        m = load_model(model_name)
        return m.predict(m.prepare(frames), k=5)


@user_errors("predicting the class")
def predict_clip(video, model: str = DEFAULT_MODEL, start: float = 0, end: float = 0, progress=gr.Progress()):
    """Top-5 predictions of ``model`` on the clip, and the target choices they suggest."""
    _, m, v, _ = inputs.load(video, model, start, end, progress)
    progress(0.5, desc="Predicting")
    top5 = _predict_on_gpu(model or DEFAULT_MODEL, v.frames)
    return _topk_dict(top5), gr.Dropdown(choices=inputs.target_choices(m.name, top5), value=TOP1)


@user_errors("explaining the clip")
def explain_clip(video, model: str = DEFAULT_MODEL, target: str = TOP1, method: str = config.DEFAULT_METHOD,
                 preset: str = DEFAULT_PRESET, start: float = 0, end: float = 0, areas: str = "",
                 iterations: float = 0, key_frames: float = 0, perturbation: str = "blur", seed: float = 0,
                 curves: bool = True, precision: str = "auto", paper_curves: bool = False, contrast: str = "",
                 progress=gr.Progress(), cancel=None):
    """Explain why ``model`` predicts ``target`` (default: its top-1 class) on the clip.

    Returns the top-5 predictions (label -> probability), the overlay video (H.264 mp4), the temporal plot and
    the deletion/insertion plot (PNG paths; the latter None when ``curves`` is off; ``VAE_CURVE_STEPS`` steps,
    the paper's 128 with ``paper_curves``), a zip with every file, and a plain-language summary (Markdown).
    ``contrast``: a class to explain the target *rather than* (perturbation methods; "" for none). ``cancel``
    (a ``threading.Event``) stops it after the current iteration.
    """
    method = method or config.DEFAULT_METHOD
    settings = _engine_settings(inputs.overrides(method, areas, iterations, key_frames, perturbation, precision),
                                method)
    if inputs.parse_target(contrast) is not None:
        settings["contrast"] = inputs.parse_target(contrast)
    seed = inputs.number(seed, "Seed", integer=True, minimum=0) or 0
    path, m, v, trimmed = inputs.load(video, model, start, end, progress)
    job = Job(model or DEFAULT_MODEL, v, [method], target=inputs.parse_target(target),
              preset=preset or DEFAULT_PRESET, seed=seed, event=inputs.event_for(path, m, v, trimmed), settings=settings,
              curve_steps=costs.steps_for(curves, paper_curves))
    exp = pipeline.cached(RESULTS, m, v, method, target=job.target, preset=job.preset, seed=seed,
                          curve_steps=job.curve_steps, event=job.event, **settings)
    if exp is None:   # a repeat costs neither GPU time nor the limit
        costs.refuse_if_too_long(m, job.model, method, job.preset, settings, job.curve_steps)
        progress(0.1, desc="Predicting")
        exp = _run(job, progress, cancel)
    exp.source["path"] = Path(path).name
    progress(0.95, desc="Rendering")
    t_render = time.perf_counter()
    with files.request_folder() as req:
        out = exp.save(req / "explanation")
        archive = files.zip_folder(out, req / f"explanation_{files.slug(m.name)}_{files.slug(method)}_"
                                              f"{files.slug(exp.label)}.zip")
    costs.record_rendering(job.model, time.perf_counter() - t_render)
    curves_png = out / "curves.png"
    return (_topk_dict(exp.topk), str(out / "overlay.mp4"), str(out / "temporal.png"),
            str(curves_png) if curves_png.exists() else None, archive, text.summary_markdown(exp))


@user_errors("comparing methods")
def compare_clip(video, model: str = DEFAULT_MODEL, target: str = TOP1, methods=None,
                 preset: str = DEFAULT_PRESET, start: float = 0, end: float = 0, iterations: float = 0,
                 seed: float = 0, paper_curves: bool = False, by: str = "method", top_k: float = 3,
                 progress=gr.Progress(), cancel=None):
    """Several methods on one clip (``by="method"``), or the first ticked method on the model's ``top_k``
    classes (``by="target"``: where it sees each class): a strip of the maps, a table of AUCs and times, a zip,
    and a note (the curves take ``VAE_CURVE_STEPS`` steps, the paper's 128 with ``paper_curves``)."""
    names = [x for x in (methods or []) if x]
    if not names:
        raise InputError("Tick at least one method to compare.")
    if by not in ("method", "target"):
        raise InputError(f"Compare by 'method' or 'target', not {by!r}.")
    k = (inputs.number(top_k, "Classes", integer=True, minimum=2) or 3) if by == "target" else 0
    names = names[:1] if by == "target" else names
    for name in names:
        registry.get(name)
    seed = inputs.number(seed, "Seed", integer=True, minimum=0) or 0
    iterations = inputs.number(iterations, "Iterations", integer=True, minimum=0) or None
    if by == "target" and not registry.get(names[0]).takes_settings:
        iterations = None   # pipeline.compare gives them only to the perturbation methods; one method here
    path, m, v, trimmed = inputs.load(video, model, start, end, progress)
    job = Job(model or DEFAULT_MODEL, v, names, compare=by, top_k=k, target=inputs.parse_target(target),
              preset=preset or DEFAULT_PRESET, seed=seed, event=inputs.event_for(path, m, v, trimmed),
              settings=_engine_settings({"iterations": iterations} if iterations else {}),
              curve_steps=costs.steps_for(True, paper_curves), what="comparing methods")
    costs.refuse_if_too_long(m, job.model, names, job.preset, job.settings, job.curve_steps)
    comparison = _run(job, progress, cancel)
    comparison.first.source["path"] = Path(path).name
    progress(0.97, desc="Rendering")
    with files.request_folder() as req:
        out = comparison.save(req / "comparison")
        name = f"comparison_{files.slug(m.name)}_{files.slug(comparison.first.label)}.zip"
        archive = files.zip_folder(out, req / name)
    return (str(out / "comparison.png"), pd.DataFrame(comparison.rows()), archive,
            text.comparison_note(comparison))


@user_errors("checking the methods")
def sanity_clip(video, model: str = DEFAULT_MODEL, target: str = TOP1, methods=None, preset: str = DEFAULT_PRESET,
                start: float = 0, end: float = 0, iterations: float = 0, seed: float = 0, progress=gr.Progress(),
                cancel=None):
    """The sanity check of the ticked methods (Adebayo et al., NeurIPS 2018): randomise a copy of the model's
    layers from the top down and see whether each map changes. Returns the plot (PNG path), a table (one row a
    method: similarity to the original map once every layer is random, and the verdict), a zip and a note."""
    names = [x for x in (methods or []) if x]
    if not names:
        raise InputError("Tick at least one method to check.")
    seed = inputs.number(seed, "Seed", integer=True, minimum=0) or 0
    iterations = inputs.number(iterations, "Iterations", integer=True, minimum=0) or None
    path, m, v, _ = inputs.load(video, model, start, end, progress)
    job = Job(model or DEFAULT_MODEL, v, names, compare="sanity", target=inputs.parse_target(target),
              preset=preset or DEFAULT_PRESET, seed=seed, what="checking the methods",
              settings=_engine_settings({"iterations": iterations} if iterations else {}),
              repeats=len(sanity.layer_groups(m)) + 1)
    costs.refuse_if_too_long(m, job.model, names, job.preset, job.settings, 0, repeats=job.repeats)
    report = _run(job, progress, cancel)
    report.source["path"] = Path(path).name
    with files.request_folder() as req:
        out = report.save(req / "sanity")
        archive = files.zip_folder(out, req / f"sanity_{files.slug(m.name)}.zip")
    return str(out / "sanity.png"), pd.DataFrame(text.sanity_rows(report)), archive, text.sanity_note(report)


async def sanity_stoppable(video, model: str = DEFAULT_MODEL, target: str = TOP1, methods=None,
                           preset: str = DEFAULT_PRESET, start: float = 0, end: float = 0, iterations: float = 0,
                           seed: float = 0, progress=gr.Progress()):
    """:func:`sanity_clip` as the Sanity check button and the ``/sanity`` endpoint run it (stoppable)."""
    return await stoppable(sanity_clip, video, model, target, methods, preset, start, end, iterations, seed,
                           progress=progress)


async def explain_stoppable(video, model: str = DEFAULT_MODEL, target: str = TOP1, method: str = "step",
                            preset: str = DEFAULT_PRESET, start: float = 0, end: float = 0, areas: str = "",
                            iterations: float = 0, key_frames: float = 0, perturbation: str = "blur",
                            seed: float = 0, curves: bool = True, precision: str = "auto",
                            paper_curves: bool = False, contrast: str = "", progress=gr.Progress()):
    """:func:`explain_clip` as the Explain button and the ``/explain`` endpoint run it: Stop (or a client's
    ``Job.cancel()``) ends it after the current iteration."""
    return await stoppable(explain_clip, video, model, target, method, preset, start, end, areas, iterations,
                           key_frames, perturbation, seed, curves, precision, paper_curves, contrast,
                           progress=progress)


async def compare_stoppable(video, model: str = DEFAULT_MODEL, target: str = TOP1, methods=None,
                            preset: str = DEFAULT_PRESET, start: float = 0, end: float = 0, iterations: float = 0,
                            seed: float = 0, paper_curves: bool = False, by: str = "method", top_k: float = 3,
                            progress=gr.Progress()):
    """:func:`compare_clip` as the Compare button and the ``/compare`` endpoint run it (stoppable)."""
    return await stoppable(compare_clip, video, model, target, methods, preset, start, end, iterations, seed,
                           paper_curves, by, top_k, progress=progress)


def explain_example(video, model):
    """What an example shows (cached lazily): the default settings on that clip.

    Keep the curves on: Gradio's example cache cannot read back an empty image output.
    """
    return explain_clip(video, model)


def on_model_change(model):
    return (gr.Dropdown(choices=inputs.target_choices(model), value=TOP1), text.model_markdown(model),
            gr.Dropdown(choices=inputs.contrast_choices(model), value=config.NO_CONTRAST))


def on_compare_model_change(model):
    return gr.Dropdown(choices=inputs.target_choices(model), value=TOP1)


def compare_cost(model, methods, preset, iterations, paper_curves) -> str:
    return costs.cost_markdown(model, methods, preset, "", iterations, True, paper_curves)


def examples() -> tuple[list, list[str]]:
    """The example rows: the toy clips always; the ground-truth models' clips and the real clip (with a Kinetics
    model, which needs the network a Space has) only where such a request fits an example."""
    import os
    rows, labels = [], []
    for p in sorted(config.EXAMPLES.glob("toy_*.mp4")):
        rows.append([str(p), DEFAULT_MODEL])
        labels.append("toy: " + p.stem.removeprefix("toy_").replace("_", " "))
    for name in list_models():
        if name.startswith("gt_") and costs.example_fits(name):
            for p in sorted(config.EXAMPLES.glob(f"{name}_*.mp4"))[:2]:
                rows.append([str(p), name])
                labels.append(f"{name}: " + p.stem.removeprefix(f"{name}_").replace("_", " "))
    if (config.EXAMPLES / "bunny.mp4").exists():
        real = "x3d_xs" if os.environ.get("SPACE_ID") and costs.example_fits("x3d_xs") else DEFAULT_MODEL
        rows.append([str(config.EXAMPLES / "bunny.mp4"), real])
        labels.append("Big Buck Bunny (real clip)")
    return rows, labels


def warm_up(model_name: str = DEFAULT_MODEL, preset: str = DEFAULT_PRESET) -> None:
    """Run one iteration of ``preset`` on the default model and a blank clip, compiling the mask generator for
    the shape its requests have (the compiled kernel is then shared by all requests; the server does it only for
    a default preset long enough to compile, ``attribution.step.compiles``)."""
    import torch
    try:
        t0 = time.perf_counter()
        model = load_model(model_name)
        clip = torch.zeros(1, 3, model.num_frames, *model.input_size, device=model.device)
        with MODEL_LOCK:   # never beside a request (or the timing of the passes) on the same model
            pipeline.run(model, clip, config.DEFAULT_METHOD, preset=preset, iterations=1, compile=True)
        log.info("warm-up of %s done in %.1f s", model_name, time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - a failed warm-up only means the first request compiles
        log.warning("warm-up of %s failed: %s", model_name, e)
