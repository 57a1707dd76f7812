"""Spatio-temporal perturbation (STEP) and its ablations 3D-EP and 2D-EP.

Li, Wang, Li, Huang, Sato, "Spatio-Temporal Perturbations for Video Attribution", IEEE TCSVT 2021
(arXiv 2109.00222); built on Fong, Patrick, Vedaldi, "Understanding Deep Networks via Extremal Perturbations
and Smooth Masks", ICCV 2019. Implemented from the description in ``docs/method.md``.

For a clip x (B=1, 3, T, H, W) in [0, 1], a target class c and areas a_1..a_A, find masks m_a (1, T, H, W) in
[0, 1] that keep as little of the clip as the area asks while keeping the class::

    m_a = argmin  -log p_c(P(x, m_a))  +  λ_area(t) · L_area(m_a; a)  +  λ_K(t) · L_K(m_a; a)

* ``P`` perturbs: each pixel reads position 7·m of a per-frame blur pyramid (m = 1 sharp, m = 0 blurred).
* ``L_area`` compares the sorted mask of the whole volume with a vector holding a fraction ``a`` of ones.
* ``L_K`` (the paper's spatio-temporal regulariser) asks the mask to consist of k whole space-time ellipsoids.
* ``m`` is a smooth-max upsampling of a coarse per-frame parameter grid (``smooth_mask``).

All areas (and all targets) form one batch; the model's parameters never receive gradients.
The final map sums the masks over areas, blurs each frame and divides by the global maximum.

Shapes: clip (B,3,T,H,W) in [0,1]; params (N,1,gh,gw) with N = B·T; padded mask (B,1,T,H+2m,W+2m);
mask (B,1,T,H,W); saliency (T,H,W) in [0,1].
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import threading
import warnings
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from attribution.common import frozen, halve_on_oom, should_cancel  # noqa: F401  (frozen: re-exported)
from attribution.errors import Cancelled, InputError  # noqa: F401  (Cancelled: re-exported, raised here)

# ----------------------------------------------------------------------------------------------- constants
# Every constant is the paper's value at 112 px input (docs/method.md); spatial ones scale with H.
REF_SIZE = 112
GRID_STEP = 7           # px between mask parameters at 112 px -> a 16x16 grid per frame (§1.1)
SIGMA = 11.0            # smooth-mask kernel width at 112 px; also the canvas margin and the L_K kernel side
MAX_BLUR = 20.0         # σ of the most blurred pyramid level at 112 px (§1.3)
LEVELS = 8              # pyramid levels; mask m reads level 7·m (§1.3)
COLDNESS = 20.0         # smooth-max temperature (§1.2)
FINAL_BLUR = 10.0       # σ of the per-frame blur of the summed map at 112 px (§5)
LR = 0.05               # SGD learning rate (§4)
MOMENTUM = 0.9          # SGD momentum (§4)
DAMPENING = 0.9         # dampening = momentum: the update is an EMA of the gradient (§4)
ITERATIONS = 1200       # every script of the authors passes --perturb_niter 1200 (§4)
AREA_WEIGHT = 300.0     # λ_area at iteration 0 (§3.1)
AREA_GROWTH = 1.0008668  # λ_area multiplier per iteration: x2 at 800 iterations (§3.1)
CORE_WEIGHT = 300.0     # λ_K after the warm-up (§3.3)
CORE_WARMUP = 100       # λ_K = 0 for the first 100 iterations (§3.3)
KEY_FRAMES = 8          # K_t of the ellipsoid at 16 frames; min(8, T/2) for shorter clips (§3.3)
PAPER_AREAS = (0.05, 0.10, 0.15, 0.50)  # default areas of run_all.py (§3.2)
# Borders. The extremal-perturbation formulation (Fong et al. 2019, smooth masks) pads the mask's
# parameter grid with zeros: beyond the image nothing is preserved. The authors blur the *normalised* clip
# with zero padding, i.e. towards the model's mean colour near the borders (docs/method.md §1.3).
PARAM_PADDINGS = ("zero", "replicate")   # parameters beyond the image: 0, or the nearest edge cell's value
BLUR_BORDERS = ("mean", "reflect")       # blur pyramid beyond the image: the mean colour, or the mirrored clip
# 2D-EP as the authors ran it in their frame-wise video toolkit (the TCSVT paper's 2D-EP baseline):
# the reward weighted 100 (STEP: 1), the area weight fixed at AREA_WEIGHT (no growth), one area per run.
EP2D_REWARD_WEIGHT = 100.0
EP2D_AREA_GROWTH = 1.0

METHODS = ("step", "3d-ep", "2d-ep")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # autocast of the model's forward; "auto": by the hardware
BF16_CAPABILITY = (8, 0)   # CUDA compute capability from which bf16 runs natively (Ampere and newer)
FP16_LOSS_SCALE = 2.0 ** 12  # fp16 backward: the reward is scaled so small gradients do not underflow
GAMES = ("preserve", "delete", "dual")
PERTURBATIONS = ("blur", "fade")
OPTIMIZERS = ("sgd", "adam", "nsgd")   # sgd: the paper's (§4); adam, nsgd: ours, for short schedules
INITS = ("ones", "gradient")   # ones: the paper's start; gradient: from the reward's gradient (decision_gradient)
START_POINTS = 4   # init="gradient": uniform masks inside the decision interval whose gradients are summed
START_MIN_CHANGE = 0.1   # nats: a reward that moves less than this over the whole blur has no decision to follow




@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of the optimisation under one plain name (docs/method.md). ``None`` means "scaled from H"."""
    iterations: int = ITERATIONS
    areas: tuple = PAPER_AREAS
    lr: float = LR
    momentum: float = MOMENTUM
    dampening: float = DAMPENING
    grid_step: float | None = None
    sigma: float | None = None
    max_blur: float | None = None
    final_blur: float | None = None
    key_frames: int | None = None
    perturbation: str = "blur"
    game: str = "preserve"
    contrast: int | None = None  # "why the target rather than this class": the pairwise reward (see reward())
    area_weight: float = AREA_WEIGHT
    area_growth: float = AREA_GROWTH
    core_weight: float = CORE_WEIGHT
    core_warmup: int = CORE_WARMUP
    reward_weight: float = 1.0
    subsample: int | None = None     # smooth-max evaluated at this many points per cell side (None: every px)
    early_stop: float = 0.0          # stop when the mean mask change over 10 iterations falls below this
    min_iterations: int = 0          # never stop early before this iteration
    precision: str = "auto"          # model forward: "auto" (bf16 / fp16 on CUDA by capability, fp32 on CPU),
    #                                  "fp32", "bf16" or "fp16"; masks, losses and their gradients stay fp32
    compile: bool | None = None      # torch.compile the smooth-max (same numbers); None: when iterations >= 100
    batch: int | None = None         # masks per model call (None: all); halves itself on CUDA out-of-memory
    param_padding: str = "zero"      # mask parameters beyond the image: "zero" (the paper's) or "replicate"
    blur_border: str = "mean"        # blur pyramid beyond the image: "mean" colour (the paper's) or "reflect"
    method_defaults: bool = True     # 2D-EP: its own reward weight, fixed area weight and one area for the
    #                                  fields left at a preset's value (method_settings); False: as given
    optimizer: str = "sgd"           # "sgd" (the paper's, with momentum and dampening), "adam" (lr, betas) or
    #                                  "nsgd": the paper's SGD on each mask's gradient divided by its root mean
    #                                  square (normalised_gradient), a step of the same length on every model
    betas: tuple = (0.9, 0.999)      # Adam's moment decays
    area_count: int | None = None    # optimise only this many of the areas, spread over their range
    #                                  (areas_kept); None: all of them
    init: str = "ones"               # "ones" (the paper's start) or "gradient": before the iterations, the
    #                                  reward's gradient where the model's decision changes along the blur
    #                                  (decision_gradient) ranks the cells, and every mask starts from its
    #                                  area's share of the cells it ranks highest (init_from_gradient)

    def scaled(self, height: int) -> "Settings":
        """Fill the size-dependent constants for an input of ``height`` px."""
        s = height / REF_SIZE
        return dataclasses.replace(
            self,
            grid_step=self.grid_step or max(1.0, GRID_STEP * s),
            sigma=self.sigma or SIGMA * s,
            max_blur=self.max_blur or MAX_BLUR * s,
            final_blur=self.final_blur if self.final_blur is not None else FINAL_BLUR * s)


