"""Video Attribution Explorer: why did a video classifier predict that class?

Public API: ``load_video``, ``load_clip`` (the frames a model's sampling recipe takes), ``explain``,
``Explanation``, ``available_methods``, ``deletion_insertion``, the scores against known evidence
(``pointing_game``, ``temporal_hit``, ``mass_in_tube``) and of a metric (``reliability``); and the one
pipeline the app, the CLI and ``batch`` share: ``pipeline.run`` (a map and its curves) and
``pipeline.compare`` (several methods on one clip).

Names other than ``explain`` are imported on first use: the engine and the metrics run where PyAV is not
installed (a bare GPU machine running the speed benchmark). ``explain`` is bound here, not lazily, because it
is also the name of its module.
"""
from attribution.errors import Cancelled, ExplorerError, InputError, ModelError, VideoError
from attribution.explain import Explanation, explain

_LAZY = {
    "load_video": "attribution.video", "load_clip": "attribution.video", "write_video": "attribution.video",
    "Video": "attribution.video",
    "available_methods": "attribution.methods", "PRESETS": "attribution.step",
    "deletion_insertion": "attribution.metrics", "Curves": "attribution.metrics",
    "pointing_game": "attribution.metrics", "temporal_hit": "attribution.metrics",
    "mass_in_tube": "attribution.metrics", "reliability": "attribution.metrics",
    "run": "attribution.pipeline", "compare": "attribution.pipeline", "Comparison": "attribution.pipeline",
}

__all__ = ["explain", "Explanation", *_LAZY, "Cancelled", "ExplorerError", "InputError", "ModelError", "VideoError"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attribution' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
