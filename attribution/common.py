"""Helpers every part of the engine shares, written once (as TorchRay keeps them in ``common``).

A leaf module: it imports only torch, numpy and :mod:`attribution.errors`, so the model zoo may use it (the
:class:`TokenGrid` a model declares, :func:`freeze`) without importing the attribution engine.

* :func:`freeze` / :func:`frozen`: eval mode and no parameter gradients, for good or for the duration.
* :func:`should_cancel` / :func:`check_cancel`: the ``cancel`` argument every long loop takes (a
  ``threading.Event`` or a callable).
* :func:`batch_for_bytes` and :func:`halve_on_oom`: how many perturbed clips one model call takes, and what
  happens when the accelerator runs out of memory.
* :func:`resolve_device`: a device name checked against the machine.
* :func:`positive_int`, :func:`check_output_folder` and :func:`writing_to`: what the command lines
  (``attribution.cli``, the sanity check) check before any work starts, and their failed writes.
* :func:`check_clip` and :func:`saliency_array`: the two shapes that travel between modules, checked in one
  place.
* :class:`TokenGrid`: where a transformer layer's tokens lie in space-time (Grad-CAM on transformers).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from attribution.errors import Cancelled, InputError

__all__ = ["freeze", "frozen", "should_cancel", "check_cancel", "batch_for_bytes", "halve_on_oom", "check_clip",
           "check_frames", "saliency_array", "TokenGrid", "guess_token_grid"]


# ------------------------------------------------------------------------------------------------ freezing
def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and no parameter gradients, for good (what a loaded model is: the engine never trains it)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@contextlib.contextmanager
def frozen(model: torch.nn.Module):
    """Eval mode and no parameter gradients for the duration; the caller's flags are restored after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    training = model.training
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        model.train(training)


# ------------------------------------------------------------------------------------------- cancellation
def should_cancel(cancel) -> bool:
    """Whether ``cancel`` (None, a ``threading.Event`` or a callable returning a bool) asks to stop."""
    if cancel is None:
        return False
    return bool(cancel.is_set() if hasattr(cancel, "is_set") else cancel())


def check_cancel(cancel, message: str = "The explanation was cancelled.") -> None:
    """Raise :class:`attribution.errors.Cancelled` when ``cancel`` is set."""
    if should_cancel(cancel):
        raise Cancelled(message)


def cancel_aware(progress: Callable | None, cancel) -> Callable | None:
    """A progress callback that raises :class:`Cancelled` once ``cancel`` is set: for the loops that take only a
    progress callback (the deletion / insertion curves)."""
    if cancel is None:
        return progress

    def update(*args, **kwargs):
        check_cancel(cancel, "The explanation was stopped.")
        if progress is not None:
            progress(*args, **kwargs)
    return update


