"""The app's settings: read once from the environment (README: The app, "The Space on each kind of hardware"), everything else from the library.

``VAE_CONCURRENCY`` (model jobs at once, default 1), ``VAE_MAX_QUEUE`` (waiting jobs, default 16),
``VAE_MAX_UPLOAD_MB`` (default 100), ``VAE_MAX_SECONDS`` (longest clip, default 600), ``VAE_TMP`` (where
per-request folders live), ``VAE_CURVE_STEPS`` (the quick deletion/insertion curves' steps, default 32; the
paper's 128 are one click away), ``VAE_GPU_SECONDS_CAP`` (longest ZeroGPU window, default 90); the cost model
reads ``VAE_MAX_REQUEST_SECONDS`` and the model cache ``VAE_MODEL_CACHE``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from attribution import video
from attribution.device import describe_device
from attribution.pipeline import PAPER_CURVE_STEPS, QUICK_CURVE_STEPS  # noqa: F401
from model_zoo import DEFAULT_MODEL  # noqa: F401  (the app's default model)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CONCURRENCY = int(os.environ.get("VAE_CONCURRENCY", "1"))   # model jobs at once (one model cache, shared)
MAX_QUEUE = int(os.environ.get("VAE_MAX_QUEUE", "16"))       # waiting jobs beyond which new ones are refused
MAX_UPLOAD_MB = int(os.environ.get("VAE_MAX_UPLOAD_MB", "100"))
MAX_SECONDS = float(os.environ.get("VAE_MAX_SECONDS", str(video.MAX_SECONDS)))  # longest clip accepted
CURVE_STEPS = int(os.environ.get("VAE_CURVE_STEPS", str(QUICK_CURVE_STEPS)))  # the quick curves' steps
GPU_CAP = float(os.environ.get("VAE_GPU_SECONDS_CAP", "90"))  # longest ZeroGPU window one request asks for
KEEP_SECONDS = 3600           # per-request folders (and Gradio's copies) are deleted after an hour
TMP_ROOT = Path(os.environ.get("VAE_TMP") or Path(tempfile.gettempdir()) / "video-attribution-explorer")
MARGIN = 0.01                 # AUC difference below which a map is said to do no better than random
TOP1 = ""                     # target value meaning "the model's top-1 class"
TOP1_CHOICE = ("Top-1 prediction (default)", TOP1)
NO_CONTRAST = ""              # "rather than" value meaning "no contrast: the plain game"
DEFAULT_METHOD = "step"
DEFAULT_PRESET = "interactive"  # the cheapest preset that keeps the paper's quality (README: Speed, "Model passes: the presets")
DEFAULT_COMPARE = ["step", "gradient", "grad-cam", "random"]
EXAMPLE_SECONDS = 20.0        # a cached example shows no progress bar: none may take longer than this
HARDWARE = describe_device()  # what the models run on (logged at start-up, shown in the About tab)



def limits() -> dict:
    """What the app refuses before decoding (the library's limits, the upload size from the environment)."""
    return dict(max_side=video.MAX_SIDE, max_bytes=MAX_UPLOAD_MB * 2**20, max_seconds=MAX_SECONDS,
                max_pixels=video.MAX_PIXELS)
