"""Which hardware the engine runs on, in words: device name, compute capability and the precision it gets.

The app logs this at start-up and shows it in its About tab; a CUDA GPU that is present but unusable by this
torch build (a driver older than the build needs, a missing device node) is named in one sentence instead of
the engine quietly running on the CPU.
"""
from __future__ import annotations

import glob
import platform
import shutil
import warnings

import torch

from attribution.step import describe_precision


def _gpu_present() -> bool:
    """Whether the machine shows signs of an NVIDIA GPU (a device node or the driver's tool)."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or shutil.which("nvidia-smi") is not None


def describe_device(device=None, *, gpu_present=_gpu_present) -> dict:
    """{"device", "name", "capability", "precision", "threads", "problem"} for ``device`` (default: the one
    ``load_model`` picks). ``problem`` is a sentence when a GPU is present but torch cannot use it, else None.
    ``gpu_present`` stands in for the machine check (tests)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    device = torch.device(device if device is not None else ("cuda" if available else "cpu"))
    info = {"device": str(device), "name": None, "capability": None, "threads": torch.get_num_threads(),
            "problem": None}
    if device.type == "cuda" and available:
        info["name"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    else:
        info["name"] = platform.processor() or platform.machine() or "CPU"
        reason = next((str(w.message) for w in caught if "CUDA" in str(w.message)), None)
        if device.type == "cpu" and (reason or gpu_present()):
            why = reason.split(".")[0].removeprefix("CUDA initialization: ") if reason else \
                f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}) finds no usable CUDA device"
            info["problem"] = (f"A GPU is present but torch cannot use it ({why}), so everything runs on the CPU: "
                               "install a driver that matches torch's CUDA version, or a matching torch build.")
    info["precision"] = describe_precision(device) if device.type != "cuda" or available else "fp32"
    return info


def device_sentence(info: dict) -> str:
    """One line for logs and the About tab."""
    if info["device"].startswith("cuda"):
        text = (f"GPU {info['name']} (compute capability {info['capability']}), model arithmetic "
                f"{info['precision']} by default")
    else:
        text = f"CPU ({info['name']}, {info['threads']} threads), model arithmetic {info['precision']}"
    return text + (f". {info['problem']}" if info["problem"] else ".")

