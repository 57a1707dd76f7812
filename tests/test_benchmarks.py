"""The quality benchmark's summaries, on made-up rows (the benchmark itself takes minutes per method)."""
import dataclasses
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

_spec = importlib.util.spec_from_file_location("quality", Path(__file__).parents[1] / "benchmarks" / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)


def _row(method, clip, **metrics):
    base = dict(insertion=0.5, deletion=0.5, pointing_game=0.5, mass_in_tube=0.1, temporal_hit=True,
                seconds=1.0, curve_seconds=1.0, label=0, predicted=0)
    return dict(base, method=method, clip=clip, **metrics)


def test_paired_difference_uses_shared_clips_and_the_spread_of_the_differences():
    # paper ran on clips 0-3 and 9, fast on 0-3 only; fast is higher by 0.1, 0.3, 0.1, 0.3 on pointing game
    rows = [_row("step", i, pointing_game=p) for i, p in enumerate([0.6, 0.8, 0.6, 0.8])]
    rows += [_row("step-paper", i, pointing_game=0.5) for i in range(4)] + [_row("step-paper", 9, pointing_game=0.0)]
    d = quality.paired(rows, "step", "step-paper")
    assert d["clips"] == 4
    assert d["pointing_game"] == pytest.approx(0.2)
    assert d["pointing_game_sem"] == pytest.approx(math.sqrt(4 * 0.01 / 3) / 2)   # sd of ±0.1 around 0.2, / sqrt 4
    assert d["insertion"] == pytest.approx(0.0) and d["insertion_sem"] == pytest.approx(0.0)


def test_summary_carries_the_paired_comparison_and_the_table_prints_it():
    rows = [_row(m, i, insertion=v + 0.01 * i) for i in range(3)
            for m, v in (("step", 0.9), ("step-paper", 0.8), ("random", 0.5))]
    s = quality.summarise(rows, ["step", "step-paper", "random"])
    assert s["fast_minus_paper"]["insertion"] == pytest.approx(0.1)
    assert s["methods"]["step"]["clips"] == 3
    text = quality.table(s, {"clips": 3, "accuracy": 1.0, "unit": "block", "substrate": "blur", "steps": 128,
                             "device": "cpu"})
    assert "STEP (fast) − STEP (paper) on the 3 clips both ran (paired): insertion +0.100 ± 0.000" in text
    both = [dict(r, method="step-interactive") for r in rows if r["method"] == "step-paper"] + rows
    s = quality.summarise(both, ["step", "step-interactive", "step-paper", "random"])
    assert s["fast_minus_interactive"]["insertion"] == pytest.approx(0.1)
    assert "fast_minus_paper" not in quality.summarise([r for r in rows if r["method"] != "step-paper"],
                                                       ["step", "random"])


def test_the_reported_accuracy_counts_each_clip_once_whichever_methods_ran():
    rows = [dict(_row("grad-cam", 0), predicted=1, label=1), dict(_row("random", 0), predicted=1, label=1),
            dict(_row("grad-cam", 1), predicted=0, label=2), dict(_row("grad-cam", 2), predicted=2, label=2)]
    assert quality.accuracy(rows) == pytest.approx(2 / 3)


def test_perturbation_rows_record_the_learning_rate_that_ran():
    """A preset's learning rate has changed over time; each perturbation row says which one produced it (and an
    override is what is recorded), a map without an optimiser records none."""
    from attribution import step as S
    from model_zoo import load_model, toy
    model, item = load_model("toy"), toy.generate(1, seed=quality.SEED)[0]
    row = quality.run_one(model, item, 0, "step-interactive", 4, "block", "blur", 0, overrides={"iterations": 1})
    assert row["lr"] == S.PRESETS["interactive"]["lr"]
    row = quality.run_one(model, item, 0, "step", 4, "block", "blur", 0, overrides={"iterations": 1, "lr": 0.25})
    assert row["lr"] == 0.25
    assert "lr" not in quality.run_one(model, item, 0, "random", 4, "block", "blur", 0)


