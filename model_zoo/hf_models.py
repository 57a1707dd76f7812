"""Hugging Face video classifiers as registry entries, and the adapter for any such checkpoint.

transformers models take ``(B,T,C,H,W)`` under a keyword (``pixel_values``; V-JEPA 2: ``pixel_values_videos``)
and return ``.logits``. Their video processors are not differentiable, so the adapter copies what they do
(resize + centre crop on uint8 in ``prepare``, then rescale and normalise in torch) into one mean/std on the
[0,1] clip. A processor computes ``((x*255) * rescale_factor - offset - mean) / std``, which is
``(x - m') / s'`` with ``m' = (mean + offset) / (255 * rescale_factor)`` and ``s' = std / (255 * rescale_factor)``.
ViViT rescales by 1/127.5 with offset 1 and then normalises with 0.5/0.5, so its pixels span [-3, 1]
(the checkpoint was converted that way): m' = 0.75, s' = 0.25.

With ``pretrained=True`` an entry loads the checkpoint and its processor config with ``from_pretrained``
(preprocessing read from the processor, falling back to the table); offline it raises a ModelError at once
unless the files are in the Hugging Face cache. With ``pretrained=False`` it builds the same architecture
from the config values in the table, with random weights.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import logging
import os
import warnings

import torch.nn as nn

from attribution.errors import ModelError
from model_zoo import ModelEntry, Preprocess, TokenGrid, VideoClassifier, reachable, register, wrap
from model_zoo.classifier import PIL_RESAMPLE, kinetics400_labels

if importlib.util.find_spec("transformers") is None:  # the registry then simply lists no transformers entries
    raise ModuleNotFoundError("No module named 'transformers'", name="transformers")

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SSV2_CLASSES = 174


def _offline() -> bool:
    """The user asked for no hub access (huggingface_hub reads these variables only when imported)."""
    flags = (os.environ.get(k, "").strip().lower() for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f in ("1", "true", "yes", "on") for f in flags)


@contextlib.contextmanager
def _hub_offline(offline: bool):
    """Tell huggingface_hub too when this loader decided to stay offline: it reads ``HF_HUB_OFFLINE`` only at
    import, and ``local_files_only`` alone still lets it look things up on the network."""
    import huggingface_hub.constants as hub
    before = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = before or offline
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = before


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _size(obj, key):
    if obj is None:
        return None
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _rgb(v) -> list[float]:
    return [float(x) for x in v] if isinstance(v, (list, tuple)) else [float(v)] * 3


def hf_preprocess(resize, crop, resample: str = "bilinear") -> Preprocess:
    """What a transformers video processor does spatially: torchvision's resize of the uint8 frames (antialiased,
    rounded back to uint8), then a centre crop at ``(H - h) // 2``."""
    return Preprocess(resize=resize, crop=crop, resample=resample, antialias=True, quantise=True,
                      crop_rounding="floor")


def _resample(value) -> str:
    """A processor's ``resample`` (PIL code, or torchvision's InterpolationMode) as a Preprocess filter name."""
    if value is None:
        return "bilinear"
    name = str(getattr(value, "value", value)).lower()
    if name in ("nearest", "bilinear", "bicubic"):
        return name
    return PIL_RESAMPLE.get(int(value), "bilinear") if name.isdigit() or isinstance(value, int) else "bilinear"


