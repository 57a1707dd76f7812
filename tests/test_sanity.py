"""The model-parameter randomisation check (attribution/sanity.py; Adebayo et al., NeurIPS 2018, §3.1)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from attribution import sanity
from attribution.cli import main as cli_main
from attribution.errors import InputError
from attribution.metrics import pointing_game
from model_zoo import load_model, toy

EXAMPLE = Path(__file__).parents[1] / "examples" / "toy_moving_up.mp4"
CHEAP = ["gradient", "grad-cam", "frame-difference", "random"]   # milliseconds per map on the toy


@pytest.fixture(scope="module")
def model():
    return load_model("toy", device="cpu")


@pytest.fixture(scope="module")
def item():
    return toy.generate(1, seed=0)[0]   # a clip the toy model classifies correctly (p = 0.97)


@pytest.fixture(scope="module")
def cheap_report(model, item):
    torch.set_num_threads(1)
    return sanity.sanity_check(model, item.frames, CHEAP, seed=0)


def test_step_separates_the_trained_model_from_a_random_one(model, item, one_thread):
    # Every layer re-initialised in one stage; 60 iterations and one area keep it to seconds.
    r = sanity.sanity_check(model, item.frames, ["step"], stages=[["head", "features"]], iterations=60,
                            areas=(0.02,))
    original, randomised = r.rows
    assert original["stage"] == 0 and original["spearman"] == 1.0 and original["ssim"] == 1.0
    assert original["probability"] > 0.9 and r.target == item.label
    assert randomised["spearman"] < 0.3, randomised     # measured: -0.04 (the original map is on the evidence,
    assert randomised["probability"] < 0.5              # the random network's is not)
    maps = r.maps["step"].astype(np.float32)
    assert pointing_game(maps[0], item.boxes) == 1.0 and pointing_game(maps[1], item.boxes) < 0.5
    assert r.verdicts()["step"]["survives"] is False


def test_a_map_that_ignores_the_model_is_flagged(cheap_report):
    v = cheap_report.verdicts()
    for m in ("frame-difference", "random"):                 # no model involved: identical at every stage
        assert all(row["spearman"] == 1.0 and row["ssim"] == 1.0 for row in cheap_report.rows if row["method"] == m)
        assert v[m]["survives"] is True
    for m in ("gradient", "grad-cam"):
        assert v[m]["survives"] is False and v[m]["spearman"] < 0.5
    assert "frame-difference, random" in cheap_report.format_table().splitlines()[-1]


def test_the_cascade_goes_from_the_logits_down_and_reports_each_stage(cheap_report):
    assert cheap_report.stage_names == ["original", "head", "features.5", "features.4", "features.2", "features.0"]
    rows = cheap_report.table()
    assert len(rows) == len(CHEAP) * 6 and {r["stage"] for r in rows} == set(range(6))
    assert rows[0]["probability"] > 0.9 and all(r["probability"] < 0.6 for r in rows if r["stage"] == 5)
    assert cheap_report.maps["gradient"].shape == (6, 16, 64, 64)


def test_the_model_passed_in_is_never_changed(model, item, one_thread):
    before = {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    params = [id(p) for p in model.parameters()]
    flags = [p.requires_grad for p in model.parameters()]
    sanity.sanity_check(model, item.frames, ["gradient"], seed=3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(buffers[k], v) for k, v in model.named_buffers())
    assert [id(p) for p in model.parameters()] == params and [p.requires_grad for p in model.parameters()] == flags
    assert not model.training


def test_deterministic_with_a_seed(model, item, one_thread):
    again = sanity.sanity_check(model, item.frames, ["gradient"], seed=0, stages=2)
    same = sanity.sanity_check(model, item.frames, ["gradient"], seed=0, stages=2)
    assert again.rows == same.rows and np.array_equal(again.maps["gradient"], same.maps["gradient"])
    other = sanity.sanity_check(model, item.frames, ["gradient"], seed=1, stages=2)
    assert [r["spearman"] for r in other.rows] != [r["spearman"] for r in again.rows]   # another random network


def test_randomise_uses_reset_parameters_seeded(model):
    import copy
    layer = sanity.layer_groups(model)[1]                    # features.5: Conv3d + BatchNorm3d
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    sanity.randomise(a, layer, seed=5)
    sanity.randomise(b, layer, seed=5)
    conv, bn = a.module.features[5][0], a.module.features[5][1]
    assert torch.equal(conv.weight, b.module.features[5][0].weight)
    assert not torch.equal(conv.weight, model.module.features[5][0].weight)
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))   # BatchNorm's reset: statistics too
    assert torch.equal(bn.weight, torch.ones_like(bn.weight))
    assert torch.equal(a.module.head.weight, model.module.head.weight)   # other layers untouched


def test_layer_groups_default_count_names_and_chunks(model):
    assert [x.name for x in sanity.layer_groups(model, 3)] == ["head", "features.4-5", "features.0-2"]
    explicit = sanity.layer_groups(model, ["head", ["features.4", "features.5"]])
    assert [x.modules for x in explicit] == [["module.head"], ["module.features.4", "module.features.5"]]
    with pytest.raises(InputError, match="No module 'nope'"):
        sanity.layer_groups(model, ["nope"])

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn, self.mlp = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

    class Encoder(torch.nn.Module):                           # a transformer's shape: embedding, 12 blocks, head
        def __init__(self):
            super().__init__()
            self.cls = torch.nn.Parameter(torch.zeros(4))
            self.embed = torch.nn.Linear(4, 4)
            self.encoder = torch.nn.Sequential(torch.nn.ModuleList([Block() for _ in range(12)]))
            self.norm, self.head = torch.nn.LayerNorm(4), torch.nn.Linear(4, 2)
    layers = sanity.layer_groups(Encoder())               # the encoder holds most parameters: split, chunked
    assert [x.name for x in layers] == ["head", "norm", "encoder.0.10-11", "encoder.0.8-9", "encoder.0.6-7",
                                        "encoder.0.4-5", "encoder.0.2-3", "encoder.0.0-1", "embed", "Encoder"]
    assert layers[-1].own and layers[-1].parameters == 4       # its own parameters (a CLS token): the bottom
    covered = [m for x in layers for m in x.modules]
    assert sorted(covered) == sorted(["head", "norm", "embed", ""] + [f"encoder.0.{i}" for i in range(12)])


def test_spearman_and_ssim():
    rng = np.random.default_rng(0)
    a = rng.random((4, 16, 16))
    assert sanity.spearman(a, a ** 3) == pytest.approx(1.0) and sanity.spearman(a, -a) == pytest.approx(-1.0)
    b = rng.random((4, 16, 16))
    ranks = lambda x: np.argsort(np.argsort(x.ravel())).astype(float)   # noqa: E731 (no ties here)
    assert sanity.spearman(a, b) == pytest.approx(np.corrcoef(ranks(a), ranks(b))[0, 1])
    tied = np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1]           # ties share their average rank
    assert sanity.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(tied)
    assert sanity.spearman(np.zeros(5), np.zeros(5)) == 1.0 and sanity.spearman(np.zeros(5), np.arange(5)) == 0.0
    assert sanity.ssim(a, a) == pytest.approx(1.0) and abs(sanity.ssim(a, b)) < 0.1
    assert sanity.ssim(a, np.clip(a + 0.02, 0, 1)) > 0.95 > sanity.ssim(a, 0.5 * a)


def test_report_files_and_the_command(tmp_path, capsys):
    out = tmp_path / "sanity"
    code = cli_main(["sanity", str(EXAMPLE), "--model", "toy", "--methods", "gradient", "random", "--stages", "2",
                        "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Spearman rank correlation with the original map" in printed and "SSIM with" in printed and "random" in printed.splitlines()[-1]
    data = json.loads((out / "sanity.json").read_text())
    assert data["stages"] == ["original", "head", "features"] and len(data["rows"]) == 6
    assert data["verdicts"]["random"]["survives"] is True and data["source"]["path"] == str(EXAMPLE)
    assert (out / "sanity.png").stat().st_size > 10_000 and (out / "sanity_maps.npz").exists()
    assert cli_main(["sanity", str(EXAMPLE), "--methods", "nope", "--quiet", "--device", "cpu"]) == 2
    with pytest.raises(InputError, match="one target"):
        sanity.sanity_check(load_model("toy", device="cpu"), EXAMPLE, ["random"], target=[0, 1])
    with pytest.raises(SystemExit) as stop:                        # argparse: one line, exit code 2
        cli_main(["sanity", str(EXAMPLE), "--stages", "0"])
    assert stop.value.code == 2 and "--stages: must be at least 1" in capsys.readouterr().err
    assert cli_main(["sanity", str(EXAMPLE), "--out", str(EXAMPLE), "--quiet"]) == 2   # --out is a file: no work
    assert "is a file" in capsys.readouterr().err
    with pytest.raises(InputError, match="stages must be at least 1"):
        sanity.layer_groups(load_model("toy", device="cpu"), 0)