def test_the_random_baseline_draws_a_new_map_for_every_clip_and_old_shared_maps_are_rerun(tmp_path):
    from model_zoo import load_model, toy
    model, items = load_model("toy"), toy.generate(2, seed=quality.SEED)
    maps = [quality.run_one(model, items[i], i, "random", 4, "block", "blur", 0, saliency=True)
            for i in (0, 1)]
    assert [m["map_seed"] for m in maps] == [0, 1]
    assert not np.allclose(maps[0]["saliency"], maps[1]["saliency"])
    again = quality.run_one(model, items[1], 1, "random", 4, "block", "blur", 0, saliency=True)
    assert np.array_equal(again["saliency"], maps[1]["saliency"])          # seeded: the same map on a rerun
    assert quality.random_map_seed(1, 0) not in {quality.random_map_seed(0, i) for i in range(1000)}
    import json
    path = tmp_path / "rows.jsonl"
    lines = [_row("random", 0), _row("random", 1, map_seed=1), _row("step", 0)]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    assert [(r["method"], r["clip"]) for r in quality.read_rows(path)] == [("random", 1), ("step", 0)]


_spec_t = importlib.util.spec_from_file_location("tune", Path(__file__).parents[1] / "benchmarks" / "tune.py")
tune = importlib.util.module_from_spec(_spec_t)
_spec_t.loader.exec_module(tune)


def test_tune_variants_parse_as_settings_overrides():
    assert tune.parse_variant("lr=0.3, subsample=3") == {"lr": 0.3, "subsample": 3}
    assert tune.parse_variant("fast") == {} and tune.parse_variant("areas=(0.1, 0.2)") == {"areas": (0.1, 0.2)}
    assert tune.parse_variant("preset='paper',areas=(0.1, 0.2)") == {"preset": "paper", "areas": (0.1, 0.2)}
    with pytest.raises(ValueError, match="not key=value"):
        tune.parse_variant("lr")
    with pytest.raises(ValueError, match="not a Python literal"):
        tune.parse_variant("lr=fast")


def test_tune_runs_each_variant_on_the_same_clips_and_resumes(tmp_path, capsys):
    jsonl, out = tmp_path / "t.jsonl", tmp_path / "t.json"
    paper = "preset='paper',iterations=2"
    args = ["--variants", "iterations=2", "iterations=3,lr=0.2", paper, "--clips", "1", "--steps", "8",
            "--threads", "1", "--jsonl", str(jsonl), "--json", str(out)]
    assert tune.main(args) == 0
    import json
    s = json.loads(out.read_text())["summary"]
    assert s["iterations=2"]["iterations"] == 2 and s["iterations=3,lr=0.2"]["iterations"] == 3
    assert s["iterations=3,lr=0.2"]["minus_iterations=2"]["clips"] == 1
    rows = {r["method"]: r for r in map(json.loads, jsonl.read_text().splitlines())}
    assert len(rows) == 3
    # fast starts from the decision gradient (8 pyramid forwards + 4 passes); the paper preset from all ones
    assert rows["iterations=2"]["evaluations"] == 12 + 2 * 3 and rows[paper]["evaluations"] == 2 * 3
    assert tune.main(args) == 0                       # resumed: nothing recomputed
    assert len(jsonl.read_text().splitlines()) == 3
    assert "| iterations=3,lr=0.2 | 1 | 3 |" in capsys.readouterr().out


def test_tune_scores_a_tubelet_model_on_the_frames_it_reads_and_reruns_rows_without_those_scores(tmp_path, capsys):
    import json
    jsonl = tmp_path / "t.jsonl"
    base, other = "preset='interactive',iterations=1", "preset='interactive',iterations=2"
    old = {"method": base, "clip": 0, "clip_seed": tune.SEED, "steps": 4, "seed": 0, "pointing_game": 0.5}
    jsonl.write_text(json.dumps(old) + "\n")    # scored before the frames-read scores: run again
    args = ["--model", "gt_videomae", "--variants", base, other, "--clips", "1", "--steps", "4", "--threads", "1",
            "--read-clips", "3", "--jsonl", str(jsonl)]
    assert tune.main(args) == 0
    rows = [json.loads(x) for x in jsonl.read_text().splitlines()][1:]
    assert [r["method"] for r in rows] == [base, other]
    for r in rows:
        assert r["tubelet"] == 2 and 0 <= r["pointing_game_read"] <= 1 and r["read"]
    out = capsys.readouterr().out
    assert "pointing game read" in out and "Δ pointing game read vs" in out
    assert tune.main(args) == 0                       # resumed: nothing recomputed
    assert len(jsonl.read_text().splitlines()) == 3


