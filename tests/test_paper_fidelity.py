"""The ``paper`` preset as the authors ran it: zero-padded mask parameters, the blur pyramid blurred
towards the mean colour at the borders, and 2D-EP with its own reward weight, area weight and single area."""
import dataclasses
from pathlib import Path

import pytest
import torch

from attribution import step as S
from attribution.errors import InputError

PAPER = S.Settings(**S.PRESETS["paper"])


def tiny_model(k=3, frames=8, size=32, areas=None):
    """A one-convolution classifier with a coloured mean (the fill of the blur borders) and optional areas."""
    from model_zoo.classifier import VideoClassifier

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.AdaptiveAvgPool3d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, k))
    return VideoClassifier(net, name="tiny", labels=[str(i) for i in range(k)], num_frames=frames,
                           crop_size=size, mean=[0.45, 0.40, 0.35], std=[0.225] * 3, areas=areas)


# ------------------------------------------------------------------------------------------ mask parameters
def test_padded_parameter_grid_is_zero_outside_the_image_at_the_start():
    g = S.mask_geometry(112, 112, S.GRID_STEP, S.SIGMA, PAPER.param_padding)
    pad, (gh, gw) = g["pad"], g["grid"]
    p = S.pad_params(torch.ones(2, 1, gh, gw), pad, g["padding"])      # the all-ones start
    assert p.shape == (2, 1, gh + 2 * pad, gw + 2 * pad)
    inside = torch.zeros_like(p, dtype=torch.bool)
    inside[..., pad:pad + gh, pad:pad + gw] = True
    assert torch.all(p[inside] == 1) and torch.all(p[~inside] == 0)
    assert torch.all(S.pad_params(torch.ones(1, 1, gh, gw), pad, "replicate") == 1)   # ours before


def test_zero_padding_keeps_the_margin_off_and_edge_blobs_as_small_as_inner_ones():
    def canvas(params, padding):
        g = S.mask_geometry(112, 112, S.GRID_STEP, S.SIGMA, padding)
        return S.smooth_mask(params, g, S.smooth_mask_kernel(g["step"], S.SIGMA, g["radius"]), 112, 112)

    ones = torch.ones(1, 1, 16, 16)
    zero_pad, zero_mask = canvas(ones, "zero")
    rep_pad, rep_mask = canvas(ones, "replicate")
    assert zero_mask.min() > 0.95 and rep_mask.min() > 0.95          # the image starts fully preserved
    assert zero_pad.mean() < 0.92 < 0.98 < rep_pad.mean()             # the margin starts off, not on
    edge, inner = torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    edge[..., 0], inner[..., 8] = 1, 1                                # one "on" column at the edge / inside
    assert canvas(edge, "zero")[0].sum() / canvas(inner, "zero")[0].sum() < 1.02
    assert canvas(edge, "replicate")[0].sum() / canvas(inner, "replicate")[0].sum() > 1.08


def test_the_engine_pads_the_parameters_as_the_settings_say(monkeypatch):
    seen = []
    orig = S.pad_params
    monkeypatch.setattr(S, "pad_params", lambda p, pad, padding="zero": seen.append(padding) or orig(p, pad, padding))
    st = dataclasses.replace(PAPER, iterations=1, areas=(0.2,), compile=False)
    S.perturbation(tiny_model(), torch.rand(1, 3, 8, 32, 32), [0], settings=st)
    assert set(seen) == {"zero"}
    seen.clear()
    S.perturbation(tiny_model(), torch.rand(1, 3, 8, 32, 32), [0],
                   settings=dataclasses.replace(st, param_padding="replicate"))
    assert set(seen) == {"replicate"}
    with pytest.raises(InputError):
        S.perturbation(tiny_model(), torch.rand(1, 3, 8, 32, 32), [0],
                       settings=dataclasses.replace(st, param_padding="reflect"))


# -------------------------------------------------------------------------------------------- blur pyramid
def test_most_blurred_level_tends_to_the_mean_colour_at_the_corners():
    colour, mean = 0.9, torch.tensor([0.4, 0.5, 0.3])
    clip = torch.full((1, 3, 2, 112, 112), colour)
    pyr = S.blur_pyramid(clip, S.MAX_BLUR, fill=mean, border=PAPER.blur_border)
    share = (colour - pyr[0]) / (colour - mean).view(3, 1, 1, 1)      # share of mean colour, level 0
    for y, x, want in ((0, 0, 0.75), (111, 111, 0.75), (0, 56, 0.5), (56, 0, 0.5), (56, 56, 0.0)):
        assert share[:, :, y, x] == pytest.approx(torch.full((3, 2), want), abs=0.03)
    assert share.mean() == pytest.approx(0.25, abs=0.03)               # about a quarter on average at 112 px
    assert torch.allclose(pyr[-1], clip[0])                            # the sharp level is the clip itself
    reflect = S.blur_pyramid(clip, S.MAX_BLUR, fill=mean, border="reflect")
    assert torch.allclose(reflect[0], clip[0], atol=1e-5)              # mirrored: no mean colour anywhere


