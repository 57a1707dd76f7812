"""How faithful is each attribution method? Insertion / deletion AUC, pointing game, mass in the evidence tube,
temporal hit and seconds per clip on fresh toy clips, plus the reliability of insertion and deletion.

    python benchmarks/quality.py --quick                                   # a few clips, fast methods
    python benchmarks/quality.py --clips 50 --paper-clips 10 --json benchmarks/results/quality.json

Clips are ``toy.generate(N, seed=500)`` (training used seeds >= 1000); the target is the true class.
``--model gt_x3d_xs`` / ``--model gt_videomae`` runs the same on the ground-truth task at that model's
size (``model_zoo.groundtruth.generate(N, seed=500, ...)``; training used seed sequences from 1000), with the
pointing-game tolerance scaled with the crop, and writes its own JSONL (``<model>_quality.jsonl``).
Curves: block units (about H/16 px), blur substrate, ``--steps`` steps (128 as the authors), one global
order over the volume (``attribution.metrics.deletion_insertion``). The ``random`` row is the random-map
baseline every method must beat. The EP variants (3D-EP, 2D-EP) run with the ``fast`` preset; ``step-paper``
is STEP with the authors' 1200-iteration schedule, minutes per clip on a CPU: exclude it with ``--methods``
or run it on the first K clips with ``--paper-clips K`` (the table gives every method's clip count).

``--quick`` runs 4 clips, the fast methods, and STEP (fast) on the first 2 clips only (``--perturbation-clips``).
Reliability (docs/method.md §6.3) is computed over the methods that ran on every clip, random included (the
authors too left the perturbation method out of their reliability set).
Every (method, clip) result is appended to a JSONL file as soon as it is done (``--jsonl``), so a long run
can be stopped and resumed; results of other settings (steps, unit, substrate) in the same file are ignored.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attribution import explain  # noqa: E402
from attribution.batch import append_line  # noqa: E402
from attribution.metrics import (deletion_insertion, mass_in_tube, pointing_game, reliability,  # noqa: E402
                                 sanity_weights, temporal_hit)
from model_zoo import groundtruth, load_model, toy  # noqa: E402

SEED = 500                 # first clip seed stream never used in training (training: >= toy.TRAIN_SEED)
# name -> (explain method, preset); the EP ablations use the fast preset (their paper schedule is STEP's)
METHODS = {
    "step": ("step", "fast"),
    "step-paper": ("step", "paper"),
    "step-interactive": ("step", "interactive"),
    "3d-ep": ("3d-ep", "fast"),
    "2d-ep": ("2d-ep", "fast"),
    "grad-cam": ("grad-cam", None),
    "smoothgrad": ("smoothgrad", None),
    "integrated-gradients": ("integrated-gradients", None),
    "gradient": ("gradient", None),
    "occlusion": ("occlusion", None),
    "frame-difference": ("frame-difference", None),
    "random": ("random", None),
}
LABELS = {"step": "STEP (fast)", "step-paper": "STEP (paper)", "step-interactive": "STEP (interactive)",
          "3d-ep": "3D-EP (fast)", "2d-ep": "2D-EP (fast)"}
QUICK = ["step", "grad-cam", "smoothgrad", "integrated-gradients", "gradient", "occlusion", "frame-difference",
         "random"]
QUICK_CLIPS = 4
QUICK_PERTURBATION_CLIPS = 2   # STEP (fast) takes minutes per clip on 2 shared CPU cores
PERTURBATION = ("step", "step-interactive", "3d-ep", "2d-ep")


def clips_for(model_name: str, n: int, seed: int) -> list:
    """The benchmark's clips for ``model_name``: the toy task's, or the ground-truth task's at its geometry."""
    if model_name == "toy":
        return toy.generate(n, seed=seed)
    frames, size = groundtruth.GEOMETRY[model_name]
    return groundtruth.generate(n, seed=seed, frames=frames, size=size)