def test_a_bad_shard_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit):
        tune.main(["--variants", "fast", "--shard", "2/2", "--jsonl", str(tmp_path / "t.jsonl")])
    assert not (tmp_path / "t.jsonl").exists()


def test_summary_pairs_the_interactive_preset_with_paper_and_counts_passes():
    rows = [_row(m, i, insertion=v, evaluations=ev) for i in range(3)
            for m, v, ev in (("step-interactive", 0.9, 99), ("step-paper", 0.91, 3600), ("random", 0.5, None))]
    s = quality.summarise(rows, ["step-interactive", "step-paper", "random"])
    assert s["interactive_minus_paper"]["clips"] == 3
    assert s["interactive_minus_paper"]["insertion"] == pytest.approx(-0.01)
    assert s["methods"]["step-interactive"]["passes_per_clip"] == 99
    assert s["methods"]["random"]["passes_per_clip"] is None
    text = quality.table(s, {"clips": 3, "accuracy": 1.0, "unit": "block", "substrate": "blur", "steps": 128,
                             "device": "cpu"})
    assert "STEP (interactive) − STEP (paper) on the 3 clips both ran (paired): insertion -0.010 ± 0.000" in text
    assert "Model passes per clip (forward+backward, one per mask and iteration): STEP (interactive) 99, " \
           "STEP (paper) 3600." in text


def test_the_default_preset_is_paired_with_each_comparison_method_on_the_clips_both_ran():
    rows = [_row(m, i, insertion=v + 0.01 * i) for i in range(3)
            for m, v in (("step-interactive", 0.9), ("grad-cam", 0.85), ("random", 0.5), ("step-paper", 0.9))]
    rows.append(_row("occlusion", 0, insertion=0.95))
    s = quality.summarise(rows, ["step-interactive", "grad-cam", "occlusion", "random", "step-paper"])
    d = s["interactive_minus_methods"]
    assert set(d) == {"grad-cam", "occlusion"}      # neither the random map nor another STEP preset
    assert d["grad-cam"]["clips"] == 3 and d["grad-cam"]["insertion"] == pytest.approx(0.05)
    assert d["occlusion"]["clips"] == 1 and d["occlusion"]["insertion"] == pytest.approx(-0.05)
    text = quality.table(s, {"clips": 3, "accuracy": 1.0, "unit": "block", "substrate": "blur", "steps": 128,
                             "device": "cpu"})
    assert "STEP (interactive) − grad-cam on the 3 clips both ran (paired): insertion +0.050 ± 0.000" in text


def test_the_paper_ablations_are_paired_with_step_on_the_clips_both_ran():
    rows = [_row(m, i, mass_in_tube=v) for i in range(2) for m, v in (("step", 0.2), ("3d-ep", 0.25))]
    rows.append(_row("2d-ep", 0, mass_in_tube=0.1))
    s = quality.summarise(rows, ["step", "3d-ep", "2d-ep"])
    assert s["fast_minus_3d_ep"]["clips"] == 2 and s["fast_minus_3d_ep"]["mass_in_tube"] == pytest.approx(-0.05)
    assert s["fast_minus_2d_ep"]["clips"] == 1 and s["fast_minus_2d_ep"]["mass_in_tube"] == pytest.approx(0.1)
    text = quality.table(s, {"clips": 2, "accuracy": 1.0, "unit": "block", "substrate": "blur", "steps": 128,
                             "device": "cpu"})
    assert "STEP (fast) − 3D-EP (fast) on the 2 clips both ran (paired): insertion +0.000 ± 0.000, deletion" in text


