"""How much the deletion / insertion AUCs change when the curves take fewer steps than the paper's 128.

For each benchmark clip (the quality benchmark's toy clips, seed 500) and each method's map, the curves are
measured with 128 steps and with each cheaper count, on the same map; the table gives the mean and largest
|AUC(S) − AUC(128)| and the model passes each count costs (README: Faithfulness metrics gives the last
result; the app's quick curves take 32 steps).

    python benchmarks/curve_steps.py --clips 30 --json benchmarks/results/curve_steps.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attribution import explain                      # noqa: E402
from attribution.metrics import deletion_insertion   # noqa: E402
from model_zoo import load_model                     # noqa: E402
from model_zoo import toy                            # noqa: E402

SEED = 500                   # the quality benchmark's clips
PAPER_STEPS = 128


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=30)
    ap.add_argument("--steps", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--methods", nargs="+", default=["step", "grad-cam", "random"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = load_model("toy", device="cpu")
    diffs = {m: {s: {"deletion": [], "insertion": []} for s in a.steps} for m in a.methods}
    passes = {}
    for i, item in enumerate(toy.generate(a.clips, seed=SEED)):
        clip = model.prepare(item.frames)
        for method in a.methods:
            sal = explain(model, clip, target=item.label, method=method, seed=0).saliency
            ref = deletion_insertion(model, clip, sal, item.label, steps=PAPER_STEPS)
            passes[PAPER_STEPS] = ref.evaluations
            for s in a.steps:
                c = deletion_insertion(model, clip, sal, item.label, steps=s)
                passes[s] = c.evaluations
                diffs[method][s]["deletion"].append(c.auc_deletion - ref.auc_deletion)
                diffs[method][s]["insertion"].append(c.auc_insertion - ref.auc_insertion)
        print(f"clip {i + 1}/{a.clips}", file=sys.stderr, flush=True)
    rows = []
    for method in a.methods:
        for s in a.steps:
            d = {k: np.asarray(v) for k, v in diffs[method][s].items()}
            rows.append({"method": method, "steps": s, "clips": a.clips, "passes": passes[s],
                         "passes_128": passes[PAPER_STEPS],
                         **{f"{k}_mean_abs": float(np.abs(v).mean()) for k, v in d.items()},
                         **{f"{k}_max_abs": float(np.abs(v).max()) for k, v in d.items()},
                         **{f"{k}_mean": float(v.mean()) for k, v in d.items()}})
    print("| method | steps | model passes (128: %d) | deletion mean / max abs Δ | insertion mean / max abs Δ |"
          % passes[PAPER_STEPS])
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['steps']} | {r['passes']} | {r['deletion_mean_abs']:.4f} / "
              f"{r['deletion_max_abs']:.4f} | {r['insertion_mean_abs']:.4f} / {r['insertion_max_abs']:.4f} |")
    if a.json:
        a.json.write_text(json.dumps({"clips": a.clips, "seed": SEED, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
