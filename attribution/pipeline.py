"""The one pipeline every front end runs (the app, the CLI, ``batch``, the benchmarks): a clip prepared once, a
map, its deletion / insertion curves, and the files.

    from attribution import pipeline
    exp = pipeline.run(model, "clip.mp4", method="step", curve_steps=32)        # an Explanation, curves on it
    cmp = pipeline.compare(model, "clip.mp4", ["step", "grad-cam", "random"])   # a Comparison
    cmp.save("out/")                                                            # picture, table, maps

``progress(done, total, info)`` is called as each stage advances; ``info["stage"]`` is ``"map"`` or
``"curves"``, ``info["method"]`` the method, and in a comparison ``info["index"]`` / ``info["count"]`` say
which method of how many. ``cancel`` (a ``threading.Event`` or a callable) stops either stage.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from attribution import methods
from attribution.common import cancel_aware
from attribution.errors import InputError
from attribution.explain import Explanation, explain, json_default, prepare_clip
from attribution.metrics import STEPS as PAPER_CURVE_STEPS
from attribution.metrics import deletion_insertion

QUICK_CURVE_STEPS = 32   # the app's default curves: |ΔAUC| <= 0.010 against the paper's 128 steps at a quarter of
#                          the passes on the benchmark clips (benchmarks/curve_steps.py, README: "Curves for less")
CURVE_STEPS = (QUICK_CURVE_STEPS, PAPER_CURVE_STEPS)


def _staged(progress: Callable | None, **info) -> Callable | None:
    """The engine's ``progress(done, total, info)`` with this stage's ``info`` added."""
    if progress is None:
        return None

    def update(done, total, extra=None):
        progress(done, total, {**(extra or {}), **info})
    return update


def run(model, video, method: str = "step", *, target=None, preset: str = "fast", seed: int = 0,
        curve_steps: int = 0, random_baseline: bool | str = True, event=None, progress: Callable | None = None,
        cancel=None, stage: dict | None = None, cache=None, **settings):
    """Explain ``video`` (a path, a ``Video``, frames, a clip tensor or a prepared clip) with ``method`` and, when
    ``curve_steps`` > 0, measure its deletion / insertion curves (with a random map's when ``random_baseline``;
    ``"first"``: on the first of several targets only) on the same prepared clip: ``exp.curves``.

    ``target`` as :func:`attribution.explain`: a list gives a list of Explanations (one optimisation batch for
    the perturbation methods), each with its curves. ``cache``: a result cache (``attribution.cache.ResultCache``)
    that returns a stored result of the same request at once (``exp.source["cache"] == "hit"``) and stores a new
    one. Everything else is :func:`attribution.explain`'s; ``settings`` are the method's options.
    """
    prepared = prepare_clip(model, video)
    request = dict(target=target, preset=preset, seed=seed, curve_steps=curve_steps, random_baseline=random_baseline,
                   event=event, **settings)
    hit = cached(cache, model, prepared, method, **request)
    if hit is not None:
        return hit
    info = {"method": method, **(stage or {})}
    result = explain(model, prepared, target=target, method=method, preset=preset, seed=seed, event=event,
                     progress=_staged(progress, stage="map", **info), cancel=cancel, **settings)
    exps = result if isinstance(result, list) else [result]
    for k, exp in enumerate(exps if curve_steps else []):
        random = random_baseline is True or (random_baseline == "first" and k == 0)
        exp.curves = deletion_insertion(
            model, prepared.clip, exp.saliency, exp.target, steps=int(curve_steps), random_baseline=random,
            seed=seed, progress=cancel_aware(_staged(progress, stage="curves", **info), cancel))
    if cache is not None and getattr(cache, "enabled", False):
        cache.put(_key(cache, model, prepared, method, **request), result)
    return result


def _key(cache, model, prepared, method, *, target=None, preset="fast", seed=0, curve_steps=0,
         random_baseline=True, event=None, **settings) -> str:
    """The cache key of a :func:`run` request: the curves' settings are part of it, the evidence window is not."""
    curves = ({"steps": int(curve_steps), "random_baseline": random_baseline, "seed": int(seed)} if curve_steps
              else None)
    return cache.key(model, prepared, method=method, target=target, seed=seed, preset=preset, curves=curves,
                     **settings)


def cached(cache, model, video, method: str = "step", **request):
    """The stored result of the :func:`run` request (same arguments), or None: a caller can answer a repeat
    before it reserves a GPU or refuses a long request. ``cache`` None or switched off: None."""
    if cache is None or not getattr(cache, "enabled", False):
        return None
    prepared = prepare_clip(model, video)
    hit = cache.get(_key(cache, model, prepared, method, **request))
    event = request.get("event")
    for exp in (hit if isinstance(hit, list) else [hit]) if hit is not None else []:
        exp.event = tuple(event) if event is not None else None
        # the request's own file (a hit may have been stored from another name, or from no file at all)
        exp.source = {**{k: v for k, v in exp.source.items() if k != "path"},
                      **{k: v for k, v in prepared.source.items() if k == "path"}}
    return hit