FAST_SPEEDUP = 6   # the fast preset runs the paper's schedule this many times faster: 1200 -> 200 iterations
FAST_LR = round(LR * FAST_SPEEDUP, 12)   # 0.3: the paper's total step (lr x iterations = 60). lr 0.1 was better
#   on the toy (tuning and benchmark clips) and alike on gt_x3d_xs, but worse on gt_videomae's tuning and
#   benchmark clips, so the rule (change only where the paired figures agree) keeps 0.3 (docs/tuning.md, "`fast`'s learning rate")
INTERACTIVE_SPEEDUP = 36   # the interactive preset's schedule (area growth, L_K warm-up): the paper's 36x faster
INTERACTIVE_BUDGET = 99    # model passes per target: the start's LEVELS + START_POINTS, then 29 iterations x 3 areas
INTERACTIVE_LR = 0.6       # 12x the paper's, tuned on the tuning clips (0.3 alike, 1.0, 1.5 lower; docs/tuning.md)

PRESETS = {
    # The paper's optimisation as the authors ran it (docs/method.md): zero-padded mask parameters, the pyramid
    # blurred towards the mean colour at the borders, 2D-EP with its own settings (method_settings).
    "paper": {},
    # Ours: the same objective in 1/6 of the iterations, with the schedule scaled to match: the area weight
    # growing 6x faster (it would end at the same value), the L_K warm-up 1/6 as long, the learning rate
    # FAST_LR, the smooth-max evaluated at 2x2 points per cell and interpolated, early stop once the mask has
    # settled (on the toy, at 100-180 iterations, mean 109). Borders as the paper's:
    # against replicate / reflect, paired, the pointing game and the mass in the tube rose on clips whose evidence
    # touches a border and did not fall on the tuning clips (benchmarks/borders.py, benchmarks/tune.py; README).
    # 2D-EP with its own settings too (method_settings; its area weight stays fixed): against STEP's schedule,
    # paired on the tuning clips, its mass in the tube rose and its pointing game and insertion did not fall.
    # The start is the decision gradient's (init="gradient", 12 passes), not all ones: on the ground-truth
    # models, whose fine-striped evidence a slight blur erases, the all-ones start lowered every mask through
    # the narrow band where the class is decided and lost the evidence (6 tuning clips of gt_x3d_xs: pointing
    # game 0.0 against 1.0 on every clip, insertion -0.19 ± 0.07); on the toy's 16 tuning clips the start changed
    # nothing (pointing game -0.003 ± 0.035, insertion +0.001 ± 0.004; docs/method.md §7).
    "fast": dict(iterations=ITERATIONS // FAST_SPEEDUP, area_growth=AREA_GROWTH ** FAST_SPEEDUP, init="gradient",
                 core_warmup=round(CORE_WARMUP / FAST_SPEEDUP), lr=FAST_LR, subsample=2,
                 early_stop=2e-4, min_iterations=100),
    # Ours, for an interactive request: at most 99 model passes per target (the start's 8 forwards and 4
    # forward+backward passes, then 29 iterations x 3 areas; a model with more areas keeps three of them,
    # areas_kept). Every mask starts from the cells the reward's gradient ranks highest where the model's
    # decision changes along the blur (init="gradient", decision_gradient; from all ones, 33 iterations were far
    # from enough), the schedule is the paper's 36x faster (area weight growth^36, L_K after 3 iterations), SGD
    # with the paper's momentum at lr 0.6, tuned on the tuning clips; confirmed against paper on the benchmark
    # clips of the toy and of the ground-truth models (docs/method.md §7).
    "interactive": dict(iterations=(INTERACTIVE_BUDGET - LEVELS - START_POINTS) // 3, area_count=3, init="gradient",
                        area_growth=AREA_GROWTH ** INTERACTIVE_SPEEDUP,
                        core_warmup=round(CORE_WARMUP / INTERACTIVE_SPEEDUP), lr=INTERACTIVE_LR, subsample=2),
}


