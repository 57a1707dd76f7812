"""A disk cache of explanations: the same request again returns the stored result at once.

An entry is keyed (:meth:`ResultCache.key`) by everything the result depends on:

* the clip's content: the exact frames or clip tensor handed to ``explain``, with their source frame indices,
  times and frame rate (a trimmed clip is another clip; the file's name and path are not part of it, so the same
  upload again under another temporary name is a hit);
* the model: its name, configuration (labels, input grid, normalisation, preprocessing) and a SHA-256 of every
  parameter and buffer (:func:`model_fingerprint`, computed once per model object), and the device kind;
* the method, the preset, every setting (the perturbation methods' fully resolved settings), the target, the
  seed, and the deletion/insertion settings (steps included) when curves are part of the result;
* the code: a hash of the ``attribution/`` and ``model_zoo/`` source files and the versions of torch,
  torchvision, numpy and captum (:func:`code_version`), and the entry format.

Entries are single ``<key>.npz`` files (arrays as npz members, everything else as JSON; never pickle) in
``$VAE_CACHE_DIR`` or ``~/.cache/video-attribution-explorer/results``, at most ``$VAE_CACHE_MB`` megabytes
(default 500; ``0`` turns the cache off) with least-recently-used eviction (a hit refreshes the entry's time).
Writes go to a temporary file in the same folder that is then ``os.replace``-d in, so a reader sees a whole entry
or none, and two processes storing the same key each write a whole one. An entry that cannot be read is a miss
and is removed.

A result served from the cache says so: ``exp.source["cache"] == "hit"`` (and ``exp.source["cache_key"]``);
one just computed and stored has ``exp.source["cache"] == "stored"``. ``summary.json`` carries both.

    python -m attribution cache info      # where, how many entries, how many MB
    python -m attribution cache clear
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

log = logging.getLogger(__name__)

DIR_ENV = "VAE_CACHE_DIR"
SIZE_ENV = "VAE_CACHE_MB"
DEFAULT_MB = 500
FORMAT = 1                    # entry layout; part of every key
SUFFIX = ".npz"
TMP_PREFIX = ".tmp-"          # a writer's unfinished entry: never read, removed once stale
STALE_TMP_SECONDS = 3600      # an unfinished entry older than this is a crashed writer's
ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("attribution", "model_zoo")
PACKAGES = ("torch", "torchvision", "numpy", "captum")
CACHE_FIELDS = ("cache", "cache_key")   # what this module adds to Explanation.source; never stored


# ------------------------------------------------------------------------------------------------ the key
def _sha(*parts) -> str:
    """SHA-256 of byte strings or buffers, each prefixed with its length (no two splits hash alike)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()


def _bytes(a: np.ndarray) -> memoryview:
    """The bytes of an array, without a copy when it is contiguous."""
    return memoryview(np.ascontiguousarray(a)).cast("B")


def _canonical(obj) -> bytes:
    """JSON of ``obj`` with sorted keys; tuples and lists alike, numpy scalars as numbers."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return {"shape": list(o.shape), "dtype": str(o.dtype), "sha256": _sha(_bytes(o))}
        if isinstance(o, torch.Tensor):
            return {"tensor": _tensor_digest(o)}
        if isinstance(o, (Path, torch.device, torch.dtype)):
            return str(o)
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return {type(o).__qualname__: dataclasses.asdict(o)}
        return repr(o)
    return json.dumps(obj, sort_keys=True, default=default, separators=(",", ":")).encode()


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    t = t.detach().reshape(-1).contiguous().cpu()
    return _bytes(t.view(torch.uint8).numpy()) if t.numel() else memoryview(b"")


def _tensor_digest(t: torch.Tensor) -> str:
    return _sha(str(t.dtype).encode(), str(tuple(t.shape)).encode(), _tensor_bytes(t))


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the ``attribution/`` and ``model_zoo/`` Python sources (paths and bytes) and of the versions of
    the packages that compute the maps; computed once per process."""
    import importlib.metadata as md
    parts = []
    for d in CODE_DIRS:
        for p in sorted((ROOT / d).rglob("*.py")):
            parts += [p.relative_to(ROOT).as_posix().encode(), p.read_bytes()]
    for pkg in PACKAGES:
        try:
            parts.append(f"{pkg}=={md.version(pkg)}".encode())
        except md.PackageNotFoundError:
            parts.append(f"{pkg} absent".encode())
    parts.append(f"torch {torch.__version__}".encode())
    return _sha(*parts)


