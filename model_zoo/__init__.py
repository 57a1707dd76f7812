"""Model registry: one table of entries and one ``load_model`` (as timm's ``create_model``).

Each entry is data: family, builder, frames, sampling rate, crop, mean/std, layout, Grad-CAM layer, labels,
weights source and licence. Adding a model is adding an entry. ``load_model`` wraps whatever the builder
returns in :class:`VideoClassifier`, puts it in eval mode with frozen parameters, and caches it: at most
``VAE_MODEL_CACHE`` models (default 2), the least recently used moved off the GPU and dropped first.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import socket
import threading
import urllib.parse
from typing import Callable, Sequence

import torch

from attribution.common import freeze, resolve_device
from attribution.errors import ModelError
from model_zoo.classifier import Preprocess, TokenGrid, VideoClassifier

__all__ = ["ModelEntry", "VideoClassifier", "TokenGrid", "Preprocess", "register", "list_models", "get_entry",
           "load_model", "clear_cache", "cached_models", "ModelError"]

log = logging.getLogger(__name__)
DEFAULT_MODEL = "toy"  # the offline default of the app, the CLI and the tests
CACHE_SIZE = 2   # models kept loaded at once (VAE_MODEL_CACHE); a large one holds GBs of GPU memory


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str                         # "toy" | "pytorchvideo" | "huggingface" | ...
    build: Callable[..., torch.nn.Module]  # build(entry, pretrained) -> module (normalised clip -> logits)
    num_frames: int
    crop_size: int
    mean: Sequence[float]
    std: Sequence[float]
    labels: Sequence[str] | Callable[[torch.nn.Module], Sequence[str]]
    layout: str = "BCTHW"
    resize_side: int | None = None
    sampling_rate: int | None = None    # frame stride of the training recipe at 30 fps; None = uniform
    input_key: str | None = None
    gradcam_layer: str | None = None
    pack: Callable | None = None        # e.g. SlowFast's two pathways
    token_grid: TokenGrid | None = None  # transformers: how gradcam_layer's tokens map to (T',H',W')
    areas: Sequence[float] | None = None  # default mask areas for this model's evidence (None: paper's)
    preprocess: Preprocess | None = None  # resize / crop / filter of its recipe (None: short side + square crop)
    weights: str = ""                   # where pretrained weights come from
    trained_on: str = ""
    licence: str = ""
    offline: bool = False               # pretrained weights ship with the repo (no network needed)
    description: str = ""


_REGISTRY: dict[str, ModelEntry] = {}
_CACHE: "collections.OrderedDict[tuple, VideoClassifier]" = collections.OrderedDict()  # oldest use first
_LOCK = threading.Lock()


def register(entry: ModelEntry) -> ModelEntry:
    _REGISTRY[entry.name] = entry
    return entry


def list_models() -> list[str]:
    """Registry names: the offline default (``toy``) first, then the other offline ones, then by family."""
    _load_families()
    return sorted(_REGISTRY, key=lambda n: (n != DEFAULT_MODEL, not _REGISTRY[n].offline, _REGISTRY[n].family, n))


def get_entry(name: str) -> ModelEntry:
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"Unknown model {name!r}; choose one of {', '.join(list_models())}, "
                         "or give a Hugging Face folder / repo id or a TorchScript file.") from None


def default_device() -> torch.device:
    return resolve_device(None)


def _freeze(model: VideoClassifier, device) -> VideoClassifier:
    return freeze(model).to(device)


def wrap(entry: ModelEntry, module: torch.nn.Module) -> VideoClassifier:
    if isinstance(module, VideoClassifier):  # the builder read the preprocessing from the checkpoint itself
        return module
    labels = entry.labels(module) if callable(entry.labels) else entry.labels
    return VideoClassifier(
        module, name=entry.name, labels=labels, num_frames=entry.num_frames, crop_size=entry.crop_size,
        mean=entry.mean, std=entry.std, layout=entry.layout, input_key=entry.input_key,
        gradcam_layer=entry.gradcam_layer, resize_side=entry.resize_side, sampling_rate=entry.sampling_rate,
        areas=entry.areas, pack=entry.pack, token_grid=entry.token_grid, preprocess=entry.preprocess,
        info={"family": entry.family, "weights": entry.weights, "licence": entry.licence,
              "trained_on": entry.trained_on})


def cache_size() -> int:
    """How many models the cache holds: ``VAE_MODEL_CACHE`` (at least 1), default ``CACHE_SIZE``."""
    raw = os.environ.get("VAE_MODEL_CACHE", "").strip()
    try:
        return max(1, int(raw)) if raw else CACHE_SIZE
    except ValueError:
        raise ModelError(f"VAE_MODEL_CACHE must be a whole number of models, not {raw!r}.") from None


def load_model(name_or_path: str, pretrained: bool = True, device=None) -> VideoClassifier:
    """Build (or fetch from the cache) a :class:`VideoClassifier` in eval mode with frozen parameters.

    ``name_or_path`` is a registry name (see :func:`list_models`), or a local checkpoint / Hugging Face id
    handled by the user-model loaders. Raises :class:`ModelError` with a sentence for people (and
    :class:`InputError` for a device this machine does not have).
    """
    _load_families()
    device = resolve_device(device)
    key = (str(name_or_path), bool(pretrained), str(device))
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        _evict(cache_size() - 1)   # make room first: the new model may need the memory the old one holds
        if name_or_path in _REGISTRY:
            entry = _REGISTRY[name_or_path]
            try:
                module = entry.build(entry, pretrained)
            except ModelError:
                raise
            except (OSError, RuntimeError, ConnectionError) as e:
                raise ModelError(_network_hint(entry, e)) from e
            model = wrap(entry, module)
        else:
            model = _load_user_model(str(name_or_path))
        _CACHE[key] = _freeze(model, device)
        return _CACHE[key]


def _evict(keep: int) -> None:
    """Drop the least recently used models until at most ``keep`` remain, freeing their GPU memory.

    A caller still holding an evicted model keeps a working model on the CPU.
    """
    freed_cuda = False
    while len(_CACHE) > max(0, keep):
        (name, _, dev), model = _CACHE.popitem(last=False)
        if torch.device(dev).type != "cpu":
            model.to("cpu")
            freed_cuda = freed_cuda or torch.device(dev).type == "cuda"
        log.info("model cache: evicted %s (%s)", name, dev)
    if freed_cuda and torch.cuda.is_available():
        torch.cuda.empty_cache()


def cached_models() -> list[tuple[str, bool, str]]:
    """(name, pretrained, device) of the cached models, least recently used first."""
    with _LOCK:
        return list(_CACHE)


def clear_cache() -> None:
    with _LOCK:
        _evict(0)


def _network_hint(entry: ModelEntry, err: Exception) -> str:
    return (f"Could not load the pretrained weights of {entry.name!r} ({type(err).__name__}): this model needs a "
            f"network connection to download them from {entry.weights or 'its hub'}, or a local copy.")


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether ``url``'s host accepts a TCP connection within ``timeout`` s.

    Download code without a timeout can hang for minutes on a firewalled machine (and huggingface_hub
    retries for about 25 s when DNS fails), so loaders ask this first and fail fast with a ModelError.
    """
    u = urllib.parse.urlsplit(url)
    try:
        socket.create_connection((u.hostname, u.port or (443 if u.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except (OSError, ValueError):
        return False


def _load_user_model(path: str) -> VideoClassifier:
    """Users' own models: a Hugging Face folder or repo id, or a TorchScript / torch.save file with a sidecar."""
    from model_zoo import user_models  # imported lazily: transformers is slow to import
    return user_models.load(path)


_FAMILIES_LOADED = False


def _load_families() -> None:
    """Import the family modules, each of which registers its entries (lazily, once)."""
    global _FAMILIES_LOADED
    if _FAMILIES_LOADED:
        return
    _FAMILIES_LOADED = True
    import importlib
    for mod in ("model_zoo.toy", "model_zoo.pytorchvideo_models", "model_zoo.hf_models", "model_zoo.groundtruth_models"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a family's dependency is missing: its entries are simply absent
                if os.environ.get("VAE_STRICT_REGISTRY"):
                    raise