def single_area(areas: Sequence[float]) -> float:
    """The lower median of ``areas``: one of them, mid-range (0.10 of the paper's areas, 0.02 of the toy's).

    2D-EP keeps the same fraction of *every* frame, so its one area should be a typical size of the evidence
    in a frame: the middle of the range the areas (the model's registry entry or the paper's) are chosen to
    span, neither the tightest (which frames without evidence cannot honour) nor the loosest.
    """
    a = sorted(float(x) for x in areas)
    return a[(len(a) - 1) // 2]


def areas_kept(areas: Sequence[float], count: int | None) -> tuple:
    """``count`` of ``areas``, spread over their range (sorted): one is :func:`single_area` (the lower median),
    two are the smallest and the largest, more are picked at evenly spaced ranks; None (or at least as many as
    there are) keeps them all, in their order."""
    if count is None or count >= len(areas):
        return tuple(areas)
    if count < 1:
        raise InputError(f"area_count must be at least 1, not {count}")
    if count == 1:
        return (single_area(areas),)
    a = sorted(float(x) for x in areas)
    return tuple(a[round(i * (len(a) - 1) / (count - 1))] for i in range(count))


def init_from_gradient(grad: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """Restart parameters (n, cells) from the reward's gradient at the all-ones start: 1 on each mask's
    ``shares`` (n,) of its cells with the most negative gradient (those whose loss would most raise the
    reward, i.e. lower the class's probability), 0 elsewhere; ties in the gradient keep the lower index."""
    n, cells = grad.shape
    k = (shares * cells).ceil().long().clamp(1, cells)
    order = grad.argsort(dim=1, stable=True)                     # most negative first
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(cells, device=grad.device).expand(n, cells))
    return (rank < k.view(-1, 1).to(rank.device)).float()


def start_passes(settings: Settings, targets: int = 1) -> int:
    """Model passes the start of ``settings`` costs for ``targets`` targets: none from all ones; with
    init="gradient", one forward per pyramid level (shared by the targets) and ``START_POINTS`` forward+backward
    passes per target and game (:func:`decision_gradient`)."""
    if settings.init != "gradient":
        return 0
    return LEVELS + START_POINTS * targets * (2 if settings.game == "dual" else 1)


def method_settings(settings: Settings, method: str, model_areas: Sequence[float] | None = None) -> Settings:
    """The settings ``method`` runs with: ``settings`` itself, except for 2D-EP with ``method_defaults``.

    2D-EP then takes its own values (the frame-wise extremal perturbation of the authors' earlier
    video toolkit) for every field still at the value of a preset (or, for the areas, at the model's areas):
    reward weight ``EP2D_REWARD_WEIGHT``, the area weight fixed (growth ``EP2D_AREA_GROWTH``, so it stays at
    ``area_weight``, 300) and one area, :func:`single_area` of the areas. A field set to anything else is
    kept; ``method_defaults=False`` runs 2D-EP exactly as given (STEP's schedule).
    """
    if method != "2d-ep" or not settings.method_defaults:
        return settings
    presets = [Settings(**p) for p in PRESETS.values()]

    def left(name: str) -> bool:
        return getattr(settings, name) in {getattr(p, name) for p in presets}

    default_areas = {tuple(float(a) for a in p.areas) for p in presets}
    if model_areas:
        default_areas.add(tuple(float(a) for a in model_areas))
    changes = {}
    if left("reward_weight"):
        changes["reward_weight"] = EP2D_REWARD_WEIGHT
    if left("area_growth"):
        changes["area_growth"] = EP2D_AREA_GROWTH
    if tuple(float(a) for a in settings.areas) in default_areas:
        changes["areas"] = (single_area(settings.areas),)
    return dataclasses.replace(settings, **changes)


# ------------------------------------------------------------------------------------------ mask generator
def _as_int(x: float) -> int:
    return max(1, int(round(x)))


def mask_geometry(height: int, width: int, step: float, sigma: float, padding: str = "zero") -> dict:
    """Sizes of the parameter grid and padded canvas for an (H, W) mask.

    The step is rounded to whole pixels so that each cell covers step x step pixels; the canvas margin is σ,
    and the parameter grid is padded with enough cells that every canvas pixel sees a full neighbourhood of
    radius ``ceil(1.5σ/step)`` cells, beyond which the kernel weight is below 0.14. ``padding``: the padded
    cells hold zeros (the paper's: nothing beyond the image is preserved) or replicate the edge cells.
    """
    if padding not in PARAM_PADDINGS:
        raise InputError(f"param_padding must be one of {', '.join(PARAM_PADDINGS)}, not {padding!r}")
    step = _as_int(step)
    margin = _as_int(sigma)
    radius = math.ceil(1.5 * sigma / step)
    gh, gw = math.ceil(height / step), math.ceil(width / step)
    pad = math.ceil(margin / step) + radius
    return dict(step=step, margin=margin, radius=radius, grid=(gh, gw), pad=pad, padding=padding)


def frame_share(height: int, width: int | None = None) -> float:
    """The frame's share of the padded canvas that the area loss counts (docs/method.md §3.2): the canvas has a
    margin of σ (scaled from H) on every side, so at any size about 0.70 of it is the frame (112² of 134² at
    112 px). An area a keeps about a / frame_share of the frame itself, since the zero-padded parameters keep
    next to nothing beyond it; :func:`model_zoo.groundtruth.default_areas` converts evidence shares with it."""
    width = width or height
    margin = _as_int(Settings().scaled(height).sigma)
    return height * width / ((height + 2 * margin) * (width + 2 * margin))


def pad_params(params: torch.Tensor, pad: int, padding: str = "zero") -> torch.Tensor:
    """The parameter grid (N,1,gh,gw) with ``pad`` cells on every side: zeros, or the edge cells replicated."""
    if padding == "zero":
        return F.pad(params, (pad, pad, pad, pad))
    return F.pad(params, (pad, pad, pad, pad), mode="replicate")


def smooth_mask_kernel(step: int, sigma: float, radius: int, subsample: int | None = None) -> torch.Tensor:
    """Weights (S*S, K) of the K = (2r+1)^2 neighbouring cells for each of S x S sample points in a cell.

    k(z) = exp(-2 · max(z - 0.5, 0)^2), z = distance / σ (docs/method.md §1.2). With ``subsample`` S < step the
    points sit at the centres of an S x S sub-grid of the cell, otherwise at every pixel.
    """
    s = subsample if subsample and subsample < step else step
    pos = (torch.arange(s, dtype=torch.float64) + 0.5) * (step / s) - 0.5   # pixel coords inside the cell
    centre = (step - 1) / 2
    offs = torch.arange(-radius, radius + 1, dtype=torch.float64) * step + centre  # neighbour centres
    dy = offs.view(1, -1) - pos.view(-1, 1)                                  # (s, 2r+1)
    d = torch.sqrt(dy.view(s, 1, -1, 1) ** 2 + dy.view(1, s, 1, -1) ** 2)   # (s, s, 2r+1, 2r+1)
    w = torch.exp(-2 * torch.clamp(d / sigma - 0.5, min=0) ** 2)
    return w.reshape(s * s, -1).float()


def _smooth_max_forward(nb: torch.Tensor, kernel: torch.Tensor, coldness: float = COLDNESS) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`smooth_max`'s value and its softmax denominator (both (N,C,P)), without keeping the (N,C,P,K)
    weighted neighbours: what torch.compile turns into one loop that never writes them to memory.

    The exponent is shifted by a bound on every v_k of the cell, max_k |θ_k| · max |w| (softmax is shift-invariant,
    docs/method.md §1.2), found on the small neighbour tensor instead of a pass over all points: exp() is at most 1,
    and with the parameters in [0, 1] (clamped after every step, §1.1) at least exp(-2·coldness), far from underflow.
    """
    shift = nb.abs().amax(-1, keepdim=True) * kernel.abs().amax()
    v = nb * kernel                                              # (N,C,P,K)
    e = torch.exp(coldness * (v - shift))
    den = e.sum(-1)
    return (v * e).sum(-1) / den, den


def _smooth_max_backward(nb: torch.Tensor, kernel: torch.Tensor, out: torch.Tensor, den: torch.Tensor,
                         grad: torch.Tensor, coldness: float = COLDNESS) -> torch.Tensor:
    """The gradient (N,C,1,K) of Σ grad · smooth_max(nb, kernel) with respect to nb, in closed form:
    d out / d v_k = softmax_k · (1 + coldness · (v_k - out)), with v and the softmax recomputed from nb (one more
    exp per point and neighbour costs less than storing and re-reading them)."""
    shift = nb.abs().amax(-1, keepdim=True) * kernel.abs().amax()
    v = nb * kernel
    e = torch.exp(coldness * (v - shift))
    g = e * (1 + coldness * (v - out.unsqueeze(-1))) * (grad / den).unsqueeze(-1)
    return (g * kernel).sum(-2, keepdim=True)


class _SmoothMax(torch.autograd.Function):
    """The smooth-max, (N,C,1,K) x (P,K) -> (N,C,P), with its closed-form backward,
    d out / d v_k = softmax_k · (1 + coldness · (v_k - out)), instead of autograd's walk back through every
    intermediate. Eager (``compiled`` False): :func:`smooth_max`'s forward bit for bit, in a few in-place passes
    that keep v and the softmax for the backward. Compiled: :func:`_smooth_max_forward` and
    :func:`_smooth_max_backward` torch.compile'd, each one loop over nb that keeps nothing of size N·C·P·K (bound
    by the exp(), not by memory)."""

    @staticmethod
    def forward(ctx, nb, kernel, coldness, compiled=False):
        ctx.coldness, ctx.compiled = coldness, _compiled_fn(compiled, _smooth_max_forward, nb, kernel, grad=None)
        if ctx.compiled is not _smooth_max_forward:
            out, den = ctx.compiled(nb, kernel, coldness)
            ctx.save_for_backward(nb, kernel, out, den)
            return out
        v = nb * kernel                                              # (N,C,P,K)
        e = (v - v.amax(-1, keepdim=True)).mul_(coldness).exp_()     # the shift only keeps exp() in range
        den = e.sum(-1)
        out = torch.linalg.vecdot(v, e) / den
        ctx.save_for_backward(v, e, den, out, kernel)
        return out

    @staticmethod
    def backward(ctx, grad):
        if ctx.compiled is not _smooth_max_forward:
            nb, kernel, out, den = ctx.saved_tensors
            grad = grad.contiguous()
            fn = _compiled_fn(True, _smooth_max_backward, nb, kernel, out, den, grad, grad=None)
            return fn(nb, kernel, out, den, grad, ctx.coldness), None, None, None
        v, e, den, out, kernel = ctx.saved_tensors
        g = (v - out.unsqueeze(-1)).mul_(ctx.coldness).add_(1).mul_(e).mul_((grad / den).unsqueeze(-1))
        return (g * kernel).sum(-2, keepdim=True), None, None, None


def smooth_max(nb: torch.Tensor, kernel: torch.Tensor, coldness: float = COLDNESS) -> torch.Tensor:
    """Σ_k v_k softmax(coldness · v)_k over the last axis for v = nb · kernel: (N,C,1,K) x (P,K) -> (N,C,P).

    The formula as written (docs/method.md §1.2); the generator runs :class:`_SmoothMax`, the same forward (bit
    for bit when eager, to rounding when compiled) with a closed-form backward. The shift by max(v) only keeps exp() in range (softmax is
    shift-invariant), so it carries no gradient.
    """
    v = nb * kernel
    e = torch.exp(coldness * (v - v.detach().amax(-1, keepdim=True)))
    return (v * e).sum(-1) / e.sum(-1)


COMPILE_MIN_ITERATIONS = 100   # compile="auto" compiles runs at least this long (compiling costs ~10 s once)
RECOMPILE_LIMIT = 64           # compiled shapes kept per process
_COMPILED: dict = {}
_COMPILE_LOCK = threading.Lock()


def compile_key(fn: Callable, *args: torch.Tensor) -> tuple:
    """What a compiled kernel is specialised on: the function and its inputs' shapes, device and dtype."""
    return (fn.__name__,) + tuple((tuple(a.shape), a.device.type, a.dtype) for a in args)


