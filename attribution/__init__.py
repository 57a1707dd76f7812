"""Video Attribution Explorer: why did a video classifier predict that class?

Public API: ``load_video``, ``load_clip`` (the frames a model's sampling recipe takes), ``explain``,
``Explanation``, ``deletion_insertion``. The video I/O names (``load_video``, ``load_clip``, ``write_video``,
``Video``) are imported on first use, so the engine and
the metrics run where PyAV is not installed (a bare GPU machine running the speed benchmark).
"""
from attribution.errors import ExplorerError, InputError, ModelError, VideoError
from attribution.explain import Explanation, available_methods, explain
from attribution.metrics import Curves, deletion_insertion
from attribution.step import PRESETS, Cancelled

_VIDEO = ("load_video", "load_clip", "write_video", "Video")

__all__ = ["load_video", "load_clip", "write_video", "Video", "explain", "Explanation", "available_methods", "PRESETS",
           "deletion_insertion", "Curves",
           "Cancelled", "ExplorerError", "InputError", "ModelError", "VideoError"]


def __getattr__(name: str):
    if name in _VIDEO:
        from attribution import video
        return getattr(video, name)
    raise AttributeError(f"module 'attribution' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_VIDEO))
