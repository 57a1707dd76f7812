"""What a request will cost before it runs: seconds per model pass, measured once per device, and estimates.

The engine layer: no Gradio, no model zoo; callers pass models they loaded.

* :func:`measure_passes` times the model's forward (no gradients) and forward+backward to the input (the pass
  every STEP iteration and every gradient method makes) at its input size, at two batch sizes, so that a pass
  of ``n`` clips costs ``fixed + n · per_clip`` seconds (a straight line through the two medians).
* :func:`engine_costs` times the optimisation loop itself around a trivial model (mask generator, blur
  pyramid, losses, optimiser step): seconds per *mask pixel* per iteration, one figure per preset, since
  ``fast`` evaluates the smooth-max at 2x2 points per cell and ``paper`` at every pixel (``step.PRESETS``).
  README (Speed) measured this overhead at 1.7-2.2x the bare pass on the 16x64x64 toy and 1.0-1.15x on X3D-XS
  and VideoMAE-B: it is a per-pixel cost, small next to a real model and large next to the toy's.
* Both are cached on disk (:func:`cache_path`), keyed by model, input, precision, the device (GPU name or CPU
  model and torch's thread count) and the torch version; :func:`pass_costs` returns them, measuring once.
* :func:`estimate` adds up a request: a perturbation method (``step``, ``3d-ep``, ``2d-ep``) runs its
  expected iterations, each one batched forward+backward of its A masks plus the engine's per-pixel work;
  a comparison method makes the passes ``attribution.methods.baselines`` makes with its defaults; the deletion and
  insertion curves make the batched forwards of ``metrics.deletion_insertion`` (twice with the random map).
* :func:`refusal` turns an estimate above :func:`default_limit` into one sentence naming cheaper choices.

The figures are as noisy as the machine: on a shared CPU a pass can take twice as long from one minute to
the next. ``benchmarks/cost.py`` reports predicted ÷ actual.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

import torch

from attribution import step as step_mod
from attribution.common import batch_for_bytes, frozen

CACHE_VERSION = 2   # 2: the engine timed with L_K on (measure_engine); older entries are measured again
CACHE_ENV = "VAE_COST_CACHE"
LIMIT_ENV = "VAE_MAX_REQUEST_SECONDS"
# Default limits by hardware kind (seconds). A CPU Space has one worker: a request longer than 10 minutes holds
# everyone else's. On the 2-core machine that admits the toy with either preset and X3D-XS with the fast one
# (about 2-10 min with curves) and refuses X3D-XS with the paper preset (1200 iterations x 4 masks, about 18 min;
# benchmarks/results/cost_cpu.json).
# A dedicated GPU runs the same request in seconds, so 10 minutes there is only the paper preset on the largest
# models. ZeroGPU lends a GPU per call for a bounded duration (60 s by default, a few minutes at most), so
# longer requests would be cut off midway.
DEFAULT_LIMITS = {"cpu": 600.0, "gpu": 600.0, "zerogpu": 120.0}

BATCHES = (1, 4)           # batch sizes measured; a pass of n clips is fitted as fixed + n * per_clip
REPEATS = 3                # timed repetitions per batch size (median), after one warm-up
ENGINE_SHAPE = (16, 64, 64)  # (T, H, W) of the engine measurement: the toy's input
ENGINE_AREAS = (0.05, 0.10)
ENGINE_ITERATIONS = 6      # timed iterations of the engine measurement (after the first, which compiles)
# Documented fallback when the engine has not been measured on this device: seconds per mask pixel per
# iteration on the 2-core CPU of README (Speed: toy fast 0.021 - 0.010 s and paper 0.030 - 0.010 s for one
# 16x64x64 mask), i.e. about 1.7e-7 and 3.1e-7. A GPU is far cheaper; there the model's passes dominate anyway.
FALLBACK_PER_PIXEL = {"fast": 1.7e-7, "paper": 3.1e-7}   # other presets: the larger (paper's) until measured
FALLBACK_COMPILE_SECONDS = 15.0   # one-off torch.compile of the smooth-max on a CPU (step.COMPILE_MIN_ITERATIONS)

_FILE_LOCK = threading.Lock()
_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_LOCK = threading.Lock()
_MEMORY: dict[str, dict] = {}   # what this process measured or read, by key


# ----------------------------------------------------------------------------------------- the device
def _device(model=None, device=None) -> torch.device:
    if device is not None:
        return torch.device(device)
    d = getattr(model, "device", None)
    if isinstance(d, torch.device):
        return d
    p = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return p.device if p is not None else torch.device("cpu")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_kind(device=None) -> str:
    """``cpu``, ``gpu`` or ``zerogpu`` (a Hugging Face ZeroGPU Space: ``SPACES_ZERO_GPU`` is set)."""
    if os.environ.get("SPACES_ZERO_GPU"):
        return "zerogpu"
    d = torch.device(device) if device is not None else torch.device("cpu")
    return "cpu" if d.type == "cpu" else "gpu"


def describe_device(device=None) -> str:
    """What the timings depend on: the GPU's name and capability, or the CPU model and torch's thread count."""
    d = torch.device(device) if device is not None else torch.device("cpu")
    if d.type == "cuda":
        idx = d.index if d.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(idx)
        return f"cuda {torch.cuda.get_device_name(idx)} sm{major}{minor}"
    if d.type == "cpu":
        return f"cpu {_cpu_model()} x{torch.get_num_threads()} threads"
    return d.type


def _input_shape(model) -> tuple[int, int, int]:
    size = getattr(model, "input_size", None)
    if size is None:
        crop = int(model.crop_size)
        size = (crop, crop)
    return int(model.num_frames), int(size[0]), int(size[1])


def _model_name(model) -> str:
    return str(getattr(model, "name", None) or type(model).__name__)


def cache_key(model_name: str, device=None, shape: Sequence[int] | None = None, precision: str = "") -> str:
    """Key of one cache entry: model, input (T,H,W), precision, device description and torch version."""
    parts = [model_name]
    if shape is not None:
        parts.append("x".join(str(int(s)) for s in shape))
    if precision:
        parts.append(precision)
    parts += [describe_device(device), f"torch {torch.__version__}"]
    return " | ".join(parts)


# ----------------------------------------------------------------------------------------------- the cache
def cache_path() -> Path:
    """``$VAE_COST_CACHE``, or ``~/.cache/video-attribution-explorer/cost.json``."""
    raw = os.environ.get(CACHE_ENV, "").strip()
    if raw:
        return Path(raw).expanduser()
    return Path.home() / ".cache" / "video-attribution-explorer" / "cost.json"


def _read_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _write_entry(key: str, value: dict) -> None:
    """Merge one entry into the cache file: read, update, write a temporary file, ``os.replace`` it in."""
    path = cache_path()
    with _FILE_LOCK:
        entries = _read_file(path)
        entries[key] = value
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".cost-", suffix=".json", dir=path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump({"version": CACHE_VERSION, "entries": entries}, f, indent=1, sort_keys=True)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            pass   # a read-only home: the figures stay in this process's memory


def _lookup(key: str) -> dict | None:
    if key in _MEMORY:
        return _MEMORY[key]
    with _FILE_LOCK:
        value = _read_file(cache_path()).get(key)
    if isinstance(value, dict):
        _MEMORY[key] = value
    return value if isinstance(value, dict) else None


def _key_lock(key: str) -> threading.Lock:
    with _KEY_LOCKS_LOCK:
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def clear_memory() -> None:
    """Forget what this process read or measured (the file stays): the next lookup reads the file again."""
    _MEMORY.clear()


# ------------------------------------------------------------------------------------------ measurements
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fit(points: dict) -> tuple[float, float]:
    """(fixed, per_clip) of the line through {batch: seconds}; per_clip >= 0 and fixed >= 0."""
    (b0, s0), (b1, s1) = sorted(points.items())[0], sorted(points.items())[-1]
    if b1 == b0:
        return 0.0, s0 / b0
    per = max(0.0, (s1 - s0) / (b1 - b0))
    fixed = max(0.0, s0 - per * b0)
    if per == 0.0:   # noise made the larger batch look cheaper: charge the mean per clip instead
        per, fixed = (s0 + s1) / (b0 + b1), 0.0
    return fixed, per


def measure_passes(model, device=None, batches: Sequence[int] = BATCHES, repeats: int = REPEATS) -> dict:
    """Median seconds of the model's passes at its input size, at each batch size, and the fitted lines.

    ``forward``: no gradients (curves, occlusion, the prediction); ``backward``: forward + backward to the
    input (each STEP iteration, the gradient methods). The forward runs under the autocast the engine uses on
    this device (``step.autocast_dtype(device, "auto")``: fp32 on a CPU, bf16 / fp16 on CUDA). One untimed
    warm-up per batch size. Returns {"forward": {batch: s}, "backward": {batch: s}, "forward_fit":
    [fixed, per_clip], "backward_fit": [...], "shape": [T,H,W], "precision", "device", "seconds"}.
    """
    device = _device(model, device)
    T, H, W = _input_shape(model)
    dtype = step_mod.autocast_dtype(device, "auto")
    t_start = time.perf_counter()
    out: dict = {"forward": {}, "backward": {}}

    def run(x, grad: bool) -> float:
        _sync(device)
        t0 = time.perf_counter()
        if grad:
            x = x.clone().requires_grad_(True)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = model(x)
            logits.float().logsumexp(-1).sum().backward()
        else:
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                 enabled=dtype is not None):
                model(x)
        _sync(device)
        return time.perf_counter() - t0

    with frozen(model):
        for b in batches:
            x = torch.rand(int(b), 3, T, H, W, device=device)
            for kind, grad in (("forward", False), ("backward", True)):
                run(x, grad)   # warm-up
                out[kind][int(b)] = statistics.median(run(x, grad) for _ in range(max(1, repeats)))
            del x
    out["forward_fit"] = list(_fit(out["forward"]))
    out["backward_fit"] = list(_fit(out["backward"]))
    out.update(shape=[T, H, W], precision=step_mod.describe_precision(device, "auto"),
               device=describe_device(device), seconds=round(time.perf_counter() - t_start, 3))
    out["forward"] = {str(k): v for k, v in out["forward"].items()}
    out["backward"] = {str(k): v for k, v in out["backward"].items()}
    return out


class _Trivial(torch.nn.Module):
    """A model that costs nothing: the engine's own work is what is left when this one is optimised."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.head = torch.nn.Linear(3, classes)

    def forward(self, x):
        return self.head(x.mean((2, 3, 4)))


