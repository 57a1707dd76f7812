"""Every attribution method, registered once (:mod:`attribution.methods.registry`).

``perturbation``: STEP, 3D-EP and 2D-EP (the paper's); ``baselines``: the comparison methods the paper measures
STEP against (gradient, Integrated Gradients, SmoothGrad, Grad-CAM, occlusion) and two floors (random,
frame difference). Importing this package registers them all.
"""
from attribution.methods.registry import KINDS, REGISTRY, Method, MethodResult, get, register, short_name
from attribution.methods import perturbation  # noqa: E402,F401  (registers step, 3d-ep, 2d-ep)
from attribution.methods import baselines  # noqa: E402,F401  (registers the comparison methods; captum is pinned)

__all__ = ["KINDS", "REGISTRY", "Method", "MethodResult", "get", "register", "short_name", "names",
           "available_methods", "perturbation_methods"]


def names() -> list[str]:
    """Every registered method: the perturbation methods first, then the others in the order registered."""
    return list(REGISTRY)


available_methods = names


def perturbation_methods() -> list[str]:
    return [n for n, m in REGISTRY.items() if m.kind == "perturbation"]
