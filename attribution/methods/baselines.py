"""Comparison methods the paper measures STEP against, through Captum, plus two floors.

Every method is registered (:mod:`attribution.methods.registry`) with the one signature all methods share::

    result = fn(model, clip, target, *, seed=0, progress=None, cancel=None, preset=None, **options)

and returns a :class:`~attribution.methods.registry.MethodResult`: the saliency (T,H,W) in [0,1] on the CPU,
the options used and the clip forward(+backward) passes spent. ``preset`` belongs to the perturbation methods
and is ignored here.

Gradients are taken of the target's softmax probability, as the authors did (their models end in a
softmax; ``output="logit"`` switches to the logit). Gradient maps are post-processed as in the authors'
scripts: absolute value, mean over the colour channels, then scaled
with the minimum and the 99.9th percentile and clipped to [0, 1] (:func:`scale_percentile`).

Importing this module registers every method, so ``explain(model, clip, method="grad-cam")`` works. The model's
parameters never receive gradients.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
import torch.nn as nn
from captum.attr import (IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Occlusion,
                         Saliency)

from attribution import step as step_mod
from attribution.common import batch_for_bytes, check_cancel, check_clip, frozen, guess_token_grid
from attribution.errors import InputError
from attribution.methods.registry import MethodResult, register
from attribution.metrics import substrate_clip

PERCENTILE = 99.9       # upper end of the gradient maps' scale (docs/method.md §9)
IG_STEPS = 25           # Integrated Gradients steps in the authors' run_all.py (§9)
SG_SAMPLES = 25         # SmoothGrad samples (§9)
SG_NOISE = 0.15         # SmoothGrad noise std as a fraction of the clip's value range (§9)
GRAD_BATCH_BYTES = 32 * 2 ** 20  # input clips per forward+backward batch (activations scale with it)
OCCLUSION_BATCH_BYTES = 64 * 2 ** 20   # occluded clips per forward batch (no backward: twice the gradients')


# ------------------------------------------------------------------------------------------------ helpers
def scale_percentile(attr: torch.Tensor, percentile: float = PERCENTILE) -> torch.Tensor:
    """The authors' post-processing of gradient maps: attr (3,T,H,W) or (T,H,W) -> (T,H,W) in [0,1].

    |attr|, averaged over channels when there are any, minus its minimum, divided by (99.9th percentile −
    minimum), clipped to [0, 1]. An all-constant map becomes all zeros.
    """
    a = attr.detach().float()
    a = a.abs()
    if a.dim() == 4:
        a = a.mean(0)
    flat = a.flatten()
    lo = flat.min()
    k = max(1, min(flat.numel(), math.ceil(percentile / 100 * flat.numel())))
    hi = flat.kthvalue(k).values
    if float(hi - lo) <= 0:
        hi = flat.max()
    if float(hi - lo) <= 0:
        return torch.zeros_like(a).cpu()
    return ((a - lo) / (hi - lo)).clamp(0, 1).cpu()


def scale_max(a: torch.Tensor) -> torch.Tensor:
    """Positive part divided by its maximum: for maps whose sign means something (Grad-CAM, occlusion)."""
    a = a.detach().float().clamp(min=0)
    m = a.max()
    return (a / m).cpu() if float(m) > 0 else torch.zeros_like(a).cpu()


def _forward(model, output: str, cancel=None) -> Callable:
    """The function Captum attributes: the model's probabilities or logits, checking ``cancel`` before every
    model call, so that Stop ends a many-pass method (occlusion, IG, SmoothGrad) within one batch."""
    if output not in ("probability", "logit"):
        raise InputError(f"output must be 'probability' or 'logit', not {output!r}")

    def forward(x):
        check_cancel(cancel)
        y = model(x).float()
        return y.softmax(-1) if output == "probability" else y
    return forward


def _report(progress, done: int, total: int, stage: str) -> None:
    if progress is not None:
        progress(done, total, {"stage": stage})


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    """Seed the global generators Captum draws from, and restore them afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _method(name: str, display: str, short: str, kind: str, model_free: bool = False) -> Callable:
    """Register ``fn(model, clip, target, *, seed, cancel, **options) -> (saliency, {"settings", "evaluations"})``
    in the common frame of every comparison method: checked clip, frozen model (eval, no parameter grads),
    seeded generators, cancel checks, progress."""
    def wrap(fn: Callable) -> Callable:
        def run(model, clip, target, *, seed: int = 0, progress: Callable | None = None, cancel=None,
                preset=None, **opts) -> MethodResult:
            clip = check_clip(clip, getattr(model, "device", None) or clip.device)
            target = int(target)
            check_cancel(cancel)
            _report(progress, 0, 1, fn.__name__)
            with frozen(model), _seeded(seed, clip.device):
                sal, extras = fn(model, clip, target, seed=seed, cancel=cancel, **opts)
            check_cancel(cancel)
            _report(progress, 1, 1, fn.__name__)
            return MethodResult(saliency=sal, settings=extras.get("settings", {}),
                                evaluations=extras.get("evaluations"))
        run.__name__, run.__qualname__, run.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        run.__wrapped__ = fn
        return register(name, display=display, short=short, kind=kind, model_free=model_free)(run)
    return wrap