def measure_engine(preset: str, device=None, iterations: int = ENGINE_ITERATIONS) -> dict:
    """Seconds per mask pixel per iteration of the optimisation loop with ``preset`` around a trivial model.

    Runs ``step.perturbation`` on a random ENGINE_SHAPE clip with two areas, compiled as the full-length
    preset is (so it also pays, and reports, the one-off compile). Returns {"per_pixel", "iteration",
    "compile", "pixels", "preset", "device"}.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    T, H, W = ENGINE_SHAPE
    model = _Trivial().to(device)
    base = step_mod.Settings(**step_mod.PRESETS[preset])
    # core_warmup=0: every timed iteration pays L_K, as all but the warm-up's do (paper: 1 100 of 1 200)
    st = dataclasses.replace(base, areas=ENGINE_AREAS, iterations=iterations + 1, early_stop=0.0, core_warmup=0,
                             compile=step_mod.will_compile(base))
    stamps: list[float] = []

    def tick(done, total, info):
        _sync(device)
        stamps.append(time.perf_counter())

    gen = torch.Generator().manual_seed(0)
    clip = torch.rand(1, 3, T, H, W, generator=gen).to(device)
    t0 = time.perf_counter()
    step_mod.perturbation(model, clip, [0], settings=st, progress=tick)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    it = statistics.median(gaps) if gaps else (stamps[0] - t0)
    pixels = len(ENGINE_AREAS) * T * H * W
    return {"per_pixel": it / pixels, "iteration": it, "compile": max(0.0, (stamps[0] - t0) - it),
            "pixels": pixels, "preset": preset, "device": describe_device(device)}


@dataclasses.dataclass(frozen=True)
class PassCost:
    """Seconds of one model's passes on one device: ``fixed + n · per_clip`` for a batch of n clips."""
    key: str
    model: str
    shape: tuple                    # (T, H, W)
    precision: str
    forward_fixed: float
    forward_per_clip: float
    backward_fixed: float           # forward + backward to the input
    backward_per_clip: float
    measured: dict = dataclasses.field(default_factory=dict, compare=False)

    def forward(self, n: int = 1) -> float:
        return self.forward_fixed + n * self.forward_per_clip if n > 0 else 0.0

    def backward(self, n: int = 1) -> float:
        return self.backward_fixed + n * self.backward_per_clip if n > 0 else 0.0

    @classmethod
    def from_measurement(cls, key: str, model: str, m: dict) -> "PassCost":
        return cls(key=key, model=model, shape=tuple(m["shape"]), precision=m["precision"],
                   forward_fixed=m["forward_fit"][0], forward_per_clip=m["forward_fit"][1],
                   backward_fixed=m["backward_fit"][0], backward_per_clip=m["backward_fit"][1], measured=m)


