"""Video Attribution Explorer: why did a video classifier predict that class?

Public API (DESIGN §1): ``load_video``, ``explain``, ``Explanation``, ``deletion_insertion``.
"""
from attribution.errors import ExplorerError, InputError, ModelError, VideoError
from attribution.explain import Explanation, available_methods, explain
from attribution.metrics import Curves, deletion_insertion
from attribution.step import PRESETS, Cancelled
from attribution.video import Video, load_video, write_video

__all__ = ["load_video", "write_video", "Video", "explain", "Explanation", "available_methods", "PRESETS",
           "deletion_insertion", "Curves",
           "Cancelled", "ExplorerError", "InputError", "ModelError", "VideoError"]