# ------------------------------------------------------------------------------------------- gradients
@_method("gradient", "Gradient (vanilla saliency)", "Gradient", "gradient")
def gradient(model, clip, target, *, seed=0, cancel=None, output: str = "probability"):
    """Plain gradient (Simonyan, Vedaldi, Zisserman 2014; the authors' ``g``): |∂p_c/∂x|, via Captum Saliency.

    Options: ``output`` "probability" (default, as the authors) or "logit". One forward+backward.
    """
    attr = Saliency(_forward(model, output, cancel)).attribute(clip.clone().requires_grad_(), target=target, abs=True)
    return scale_percentile(attr[0]), {"settings": {"output": output}, "evaluations": 1}


@_method("integrated-gradients", "Integrated Gradients", "Integrated Gradients", "gradient")
def integrated_gradients(model, clip, target, *, seed=0, cancel=None, steps: int = IG_STEPS,
                         output: str = "probability", internal_batch_size: int | None = None,
                         integration: str = "gausslegendre"):
    """Integrated Gradients (Sundararajan, Taly, Yan 2017; the authors' ``ig``), via Captum.

    (x − x₀) · ∫₀¹ ∂p_c(x₀ + α(x − x₀))/∂x dα with the black baseline x₀ = 0 in [0,1] space (the authors'
    normalised −1.8952/−1.7822/−1.7349 is black), ``steps`` = 25 points of Captum's ``integration`` rule,
    evaluated ``internal_batch_size`` clips at a time (default: as many as fit in 32 MiB of input).
    """
    ig = IntegratedGradients(_forward(model, output, cancel))
    batch = batch_for_bytes(clip, internal_batch_size, GRAD_BATCH_BYTES, cap=steps)
    attr = ig.attribute(clip.clone().requires_grad_(), baselines=torch.zeros_like(clip), target=target,
                        n_steps=int(steps), method=integration, internal_batch_size=batch)
    return scale_percentile(attr[0]), {
        "settings": {"steps": int(steps), "baseline": "black", "output": output, "integration": integration,
                     "internal_batch_size": batch}, "evaluations": int(steps)}


@_method("smoothgrad", "SmoothGrad", "SmoothGrad", "gradient")
def smoothgrad(model, clip, target, *, seed=0, cancel=None, samples: int = SG_SAMPLES, noise: float = SG_NOISE,
               variant: str = "smoothgrad_sq", output: str = "probability", batch_size: int | None = None):
    """SmoothGrad² (Smilkov et al. 2017; the authors' ``sg2``), via Captum NoiseTunnel over Saliency.

    E_ε[(∂p_c/∂x (x + ε))²], ε ~ N(0, (noise · (max x − min x))²), ``samples`` = 25 draws seeded by ``seed``.
    SmoothGrad² is the default because it is the authors' best gradient baseline and the one in their
    reliability study; ``variant="smoothgrad"`` averages the signed gradients instead (then |·|).
    """
    if variant not in ("smoothgrad", "smoothgrad_sq"):
        raise InputError(f"variant must be 'smoothgrad' or 'smoothgrad_sq', not {variant!r}")
    std = float(noise) * float(clip.max() - clip.min())
    batch = batch_for_bytes(clip, batch_size, GRAD_BATCH_BYTES, cap=samples)
    attr = NoiseTunnel(Saliency(_forward(model, output, cancel))).attribute(
        clip.clone().requires_grad_(), nt_type=variant, nt_samples=int(samples), nt_samples_batch_size=batch,
        stdevs=std, target=target, abs=False)
    return scale_percentile(attr[0]), {
        "settings": {"samples": int(samples), "noise": float(noise), "noise_std": round(std, 6),
                     "variant": variant, "output": output, "batch_size": batch}, "evaluations": int(samples)}


# -------------------------------------------------------------------------------------------- Grad-CAM
def infer_token_grid(model, n_tokens: int):
    """(T', H', W') grid of a transformer layer's ``n_tokens`` tokens, for a model that declares no
    ``token_grid`` (the model zoo gives every transformer it knows one): :func:`attribution.common.guess_token_grid`
    from the module's config, frames and crop. Raises InputError when none fits."""
    config = getattr(getattr(model, "module", model), "config", None)
    grid = guess_token_grid(n_tokens, int(model.num_frames), int(model.crop_size), config)
    if grid is None:
        raise InputError(f"Grad-CAM: cannot tell how the {n_tokens} tokens of layer {model.gradcam_layer!r} lie in "
                         "space-time; give the model a token_grid (model_zoo.TokenGrid) or pick a convolutional "
                         "layer.")
    return grid


