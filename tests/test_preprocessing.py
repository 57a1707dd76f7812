"""``prepare()`` against the model's own Hugging Face video processor, and against the PyTorchVideo recipe.

Each case saves a tiny random VideoMAE with a processor config of one kind into a local folder, loads it back
through the real loading code (``load_model(folder)``), and compares the adapter's normalised input with what
the processor itself returns for the same frames. Tolerance: 1e-4 on normalised values (the two differ only by
float rounding: both resize the uint8 frames with torchvision's antialiased resize and round to uint8).
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

TOL = 1e-4
TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=8,
            num_frames=4, tubelet_size=2, num_labels=5)


def _frames(h=45, w=70, t=4, seed=0):
    """Smooth random frames (a blurred noise field): resizing them is not trivially exact."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(t, h // 5 + 2, w // 5 + 2, 3)).astype(np.float32)
    up = torch.nn.functional.interpolate(torch.from_numpy(base).permute(0, 3, 1, 2), size=(h, w), mode="bicubic")
    return up.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()


def _save(tmp_path, image_size, processor_kwargs, name):
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEVideoProcessor
    torch.manual_seed(0)
    model = VideoMAEForVideoClassification(VideoMAEConfig(**TINY, image_size=image_size))
    proc = VideoMAEVideoProcessor(**processor_kwargs)
    folder = tmp_path / name
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder, proc


CASES = {
    # shortest edge + square crop, the VideoMAE / TimeSformer / ViViT hub kind
    "shortest-edge-crop": (32, dict(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32})),
    # an exact height x width resize, no crop, bicubic, another normalisation
    "exact-size": (32, dict(size={"height": 32, "width": 32}, do_center_crop=False, resample=3,
                            image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])),
    # a non-square crop (and a non-square model input)
    "non-square-crop": ([32, 48], dict(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 48})),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_prepare_matches_the_processor(kind, tmp_path):
    from model_zoo import clear_cache, load_model
    image_size, kwargs = CASES[kind]
    folder, proc = _save(tmp_path, image_size, kwargs, kind)
    model = load_model(str(folder), device="cpu")
    try:
        for shape in ((45, 70), (80, 36)):    # landscape and portrait sources
            frames = _frames(*shape)
            ours = (model.prepare(frames) - model.mean) / model.std                       # (1,3,T,H,W)
            theirs = proc(list(frames), return_tensors="pt")["pixel_values"]             # (1,T,3,H,W)
            theirs = theirs.permute(0, 2, 1, 3, 4)
            assert ours.shape == theirs.shape, (kind, shape)
            assert (ours - theirs).abs().max().item() < TOL, (kind, shape)
        grid = kwargs.get("crop_size") or kwargs["size"]
        assert model.input_size == (grid["height"], grid["width"])
        # the model runs on what prepare() gives it
        assert model(model.prepare(_frames())).shape == (1, 5)
    finally:
        clear_cache()


def test_the_resample_filter_and_size_are_taken_from_the_processor(tmp_path):
    from model_zoo import clear_cache, load_model
    folder, _ = _save(tmp_path, 32, CASES["exact-size"][1], "exact")
    model = load_model(str(folder), device="cpu")
    try:
        assert model.preprocess.resample == "bicubic"
        assert model.preprocess.resize == (32, 32) and model.preprocess.crop is None
        assert model.preprocess.quantise and model.preprocess.antialias
        assert model.mean.flatten().tolist() == pytest.approx([0.5, 0.4, 0.3])
    finally:
        clear_cache()


def test_a_processor_that_cannot_load_is_reported(tmp_path, caplog):
    """No processor config in the folder: a logged warning (not silence), and the model config decides."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    from model_zoo import clear_cache, load_model
    torch.manual_seed(0)
    folder = tmp_path / "no-processor"
    VideoMAEForVideoClassification(VideoMAEConfig(**TINY, image_size=32)).save_pretrained(folder)
    with caplog.at_level(logging.WARNING, logger="model_zoo.hf_models"):
        model = load_model(str(folder), device="cpu")
    try:
        assert any("No video processor" in r.getMessage() for r in caplog.records)
        assert model.input_size == (32, 32)
    finally:
        clear_cache()


def test_pytorchvideo_recipe_is_short_side_scale_then_centre_crop():
    """x3d_xs: ShortSideScale(182) = bilinear F.interpolate on floats without antialiasing, long side floored,
    then CenterCropVideo(182) with torchvision's rounded offsets; written out here from those definitions."""
    import math

    from model_zoo import load_model
    model = load_model("x3d_xs", pretrained=False, device="cpu")
    frames = _frames(240, 427, t=4)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    h, w = x.shape[-2:]
    nh, nw = 182, int(math.floor(w / h * 182))
    x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    top, left = int(round((nh - 182) / 2)), int(round((nw - 182) / 2))
    expected = x[..., top:top + 182, left:left + 182].permute(1, 0, 2, 3).unsqueeze(0)
    ours = model.prepare(frames)
    assert ours.shape == (1, 3, 4, 182, 182)
    assert (ours - expected).abs().max().item() < 1e-5
