"""The one adapter every video classifier is wrapped in.

Everything between modules speaks one tensor: a float clip ``(B,3,T,H,W)`` in ``[0,1]`` RGB at the model's
input size. Normalisation, channel layout, SlowFast's pathways and the logits-versus-softmax question live
here, so the attribution engine never branches on the model family.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

try:  # the resize the Hugging Face processors call; imported here, never first inside a forked GPU worker
    from torchvision.transforms.v2 import functional as tvf
except ImportError:  # a bare GPU image without torchvision can still run the engine on prepared clips
    tvf = None

from attribution.common import TokenGrid  # noqa: E402,F401  (the contract between the models and Grad-CAM)

LABELS = Path(__file__).parent / "labels"


@functools.lru_cache(maxsize=1)
def kinetics400_labels() -> tuple[str, ...]:
    """The 400 Kinetics class names in training-index order (model_zoo/labels/kinetics400.json, generated from
    torchvision's list; tests/test_model_zoo.py checks them against it)."""
    return tuple(json.loads((LABELS / "kinetics400.json").read_text()))


RESAMPLE = ("nearest", "bilinear", "bicubic")
# PIL's resample codes, as Hugging Face processor configs store them (0 nearest, 2 bilinear, 3 bicubic; the
# others are approximated by the nearest of these, as transformers' torchvision backend does).
PIL_RESAMPLE = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic"}


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How decoded frames become the model's input grid: what the model's own processor or test recipe does.

    resize:    ``int``: the shortest edge is scaled to it (the longer one to ``int(long · resize / short)``);
               ``(h, w)``: an exact size (aspect ratio not kept); None: no resize.
    crop:      centre crop ``(h, w)`` (None: none); offsets ``(H - h) // 2`` as Hugging Face processors take them,
               ``round((H - h) / 2)`` with ``crop_rounding="round"`` as torchvision's ``center_crop`` does.
    resample:  ``nearest``, ``bilinear`` or ``bicubic``.
    antialias: low-pass filter when shrinking (Hugging Face processors: yes; PyTorchVideo's ``ShortSideScale``:
               no).
    quantise:  the resized frames are rounded back to uint8 before rescaling (a Hugging Face processor resizes
               the uint8 tensor itself); False keeps floats (PyTorchVideo divides by 255 first).
    """
    resize: int | tuple[int, int] | None
    crop: tuple[int, int] | None
    resample: str = "bilinear"
    antialias: bool = True
    quantise: bool = False
    crop_rounding: str = "floor"

    def __post_init__(self):
        if self.resample not in RESAMPLE:
            raise ValueError(f"resample must be one of {RESAMPLE}, not {self.resample!r}")
        if self.crop is None and not isinstance(self.resize, (tuple, list)):
            raise ValueError("a shortest-edge resize needs a crop: the model's input size would vary with the clip")

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of the model's input."""
        return tuple(int(v) for v in (self.crop if self.crop is not None else self.resize))

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        if self.resize is None:
            return height, width
        if isinstance(self.resize, (tuple, list)):
            return int(self.resize[0]), int(self.resize[1])
        short, long = min(height, width), max(height, width)
        new_long = int(self.resize * long / short)
        return (self.resize, new_long) if height <= width else (new_long, self.resize)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (T,3,H,W) -> float (T,3,h,w) in [0,1]."""
        if tvf is None:
            raise ImportError("preparing frames needs torchvision (pip install -r requirements.txt)")
        h, w = frames.shape[-2:]
        size = self.resized_size(h, w)
        mode = getattr(tvf.InterpolationMode, self.resample.upper())
        if self.quantise:
            x = frames if size == (h, w) else tvf.resize(frames, list(size), interpolation=mode,
                                                           antialias=self.antialias)
            x = x.float() / 255.0
        else:
            x = frames.float() / 255.0
            if size != (h, w):
                x = tvf.resize(x, list(size), interpolation=mode, antialias=self.antialias).clamp(0, 1)
        if self.crop is not None:
            ch, cw = self.crop
            nh, nw = x.shape[-2:]
            if ch > nh or cw > nw:  # the processors pad with zeros where the crop is larger than the frame
                dh, dw = max(ch - nh, 0), max(cw - nw, 0)
                x = F.pad(x, (dw // 2, (dw + 1) // 2, dh // 2, (dh + 1) // 2))
                nh, nw = x.shape[-2:]
            rnd = (lambda v: int(round(v))) if self.crop_rounding == "round" else math.floor
            top, left = rnd((nh - ch) / 2), rnd((nw - cw) / 2)
            x = x[..., top:top + ch, left:left + cw]
        return x

    def describe(self) -> dict:
        return dataclasses.asdict(self)


class VideoClassifier(torch.nn.Module):
    """Wrap ``module`` (normalised clip -> logits) so that it takes clips in [0, 1].

    Args:
        module: the network. It receives the normalised clip in ``layout`` (or what ``pack`` makes of it),
            as a keyword argument ``input_key`` when given (Hugging Face models), and returns logits
            ``(B,K)``, or an object with ``.logits``.
        name: registry name or path, for reports.
        labels: the K class names.
        num_frames, crop_size: the input grid T and H = W.
        mean, std: per-channel normalisation applied to the [0,1] clip.
        layout: ``"BCTHW"`` (PyTorchVideo, most 3-D CNNs) or ``"BTCHW"`` (transformers).
        input_key: keyword under which the tensor is passed (``"pixel_values"``), or None for positional.
        gradcam_layer: dotted name of the default Grad-CAM layer inside ``module``.
        token_grid: for transformers, the :class:`TokenGrid` of ``gradcam_layer``'s output (None for CNNs).
        resize_side: short side before the centre crop in ``prepare`` (default: ``crop_size``).
        sampling_rate: frame stride of the model's training recipe at ``source_fps`` (None: uniform).
        areas: default mask areas for this model's evidence (docs/method.md §3.2), or None for the paper's.
        pack: optional callable turning the normalised ``(B,3,T,H,W)`` clip into the module's input
            (e.g. SlowFast's ``[slow, fast]`` list); applied after ``layout``.
        preprocess: the :class:`Preprocess` of ``prepare`` (default: short side to ``resize_side``, centre
            crop ``crop_size`` square, bilinear with antialiasing). Its output size is ``input_size``.
    """

    def __init__(self, module: torch.nn.Module, *, name: str, labels: Sequence[str], num_frames: int,
                 crop_size: int, mean: Sequence[float], std: Sequence[float], layout: str = "BCTHW",
                 input_key: str | None = None, gradcam_layer: str | None = None,
                 resize_side: int | None = None, sampling_rate: int | None = None,
                 source_fps: float = 30.0, areas: Sequence[float] | None = None,
                 pack: Callable | None = None, info: dict | None = None,
                 token_grid: TokenGrid | None = None, preprocess: Preprocess | None = None):
        super().__init__()
        if layout not in ("BCTHW", "BTCHW"):
            raise ValueError(f"layout must be 'BCTHW' or 'BTCHW', not {layout!r}")
        self.module = module
        self.name = str(name)
        self.labels = [str(x) for x in labels]
        self.num_frames = int(num_frames)
        self.crop_size = int(crop_size)
        self.layout = layout
        self.input_key = input_key
        self.gradcam_layer = gradcam_layer
        self.token_grid = token_grid
        self.resize_side = int(resize_side or crop_size)
        self.preprocess = preprocess or Preprocess(resize=self.resize_side, crop=(self.crop_size, self.crop_size))
        self.input_size = self.preprocess.output_size   # (H, W) of the clip the model takes
        self.sampling_rate = sampling_rate
        self.source_fps = float(source_fps)
        self.areas = list(areas) if areas is not None else None
        self.pack = pack
        self.info = dict(info or {})
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def forward(self, clip01: torch.Tensor) -> torch.Tensor:
        """clip01 (B,3,T,H,W) in [0,1] -> logits (B,K)."""
        x = (clip01 - self.mean.to(clip01.dtype)) / self.std.to(clip01.dtype)
        if self.layout == "BTCHW":
            x = x.permute(0, 2, 1, 3, 4)
        if self.pack is not None:
            x = self.pack(x)
        out = self.module(**{self.input_key: x}) if self.input_key else self.module(x)
        return getattr(out, "logits", out)

    def frame_indices(self, num_source_frames: int, source_fps: float | None = None):
        """Which of ``num_source_frames`` frames at ``source_fps`` this model sees: its recipe
        (:func:`model_zoo.sampling.frame_indices`; fps unknown: the recipe's 30)."""
        from model_zoo.sampling import frame_indices
        return frame_indices(self, num_source_frames, source_fps)

    def sampling(self) -> str:
        """The frame sampling rule in words, for reports."""
        from model_zoo.sampling import describe
        return describe(self)

    def prepare(self, frames) -> torch.Tensor:
        """uint8 frames (T0,H0,W0,3) -> clip (1,3,T,H,W) in [0,1] on the model's device, (H,W) = ``input_size``.

        When T0 differs from ``num_frames`` the frames are taken as a clip at the recipe's 30 fps and sampled by
        :meth:`frame_indices` (``load_video`` / ``load_clip`` usually sampled already). Then ``preprocess``:
        resize, centre crop, [0,1] (normalisation happens in ``forward``).
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (T,H,W,3), got shape {frames.shape}")
        if len(frames) != self.num_frames:
            frames = frames[self.frame_indices(len(frames))]
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)   # (T,3,H,W) uint8
        x = self.preprocess(x)
        return x.permute(1, 0, 2, 3).unsqueeze(0).contiguous().to(self.device)

    @torch.no_grad()
    def predict(self, clip01: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
        """Top-k (label, probability) for one clip (1,3,T,H,W)."""
        p = self(clip01).float().softmax(-1)[0]
        top = p.topk(min(k, p.numel()))
        return [(self.labels[i], float(v)) for v, i in zip(top.values.tolist(), top.indices.tolist())]

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, classes={len(self.labels)}, frames={self.num_frames}, "
                f"input={self.input_size[0]}x{self.input_size[1]}, layout={self.layout}")