class _TokenProbe(nn.Module):
    """Identity seen by Captum: it receives a transformer layer's tokens as a (B,C,t,h,w) feature map."""

    def forward(self, x):
        return x


def _tokens_to_grid_hook(probe: nn.Module, model):
    """Forward hook for a token layer: tokens -> grid -> probe -> tokens again (so Captum can hook the grid)."""
    cache = {}

    def hook(_module, _inputs, out):
        tokens = out[0] if isinstance(out, (tuple, list)) else out
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
            return None
        grid = getattr(model, "token_grid", None) or cache.get("grid") or infer_token_grid(model, tokens.shape[1])
        cache["grid"] = grid
        fmap = probe(grid.reshape(tokens))                                   # (B,C,t,h,w)
        b, c = fmap.shape[:2]
        order = [2 + "thw".index(d) for d in grid.order]
        flat = fmap.permute(0, *order, 1).reshape(b, -1, c)
        new = torch.cat([tokens[:, :grid.prefix], flat], 1) if grid.prefix else flat
        if isinstance(out, tuple):
            return (new, *out[1:])
        if isinstance(out, list):
            return [new, *out[1:]]
        return new
    return hook, cache


@_method("grad-cam", "Grad-CAM", "Grad-CAM", "gradient")
def gradcam(model, clip, target, *, seed=0, cancel=None, layer: str | None = None, output: str = "probability"):
    """Grad-CAM (Selvaraju et al. 2017; the authors' ``grad_cam``) on the model's ``gradcam_layer``, via Captum.

    ReLU(Σ_k α_k A_k) with α_k the gradient of p_c averaged over the layer's whole (t,h,w) grid (Captum's
    LayerGradCam; the authors' R(2+1)D variant averaged per time slice), upsampled trilinearly to (T,H,W)
    with ``LayerAttribution.interpolate`` and divided by its maximum. Transformer layers output tokens
    (B, N, C): they are reshaped to their (t,h,w) grid by the model's ``token_grid`` (or inferred from the
    config's tubelet and patch sizes), leading CLS tokens dropped.
    Options: ``layer`` (dotted name inside ``model.module``; default ``model.gradcam_layer``), ``output``.
    """
    name = layer or getattr(model, "gradcam_layer", None)
    if not name:
        raise InputError(f"Grad-CAM needs a layer: model {getattr(model, 'name', '?')!r} names no gradcam_layer; "
                         "pass layer='dotted.module.name'.")
    root = getattr(model, "module", model)
    try:
        target_layer = root.get_submodule(name)
    except AttributeError:
        raise InputError(f"Grad-CAM: {name!r} is not a layer of the model.") from None
    _, _, T, H, W = clip.shape
    probe = _TokenProbe()
    hook, cache = _tokens_to_grid_hook(probe, model)
    handle = target_layer.register_forward_hook(hook)
    try:
        with torch.no_grad():                     # find out whether the layer speaks tokens
            model(clip)
        captum_layer = probe if cache.get("grid") is not None else target_layer
        if captum_layer is target_layer:
            handle.remove()
        cam = LayerGradCam(_forward(model, output, cancel), captum_layer).attribute(
            clip.clone().requires_grad_(), target=target, relu_attributions=True)
    finally:
        handle.remove()
    if isinstance(cam, (tuple, list)):
        cam = cam[0]
    if cam.dim() == 4:                           # a 2-D layer (B,1,h,w): one map for every frame
        cam = cam.unsqueeze(2)
    if cam.dim() != 5:
        raise InputError(f"Grad-CAM: layer {name!r} gives a map of shape {tuple(cam.shape)}, not (B,1,t,h,w).")
    grid = tuple(cam.shape[2:])
    up = LayerAttribution.interpolate(cam.detach().float(), (T, H, W), interpolate_mode="trilinear")
    grid_info = cache.get("grid")
    return scale_max(up[0, 0]), {
        "settings": {"layer": name, "output": output, "layer_grid": list(grid),
                     "token_grid": None if grid_info is None else {"t": grid_info.t, "h": grid_info.h,
                                                                   "w": grid_info.w, "prefix": grid_info.prefix}},
        "evaluations": 2}


