"""The paper's perturbation methods as registered methods: STEP and its two ablations (paper §3, §4.3).

``step`` optimises spatio-temporal masks with the smoothness term L_K (paper Eq. 6–8), ``3d-ep`` without it,
``2d-ep`` frame by frame (docs/method.md). The optimisation itself is :func:`attribution.step.perturbation`;
this module turns a preset and the caller's options into its :class:`attribution.step.Settings`.
"""
from __future__ import annotations

import dataclasses
import re

from attribution import step as step_mod
from attribution.errors import InputError
from attribution.methods.registry import MethodResult, register


def make_settings(model, method: str, preset: str | None, overrides: dict) -> step_mod.Settings:
    """The settings of one run: the preset, the model's default areas, the method's own defaults (2D-EP's reward
    and area weights, one area), then what the caller gave, which is kept exactly (even where it equals a
    preset's value)."""
    if preset not in step_mod.PRESETS:
        raise InputError(f"preset must be one of {', '.join(step_mod.PRESETS)}, not {preset!r}")
    fields = {f.name for f in dataclasses.fields(step_mod.Settings)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InputError(f"Unknown option(s) {', '.join(unknown)} for method {method!r}; "
                         f"known: {', '.join(sorted(fields))}.")
    kw = dict(step_mod.PRESETS[preset])
    if getattr(model, "areas", None):
        kw["areas"] = tuple(model.areas)
    given = {k: v for k, v in overrides.items() if v is not None}
    if "areas" in given:
        try:
            given["areas"] = tuple(float(a) for a in given["areas"])
        except (TypeError, ValueError):
            raise InputError(f"areas must be a list of fractions, got {given['areas']!r}") from None
    base = step_mod.Settings(**{**kw, "method_defaults": given.get("method_defaults", True)})
    settings = dataclasses.replace(step_mod.method_settings(base, method, getattr(model, "areas", None)), **given)
    if method == "2d-ep" and settings.method_defaults:  # applied already: the engine must not apply them again
        settings = dataclasses.replace(settings, method_defaults=False)
    return settings


def _perturbation_method(method: str):
    """The registered function of ``method`` and its several-targets form (every target x area one row of one
    optimisation batch, paper §3.3); ``evaluations`` of each result counts that target's rows."""
    def many(model, clip, targets, *, seed=0, progress=None, cancel=None, preset="fast", **options):
        settings = make_settings(model, method, preset or "fast", options)
        res = step_mod.perturbation(model, clip, [int(t) for t in targets], method=method, settings=settings,
                                    seed=seed, progress=progress, cancel=cancel)
        out, areas = [], len(res.settings.areas)
        for g in range(len(targets)):
            masks = res.masks[g].numpy()
            history = dict(res.history)   # the traces of the whole batch; the final p(target) of this target's masks
            history["prob"] = [row[g * areas:(g + 1) * areas] for row in res.history["prob"][-1:]]
            out.append(MethodResult(
                saliency=res.saliency[g].float(), settings=dataclasses.asdict(res.settings),
                evaluations=res.evaluations // len(targets),
                extras=dict(preset=preset or "fast", masks=masks, areas=list(res.settings.areas),
                            area_temporal=masks.mean((2, 3)), iterations=res.iterations, history=history)))
        return out

    def run(model, clip, target, **kwargs) -> MethodResult:
        return many(model, clip, [target], **kwargs)[0]
    run.__name__ = run.__qualname__ = method.replace("-", "_")
    run.__doc__ = f"{method}: attribution.step.perturbation(method={method!r}) with the preset's settings."
    return run, many


# display and short names of the engine's methods (attribution.step.METHODS): each is registered below
NAMES = {"step": ("STEP: spatio-temporal perturbation (the paper's method)", "STEP"),
         "3d-ep": ("3D-EP: perturbation without the smoothness term", "3D-EP"),
         "2d-ep": ("2D-EP: perturbation frame by frame", "2D-EP")}

for _name in step_mod.METHODS:
    _one, _many = _perturbation_method(_name)
    register(_name, display=NAMES[_name][0], short=NAMES[_name][1], kind="perturbation", unit="iterations",
             many=_many)(_one)


def parse_areas(text) -> list[float] | None:
    """The mask areas a person types (the app's field, the CLI's ``--areas``): fractions in (0, 1) separated by
    commas, semicolons or spaces, such as ``0.02, 0.05, 0.1``; None for an empty field (the preset's areas)."""
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


def areas_argument(text: str) -> list[float] | None:
    """:func:`parse_areas` as an argparse ``type`` (the CLI's ``--areas``): its sentence becomes argparse's error."""
    import argparse
    try:
        return parse_areas(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
