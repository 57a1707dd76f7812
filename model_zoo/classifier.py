"""The one adapter every video classifier is wrapped in (DESIGN §2).

Everything between modules speaks one tensor: a float clip ``(B,3,T,H,W)`` in ``[0,1]`` RGB at the model's
input size. Normalisation, channel layout, SlowFast's pathways and the logits-versus-softmax question live
here, so the attribution engine never branches on the model family.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F


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
        areas: default mask areas for this model's evidence (DESIGN §3.7), or None for the paper's.
        pack: optional callable turning the normalised ``(B,3,T,H,W)`` clip into the module's input
            (e.g. SlowFast's ``[slow, fast]`` list); applied after ``layout``.
    """

    def __init__(self, module: torch.nn.Module, *, name: str, labels: Sequence[str], num_frames: int,
                 crop_size: int, mean: Sequence[float], std: Sequence[float], layout: str = "BCTHW",
                 input_key: str | None = None, gradcam_layer: str | None = None,
                 resize_side: int | None = None, sampling_rate: int | None = None,
                 source_fps: float = 30.0, areas: Sequence[float] | None = None,
                 pack: Callable | None = None, info: dict | None = None,
                 token_grid: TokenGrid | None = None):
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

    def prepare(self, frames) -> torch.Tensor:
        """uint8 frames (T0,H0,W0,3) -> clip (1,3,T,crop,crop) in [0,1] on the model's device.

        Takes ``num_frames`` frames uniformly when T0 differs (``load_video`` usually samples already), resizes
        the short side to ``resize_side`` with antialiasing, then crops the centre square.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (T,H,W,3), got shape {frames.shape}")
        if len(frames) != self.num_frames:
            idx = np.linspace(0, len(frames) - 1, self.num_frames).round().astype(int)
            frames = frames[idx]
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0  # (T,3,H,W)
        h, w = x.shape[-2:]
        scale = self.resize_side / min(h, w)
        nh, nw = max(self.crop_size, round(h * scale)), max(self.crop_size, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
        top, left = (nh - self.crop_size) // 2, (nw - self.crop_size) // 2
        x = x[:, :, top:top + self.crop_size, left:left + self.crop_size].clamp(0, 1)
        return x.permute(1, 0, 2, 3).unsqueeze(0).contiguous().to(self.device)

    @torch.no_grad()
    def predict(self, clip01: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
        """Top-k (label, probability) for one clip (1,3,T,H,W)."""
        p = self(clip01).float().softmax(-1)[0]
        top = p.topk(min(k, p.numel()))
        return [(self.labels[i], float(v)) for v, i in zip(top.values.tolist(), top.indices.tolist())]

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, classes={len(self.labels)}, frames={self.num_frames}, "
                f"crop={self.crop_size}, layout={self.layout}")
