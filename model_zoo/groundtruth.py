"""Ground truth at real input sizes: a procedural task whose evidence is known in space and time.

The toy task (``model_zoo/toy.py``) checks attribution on a 45k-parameter CNN at 16 x 64 px, where the
evidence is 0.8 % of the clip. Real models see 160-256 px, where the evidence (a person, a hand, a ball)
fills several percent to a third of the frame, and transformers see 16 x 16 patches and two-frame tubelets.
This task has those proportions, at any frame count and size (the models' own, see ``GEOMETRY``):

Task. A clip shows three striped discs of one colour pair on the toy's textured background. Every disc
covers 7-13 % of the frame and drifts at the same speed along a smoothly turning path; the distractors keep
clear of the evidence (in about 95 % of its frames). The class is the orientation of the stripes of one disc,
the *evidence*: 0, 45, 90 or 135 degrees (4 classes); it is present only during an event window (35-65 % of
the clip). The others, the *distractors*, carry stripes of the same two colours, period and mean brightness
at an orientation no class has (22.5 degrees off a class's: ``DISTRACTOR_ANGLES``), and come and go at
random (one of them stays the whole clip). Colour, brightness and motion energy are the same for every disc,
so a low-level map points at the evidence about as often as at any other disc (``low_level_floor``).

Why straight off-class stripes (task version 5) rather than concentric rings (version 4): a ring holds every
orientation, so a mask that keeps one arc of a ring and blurs the rest *makes* a patch of a class's stripes.
The version-4 models answered such a carved arc with 0.84-0.95 confidence, and STEP's preservation masks
found those arcs instead of the evidence (docs/groundtruth.md). Any part of a straight off-class grating is
still off-class.

``generate(n, seed, frames=16, size=224)`` returns :class:`GTClip` items (frames, label, the evidence's
bounding box in every frame or None, the event window, the distractors' boxes). ``python -m
model_zoo.groundtruth train --model gt_x3d_xs`` trains one of the registry entries of
``model_zoo/groundtruth_models.py`` from scratch (deterministic on CPU, resumable, through an easier-first
curriculum, ``CURRICULUM``) and writes its fp16 weights into ``model_zoo/weights/``; ``eval`` measures the
shipped weights (accuracy, confinement, low-level floor).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model_zoo.groundtruth_models import GEOMETRY, LABELS, WEIGHTS, load_weights, weights_path
from model_zoo.toy import ToyClip, augment, background, hsv_to_rgb

# Direction (x right, y down) along which the stripes' intensity varies; the stripes run perpendicular to it.
ANGLES = (math.pi / 2, 0.0, math.pi / 4, 3 * math.pi / 4)
# The distractors' orientations: halfway between two classes' (22.5 degrees off the nearest).
DISTRACTOR_ANGLES = tuple(a + math.pi / 8 for a in ANGLES)
DIAMETER = (0.3, 0.4)        # disc diameter as a fraction of the frame side: 7.1-12.6 % of the frame's area
GAP = 0.02                   # discs keep this much (fraction of the side) apart: none hides another
TRIES = 400                  # paths drawn per distractor to find one that keeps the gap
PERIOD = 0.055               # stripe / ring period, fraction of the frame side (12 px at 224)
SPEED = 0.03                 # px per frame, fraction of the frame side, the same for every disc
TURN = 0.3                   # rad, standard deviation of a disc's change of heading per frame
EVENT = (0.35, 0.65)         # evidence window length, fraction of the clip
N_DISTRACTORS = (2, 2)       # [lo, hi]
DARK = 0.3                   # the dark tone is the disc colour times this
NOISE = 0.02                 # sensor noise (standard deviation, [0,1] scale)
TRAIN_SEED = 1000            # training batches come from seeds >= this; tests and benchmarks use smaller ones
TASK_VERSION = 5             # 1: checkerboard distractors, 2: discs of 4-8 %, 3: no curriculum (none learnt),
#                              4: ring distractors (masks carve class stripes out of them), 5: off-class stripes


@dataclasses.dataclass
class GTClip(ToyClip):
    discs: list = dataclasses.field(default_factory=list)  # per frame: evidence (cx, cy, r) or None
    distractor_discs: list = dataclasses.field(default_factory=list)  # per frame: list of (cx, cy, r)

    @property
    def label_name(self) -> str:
        return LABELS[self.label]


def event_length(frames: int, rng) -> int:
    lo = max(1, math.ceil(EVENT[0] * frames))
    hi = max(lo, min(frames - 1, math.floor(EVENT[1] * frames)))
    return int(rng.integers(lo, hi + 1))


def _drift(rng, n: int, radius: float, size: int, speed: float) -> np.ndarray:
    """Centres (n,2) of a disc moving at constant speed along a smoothly turning path, reflected at walls."""
    lo, hi = radius, size - radius
    p = rng.uniform(lo, hi, size=2)
    heading = rng.uniform(0, 2 * math.pi)
    out = np.empty((n, 2))
    for i in range(n):
        out[i] = p
        heading += rng.normal(0, TURN)
        p = p + speed * np.array([math.cos(heading), math.sin(heading)])
        for k in range(2):
            if p[k] < lo:
                p[k], heading = 2 * lo - p[k], (math.pi - heading) if k == 0 else -heading
            elif p[k] > hi:
                p[k], heading = 2 * hi - p[k], (math.pi - heading) if k == 0 else -heading
    return out


def _apart(obj, others, gap: float) -> bool:
    """Whether disc ``obj`` (first frame, centres, radius) keeps ``gap`` px from every disc of ``others`` in
    every frame both are present."""
    first, path, r = obj[:3]
    for f2, p2, r2 in (o[:3] for o in others):
        lo, hi = max(first, f2), min(first + len(path), f2 + len(p2))
        if hi > lo:
            d = np.linalg.norm(path[lo - first:hi - first] - p2[lo - f2:hi - f2], axis=1)
            if (d < r + r2 + gap).any():
                return False
    return True


def _texture(u, v, angle: float, phase: float, period: float) -> np.ndarray:
    """Soft-edged two-tone stripes in [0,1] with mean 0.5, varying along direction ``angle``."""
    w = 2 * math.pi / period
    return 0.5 + 0.5 * np.clip(3 * np.cos(w * (u * math.cos(angle) + v * math.sin(angle)) + phase), -1, 1)


def _draw(frame, cx, cy, r, angle, phase, period, light, dark) -> tuple:
    """Paint a striped disc into ``frame`` (H,W,3 float) in place; returns its box (x0,y0,x1,y1)."""
    size = frame.shape[0]
    x0, y0 = max(0, int(math.floor(cx - r))), max(0, int(math.floor(cy - r)))
    x1, y1 = min(size, int(math.ceil(cx + r)) + 1), min(size, int(math.ceil(cy + r)) + 1)
    v, u = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    u, v = u + 0.5 - cx, v + 0.5 - cy
    alpha = np.clip(r - np.sqrt(u * u + v * v) + 0.5, 0, 1)[..., None]   # anti-aliased edge
    tex = _texture(u, v, angle, phase, period)[..., None]
    colour = dark + (light - dark) * tex
    region = frame[y0:y1, x0:x1]
    frame[y0:y1, x0:x1] = region * (1 - alpha) + colour * alpha
    return (x0, y0, x1, y1)


def _clip(rng, frames: int, size: int, distractors: bool = True, whole: bool = False,
          diameter=DIAMETER, evidence: bool = True) -> GTClip:
    """One clip of the task; ``distractors=False``, ``whole=True`` (evidence in every frame) and a larger
    ``diameter`` give the easier clips of the training curriculum (``CURRICULUM``), never used for evaluation.
    ``evidence=False``: the same clip without its evidence disc (no boxes; the label is what it would have been),
    one of the training's clips without an answer (``NULL_SHARE``)."""
    label = int(rng.integers(len(LABELS)))
    length = frames if whole else event_length(frames, rng)
    start = int(rng.integers(0, frames - length + 1))
    bg = background(rng, size)
    light = np.array(hsv_to_rgb(rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.85, 1.0)))
    dark = DARK * light
    period, speed = PERIOD * size, SPEED * size
    objects = []   # (first frame, centres, radius, stripe angle, phase); the evidence first
    r = rng.uniform(*diameter) * size / 2
    objects.append((start, _drift(rng, length, r, size, speed), r, ANGLES[label], rng.uniform(0, 2 * math.pi)))
    for j in range(int(rng.integers(N_DISTRACTORS[0], N_DISTRACTORS[1] + 1)) if distractors else 0):
        dl = frames if j == 0 else int(rng.integers(math.ceil(frames / 2), frames + 1))
        ds = int(rng.integers(0, frames - dl + 1))
        rd = rng.uniform(*DIAMETER) * size / 2
        for _ in range(TRIES):   # the last path drawn is kept even if it overlaps (rare)
            path = _drift(rng, dl, rd, size, speed)
            if _apart((ds, path, rd), objects, GAP * size):
                break
        objects.append((ds, path, rd, DISTRACTOR_ANGLES[int(rng.integers(len(DISTRACTOR_ANGLES)))],
                        rng.uniform(0, 2 * math.pi)))
    out = np.empty((frames, size, size, 3), dtype=np.float64)
    boxes, discs, dboxes, ddiscs = [], [], [], []
    for t in range(frames):
        f = bg.copy()
        fb, fd = [], []
        # distractors first, the evidence last: its box always shows its own pixels
        for j, (first, path, rad, angle, phase) in enumerate(objects[1:] + (objects[:1] if evidence else [])):
            if first <= t < first + len(path):
                cx, cy = path[t - first]
                box = _draw(f, cx, cy, rad, angle, phase, period, light, dark)
                if j < len(objects) - 1:
                    fb.append(box)
                    fd.append((float(cx), float(cy), float(rad)))
                else:
                    boxes.append(box)
                    discs.append((float(cx), float(cy), float(rad)))
        if not (evidence and start <= t < start + length):
            boxes.append(None)
            discs.append(None)
        dboxes.append(fb)
        ddiscs.append(fd)
        f += rng.normal(0, NOISE, f.shape)
        out[t] = f
    out = (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
    return GTClip(out, label, boxes, (start, start + length), dboxes, discs, ddiscs)


def generate(n: int, seed: int = 0, frames: int = 16, size: int = 224, **stage) -> list[GTClip]:
    """``n`` clips of ``frames`` x ``size`` px, the same for the same arguments. Seeds >= TRAIN_SEED train.
    ``stage`` (``distractors``, ``whole``, ``diameter``) selects an easier curriculum stage, for training only."""
    rng = np.random.default_rng(seed)
    return [_clip(rng, frames, size, **stage) for _ in range(n)]


def evidence_fraction(frames: int, size: int) -> float:
    """Expected share of the clip's volume inside the evidence's boxes (the tube), from the generator's
    parameters alone (the mean box area times the mean share of frames in the event window). A box is whole
    pixels around the disc and its anti-aliased rim: about 2 px wider than the diameter (10 % more area at
    112 px)."""
    lo, hi = DIAMETER
    mean_d2 = (hi ** 3 - lo ** 3) / (3 * (hi - lo))          # E[d^2] for d uniform on [lo, hi]
    mean_d2 += 4 * (lo + hi) / 2 / size + 4 / size ** 2      # E[(d + 2/size)^2]
    lo_l = max(1, math.ceil(EVENT[0] * frames))
    hi_l = max(lo_l, min(frames - 1, math.floor(EVENT[1] * frames)))
    return mean_d2 * (lo_l + hi_l) / 2 / frames


def default_areas(evidence: float, height: int, width: int | None = None) -> tuple:
    """The one rule for a model's default STEP areas: 1, 2 and 4 times the expected evidence share of the
    clip, as shares of the padded canvas the area loss counts (``evidence * step.frame_share(H, W)``: the frame
    is about 0.70 of it), rounded up to whole percent. It gives the toy's (0.01, 0.02, 0.03) from its 0.83 %
    of a 64 px clip (0.59 % of the canvas) and (0.05, 0.10, 0.19) for the ground-truth models' 6.5 %."""
    from attribution.step import frame_share
    share = evidence * frame_share(height, width)
    return tuple(math.ceil(round(k * share * 100, 6)) / 100 for k in (1, 2, 4))


def pointing_tolerance(size: int) -> int:
    """The authors' 7 px at 112 px input, scaled with the crop (4 px at the toy's 64, 14 at 224)."""
    return round(7 * size / 112)


# --------------------------------------------------------------------------------------- checks on a model
def _tensor(clips) -> torch.Tensor:
    return torch.from_numpy(np.stack([c.frames for c in clips])).permute(0, 4, 1, 2, 3).float() / 255.0


def evaluate(model, n: int = 50, seed: int = 7, batch: int = 10) -> float:
    """Accuracy of ``model`` (a VideoClassifier) on ``n`` fresh clips of its own geometry."""
    correct = 0
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for i in range(0, n, batch):
            clips = [_clip(rng, model.num_frames, model.crop_size) for _ in range(min(batch, n - i))]
            pred = model(_tensor(clips).to(model.device)).argmax(-1).cpu()
            correct += int((pred == torch.tensor([c.label for c in clips])).sum())
    return correct / n


def _disc_mask(discs, frames: int, size: int, margin: float) -> torch.Tensor:
    """(1,1,T,H,W) float: 1 on the disc (cx, cy, r) of every frame (grown by ``margin`` px), 0 where None."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    m = np.zeros((frames, size, size), dtype=np.float32)
    for t, d in enumerate(discs):
        if d is not None:
            cx, cy, r = d
            m[t] = np.clip(r + margin - np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) + 0.5, 0, 1)
    return torch.from_numpy(m)[None, None]


def evidence_mask(clip: GTClip, margin: float = 0.0) -> torch.Tensor:
    """(1,1,T,H,W) float: 1 on the evidence disc (grown by ``margin`` px) in every frame it is present."""
    return _disc_mask(clip.discs, clip.frames.shape[0], clip.frames.shape[1], margin)


def distractor_mask(clip: GTClip, margin: float = 0.0) -> torch.Tensor:
    """The same for the distractor that stays the whole clip (the first of every frame's list)."""
    return _disc_mask([d[0] if d else None for d in clip.distractor_discs], clip.frames.shape[0],
                      clip.frames.shape[1], margin)


def confinement(model, clips, margin: float | None = None) -> dict:
    """Is the evidence where the generator says? Blur (per frame, σ = 20 px at 112 px, as STEP's strongest
    perturbation) everything but the evidence disc, then only the disc, and read the prediction; as a control,
    blur only the distractor that stays the whole clip (a disc of the same kind of size, in every frame).

    Returns the share of clips whose true class stays top-1 with only the evidence kept (``keep``), the share
    whose true-class probability falls below 0.5 with only the evidence blurred (``destroy``), the accuracy
    with only the evidence blurred (``blurred_accuracy``: chance, 0.25, for a model that reads the disc; a
    model without its evidence answers its default class, right for that class's clips), the share whose true
    class stays top-1 with the distractor blurred (``control_keep``), and the mean probabilities.
    """
    from attribution.step import blur_pyramid
    rows = []
    for c in clips:
        size = c.frames.shape[1]
        clip = model.prepare(c.frames)
        blurred = blur_pyramid(clip, max_blur=size * 20 / 112)[0].unsqueeze(0)
        grow = margin if margin is not None else 0.02 * size
        m, d = evidence_mask(c, grow).to(clip), distractor_mask(c, grow).to(clip)
        with torch.no_grad():
            p = [model(x).softmax(-1)[0] for x in (clip, clip * m + blurred * (1 - m), clip * (1 - m) + blurred * m,
                                                    clip * (1 - d) + blurred * d)]
        rows.append((int(p[1].argmax()) == c.label, float(p[2][c.label]) < 0.5, int(p[2].argmax()) == c.label,
                     int(p[3].argmax()) == c.label, *(float(q[c.label]) for q in p)))
    r = [float(v) for v in np.array(rows, dtype=np.float64).mean(0)]
    keys = ("keep", "destroy", "blurred_accuracy", "control_keep", "p_clean", "p_evidence_only",
            "p_evidence_blurred", "p_distractor_blurred")
    return {"clips": len(clips), **dict(zip(keys, r))}


def tubelet(model) -> int:
    """Frames per token in time: a transformer's tubelet (VideoMAE: 2), 1 for a model without a token grid."""
    grid = getattr(model, "token_grid", None)
    return max(1, model.num_frames // grid.t) if grid is not None else 1


def frames_read(model, clips, margin: float | None = None) -> dict:
    """Which frame of each tubelet the model reads the evidence from, asked of the model itself.

    A tubelet embedding (a Conv3d over ``k`` frames) may learn to read one of its frames and ignore the rest:
    the evidence is then on screen in frames the model never uses, and a faithful map leaves them dark. For each
    position j < k, the evidence is blurred only in the frames t with t % k == j (as :func:`confinement` blurs
    it, σ = 20 px at 112 px), then kept only there (everything else blurred). Position j counts as *read* when
    blurring it there removes at least half of what blurring the evidence in every frame removes from the
    class's mean probability. Returns ``tubelet`` (k), ``p_clean``, ``p_all_blurred``, ``p_blurred`` and
    ``p_only`` (per position) and ``read`` (the positions read; [0] for a model without tubelets that reads its
    evidence at all).
    """
    from attribution.step import blur_pyramid
    k = tubelet(model)
    p_clean, p_all, p_blur, p_only = [], [], [[] for _ in range(k)], [[] for _ in range(k)]
    for c in clips:
        size = c.frames.shape[1]
        clip = model.prepare(c.frames)
        blurred = blur_pyramid(clip, max_blur=size * 20 / 112)[0].unsqueeze(0)
        ev = evidence_mask(c, margin if margin is not None else 0.02 * size).to(clip)
        with torch.no_grad():
            def p(x):
                return float(model(x).softmax(-1)[0, c.label])
            p_clean.append(p(clip))
            p_all.append(p(clip * (1 - ev) + blurred * ev))
            for j in range(k):
                at = torch.zeros_like(ev)
                at[:, :, j::k] = ev[:, :, j::k]
                p_blur[j].append(p(clip * (1 - at) + blurred * at))
                p_only[j].append(p(clip * at + blurred * (1 - at)))
    clean, blurred_all = float(np.mean(p_clean)), float(np.mean(p_all))
    p_blur = [float(np.mean(v)) for v in p_blur]
    read = [j for j in range(k) if clean - p_blur[j] >= 0.5 * (clean - blurred_all) and clean > blurred_all]
    return {"clips": len(clips), "tubelet": k, "p_clean": clean, "p_all_blurred": blurred_all, "p_blurred": p_blur,
            "p_only": [float(np.mean(v)) for v in p_only], "read": read}


def boxes_read(boxes, read, k: int) -> list:
    """``boxes`` (per frame, or None) with None wherever the frame's tubelet position is not in ``read``: the
    evidence the model uses (:func:`frames_read`), for scoring a map against it."""
    return [b if t % k in read else None for t, b in enumerate(boxes)]


def low_level_maps(frames: np.ndarray) -> dict:
    """Low-level saliency (T,H,W) of uint8 frames: brightness, colour saliency (distance from the clip's
    mean colour), motion energy (absolute frame difference, the first frame repeating the second's)."""
    x = frames.astype(np.float64) / 255.0
    brightness = x.mean(-1)
    colour = np.sqrt(((x - x.reshape(-1, 3).mean(0)) ** 2).sum(-1))
    diff = np.abs(np.diff(brightness, axis=0))
    motion = np.concatenate([diff[:1], diff], axis=0) if len(diff) else np.zeros_like(brightness)
    return {"brightness": brightness, "colour": colour, "motion": motion}


def low_level_floor(clips) -> dict:
    """Pointing game of each low-level map (tolerance scaled with the crop) next to the evidence's share of
    the discs on screen (what a map that points at a random disc scores)."""
    from attribution.metrics import pointing_game
    out = {k: [] for k in ("brightness", "colour", "motion")}
    share = []
    for c in clips:
        tol = pointing_tolerance(c.frames.shape[1])
        for k, m in low_level_maps(c.frames).items():
            out[k].append(pointing_game(m, c.boxes, tolerance=tol))
        share.extend(1 / (1 + len(d)) for b, d in zip(c.boxes, c.distractor_boxes) if b is not None)
    res = {k: float(np.mean(v)) for k, v in out.items()}
    res["disc_share"] = float(np.mean(share))
    res["clips"] = len(clips)
    return res


# ----------------------------------------------------------------------------------------------- training
CHECKPOINTS = Path(__file__).resolve().parents[1] / "runs" / "groundtruth"
SHIP_ACCURACY = 0.95    # the final weights go to model_zoo/weights/ only from this accuracy up
LABEL_SMOOTHING = 0.1   # as the toy: a saturated softmax gives perturbation methods no gradient
# Clips without an answer, trained towards the uniform distribution: per batch of B task clips, NULL_SHARE·B more,
# half of them the task's clips without their evidence disc, half task clips blurred all over (σ between 4/7 of
# and the whole of STEP's strongest blur, ``step.MAX_BLUR`` scaled). Without them a model answers a default class
# when its evidence is gone (version 5 without them: a blurred clip read as class 0 at 0.52-0.87 by gt_videomae),
# and for that class a preservation mask has nothing to find: any region, the evidence or not, "keeps" it
# (docs/groundtruth.md).
NULL_SHARE = 0.5


# Training curriculum: (end of the stage as a fraction of the steps, generator options). Trained from scratch
# on the full task, neither network left chance in ~1000-2500 clips, and x3d_xs needed ~400 clips to start on
# one disc of the task's size alone. So: one large disc (half the frame) in every frame, then one disc of the
# task's size, then with the striped distractors (the evidence in every frame), then the task itself (event window).
CURRICULUM = ((0.08, {"distractors": False, "whole": True, "diameter": (0.75, 0.8)}),
              (0.2, {"distractors": False, "whole": True}), (0.4, {"whole": True}), (1.0, {}))


# Fine-tuning from a model of an earlier task version (``train --init``), which already reads stripes on one
# disc: the distractors in every frame of the first quarter, then the task itself.
FINETUNE_CURRICULUM = ((0.25, {"whole": True}), (1.0, {}))


def null_clips(n: int, seed, frames: int, size: int, gen: torch.Generator, stage: dict) -> torch.Tensor:
    """``n`` training clips without an answer (``NULL_SHARE``), (n,3,T,H,W) in [0,1]: the first half the task's
    clips (of this curriculum ``stage``) without their evidence, the rest task clips blurred all over, frame by
    frame, towards their mean colour."""
    from attribution.step import MAX_BLUR, REF_SIZE, gaussian_blur
    half = n // 2
    rng = np.random.default_rng(seed)
    free = [_clip(rng, frames, size, evidence=False, **stage) for _ in range(half)]
    blurred = [_clip(rng, frames, size, **stage) for _ in range(n - half)]
    x = augment(_tensor(free + blurred), gen)
    top = MAX_BLUR * size / REF_SIZE
    for i in range(half, n):
        sigma = float(torch.empty(1).uniform_(4 / 7 * top, top, generator=gen))
        frames_i = x[i].transpose(0, 1)                                  # (T,3,H,W)
        x[i] = gaussian_blur(frames_i, sigma, frames_i.mean((0, 2, 3))).transpose(0, 1).clamp(0, 1)
    return x


def curriculum_stage(step: int, steps: int, curriculum=CURRICULUM) -> int:
    """Index into ``curriculum`` of training step ``step`` (0-based) of ``steps``."""
    return next(i for i, (end, _) in enumerate(curriculum) if step < end * steps or end >= 1.0)


def _lr(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def file_digest(path) -> str:
    """SHA-256 (hex) of a file: what a fine-tuning run started from."""
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _save_weights(model, name: str, meta: dict, out: Path | None = None) -> Path:
    out = Path(out or weights_path(name, WEIGHTS))   # WEIGHTS: a test points it elsewhere
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.module.state_dict().items()}
    torch.save({"model": state, "labels": LABELS, **meta}, out)
    return out


def train(name: str, steps: int, batch: int, lr: float, seed: int = 0, warmup: int = 50,
          checkpoint_minutes: float = 3.0, eval_every: int = 100, eval_clips: int = 64, weight_decay=0.05,
          final_clips: int = 200, log=print, stop: int | None = None, init: str | None = None) -> dict:
    """Train registry entry ``name`` on fresh clips of its geometry, resuming from its checkpoint.

    From scratch through ``CURRICULUM``; with ``init`` (weights in the shipped format, e.g. the model of an
    earlier task version) from those weights through ``FINETUNE_CURRICULUM``.

    Batch ``i`` is ``generate(batch, seed=(TRAIN_SEED, seed, i))`` with its own augmentation generator, so
    a resumed run sees the same data as an uninterrupted one; the checkpoint keeps the model, the optimiser
    and the global torch RNG (dropout). At the end the fp16 weights go to ``model_zoo/weights/NAME.pt`` when
    the accuracy on ``final_clips`` unseen clips reaches ``SHIP_ACCURACY``, else beside the checkpoint.
    """
    from model_zoo import wrap
    from model_zoo.groundtruth_models import ENTRIES, INIT
    entry = ENTRIES[name]
    frames, size = entry.num_frames, entry.crop_size
    torch.manual_seed(seed)
    model = wrap(entry, entry.build(entry, pretrained=False))
    curriculum = FINETUNE_CURRICULUM if init else CURRICULUM
    if init:
        load_weights(model.module, init)
    elif name in INIT:
        INIT[name](model)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    other = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=lr)
    null = round(NULL_SHARE * batch)
    ckpt = CHECKPOINTS / name / "checkpoint.pt"
    config = {"name": name, "task": TASK_VERSION, "steps": steps, "batch": batch, "lr": lr, "seed": seed,
              "warmup": warmup, "frames": frames, "size": size, "weight_decay": weight_decay, "stop": stop,
              "init": file_digest(init) if init else None, "null": null}
    start, history = 0, []
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        same = ("name", "task", "batch", "seed", "frames", "size", "init", "null")
        if {k: state["config"].get(k) for k in same} != {k: config[k] for k in same}:
            raise SystemExit(f"{ckpt} was written with other settings ({state['config']}); move it away first")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start, history = state["step"], state["history"]
        log(f"resumed {name} at step {start}")

    def save(step):
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        try:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "torch_rng": torch.get_rng_state(), "step": step, "history": history, "config": config}, tmp)
            os.replace(tmp, ckpt)
        except BaseException:
            tmp.unlink(missing_ok=True)   # the previous checkpoint stays as it was
            raise

    t0 = last_save = time.time()
    end = min(steps, stop or steps)   # the schedule is the one of ``steps``, cut at ``stop``
    for step in range(start, end):
        for g in opt.param_groups:
            g["lr"] = _lr(step, steps, lr, warmup)
        stage = curriculum_stage(step, steps, curriculum)
        clips = generate(batch, seed=[TRAIN_SEED, seed, step], frames=frames, size=size, **curriculum[stage][1])
        gen = torch.Generator().manual_seed(TRAIN_SEED * 1_000_003 + seed * 10_007 + step)
        x = augment(_tensor(clips), gen)
        y = torch.tensor([c.label for c in clips])
        if null:
            x_null = null_clips(null, [TRAIN_SEED, seed, step, 1], frames, size, gen, curriculum[stage][1])
            logits = model(torch.cat([x, x_null]))
            loss = ((1 - NULL_SHARE) * F.cross_entropy(logits[:batch], y, label_smoothing=LABEL_SMOOTHING)
                    + NULL_SHARE * F.cross_entropy(logits[batch:], torch.full((null, len(LABELS)), 1 / len(LABELS))))
            logits = logits[:batch]
        else:
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=LABEL_SMOOTHING)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        acc = float((logits.argmax(-1) == y).float().mean())
        row = {"step": step + 1, "loss": round(loss.item(), 4), "batch_acc": acc,
               "seconds": round(time.time() - t0, 1), "lr": opt.param_groups[0]["lr"],
               "stage": stage}
        if (step + 1) % eval_every == 0 or step + 1 == end:
            model.eval()
            row["eval_acc"] = evaluate(model, n=eval_clips, seed=7)
            # a snapshot beside the checkpoint, in the shipped format, to inspect a run before it ends
            # (GT_WEIGHTS_DIR=runs/groundtruth/snapshots python -m model_zoo.groundtruth eval --model NAME)
            _save_weights(model, name, {"config": config, "final": row}, CHECKPOINTS / "snapshots" / f"{name}.pt")
            model.train()
        history.append(row)
        log(json.dumps(row))
        if time.time() - last_save > checkpoint_minutes * 60 or step + 1 == end:
            save(step + 1)
            last_save = time.time()
    model.eval()
    meta = {"config": config, "final": history[-1] if history else None,
            "accuracy": evaluate(model, n=final_clips, seed=7), "accuracy_clips": final_clips}
    # Only a model that does the task replaces the shipped weights; any other stays beside its checkpoint.
    shipped = meta["accuracy"] >= SHIP_ACCURACY
    out = _save_weights(model, name, meta, None if shipped else ckpt.parent / "final.pt")
    log(f"accuracy {meta['accuracy']:.3f} on {final_clips} clips of seed 7: wrote {out} "
        f"({out.stat().st_size / 1e6:.1f} MB)" + ("" if shipped else f", not shipped (below {SHIP_ACCURACY})"))
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m model_zoo.groundtruth", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train a ground-truth model (resumes from runs/groundtruth/NAME/)")
    tr.add_argument("--model", required=True, choices=sorted(GEOMETRY))
    tr.add_argument("--steps", type=int, default=None)
    tr.add_argument("--batch", type=int, default=None)
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--stop", type=int, default=None, help="end (and ship) at this step of the schedule")
    tr.add_argument("--init", default=None, metavar="WEIGHTS",
                    help="fine-tune from these weights (shipped format; FINETUNE_CURRICULUM, FINETUNE defaults)")
    tr.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ev = sub.add_parser("eval", help="accuracy, confinement and the low-level floor of the shipped weights")
    ev.add_argument("--model", required=True, choices=sorted(GEOMETRY))
    ev.add_argument("-n", type=int, default=200)
    ev.add_argument("--seed", type=int, default=7)
    ev.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ev.add_argument("--json", default=None, metavar="PATH", help="also write the figures to this file")
    ex = sub.add_parser("examples", help="write one clip per class as mp4 into examples/, with ground truth")
    ex.add_argument("--model", required=True, choices=sorted(GEOMETRY))
    ex.add_argument("--out", default=str(Path(__file__).parents[1] / "examples"))
    a = ap.parse_args(argv)
    torch.set_num_threads(getattr(a, "threads", 2))
    if a.cmd == "train":
        d = (FINETUNE if a.init else TRAINING)[a.model]
        train(a.model, a.steps or d["steps"], a.batch or d["batch"], a.lr or d["lr"], a.seed, warmup=d["warmup"],
              eval_every=d.get("eval_every", 50), eval_clips=48, stop=a.stop if a.stop is not None else d.get("stop"),
              init=a.init)
    elif a.cmd == "eval":
        from model_zoo import wrap
        from model_zoo.groundtruth_models import ENTRIES
        entry = ENTRIES[a.model]   # registered or not: GT_WEIGHTS_DIR may point at a snapshot
        model = wrap(entry, entry.build(entry, True)).eval()
        frames, size = GEOMETRY[a.model]
        clips = generate(min(a.n, 50), seed=31, frames=frames, size=size)
        res = {"model": a.model, "accuracy": evaluate(model, a.n, a.seed), "n": a.n, "seed": a.seed,
               "confinement": confinement(model, clips), "frames_read": frames_read(model, clips),
               "low_level_floor": low_level_floor(clips), "threads": a.threads}
        print(json.dumps(res))
        if a.json:
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    elif a.cmd == "examples":
        write_examples(a.model, a.out)