def test_the_paired_comparison_covers_the_frames_a_tubelet_model_reads_where_both_rows_have_them():
    rows = [_row(m, i, pointing_game_read=v, mass_in_tube_read=0.2) for i in range(3)
            for m, v in (("step-interactive", [1.0, 0.5, 1.0][i]), ("step-paper", 0.75))]
    rows.append(_row("step-interactive", 3, pointing_game_read=0.0, mass_in_tube_read=0.0))
    rows.append(_row("step-paper", 3))                     # scored before the frames-read scores: left out
    d = quality.paired(rows, "step-interactive", "step-paper")
    assert d["clips"] == 4 and d["read_clips"] == 3
    assert d["pointing_game_read"] == pytest.approx(0.25 / 3) and d["mass_in_tube_read"] == 0
    s = quality.summarise(rows, ["step-interactive", "step-paper"])
    text = quality.table(s, {"clips": 4, "accuracy": 1.0, "unit": "block", "substrate": "blur", "steps": 32,
                             "device": "cpu"})
    assert "; on the frames the model reads (3 clips): pointing game +0.083 ± 0." in text
    plain = [_row(m, i) for i in range(3) for m in ("step-interactive", "step-paper")]   # no frames-read scores
    assert "read_clips" not in quality.paired(plain, "step-interactive", "step-paper")


_spec_s = importlib.util.spec_from_file_location("speed", Path(__file__).parents[1] / "benchmarks" / "speed.py")
speed = importlib.util.module_from_spec(_spec_s)
_spec_s.loader.exec_module(speed)


def test_speed_reports_every_preset_with_its_passes(monkeypatch):
    """speed.py's preset section runs every preset of step.PRESETS on the same clips and its JSON carries
    passes_per_clip (mean Explanation.evaluations) and the overhead ratio of every preset."""
    from attribution import step as S

    class Exp:
        def __init__(self, preset):
            self.iterations = {"paper": 1200, "fast": 110}.get(preset, 33)
            self.evaluations = self.iterations * 3
            self.saliency = np.zeros((16, 64, 64), np.float32)

    class Curves:
        auc_insertion, auc_deletion = 0.9, 0.2

    monkeypatch.setattr(speed, "explain", lambda model, frames, target=None, preset="fast", **kw: Exp(preset))
    monkeypatch.setattr(speed, "deletion_insertion", lambda *a, **k: Curves())
    fp = speed.fast_vs_paper(2, torch.device("cpu"))
    assert fp["presets"] == list(S.PRESETS)
    assert {p: fp[f"{p}_evaluations"] for p in S.PRESETS} == {"paper": 3600, "fast": 330, "interactive": 99}
    assert fp["time_ratio"] > 0
    text = speed.report({"device_name": "CPU", "torch": "x", "threads": 1, "fast_vs_paper": fp, "clock": "cpu"})
    assert "| interactive |" in text and "cpu clock" in text


def test_speed_breakdown_accounts_for_every_part_of_an_iteration(monkeypatch):
    """The breakdown times each part of a toy iteration for every preset: all parts cost something, ``rest`` is
    the iteration less the parts, and the generator's smooth-max terms follow its sample points (the paper's
    every pixel, 4 × 4 per cell at 64 px, against 2 × 2 for the sub-sampled presets)."""
    from attribution import step as S
    plain = speed._settings
    monkeypatch.setattr(speed, "_settings", lambda model, preset, **kw: dataclasses.replace(
        plain(model, preset, **kw), compile=False))   # the compile's warm-up is not what is tested here
    rows = {r["preset"]: r for r in speed.breakdown(torch.device("cpu"), repeats=1)}
    assert set(rows) == set(S.PRESETS)
    parts = ("model", "generator", "perturbation", "area loss", "L_K", "optimiser")
    for r in rows.values():
        assert all(r[f"{k}_s"] > 0 for k in parts)
        assert r["rest_s"] == pytest.approx(r["iteration_s"] - sum(r[f"{k}_s"] for k in parts))
        assert r["ratio"] == pytest.approx(r["iteration_s"] / r["model_s"])
    assert rows["paper"]["smooth_max_terms"] == 4 * rows["interactive"]["smooth_max_terms"] \
        == 4 * rows["fast"]["smooth_max_terms"] == 16 * 400 * 16 * 49
    text = speed.report({"device_name": "CPU", "torch": "x", "threads": 1, "breakdown": list(rows.values())})
    assert "| toy | paper |" in text and "5.02 M" in text


