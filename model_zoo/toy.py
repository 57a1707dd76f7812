"""The offline toy task and model: evidence known in space and time (README: The toy task).

Task. A 16-frame 64x64 clip shows a few squares of one colour on a textured background. Exactly one of them,
the *evidence*, moves steadily in one direction, and only during a window of 7-10 frames (absent before and
after). The others, the *distractors*, have the same colour, size and speed, but take a random direction at
every frame, and each comes and goes at random. The class is the direction of the steady motion. No frame
outside the window, and no low-level cue (colour, brightness, frame-difference energy), tells the answer: only
the consistent displacement of one object over several frames does.

``generate(n, seed)`` returns :class:`ToyClip` items with the frames, the label, the evidence box in every
frame (None where it is absent) and the event window. ``python -m model_zoo.toy_train train`` trains the model
(deterministic on CPU, a few minutes) and writes ``model_zoo/weights/toy.pt``.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from model_zoo import ModelEntry, register

LABELS = ["moving left", "moving right", "moving up", "moving down"]
DIRECTIONS = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)], dtype=np.float64)  # (dx, dy) per label
FRAMES = 16
SIZE = 64
OBJECT = 8          # side of every square, px
SPEED = 3.0         # px per frame, the same for evidence and distractors
EVENT_LEN = (7, 11)  # evidence window length, frames [lo, hi)
N_DISTRACTORS = (2, 4)  # [lo, hi]
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
WEIGHTS = Path(__file__).parent / "weights" / "toy.pt"
TRAIN_SEED = 1000     # training clips come from seeds >= this; tests and benchmarks use smaller seeds
# The evidence fills about 8*8*8.5 / (16*64*64) = 0.83 % of the clip, 0.59 % of the padded canvas the area loss
# counts: groundtruth.default_areas, the one rule for every entry (1, 2, 4 times that, whole percent up).
AREAS = (0.01, 0.02, 0.03)
LABEL_SMOOTHING = 0.1


@dataclasses.dataclass
class ToyClip:
    frames: np.ndarray                       # uint8 (T,H,W,3)
    label: int
    boxes: list                              # per frame (x0,y0,x1,y1), end exclusive, or None
    event: tuple                             # (start, end) frame range, end exclusive
    distractor_boxes: list = dataclasses.field(default_factory=list)  # per frame: list of boxes

    @property
    def label_name(self) -> str:
        return LABELS[self.label]


def hsv_to_rgb(h, s, v):
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def background(rng, size: int = SIZE) -> np.ndarray:
    """Static smooth texture in [0.15, 0.65] with fine grain, (size,size,3) float (also the ground-truth task's)."""
    coarse = torch.from_numpy(rng.random((1, 3, 6, 6))).float()
    smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0].numpy()
    mid = torch.from_numpy(rng.random((1, 3, 16, 16))).float()
    mid = F.interpolate(mid, size=(size, size), mode="bilinear", align_corners=False)[0].numpy()
    tex = 0.6 * smooth + 0.3 * mid + 0.1 * rng.random((3, size, size))
    return (0.15 + 0.5 * np.clip(tex, 0, 1)).transpose(1, 2, 0)


def _random_walk(rng, start, n):
    """Positions of a jittering distractor: a random direction every frame, same speed, reflected at walls."""
    pos = np.empty((n, 2))
    p = np.array(start, dtype=np.float64)
    hi = SIZE - OBJECT
    for i in range(n):
        pos[i] = p
        a = rng.uniform(0, 2 * np.pi)
        p = p + SPEED * np.array([np.cos(a), np.sin(a)])
        p = np.where(p < 0, -p, p)
        p = np.where(p > hi, 2 * hi - p, p)
    return pos