# ---------------------------------------------------------------------------------------- batches, memory
def batch_for_bytes(clip, requested: int | None, budget: int, cap: int = 256) -> int:
    """Clips per model call: ``requested`` when given, else as many fp32 copies of ``clip`` (a (1,3,T,H,W) tensor,
    or its size in bytes) as fit in ``budget`` bytes (activations scale with the input), from 1 to ``cap``."""
    if requested:
        return max(1, int(requested))
    size = clip[0].numel() * 4 if isinstance(clip, torch.Tensor) else int(clip)
    return max(1, min(int(cap), int(budget // size)))


def halve_on_oom(batch: int, device) -> int:
    """The batch to retry with after ``torch.OutOfMemoryError`` (accelerator memory): half of it, the cache
    emptied. Re-raises the error when the batch is 1 already (call it inside the ``except`` block)."""
    if batch <= 1:
        raise  # noqa: PLE0704 - re-raises the OutOfMemoryError being handled
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    return max(1, batch // 2)


# ------------------------------------------------------------------------------------------------ devices
DEVICE_HINT = "use cpu, cuda or cuda:N (or leave it out to use the GPU when there is one)"


def resolve_device(device=None) -> torch.device:
    """``device`` (a name such as ``cpu``, ``cuda``, ``cuda:1``, ``mps``, or a ``torch.device``) checked against
    this machine; None picks the GPU when there is one. A name that is not a compute device here (unknown,
    ``meta``, a GPU the machine lacks, an XPU torch was not built for) raises :class:`InputError` with one
    sentence, before any model is built on it."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"Unknown device {str(device)!r}: {DEVICE_HINT}.") from None
    available = {"cpu": lambda: True, "cuda": torch.cuda.is_available,
                 "mps": torch.backends.mps.is_available,
                 "xpu": lambda: hasattr(torch, "xpu") and torch.xpu.is_available()}
    if dev.type not in available:
        raise InputError(f"{str(device)!r} is not a device the engine runs on: {DEVICE_HINT}.")
    if not available[dev.type]():
        raise InputError(f"The device {str(device)!r} is not available on this machine: {DEVICE_HINT}.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"There is no GPU {dev.index}: this machine has {torch.cuda.device_count()} "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}).")
    return dev


# -------------------------------------------------------------------------------------------------- shapes
def check_clip(clip, device=None) -> torch.Tensor:
    """A clip as every method takes it: float (1,3,T,H,W) in [0,1], detached, on ``device`` (default: where it
    is). Raises InputError with the shape it got."""
    if not isinstance(clip, torch.Tensor) or clip.dim() != 5 or clip.shape[:2] != (1, 3):
        got = tuple(clip.shape) if isinstance(clip, torch.Tensor) else type(clip).__name__
        raise InputError(f"clip must be a tensor (1,3,T,H,W) in [0,1]; got {got}.")
    clip = clip.detach().float()
    return clip.to(device) if device is not None else clip


def check_frames(frames) -> np.ndarray:
    """Video frames as uint8 (T,H,W,3), from uint8 or float-in-[0,1] input; InputError on any other shape."""
    a = np.asarray(frames)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise InputError(f"Frames must be an array of shape (T, H, W, 3); got shape {a.shape}.")
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(a, 0, 255).astype(np.uint8)


def saliency_array(saliency, T: int, H: int | None = None, W: int | None = None) -> np.ndarray:
    """A saliency map as (T,H,W) float64 numpy, checked: finite, T frames; a map on a coarser grid is upsampled
    bilinearly per frame to (H, W) when they are given (as the authors' metrics do)."""
    s = saliency.detach().float().cpu().numpy() if isinstance(saliency, torch.Tensor) else np.asarray(saliency)
    s = np.squeeze(s.astype(np.float64))
    if s.ndim == 2 and T == 1:
        s = s[None]
    if s.ndim != 3 or s.shape[0] != T:
        raise InputError(f"The saliency map must be (T,H,W) with T={T}; got shape {np.shape(saliency)}.")
    if not np.all(np.isfinite(s)):
        raise InputError("The saliency map holds NaN or infinite values.")
    if H is not None and W is not None and s.shape[1:] != (H, W):
        s = F.interpolate(torch.from_numpy(s)[:, None], size=(H, W), mode="bilinear",
                          align_corners=False)[:, 0].numpy()
    return s


# ---------------------------------------------------------------------------------------------- token grid
@dataclasses.dataclass(frozen=True)
class TokenGrid:
    """Where a transformer layer's tokens lie in space-time, so Grad-CAM can treat them as a feature map.

    A layer output ``(B, prefix + t*h*w, C)`` (or a tuple whose first item is that) holds ``prefix`` leading
    tokens that belong to no position (CLS), then the grid flattened in ``order`` (``"thw"``: time slowest,
    as a Conv3d patch embedding flattens; TimeSformer uses ``"hwt"``).
    """
    t: int
    h: int
    w: int
    prefix: int = 0
    order: str = "thw"

    def reshape(self, tokens) -> torch.Tensor:
        """tokens (B, prefix + t*h*w, C) -> feature map (B, C, t, h, w)."""
        if isinstance(tokens, (tuple, list)):
            tokens = tokens[0]
        b, n, c = tokens.shape
        if n != self.prefix + self.t * self.h * self.w:
            raise ValueError(f"expected {self.prefix} + {self.t}*{self.h}*{self.w} tokens, got {n}")
        size = {"t": self.t, "h": self.h, "w": self.w}
        x = tokens[:, self.prefix:].reshape(b, *(size[d] for d in self.order), c)
        return x.permute(0, 4, *(1 + self.order.index(d) for d in "thw"))


def guess_token_grid(n_tokens: int, frames: int, crop: int | None = None, config=None) -> TokenGrid | None:
    """The grid ``n_tokens`` tokens of a model that declares none most likely form, after 0 or 1 leading CLS
    token: first from a Hugging Face style ``config`` (T' = frames / tubelet_size, H' = W' = crop / patch_size),
    then a square grid of T' = frames, frames / 2 (two-frame tubelets) or 1. None when none fits."""
    import math

    def first(v):
        return int(v[0] if isinstance(v, (tuple, list)) else v)
    candidates = []
    patch, tubelet = getattr(config, "patch_size", None), getattr(config, "tubelet_size", None)
    if patch and crop:
        g = int(crop) // first(patch)
        candidates.append((frames // first(tubelet) if tubelet else frames, g))
    for t in sorted({frames, frames // 2, 1}):
        candidates.append((t, math.isqrt(max(0, n_tokens // max(t, 1)))))
    for t, g in candidates:
        prefix = n_tokens - t * g * g
        if t > 0 and g > 0 and prefix in (0, 1):
            return TokenGrid(t, g, g, prefix=prefix)
    return None


# ----------------------------------------------------------------------------------------- command lines
def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a count of steps, classes, frames, stages, masks)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def check_output_folder(path) -> Path:
    """The folder a command will write to, checked before any work starts (so a bad --out costs nothing) and
    not created here (bad input leaves nothing behind): :class:`InputError` when it is empty, a file, lies
    inside a file, or its nearest existing folder cannot be written."""
    if not str(path).strip():
        raise InputError("--out must name a folder (it is created when missing).")
    folder = Path(path)
    try:
        if folder.exists() and not folder.is_dir():
            raise InputError(f"--out {str(folder)!r} is a file: give a folder (it is created when missing).")
        parent = folder.absolute()
        while not parent.exists():
            parent = parent.parent
    except OSError as e:   # a folder on the way that this user may not enter
        raise InputError(f"Cannot reach the output folder {str(folder)!r}: {e.strerror or e}.") from None
    if not parent.is_dir():
        raise InputError(f"--out {str(folder)!r} lies inside the file {str(parent)!r}: give a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"Cannot write to {str(parent)!r} (no permission): give another --out.")
    return folder


@contextlib.contextmanager
def writing_to(folder):
    """Around the writing of a command's results: a failed write (disk full, permissions changed since
    :func:`check_output_folder`) becomes one sentence instead of a traceback."""
    try:
        yield
    except OSError as e:
        raise InputError(f"Cannot write the results to {str(folder)!r}: {e.strerror or e}.") from None