def tolerance_for(model_name: str) -> int | None:
    """Pointing-game tolerance: None (the metric's default, 4 px) on the toy, scaled with the crop otherwise."""
    return None if model_name == "toy" else groundtruth.pointing_tolerance(groundtruth.GEOMETRY[model_name][1])


READ_SEED = 31   # the clips `python -m model_zoo.groundtruth eval` checks confinement on
READ_CLIPS = 40


def has_tubelets(model, model_name: str) -> bool:
    """Whether the model embeds several frames per token (VideoMAE's two-frame tubelets): then it may read its
    evidence from some of them only, and its rows are also scored on the frames it reads."""
    return model_name != "toy" and groundtruth.tubelet(model) > 1


def frames_reading(model, model_name: str, clips: int = READ_CLIPS) -> dict | None:
    """Which tubelet positions a ground-truth model reads its evidence from (:func:`model_zoo.groundtruth.frames_read`
    on ``clips`` clips of the ``eval`` command's confinement seed), or None for a model without tubelets (the
    toy, a CNN), where every frame is read. README, "Which frames VideoMAE reads"."""
    if not has_tubelets(model, model_name):
        return None
    frames, size = groundtruth.GEOMETRY[model_name]
    return groundtruth.frames_read(model, groundtruth.generate(clips, seed=READ_SEED, frames=frames, size=size))


def score_read(row: dict, saliency, item, reading: dict, tolerance: int | None) -> dict:
    """``row`` plus the pointing game over the evidence frames the model reads and over those it does not, the
    mass in the read part of the tube, and which positions were read (``reading``: :func:`frames_reading`)."""
    k, read = reading["tubelet"], reading["read"]
    unread = [j for j in range(k) if j not in read]
    on = groundtruth.boxes_read(item.boxes, read, k)
    off = groundtruth.boxes_read(item.boxes, unread, k)
    tol = {} if tolerance is None else {"tolerance": tolerance}
    row.update(pointing_game_read=pointing_game(saliency, on, **tol),
               pointing_game_unread=pointing_game(saliency, off, **tol) if unread else None,
               mass_in_tube_read=mass_in_tube(saliency, on), read=read, tubelet=k)
    return row


def random_map_seed(seed: int, index: int) -> int:
    """The random method's seed on clip ``index`` of a run with method seed ``seed``: distinct for every pair."""
    return seed * 1_000_003 + index


def run_one(model, item, index: int, name: str, steps: int, unit: str, substrate: str, seed: int,
            overrides: dict | None = None, tolerance: int | None = None, saliency: bool = False,
            curves: bool = True, reading: dict | None = None) -> dict:
    """Explain one clip with method ``name`` (plus Settings ``overrides``) and score the map (``saliency``:
    the map itself too, under the key "saliency", for the caller's own scores; ``curves=False``: no deletion
    and insertion curves, their AUCs None; ``reading``, a tubelet model's :func:`frames_reading`: also scored
    on the frames it reads, :func:`score_read`)."""
    method, preset = METHODS[name]
    overrides = dict(overrides or {})
    preset = overrides.pop("preset", None) or preset or "fast"   # a variant may name another preset
    # the random map is drawn anew for every clip (one shared map would make the baseline's clips dependent)
    map_seed = random_map_seed(seed, index) if name == "random" else seed
    t0 = time.perf_counter()
    exp = explain(model, item.frames, target=item.label, method=method, preset=preset, seed=map_seed, **overrides)
    seconds = time.perf_counter() - t0
    clip = model.prepare(item.frames)
    curves = deletion_insertion(model, clip, exp.saliency, item.label, steps=steps, unit=unit,
                                substrate=substrate, seed=seed) if curves else None
    row = {"method": name, "clip": index, "steps": steps, "unit": unit, "substrate": substrate, "seed": seed,
           "label": item.label, "predicted": model.labels.index(exp.topk[0][0]),
           "probability": exp.probability,
           "insertion": curves and curves.auc_insertion, "deletion": curves and curves.auc_deletion,
           "pointing_game": pointing_game(exp.saliency, item.boxes,
                                          **({} if tolerance is None else {"tolerance": tolerance})),
           "mass_in_tube": mass_in_tube(exp.saliency, item.boxes),
           "temporal_hit": bool(temporal_hit(exp.saliency, item.event)),
           "seconds": seconds, "curve_seconds": curves and curves.seconds, "evaluations": exp.evaluations,
           "iterations": exp.iterations, "areas": list(exp.areas) if exp.areas else None}
    if exp.settings and "lr" in exp.settings:   # the learning rate that ran: presets have changed it over time
        row["lr"] = exp.settings["lr"]
    if tolerance is not None:
        row["tolerance"] = tolerance
    if name == "random":
        row["map_seed"] = map_seed
    if reading is not None:
        score_read(row, exp.saliency, item, reading, tolerance)
    if saliency:
        row["saliency"] = exp.saliency
    return row