def _compiled_fn(compiled: bool, fn: Callable, *args: torch.Tensor, grad: int | None = 0) -> Callable:
    """``fn``, or its torch.compile'd form (one fused loop instead of several passes over memory).

    The compiled form is tried once per input shape, forward and backward (the gradient flowing to
    ``args[grad]``; forward only for ``grad`` None), on copies; where compiling fails (no C++ compiler, an unsupported platform) a warning says
    so and the eager forms are used from then on.
    """
    if not compiled or _COMPILED.get("broken"):
        return fn
    key = compile_key(fn, *args)
    if key in _COMPILED:
        return _COMPILED[key]
    with _COMPILE_LOCK:
        if key not in _COMPILED:
            if fn.__name__ not in _COMPILED:
                if not torch.cuda.is_available():   # inductor's import logs "No CUDA runtime is found" on
                    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)   # every CPU run
                # one specialised kernel per shape (a model, areas x targets): let a long-running app hold more
                # than dynamo's default of 8 before it would silently fall back to eager code
                cfg = torch._dynamo.config
                cfg.recompile_limit = max(cfg.recompile_limit, RECOMPILE_LIMIT)
                _COMPILED[fn.__name__] = torch.compile(fn, dynamic=False)
            cfn = _COMPILED[fn.__name__]
            try:
                probe = [a.detach().clone().requires_grad_(i == grad) for i, a in enumerate(args)]
                if grad is None:   # a function without autograd (a forward or a closed-form backward)
                    with torch.no_grad():
                        cfn(*probe)
                else:
                    cfn(*probe).sum().backward()
                _COMPILED[key] = cfn
            except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
                warnings.warn(f"torch.compile of {fn.__name__} failed ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); running it eagerly.", RuntimeWarning)
                _COMPILED["broken"] = True
                return fn
    return _COMPILED[key]