@dataclasses.dataclass
class Comparison:
    """Several explanations of one clip, with their curves: several methods of one target (``by="method"``), or
    one method of several targets (``by="target"``: "why this class, and why that one?")."""
    explanations: list[Explanation]           # in the order asked; the first carries the random map's AUCs
    by: str = "method"

    def name_of(self, e: Explanation) -> str:
        return methods.short_name(e.method) if self.by == "method" else e.label

    @property
    def first(self) -> Explanation:
        return self.explanations[0]

    @property
    def methods(self) -> list[str]:
        return [e.method for e in self.explanations]

    def random_aucs(self) -> tuple[float | None, float | None]:
        c = self.first.curves
        return (c.auc_random_deletion, c.auc_random_insertion) if c is not None else (None, None)

    def rows(self) -> list[dict]:
        """One row a method (deletion / insertion AUC, seconds, peak frame), then the random map's when no
        method is the random map itself."""
        rows = []
        for e in self.explanations:
            row = {self.by: self.name_of(e)}
            if self.by == "target":
                row["probability"] = round(e.probability, 3)
            c = e.curves   # None for a comparison made without curves (curve_steps=0): the maps only
            row.update({"deletion AUC ↓": round(c.auc_deletion, 3) if c is not None else None,
                        "insertion AUC ↑": round(c.auc_insertion, 3) if c is not None else None,
                        "time (s)": round(e.timings["attribution"], 2), "peak frame": e.peak_frame + 1})
            rows.append(row)
        rd, ri = self.random_aucs()
        if "random" not in self.methods and rd is not None:
            rows.append({**{k: None for k in rows[0]}, self.by: "random map (reference)",
                         "deletion AUC ↓": round(rd, 3), "insertion AUC ↑": round(ri, 3)})
        return rows

    def save(self, directory) -> Path:
        """comparison.png (the maps side by side), comparison.csv / .json (the table) and saliency_<method>.npz."""
        from attribution import render
        from PIL import Image
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        maps = {}
        for k, e in enumerate(self.explanations):
            maps[self.name_of(e)] = e.saliency
            name = e.method if self.by == "method" else f"{k}_{e.target}"
            np.savez_compressed(d / f"saliency_{name}.npz", saliency=e.saliency.astype(np.float32))
        Image.fromarray(render.compare_strip(self.first.frames, maps)).save(d / "comparison.png")
        rows = self.rows()
        with open(d / "comparison.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        e = self.first
        (d / "comparison.json").write_text(json.dumps(
            {"model": e.model_name, "by": self.by, "methods": self.methods,
             "targets": [x.target for x in self.explanations], "labels": [x.label for x in self.explanations],
             "preset": e.preset, "seed": e.seed,
             "clip": e.source.get("path"), "curve_steps": e.curves.steps if e.curves is not None else 0,
             "rows": rows}, indent=1,
            default=json_default))
        return d


def compare(model, video, method_names: Sequence[str], *, target=None, preset: str = "fast", seed: int = 0,
            curve_steps: int = QUICK_CURVE_STEPS, event=None, progress: Callable | None = None, cancel=None,
            cache=None, **settings) -> Comparison:
    """Every method of ``method_names`` on one clip (prepared once) and one target (the first method's, i.e. the
    top-1 class when ``target`` is None), each with its curves; the random map's curves once, on the first.
    ``settings`` go to the methods that take the perturbation settings (iterations, areas, ...)."""
    names = [m for m in method_names if m]
    if not names:
        raise InputError("Choose at least one method to compare.")
    specs = [methods.get(m) for m in names]
    prepared = prepare_clip(model, video)
    out: list[Explanation] = []
    for k, spec in enumerate(specs):
        opts = settings if spec.takes_settings else {}
        exp = run(model, prepared, spec.name, target=target, preset=preset, seed=seed, curve_steps=curve_steps,
                  random_baseline=not out, event=event, progress=progress, cancel=cancel,
                  stage={"index": k, "count": len(specs)}, cache=cache, **opts)
        target = exp.target
        out.append(exp)
    return Comparison(out)


def compare_targets(model, video, method: str, targets, *, preset: str = "fast", seed: int = 0,
                    curve_steps: int = QUICK_CURVE_STEPS, event=None, progress: Callable | None = None, cancel=None,
                    cache=None, **settings) -> Comparison:
    """One method, several target classes of one clip (in one optimisation batch for the perturbation methods):
    where the model sees each class. ``targets``: class indices or labels, or an int k for the model's top-k."""
    prepared = prepare_clip(model, video)
    if isinstance(targets, int):
        targets = top_classes(model, prepared, targets)
    exps = run(model, prepared, method, target=list(targets), preset=preset, seed=seed, curve_steps=curve_steps,
               random_baseline="first", event=event, progress=progress, cancel=cancel, cache=cache, **settings)
    return Comparison(exps, by="target")


def top_classes(model, video, k: int) -> list[int]:
    """The model's ``k`` most probable classes on the clip."""
    import torch
    prepared = prepare_clip(model, video)
    if not 1 <= int(k) <= len(model.labels):
        raise InputError(f"k must be between 1 and the model's {len(model.labels)} classes, not {k}.")
    with torch.no_grad():
        logits = model(prepared.clip).float()[0]
    return [int(i) for i in logits.topk(int(k)).indices]