def parse_shard(ap: argparse.ArgumentParser, text: str) -> tuple[int, int]:
    """``--shard I/N`` as (I, N), or the parser's usage error."""
    try:
        shard, shards = (int(x) for x in text.split("/"))
        assert 0 <= shard < shards
    except (ValueError, AssertionError):
        ap.error(f"--shard must be I/N with 0 <= I < N, not {text!r}")
    return shard, shards


def read_rows(path: Path) -> list[dict]:
    """The rows of a results JSONL file (creating its folder); a line torn by an interrupted run is skipped, and
    so is a random-map row without a ``map_seed`` (from when every clip got the same map: run again)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("method") != "random" or "map_seed" in row:
                rows.append(row)
    return rows


def _mean(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(xs)) if xs else float("nan")


def _sem(xs):
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return float(np.std(xs, ddof=1) / math.sqrt(len(xs))) if len(xs) > 1 else float("nan")


def accuracy(rows: list[dict]) -> float:
    """The model's accuracy on the clips the rows cover: its prediction on a clip does not depend on the
    method, so one per clip, whichever methods ran there."""
    return _mean(list({r["clip"]: float(r["predicted"] == r["label"]) for r in rows}.values()))


def summarise(rows: list[dict], methods: list[str]) -> dict:
    per = {}
    for name in methods:
        rs = [r for r in rows if r["method"] == name]
        if not rs:
            continue
        per[name] = {
            "clips": len(rs),
            "insertion": _mean([r["insertion"] for r in rs]), "insertion_sem": _sem([r["insertion"] for r in rs]),
            "deletion": _mean([r["deletion"] for r in rs]), "deletion_sem": _sem([r["deletion"] for r in rs]),
            "pointing_game": _mean([r["pointing_game"] for r in rs]),
            "mass_in_tube": _mean([r["mass_in_tube"] for r in rs]),
            "temporal_hit": _mean([float(r["temporal_hit"]) for r in rs]),
            "seconds_per_clip": _mean([r["seconds"] for r in rs]),
            "curve_seconds_per_clip": _mean([r["curve_seconds"] for r in rs]),
            "beats_random_insertion": None, "beats_random_deletion": None,
        }
    # reliability over the clips the random map ran on, and the methods that ran on all of those clips
    have = {}
    for r in rows:
        have.setdefault(r["method"], set()).add(r["clip"])
    clips = sorted(have.get("random", ()))
    full = [m for m in methods if m in per and have[m].issuperset(clips)]
    rel = {"methods": full, "clips": len(clips)}
    if "random" in full and len(full) >= 2 and len(clips) >= 2:
        table = {(r["method"], r["clip"]): r for r in rows}
        cols = ["random"] + [m for m in full if m != "random"]
        for metric, higher in (("insertion", True), ("deletion", False)):
            s = np.array([[table[(m, i)][metric] for m in cols] for i in clips])
            rel[metric] = reliability(s, random_index=0, higher_is_better=higher)
            w = sanity_weights(s, 0, higher)
            rel[f"{metric}_mean_weight"] = float(w.mean())
            rel[f"{metric}_random_last"] = float((w == 1).mean())
    if "random" in per:
        rnd = {r["clip"]: r for r in rows if r["method"] == "random"}
        for name, p in per.items():
            rs = [r for r in rows if r["method"] == name and r["clip"] in rnd]
            if name != "random" and rs:
                p["beats_random_insertion"] = _mean([float(r["insertion"] > rnd[r["clip"]]["insertion"]) for r in rs])
                p["beats_random_deletion"] = _mean([float(r["deletion"] < rnd[r["clip"]]["deletion"]) for r in rs])
    out = {"methods": per, "reliability": rel}
    if "step" in per and "step-paper" in per:
        out["fast_minus_paper"] = paired(rows, "step", "step-paper")
    if "step-interactive" in per and "step-paper" in per:
        out["interactive_minus_paper"] = paired(rows, "step-interactive", "step-paper")
    if "step" in per and "step-interactive" in per:
        out["fast_minus_interactive"] = paired(rows, "step", "step-interactive")
    for ablation in ("3d-ep", "2d-ep"):   # the ablations of the paper (its §4.3): without L_K, one area per frame
        if "step" in per and ablation in per:
            out[f"fast_minus_{ablation.replace('-', '_')}"] = paired(rows, "step", ablation)
    if "step-interactive" in per:   # the app's default against each comparison method, on shared clips
        out["interactive_minus_methods"] = {m: paired(rows, "step-interactive", m) for m in per
                                            if m in METHODS and METHODS[m][1] is None and m != "random"}
    for name, p in per.items():   # the frames a tubelet model reads (score_read), where the rows have them
        rd = [r for r in rows if r["method"] == name and r.get("pointing_game_read") is not None]
        if rd:
            p.update(read_clips=len(rd), pointing_game_read=_mean([r["pointing_game_read"] for r in rd]),
                     pointing_game_read_sem=_sem([r["pointing_game_read"] for r in rd]),
                     mass_in_tube_read=_mean([r["mass_in_tube_read"] for r in rd]))
    for name, p in per.items():   # model passes per clip (Explanation.evaluations), where the rows have them
        ev = [r["evaluations"] for r in rows if r["method"] == name and r.get("evaluations") is not None]
        p["passes_per_clip"] = _mean(ev) if ev else None
    return out


PAIRED_METRICS = ("insertion", "deletion", "pointing_game", "mass_in_tube", "temporal_hit")
READ_METRICS = ("pointing_game_read", "mass_in_tube_read")


def paired(rows: list[dict], a: str, b: str, metrics: tuple = PAIRED_METRICS) -> dict:
    """Mean difference a - b of each metric over the clips both methods ran on, with its standard error
    (the spread of the per-clip differences over sqrt(n)): the error of a comparison on shared clips."""
    ra = {r["clip"]: r for r in rows if r["method"] == a}
    rb = {r["clip"]: r for r in rows if r["method"] == b}
    clips = sorted(set(ra) & set(rb))
    # a tubelet model's scores on the frames it reads (score_read), over the clips where both rows have them
    read = [i for i in clips if ra[i].get("pointing_game_read") is not None
            and rb[i].get("pointing_game_read") is not None]
    out = {"clips": len(clips), **({"read_clips": len(read)} if read else {})}
    for ms, on in ((metrics, clips), (READ_METRICS if read else (), read)):
        for m in ms:
            d = [float(ra[i][m]) - float(rb[i][m]) for i in on]
            out[m], out[f"{m}_sem"] = _mean(d), _sem(d)
    return out


def table(summary: dict, header: dict) -> str:
    lines = [f"{header.get('task', 'Toy task')}, {header['clips']} clips (seeds {SEED}.., target = true class, "
             f"model accuracy {header['accuracy']:.0%}); curves: {header['unit']} units, "
             f"{header['substrate']} substrate, {header['steps']} steps; device {header['device']}.", "",
             "| method | clips | insertion AUC ↑ | deletion AUC ↓ | ins > random | del < random | pointing game ↑ "
             "| mass in tube ↑ | temporal hit ↑ | s / clip |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def pct(x):
        return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0%}"

    def pm(x, e):
        return f"{x:.3f}" + ("" if math.isnan(e) else f" ± {e:.3f}")
    for name, p in summary["methods"].items():
        lines.append(f"| {LABELS.get(name, name)} | {p['clips']} | {pm(p['insertion'], p['insertion_sem'])} | "
                     f"{pm(p['deletion'], p['deletion_sem'])} | {pct(p['beats_random_insertion'])} | "
                     f"{pct(p['beats_random_deletion'])} | {p['pointing_game']:.2f} | {p['mass_in_tube']:.3f} | "
                     f"{p['temporal_hit']:.2f} | {p['seconds_per_clip']:.2f} |")
    rel = summary["reliability"]
    lines.append("")
    if "insertion" in rel:
        lines.append(f"Reliability α over {len(rel['methods'])} methods × {rel['clips']} clips "
                     f"({', '.join(rel['methods'])}): insertion {rel['insertion']:.3f} "
                     f"(mean sanity weight {rel['insertion_mean_weight']:.2f}, random last on "
                     f"{rel['insertion_random_last']:.0%} of clips), deletion {rel['deletion']:.3f} "
                     f"(mean weight {rel['deletion_mean_weight']:.2f}, random last on "
                     f"{rel['deletion_random_last']:.0%}).")
    else:
        lines.append("Reliability: needs the random method and at least one other on every clip.")
    for key, label, other in (("fast_minus_paper", "STEP (fast)", "STEP (paper)"),
                              ("interactive_minus_paper", "STEP (interactive)", "STEP (paper)"),
                              ("fast_minus_interactive", "STEP (fast)", "STEP (interactive)"),
                              ("fast_minus_3d_ep", "STEP (fast)", "3D-EP (fast)"),
                              ("fast_minus_2d_ep", "STEP (fast)", "2D-EP (fast)")):
        if key in summary:
            d = summary[key]
            lines.append(f"{label} − {other} on the {d['clips']} clips both ran (paired): " + ", ".join(
                f"{m.replace('_', ' ')} {d[m]:+.3f} ± {d[m + '_sem']:.3f}" for m in PAIRED_METRICS) + (
                f"; on the frames the model reads ({d['read_clips']} clips): " + ", ".join(
                    f"{m[:-5].replace('_', ' ')} {d[m]:+.3f} ± {d[m + '_sem']:.3f}" for m in READ_METRICS)
                if d.get("read_clips") else "") + ".")
    for m, d in summary.get("interactive_minus_methods", {}).items():
        lines.append(f"STEP (interactive) − {LABELS.get(m, m)} on the {d['clips']} clips both ran (paired): "
                     + ", ".join(f"{k.replace('_', ' ')} {d[k]:+.3f} ± {d[k + '_sem']:.3f}"
                                 for k in PAIRED_METRICS[:4]) + ".")
    read = {LABELS.get(n, n): p for n, p in summary["methods"].items() if p.get("read_clips")}
    if read:
        lines.append("Pointing game on the evidence frames the model reads (clips scored there): " + ", ".join(
            f"{k} {p['pointing_game_read']:.2f} ± {p['pointing_game_read_sem']:.2f} ({p['read_clips']})"
            for k, p in read.items()) + ".")
    passes = {LABELS.get(n, n): p["passes_per_clip"] for n, p in summary["methods"].items()
              if p.get("passes_per_clip") and n in METHODS and METHODS[n][1]}
    if passes:
        lines.append("Model passes per clip (forward+backward, one per mask and iteration): "
                     + ", ".join(f"{k} {v:.0f}" for k, v in passes.items()) + ".")
    lines.append("± is the standard error over clips; s / clip is the attribution time (curves not included).")
    return "\n".join(lines)


def row_threads(rows: list[dict]) -> dict:
    """How many rows each CPU thread count computed ("unrecorded" for rows from before rows kept it)."""
    count: dict = {}
    for r in rows:
        key = str(r.get("threads", "unrecorded"))
        count[key] = count.get(key, 0) + 1
    return dict(sorted(count.items()))


def record(path, row: dict, label: str) -> None:
    """Append a (method, clip) result to the JSONL file and log it on one line."""
    append_line(path, row)
    its = f"{row['iterations']} it, " if row.get("iterations") else ""
    print(f"{label:24s} clip {row['clip']:3d}: {its}ins {row['insertion']:.3f} del {row['deletion']:.3f} "
          f"pg {row['pointing_game']:.2f} tube {row['mass_in_tube']:.3f} {row['seconds']:.1f}s",
          file=sys.stderr, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=None, help=f"toy clips (default 30; {QUICK_CLIPS} with --quick)")
    ap.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                    help="methods to run (default: all; with --quick: " + " ".join(QUICK) + ")")
    ap.add_argument("--quick", action="store_true", help="few clips, fast methods: a few minutes on 2 cores")
    ap.add_argument("--paper-clips", type=int, default=None,
                    help="run step-paper on the first K clips only (it takes minutes per clip on a CPU)")
    ap.add_argument("--perturbation-clips", type=int, default=None,
                    help="run step / 3d-ep / 2d-ep (fast preset) on the first K clips only "
                         f"(default: all clips; {QUICK_PERTURBATION_CLIPS} with --quick)")
    ap.add_argument("--steps", type=int, default=128, help="deletion/insertion steps (default 128)")
    ap.add_argument("--unit", default="block", choices=["block", "pixel", "frame"])
    ap.add_argument("--substrate", default="blur", choices=["blur", "fade"])
    ap.add_argument("--seed", type=int, default=0, help="seed of the methods (not of the clips)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--shard", default="0/1", metavar="I/N",
                    help="run only clips i with i %% N == I (start N processes with --threads 1 each; they share "
                         "the JSONL file; a last run without --shard prints the table)")
    ap.add_argument("--report", action="store_true",
                    help="compute nothing: summarise the rows already in the JSONL (each method on its own clips)")
    ap.add_argument("--model", default="toy", choices=["toy"] + sorted(groundtruth.GEOMETRY),
                    help="toy (default) or a model of the ground-truth task (model_zoo/groundtruth.py)")
    ap.add_argument("--jsonl", default=None, help="per-clip results (resumable; default "
                    "benchmarks/results/quality.jsonl for the toy, <model>_quality.jsonl otherwise)")
    ap.add_argument("--json", default=None, help="write the summary here")
    ap.add_argument("--read-clips", type=int, default=READ_CLIPS,
                    help="a model with tubelets: clips that decide which frames it reads (README, \"Which frames "
                         "VideoMAE reads\"); its rows are also scored there")
    ap.add_argument("--rescore", action="store_true",
                    help="a model with tubelets: run again the (method, clip) rows that lack the frames-read scores "
                         "(rows from before them; the newest row of a method and clip is the one reported)")
    ap.add_argument("--baseline", default=None, metavar="JSONL",
                    help="also report each method minus the same method's rows in JSONL (e.g. an earlier engine's), "
                         "paired over the clips both have")
    a = ap.parse_args(argv)
    shard, shards = parse_shard(ap, a.shard)
    torch.set_num_threads(a.threads)
    n = a.clips or (QUICK_CLIPS if a.quick else 30)
    methods = a.methods or (QUICK if a.quick else list(METHODS))
    cap = a.perturbation_clips
    if cap is None and a.quick:
        cap = QUICK_PERTURBATION_CLIPS
    model = load_model(a.model, device=a.device)
    items = clips_for(a.model, n, SEED)
    tolerance = tolerance_for(a.model)
    path = Path(a.jsonl or ("benchmarks/results/quality.jsonl" if a.model == "toy"
                            else f"benchmarks/results/{a.model}_quality.jsonl"))
    rows = read_rows(path)
    same = {"steps": a.steps, "unit": a.unit, "substrate": a.substrate, "seed": a.seed}
    rows = [r for r in rows if all(r.get(k) == v for k, v in same.items()) and r.get("clip", n) < n]
    rescore = a.rescore and has_tubelets(model, a.model)
    done = {(r["method"], r["clip"]) for r in rows if not (rescore and r.get("pointing_game_read") is None)}
    # clip-major: an interrupted run leaves whole clips for the reliability
    todo = [(i, name) for i in (range(shard, n, shards) if not a.report else ()) for name in methods
            if (name, i) not in done
            and not (name == "step-paper" and a.paper_clips is not None and i >= a.paper_clips)
            and not (name in PERTURBATION and cap is not None and i >= cap)]
    # a model with tubelets is also scored on the frames it reads (README, "Which frames VideoMAE reads")
    reading = frames_reading(model, a.model, a.read_clips) if todo else None
    if reading is not None:
        print(f"{a.model}: evidence read from tubelet position(s) {reading['read']} of {reading['tubelet']} "
              f"(p(class) with it blurred there only: {[round(p, 3) for p in reading['p_blurred']]}, clean "
              f"{reading['p_clean']:.3f})", file=sys.stderr)
    t_start = time.perf_counter()
    for i, name in todo:
        row = run_one(model, items[i], i, name, a.steps, a.unit, a.substrate, a.seed, tolerance=tolerance,
                      reading=reading)
        row["threads"] = a.threads   # the run that computed the row (a --report run only reads it)
        rows.append(row)
        record(path, row, name)
    if shards > 1:
        return 0
    rows = [r for r in rows if r["method"] in methods]
    # keep one row per (method, clip): the latest
    rows = list({(r["method"], r["clip"]): r for r in rows}.values())
    summary = summarise(rows, methods)
    acc = accuracy(rows)
    header = {"clips": n, "accuracy": acc, "steps": a.steps, "unit": a.unit, "substrate": a.substrate,
              "device": a.device, "threads": row_threads(rows), "seed": a.seed, "clip_seed": SEED,
              "wall_seconds": round(time.perf_counter() - t_start, 1),
              "presets": {m: METHODS[m][1] for m in methods}}
    if a.model != "toy":
        frames, size = groundtruth.GEOMETRY[a.model]
        header.update(task=f"Ground-truth task, {a.model} ({frames} × {size} px)", model=a.model,
                      pointing_tolerance=tolerance)
    print(table(summary, header))
    if a.baseline:
        base = [dict(r, method=r["method"] + "@baseline") for r in read_rows(Path(a.baseline))
                if all(r.get(k) == v for k, v in same.items()) and r.get("clip", n) < n and r["method"] in methods]
        base = list({(r["method"], r["clip"]): r for r in base}.values())
        summary["minus_baseline"] = {"baseline": a.baseline, **{
            m: paired(rows + base, m, m + "@baseline") for m in summary["methods"]}}
        for m, d in summary["minus_baseline"].items():
            if m != "baseline" and d["clips"]:
                print(f"{LABELS.get(m, m)} − the same in {a.baseline} on the {d['clips']} clips both have (paired): "
                      + ", ".join(f"{k.replace('_', ' ')} {d[k]:+.3f} ± {d[k + '_sem']:.3f}"
                                  for k in PAIRED_METRICS) + ".")
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"settings": header, **summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