_FINGERPRINTS: "weakref.WeakKeyDictionary[torch.nn.Module, tuple]" = weakref.WeakKeyDictionary()
_FP_LOCK = threading.Lock()


def _tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return ([(f"p:{n}", p) for n, p in model.named_parameters(remove_duplicate=False)]
            + [(f"b:{n}", b) for n, b in model.named_buffers(remove_duplicate=False)])


def _version(t: torch.Tensor) -> int:
    try:
        return t._version
    except RuntimeError:   # a tensor made under torch.inference_mode keeps no version counter
        return -1


def _state_stamp(tensors) -> tuple:
    """Cheap check that no tensor was replaced or changed in place since the hash: storage, version counter."""
    return tuple((n, t.data_ptr(), _version(t), tuple(t.shape), str(t.dtype), str(t.device)) for n, t in tensors)


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of the model's configuration and of every parameter and buffer (BatchNorm statistics and the
    normalisation constants included).

    Computed once per model object (a weak reference, so a ``copy.deepcopy`` is hashed anew) and recomputed
    when a tensor was replaced or changed in place through an autograd-visible operation (``copy_``, ``add_``,
    ``load_state_dict``). A change written through ``.data`` bypasses the version counter: call
    :func:`forget_model` after one.
    """
    tensors = _tensors(model)
    stamp = _state_stamp(tensors)
    with _FP_LOCK:
        hit = _FINGERPRINTS.get(model)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    config = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    for attr in ("name", "labels", "num_frames", "crop_size", "input_size", "layout", "input_key", "gradcam_layer",
                 "sampling_rate", "source_fps", "areas", "token_grid"):
        if hasattr(model, attr):
            config[attr] = getattr(model, attr)
    pre = getattr(model, "preprocess", None)
    if hasattr(pre, "describe"):
        config["preprocess"] = pre.describe()
    inner = getattr(model, "module", None)
    if isinstance(inner, torch.nn.Module):
        config["module"] = f"{type(inner).__module__}.{type(inner).__qualname__}"
    h = hashlib.sha256(_canonical(config))
    with torch.no_grad():
        for name, t in tensors:
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(_tensor_bytes(t))
    digest = h.hexdigest()
    with _FP_LOCK:
        _FINGERPRINTS[model] = (stamp, digest)
    return digest


def forget_model(model: torch.nn.Module) -> None:
    """Drop the stored fingerprint of ``model`` (after changing its weights through ``.data``)."""
    with _FP_LOCK:
        _FINGERPRINTS.pop(model, None)


def clip_digest(clip) -> dict:
    """What identifies a clip: a hash of the exact frames or tensor ``explain`` receives, and where they came from.

    A :class:`attribution.video.Video`: its frames, source indices, times, frame rate, duration and size; uint8
    frames (T,H,W,3): their bytes; a clip tensor: its values; a prepared clip (``explain.prepare_clip``): its
    tensor and its source but the file name. A path is read first (:func:`load_input`).
    """
    if isinstance(clip, (str, os.PathLike)):
        raise TypeError("clip_digest takes frames, a Video or a tensor; read a path with load_input first")
    if isinstance(clip, torch.Tensor):
        return {"kind": "tensor", "shape": list(clip.shape), "sha256": _tensor_digest(clip.float())}
    if isinstance(getattr(clip, "clip", None), torch.Tensor) and isinstance(getattr(clip, "source", None), dict):
        source = {k: v for k, v in clip.source.items() if k != "path"}     # an explain.Prepared clip
        return {"kind": "prepared", "clip": clip_digest(clip.clip), "source": source}
    if hasattr(clip, "frames") and hasattr(clip, "indices"):
        frames = np.asarray(clip.frames)
        return {"kind": "video", "shape": list(frames.shape), "sha256": _sha(_bytes(frames)),
                "indices": [int(i) for i in np.asarray(clip.indices)],
                "times": [float(s) for s in np.asarray(clip.times)], "fps": float(clip.fps),
                "duration": float(clip.duration), "size": [int(v) for v in clip.size],
                "num_source_frames": int(clip.num_source_frames)}
    arr = np.asarray(clip)
    return {"kind": "frames", "shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": _sha(_bytes(arr))}


def load_input(model, clip_or_path, start=None, end=None):
    """A path becomes the :class:`Video` the model sees (``load_clip``: its own frame sampling, [start, end]);
    anything else is returned as it is."""
    if isinstance(clip_or_path, (str, os.PathLike)):
        from attribution.video import load_clip
        return load_clip(clip_or_path, model, start=start, end=end)
    return clip_or_path


def _target(model, target):
    """The class a target names, without running the model (None: the model's top-1 on this clip); a list of
    targets, each."""
    if isinstance(target, (list, tuple)):
        return [_target(model, t) for t in target]
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return int(target)
    if isinstance(target, str):
        name = target.strip()
        if name.isdigit():
            return int(name)
        lower = [str(lbl).lower() for lbl in getattr(model, "labels", [])]
        return lower.index(name.lower()) if name.lower() in lower else name
    return None if target is None else repr(target)


def _perturbation_methods() -> tuple:
    try:
        from attribution.methods import perturbation_methods
        return tuple(perturbation_methods())
    except ImportError:
        from attribution import step
        return tuple(step.METHODS)


def resolved_settings(model, method: str, preset, settings: dict) -> dict:
    """The settings the result is computed with: for the perturbation methods the preset, the model's areas and
    the method's defaults applied (``explain``'s own resolution); for the others the options as given."""
    given = {k: v for k, v in settings.items() if v is not None}
    if method in _perturbation_methods():
        from attribution.errors import ExplorerError
        from attribution.methods.perturbation import make_settings
        try:
            return {"resolved": dataclasses.asdict(make_settings(model, method, preset, given))}
        except (ExplorerError, TypeError, ValueError):  # explain raises the same error with its sentence, and
            pass                                        # nothing is cached: the key need not
    return {"given": given}


def _device(model, device=None) -> str:
    """The device kind the maps are computed on (a GPU by its name: precision and kernels follow it)."""
    dev = torch.device(device if device is not None else getattr(model, "device", "cpu"))
    if dev.type == "cuda" and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return dev.type


def request_key(model, clip, *, method: str = "step", target=None, seed: int = 0, preset="fast",
                contrast=None, curves: dict | None = None, device=None, progress=None, cancel=None, event=None,
                **settings) -> str:
    """The cache key (64 hex digits) of ``explain(model, clip, target=..., method=..., preset=..., seed=...,
    contrast=..., **settings)``, plus the deletion/insertion settings ``curves`` (``deletion_insertion``'s
    keyword arguments, ``steps`` included) when the result carries curves. ``clip``: frames, a ``Video``, a
    tensor or a prepared clip (not a path). ``progress``, ``cancel`` and ``event`` do not change the map and
    are not part of the key."""
    parts = {
        "format": FORMAT, "code": code_version(), "model": model_fingerprint(model),
        "device": _device(model, device), "clip": clip_digest(clip), "method": method, "preset": preset,
        "target": _target(model, target), "contrast": _target(model, contrast), "seed": int(seed),
        "settings": resolved_settings(model, method, preset, settings), "curves": dict(curves) if curves else None,
    }
    return hashlib.sha256(_canonical(parts)).hexdigest()


# ------------------------------------------------------------------------------------------- serialisation
def _allowed_types() -> dict:
    """The classes an entry may hold besides JSON values and arrays: the project's own result types."""
    from attribution import Explanation
    from attribution.metrics import Curves
    return {"Explanation": Explanation, "Curves": Curves}


