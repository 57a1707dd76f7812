"""PyTorchVideo's Kinetics-400 model zoo as registry entries.

Every entry is a row of data: the builder in ``pytorchvideo.models.hub``, the checkpoint, the test recipe
(frames x sampling rate at 30 fps, short-side resize, centre crop, mean 0.45 / std 0.225 on [0,1] RGB) and
the default Grad-CAM layer. The builders are imported directly (``torch.hub.load`` would need GitHub) and
always called with ``pretrained=False``: with ``pretrained=True`` they refuse any keyword and download
without a timeout, so the checkpoint is fetched here through ``torch.hub.load_state_dict_from_url`` (which
also finds a copy already in ``$TORCH_HOME/hub/checkpoints/``).

X3D and R(2+1)D end in a softmax in eval mode as well; it is removed so that the models return logits
(the attribution losses take log-softmax of the logits themselves).
"""
from __future__ import annotations

import functools
import importlib.util
import os
import pickle
import urllib.parse
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from attribution.errors import ModelError
from model_zoo import ModelEntry, Preprocess, TokenGrid, reachable, register
from model_zoo.classifier import kinetics400_labels

if importlib.util.find_spec("pytorchvideo") is None:  # the registry then simply lists no pytorchvideo entries
    raise ModuleNotFoundError("No module named 'pytorchvideo'", name="pytorchvideo")

KINETICS_MEAN = (0.45, 0.45, 0.45)   # every PyTorchVideo Kinetics recipe, on [0,1] RGB
KINETICS_STD = (0.225, 0.225, 0.225)
CHECKPOINTS = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/"
LICENCE = "Apache-2.0 (PyTorchVideo model zoo)"
TRAINED_ON = "Kinetics-400"
SLOWFAST_ALPHA = 4  # the fast pathway has alpha times the frames of the slow one


def slowfast_pack(x: torch.Tensor, alpha: int = SLOWFAST_ALPHA) -> list[torch.Tensor]:
    """Normalised clip (B,3,T,H,W) -> [slow (B,3,T//alpha,H,W), fast (B,3,T,H,W)], as PackPathway does."""
    t = x.shape[2]
    idx = torch.linspace(0, t - 1, t // alpha, device=x.device).long()
    return [x.index_select(2, idx), x]


def checkpoint_path(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps (and first looks for) ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urllib.parse.urlsplit(url).path)


def load_checkpoint(url: str, name: str) -> dict:
    """The state dict of a PyTorchVideo checkpoint: the hub cache if present, else a download.

    Raises ModelError at once when the file is not cached and the host does not answer.
    """
    local = checkpoint_path(url)
    if not local.exists() and not reachable(url):
        raise ModelError(f"The model {name!r} needs a network connection to download its weights from {url}, "
                         f"or a local copy of that file at {local}.")
    try:
        try:
            ckpt = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, weights_only=True)
        except pickle.UnpicklingError:
            # Some of these files also pickle training metadata; they are the official files of this URL.
            ckpt = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, weights_only=False)
    except (OSError, RuntimeError, EOFError) as e:  # URLError, HTTPError, a truncated or corrupt file, ...
        raise ModelError(f"Could not load the weights of {name!r} ({type(e).__name__}: {e}); it needs a network "
                         f"connection to {url} or an intact copy at {local}.") from e
    state = ckpt.get("model_state", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"{local} is not a PyTorchVideo checkpoint (no 'model_state' dict in it).")
    return state


def logits_head(model: nn.Module) -> nn.Module:
    """Remove the softmax that X3D and R(2+1)D heads apply even in eval mode."""
    head = model.blocks[-1]
    if isinstance(getattr(head, "activation", None), nn.Softmax):
        head.activation = None
    return model


def _build(builder: str, entry: ModelEntry, pretrained: bool, **kwargs) -> nn.Module:
    """``pytorchvideo.models.hub.<builder>(pretrained=False, **kwargs)``, then the checkpoint if asked for.

    ``kwargs`` change the architecture (smaller test models, other heads), so only with random weights.
    """
    if pretrained and kwargs:
        raise ModelError(f"{entry.name!r}: architecture options {sorted(kwargs)} cannot be combined with the "
                         "pretrained weights; use pretrained=False.")
    with warnings.catch_warnings():  # pytorchvideo's import emits torch.jit FutureWarnings
        warnings.simplefilter("ignore", FutureWarning)
        from pytorchvideo.models import hub
    model = getattr(hub, builder)(pretrained=False, **kwargs)
    if pretrained:
        state = load_checkpoint(entry.weights, entry.name)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ModelError(f"The checkpoint {checkpoint_path(entry.weights)} does not fit {entry.name!r} "
                             f"({str(e).splitlines()[0]}); delete it to download it again.") from e
    return logits_head(model)