def test_speed_times_iterations_with_every_part_they_pay_and_reports_both_batches(monkeypatch):
    """The overhead's iterations are timed with L_K on (a 2-iteration timing would otherwise fall inside every
    preset's warm-up), and --quick's one-area rows of the toy come with rows at the preset's own areas."""
    from attribution import step as S
    calls = []
    core = S.core_loss
    monkeypatch.setattr(S, "core_loss", lambda *a, **k: calls.append(1) or core(*a, **k))
    plain = speed._settings
    monkeypatch.setattr(speed, "_settings", lambda model, preset, **kw: dataclasses.replace(
        plain(model, preset, **kw), compile=False))
    model = speed.load_model("toy", pretrained=True)
    clip = torch.rand(1, 3, model.num_frames, model.crop_size, model.crop_size)
    speed.iteration_seconds(model, clip, speed._settings(model, "paper"), repeats=2)
    assert len(calls) == 3
    rows = [{"model": "toy", "preset": p, "batch": b, "single_area": b == 1, "ratio": r}
            for p in S.PRESETS for b, r in ((1, 2.0), (3, 5.0))] + \
           [{"model": "x3d_xs", "preset": p, "batch": 1, "single_area": True, "ratio": 1.1} for p in S.PRESETS] + \
           [{"model": "solo", "preset": p, "batch": 1, "single_area": False, "ratio": 3.0} for p in S.PRESETS]
    out = speed.overhead_ratios(rows, single_area=True)   # "solo": a model whose own areas are one
    assert out["overhead_ratios"]["interactive"] == {"toy": 2.0, "x3d_xs": 1.1}
    assert out["overhead_ratio"] == out["overhead_ratios"]["fast"] and out["paper_overhead_ratio"]["toy"] == 2.0
    assert out["overhead_ratios_batched"]["paper"] == {"toy": 5.0, "solo": 3.0}
    assert "overhead_ratios_batched" not in speed.overhead_ratios(rows[:len(S.PRESETS) * 2:2], single_area=True)


def test_frames_read_scores_the_maps_on_the_frames_the_model_reads(tmp_path, capsys):
    pytest.importorskip("transformers")
    spec = importlib.util.spec_from_file_location("frames_read",
                                                  Path(__file__).parents[1] / "benchmarks" / "frames_read.py")
    fr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fr)
    import json
    from model_zoo import groundtruth as gt
    jsonl, out = tmp_path / "r.jsonl", tmp_path / "r.json"
    args = ["--model", "gt_videomae", "--clips", "1", "--read-clips", "3", "--methods", "random", "--threads", "1",
            "--jsonl", str(jsonl), "--json", str(out)]
    assert fr.main(args) == 0
    (row,) = map(json.loads, jsonl.read_text().splitlines())
    assert row["tubelet"] == 2 and row["read"] == json.loads(out.read_text())["frames_read"]["read"]
    # the same map scored on the read frames and on the others: together they are the frames with evidence
    item = gt.generate(1, seed=fr.SEED, frames=16, size=224)[0]
    n_read = sum(b is not None for b in gt.boxes_read(item.boxes, row["read"], 2))
    n_all = sum(b is not None for b in item.boxes)
    if n_read < n_all:                             # the shipped model reads one frame of each tubelet
        both = (row["pointing_game_read"] * n_read + row["pointing_game_unread"] * (n_all - n_read)) / n_all
        assert both == pytest.approx(row["pointing_game"])
    else:
        assert row["pointing_game_read"] == row["pointing_game"] and row["pointing_game_unread"] is None
    assert fr.main(args) == 0                      # resumed: nothing recomputed
    assert len(jsonl.read_text().splitlines()) == 1
    assert "| random | 1 |" in capsys.readouterr().out