def draw_clip(rng) -> ToyClip:
    label = int(rng.integers(len(LABELS)))
    length = int(rng.integers(*EVENT_LEN))
    start = int(rng.integers(0, FRAMES - length + 1))
    end = start + length
    bg = background(rng)
    colour = np.array(hsv_to_rgb(rng.random(), rng.uniform(0.7, 1.0), rng.uniform(0.85, 1.0)))
    hi = SIZE - OBJECT
    # Evidence path: straight, constant speed, fully inside the frame.
    d = DIRECTIONS[label]
    travel = SPEED * (length - 1)
    lo_xy = np.where(d < 0, travel, 0.0)
    hi_xy = np.where(d > 0, hi - travel, hi)
    p0 = rng.uniform(lo_xy, hi_xy)
    ev = {start + i: p0 + d * SPEED * i for i in range(length)}
    # Distractors: each present in a random window of 4..16 frames.
    n_d = int(rng.integers(N_DISTRACTORS[0], N_DISTRACTORS[1] + 1))
    distractors = []
    for _ in range(n_d):
        dl = int(rng.integers(4, FRAMES + 1))
        ds = int(rng.integers(0, FRAMES - dl + 1))
        path = _random_walk(rng, rng.uniform(0, hi, size=2), dl)
        distractors.append({ds + i: path[i] for i in range(dl)})
    frames = np.empty((FRAMES, SIZE, SIZE, 3), dtype=np.float64)
    boxes, dboxes = [], []
    for t in range(FRAMES):
        f = bg.copy()
        fb = []
        for dist in distractors:
            if t in dist:
                x, y = np.round(dist[t]).astype(int)
                f[y:y + OBJECT, x:x + OBJECT] = colour
                fb.append((int(x), int(y), int(x) + OBJECT, int(y) + OBJECT))
        if t in ev:  # drawn last, so the evidence box always holds the evidence's own pixels
            x, y = np.round(ev[t]).astype(int)
            f[y:y + OBJECT, x:x + OBJECT] = colour
            boxes.append((int(x), int(y), int(x) + OBJECT, int(y) + OBJECT))
        else:
            boxes.append(None)
        dboxes.append(fb)
        f += rng.normal(0, 0.02, f.shape)  # sensor noise: frame differences are never exactly zero
        frames[t] = f
    frames = (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)
    return ToyClip(frames, label, boxes, (start, end), dboxes)


def generate(n: int, seed: int = 0) -> list[ToyClip]:
    """``n`` toy clips, the same for the same seed. Seeds >= TRAIN_SEED are the training stream."""
    rng = np.random.default_rng(seed)
    return [draw_clip(rng) for _ in range(n)]


class ToyNet(nn.Module):
    """Small 3-D CNN, about 45k parameters: normalised (B,3,16,64,64) -> logits (B,4).

    Global max pooling at the end makes the decision rest on the strongest local space-time detector, i.e.
    on the evidence, which is what an attribution map should then find.
    """

    def __init__(self, classes: int = len(LABELS), width: int = 16):
        super().__init__()
        w = width

        def block(cin, cout, k, stride=1):
            pad = tuple(x // 2 for x in k)
            return nn.Sequential(nn.Conv3d(cin, cout, k, stride=stride, padding=pad, bias=False),
                                 nn.BatchNorm3d(cout), nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            block(3, w // 2, (1, 3, 3), stride=(1, 2, 2)),   # 16x32x32
            nn.MaxPool3d((1, 2, 2)),                           # 16x16x16
            block(w // 2, w, (3, 3, 3)),
            nn.MaxPool3d((2, 2, 2)),                           # 8x8x8
            block(w, 2 * w, (3, 3, 3)),
            block(2 * w, 2 * w, (3, 3, 3)),                    # Grad-CAM layer: features.5
        )
        self.head = nn.Linear(2 * w, classes)

    def forward(self, x):
        f = self.features(x)
        return self.head(f.amax(dim=(2, 3, 4)))


def _build(entry: ModelEntry, pretrained: bool) -> nn.Module:
    net = ToyNet()
    if pretrained:
        if not WEIGHTS.exists():
            from attribution.errors import ModelError
            raise ModelError(f"The toy model's weights are missing ({WEIGHTS}); "
                             "train them with: python -m model_zoo.toy_train train")
        state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
    return net


ENTRY = register(ModelEntry(
    name="toy", family="toy", build=_build, num_frames=FRAMES, crop_size=SIZE, mean=MEAN, std=STD,
    labels=LABELS, layout="BCTHW", gradcam_layer="features.5", areas=AREAS,
    weights="model_zoo/weights/toy.pt (shipped)", trained_on="procedural toy task (model_zoo/toy.py)",
    licence="same as this repository", offline=True,
    description="3-D CNN on the procedural 'which way does the steady square move' task"))


def augment(x, gen):
    """Codec-like degradations so the model survives an mp4 round trip: noise, slight blur, gain."""
    b = x.shape[0]
    gain = 1 + 0.1 * (torch.rand(b, 1, 1, 1, 1, generator=gen) - 0.5)
    x = x * gain + 0.03 * torch.randn(x.shape, generator=gen)
    blur = torch.rand(b, generator=gen) < 0.3
    if blur.any():
        k = torch.tensor([0.25, 0.5, 0.25])
        k2 = (k[:, None] * k[None, :]).view(1, 1, 1, 3, 3).repeat(3, 1, 1, 1, 1)
        xb = F.conv3d(F.pad(x[blur], (1, 1, 1, 1, 0, 0), mode="replicate"), k2, groups=3)
        x = x.clone()
        x[blur] = xb
    return x.clamp(0, 1)