class _Encoder:
    """Python values -> JSON-ready values, with arrays set aside under numbered names."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self.types = {cls: name for name, cls in _allowed_types().items()}

    def array(self, a: np.ndarray) -> str:
        if a.dtype == object:
            raise TypeError("object arrays are not stored")
        name = f"a{len(self.arrays)}"
        self.arrays[name] = a
        return name

    def __call__(self, v) -> Any:
        if v is None or isinstance(v, (bool, str)) or type(v) in (int, float):
            return v
        if isinstance(v, np.ndarray):
            return {"__array__": self.array(v)}
        if isinstance(v, torch.Tensor):
            return {"__tensor__": self.array(v.detach().cpu().numpy())}
        if isinstance(v, np.generic):
            return {"__scalar__": self.array(np.asarray(v))}
        if isinstance(v, tuple):
            return {"__tuple__": [self(x) for x in v]}
        if isinstance(v, list):
            return [self(x) for x in v]
        if isinstance(v, dict):
            return {"__dict__": [[self(k), self(x)] for k, x in v.items()]}
        if isinstance(v, Path):
            return {"__path__": str(v)}
        if type(v) in self.types:
            return {"__object__": self.types[type(v)],
                    "fields": {f.name: self(getattr(v, f.name)) for f in dataclasses.fields(v)}}
        if isinstance(v, int):             # subclasses (IntEnum, ...) as plain numbers
            return int(v)
        if isinstance(v, float):
            return float(v)
        raise TypeError(f"a cached result cannot hold a {type(v).__name__}")


def _decode(v, arrays, types) -> Any:
    if isinstance(v, list):
        return [_decode(x, arrays, types) for x in v]
    if not isinstance(v, dict):
        return v
    if "__array__" in v:
        return arrays[v["__array__"]]
    if "__tensor__" in v:
        return torch.from_numpy(arrays[v["__tensor__"]])
    if "__scalar__" in v:
        return arrays[v["__scalar__"]][()]
    if "__tuple__" in v:
        return tuple(_decode(x, arrays, types) for x in v["__tuple__"])
    if "__dict__" in v:
        return {_decode(k, arrays, types): _decode(x, arrays, types) for k, x in v["__dict__"]}
    if "__path__" in v:
        return Path(v["__path__"])
    if "__object__" in v:
        cls = types[v["__object__"]]          # KeyError for anything else: the entry is refused
        return cls(**{k: _decode(x, arrays, types) for k, x in v["fields"].items()})
    raise ValueError("unknown value in a cache entry")


def _each(result) -> list:
    return list(result) if isinstance(result, list) else [result]


def dumps(result, key: str = "") -> bytes:
    """An Explanation (or a list of them, as ``explain`` gives for several targets) as the bytes of one npz file
    (no pickle): their arrays, and a JSON member for the rest."""
    enc = _Encoder()
    clean = [dataclasses.replace(e, source={k: v for k, v in e.source.items() if k not in CACHE_FIELDS})
             for e in _each(result)]
    meta = {"format": FORMAT, "key": key, "created": time.time(),
            "value": enc(clean if isinstance(result, list) else clean[0])}
    arrays = dict(enc.arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def loads(data: bytes, key: str | None = None):
    """The Explanation(s) of :func:`dumps`; an error when the bytes are not a whole entry (of ``key``)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    if meta.get("format") != FORMAT or (key is not None and meta.get("key") != key):
        raise ValueError("the entry belongs to another key or format")
    types = _allowed_types()
    value = _decode(meta["value"], arrays, types)
    if not _each(value) or not all(type(e) is types["Explanation"] for e in _each(value)):
        raise ValueError("the entry holds no explanation")
    return value


