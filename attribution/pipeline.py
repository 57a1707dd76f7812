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
#                          the passes on the benchmark clips (benchmarks/curve_steps.py, README: Performance)
CURVE_STEPS = (QUICK_CURVE_STEPS, PAPER_CURVE_STEPS)


def _staged(progress: Callable | None, **info) -> Callable | None:
    """The engine's ``progress(done, total, info)`` with this stage's ``info`` added."""
    if progress is None:
        return None

    def update(done, total, extra=None):
        progress(done, total, {**(extra or {}), **info})
    return update


def run(model, video, method: str = "step", *, target=None, preset: str = "fast", seed: int = 0,
        curve_steps: int = 0, random_baseline: bool = True, event=None, progress: Callable | None = None,
        cancel=None, stage: dict | None = None, **settings) -> Explanation:
    """Explain ``video`` (a path, a ``Video``, frames, a clip tensor or a prepared clip) with ``method`` and, when
    ``curve_steps`` > 0, measure its deletion / insertion curves (with a random map's when ``random_baseline``) on
    the same prepared clip: ``exp.curves``.

    Everything else is :func:`attribution.explain`'s; ``settings`` are the method's options.
    """
    prepared = prepare_clip(model, video)
    info = {"method": method, **(stage or {})}
    exp = explain(model, prepared, target=target, method=method, preset=preset, seed=seed, event=event,
                  progress=_staged(progress, stage="map", **info), cancel=cancel, **settings)
    if curve_steps:
        exp.curves = deletion_insertion(
            model, prepared.clip, exp.saliency, exp.target, steps=int(curve_steps), random_baseline=random_baseline,
            seed=seed, progress=cancel_aware(_staged(progress, stage="curves", **info), cancel))
    return exp


@dataclasses.dataclass
class Comparison:
    """Several methods' explanations of one clip and one target, with their curves."""
    explanations: list[Explanation]           # in the order asked; the first carries the random map's AUCs

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
            rows.append({"method": methods.short_name(e.method), "deletion AUC ↓": round(e.curves.auc_deletion, 3),
                         "insertion AUC ↑": round(e.curves.auc_insertion, 3),
                         "time (s)": round(e.timings["attribution"], 2), "peak frame": e.peak_frame + 1})
        rd, ri = self.random_aucs()
        if "random" not in self.methods and rd is not None:
            rows.append({"method": "random map (reference)", "deletion AUC ↓": round(rd, 3),
                         "insertion AUC ↑": round(ri, 3), "time (s)": None, "peak frame": None})
        return rows

    def save(self, directory) -> Path:
        """comparison.png (the maps side by side), comparison.csv / .json (the table) and saliency_<method>.npz."""
        from attribution import render
        from PIL import Image
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        maps = {}
        for e in self.explanations:
            maps[methods.short_name(e.method)] = e.saliency
            np.savez_compressed(d / f"saliency_{e.method}.npz", saliency=e.saliency.astype(np.float32))
        Image.fromarray(render.compare_strip(self.first.frames, maps)).save(d / "comparison.png")
        rows = self.rows()
        with open(d / "comparison.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        e = self.first
        (d / "comparison.json").write_text(json.dumps(
            {"model": e.model_name, "target": e.target, "label": e.label, "preset": e.preset, "seed": e.seed,
             "clip": e.source.get("path"), "curve_steps": e.curves.steps, "rows": rows}, indent=1,
            default=json_default))
        return d


def compare(model, video, method_names: Sequence[str], *, target=None, preset: str = "fast", seed: int = 0,
            curve_steps: int = QUICK_CURVE_STEPS, event=None, progress: Callable | None = None, cancel=None,
            **settings) -> Comparison:
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
                  stage={"index": k, "count": len(specs)}, **opts)
        target = exp.target
        out.append(exp)
    return Comparison(out)
