"""The method registry: every attribution method is one registered function with one signature.

    @register("grad-cam", display="Grad-CAM", short="Grad-CAM", kind="gradient")
    def gradcam(model, clip, target, *, seed=0, progress=None, cancel=None, preset=None, **options) -> MethodResult

* model: maps clips (B,3,T,H,W) in [0,1] to logits (B,K) (a ``model_zoo.VideoClassifier`` or any such module);
* clip: (1,3,T,H,W) in [0,1] on the model's device; target: a class index;
* preset: the perturbation methods' schedule (``fast`` / ``interactive`` / ``paper``, see
  ``attribution.step.PRESETS``); the other methods take it and ignore it, so a caller never branches on the
  kind of method;
* options: the method's own settings (the perturbation methods: any ``attribution.step.Settings`` field).

Adding a method is adding one decorated function in a module that ``attribution/methods/__init__.py``
imports: ``explain()``, the CLI's ``--method`` choices, the app's dropdown and the tests that run over
:func:`names` pick it up.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Callable

import torch

from attribution.errors import InputError

KINDS = ("perturbation", "gradient", "occlusion", "reference")


@dataclasses.dataclass
class MethodResult:
    """What every method returns."""
    saliency: torch.Tensor        # (T,H,W) float in [0,1], on the CPU
    settings: dict                # every setting the map was computed with (JSON-ready)
    evaluations: int | None       # clip forward(+backward) passes spent
    extras: dict = dataclasses.field(default_factory=dict)  # method-specific: masks, areas, iterations, history


@dataclasses.dataclass(frozen=True)
class Method:
    name: str                     # what explain(method=...) and the CLI take
    display: str                  # the app's dropdown
    short: str                    # tables, plot titles, progress bars
    kind: str                     # one of KINDS
    fn: Callable[..., MethodResult]
    unit: str = "steps"           # what its progress counts ("iterations" for the optimisations)
    model_free: bool = False      # a floor that never calls the model (sanity checks expect it to survive)
    many: Callable[..., list[MethodResult]] | None = None  # several targets in one run (one batch), if it can

    def for_targets(self, model, clip, targets, **kwargs) -> list[MethodResult]:
        """One result per target: in one run where the method can (the perturbation methods put every target x
        area in one optimisation batch), else one call per target."""
        if self.many is not None:
            return self.many(model, clip, list(targets), **kwargs)
        return [self.fn(model, clip, t, **kwargs) for t in targets]

    @property
    def takes_settings(self) -> bool:
        """Whether the perturbation settings (areas, iterations, key frames, perturbation, precision) apply."""
        return self.kind == "perturbation"


REGISTRY: dict[str, Method] = {}


def register(name: str, *, display: str, short: str, kind: str, unit: str = "steps", model_free: bool = False,
             many: Callable[..., list[MethodResult]] | None = None):
    """Decorator: add ``fn`` to the registry under ``name`` (``many``: its several-targets-at-once form)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")

    def add(fn: Callable[..., MethodResult]) -> Callable[..., MethodResult]:
        if name in REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        REGISTRY[name] = Method(name, display, short, kind, fn, unit, model_free, many)
        return fn
    return add


def get(name: str) -> Method:
    """The registered method ``name``; InputError (with the closest names) when there is none."""
    if name in REGISTRY:
        return REGISTRY[name]
    close = difflib.get_close_matches(str(name), list(REGISTRY), n=2, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise InputError(f"Unknown method {name!r}; choose one of {', '.join(REGISTRY)}.{hint}")


def short_name(name: str) -> str:
    """The registry's short name of ``name`` (the name itself for an unknown one)."""
    return REGISTRY[name].short if name in REGISTRY else str(name)