def _measure_once(key: str, measure) -> dict:
    """The cached figures under ``key``, or ``measure()``'s, stored: one measurement at a time per key."""
    with _key_lock(key):
        hit = _lookup(key)
        if hit is None:
            hit = measure()
            hit["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            _MEMORY[key] = hit
            _write_entry(key, hit)
    return hit


def pass_key(model, device=None) -> str:
    device = _device(model, device)
    return cache_key(_model_name(model), device, _input_shape(model), step_mod.describe_precision(device, "auto"))


def pass_costs(model, device=None, measure: bool = True) -> PassCost | None:
    """The model's :class:`PassCost` on ``device``: from this process, the disk cache, or measured now.

    Thread-safe: one measurement at a time per key; a second caller waits for the first one's figures.
    ``measure=False`` returns None when the figures are not known yet (never blocks on a measurement).
    """
    device = _device(model, device)
    key = pass_key(model, device)
    name = _model_name(model)
    hit = _lookup(key)
    if hit is not None:
        return PassCost.from_measurement(key, name, hit)
    if not measure:
        return None
    return PassCost.from_measurement(key, name, _measure_once(key, lambda: measure_passes(model, device)))


def engine_key(preset: str, device=None) -> str:
    return cache_key(f"engine:{preset}", device, ENGINE_SHAPE)


def engine_costs(preset: str, device=None, measure: bool = True) -> dict | None:
    """The engine's per-pixel figures for ``preset`` on ``device`` (see :func:`measure_engine`), cached."""
    if preset not in step_mod.PRESETS:
        return None
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = engine_key(preset, device)
    hit = _lookup(key)
    if hit is not None or not measure:
        return hit
    return _measure_once(key, lambda: measure_engine(preset, device))


# ------------------------------------------------------------------------------------------------ estimates
@dataclasses.dataclass
class Estimate:
    """Expected seconds of a request, the passes behind them and a short breakdown (label -> seconds)."""
    seconds: float
    passes: dict                    # {"forward": clips, "backward": clips, "iterations": n}
    breakdown: dict
    device_kind: str = "cpu"
    method: str = ""
    preset: str | None = None
    model: str = ""

    def words(self) -> str:
        """``about 40 s on this CPU`` / ``about 3 min on this GPU``."""
        where = {"cpu": "this CPU", "gpu": "this GPU", "zerogpu": "this GPU"}.get(self.device_kind, "this machine")
        return f"about {format_seconds(self.seconds)} on {where}"


def repeated(estimate: Estimate, times: int) -> Estimate:
    """The same request run ``times`` over (the sanity check explains the clip once per stage of its cascade)."""
    if times <= 1:
        return estimate
    return dataclasses.replace(estimate, seconds=estimate.seconds * times,
                               passes={k: v * times for k, v in estimate.passes.items()},
                               breakdown={f"{k} (× {times})": v * times for k, v in estimate.breakdown.items()})


def format_seconds(s: float) -> str:
    """A duration as people say it: 5 s, 40 s, 3 min, 1 h 20 min (two significant figures at most)."""
    s = max(0.0, float(s))
    if s < 10:
        return f"{max(1, round(s))} s"
    if s < 60:
        return f"{int(round(s / 5) * 5)} s" if s >= 20 else f"{round(s)} s"
    m = s / 60
    if m < 60:
        return f"{max(1, round(m))} min"
    h, rest = divmod(round(m), 60)
    return f"{h} h" + (f" {rest} min" if rest and h < 10 else "")


def expected_iterations(settings: step_mod.Settings) -> int:
    """Iterations a run is expected to take: all of them without early stop; with early stop (``fast``), the
    geometric mean of ``min_iterations`` and ``iterations`` (141 of 100..200), so any stop between the two is
    within a factor √(200/100) = 1.41 of it. README (Speed): the toy stops at 100-180, mean 109."""
    n = int(settings.iterations)
    if settings.early_stop > 0 and 0 < settings.min_iterations < n:
        return int(round(math.sqrt(settings.min_iterations * n)))
    return n


def _grad_batch(clip_bytes: int, samples: int) -> int:
    """The batch the gradient methods take (attribution.methods.baselines)."""
    from attribution.methods.baselines import GRAD_BATCH_BYTES
    return batch_for_bytes(clip_bytes, None, GRAD_BATCH_BYTES, cap=samples)


def _batched(costs: PassCost, clips: int, batch: int, grad: bool) -> float:
    """Seconds of ``clips`` passes made ``batch`` at a time."""
    if clips <= 0:
        return 0.0
    full, rest = divmod(clips, batch)
    f = costs.backward if grad else costs.forward
    return full * f(batch) + (f(rest) if rest else 0.0)


def comparison_passes(method: str, shape: Sequence[int], **options) -> list[tuple[int, int, bool]]:
    """[(clips, batch, with_backward)] the comparison ``method`` makes with its defaults (attribution.methods.baselines)."""
    from attribution.methods import baselines as B
    T, H, W = (int(v) for v in shape)
    clip_bytes = 3 * T * H * W * 4
    if method == "gradient":
        return [(1, 1, True)]
    if method == "integrated-gradients":
        n = int(options.get("steps", B.IG_STEPS))
        return [(n, int(options.get("internal_batch_size") or _grad_batch(clip_bytes, n)), True)]
    if method == "smoothgrad":
        n = int(options.get("samples", B.SG_SAMPLES))
        return [(n, int(options.get("batch_size") or _grad_batch(clip_bytes, n)), True)]
    if method == "grad-cam":
        return [(1, 1, False), (1, 1, True)]      # the probe forward, then Captum's forward + backward
    if method == "occlusion":
        _, _, n, batch = B.occlusion_plan((T, H, W), options.get("window"), options.get("strides"),
                                          options.get("batch_size"))
        return [(1, 1, False), (n, batch, False)]  # Captum's forward of the clip, then the windows
    if method in ("random", "frame-difference"):
        return []
    raise ValueError(f"unknown comparison method {method!r}")


def curve_passes(shape: Sequence[int], steps: int = 128, unit: str = "block", random_baseline: bool = True,
                 batch_size: int | None = None) -> list[tuple[int, int, bool]]:
    """[(clips, batch, False)] that ``metrics.deletion_insertion`` makes: the clip and its substrate in one
    batch, then 2 · (distinct inner steps) perturbed clips per ranking, the random map's ranking too."""
    from attribution import metrics as M
    T, H, W = (int(v) for v in shape)
    n = M.unit_ids(unit, T, H, W)[1]
    inner = len({(i * n) // steps for i in range(steps + 1)} - {0, n})
    batch = int(batch_size or max(1, min(256, int(M.MAX_BATCH_BYTES // (3 * T * H * W * 4)))))
    jobs = [(2, 2, False)]
    for _ in range(2 if random_baseline else 1):
        jobs.append((2 * inner, batch, False))
    return jobs


def _settings_for(model, method: str, preset: str, overrides: dict) -> step_mod.Settings:
    from attribution.methods.perturbation import make_settings
    st = make_settings(model, method, preset, overrides)
    return step_mod.method_settings(st, method, getattr(model, "areas", None))


def estimate(model, method: str, preset: str = "fast", *, iterations: int | None = None,
             areas: Sequence[float] | None = None, curves: bool = True, curve_steps: int = 128,
             random_baseline: bool = True, compare: Sequence[str] | None = None, device=None,
             costs: PassCost | None = None, engine: dict | None = None, compiled: bool | None = None,
             options: dict | None = None, measure: bool = True) -> Estimate:
    """Expected seconds of ``explain(model, clip, method=method, preset=preset, ...)`` (+ its curves).

    Args:
        model: the loaded model (its name, input size and registry areas are read; it is not run unless its
            passes are unknown and ``costs`` is not given, in which case they are measured now).
        method: ``step``, ``3d-ep``, ``2d-ep`` or a comparison method of ``attribution.methods.baselines``.
        preset: a name of ``step.PRESETS`` (``fast``, ``interactive``, ``paper``; perturbation methods only).
        iterations, areas: as the user set them (None: the preset's and the model's).
        curves: add ``deletion_insertion`` with ``curve_steps`` steps (and the random map's curves).
        compare: several methods run one after the other on the same clip (the Compare button): their
            estimates are summed, each with its curves when ``curves``; ``method`` is then ignored.
        costs: a :class:`PassCost` (default :func:`pass_costs` of the model, measuring when unknown).
        engine: the engine's figures for the preset (default :func:`engine_costs`, measuring when unknown and
            ``measure``; else the documented ``FALLBACK_PER_PIXEL``).
        compiled: whether the engine has compiled its generator in this process already; when False the
            one-off compile is added for perturbation runs that compile. Default: ``step.compiled_once()``.
        options: overrides passed to a comparison method (``steps``, ``samples``, ``window``, ...).

    Model evaluations: every request makes one forward of the clip (the prediction); a perturbation method
    makes, per iteration, one forward+backward of its A masks in one batch (2·A for the ``dual`` game), plus
    the engine's work of about ``per_pixel · A·T·H·W`` seconds.
    """
    device = _device(model, device)
    kind = device_kind(device)
    costs = costs or pass_costs(model, device)
    shape = _input_shape(model)
    if compare:
        parts = [estimate(model, m, preset, iterations=iterations, areas=areas, curves=curves,
                          curve_steps=curve_steps, random_baseline=random_baseline, device=device, costs=costs,
                          engine=engine, compiled=compiled, options=options, measure=measure) for m in compare]
        return _sum_estimates(parts, kind, "+".join(compare), preset, _model_name(model))

    breakdown: dict = {"prediction": costs.forward(1)}
    passes = {"forward": 1, "backward": 0, "iterations": 0}
    if method in step_mod.METHODS:
        _add_perturbation(breakdown, passes, model, method, preset, iterations=iterations, areas=areas,
                          shape=shape, costs=costs, engine=engine, device=device, compiled=compiled,
                          measure=measure)
    else:
        _add_comparison(breakdown, passes, method, shape, costs, options)
    if curves:
        _add_curves(breakdown, passes, shape, costs, curve_steps, random_baseline)
    return Estimate(seconds=sum(breakdown.values()), passes=passes, breakdown=breakdown, device_kind=kind,
                    method=method, preset=preset if method in step_mod.METHODS else None, model=_model_name(model))


def _sum_estimates(parts: Sequence[Estimate], kind: str, method: str, preset: str, model: str) -> Estimate:
    """The methods of a comparison run one after the other: their seconds and passes add up; each line of the
    breakdown is prefixed with its method."""
    passes: dict = {}
    for p in parts:
        for k, v in p.passes.items():
            passes[k] = passes.get(k, 0) + v
    breakdown = {f"{p.method}: {k}": v for p in parts for k, v in p.breakdown.items()}
    return Estimate(seconds=sum(p.seconds for p in parts), passes=passes, breakdown=breakdown,
                    device_kind=kind, method=method, preset=preset, model=model)


def _add_perturbation(breakdown: dict, passes: dict, model, method: str, preset: str, *, iterations, areas,
                      shape, costs: PassCost, engine, device, compiled, measure: bool = True) -> None:
    """Add a perturbation run to breakdown and passes: its expected iterations, each a batched forward+backward
    of the A masks (2·A for ``dual``) plus the engine's per-pixel work, and the one-off compile when due."""
    overrides = {k: v for k, v in dict(iterations=iterations, areas=areas).items() if v is not None}
    st = _settings_for(model, method, preset, overrides)
    n_it = expected_iterations(st)
    A = len(step_mod.areas_kept(st.areas, st.area_count))   # the masks optimised (interactive keeps 3 at most)
    games = 2 if st.game == "dual" else 1
    chunk = min(st.batch or A * games, A * games)
    eng = engine if engine is not None else engine_costs(preset, device, measure=measure)
    per_pixel = eng["per_pixel"] if eng else FALLBACK_PER_PIXEL.get(preset, FALLBACK_PER_PIXEL["paper"])
    T, H, W = shape
    model_s = _batched(costs, A * games, chunk, grad=True)
    engine_s = per_pixel * A * T * H * W
    breakdown["model passes"] = n_it * model_s
    start = step_mod.start_passes(st)
    if start:   # init="gradient": the pyramid's levels forward, then the decision gradient's passes
        grads = start - step_mod.LEVELS
        breakdown["model passes"] += (_batched(costs, step_mod.LEVELS, step_mod.LEVELS, grad=False)
                                      + _batched(costs, grads, grads, grad=True))
        passes["forward"] += step_mod.LEVELS
        passes["backward"] += grads
    breakdown["engine"] = n_it * engine_s
    will_compile = step_mod.will_compile(st)
    if compiled is None:
        compiled = step_mod.compiled_once()
    if will_compile and not compiled:
        breakdown["compile (first run)"] = eng["compile"] if eng else FALLBACK_COMPILE_SECONDS
    passes["backward"] += n_it * A * games
    passes["iterations"] = n_it
    passes["areas"] = A


def _add_comparison(breakdown: dict, passes: dict, method: str, shape, costs: PassCost, options) -> None:
    """Add the passes a comparison method makes with its defaults (and ``options``) to breakdown and passes."""
    opts = dict(options or {})
    for clips, batch, grad in comparison_passes(method, shape, **opts):
        breakdown.setdefault("model passes", 0.0)
        breakdown["model passes"] += _batched(costs, clips, batch, grad)
        passes["backward" if grad else "forward"] += clips


def _add_curves(breakdown: dict, passes: dict, shape, costs: PassCost, steps: int, random_baseline: bool) -> None:
    """Add the batched forwards of the deletion and insertion curves to breakdown and passes."""
    s = 0.0
    for clips, batch, _ in curve_passes(shape, steps, random_baseline=random_baseline):
        s += _batched(costs, clips, batch, grad=False)
        passes["forward"] += clips
    breakdown["curves"] = s


# ------------------------------------------------------------------------------------------------- limits
def default_limit(device_kind: str = "cpu") -> float:
    """Seconds above which a request is refused: ``$VAE_MAX_REQUEST_SECONDS`` when set (``0`` or ``inf``:
    no limit), else :data:`DEFAULT_LIMITS` for ``cpu``, ``gpu`` or ``zerogpu`` (10, 10 and 2 minutes)."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if raw:
        try:
            v = float(raw)
        except ValueError:
            raise ValueError(f"{LIMIT_ENV} must be a number of seconds, not {raw!r}.") from None
        return math.inf if v <= 0 else v
    return DEFAULT_LIMITS.get(device_kind, DEFAULT_LIMITS["cpu"])


SMALL_MODELS = ("x3d_xs", "toy")


def refusal(estimate: Estimate, limit_seconds: float, model_name: str, method: str, preset: str | None,
            ) -> str | None:
    """None when the estimate is within the limit; otherwise one sentence naming cheaper choices."""
    if estimate.seconds <= limit_seconds:
        return None
    choices = []
    methods = method.split("+") if "+" in method else [method]
    perturbation = any(m in step_mod.METHODS for m in methods)
    cheapest = min(step_mod.PRESETS, key=lambda p: step_mod.Settings(**step_mod.PRESETS[p]).iterations)
    if perturbation and preset and preset != cheapest:
        choices.append(f"the {cheapest} preset")
    if perturbation:
        choices.append("fewer iterations or areas")
    if len(methods) > 1:
        choices.append("fewer methods")
    elif not perturbation and method in ("occlusion", "integrated-gradients", "smoothgrad"):
        choices.append("a one-pass method such as gradient or grad-cam")
    if estimate.breakdown.get("curves", 0) > 0.25 * estimate.seconds:
        choices.append("no deletion/insertion curves")
    smaller = [m for m in SMALL_MODELS if m != model_name]
    if model_name not in SMALL_MODELS:
        choices.append(f"a smaller model such as {' or the '.join(smaller)}")
    elif smaller and model_name != "toy":
        choices.append("the toy model")
    if estimate.device_kind == "cpu":
        choices.append("a GPU Space")
    if not choices:
        listed = "a shorter request"
    elif len(choices) == 1:
        listed = choices[0]
    else:
        listed = ", ".join(choices[:-1]) + (", or " if len(choices) > 2 else " or ") + choices[-1]
    where = estimate.words().removeprefix("about ")
    return (f"This request would take about {where}, more than the {format_seconds(limit_seconds)} limit: "
            f"use {listed}.")