def processor_preprocessing(processor) -> dict:
    """What ``processor`` does, as the adapter's terms (missing: absent).

    ``mean``, ``std``: on the [0,1] clip (rescale and offset folded in); ``crop_size``: the input height;
    ``resize_side``: the shortest edge (or the height of an exact size); ``preprocess``: the :class:`Preprocess`
    (exact height x width or shortest edge, centre crop height x width, resample filter).
    """
    out = {}
    if processor is None:
        return out
    do_rescale = getattr(processor, "do_rescale", True)
    scale = 255.0 * (float(processor.rescale_factor or 1 / 255) if do_rescale else 1.0)  # [0,1] clip = uint8/255
    # VivitVideoProcessor always subtracts 1 after rescaling; the legacy image processor does if offset=True.
    vivit = "Vivit" in type(processor).__name__ and getattr(processor, "offset", True)
    offset = 1.0 if do_rescale and vivit else 0.0
    normalise = getattr(processor, "do_normalize", True) and processor.image_mean is not None
    mean = _rgb(processor.image_mean) if normalise else [0.0] * 3
    std = _rgb(processor.image_std) if normalise else [1.0] * 3
    out["mean"] = tuple((m + offset) / scale for m in mean)
    out["std"] = tuple(v / scale for v in std)
    crop_cfg = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", True) else None
    crop = None
    if isinstance(crop_cfg, int):
        crop = (crop_cfg, crop_cfg)
    elif _size(crop_cfg, "height"):
        crop = (int(_size(crop_cfg, "height")), int(_size(crop_cfg, "width") or _size(crop_cfg, "height")))
    size = getattr(processor, "size", None) if getattr(processor, "do_resize", True) else None
    resize = None
    if size is not None:
        if _size(size, "shortest_edge"):
            resize = int(_size(size, "shortest_edge"))
            if _size(size, "longest_edge"):
                log.warning("%s caps the longest edge at %s as well; only the shortest edge is followed",
                            type(processor).__name__, _size(size, "longest_edge"))
        elif _size(size, "height") and _size(size, "width"):
            resize = (int(_size(size, "height")), int(_size(size, "width")))
    if crop is None and not isinstance(resize, tuple):
        if resize is None:
            return out
        log.warning("%s resizes the shortest edge to %d without a crop; the centre %dx%d square is used so that "
                    "every clip has one input size", type(processor).__name__, resize, resize, resize)
        crop = (resize, resize)
    pre = hf_preprocess(resize, crop, _resample(getattr(processor, "resample", None)))
    out["preprocess"] = pre
    out["crop_size"] = pre.output_size[0]
    out["resize_side"] = resize if isinstance(resize, int) else pre.output_size[0]
    return out


def _frames(config) -> int | None:
    return getattr(config, "num_frames", None) or getattr(config, "frames_per_clip", None)


def _crop(config) -> int | None:
    return getattr(config, "image_size", None) or getattr(config, "crop_size", None)


def encoder_layer(module: nn.Module) -> str | None:
    """Dotted name of the last encoder layer (the default Grad-CAM layer of a transformer)."""
    for name, m in module.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) and (name.endswith("encoder.layer") or name.endswith(".layers")):
            return f"{name}.{len(m) - 1}"
    return None