@functools.lru_cache(maxsize=64)
def _interpolation_matrix(n_in: int, factor: float, offset: int, n_out: int, device=None,
                          dtype=torch.float32) -> torch.Tensor:
    """(n_out, n_in) matrix M with M @ v = F.interpolate(v, scale_factor=factor, mode="bilinear",
    align_corners=False)[offset:offset + n_out] along one axis: two matrix products replace the upsampling
    and the crop, forward and backward (the upsampling's own backward is several times slower)."""
    dst = torch.arange(offset, offset + n_out, dtype=torch.float64)
    src = ((dst + 0.5) / factor - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    lam = src - i0
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    m.index_put_((torch.arange(n_out), i0), 1 - lam, accumulate=True)
    m.index_put_((torch.arange(n_out), i1), lam, accumulate=True)
    return m.to(device=device, dtype=dtype)   # cached per device: no copy in the optimisation loop


def smooth_mask(params: torch.Tensor, geometry: dict, kernel: torch.Tensor, height: int, width: int,
                coldness: float = COLDNESS, compiled: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth-max upsampling of the parameter grid: params (N,1,gh,gw) -> (padded (N,1,H+2m,W+2m), (N,1,H,W)).

    Every output point is Σ_k v_k softmax(coldness · v)_k over the weighted neighbours v_k = w_k θ_k, a soft
    maximum: a pixel is on when any nearby parameter is on, so masks are unions of smooth blobs.
    """
    step, margin, r, pad = geometry["step"], geometry["margin"], geometry["radius"], geometry["pad"]
    n, _, gh, gw = params.shape
    k = 2 * r + 1
    s = int(math.isqrt(kernel.shape[0]))
    p = pad_params(params, pad, geometry.get("padding", "zero"))
    cells_h, cells_w = gh + 2 * pad - 2 * r, gw + 2 * pad - 2 * r
    nb = p.unfold(2, k, 1).unfold(3, k, 1).reshape(n, cells_h * cells_w, 1, k * k)   # (N, cells, 1, K)
    out = _SmoothMax.apply(nb, kernel, coldness, compiled)                            # (N, cells, S*S)
    out = out.view(n, cells_h, cells_w, s, s).permute(0, 1, 3, 2, 4).reshape(n, 1, cells_h * s, cells_w * s)
    # The first computed pixel sits at image coordinate (r - pad) * step; the canvas starts at -margin.
    o = (pad - r) * step - margin
    hp, wp = height + 2 * margin, width + 2 * margin
    if s != step:  # sub-sampled: bilinear interpolation to pixels (weights vary smoothly over a cell), cropped
        rows = _interpolation_matrix(cells_h * s, step / s, o, hp, out.device, out.dtype)
        cols = _interpolation_matrix(cells_w * s, step / s, o, wp, out.device, out.dtype)
        padded = (rows @ out @ cols.T).clamp(0, 1)
    else:
        padded = out[:, :, o:o + hp, o:o + wp].clamp(0, 1)
    return padded, padded[:, :, margin:margin + height, margin:margin + width]


# ---------------------------------------------------------------------------------------- perturbation
def gaussian_blur(x: torch.Tensor, sigma: float, fill: torch.Tensor | None = None) -> torch.Tensor:
    """Separable 2-D Gaussian blur of images (N,C,H,W), kernel half-width ceil(4σ).

    Borders: reflected (replicated where the kernel is wider than the image), or, with ``fill`` (C,), the
    image is taken to hold ``fill`` beyond its borders: the blur then tends to ``fill`` there.
    """
    if sigma <= 0:
        return x
    half = math.ceil(4 * sigma)
    t = torch.arange(-half, half + 1, dtype=torch.float32, device=x.device)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = (g / g.sum()).to(x.dtype)
    c = x.shape[1]
    h, w = x.shape[-2:]
    if fill is not None:   # zero padding of x - fill: the same as padding x with fill, for any kernel width
        f = fill.to(x).view(1, c, 1, 1)
        x = x - f
        x = F.conv2d(F.pad(x, (half, half, 0, 0)), g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        return F.conv2d(F.pad(x, (0, 0, half, half)), g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c) + f
    mode = "reflect" if half < min(h, w) else "replicate"
    x = F.conv2d(F.pad(x, (half, half, 0, 0), mode=mode), g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, half, half), mode=mode), g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def blur_pyramid(clip: torch.Tensor, max_blur: float, levels: int = LEVELS, kind: str = "blur",
                 fill: torch.Tensor | None = None, border: str = "reflect") -> torch.Tensor:
    """Per-frame perturbation pyramid: clip (1,3,T,H,W) -> (L,3,T,H,W); level L-1 is the clip itself.

    ``blur``: level l is blurred with σ_l = max_blur · (1 - l/(L-1)) in space only (never across frames).
    ``fade``: level l is fill + (x - fill) · l/(L-1), fading towards ``fill`` (the model's mean colour).
    ``border`` (blur only): ``reflect`` mirrors the frame beyond its edges; ``mean`` takes it to hold ``fill``
    there, as blurring the model's normalised input with zero padding does (the paper's pyramid), so the
    blurred levels tend to the mean colour near the borders. ``fill`` None: the clip's own mean colour.
    Built once per clip; ``apply_pyramid`` indexes it every iteration without copying.
    """
    x = clip[0]                                              # (3,T,H,W)
    f = (fill if fill is not None else x.mean((1, 2, 3))).view(3).to(x)
    if kind == "fade":
        a = torch.linspace(0, 1, levels, device=x.device, dtype=x.dtype).view(-1, 1, 1, 1, 1)
        return f.view(3, 1, 1, 1) + (x - f.view(3, 1, 1, 1)) * a
    if kind != "blur":
        raise InputError(f"perturbation must be one of {PERTURBATIONS}, not {kind!r}")
    if border not in BLUR_BORDERS:
        raise InputError(f"blur_border must be one of {', '.join(BLUR_BORDERS)}, not {border!r}")
    frames = x.permute(1, 0, 2, 3)                           # (T,3,H,W)
    out = []
    for lv in range(levels):
        sigma = max_blur * (1 - lv / (levels - 1))
        out.append(gaussian_blur(frames, sigma, f if border == "mean" else None).permute(1, 0, 2, 3))
    return torch.stack(out)


def apply_pyramid(pyramid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Perturbed clips: pyramid (L,3,T,H,W), mask (N,1,T,H,W) -> (N,3,T,H,W).

    A mask value m reads position (L-1)·m with linear interpolation between the two neighbouring levels.
    """
    levels = pyramid.shape[0]
    pos = mask * (levels - 1)
    lo = pos.detach().floor().clamp(0, levels - 2)
    frac = pos - lo                                          # carries the gradient
    n = mask.shape[0]
    idx = lo.long().expand(n, 3, *mask.shape[2:]).unsqueeze(1)
    pyr = pyramid.unsqueeze(0).expand(n, *pyramid.shape)
    a = torch.gather(pyr, 1, idx).squeeze(1)
    b = torch.gather(pyr, 1, idx + 1).squeeze(1)
    return a + frac * (b - a)


def pyramid_lookup(compiled: bool, pyramid: torch.Tensor, mask: torch.Tensor) -> Callable:
    """:func:`apply_pyramid` as the optimisation runs it for these shapes: torch.compile'd (the gradient flowing
    to the mask) when ``compiled``, else itself."""
    return _compiled_fn(compiled, apply_pyramid, pyramid, mask, grad=1)


# ---------------------------------------------------------------------------------------------- losses
def reward(logits: torch.Tensor, target: torch.Tensor, game: str, contrast: torch.Tensor | None = None) -> torch.Tensor:
    """Per-clip reward to minimise. preserve: -log p_c; delete: -log(1 - p_c). logits (N,K), target (N,).

    With ``contrast`` (N,) class indices b, the game is played on the pair {c, b} alone ("why c rather than b",
    docs/method.md): preserve keeps what makes c more likely than b, -log σ(l_c - l_b); delete removes it,
    -log σ(l_b - l_c). Both are bounded below by 0, unlike -log p_c + log p_b, which a mask could drive to -∞ by
    erasing b's evidence alone.
    """
    if contrast is not None:
        margin = (logits.float().gather(1, target.view(-1, 1)) - logits.float().gather(1, contrast.view(-1, 1)))[:, 0]
        if game == "preserve":
            return F.softplus(-margin)
        if game == "delete":
            return F.softplus(margin)
        raise InputError(f"game must be one of {GAMES}, not {game!r}")
    logp = torch.log_softmax(logits.float(), -1)
    lp = logp.gather(1, target.view(-1, 1)).squeeze(1)
    if game == "preserve":
        return -lp
    if game == "delete":
        # log(1 - p) = log Σ_{k≠c} p_k, computed without cancellation
        others = logp.scatter(1, target.view(-1, 1), float("-inf"))
        return -torch.logsumexp(others, dim=1)
    raise InputError(f"game must be one of {GAMES}, not {game!r}")


def area_reference(n: int, area: float, device=None) -> torch.Tensor:
    """Sorted (ascending) target of the area loss: floor((1-a)·n) zeros, then ones."""
    ref = torch.ones(n, device=device)
    ref[: int((1 - area) * n)] = 0
    return ref


def top_k(rows: torch.Tensor, k: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and indices (R, k) of the k largest entries of each row, ties broken at random.

    The same choice, in distribution, as the paper's shuffle before sorting: every value above the k-th largest
    is in; of the values equal to it, as many as are still needed are drawn uniformly at random. Random numbers
    are drawn only for a row whose tie crosses the k-th place (as with the all-ones start).
    """
    vals, idx = rows.topk(k, dim=1, sorted=False)
    kth = vals.amin(1, keepdim=True)
    for j in ((rows >= kth).sum(1) > k).nonzero().flatten().tolist():
        above, tied = rows[j] > kth[j], rows[j] == kth[j]
        cand = tied.nonzero().flatten()
        pick = torch.randperm(cand.numel(), generator=generator, device="cpu")[: k - int(above.sum())]
        idx[j] = torch.cat([above.nonzero().flatten(), cand[pick.to(cand.device)]])
    return vals, idx     # the chosen values are the same whichever tied entries are chosen


class _SortedAreaLoss(torch.autograd.Function):
    """Σ m^2 + Σ_{k largest} (1 - 2m) per row. Its gradient, 2m - 2·[chosen], is known once the k largest are
    found, so the backward is one product and one scatter (autograd through a permutation and top-k costs
    several full copies)."""

    @staticmethod
    def forward(ctx, flat, ks, generator):
        loss = (flat * flat).sum(1)
        groups = []
        for k in ks.unique().tolist():
            if k <= 0:
                continue
            rows = (ks == k).nonzero().flatten()
            vals, idx = top_k(flat[rows], min(k, flat.shape[1]), generator)
            loss = loss.index_add(0, rows, (1 - 2 * vals).sum(1))
            groups += [rows, idx]
        ctx.save_for_backward(flat, *groups)
        return loss

    @staticmethod
    def backward(ctx, grad):
        flat, *groups = ctx.saved_tensors
        out = 2 * flat * grad.unsqueeze(1)
        for rows, idx in zip(groups[::2], groups[1::2]):
            sub = out[rows].scatter_add_(1, idx, (-2 * grad[rows]).unsqueeze(1).expand_as(idx))
            out[rows] = sub
        return out, None, None


def area_loss(padded: torch.Tensor, refs: torch.Tensor, per_frame: bool = False,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Sorted-vector area loss, one value per mask. padded (N,1,T,Hp,Wp); refs (N, V) sorted ascending.

    3-D (STEP, 3D-EP): one constraint over the whole volume V = T·Hp·Wp, so frames may switch fully off.
    2-D (2D-EP, ``per_frame``): each frame holds the same fraction; refs is then (N, Hp·Wp).
    Ties break at random (all ones at the start) rather than by index, as the paper's shuffle before sorting.
    """
    n, t = padded.shape[0], padded.shape[2]
    flat = padded.reshape(n * t, -1) if per_frame else padded.reshape(n, -1)
    ones = refs.sum(1).long()
    if per_frame:
        ones = ones.repeat_interleave(t)
    # mean((sort(m) - r)^2) with r = [0..0, 1..1] (k ones) equals (Σ m^2 + Σ_{k largest} (1 - 2m)) / V:
    # only the k largest values need finding, and top-k is several times cheaper than a full sort.
    loss = _SortedAreaLoss.apply(flat, ones, generator) / flat.shape[1]
    return loss.view(n, t).mean(1) if per_frame else loss


def ellipsoid_kernel(frames: int, side: int) -> torch.Tensor:
    """Binary ellipsoid (frames, side, side): voxels whose linspace(-1,1) coordinates lie in the unit ball.

    For tiny even sizes (2 frames and an even side) no voxel lies inside with those coordinates; voxel-centre
    coordinates (±(1 - 1/n) at the ends) are used then, so the kernel is never empty.
    """
    def grid(centres: bool):
        axes = [torch.linspace(-1 + centres / n, 1 - centres / n, n) if n > 1 else torch.zeros(1)
                for n in (frames, side, side)]
        z, y, x = torch.meshgrid(*axes, indexing="ij")
        return ((z ** 2 + y ** 2 + x ** 2) <= 1).float()
    k = grid(False)
    return k if k.sum() > 0 else grid(True)


def core_counts(areas: Sequence[float], volume: int, key_frames: int, side: int) -> list[int]:
    """k_a = ceil(a · volume / n1), n1 = int(K_t · side² · π/6): how many ellipsoids the area fills."""
    n1 = max(1, int(key_frames * side * side * math.pi / 6))
    return [max(1, math.ceil(a * volume / n1)) for a in areas]


def ellipsoid_responses(padded: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Mean of the mask in the ellipsoid at every (frame, block): (N,1,T,Hp,Wp) -> (N, T-K_t+1, Hp//s, Wp//s).

    The same numbers as ``conv3d(padded, kernel / |kernel|, stride=(1, s, s))``. The stride equals the kernel's
    side, so the blocks never overlap in space: one matrix product per frame and block gives every temporal
    slice of the kernel at once, and K_t shifted slices are summed. Forward and backward are several times
    cheaper than the strided 3-D convolution on a CPU.
    """
    n, _, t, hp, wp = padded.shape
    kt, side = kernel.shape[0], kernel.shape[1]
    bh, bw = hp // side, wp // side
    blocks = padded[:, 0, :, :bh * side, :bw * side].reshape(n, t, bh, side, bw, side)
    w = (kernel / kernel.sum()).to(padded)
    y = torch.einsum("ntiajb,dab->ntijd", blocks, w)          # (N,T,bh,bw,K_t): every slice, every frame
    return sum(y[:, d:t - kt + 1 + d, :, :, d] for d in range(kt))


def core_loss(padded: torch.Tensor, kernel: torch.Tensor, counts: torch.Tensor,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """L_K, the spatio-temporal core loss, one value per mask. padded (N,1,T,Hp,Wp); counts (N,) = k_a.

    Responses r = (padded * ellipsoid) / |ellipsoid| at stride (1, side, side), sorted in descending order;
    L_K = mean over the top k of (r - 1)^2 + mean over the rest of r^2: exactly k whole ellipsoids on.
    """
    r = ellipsoid_responses(padded, kernel).flatten(1)
    perm = torch.randperm(r.shape[1], generator=generator, device="cpu").to(r.device)
    srt = r.index_select(1, perm).sort(dim=1, descending=True).values
    pos = torch.arange(srt.shape[1], device=srt.device).view(1, -1)
    k = counts.clamp(1, srt.shape[1]).view(-1, 1).to(srt.device)
    top = pos < k
    on = ((srt - 1) ** 2 * top).sum(1) / k.view(-1)
    rest = (~top).sum(1).clamp(min=1)
    off = (srt ** 2 * ~top).sum(1) / rest
    return on + off


def final_map(masks: torch.Tensor, final_blur: float) -> torch.Tensor:
    """Saliency (T,H,W) in [0,1]: masks (A,T,H,W) summed over areas, blurred per frame, divided by the max."""
    s = masks.float().sum(0, keepdim=True).transpose(0, 1)   # (T,1,H,W)
    s = gaussian_blur(s, final_blur)[:, 0]
    return s / s.max().clamp(min=1e-12)


# ----------------------------------------------------------------------------------------------- the loop
_PRECISION_NAME = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def autocast_dtype(device, precision: str = "auto", capability: tuple | None = None) -> torch.dtype | None:
    """The dtype the model's forward is autocast to on ``device``, or None for plain fp32.

    ``auto``: fp32 on the CPU (bf16 there is emulated and slower); on CUDA bf16 from compute capability 8.0
    (Ampere, Hopper), fp16 below (a T4 is 7.5 and has no bf16 units). ``capability`` (major, minor) stands in
    for the device's own, so the choice can be tested without a GPU. ``fp32``, ``bf16`` and ``fp16`` force it.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    device = torch.device(device)
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if capability is None:
        capability = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if tuple(capability) >= BF16_CAPABILITY else torch.float16


def describe_precision(device, precision: str = "auto", capability: tuple | None = None) -> str:
    """``fp32``, ``bf16`` or ``fp16``: what :func:`autocast_dtype` chooses, as a word for reports."""
    return _PRECISION_NAME[autocast_dtype(device, precision, capability)]


def normalised_gradient(grad: torch.Tensor, n: int) -> torch.Tensor:
    """Divide, in place, the gradient of each of the ``n`` masks (grad: (n·T, 1, gh, gw)) by its root mean square
    over the mask's parameters (optimizer="nsgd"). The direction is the objective's; the step's length is then
    ``lr`` whatever the scale of the model's gradients, which differs from model to model (docs/method.md §7)."""
    g = grad.view(n, -1)
    g.div_(g.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-12))
    return grad


def _model_terms(model, pyramid, mask, tgt, games, weight, chunk, dtype=None, compiled=False, contrast=None):
    """Rewards of the perturbed clips, back-propagated to ``mask`` (a leaf), ``chunk`` masks per model call.

    The model's forward runs under autocast to ``dtype`` (None: fp32); the reward is computed in fp32. Under
    fp16 the backward pass is scaled by ``FP16_LOSS_SCALE`` (and by half again whenever a gradient overflows)
    and ``mask.grad`` unscaled, as mixed-precision training does, so the mask's gradient keeps its fp32 value.
    Returns (reward (n,), probability of the target under the first game (n,), model evaluations).
    """
    scale = FP16_LOSS_SCALE if dtype == torch.float16 else 1.0
    while True:
        rewards, probs, evaluations = [], [], 0
        for lo in range(0, mask.shape[0], chunk):
            m, t = mask[lo:lo + chunk], tgt[lo:lo + chunk]
            b = contrast[lo:lo + chunk] if contrast is not None else None
            total = 0
            for game in games:
                m_game = m if game == "preserve" else 1 - m
                x = pyramid_lookup(compiled, pyramid, m_game)(pyramid, m_game)
                with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    logits = model(x)
                r = reward(logits, t, game, b)
                total = total + r
                evaluations += x.shape[0]
                if game == games[0]:
                    probs.append(torch.exp(-r.detach()) if game == "preserve" else -torch.expm1(-r.detach()))
            (weight * scale * total).sum().backward()
            rewards.append(total.detach())
        if scale == 1.0:
            return torch.cat(rewards), torch.cat(probs), evaluations
        if bool(torch.isfinite(mask.grad).all()) or scale <= 1.0:
            mask.grad.div_(scale)
            return torch.cat(rewards), torch.cat(probs), evaluations
        scale = max(1.0, scale / 2)   # an fp16 gradient overflowed: redo the step at half the scale
        mask.grad = None


def decision_gradient(model, pyramid: torch.Tensor, targets: torch.Tensor, games: Sequence[str], chunk: int,
                      dtype=None, contrast: torch.Tensor | None = None,
                      points: int = START_POINTS) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The reward's gradient with respect to a uniform mask, summed where the model's decision changes.

    The gradient at the all-ones mask says little when the model is saturated, and a uniform mask blurred
    past the scale of the evidence gives a flat reward: on a model that reads fine texture the probability
    falls from 0.92 to 0.02 between uniform masks 0.90 and 0.85 (docs/method.md §7). So the pyramid's levels are
    scored first (one forward each, uniform masks u = l/(L-1)); in the interval between two levels where the
    reward changes most, the gradient is taken at ``points`` uniform masks and summed: integrated gradients
    along the blur (Xu et al., CVPR 2020), on the stretch of the path where the output moves.

    When blurring the whole clip moves a target's reward by less than ``START_MIN_CHANGE`` (0.1 nats, p within
    about 10 %), the model does not decide anything along the blur, and its gradient would only echo the input's
    structure (what a randomly initialised network's gradient shows, Adebayo et al., NeurIPS 2018): that
    target is marked ``moved`` False, and its masks keep the paper's all-ones start (trained toy model: 0.75-2.2
    nats; the same network re-initialised: 0.005-0.04).

    targets (G,) class indices; games as the optimisation's; contrast (G,) or None. Returns the gradient
    (G,1,T,H,W) (negative where keeping more raises the target), ``moved`` (G,) bool, and the passes made.
    """
    levels, device = pyramid.shape[0], pyramid.device
    logits = []
    with torch.no_grad():
        for lo in range(0, levels, chunk):
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits.append(model(pyramid[lo:lo + chunk]).float())
    logits = torch.cat(logits)                                     # (L,K): level l is the uniform mask l/(L-1)
    G = targets.shape[0]
    energy = torch.zeros(G, levels, device=device)
    for game in games:
        lv = torch.arange(levels, device=device)
        rows = logits[lv if game == "preserve" else levels - 1 - lv]    # delete: the mask removes, 1 - u is kept
        for g in range(G):
            b = None if contrast is None else contrast[g].expand(levels)
            energy[g] += reward(rows, targets[g].expand(levels), game, b)
    interval = (energy[:, 1:] - energy[:, :-1]).abs().argmax(1)     # (G,) where the decision changes most
    moved = (energy.amax(1) - energy.amin(1)) >= START_MIN_CHANGE
    offsets = (torch.arange(points, device=device, dtype=torch.float32) + 0.5) / points
    u = ((interval.view(-1, 1).float() + offsets.view(1, -1)) / (levels - 1)).flatten()   # (G·points,)
    shape = pyramid.shape[2:]
    mask = u.view(-1, 1, 1, 1, 1).expand(-1, 1, *shape).contiguous().requires_grad_(True)
    rows_t = targets.repeat_interleave(points)
    rows_c = None if contrast is None else contrast.repeat_interleave(points)
    _, _, evaluations = _model_terms(model, pyramid, mask, rows_t, games, 1.0, chunk, dtype, False, rows_c)
    return mask.grad.view(G, points, 1, *shape).sum(1), moved, levels + evaluations


@dataclasses.dataclass
class Result:
    masks: torch.Tensor        # (targets, A, T, H, W) in [0,1]
    saliency: torch.Tensor     # (targets, T, H, W) in [0,1]
    history: dict              # energy / reward / probability / area error at the listed iterations
    iterations: int            # iterations actually run (early stop)
    evaluations: int           # clip forward+backward passes
    settings: Settings


def perturbation(model: torch.nn.Module, clip: torch.Tensor, targets: Sequence[int], *, method: str = "step",
                 settings: Settings = Settings(), seed: int = 0,
                 progress: Callable | None = None, cancel=None) -> Result:
    """Optimise perturbation masks for one clip and one or more targets.

    Args:
        model: maps a clip (B,3,T,H,W) in [0,1] to logits (B,K); its parameters are left untouched.
        clip: (1,3,T,H,W) in [0,1].
        targets: class indices; each gets its own masks, all in one batch with all areas.
        method: ``step`` (with L_K), ``3d-ep`` (no L_K), ``2d-ep`` (area per frame, no L_K; its own reward
            weight, fixed area weight and one area: :func:`method_settings`).
        settings: see :class:`Settings`; size-dependent constants are scaled from H when None.
        seed: seeds the tie-breaking permutations; the same inputs and seed give the same masks.
        progress: called as ``progress(done, total, info)`` every few iterations.
        cancel: a ``threading.Event`` or a callable; when set, raises :class:`Cancelled`.

    Returns a :class:`Result` with masks (targets, A, T, H, W) and saliency (targets, T, H, W).
    """
    with frozen(model):
        return _perturbation(model, clip, targets, method, settings, seed, progress, cancel)


def _perturbation(model, clip, targets, method, settings, seed, progress, cancel) -> Result:
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, not {method!r}")
    if settings.game not in GAMES:
        raise InputError(f"game must be one of {GAMES}, not {settings.game!r}")
    if not settings.areas or any(not 0 < a < 1 for a in settings.areas):
        raise InputError(f"areas must be fractions strictly between 0 and 1, got {list(settings.areas)}")
    if settings.iterations < 1:
        raise InputError("iterations must be at least 1")
    if settings.batch is not None and settings.batch < 1:
        raise InputError(f"batch must be at least 1 mask per model call, not {settings.batch}")
    if settings.param_padding not in PARAM_PADDINGS:
        raise InputError(f"param_padding must be one of {', '.join(PARAM_PADDINGS)}, not {settings.param_padding!r}")
    if settings.blur_border not in BLUR_BORDERS:
        raise InputError(f"blur_border must be one of {', '.join(BLUR_BORDERS)}, not {settings.blur_border!r}")
    if settings.optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {settings.optimizer!r}")
    if settings.init not in INITS:
        raise InputError(f"init must be one of {', '.join(INITS)}, not {settings.init!r}")
    _, _, T, H, W = clip.shape
    cfg = method_settings(settings, method, getattr(model, "areas", None)).scaled(H)
    if cfg.area_count is not None:   # the areas actually run (and reported)
        cfg = dataclasses.replace(cfg, areas=areas_kept(cfg.areas, cfg.area_count), area_count=None)
    device = clip.device
    gen = torch.Generator().manual_seed(seed)
    areas = torch.tensor(cfg.areas, dtype=torch.float32)
    A, G = len(cfg.areas), len(targets)
    n = A * G                                                  # masks: target-major, then area

    geo = mask_geometry(H, W, cfg.grid_step, cfg.sigma, cfg.param_padding)
    mkernel = smooth_mask_kernel(geo["step"], cfg.sigma, geo["radius"], cfg.subsample).to(device)
    gh, gw = geo["grid"]
    params = torch.ones(n * T, 1, gh, gw, device=device, requires_grad=True)
    fill = model.mean.view(3) if hasattr(model, "mean") else None
    with torch.no_grad():
        pyramid = blur_pyramid(clip.detach(), cfg.max_blur, kind=cfg.perturbation, fill=fill, border=cfg.blur_border)

    hp, wp = H + 2 * geo["margin"], W + 2 * geo["margin"]
    per_frame = method == "2d-ep"
    vol = hp * wp if per_frame else T * hp * wp
    refs = torch.stack([area_reference(vol, float(a), device) for a in areas]).repeat(G, 1)
    use_core = method == "step"
    if use_core:
        kt = cfg.key_frames or max(1, min(KEY_FRAMES, T // 2))
        kt = min(kt, T)
        ckernel = ellipsoid_kernel(kt, geo["margin"]).to(device)
        counts = torch.tensor(core_counts(cfg.areas, T * hp * wp, kt, geo["margin"]), device=device).repeat(G)
    tgt = torch.tensor(list(targets), device=device).repeat_interleave(A)
    games = ["preserve", "delete"] if cfg.game == "dual" else [cfg.game]
    contrast = None
    if cfg.contrast is not None:
        if int(cfg.contrast) in [int(t) for t in targets]:
            raise InputError("The class to contrast with must differ from the class explained.")
        contrast = torch.full_like(tgt, int(cfg.contrast))

    compiled = will_compile(cfg)
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam([params], lr=cfg.lr, betas=tuple(cfg.betas))
    else:
        opt = torch.optim.SGD([params], lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening)
    dtype = autocast_dtype(device, cfg.precision)
    history = {"iteration": [], "energy": [], "reward": [], "prob": [], "area_error": []}
    lam_area, evaluations, done = cfg.area_weight, 0, 0
    chunk = min(cfg.batch or n, n)
    prev = None
    report_every = max(1, cfg.iterations // 100)
    if cfg.init == "gradient":
        evaluations = _gradient_start(model, params, pyramid, geo, mkernel, (T, H, W), tgt, A, games,
                                      cfg.batch or max(LEVELS, START_POINTS) * G, dtype,
                                      contrast, areas.repeat(G).to(device), device, cancel)
    for it in range(cfg.iterations):
        if should_cancel(cancel):
            raise Cancelled("The explanation was cancelled.")
        padded, mask = smooth_mask(params, geo, mkernel, H, W, compiled=compiled)
        padded = padded.view(n, T, 1, hp, wp).transpose(1, 2)          # (n,1,T,Hp,Wp)
        mask = mask.view(n, T, 1, H, W).transpose(1, 2)                # (n,1,T,H,W)
        # The model's terms are differentiated with respect to the mask first, chunk by chunk, so a batch that
        # does not fit is split instead of failing; the chain rule then carries that gradient to the params.
        mask_in = mask.detach().requires_grad_(True)
        while True:
            try:
                rew, prob, evals = _model_terms(model, pyramid, mask_in, tgt, games, cfg.reward_weight, chunk,
                                                 dtype, compiled, contrast)
                break
            except torch.OutOfMemoryError:  # accelerator memory (CUDA, MPS, XPU)
                mask_in.grad = None
                chunk = halve_on_oom(chunk, device)
                if progress is not None:
                    progress(done, cfg.iterations, {"iteration": done, "batch": chunk})
        evaluations += evals
        la = area_loss(padded, refs, per_frame, gen)
        energy = lam_area * la
        lam_core = cfg.core_weight if it >= cfg.core_warmup else 0.0
        if use_core and lam_core > 0:
            energy = energy + lam_core * core_loss(padded, ckernel, counts, gen)
        opt.zero_grad(set_to_none=True)
        (energy.sum() + (mask * mask_in.grad).sum()).backward()
        energy = energy.detach() + cfg.reward_weight * rew
        if cfg.optimizer == "nsgd":
            normalised_gradient(params.grad, n)
        opt.step()
        with torch.no_grad():
            params.clamp_(0, 1)
        lam_area *= cfg.area_growth
        done = it + 1
        # Traces are read back only every few iterations: each read is a device sync on a GPU.
        if done % report_every == 0 or done == cfg.iterations or (cfg.early_stop > 0 and done % 10 == 0):
            history["iteration"].append(done)
            history["energy"].append(float(energy.sum()))
            history["reward"].append(float(rew.mean()))
            history["prob"].append(prob.cpu().tolist())
            history["area_error"].append(
                float((mask.detach().mean((1, 2, 3, 4)).cpu() - areas.repeat(G)).abs().mean()))
        if progress is not None and (done % report_every == 0 or done == cfg.iterations):
            progress(done, cfg.iterations, {"iteration": done, "probability": float(prob.mean()),
                                            "area_error": history["area_error"][-1]})
        if cfg.early_stop > 0 and done % 10 == 0:
            cur = mask.detach()
            if prev is not None and done >= cfg.min_iterations and (cur - prev).abs().mean() < cfg.early_stop:
                if progress is not None:
                    progress(cfg.iterations, cfg.iterations, {"iteration": done, "early_stop": True})
                break
            prev = cur.clone()

    with torch.no_grad():
        _, mask = smooth_mask(params, geo, mkernel, H, W)   # once, without gradients: eager (no recompile)
        masks = mask.view(G, A, T, H, W).float()
        saliency = torch.stack([final_map(masks[g], cfg.final_blur) for g in range(G)])
    # Record what ran: the precision the hardware chose ("auto" resolved) and whether compiling worked.
    cfg = dataclasses.replace(cfg, compile=bool(compiled and not _COMPILED.get("broken")),
                              precision=_PRECISION_NAME[dtype])
    return Result(masks=masks.cpu(), saliency=saliency.cpu(), history=history, iterations=done,
                  evaluations=evaluations, settings=cfg)


def _gradient_start(model, params, pyramid, geo, mkernel, shape, tgt, A, games, chunk, dtype, contrast, shares,
                    device, cancel) -> int:
    """init="gradient": set ``params`` (n·T,1,gh,gw), n = G·A, to 0/1, each mask on its area's ``shares`` of the
    cells that :func:`decision_gradient`, carried back through the generator at the all-ones start, ranks
    highest (left at all ones for a target whose reward does not move along the blur). Returns the passes made."""
    if should_cancel(cancel):
        raise Cancelled("The explanation was cancelled.")
    T, H, W = shape
    n = tgt.shape[0]
    first = torch.arange(0, n, A, device=tgt.device)               # one row per target (target-major rows)
    while True:
        try:
            grad, moved, evaluations = decision_gradient(model, pyramid, tgt[first], games, chunk, dtype,
                                                         None if contrast is None else contrast[first])
            break
        except torch.OutOfMemoryError:
            chunk = halve_on_oom(chunk, device)
    _, mask = smooth_mask(params, geo, mkernel, H, W)               # the all-ones start
    mask = mask.view(n, T, 1, H, W).transpose(1, 2)
    (g,) = torch.autograd.grad((mask * grad.repeat_interleave(A, 0)).sum(), params)
    with torch.no_grad():
        start = init_from_gradient(g.view(n, -1), shares)
        keep = ~moved.repeat_interleave(A).to(start.device)           # no decision along the blur: all ones
        start[keep] = 1.0
        params.copy_(start.view_as(params))
    return evaluations


def compiled_once() -> bool:
    """Whether this process has compiled the mask generator (the cost model adds the one-off compile otherwise)."""
    return bool(_COMPILED) and not _COMPILED.get("broken")


def will_compile(settings: Settings) -> bool:
    """Whether a run with ``settings`` compiles the mask generator: as set, or with ``compile=None`` when it is
    long enough to pay the one-off compile (``COMPILE_MIN_ITERATIONS``)."""
    return settings.compile if settings.compile is not None else settings.iterations >= COMPILE_MIN_ITERATIONS


def compiles(preset: str) -> bool:
    """Whether a run of ``preset`` with ``compile="auto"`` compiles the mask generator (long enough to pay the
    one-off compile: ``COMPILE_MIN_ITERATIONS``)."""
    return will_compile(Settings(**PRESETS[preset]))
