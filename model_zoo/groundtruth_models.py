"""Registry entries of the models trained on the ground-truth task (``model_zoo/groundtruth.py``).

They are built by the code that builds the real registry entries, at those entries' input size and layout:

* ``gt_x3d_xs``: ``pytorchvideo.models.hub.x3d_xs`` (the ``x3d_xs`` entry's builder, with the logits head
  of ``model_zoo.pytorchvideo_models``) with a 4-class head; 4 x 182 px, BCTHW, Kinetics normalisation.
* ``gt_videomae``: ``transformers.VideoMAEForVideoClassification`` built from a config (through
  ``model_zoo.hf_models``) with the input geometry of ``MCG-NJU/videomae-base-finetuned-kinetics``:
  16 x 224 px, 16 x 16 patches, two-frame tubelets (8 x 14 x 14 tokens), BTCHW, ImageNet normalisation;
  narrower and shallower than ViT-B.

Their weights ship in ``model_zoo/weights/`` (fp16), so nothing needs a network. Their family is
``verification`` (they exist to check attribution methods against known evidence). An entry is registered
(listed by the app, the CLI and ``list_models``) only once its weights file exists; ``ENTRIES`` holds all of
them, for training.
"""
from __future__ import annotations

import importlib.util
import math
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from attribution.errors import ModelError
from model_zoo import ModelEntry, TokenGrid, register

# What the registry needs to know of the task (model_zoo/groundtruth.py, the tool that generates its clips and
# trains these models, imports it from here).
LABELS = ["horizontal stripes", "vertical stripes", "rising diagonal stripes", "falling diagonal stripes"]
# registry entry -> (frames, size): the x3d_xs entry's 4 x 182 and VideoMAE-B's 16 x 224.
GEOMETRY = {"gt_x3d_xs": (4, 182), "gt_videomae": (16, 224)}
# Default STEP areas: groundtruth.default_areas(groundtruth.evidence_fraction(frames, size), size), the one
# rule (1, 2 and 4 times the expected evidence share, as shares of the padded canvas the area loss counts, whole
# percent up), applied to each geometry (tests/test_groundtruth.py checks these against the rule).
AREAS = {"gt_x3d_xs": (0.05, 0.10, 0.19), "gt_videomae": (0.05, 0.10, 0.19)}
WEIGHTS = Path(__file__).parent / "weights"
# Both builders' libraries; without either the entries are simply absent (as another family's would be).
AVAILABLE = all(importlib.util.find_spec(m) is not None for m in ("pytorchvideo", "transformers"))


def weights_path(name: str, folder=None) -> Path:
    """The shipped weights of ``name`` (or ``folder/name.pt``)."""
    return Path(folder or WEIGHTS) / f"{name}.pt"


KINETICS_MEAN, KINETICS_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# VideoMAE-B's geometry (patch 16, tubelet 2, 16 frames, 224 px) at a width and depth a CPU can train.
VIDEOMAE_CONFIG = {"image_size": GEOMETRY["gt_videomae"][1], "patch_size": 16,
                   "num_frames": GEOMETRY["gt_videomae"][0], "tubelet_size": 2,
                   "hidden_size": 96, "num_hidden_layers": 4, "num_attention_heads": 3, "intermediate_size": 384,
                   "use_mean_pooling": True, "num_labels": len(LABELS)}


def _load(module: nn.Module, name: str) -> None:
    # GT_WEIGHTS_DIR: read the weights from another folder (a training run's snapshot, see groundtruth.py)
    path = weights_path(name, os.environ.get("GT_WEIGHTS_DIR"))
    if not path.exists():
        raise ModelError(f"The weights of {name!r} are missing ({path}); train them with: "
                         f"python -m model_zoo.groundtruth train --model {name}")
    load_weights(module, path)


def load_weights(module: nn.Module, path) -> None:
    """Load weights in the shipped format (``{"model": fp16 state dict, ...}``) into ``module``, each tensor
    cast to the module's own dtype."""
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    ref = module.state_dict()
    module.load_state_dict({k: v.to(ref[k].dtype) if k in ref else v for k, v in state.items()})


def _build_x3d(entry: ModelEntry, pretrained: bool) -> nn.Module:
    from model_zoo.pytorchvideo_models import logits_head
    with warnings.catch_warnings():  # pytorchvideo's import emits torch.jit FutureWarnings
        warnings.simplefilter("ignore", FutureWarning)
        from pytorchvideo.models import hub
    # the x3d_xs entry's hub builder (model_zoo/pytorchvideo_models.py), with a 4-class head
    model = logits_head(hub.x3d_xs(pretrained=False, model_num_class=len(LABELS)))
    if pretrained:
        _load(model, entry.name)
    return model


