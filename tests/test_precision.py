"""Precision chosen by the hardware, the fp32 override, and what the hardware report says."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from attribution import step as S
from attribution.errors import InputError


@pytest.mark.parametrize("device, precision, capability, expected", [
    ("cpu", "auto", None, None),                       # fp32 on the CPU
    ("cuda", "auto", (7, 5), torch.float16),           # T4: no bf16 units
    ("cuda", "auto", (8, 0), torch.bfloat16),          # A100
    ("cuda", "auto", (9, 0), torch.bfloat16),          # H100 / H200
    ("cuda", "fp32", (9, 0), None),                    # the override
    ("cuda", "fp16", (9, 0), torch.float16),
    ("cpu", "bf16", None, torch.bfloat16),
])
def test_autocast_dtype_follows_the_hardware(device, precision, capability, expected):
    assert S.autocast_dtype(device, precision, capability) == expected


def test_unknown_precision_is_an_input_error():
    with pytest.raises(InputError, match="precision must be one of"):
        S.autocast_dtype("cpu", "fp8")


@pytest.fixture(scope="module")
def toy_case():
    from model_zoo import load_model
    from model_zoo.toy import generate
    model = load_model("toy", device="cpu")
    item = generate(1, seed=11)[0]
    return model, model.prepare(item.frames), item.label


def _map(model, clip, target, precision):
    st = S.Settings(**{**S.PRESETS["fast"], "iterations": 40, "min_iterations": 40, "compile": False,
                       "precision": precision, "areas": (0.05, 0.1)})
    res = S.perturbation(model, clip, [target], settings=st, seed=0)
    return res.saliency[0].numpy(), res.settings.precision


def test_bf16_autocast_map_is_close_to_fp32_on_the_toy(toy_case):
    """Measured on this clip (40 iterations of the fast schedule, 2 areas): mean |bf16 - fp32| = 0.013 of the
    [0,1] map, largest 0.39, correlation 0.984 (at 100 iterations: 0.026 and 0.955 — the optimisation amplifies
    bf16 rounding a little, it does not change the answer). The bounds leave room for
    other CPUs' bf16 kernels, not for a different map."""
    model, clip, target = toy_case
    ref, p32 = _map(model, clip, target, "fp32")
    low, p16 = _map(model, clip, target, "bf16")
    assert (p32, p16) == ("fp32", "bf16")     # the settings record what ran
    diff = np.abs(low - ref)
    assert diff.mean() < 0.03
    assert np.corrcoef(low.ravel(), ref.ravel())[0, 1] > 0.95
    # and the same temporal profile: bf16 does not change when the evidence is
    assert np.corrcoef(low.mean((1, 2)), ref.mean((1, 2)))[0, 1] > 0.95


def test_fp16_gradient_reaches_the_mask_in_fp32(toy_case):
    """fp16 autocast: the scaled backward, unscaled, gives the fp32 gradient within fp16's precision."""
    model, clip, target = toy_case
    pyramid = S.blur_pyramid(clip, 20.0 * 64 / 112)
    tgt = torch.tensor([target, target])
    grads = {}
    for dtype in (None, torch.float16):
        mask = torch.full((2, 1, clip.shape[2], 64, 64), 0.7).requires_grad_(True)
        S._model_terms(model, pyramid, mask, tgt, ["preserve"], 1.0, 2, dtype)
        assert mask.grad.dtype == torch.float32
        grads[dtype] = mask.grad.clone()
    ref, low = grads[None], grads[torch.float16]
    assert ref.abs().max() > 0
    cos = torch.nn.functional.cosine_similarity(ref.flatten(), low.flatten(), dim=0)
    assert cos > 0.98 and (low.norm() / ref.norm() - 1).abs() < 0.05


def test_explain_records_the_fp32_override(toy_case):
    from attribution import explain
    model, clip, target = toy_case
    exp = explain(model, clip, target=target, precision="fp32", iterations=2, areas=[0.1])
    assert exp.settings["precision"] == "fp32"


def test_cli_and_app_offer_the_override():
    from attribution.cli import build_parser
    a = build_parser().parse_args(["explain", "x.mp4", "--out", "o", "--precision", "fp32"])
    assert a.precision == "fp32"
    from ui import inputs
    assert inputs.overrides("step", "", 0, 0, "", "fp32")["precision"] == "fp32"
    assert "precision" not in inputs.overrides("gradient", "", 0, 0, "", "fp32")
    with pytest.raises(InputError):
        inputs.overrides("step", "", 0, 0, "", "fp99")


# ----------------------------------------------------------------------------------------- hardware report
def test_a_gpu_that_torch_cannot_use_is_named(monkeypatch):
    from attribution.device import describe_device, device_sentence

    def too_old():
        warnings.warn("CUDA initialization: The NVIDIA driver on your system is too old (found version 11040). "
                      "Please update your GPU driver.", UserWarning)
        return False
    monkeypatch.setattr(torch.cuda, "is_available", too_old)
    info = describe_device(gpu_present=lambda: True)
    assert info["device"] == "cpu" and "driver on your system is too old" in info["problem"]
    assert info["problem"] in device_sentence(info)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "cannot use it" in describe_device(gpu_present=lambda: True)["problem"]
    plain = describe_device(gpu_present=lambda: False)
    assert plain["problem"] is None and plain["precision"] == "fp32"
    assert device_sentence(plain).startswith("CPU (")