# ------------------------------------------------------------------------------------------- occlusion
def occlusion_plan(shape, window: tuple | None = None, strides: tuple | None = None,
                   batch_size: int | None = None) -> tuple[tuple, tuple, int, int]:
    """(window, strides, windows, batch) of :func:`occlusion` on a (T, H, W) clip: the checked window and strides
    over (C,T,H,W), how many windows they make (its model passes) and how many go in one forward (what the cost
    model counts, attribution/cost.py)."""
    T, H, W = (int(v) for v in shape)
    window = tuple(int(v) for v in (window or (3, min(2, T), max(1, H // 8), max(1, W // 8))))
    strides = tuple(int(v) for v in (strides or window))
    if len(window) != 4 or len(strides) != 4 or window[0] != 3:
        raise InputError("occlusion window and strides are 4 numbers over (C,T,H,W), with C = 3, "
                         f"e.g. (3, 2, {H // 8}, {W // 8}); got {window} and {strides}.")
    if any(s > w for s, w in zip(strides[1:], window[1:])) or any(w > d for w, d in zip(window[1:], (T, H, W))):
        raise InputError(f"occlusion windows {window} must fit the clip (3,{T},{H},{W}) and not be smaller "
                         f"than the strides {strides}.")
    counts = [math.ceil((d - w) / s) + 1 for d, w, s in zip((T, H, W), window[1:], strides[1:])]
    batch = batch_for_bytes(3 * T * H * W * 4, batch_size, OCCLUSION_BATCH_BYTES)
    return window, strides, int(math.prod(counts)), batch


@_method("occlusion", "Occlusion (sliding 3-D box)", "Occlusion", "occlusion")
def occlusion(model, clip, target, *, seed=0, cancel=None, window: tuple | None = None,
              strides: tuple | None = None, substrate: str = "blur", output: str = "probability",
              batch_size: int | None = None):
    """Occlusion (Zeiler, Fergus 2014) with 3-D windows sliding over (C,T,H,W), via Captum Occlusion.

    Each window of the clip is replaced by the ``substrate`` (``blur``: the per-frame blurred clip, as the
    deletion metric; ``fade``: the model's mean colour); the attribution of a pixel is the drop of p_c
    averaged over the windows that covered it. Only drops are evidence: the positive part is divided by its
    maximum. Default window (3, 2, H/8, W/8) moved by itself: non-overlapping 2-frame tiles, 8 x 8 x 8 = 512
    evaluations at 16 frames (pass ``strides=(3, 2, H/16, W/16)`` for half-overlapping, smoother maps at
    3.5 x the cost).
    """
    window, strides, n, batch = occlusion_plan(clip.shape[2:], window, strides, batch_size)
    with torch.no_grad():
        base = substrate_clip(model, clip, substrate)
        attr = Occlusion(_forward(model, output, cancel)).attribute(
            clip, sliding_window_shapes=window, strides=strides, baselines=base, target=target,
            perturbations_per_eval=int(batch))
    return scale_max(attr[0].mean(0)), {
        "settings": {"window": list(window), "strides": list(strides), "substrate": substrate, "output": output},
        "evaluations": n + 1}


# ---------------------------------------------------------------------------------------------- floors
@_method("random", "Random map (a baseline to beat)", "Random", "reference", model_free=True)
def random(model, clip, target, *, seed=0, cancel=None):
    """The random map: i.i.d. uniform values in [0, 1], seeded. Every faithful method must beat it."""
    _, _, T, H, W = clip.shape
    gen = torch.Generator().manual_seed(int(seed))
    return torch.rand(T, H, W, generator=gen), {"settings": {"distribution": "uniform"}, "evaluations": 0}


@_method("frame-difference", "Frame difference (motion only, a baseline)", "Frame difference", "reference",
         model_free=True)
def frame_difference(model, clip, target, *, seed=0, cancel=None, sigma: float | None = None):
    """A low-level floor: where the clip changes. No model involved; a real method must beat it.

    e_t = sqrt(Σ_c (x_t − x_{t−1})²) per pixel, averaged with the next frame's difference where both exist
    (so frame 0 gets the first difference), blurred per frame with σ = the final blur of STEP (10 px at
    112 px, scaled to H), divided by the global maximum.
    """
    _, _, T, H, W = clip.shape
    x = clip[0]                                                   # (3,T,H,W)
    if T < 2:
        return torch.zeros(T, H, W), {"settings": {}, "evaluations": 0}
    d = ((x[:, 1:] - x[:, :-1]) ** 2).sum(0).sqrt()               # (T-1,H,W): change from t to t+1
    e = torch.zeros(T, H, W, device=x.device)
    n = torch.zeros(T, 1, 1, device=x.device)
    e[1:] += d
    n[1:] += 1
    e[:-1] += d
    n[:-1] += 1
    e = e / n
    s = step_mod.FINAL_BLUR * H / step_mod.REF_SIZE if sigma is None else float(sigma)
    e = step_mod.gaussian_blur(e.unsqueeze(1), s)[:, 0]
    return scale_max(e), {"settings": {"sigma": round(s, 4)}, "evaluations": 0}


