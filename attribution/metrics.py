"""Faithfulness and localisation metrics of an attribution map, and the reliability of a metric.

* **Deletion / insertion** (the "causal metric" of Petsiuk, Das, Saenko, "RISE", BMVC 2018, as the STEP
  authors ran it on video; ``docs/method.md`` §6.1). Units of the clip (blocks, pixels or
  whole frames) are ranked by saliency over the whole volume, one global order across frames. Deletion
  replaces the top ``i/steps`` share of the units with a substrate and watches the target's probability fall;
  insertion starts from the substrate and restores them. AUC = normalised trapezoid
  ``(Σ p − p_0/2 − p_S/2) / S``. Deletion: lower is better; insertion: higher is better.
* **Pointing game**, **temporal hit**, **mass in tube**: agreement with known evidence (boxes, event window).
* **Metric reliability** (§6.3): does a metric rank the methods the same way on every clip, with random last?

Shapes: clip (1,3,T,H,W) in [0,1]; saliency (T,H,W); boxes: one (x0,y0,x1,y1) end-exclusive box or None
per frame; event (start, end) frames, end exclusive.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence

import numpy as np
import torch

from attribution import step as step_mod
from attribution.common import batch_for_bytes, halve_on_oom, saliency_array
from attribution.errors import InputError

UNITS = ("block", "pixel", "frame")
SUBSTRATES = ("blur", "fade")
STEPS = 128                    # every script of the authors uses 128 steps (§6.1)
BLOCKS_PER_SIDE = 16           # cm_16: 7x7-px blocks at 112 px, i.e. a 16x16 grid per frame (§6.1)
POINTING_TOLERANCE = 4         # px; the authors' 7 px at 112 px input, scaled to the toy's 64 px (§6.2)
MAX_BATCH_BYTES = 64 * 2 ** 20  # perturbed input clips held at once (activations scale with it)


@dataclasses.dataclass
class Curves:
    """Deletion and insertion curves of one map on one clip, with the random-map baseline when computed.

    ``fractions[i]`` is the share of units removed (deletion) or restored (insertion) at step i; the curves
    hold the softmax probability of ``target`` there.
    """
    fractions: np.ndarray                 # (steps+1,) in [0,1]
    deletion: np.ndarray                  # (steps+1,)
    insertion: np.ndarray                 # (steps+1,)
    auc_deletion: float
    auc_insertion: float
    unit: str
    substrate: str
    steps: int
    target: int
    random_deletion: np.ndarray | None = None
    random_insertion: np.ndarray | None = None
    auc_random_deletion: float | None = None
    auc_random_insertion: float | None = None
    units: int = 0                        # how many units the clip was cut into
    evaluations: int = 0                  # clip forward passes spent
    seconds: float = 0.0

    def aucs(self) -> dict:
        out = {"auc_deletion": self.auc_deletion, "auc_insertion": self.auc_insertion}
        if self.auc_random_deletion is not None:
            out.update(auc_random_deletion=self.auc_random_deletion, auc_random_insertion=self.auc_random_insertion)
        return {k: round(float(v), 5) for k, v in out.items()}

    def summary(self) -> dict:
        """JSON-ready: settings, ``auc`` (a flat dict of the AUCs) and the curves themselves."""
        def curve(c):
            return None if c is None else [round(float(v), 5) for v in c]
        out = {"unit": self.unit, "substrate": self.substrate, "steps": self.steps, "target": self.target,
               "units": self.units, "evaluations": self.evaluations, "seconds": round(self.seconds, 3),
               "auc": self.aucs(), "fractions": curve(self.fractions), "deletion": curve(self.deletion),
               "insertion": curve(self.insertion)}
        if self.random_deletion is not None:
            out.update(random_deletion=curve(self.random_deletion), random_insertion=curve(self.random_insertion))
        return out

    def figure(self, title: str | None = None):
        from attribution import figures
        what = {"block": "blocks", "pixel": "pixels", "frame": "frames"}[self.unit]
        return figures.curves_figure(
            self.fractions, self.deletion, self.insertion, auc_deletion=self.auc_deletion,
            auc_insertion=self.auc_insertion, random_deletion=self.random_deletion,
            random_insertion=self.random_insertion, auc_random_deletion=self.auc_random_deletion,
            auc_random_insertion=self.auc_random_insertion, title=title,
            xlabel=f"fraction of the clip's {what} removed / restored (most salient first; {self.substrate} "
                   f"substrate)")


# ------------------------------------------------------------------------------------------------ helpers
def auc(curve) -> float:
    """Normalised trapezoid of a curve sampled at steps+1 equally spaced points: (Σp − p₀/2 − p_S/2) / S."""
    c = np.asarray(curve, dtype=np.float64).reshape(-1)
    if len(c) < 2:
        raise InputError("A curve needs at least two points to have an area.")
    return float((c.sum() - c[0] / 2 - c[-1] / 2) / (len(c) - 1))


def unit_ids(unit: str, T: int, H: int, W: int) -> tuple[np.ndarray, int]:
    """Which unit each pixel belongs to: ids (T,H,W) int64 in [0, n) and n.

    ``block``: squares of ``max(1, round(H/16))`` px in one frame (the last row/column of a frame may be
    narrower); ``pixel``: every pixel of every frame; ``frame``: whole frames.
    """
    t = np.arange(T).reshape(T, 1, 1)
    y = np.arange(H).reshape(1, H, 1)
    x = np.arange(W).reshape(1, 1, W)
    if unit == "pixel":
        return (t * H * W + y * W + x).astype(np.int64), T * H * W
    if unit == "frame":
        return np.broadcast_to(t, (T, H, W)).astype(np.int64), T
    if unit == "block":
        b = max(1, round(H / BLOCKS_PER_SIDE))
        gh, gw = math.ceil(H / b), math.ceil(W / b)
        return (t * gh * gw + (y // b) * gw + x // b).astype(np.int64), T * gh * gw
    raise InputError(f"unit must be one of {UNITS}, not {unit!r}")


def unit_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of each unit, 0 = most salient. Ties go to the lower unit index (a stable sort): deterministic."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


def substrate_clip(model, clip: torch.Tensor, substrate: str) -> torch.Tensor:
    """What removed units are replaced with, (1,3,T,H,W) in [0,1].

    ``blur``: each frame blurred with σ = the STEP pyramid's maximum blur (20 px at 112 px, scaled to H), the
    explanation's strongest perturbation (docs/method.md §6.1); beyond the frame this blur mirrors the clip
    (replicates it when the kernel is wider than the frame), where the pyramid's default sees the model's mean
    colour (docs/method.md §1.3): the two differ near the border only. ``fade``: the model's mean colour, i.e.
    zeros in normalised space, the authors' metric's other substrate; the clip's mean colour when the model has
    no ``mean``.
    """
    _, _, T, H, W = clip.shape
    if substrate == "blur":
        frames = clip[0].transpose(0, 1)                                 # (T,3,H,W)
        sigma = step_mod.MAX_BLUR * H / step_mod.REF_SIZE
        return step_mod.gaussian_blur(frames, sigma).transpose(0, 1).unsqueeze(0).clamp(0, 1)
    if substrate == "fade":
        mean = getattr(model, "mean", None)
        colour = mean.reshape(1, 3, 1, 1, 1) if isinstance(mean, torch.Tensor) and mean.numel() == 3 \
            else clip.mean((2, 3, 4), keepdim=True)
        return colour.to(clip).expand_as(clip).clone()
    raise InputError(f"substrate must be one of {SUBSTRATES}, not {substrate!r}")


def _probabilities(model, clip, substrate, pixel_rank: torch.Tensor, jobs: list[tuple[bool, int]], target: int,
                   batch: int, progress=None, done0=0, total=1) -> list[float]:
    """p(target) for each job (keep_top, k): keep_top keeps the k most salient units (insertion), otherwise
    all but them (deletion); the rest shows the substrate. Evaluated in batches, halving on out-of-memory."""
    out: list[float] = []
    i = 0
    while i < len(jobs):
        chunk = jobs[i:i + batch]
        keep_top = torch.tensor([j[0] for j in chunk], device=clip.device).view(-1, 1, 1, 1, 1)
        k = torch.tensor([j[1] for j in chunk], device=clip.device).view(-1, 1, 1, 1, 1)
        top = pixel_rank.unsqueeze(0).unsqueeze(0) < k                  # (B,1,T,H,W)
        keep = torch.where(keep_top, top, ~top).to(clip.dtype)
        x = substrate + keep * (clip - substrate)
        try:
            logits = model(x)
        except torch.OutOfMemoryError:
            del x, keep, top
            batch = halve_on_oom(batch, clip.device)
            continue
        out.extend(logits.float().softmax(-1)[:, target].cpu().tolist())
        i += len(chunk)
        if progress is not None:
            progress(done0 + i, total, {"stage": "curves"})
    return out


def _curves(model, clip, substrate, scores: np.ndarray, ids: np.ndarray, n: int, steps: int, target: int,
            batch: int, p_full: float, p_sub: float, progress, done0, total) -> tuple[np.ndarray, np.ndarray, int]:
    """Deletion and insertion curves of one ranking of the units (each distinct clip evaluated once)."""
    rank = torch.from_numpy(unit_ranks(scores)[ids]).to(clip.device)     # (T,H,W) rank of each pixel's unit
    ks = [(i * n) // steps for i in range(steps + 1)]                    # floor(i·n/S) units at step i
    inner = sorted({k for k in ks if 0 < k < n})
    jobs = [(False, k) for k in inner] + [(True, k) for k in inner]
    probs = _probabilities(model, clip, substrate, rank, jobs, target, batch, progress, done0, total)
    dele = {0: p_full, n: p_sub, **dict(zip(inner, probs[:len(inner)]))}
    ins = {0: p_sub, n: p_full, **dict(zip(inner, probs[len(inner):]))}
    return np.array([dele[k] for k in ks]), np.array([ins[k] for k in ks]), len(jobs)


def deletion_insertion(model, clip: torch.Tensor, saliency, target: int, steps: int = STEPS,
                       unit: str = "block", substrate: str = "blur", random_baseline: bool = False,
                       seed: int = 0, batch_size: int | None = None, max_batch_bytes: int = MAX_BATCH_BYTES,
                       progress: Callable | None = None) -> Curves:
    """Deletion and insertion curves of ``saliency`` for class ``target`` (and of a random map).

    Args:
        model: maps clips (B,3,T,H,W) in [0,1] to logits (B,K); put in eval mode, never given gradients.
        clip: (1,3,T,H,W) in [0,1], the clip the map explains (model input grid); or what :func:`explain`
            takes (a ``Video`` from ``load_clip``, a path, uint8 frames), prepared the same way.
        saliency: (T,H,W) numpy array or tensor, any real values (higher = more important); a map on a
            coarser (H',W') grid is upsampled bilinearly.
        target: class index whose softmax probability is the score.
        steps: S, the number of equal shares of the units (128, as the authors). Step i removes / restores
            the floor(i·n/S) highest-ranked of the n units; the model sees all S+1 points.
        unit: ``block`` (squares of about H/16 px in one frame, saliency averaged over the block; the
            authors' cm_16), ``pixel`` (cm) or ``frame`` (whole frames: the temporal curves). Units are ranked
            over the whole volume, one global order across frames; ties go to the earlier unit.
        substrate: ``blur`` (per-frame Gaussian of σ = STEP's maximum blur, 20 px at 112 px) or ``fade``
            (the model's mean colour, i.e. zeros in normalised space, as the authors' scripts).
        random_baseline: also compute the curves of an i.i.d. random map (seeded by ``seed``): a uniformly
            random order of the units, drawn once per call.
        batch_size: perturbed clips per forward pass; default as many as fit in ``max_batch_bytes`` of input
            (at most 256), halved on out-of-memory.
        progress: optional ``progress(done, total, info)``.

    Returns:
        :class:`Curves`; AUCs are normalised trapezoids, deletion lower is better, insertion higher is better.
    """
    t0 = time.perf_counter()
    if unit not in UNITS:
        raise InputError(f"unit must be one of {UNITS}, not {unit!r}")
    if substrate not in SUBSTRATES:
        raise InputError(f"substrate must be one of {SUBSTRATES}, not {substrate!r}")
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InputError(f"steps must be a positive integer, not {steps!r}")
    if not isinstance(clip, torch.Tensor) and clip is not None:   # a Video, a path or frames: as explain reads it
        from attribution.clip import prepare_clip
        clip = prepare_clip(model, clip).clip
    if not isinstance(clip, torch.Tensor) or clip.dim() != 5 or clip.shape[:2] != (1, 3):
        raise InputError(f"clip must be a tensor (1,3,T,H,W) in [0,1]; got {getattr(clip, 'shape', type(clip))}.")
    _, _, T, H, W = clip.shape
    sal = saliency_array(saliency, T, H, W)
    ids, n = unit_ids(unit, T, H, W)
    scores = np.bincount(ids.ravel(), weights=sal.ravel(), minlength=n) / np.bincount(ids.ravel(), minlength=n)
    target = int(target)

    device = next((p.device for p in model.parameters()), None) if hasattr(model, "parameters") else None
    device = getattr(model, "device", None) or device or clip.device
    clip = clip.detach().float().to(device)
    batch = batch_for_bytes(clip, batch_size, max_batch_bytes)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            sub = substrate_clip(model, clip, substrate)
            p_full, p_sub = (float(p) for p in model(torch.cat([clip, sub])).float().softmax(-1)[:, target])
            n_inner = len({(i * n) // steps for i in range(steps + 1)} - {0, n})
            total = 2 * n_inner * (2 if random_baseline else 1)
            dele, ins, ev = _curves(model, clip, sub, scores, ids, n, steps, target, batch, p_full, p_sub,
                                    progress, 0, total)
            rnd = None
            if random_baseline:
                rscores = np.random.default_rng(seed).standard_normal(n)
                rnd = _curves(model, clip, sub, rscores, ids, n, steps, target, batch, p_full, p_sub,
                              progress, ev, total)
    finally:
        if was_training:
            model.train()
    fractions = np.array([((i * n) // steps) / n for i in range(steps + 1)])
    curves = Curves(fractions=fractions, deletion=dele, insertion=ins, auc_deletion=auc(dele),
                    auc_insertion=auc(ins), unit=unit, substrate=substrate, steps=int(steps), target=target,
                    units=n, evaluations=2 + ev)
    if rnd is not None:
        curves.random_deletion, curves.random_insertion = rnd[0], rnd[1]
        curves.auc_random_deletion, curves.auc_random_insertion = auc(rnd[0]), auc(rnd[1])
        curves.evaluations += rnd[2]
    curves.seconds = time.perf_counter() - t0
    return curves


# ------------------------------------------------------------------------------------ localisation metrics
def _frames_of(saliency) -> np.ndarray:
    s = saliency.detach().float().cpu().numpy() if isinstance(saliency, torch.Tensor) else np.asarray(saliency)
    s = np.squeeze(s) if s.ndim > 3 else s
    if s.ndim != 3:
        raise InputError(f"The saliency map must be (T,H,W); got shape {s.shape}.")
    return s.astype(np.float64)


def _check_boxes(boxes, T: int) -> list:
    boxes = list(boxes)
    if len(boxes) != T:
        raise InputError(f"Give one box (or None) per frame: {len(boxes)} boxes for {T} frames.")
    return boxes


def pointing_game(saliency, boxes: Sequence, tolerance: int = POINTING_TOLERANCE) -> float:
    """Share of the frames with a box whose saliency maximum falls inside that box enlarged by ``tolerance``.

    saliency (T,H,W); boxes: per frame (x0,y0,x1,y1) end-exclusive, or None where there is no evidence.
    A frame whose map is flat (no maximum to point at) counts as a miss. NaN when no frame has a box.
    """
    s = _frames_of(saliency)
    boxes = _check_boxes(boxes, s.shape[0])
    hits = []
    for frame, box in zip(s, boxes):
        if box is None:
            continue
        if frame.max() <= frame.min():
            hits.append(False)
            continue
        y, x = np.unravel_index(int(np.argmax(frame)), frame.shape)
        x0, y0, x1, y1 = box
        hits.append(x0 - tolerance <= x < x1 + tolerance and y0 - tolerance <= y < y1 + tolerance)
    return float(np.mean(hits)) if hits else float("nan")


def temporal_hit(saliency_or_temporal, event: Sequence[int]) -> bool:
    """Whether the frame with the largest saliency mass lies in the event window [start, end).

    Accepts the map (T,H,W) (mass = sum over the frame) or per-frame importance (T,). Ties go to the earlier
    frame.
    """
    s = saliency_or_temporal
    s = s.detach().float().cpu().numpy() if isinstance(s, torch.Tensor) else np.asarray(s, dtype=np.float64)
    mass = s.reshape(s.shape[0], -1).sum(1) if s.ndim > 1 else s
    start, end = int(event[0]), int(event[1])
    return bool(start <= int(np.argmax(mass)) < end)


def mass_in_tube(saliency, boxes: Sequence) -> float:
    """Share of the map's total mass inside the evidence boxes (the tube); NaN for an all-zero map.

    A perfect map scores 1; a uniform map scores the tube's share of the volume (0.8 % on the toy task).
    """
    s = _frames_of(saliency)
    boxes = _check_boxes(boxes, s.shape[0])
    total = s.sum()
    if total <= 0:
        return float("nan")
    inside = sum(s[t, max(0, b[1]):b[3], max(0, b[0]):b[2]].sum() for t, b in enumerate(boxes) if b is not None)
    return float(inside / total)


# ------------------------------------------------------------------------------------------ reliability
def _average_ranks(row: np.ndarray) -> np.ndarray:
    """Ranks 0 (lowest) .. M-1 (highest); tied values share their mean rank."""
    order = np.argsort(row, kind="stable")
    ranks = np.empty(len(row), dtype=np.float64)
    ranks[order] = np.arange(len(row), dtype=np.float64)
    for v in np.unique(row):
        tie = row == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def method_ranks(scores, higher_is_better: bool = True) -> np.ndarray:
    """Per clip, the rank of each method: (n_clips, M), 0 = worst .. M−1 = best, ties share their mean rank."""
    s = np.asarray(scores, dtype=np.float64)
    return np.stack([_average_ranks(r if higher_is_better else -r) for r in s])


def sanity_weights(scores, random_index: int = 0, higher_is_better: bool = True) -> np.ndarray:
    """Per clip, w = (M−1−rank_random)/(M−1): 1 when the random map ranks last, 0 when it ranks first."""
    s = np.asarray(scores, dtype=np.float64)
    m = s.shape[1]
    return (m - 1 - method_ranks(s, higher_is_better)[:, random_index]) / (m - 1)


def reliability(scores, random_index: int = 0, higher_is_better: bool = True) -> float:
    """The authors' metric reliability α in [−1, 1] (docs/method.md §6.3): do the clips agree on the methods?

    Each clip acts as a rater that ranks the M methods by their score on it (0 = worst .. M−1 = best, ties
    sharing their mean rank). A clip that ranks the random map high is a bad rater; its weight is
    w = (M−1−rank_random)/(M−1): 1 when random is last, 0 when it is first. With ρ_ij the Spearman correlation
    of the rankings of clips i and j::

        α = Σ_{i<j} w_i w_j (ρ_ij + 1) / Σ_{i<j} w_i w_j − 1

    1: every clip ranks the methods alike with random last; 0: no agreement; negative: systematic
    disagreement. ``ρ_ij`` is 0 when a clip scores all methods alike (no ranking to agree with).

    Args:
        scores: (n_clips, M) metric values, e.g. insertion AUCs, one column per method.
        random_index: the column of the random map.
        higher_is_better: True for insertion AUC, False for deletion AUC.

    Returns:
        α, or NaN when fewer than two clips carry weight (every clip ranks random first, or only one clip):
        the metric then gives no usable ranking at all.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 2:
        raise InputError(f"scores must be (n_clips, M) with M >= 2 methods; got shape {s.shape}.")
    if not 0 <= random_index < s.shape[1]:
        raise InputError(f"random_index {random_index} is not a column of the {s.shape[1]} methods.")
    if not np.all(np.isfinite(s)):
        raise InputError("scores hold NaN or infinite values; drop those clips first.")
    ranks = method_ranks(s, higher_is_better)
    w = sanity_weights(s, random_index, higher_is_better)
    centred = ranks - ranks.mean(1, keepdims=True)
    norm = np.sqrt((centred ** 2).sum(1))
    unit = np.divide(centred, norm[:, None], out=np.zeros_like(centred), where=norm[:, None] > 0)
    rho = unit @ unit.T
    iu = np.triu_indices(len(s), k=1)
    ww = (w[:, None] * w[None, :])[iu]
    if ww.sum() <= 0:
        return float("nan")
    return float((ww * (rho[iu] + 1)).sum() / ww.sum() - 1)
