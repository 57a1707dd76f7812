"""Registry entries of the models trained on the ground-truth task (``model_zoo/groundtruth.py``).

They are built by the code that builds the real registry entries, at those entries' input size and layout:

* ``gt_x3d_xs``: ``pytorchvideo.models.hub.x3d_xs`` (the ``x3d_xs`` entry's builder, through
  ``model_zoo.pytorchvideo_models``) with a 4-class head; 4 x 182 px, BCTHW, Kinetics normalisation.
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
import os

import torch
import torch.nn as nn

from attribution.errors import ModelError
from model_zoo import ModelEntry, TokenGrid, register
from model_zoo import groundtruth as gt

if importlib.util.find_spec("pytorchvideo") is None or importlib.util.find_spec("transformers") is None:
    raise ModuleNotFoundError("No module named 'pytorchvideo'", name="pytorchvideo")

KINETICS_MEAN, KINETICS_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# VideoMAE-B's geometry (patch 16, tubelet 2, 16 frames, 224 px) at a width and depth a CPU can train.
VIDEOMAE_CONFIG = {"image_size": 224, "patch_size": 16, "num_frames": 16, "tubelet_size": 2,
                   "hidden_size": 96, "num_hidden_layers": 4, "num_attention_heads": 3, "intermediate_size": 384,
                   "use_mean_pooling": True, "num_labels": len(gt.LABELS)}


def _load(module: nn.Module, name: str) -> None:
    # GT_WEIGHTS_DIR: read the weights from another folder (a training run's snapshot, see groundtruth.py)
    path = gt.weights_path(name, os.environ.get("GT_WEIGHTS_DIR"))
    if not path.exists():
        raise ModelError(f"The weights of {name!r} are missing ({path}); train them with: "
                         f"python -m model_zoo.groundtruth train --model {name}")
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    ref = module.state_dict()
    module.load_state_dict({k: v.to(ref[k].dtype) if k in ref else v for k, v in state.items()})


def _build_x3d(entry: ModelEntry, pretrained: bool) -> nn.Module:
    from model_zoo.pytorchvideo_models import _build
    model = _build("x3d_xs", entry, False, model_num_class=len(gt.LABELS))
    if pretrained:
        _load(model, entry.name)
    return model


def _build_videomae(entry: ModelEntry, pretrained: bool) -> nn.Module:
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    from model_zoo.hf_models import classifier
    config = VideoMAEConfig(**VIDEOMAE_CONFIG, id2label=dict(enumerate(gt.LABELS)),
                            label2id={v: k for k, v in enumerate(gt.LABELS)})
    module = VideoMAEForVideoClassification(config)
    if pretrained:
        _load(module, entry.name)
    return classifier(module, None, name=entry.name, entry=entry, num_frames=entry.num_frames,
                      crop_size=entry.crop_size, info={"family": entry.family, "weights": entry.weights,
                                                       "licence": entry.licence, "trained_on": entry.trained_on})


ENTRIES: dict[str, ModelEntry] = {}


def _entry(name, build, mean, std, layout, gradcam_layer, description, **extra):
    frames, size = gt.GEOMETRY[name]
    ENTRIES[name] = entry = ModelEntry(
        name=name, family="verification", build=build, num_frames=frames, crop_size=size, resize_side=size,
        mean=mean, std=std,
        labels=gt.LABELS, layout=layout, gradcam_layer=gradcam_layer,
        areas=gt.default_areas(gt.evidence_fraction(frames, size)),
        weights=f"model_zoo/weights/{name}.pt (shipped)",
        trained_on="procedural ground-truth task (model_zoo/groundtruth.py)", licence="same as this repository",
        offline=True, description=description, **extra)
    if gt.weights_path(name).exists():
        register(entry)
    return entry


_entry("gt_x3d_xs", _build_x3d, KINETICS_MEAN, KINETICS_STD, "BCTHW", "blocks.4",
       "pytorchvideo x3d_xs (4-class head) trained on the ground-truth stripes task, 4 x 182 px")
_entry("gt_videomae", _build_videomae, IMAGENET_MEAN, IMAGENET_STD, "BTCHW",
       f"videomae.encoder.layer.{VIDEOMAE_CONFIG['num_hidden_layers'] - 1}",
       "VideoMAEForVideoClassification (4 layers x 96 wide, patch 16, tubelet 2) trained on the ground-truth "
       "stripes task, 16 x 224 px", input_key="pixel_values", token_grid=TokenGrid(8, 14, 14))
