"""Tests of attribution/metrics.py: curves with closed-form AUCs, the insertion/deletion symmetry, the
localisation metrics on hand-made maps, and the authors' metric reliability on synthetic rank tables."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from attribution import metrics as M
from attribution.errors import InputError
from media import box_map
from model_zoo import toy

WEIGHTS = toy.WEIGHTS.exists()
needs_weights = pytest.mark.skipif(not WEIGHTS, reason="the toy model's trained weights are not there yet")


class RegionModel(nn.Module):
    """Two classes; p(class 0) is a known function of the fraction of ``region`` kept from an all-ones clip.

    With the fade substrate at a zero mean colour, a kept pixel is 1 and a removed pixel is 0, so
    ``kept = mean of x over the region``. ``kind="linear"``: p = kept; ``kind="step"``: p = 1 iff all kept.
    """

    def __init__(self, region: torch.Tensor, kind: str = "linear"):
        super().__init__()
        self.register_buffer("region", region.float())
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1, 1))
        self.kind = kind
        self.calls = 0

    def forward(self, x):
        self.calls += x.shape[0]
        kept = (x[:, 0] * self.region).flatten(1).sum(1) / self.region.sum()
        p = kept if self.kind == "linear" else (kept > 1 - 1e-6).float()
        p = p.clamp(1e-12, 1 - 1e-12)
        return torch.stack([p.log(), (1 - p).log()], 1)


def _ones(T=4, H=32, W=32):
    return torch.ones(1, 3, T, H, W)


# ------------------------------------------------------------------------------------------------ curves
def test_auc_is_the_normalised_trapezoid():
    assert M.auc([0, 1]) == 0.5
    assert M.auc([1, 1, 1]) == 1.0
    assert math.isclose(M.auc([0.0, 0.5, 1.0, 1.0]), (2.5 - 0 - 0.5) / 3)


def test_linear_response_gives_linear_curves_with_auc_one_half():
    """p = fraction of the clip kept; pixel units; n divisible by S: both curves are exact straight lines."""
    T, H, W = 4, 16, 16
    model = RegionModel(torch.ones(T, H, W))
    sal = np.random.default_rng(0).random((T, H, W))
    c = M.deletion_insertion(model, _ones(T, H, W), sal, 0, steps=64, unit="pixel", substrate="fade")
    line = np.linspace(0, 1, 65)
    np.testing.assert_allclose(c.fractions, line)
    np.testing.assert_allclose(c.deletion, 1 - line, atol=1e-6)
    np.testing.assert_allclose(c.insertion, line, atol=1e-6)
    assert math.isclose(c.auc_deletion, 0.5, abs_tol=1e-6) and math.isclose(c.auc_insertion, 0.5, abs_tol=1e-6)


def test_perfect_map_of_a_region_gives_the_closed_form_aucs():
    """Region of r = 8 of S = 128 steps (blocks of 2 px); the map is the region: insertion AUC = 1 - f/2,
    deletion AUC = f/2 with f = r/S for the linear response; the step response gives (S - r + 1/2)/S and
    (1/2)/S."""
    T, H, W, S = 4, 32, 32, 128
    ids, n = M.unit_ids("block", T, H, W)
    assert n == T * 16 * 16 == 1024                     # 2-px blocks, 8 units per step
    region = torch.from_numpy(ids < 64)                 # the first 64 units: 8 steps' worth
    f = 8 / S
    sal = region.numpy().astype(float)
    c = M.deletion_insertion(RegionModel(region), _ones(T, H, W), sal, 0, steps=S, substrate="fade")
    assert math.isclose(c.auc_insertion, 1 - f / 2, abs_tol=1e-6)
    assert math.isclose(c.auc_deletion, f / 2, abs_tol=1e-6)
    c = M.deletion_insertion(RegionModel(region, "step"), _ones(T, H, W), sal, 0, steps=S, substrate="fade")
    assert math.isclose(c.auc_insertion, (S - 8 + 0.5) / S, abs_tol=1e-6)
    assert math.isclose(c.auc_deletion, 0.5 / S, abs_tol=1e-6)
    # the random map removes the region piecemeal: strictly worse on both curves
    c = M.deletion_insertion(RegionModel(region), _ones(T, H, W), sal, 0, steps=S, substrate="fade",
                             random_baseline=True, seed=3)
    assert c.auc_random_insertion < c.auc_insertion - 0.3 and c.auc_random_deletion > c.auc_deletion + 0.3


def test_each_distinct_clip_is_evaluated_once_and_batches_do_not_change_results():
    T, H, W = 4, 8, 8
    model = RegionModel(torch.ones(T, H, W))
    sal = np.random.default_rng(1).random((T, H, W))
    c1 = M.deletion_insertion(model, _ones(T, H, W), sal, 0, steps=128, unit="frame", substrate="fade",
                              batch_size=1)
    # frame units: 4 units, only 3 distinct inner points per curve, plus the clip and the substrate
    assert c1.evaluations == model.calls == 2 + 2 * 3
    assert c1.units == 4 and len(c1.deletion) == 129
    c2 = M.deletion_insertion(model, _ones(T, H, W), sal, 0, steps=128, unit="frame", substrate="fade",
                              batch_size=64)
    np.testing.assert_allclose(c1.deletion, c2.deletion)
    np.testing.assert_allclose(c1.insertion, c2.insertion)


def test_frame_units_rank_frames_by_their_mean():
    """Only frame 2 matters to the model; a map with the most mass on frame 2 restores it first."""
    T, H, W = 4, 8, 8
    region = torch.zeros(T, H, W)
    region[2] = 1
    sal = np.zeros((T, H, W))
    sal[2] = 0.5
    sal[0, 0, 0] = 1.0  # a single bright pixel does not make frame 0 the most important frame
    c = M.deletion_insertion(RegionModel(region, "step"), _ones(T, H, W), sal, 0, steps=4, unit="frame",
                             substrate="fade")
    np.testing.assert_allclose(c.insertion, [0, 1, 1, 1, 1], atol=1e-9)
    np.testing.assert_allclose(c.deletion, [1, 0, 0, 0, 0], atol=1e-9)


@pytest.fixture(scope="module")
def untrained_toy():
    torch.manual_seed(0)
    from model_zoo import load_model
    return load_model("toy", pretrained=False, device="cpu")


def test_insertion_is_deletion_of_the_reversed_order_read_backwards(untrained_toy):
    """Same substrate and units: inserting the top k units of a map shows the same clip as deleting the
    bottom n-k, i.e. the top n-k of the reversed map (docs/method.md §6.1). 16x16x16 blocks, S divides n."""
    model = untrained_toy
    clip = torch.from_numpy(toy.generate(1, seed=11)[0].frames).permute(3, 0, 1, 2).unsqueeze(0).float() / 255
    sal = np.random.default_rng(2).random((16, 64, 64))
    a = M.deletion_insertion(model, clip, sal, 1, steps=16)
    b = M.deletion_insertion(model, clip, -sal, 1, steps=16)
    np.testing.assert_allclose(a.insertion, b.deletion[::-1], atol=1e-5)
    np.testing.assert_allclose(a.deletion, b.insertion[::-1], atol=1e-5)
    assert a.deletion[0] == a.insertion[-1] and a.deletion[-1] == a.insertion[0]   # the clip / the substrate


def test_ties_are_broken_deterministically_and_substrates_differ(untrained_toy):
    model = untrained_toy
    clip = torch.rand(1, 3, 16, 64, 64, generator=torch.Generator().manual_seed(0))
    flat = np.zeros((16, 64, 64))
    a = M.deletion_insertion(model, clip, flat, 0, steps=8)
    b = M.deletion_insertion(model, clip, torch.zeros(16, 64, 64), 0, steps=8)
    np.testing.assert_array_equal(a.deletion, b.deletion)
    assert M.unit_ranks(np.array([0.5, 1.0, 0.5, 1.0])).tolist() == [2, 0, 3, 1]
    blur = M.substrate_clip(model, clip, "blur")
    fade = M.substrate_clip(model, clip, "fade")
    assert float(blur.std()) < float(clip.std()) and torch.allclose(fade, model.mean.expand_as(clip))


def test_curves_summary_and_figure(untrained_toy, tmp_path):
    model = untrained_toy
    clip = torch.rand(1, 3, 16, 64, 64, generator=torch.Generator().manual_seed(1))
    c = M.deletion_insertion(model, clip, np.random.default_rng(0).random((16, 32, 32)), 2, steps=4,
                             random_baseline=True)
    s = c.summary()
    assert set(s["auc"]) == {"auc_deletion", "auc_insertion", "auc_random_deletion", "auc_random_insertion"}
    assert s["unit"] == "block" and s["substrate"] == "blur" and s["steps"] == 4 and s["target"] == 2
    assert len(s["deletion"]) == len(s["random_insertion"]) == 5
    import json
    json.dumps(s)
    from attribution import figures
    figures.save_figure(c.figure(title="t"), tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_bad_arguments_raise_input_errors(untrained_toy):
    clip = torch.rand(1, 3, 16, 64, 64)
    with pytest.raises(InputError):
        M.deletion_insertion(untrained_toy, clip, np.zeros((8, 64, 64)), 0)
    with pytest.raises(InputError):
        M.deletion_insertion(untrained_toy, clip, np.zeros((16, 64, 64)), 0, unit="superpixel")
    with pytest.raises(InputError):
        M.deletion_insertion(untrained_toy, clip, np.zeros((16, 64, 64)), 0, substrate="noise")


@needs_weights
def test_a_perfect_map_beats_random_on_insertion_on_the_toy_model():
    from model_zoo import load_model
    model = load_model("toy", device="cpu")
    wins = []
    for item in toy.generate(3, seed=501):
        clip = model.prepare(item.frames)
        perfect = box_map(item.boxes, 16, 64, 64)
        c = M.deletion_insertion(model, clip, perfect, item.label, steps=16, random_baseline=True, seed=0)
        wins.append(c.auc_insertion > c.auc_random_insertion + 0.1)
    assert all(wins), wins


# -------------------------------------------------------------------------------------- localisation
def test_pointing_game_hits_inside_the_tolerance_and_skips_frames_without_a_box():
    sal = np.zeros((4, 32, 32))
    boxes = [(10, 10, 18, 18), (10, 10, 18, 18), None, (0, 0, 4, 4)]
    sal[0, 12, 12] = 1           # inside
    sal[1, 5, 21] = 1            # 4 px right of the box, 5 px above it
    sal[2, 30, 30] = 1           # no box: ignored
    sal[3] = 0                   # flat: a miss
    assert M.pointing_game(sal, boxes, tolerance=0) == 1 / 3
    assert M.pointing_game(sal, boxes, tolerance=5) == 2 / 3   # (21, 5) is within 5 px of the box
    assert M.pointing_game(sal, boxes, tolerance=4) == 1 / 3   # y = 5 < 10 - 4
    assert math.isnan(M.pointing_game(sal, [None] * 4))
    with pytest.raises(InputError):
        M.pointing_game(sal, boxes[:3])


def test_temporal_hit_and_mass_in_tube():
    sal = np.zeros((6, 8, 8))
    sal[3, :2, :2] = 1            # 4 px in frame 3
    sal[1, 0, 0] = 3              # one strong pixel in frame 1: less mass than frame 3
    assert M.temporal_hit(sal, (2, 5)) and not M.temporal_hit(sal, (0, 3))
    assert M.temporal_hit(sal.sum((1, 2)), (3, 4))
    assert M.temporal_hit(torch.from_numpy(sal), (3, 4))
    boxes = [None] * 6
    boxes[3] = (0, 0, 2, 2)
    assert math.isclose(M.mass_in_tube(sal, boxes), 4 / 7)
    assert M.mass_in_tube(box_map(boxes, 6, 8, 8), boxes) == 1.0
    assert math.isnan(M.mass_in_tube(np.zeros((6, 8, 8)), boxes))


# -------------------------------------------------------------------------------------- reliability
def test_reliability_is_one_when_every_clip_agrees_and_random_is_last():
    rng = np.random.default_rng(0)
    base = np.array([0.1, 0.4, 0.6, 0.8, 0.9])      # column 0 is random, worst
    scores = base + rng.uniform(-0.01, 0.01, (20, 5))
    assert math.isclose(M.reliability(scores), 1.0)
    # for deletion lower is better: the mirrored table is just as reliable
    assert math.isclose(M.reliability(1 - scores, higher_is_better=False), 1.0)


def test_reliability_is_nan_when_random_wins_everywhere():
    scores = np.array([[0.9, 0.1, 0.5], [0.8, 0.4, 0.2], [0.7, 0.3, 0.6]])
    assert math.isnan(M.reliability(scores, random_index=0))


def test_reliability_is_negative_for_opposite_orders():
    # random second-worst on both clips (weight 1/2), the other two methods swapped: rho = -1
    scores = np.array([[0.5, 0.1, 0.9], [0.5, 0.9, 0.1]])
    assert math.isclose(M.reliability(scores), -1.0)
    # half the clips rank the methods one way, half the other way, random in the middle everywhere
    a = np.array([0.5, 0.1, 0.2, 0.8, 0.9])
    b = np.array([0.5, 0.9, 0.8, 0.2, 0.1])
    table = np.stack([a if i % 2 else b for i in range(10)]) + np.random.default_rng(1).uniform(0, 1e-3, (10, 5))
    assert M.reliability(table) < 0


def test_reliability_weights_down_clips_that_rank_random_high():
    agree = np.tile([0.0, 0.3, 0.6, 0.9], (6, 1))
    noisy = np.array([[0.95, 0.9, 0.1, 0.2]] * 3)   # random first: weight 0, ignored
    assert math.isclose(M.reliability(np.vstack([agree, noisy])), 1.0)
    with pytest.raises(InputError):
        M.reliability(np.zeros((3, 1)))