def token_grid(config, num_frames: int, crop) -> TokenGrid | None:
    """How the encoder's tokens lie in space-time, for the architectures whose embedding we know.

    ``crop``: the input size, an int (square) or (H, W)."""
    h, w = (crop, crop) if isinstance(crop, int) else crop
    kind = getattr(config, "model_type", "")
    if kind == "timesformer":  # CLS, then patches flattened (h, w, t): see TimesformerLayer
        p = config.patch_size
        return TokenGrid(num_frames, h // p, w // p, prefix=1, order="hwt")
    if kind == "vivit":  # CLS, then a Conv3d tubelet embedding flattened (t, h, w)
        tt, th, tw = config.tubelet_size
        return TokenGrid(num_frames // tt, h // th, w // tw, prefix=1)
    if kind in ("videomae", "vjepa2"):  # no CLS (mean / attentive pooling); Conv3d tubelets (t, h, w)
        p = config.patch_size
        return TokenGrid(num_frames // config.tubelet_size, h // p, w // p, prefix=0)
    return None


def classifier(module: nn.Module, processor=None, *, name: str, entry: ModelEntry | None = None,
               num_frames: int | None = None, crop_size: int | None = None,
               info: dict | None = None) -> VideoClassifier:
    """Wrap a transformers video classifier in a :class:`VideoClassifier`.

    Precedence: explicit ``num_frames`` / ``crop_size``; then the processor's size and normalisation (the
    checkpoint's own config is the truth); then the registry ``entry`` (its recipe); then the model config.
    """
    config = module.config
    pre = processor_preprocessing(processor)
    frames = num_frames or (entry.num_frames if entry else None) or _frames(config) \
        or getattr(processor, "num_frames", None)
    crop = crop_size or pre.get("crop_size") or (entry.crop_size if entry else None) or _crop(config)
    if not frames or not crop:
        raise ModelError(f"{name!r}: cannot tell the number of frames or the input size from its config; "
                         "load it as a TorchScript / torch.save file with a JSON sidecar instead.")
    side = pre.get("resize_side") or (entry.resize_side if entry and crop == entry.crop_size else crop)
    preprocess = pre.get("preprocess") or (entry.preprocess if entry and crop == entry.crop_size else None) \
        or hf_preprocess(int(side), (int(crop), int(crop)))
    mean = pre.get("mean") or (entry.mean if entry else IMAGENET_MEAN)
    std = pre.get("std") or (entry.std if entry else IMAGENET_STD)
    labels = [str(config.id2label[i]) for i in sorted(config.id2label)] if config.id2label else []
    if len(labels) != config.num_labels:
        labels = [f"class {i}" for i in range(config.num_labels)]
    base = entry or ModelEntry(name=name, family="huggingface", build=None, num_frames=frames, crop_size=crop,
                               mean=mean, std=std, labels=labels)
    resolved = dataclasses.replace(
        base, name=name, num_frames=int(frames), crop_size=int(crop), resize_side=int(side), mean=tuple(mean),
        std=tuple(std), labels=labels, layout="BTCHW", input_key=module.main_input_name,
        gradcam_layer=encoder_layer(module), token_grid=token_grid(config, int(frames), preprocess.output_size),
        preprocess=preprocess)
    model = wrap(resolved, module)
    model.info.update(info or {})
    return model


def from_pretrained(repo_or_dir: str, entry: ModelEntry | None = None) -> VideoClassifier:
    """Load a Hugging Face video classifier (hub id or local folder) and its video processor.

    A hub id that is not in the local cache needs the network: offline (``HF_HUB_OFFLINE=1`` or the hub not
    answering within 3 s) this raises a ModelError at once instead of waiting for huggingface_hub's retries.
    """
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from transformers import AutoModelForVideoClassification, AutoVideoProcessor
    local = os.path.isdir(repo_or_dir)
    offline = local or _offline() or not reachable(_endpoint())
    try:
        with _hub_offline(offline):
            module = AutoModelForVideoClassification.from_pretrained(repo_or_dir, local_files_only=offline,
                                                                     dtype=torch.float32)
    except ValueError as e:  # a config of a model type that has no video-classification head
        raise ModelError(f"{repo_or_dir!r} is not a video classification model that transformers knows "
                         f"({str(e).splitlines()[0]}).") from e
    except OSError as e:
        if offline and not local:
            raise ModelError(f"The model {repo_or_dir!r} needs a network connection to download it from the "
                             "Hugging Face Hub, or a local folder with its files (save_pretrained).") from e
        raise ModelError(f"Could not load {repo_or_dir!r}: {str(e).splitlines()[0]}") from e
    try:
        with _hub_offline(offline):
            processor = AutoVideoProcessor.from_pretrained(repo_or_dir, local_files_only=offline)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as e:
        # no processor config: the entry's table (or the model config) decides, and the user is told
        processor = None
        log.warning("No video processor could be loaded for %s (%s: %s); using %s preprocessing instead.",
                    repo_or_dir, type(e).__name__, str(e).splitlines()[0] if str(e) else "",
                    f"the registry entry's {entry.name!r}" if entry else "the model config's size and ImageNet")
    revision = getattr(module.config, "_commit_hash", None)
    return classifier(module, processor, name=entry.name if entry else repo_or_dir, entry=entry,
                      info={"family": "huggingface", "weights": repo_or_dir, "revision": revision,
                            "processor": type(processor).__name__ if processor is not None else None})


def _build(spec: dict, entry: ModelEntry, pretrained: bool, **config_overrides) -> nn.Module:
    """Pretrained: ``from_pretrained(entry.name)``. Random: the architecture from ``spec`` (+ overrides)."""
    if pretrained:
        if config_overrides:
            raise ModelError(f"{entry.name!r}: config options {sorted(config_overrides)} cannot be combined with "
                             "the pretrained weights; use pretrained=False.")
        return from_pretrained(entry.name, entry)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from transformers import AutoConfig, AutoModelForVideoClassification
    config = AutoConfig.for_model(spec["model_type"], **{**spec["config"], **config_overrides})
    if spec.get("kinetics400") and config.num_labels == 400:
        config.id2label = dict(enumerate(kinetics400_labels()))
        config.label2id = {v: k for k, v in config.id2label.items()}
    module = AutoModelForVideoClassification.from_config(config)
    return classifier(module, None, name=entry.name, entry=entry, num_frames=_frames(config),
                      crop_size=_crop(config))


def _entry(*, repo, model_type, config, frames, rate, side, crop, mean, std, gradcam_layer, grid, licence,
           trained_on, description, kinetics400=False, resample="bilinear"):
    labels = kinetics400_labels() if kinetics400 else tuple(f"class {i}" for i in range(config["num_labels"]))
    spec = {"model_type": model_type, "config": config, "kinetics400": kinetics400}
    return register(ModelEntry(
        name=repo, family="huggingface", build=functools.partial(_build, spec), num_frames=frames,
        crop_size=crop, resize_side=side, sampling_rate=rate, mean=mean, std=std, labels=labels,
        layout="BTCHW", input_key="pixel_values_videos" if model_type == "vjepa2" else "pixel_values",
        preprocess=hf_preprocess(side, (crop, crop), resample),
        gradcam_layer=gradcam_layer, token_grid=grid, weights=f"https://huggingface.co/{repo}",
        licence=licence, trained_on=trained_on, description=description))


# Architecture values are the transformers defaults for these base checkpoints unless given; preprocessing is
# the hub processor config (a loaded checkpoint's own processor overrides it). Labels of a loaded checkpoint come
# from its config.id2label. Frames x sampling rate (at 30 fps), from each paper's Kinetics evaluation:
# VideoMAE 16 x 4 (Tong et al., NeurIPS 2022, §4 "16 frames with a temporal stride of 4"); TimeSformer 8 x 32
# (Bertasius et al., ICML 2021, §4.1 "8 x 224 x 224, frames sampled at a rate of 1/32"); ViViT 32 x 2 (Arnab et
# al., ICCV 2021, §5.1 "32 frames with a stride of 2"). Something-Something models (VideoMAE-SSv2, V-JEPA 2-SSv2)
# have no rate: they see frames spread over the whole clip, as that benchmark's segment sampling does.
_entry(repo="MCG-NJU/videomae-base-finetuned-kinetics", model_type="videomae", config={"num_labels": 400},
       frames=16, rate=4, side=224, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
       gradcam_layer="videomae.encoder.layer.11", grid=TokenGrid(8, 14, 14), licence="cc-by-nc-4.0",
       trained_on="Kinetics-400 (self-supervised pre-training, then fine-tuning)",
       description="VideoMAE ViT-B/16, 16x4 frames, 224 px; 81.5 % K400 top-1 (paper)", kinetics400=True)
_entry(repo="MCG-NJU/videomae-base-finetuned-ssv2", model_type="videomae", config={"num_labels": SSV2_CLASSES},
       frames=16, rate=None, side=224, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
       gradcam_layer="videomae.encoder.layer.11", grid=TokenGrid(8, 14, 14), licence="cc-by-nc-4.0",
       trained_on="Something-Something v2 (self-supervised pre-training, then fine-tuning)",
       description="VideoMAE ViT-B/16, 16 frames spread over the clip, 224 px; 70.8 % SSv2 top-1 (paper)")
_entry(repo="facebook/timesformer-base-finetuned-k400", model_type="timesformer", config={"num_labels": 400},
       frames=8, rate=32, side=224, crop=224, mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225),
       gradcam_layer="timesformer.encoder.layer.11", grid=TokenGrid(8, 14, 14, prefix=1, order="hwt"),
       licence="cc-by-nc-4.0", trained_on="Kinetics-400 (ImageNet-21k initialisation)",
       description="TimeSformer-B divided space-time attention, 8x32 frames, 224 px; 78.0 % K400 top-1 (paper)",
       kinetics400=True)
_entry(repo="google/vivit-b-16x2-kinetics400", model_type="vivit", config={"num_labels": 400}, frames=32, rate=2,
       side=256, crop=224, mean=(0.75, 0.75, 0.75), std=(0.25, 0.25, 0.25), gradcam_layer="vivit.layers.11",
       grid=TokenGrid(16, 14, 14, prefix=1), licence="mit",
       trained_on="Kinetics-400 (ImageNet-21k initialisation)",
       description="ViViT-B/16x2 unfactorised, 32x2 frames, 224 px; pixels in [-3, 1] as converted",
       kinetics400=True)
_entry(repo="facebook/vjepa2-vitl-fpc16-256-ssv2", model_type="vjepa2",
       config={"num_labels": SSV2_CLASSES, "crop_size": 256, "frames_per_clip": 16}, frames=16, rate=None,
       side=292, crop=256, mean=IMAGENET_MEAN, std=IMAGENET_STD, gradcam_layer="vjepa2.encoder.layer.23",
       grid=TokenGrid(8, 16, 16), licence="apache-2.0 (hub card of the V-JEPA 2 collection)",
       trained_on="Something-Something v2 (attentive probe on the frozen self-supervised V-JEPA 2 ViT-L encoder)",
       description="V-JEPA 2 ViT-L/16, 16 frames spread over the clip, 256 px; attentive-probe classifier")