# ---------------------------------------------------------------------------------------------- the cache
def default_directory() -> Path:
    """``$VAE_CACHE_DIR``, or ``~/.cache/video-attribution-explorer/results``."""
    env = os.environ.get(DIR_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "video-attribution-explorer" / "results"


def default_max_bytes() -> int:
    """``$VAE_CACHE_MB`` megabytes (``0``: no cache), default :data:`DEFAULT_MB`."""
    raw = os.environ.get(SIZE_ENV, "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_MB
    except ValueError:
        from attribution.errors import InputError
        raise InputError(f"{SIZE_ENV} must be a number of megabytes, not {raw!r}.") from None
    return max(0, int(mb * 2 ** 20))


_CLOCK_LOCK = threading.Lock()
_LAST_NS = [0]


def _now_ns() -> int:
    """Wall-clock ns, strictly increasing within the process (the LRU order of two quick touches is kept)."""
    with _CLOCK_LOCK:
        _LAST_NS[0] = max(time.time_ns(), _LAST_NS[0] + 1000)
        return _LAST_NS[0]


class ResultCache:
    """Explanations on disk, keyed by :func:`request_key`, bounded by size with least-recently-used eviction.

    Args:
        directory: where the entries live (default :func:`default_directory`); created on the first write.
        max_bytes: size bound (default :func:`default_max_bytes`); 0 turns the cache off (every get misses,
            put stores nothing).
    """

    def __init__(self, directory=None, max_bytes: int | None = None):
        self.directory = Path(directory).expanduser() if directory is not None else default_directory()
        self.max_bytes = default_max_bytes() if max_bytes is None else max(0, int(max_bytes))
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def key(self, model, clip, **request) -> str:
        """:func:`request_key` (the same keyword arguments as ``explain``, and ``curves``)."""
        return request_key(model, clip, **request)

    def path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"not a cache key: {key!r}")
        return self.directory / f"{key}{SUFFIX}"

    def get(self, key: str):
        """The stored Explanation (or list) of ``key`` marked ``source["cache"] = "hit"``, or None. An unreadable
        entry is removed and counts as a miss; a hit makes the entry the most recently used."""
        if not self.enabled:
            return None
        p = self.path(key)
        try:
            data = p.read_bytes()
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            self.misses += 1
            return None
        try:
            exp = loads(data, key)
        except Exception as e:  # truncated, damaged or foreign: never a result
            log.warning("result cache: removing unreadable entry %s (%s)", p.name, type(e).__name__)
            self._remove(p)
            self.misses += 1
            return None
        self._touch(p)
        self.hits += 1
        for e in _each(exp):
            e.source = dict(e.source, cache="hit", cache_key=key)
        return exp

    def put(self, key: str, exp) -> Path | None:
        """Store ``exp`` (an Explanation or a list of them) under ``key`` (atomically) and evict the least recently
        used entries beyond the bound. Marks ``exp.source["cache"] = "stored"``. Returns the entry's path, or None
        when nothing was stored (cache off, the entry alone larger than the bound, a value that cannot be stored,
        a full disk)."""
        if not self.enabled:
            return None
        try:
            data = dumps(exp, key)
        except (TypeError, AttributeError) as e:   # not an Explanation, or a field of a type it cannot hold
            log.warning("result cache: not storing %s (%s)", key[:12], e)
            return None
        if len(data) > self.max_bytes:
            return None
        p = self.path(key)
        tmp = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f"{TMP_PREFIX}{key[:16]}-", suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
            tmp = None
        except OSError as e:  # a full disk or a read-only folder costs the cache, never the request
            log.warning("result cache: could not store %s (%s)", key[:12], e)
            return None
        finally:
            if tmp is not None:
                self._remove(Path(tmp))
        self._touch(p)
        for e in _each(exp):
            e.source = dict(e.source, cache="stored", cache_key=key)
        self.evict()
        return p

    def get_or_compute(self, key: str, compute: Callable[[], Any]):
        """The stored result of ``key``, or ``compute()``'s, stored (for a caller with its own pipeline)."""
        hit = self.get(key)
        if hit is not None:
            return hit
        result = compute()
        self.put(key, result)
        return result

    def entries(self) -> list[tuple[Path, int, int]]:
        """(path, bytes, last use ns) of every whole entry, least recently used first."""
        out = []
        try:
            items = list(os.scandir(self.directory))
        except FileNotFoundError:
            return out
        for e in items:
            if e.name.endswith(SUFFIX) and not e.name.startswith(TMP_PREFIX):
                try:
                    st = e.stat()
                except FileNotFoundError:   # evicted by another process meanwhile
                    continue
                out.append((Path(e.path), st.st_size, st.st_mtime_ns))
        return sorted(out, key=lambda x: x[2])

    def evict(self, max_bytes: int | None = None) -> int:
        """Remove the least recently used entries until the rest fit in ``max_bytes`` (default the bound), and
        the unfinished writes of crashed writers; returns how many entries were removed."""
        bound = self.max_bytes if max_bytes is None else max_bytes
        self._remove_stale_tmp()
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        removed = 0
        for p, size, _ in entries:
            if total <= bound:
                break
            self._remove(p)
            total -= size
            removed += 1
        return removed

    def clear(self) -> int:
        """Remove every entry (and unfinished write); returns how many entries there were."""
        n = len(self.entries())
        self.evict(0)
        self._remove_stale_tmp(max_age=0)
        return n

    def info(self) -> dict:
        entries = self.entries()
        return {"directory": str(self.directory), "entries": len(entries),
                "megabytes": round(sum(s for _, s, _ in entries) / 2 ** 20, 3),
                "max_megabytes": round(self.max_bytes / 2 ** 20, 3), "enabled": self.enabled,
                "hits": self.hits, "misses": self.misses}

    # ------------------------------------------------------------------------------------------- helpers
    @staticmethod
    def _remove(p: Path) -> None:
        try:
            p.unlink()
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            pass

    @staticmethod
    def _touch(p: Path) -> None:
        t = _now_ns()
        try:
            os.utime(p, ns=(t, t))
        except OSError:
            pass

    def _remove_stale_tmp(self, max_age: float = STALE_TMP_SECONDS) -> None:
        try:
            items = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        now = time.time()
        for e in items:
            if e.name.startswith(TMP_PREFIX):
                try:
                    if now - e.stat().st_mtime >= max_age:
                        self._remove(Path(e.path))
                except FileNotFoundError:
                    pass


# ------------------------------------------------------------------------------------------ one call
def cached_explain(cache: ResultCache | None, model, clip_or_path, *, curves: bool | dict = False, start=None,
                   end=None, **kwargs):
    """``attribution.explain(model, clip, **kwargs)`` through ``cache`` (:func:`attribution.pipeline.run`): the
    stored result when there is one, else computed, given curves when asked, and stored.

    ``curves``: False; True (deletion/insertion with the random baseline at the paper's steps, as the CLI's
    ``--curves``); or ``{"steps": n}`` (and ``random_baseline``). A path is read once with the model's frame
    sampling over [start, end]. ``cache=None`` just computes. Several targets give a list, stored as one entry.
    """
    from attribution import pipeline
    opts = curves if isinstance(curves, dict) else {}
    clip = load_input(model, clip_or_path, start=start, end=end)
    result = pipeline.run(model, clip, kwargs.pop("method", "step"),
                          curve_steps=opts.get("steps", pipeline.PAPER_CURVE_STEPS) if curves else 0,
                          random_baseline=opts.get("random_baseline", True), cache=cache, **kwargs)
    path = str(clip_or_path) if clip is not clip_or_path else None
    for exp in _each(result):
        _set_path(exp, path)
    return result


def _set_path(exp, path: str | None) -> None:
    """The request's own file name in ``source`` (a hit may have been stored from another name)."""
    source = {k: v for k, v in exp.source.items() if k != "path"}
    exp.source = {"path": path, **source} if path is not None else source


# ----------------------------------------------------------------------------------------------- command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``clear`` or ``info``, and ``--dir`` (for ``python -m attribution cache``)."""
    parser.add_argument("action", choices=["info", "clear"], help="info: where, entries, size; clear: remove all")
    parser.add_argument("--dir", default=None, help=f"cache folder (default ${DIR_ENV} or {default_directory()})")


def run_cli(args) -> int:
    cache = ResultCache(args.dir)
    if args.action == "clear":
        print(json.dumps({"directory": str(cache.directory), "removed": cache.clear()}))
    else:
        print(json.dumps(cache.info()))
    return 0
