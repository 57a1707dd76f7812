"""Does STEP find the evidence? Pointing game, mass in the evidence tube and temporal hit on fresh toy clips.

    python benchmarks/step_toy.py --clips 50 --presets fast paper --json benchmarks/results/step_toy.json

Each clip's result is appended to a JSONL file as soon as it is done, so a long run (the paper preset takes
minutes per clip on a CPU) can be stopped and resumed; ``--clips-paper`` caps the paper preset's clip count.
Seeds: clips come from ``toy.generate(n, seed=500)``; training used seeds >= 1000.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attribution import explain  # noqa: E402
from attribution.metrics import mass_in_tube, pointing_game, temporal_hit  # noqa: E402
from model_zoo import load_model, toy  # noqa: E402

SEED = 500


def run_clip(model, clip, index, method, preset, seed):
    t0 = time.perf_counter()
    exp = explain(model, clip.frames, target=clip.label, method=method, preset=preset, seed=seed)
    return {"clip": index, "method": method, "preset": preset, "label": clip.label,
            "pointing_game": pointing_game(exp.saliency, clip.boxes, tolerance=4),
            "mass_in_tube": mass_in_tube(exp.saliency, clip.boxes),
            "temporal_hit": bool(temporal_hit(exp.temporal, clip.event)),
            "iterations": exp.iterations, "evaluations": exp.evaluations,
            "seconds": time.perf_counter() - t0}


def summarise(rows):
    out = {}
    for key in sorted({(r["method"], r["preset"]) for r in rows}):
        rs = [r for r in rows if (r["method"], r["preset"]) == key]
        out[f"{key[0]}/{key[1]}"] = {
            "clips": len(rs),
            "pointing_game": float(np.mean([r["pointing_game"] for r in rs])),
            "mass_in_tube": float(np.mean([r["mass_in_tube"] for r in rs])),
            "temporal_hit": float(np.mean([r["temporal_hit"] for r in rs])),
            "iterations": float(np.mean([r["iterations"] for r in rs])),
            "seconds_per_clip": float(np.mean([r["seconds"] for r in rs])),
        }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=50)
    ap.add_argument("--clips-paper", type=int, default=None, help="cap for the paper preset (slow on CPU)")
    ap.add_argument("--presets", nargs="+", default=["fast", "paper"])
    ap.add_argument("--method", default="step")
    ap.add_argument("--seed", type=int, default=0, help="optimisation seed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--jsonl", default="benchmarks/results/step_toy.jsonl", help="per-clip results (resumable)")
    ap.add_argument("--json", default=None, help="write the summary here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = load_model("toy", device="cpu")
    clips = toy.generate(a.clips, seed=SEED)
    path = Path(a.jsonl)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    done = {(r["clip"], r["method"], r["preset"]) for r in rows}
    for preset in a.presets:
        n = a.clips if preset != "paper" or a.clips_paper is None else min(a.clips, a.clips_paper)
        for i in range(n):
            if (i, a.method, preset) in done:
                continue
            row = run_clip(model, clips[i], i, a.method, preset, a.seed)
            rows.append(row)
            with path.open("a") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
            print(f"{preset} clip {i}: pg {row['pointing_game']:.2f} tube {row['mass_in_tube']:.2f} "
                  f"hit {row['temporal_hit']} {row['seconds']:.1f}s", file=sys.stderr, flush=True)
    rows = [r for r in rows if r["clip"] < a.clips and r["method"] == a.method and r["preset"] in a.presets]
    summary = summarise(rows)
    print(f"| method/preset | clips | pointing game | mass in tube | temporal hit | iterations | s/clip |")
    print("|---|---|---|---|---|---|---|")
    for k, v in summary.items():
        print(f"| {k} | {v['clips']} | {v['pointing_game']:.3f} | {v['mass_in_tube']:.3f} | "
              f"{v['temporal_hit']:.3f} | {v['iterations']:.0f} | {v['seconds_per_clip']:.1f} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"seed": SEED, "threads": a.threads, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
