"""Score the maps against the evidence a ground-truth model actually reads.

    python benchmarks/frames_read.py --model gt_videomae --clips 30 \\
        --methods step-interactive grad-cam gradient integrated-gradients smoothgrad frame-difference random \\
        --json benchmarks/results/gt_videomae_frames_read.json

A transformer with two-frame tubelets may read its evidence from one frame of each tubelet and ignore the other
(`model_zoo.groundtruth.frames_read` asks the model: blur the evidence in one tubelet position only). The
evidence is then on screen in frames the model never uses, and a faithful map leaves them dark; the pointing
game over every evidence frame counts that as a miss. This benchmark first finds the positions the model reads
(40 clips of seed 31, the `eval` command's confinement clips), then scores every method's map on the quality
benchmark's clips (seed 500, the same maps as `benchmarks/quality.py`; curves only with ``--steps``): the
pointing game over all evidence frames, over the frames read and over the frames not read, and the mass in the
tube of the frames read.
Rows go to a JSONL file as they are done (resumable; default ``benchmarks/results/<model>_frames_read.jsonl``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import quality  # noqa: E402
from quality import LABELS, METHODS, SEED, _mean, _sem, clips_for, read_rows, run_one, tolerance_for  # noqa: E402
from attribution.batch import append_line  # noqa: E402
from model_zoo import groundtruth, load_model  # noqa: E402

READ_SEED, READ_CLIPS = quality.READ_SEED, quality.READ_CLIPS


def summary(rows: list[dict], methods: list[str]) -> dict:
    out = {}
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        if rs:
            out[m] = {"clips": len(rs), **{k: _mean([r[k] for r in rs]) for k in
                                            ("pointing_game", "pointing_game_read", "pointing_game_unread",
                                             "mass_in_tube", "mass_in_tube_read", "temporal_hit", "insertion",
                                             "deletion")},
                      "pointing_game_read_sem": _sem([r["pointing_game_read"] for r in rs])}
    return out


def table(s: dict) -> str:
    def f(x, fmt=".2f"):
        return "–" if x is None or x != x else format(x, fmt)
    lines = ["| method | clips | pointing game, all evidence frames | frames read | frames not read | "
             "mass in tube | mass in the read tube |", "|---|---:|---:|---:|---:|---:|---:|"]
    for m, r in s.items():
        lines.append(f"| {LABELS.get(m, m)} | {r['clips']} | {f(r['pointing_game'])} | "
                     f"{f(r['pointing_game_read'])} ± {f(r['pointing_game_read_sem'])} | "
                     f"{f(r['pointing_game_unread'])} | {f(r['mass_in_tube'], '.3f')} | "
                     f"{f(r['mass_in_tube_read'], '.3f')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, choices=sorted(groundtruth.GEOMETRY))
    ap.add_argument("--methods", nargs="+", default=["step-interactive", "random"], choices=list(METHODS))
    ap.add_argument("--clips", type=int, default=30)
    ap.add_argument("--read-clips", type=int, default=READ_CLIPS, help="clips that decide which frames are read")
    ap.add_argument("--seed", type=int, default=0, help="seed of the methods (not of the clips)")
    ap.add_argument("--steps", type=int, default=0,
                    help="deletion/insertion steps (0, the default: no curves; 32 as the README's tables)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--jsonl", default=None)
    ap.add_argument("--json", default=None, help="write the summary here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = load_model(a.model)
    frames, size = groundtruth.GEOMETRY[a.model]
    reading = groundtruth.frames_read(model, groundtruth.generate(a.read_clips, seed=READ_SEED, frames=frames,
                                                                  size=size))
    k, read = reading["tubelet"], reading["read"]
    print(f"{a.model}: tubelet {k}; evidence blurred in position j only -> p(class) "
          f"{[round(p, 3) for p in reading['p_blurred']]} (clean {reading['p_clean']:.3f}, all blurred "
          f"{reading['p_all_blurred']:.3f}); kept only there -> {[round(p, 3) for p in reading['p_only']]}; "
          f"read: {read}", file=sys.stderr)
    items, tolerance = clips_for(a.model, a.clips, SEED), tolerance_for(a.model)
    path = Path(a.jsonl or f"benchmarks/results/{a.model}_frames_read.jsonl")
    rows = [r for r in read_rows(path) if r.get("seed") == a.seed and r["clip"] < a.clips and r.get("read") == read
            and (r["steps"] == a.steps or not a.steps)]
    done = {(r["method"], r["clip"]) for r in rows}
    for i, item in enumerate(items):
        for m in a.methods:
            if (m, i) in done:
                continue
            row = run_one(model, item, i, m, a.steps, "block", "blur", a.seed, tolerance=tolerance,
                          curves=a.steps > 0, reading=reading)
            append_line(path, row)
            rows.append(row)
            print(f"{m:22s} clip {i:3d}: pg {row['pointing_game']:.2f} read {row['pointing_game_read']:.2f} "
                  f"{row['seconds']:.1f}s", file=sys.stderr, flush=True)
    s = summary(rows, a.methods)
    print(f"{a.model}, {a.clips} clips of seed {SEED}: the evidence is read from tubelet position(s) {read} of "
          f"{k} (p(class) with the evidence blurred there only: "
          f"{', '.join(f'{p:.2f}' for p in reading['p_blurred'])}; clean {reading['p_clean']:.2f}).\n")
    print(table(s))
    if a.json:
        Path(a.json).write_text(json.dumps({"model": a.model, "clips": a.clips, "clip_seed": SEED,
                                            "frames_read": reading, "summary": s}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
