"""Tune the ``fast`` preset on toy clips that the quality benchmark never sees, so that choosing a setting
here and confirming it with ``benchmarks/quality.py`` are separate experiments.

    python benchmarks/tune.py --variants "lr=0.1" "lr=0.15" "lr=0.2" "lr=0.3" --clips 16 \\
        --json benchmarks/results/tune_fast_lr.json

Each variant is STEP (or ``--method`` 3d-ep / 2d-ep) with the ``fast`` preset (or the one a ``preset=...`` part
names) plus the given :class:`attribution.step.Settings` overrides (``key=value`` pairs, comma-separated, values
as Python literals), e.g. ``"preset='interactive'" "preset='interactive',areas=(0.07, 0.14, 0.27)"``.
Clips are ``toy.generate(n, seed=700)`` (quality.py uses seed 500, training seeds >= 1000); the metrics are
quality.py's. ``--model gt_x3d_xs`` / ``gt_videomae`` tunes on the ground-truth task's clips of seed 700 instead
(a model with tubelets, VideoMAE, also scored on the frames it reads, as quality.py does). Every variant is compared
with the first on the same clips: the mean per-clip difference and its standard error, which is far smaller
than the spread of the means themselves (the pointing game of one clip moves in steps of 0.1 or more).
Rows go to a JSONL file as they are done (resumable; ``--shard I/N`` splits the clips over processes).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality import (PAIRED_METRICS, READ_CLIPS, READ_METRICS, _mean, clips_for, frames_reading,  # noqa: E402
                     has_tubelets, record, paired, parse_shard, read_rows, run_one, tolerance_for)
from model_zoo import groundtruth, load_model  # noqa: E402

SEED = 700   # a clip stream of its own: not quality.py's (500), not training's (>= toy.TRAIN_SEED)


def parse_variant(text: str) -> dict:
    """``"lr=0.3,subsample=3"`` -> {"lr": 0.3, "subsample": 3}; ``"fast"`` or ``""`` -> {} (the preset as is);
    ``preset='interactive'`` starts from another preset."""
    out = {}
    # split at the commas that start a new key=, not inside a value such as areas=(0.1, 0.2)
    for part in filter(None, (p.strip() for p in re.split(r",\s*(?=[A-Za-z_]\w*\s*=)", text))):
        if part == "fast":
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"variant part {part!r} is not key=value")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"value of {key.strip()!r} is not a Python literal: {value.strip()!r}") from None
    return out


def report(rows: list[dict], variants: list[str], metrics: tuple = PAIRED_METRICS) -> dict:
    base = variants[0]
    out = {}
    for v in variants:
        rs = [r for r in rows if r["method"] == v]
        if not rs:
            continue
        out[v] = {"clips": len(rs), "iterations": _mean([r["iterations"] for r in rs]),
                  "seconds": _mean([r["seconds"] for r in rs]),
                  **{m: _mean([float(r[m]) for r in rs]) for m in metrics}}
        rd = [r for r in rs if r.get("pointing_game_read") is not None]   # a tubelet model's frames read
        if rd:
            out[v].update(read_clips=len(rd), **{m: _mean([float(r[m]) for r in rd]) for m in READ_METRICS})
        if v != base:
            out[v]["minus_" + base] = paired(rows, v, base, metrics)
    return out


SHOWN = ("insertion", "pointing_game", "mass_in_tube", "temporal_hit")   # columns of the table
DELTAS = ("pointing_game", "mass_in_tube", "insertion")                  # paired-difference columns


def table(summary: dict, variants: list[str], shown: tuple = SHOWN, deltas: tuple = DELTAS,
          first: str = "variant") -> str:
    base = variants[0]

    def name(m):
        return m.replace("_", " ")
    lines = [f"| {first} | clips | iterations | s / clip | " + " | ".join(name(m) for m in shown) + " | "
             + " | ".join(f"Δ {name(m)} vs {base}" for m in deltas) + " |",
             "|---|---:|---:|---:|" + "---:|" * (len(shown) + len(deltas))]
    for v in variants:
        p = summary.get(v)
        if p is None:
            continue
        d = p.get("minus_" + base)

        def delta(m):
            return "–" if d is None else f"{d[m]:+.3f} ± {d[m + '_sem']:.3f}"
        lines.append(f"| {v} | {p['clips']} | {p['iterations']:.0f} | {p['seconds']:.1f} | "
                     + " | ".join(f"{p[m]:.2f}" if m == "temporal_hit" else f"{p[m]:.3f}" for m in shown) + " | "
                     + " | ".join(delta(m) for m in deltas) + " |")
    return "\n".join(lines)


def paired_run_args(ap: argparse.ArgumentParser) -> None:
    """The options every paired run shares: curve steps, optimisation seed, threads, shard."""
    ap.add_argument("--steps", type=int, default=128, help="deletion/insertion steps")
    ap.add_argument("--seed", type=int, default=0, help="seed of the optimisation (not of the clips)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--shard", default="0/1", metavar="I/N", help="run clips i with i %% N == I")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", required=True,
                    help='Settings overrides per variant, e.g. "lr=0.1" "lr=0.3,subsample=3"; the first is the '
                         'baseline ("fast": the preset as it is)')
    ap.add_argument("--method", default="step", choices=["step", "3d-ep", "2d-ep"],
                    help="the perturbation method the variants run (fast preset; default step)")
    ap.add_argument("--clips", type=int, default=16)
    paired_run_args(ap)
    ap.add_argument("--model", default="toy", choices=["toy"] + sorted(groundtruth.GEOMETRY),
                    help="toy (default) or a model of the ground-truth task, on its clips of seed 700")
    ap.add_argument("--jsonl", default=None, help="per-clip rows (resumable; default benchmarks/results/"
                    "tune.jsonl for the toy, tune_<model>.jsonl otherwise)")
    ap.add_argument("--json", default=None, help="write the summary here")
    ap.add_argument("--read-clips", type=int, default=READ_CLIPS,
                    help="a model with tubelets: clips that decide which frames it reads; its rows are also "
                         "scored there")
    a = ap.parse_args(argv)
    try:
        overrides = {v: parse_variant(v) for v in a.variants}
    except ValueError as e:
        ap.error(str(e))
    shard, shards = parse_shard(ap, a.shard)
    torch.set_num_threads(a.threads)
    model = load_model(a.model)
    items = clips_for(a.model, a.clips, SEED)
    tolerance = tolerance_for(a.model)
    path = Path(a.jsonl or ("benchmarks/results/tune.jsonl" if a.model == "toy"
                            else f"benchmarks/results/tune_{a.model}.jsonl"))
    # a model with tubelets is also scored on the frames it reads (quality.score_read): its rows without those
    # scores are run again
    tubelets = has_tubelets(model, a.model)
    rows = read_rows(path)
    rows = [r for r in rows if (not tubelets or r.get("pointing_game_read") is not None)
            and r.get("clip_seed") == SEED and r.get("steps") == a.steps and r.get("seed") == a.seed
            and r["clip"] < a.clips and r["method"] in overrides
            and r.get("perturbation_method", "step") == a.method]
    done = {(r["method"], r["clip"]) for r in rows}
    todo = [(i, v) for i in range(shard, a.clips, shards) for v in a.variants if (v, i) not in done]
    reading = frames_reading(model, a.model, a.read_clips) if todo and tubelets else None
    for i, v in todo:
        row = run_one(model, items[i], i, a.method, a.steps, "block", "blur", a.seed, overrides[v],
                      tolerance=tolerance, reading=reading)
        row.update(method=v, overrides=overrides[v], clip_seed=SEED, perturbation_method=a.method)
        rows.append(row)
        record(path, row, v)
    if shards > 1:
        return 0
    rows = list({(r["method"], r["clip"]): r for r in rows}.values())
    summary = report(rows, a.variants)
    print(f"{a.method} fast-preset variants on {a.model} clips seed {SEED} (target = true class); Δ = paired difference "
          f"± its standard error.\n")
    read = ("pointing_game_read",) if tubelets else ()
    print(table(summary, a.variants, SHOWN + read, DELTAS[:1] + read + DELTAS[1:]))
    if a.json:
        Path(a.json).write_text(json.dumps({"clip_seed": SEED, "clips": a.clips, "threads": a.threads,
                                            "method": a.method,
                                            "variants": {v: overrides[v] for v in a.variants},
                                            "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