def test_the_engine_blurs_towards_the_models_mean_colour(monkeypatch):
    model = tiny_model()
    seen = []
    orig = S.blur_pyramid

    def spy(clip, max_blur, levels=S.LEVELS, kind="blur", fill=None, border="reflect"):
        seen.append((border, None if fill is None else fill.tolist()))
        return orig(clip, max_blur, levels, kind, fill, border)
    monkeypatch.setattr(S, "blur_pyramid", spy)
    st = dataclasses.replace(PAPER, iterations=1, areas=(0.2,), compile=False)
    S.perturbation(model, torch.rand(1, 3, 8, 32, 32), [0], settings=st)
    assert seen[0][0] == "mean" and seen[0][1] == pytest.approx([0.45, 0.40, 0.35])
    with pytest.raises(InputError):
        S.perturbation(model, torch.rand(1, 3, 8, 32, 32), [0], settings=dataclasses.replace(st, blur_border="x"))


# ------------------------------------------------------------------------------------------------- 2D-EP
def test_2d_ep_takes_its_own_settings_in_the_paper_preset():
    toy_areas = (0.01, 0.02, 0.04)
    s = S.method_settings(dataclasses.replace(PAPER, areas=toy_areas), "2d-ep", model_areas=toy_areas)
    assert s.reward_weight == S.EP2D_REWARD_WEIGHT == 100
    assert s.area_weight == 300 and s.area_growth == 1.0                # fixed area weight
    assert s.areas == (0.02,)                                           # one area: the median of the model's
    assert S.method_settings(PAPER, "2d-ep").areas == (0.10,)           # the paper's: lower median of 4
    assert s.iterations == PAPER.iterations and s.lr == PAPER.lr
    for method in ("step", "3d-ep"):                                    # STEP and 3D-EP: as given
        assert S.method_settings(PAPER, method, (0.01, 0.02, 0.04)) == PAPER
    mine = dataclasses.replace(PAPER, reward_weight=5.0, areas=(0.3, 0.4), area_growth=1.01)
    assert S.method_settings(mine, "2d-ep", (0.01,)) == mine             # the caller's own values are kept
    off = dataclasses.replace(PAPER, method_defaults=False)
    assert S.method_settings(off, "2d-ep", (0.01, 0.02)) == off


def test_the_engine_runs_2d_ep_with_its_settings_and_records_them():
    res = S.perturbation(tiny_model(areas=(0.1, 0.2, 0.3)), torch.rand(1, 3, 8, 32, 32), [0], method="2d-ep",
                         settings=dataclasses.replace(PAPER, iterations=2, areas=(0.1, 0.2, 0.3), compile=False))
    assert res.settings.areas == (0.2,) and res.settings.reward_weight == 100 and res.settings.area_growth == 1
    assert res.masks.shape[:2] == (1, 1)


def test_2d_ep_holds_its_area_in_every_frame_of_a_toy_clip():
    from model_zoo import load_model, toy

    model = load_model("toy")
    item = toy.generate(1, seed=500)[0]                 # the event covers frames 3..11 of 16
    clip = model.prepare(item.frames)
    # The paper's 2D-EP objective; a large step so that 20 iterations settle (the schedule is tested above).
    st = dataclasses.replace(PAPER, iterations=20, lr=2.0, subsample=2, compile=False)
    res = S.perturbation(model, clip, [item.label], method="2d-ep", settings=st)
    (a,) = res.settings.areas
    m = res.masks[0, 0]                                 # (T,H,W)
    margin = S.mask_geometry(64, 64, res.settings.grid_step, res.settings.sigma)["margin"]
    share = m.sum((1, 2)) / (64 + 2 * margin) ** 2      # the constraint is on the padded frame
    # every frame keeps about its area: none switches off (the volume constraint of 3D-EP turns the frames
    # outside the event fully off) and none keeps the whole frame
    assert share.min() > 0.5 * a and share.max() < 5 * a


# ---------------------------------------------------------------------------------- the paper's numbers, pinned
PINNED = Path(__file__).parent / "data" / "paper_preset_masks.pt"


def test_paper_preset_masks_equal_the_stored_reference():
    """A short run of the ``paper`` preset (16 iterations, L_K on from iteration 6, two areas) gives the masks
    that the engine before the speed-ups gave (commit 9f4701f, stored in tests/data), within 1e-5: speeding up
    the generator or adding presets must leave the paper's optimisation (docs/method.md §1-4) as it was."""
    clip = torch.rand(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(3))
    st = dataclasses.replace(PAPER, iterations=16, core_warmup=6, areas=(0.1, 0.5), compile=False)
    res = S.perturbation(tiny_model(), clip, [2], settings=st, seed=5)
    ref = torch.load(PINNED)["masks"]
    assert res.masks.shape == ref.shape == (1, 2, 8, 32, 32)
    assert res.evaluations == 16 * 2
    assert (ref.std() > 0.05) and (ref < 0.5).any()          # the reference moved away from the all-ones start
    assert torch.allclose(res.masks, ref, atol=1e-5, rtol=0)