def recipe_preprocess(side: int, crop: int) -> Preprocess:
    """The hub recipe's spatial transform: ``ShortSideScale(side)`` (bilinear ``F.interpolate`` on the float clip,
    no antialiasing, the long side floored) then ``CenterCropVideo(crop)`` (torchvision's rounded offsets)."""
    return Preprocess(resize=side, crop=(crop, crop), resample="bilinear", antialias=False, quantise=False,
                      crop_rounding="round")


def _entry(*, name, checkpoint, frames, rate, side, crop, gradcam_layer, top1, builder=None, **extra):
    builder = builder or name
    return register(ModelEntry(
        name=name, family="pytorchvideo", build=functools.partial(_build, builder), num_frames=frames,
        crop_size=crop, resize_side=side, sampling_rate=rate, mean=KINETICS_MEAN, std=KINETICS_STD,
        labels=kinetics400_labels(), layout="BCTHW", gradcam_layer=gradcam_layer,
        preprocess=recipe_preprocess(side, crop),
        weights=CHECKPOINTS + checkpoint, licence=LICENCE, trained_on=TRAINED_ON,
        description=f"pytorchvideo.models.hub.{builder}, {frames}x{rate} frames, {crop} px; "
                    f"Kinetics-400 top-1 {top1} % (PyTorchVideo model zoo)", **extra))


# One keyword row a model. gradcam_layer: the last conv stage; top1: Kinetics-400 top-1 accuracy (%).
# Frames x sampling rate: the "frame length x sample rate" column of PyTorchVideo's MODEL_ZOO.md (Kinetics-400
# table; the rate counts frames of a 30 fps video), which is also the checkpoint's name (SLOW_8x8 = 8 x 8).
# Side and crop: the torch.hub model cards' test transform (X3D: side = crop = 182 for XS/S, 256 for M; the
# ResNets: short side 256, centre crop 224; SlowFast 256 / 256). Top-1: MODEL_ZOO.md.
_entry(name="x3d_xs", checkpoint="X3D_XS.pyth", frames=4, rate=12, side=182, crop=182, gradcam_layer="blocks.4",
       top1=69.12)
_entry(name="x3d_s", checkpoint="X3D_S.pyth", frames=13, rate=6, side=182, crop=182, gradcam_layer="blocks.4",
       top1=73.33)
_entry(name="x3d_m", checkpoint="X3D_M.pyth", frames=16, rate=5, side=256, crop=256, gradcam_layer="blocks.4",
       top1=75.94)
_entry(name="slow_r50", checkpoint="SLOW_8x8_R50.pyth", frames=8, rate=8, side=256, crop=224,
       gradcam_layer="blocks.4", top1=74.58)
_entry(name="c2d_r50", checkpoint="C2D_8x8_R50.pyth", frames=8, rate=8, side=256, crop=224,
       gradcam_layer="blocks.5", top1=71.46)   # blocks.2 is a max-pool
_entry(name="i3d_r50", checkpoint="I3D_8x8_R50.pyth", frames=8, rate=8, side=256, crop=224,
       gradcam_layer="blocks.5", top1=73.27)
_entry(name="r2plus1d_r50", checkpoint="R2PLUS1D_16x4_R50.pyth", frames=16, rate=4, side=256, crop=224,
       gradcam_layer="blocks.4", top1=76.01)
_entry(name="csn_r101", checkpoint="CSN_32x2_R101.pyth", frames=32, rate=2, side=256, crop=224,
       gradcam_layer="blocks.4", top1=77.0)
# SlowFast 8x8: 8 slow frames at rate 8, i.e. 32 fast frames at rate 2 over the same 2.13 s (MODEL_ZOO.md, with
# alpha = 4); the adapter takes the fast frames and packs the slow ones from them. Grad-CAM on the slow pathway's last stage (the fast one is 1/8 as wide).
_entry(name="slowfast_r50", checkpoint="SLOWFAST_8x8_R50.pyth", frames=32, rate=2, side=256, crop=256,
       gradcam_layer="blocks.4.multipathway_blocks.0", top1=76.4, pack=slowfast_pack)
# MViT-B: 16x224 only (fixed position embeddings); its last block returns (tokens, thw): CLS + 8x7x7 tokens.
_entry(name="mvit_base_16x4", checkpoint="MVIT_B_16x4.pyth", frames=16, rate=4, side=256, crop=224,
       gradcam_layer="blocks.15", top1=78.9, token_grid=TokenGrid(8, 7, 7, prefix=1, order="thw"))