def test_quality_scores_a_tubelet_model_on_the_frames_it_reads_too(tmp_path, capsys):
    """gt_videomae reads its evidence from one frame of each tubelet: its rows carry the pointing game there and
    on the other frames, which together make up the pointing game over every evidence frame; the toy's don't."""
    pytest.importorskip("transformers")
    import json
    from model_zoo import groundtruth as gt
    from model_zoo import load_model
    assert quality.frames_reading(load_model("toy"), "toy") is None
    jsonl = tmp_path / "q.jsonl"
    args = ["--model", "gt_videomae", "--clips", "1", "--read-clips", "2", "--methods", "random", "--steps", "4",
            "--threads", "1", "--jsonl", str(jsonl)]
    assert quality.main(args) == 0
    (row,) = map(json.loads, jsonl.read_text().splitlines())
    assert row["tubelet"] == 2 and row["read"] and set(row["read"]) <= {0, 1}
    item = gt.generate(1, seed=quality.SEED, frames=16, size=224)[0]
    n_read = sum(b is not None for b in gt.boxes_read(item.boxes, row["read"], 2))
    n_all = sum(b is not None for b in item.boxes)
    if n_read < n_all:
        both = (row["pointing_game_read"] * n_read + row["pointing_game_unread"] * (n_all - n_read)) / n_all
        assert both == pytest.approx(row["pointing_game"])
    assert "Pointing game on the evidence frames the model reads (clips scored there): random" in \
        capsys.readouterr().out
    assert row["threads"] == 1                               # the computing run's thread count, kept per row
    summary = tmp_path / "s.json"
    # the report reads them back without recomputing, and counts the rows by the threads that computed them
    assert quality.main(args[:-4] + ["--threads", "2", "--jsonl", str(jsonl), "--report", "--json", str(summary)]) == 0
    assert len(jsonl.read_text().splitlines()) == 1
    assert json.loads(summary.read_text())["settings"]["threads"] == {"1": 1}
    # a row from before the frames-read scores is kept as it is, unless --rescore runs it again
    old = {k: v for k, v in row.items() if k not in ("pointing_game_read", "pointing_game_unread",
                                                      "mass_in_tube_read", "read", "tubelet")}
    jsonl.write_text(json.dumps(old) + "\n")
    assert quality.main(args) == 0
    assert len(jsonl.read_text().splitlines()) == 1
    assert quality.main(args + ["--rescore"]) == 0
    new = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(new) == 2 and new[1]["pointing_game_read"] == row["pointing_game_read"]
    assert new[1]["insertion"] == pytest.approx(row["insertion"])


_spec_g = importlib.util.spec_from_file_location("gpu_check", Path(__file__).parents[1] / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec_g)
_spec_g.loader.exec_module(gpu_check)


def test_gpu_check_compares_every_part_of_an_iteration_and_flags_one_that_disagrees(monkeypatch):
    """gpu_check.py's parts check: every part of an iteration (generator, lookup, losses, with gradients) on the
    checked device, eager and compiled, against the CPU's eager ones; a part off by 0.1 % fails it."""
    res = gpu_check.parts_agree(torch.device("cpu"), frames=4, size=32)
    assert res["ok"] and res["max_relative_diff"] <= gpu_check.PARTS_BOUND
    names = {"generator", "generator grad", "pyramid", "lookup", "lookup grad", "area loss", "L_K", "losses grad"}
    assert set(res["parts"]) == names | {f"{n} (compiled)" for n in names}
    real = gpu_check._parts

    def off(device, compiled, **kw):
        out = real(device, compiled, **kw)
        if compiled:   # the "device" run: L_K's gradient 0.1 % off
            out["losses grad"] = out["losses grad"] * 1.001
        return out

    monkeypatch.setattr(gpu_check, "_parts", off)
    res = gpu_check.parts_agree(torch.device("cpu"), frames=4, size=32)
    assert not res["ok"] and res["parts"]["losses grad (compiled)"] == pytest.approx(1e-3, rel=1e-3)


def test_gpu_check_runs_every_check_even_after_a_failure_and_exits_1(monkeypatch, tmp_path):
    """A failed check is a finding: the others still run, the JSON carries each with its figures (the error
    for the failed one) and the exit status is 1; all passing gives 0."""
    import json

    monkeypatch.setattr(gpu_check, "parts_agree", lambda device: {"ok": True, "max_relative_diff": 0.0})
    monkeypatch.setattr(gpu_check, "paper_short_run", lambda device: 1 / 0)
    monkeypatch.setattr(gpu_check, "default_request", lambda device: {"ok": True, "cpu fp32": {}})
    assert gpu_check.main(["--device", "cpu", "--no-speed", "--out", str(tmp_path)]) == 1
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["engine parts"]["ok"] and res["default request (toy)"]["ok"]
    assert not res["paper short run"]["ok"] and "ZeroDivisionError" in res["paper short run"]["error"]
    assert "| paper short run | FAILED |" in (tmp_path / "gpu_check.txt").read_text()
    monkeypatch.setattr(gpu_check, "paper_short_run", lambda device: {"ok": True})
    assert gpu_check.main(["--device", "cpu", "--no-speed", "--out", str(tmp_path)]) == 0