# Training defaults per model (chosen for 2 shared CPU cores: x3d_xs about 10 s a step, VideoMAE 10-18 s).
TRAINING = {"gt_x3d_xs": {"steps": 400, "batch": 10, "lr": 2e-3, "warmup": 20},
            "gt_videomae": {"steps": 600, "batch": 6, "lr": 1e-3, "warmup": 20, "stop": 300}}
# Fine-tuning defaults (``train --init``).
FINETUNE = {"gt_x3d_xs": {"steps": 150, "batch": 10, "lr": 5e-4, "warmup": 10, "eval_every": 25},
            "gt_videomae": {"steps": 400, "batch": 6, "lr": 5e-4, "warmup": 10, "eval_every": 50}}
# "stop": the run ends (and ships) at that step of its "steps"-step schedule. gt_videomae at 224 px had reached
# 0.98 on the progress clips at step 300 (90 min on the shared CPU); the rest of the schedule was not run.


def write_examples(name: str, out, seed: int = 2024):
    """One clip per class as near-lossless mp4, with the ground truth in ``<name>_ground_truth.json``."""
    from attribution.video import write_video
    frames, size = GEOMETRY[name]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    found = {}
    while len(found) < len(LABELS):
        c = _clip(rng, frames, size)
        found.setdefault(c.label, c)
    meta = {}
    for label, c in sorted(found.items()):
        file = f"{name}_{LABELS[label].replace(' ', '_')}.mp4"
        write_video(c.frames, out / file, fps=8 if frames > 4 else 2, crf=18)
        meta[file] = {"label": LABELS[label], "event": list(c.event), "boxes": c.boxes}
    (out / f"{name}_ground_truth.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