def _build_videomae(entry: ModelEntry, pretrained: bool) -> nn.Module:
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    from model_zoo.hf_models import classifier
    config = VideoMAEConfig(**VIDEOMAE_CONFIG, id2label=dict(enumerate(LABELS)),
                            label2id={v: k for k, v in enumerate(LABELS)})
    module = VideoMAEForVideoClassification(config)
    if pretrained:
        _load(module, entry.name)
    return classifier(module, None, name=entry.name, entry=entry, num_frames=entry.num_frames,
                      crop_size=entry.crop_size, info={"family": entry.family, "weights": entry.weights,
                                                       "licence": entry.licence, "trained_on": entry.trained_on})


def gabor_init(module: nn.Module, periods=(4, 8, 16), orientations: int = 8) -> None:
    """Start the patch embedding of a VideoMAE from a bank of Gabor filters (luminance, both tubelet frames):
    ``orientations`` x ``periods`` (px) x 2 phases, the other output channels left at their random start.

    It stands in for the pretraining every real VideoMAE has (whose first-layer filters are Gabor-like). At
    224 px from a random start, 56 steps of 8 clips with one striped disc in every frame stayed at chance where
    x3d_xs had started to learn in about 45; with the bank and the curriculum it learnt the task. An octave bank,
    not the task's period (``groundtruth.PERIOD``); every weight is trained.
    """
    conv = module.videomae.embeddings.patch_embeddings.projection
    w = conv.weight.detach().clone()                 # (hidden, 3, tubelet, patch, patch)
    k = w.shape[-1]
    v, u = torch.meshgrid(torch.arange(k) - (k - 1) / 2, torch.arange(k) - (k - 1) / 2, indexing="ij")
    envelope = torch.exp(-(u ** 2 + v ** 2) / (2 * (k / 4) ** 2))
    norm = float(w[0].norm())                        # the random start's scale, per output channel
    i = 0
    for period in periods:
        for o in range(orientations):
            a = math.pi * o / orientations
            for phase in (0.0, math.pi / 2):
                if i >= w.shape[0]:
                    break
                g = envelope * torch.cos(2 * math.pi * (u * math.cos(a) + v * math.sin(a)) / period + phase)
                g = g - g.mean()
                f = g.expand(w.shape[1], w.shape[2], k, k)
                w[i] = f / f.norm() * norm
                i += 1
    conv.weight.data.copy_(w)


# Initialisation applied before training (``groundtruth.train``), per entry.
INIT = {"gt_videomae": lambda m: gabor_init(m.module)}

ENTRIES: dict[str, ModelEntry] = {}


def _entry(name, build, mean, std, layout, gradcam_layer, description, **extra):
    frames, size = GEOMETRY[name]
    ENTRIES[name] = entry = ModelEntry(
        name=name, family="verification", build=build, num_frames=frames, crop_size=size, resize_side=size,
        mean=mean, std=std,
        labels=LABELS, layout=layout, gradcam_layer=gradcam_layer,
        areas=AREAS[name],
        weights=f"model_zoo/weights/{name}.pt (shipped)",
        trained_on="procedural ground-truth task (model_zoo/groundtruth.py)", licence="same as this repository",
        offline=True, description=description, **extra)
    if AVAILABLE and weights_path(name).exists():
        register(entry)
    return entry


_entry("gt_x3d_xs", _build_x3d, KINETICS_MEAN, KINETICS_STD, "BCTHW", "blocks.4",
       "pytorchvideo x3d_xs (4-class head) trained on the ground-truth stripes task, 4 x 182 px")
_entry("gt_videomae", _build_videomae, IMAGENET_MEAN, IMAGENET_STD, "BTCHW",
       f"videomae.encoder.layer.{VIDEOMAE_CONFIG['num_hidden_layers'] - 1}",
       "VideoMAEForVideoClassification (4 layers x 96 wide, patch 16, tubelet 2) trained on the ground-truth "
       "stripes task, {} x {} px".format(*GEOMETRY["gt_videomae"]), input_key="pixel_values",
       token_grid=TokenGrid(GEOMETRY["gt_videomae"][0] // 2, *[GEOMETRY["gt_videomae"][1] // 16] * 2))
