"""Why does STEP not lead on insertion AUC on the toy task? Where each map's insertion curve stands early on.

    python benchmarks/insertion_probe.py --clips 6 --json benchmarks/results/insertion_probe.json

For each seeded toy clip (``toy.generate(n, seed=500)``, never used in training) it runs STEP (fast preset),
Gradient and Occlusion, and scores on the same curves (128 block steps, blur substrate):

* ``step``: the map as shipped (masks summed over areas, blurred per frame with σ = 10 px at 112, normalised);
* ``step-unblurred``: the same masks summed, without the final blur;
* ``step-smallest``: the smallest area's mask alone;
* ``gradient``, ``occlusion``: two comparison maps.

Besides each AUC it prints the insertion curve after 1, 2 and 4 of the 128 steps (0.8 %, 1.6 %, 3.1 % of the
blocks restored: the evidence fills about 0.8 % of the clip), and the probability STEP's own masks reached in
the optimisation, to tell a map that ranks the evidence late from a mask that does not keep the class.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attribution import explain  # noqa: E402
from attribution.metrics import deletion_insertion  # noqa: E402
from attribution.step import final_map  # noqa: E402
from model_zoo import load_model, toy  # noqa: E402

SEED = 500
EARLY = (1, 2, 4)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = load_model("toy")
    rows = []
    for i, item in enumerate(toy.generate(a.clips, seed=SEED)):
        clip = model.prepare(item.frames)
        step = explain(model, item.frames, target=item.label, method="step", preset="fast")
        masks = torch.as_tensor(step.masks).float()
        maps = {"step": step.saliency,
                "step-unblurred": final_map(masks, 0.0).numpy(),
                "step-smallest": masks[0].numpy(),
                "gradient": explain(model, item.frames, target=item.label, method="gradient").saliency,
                "occlusion": explain(model, item.frames, target=item.label, method="occlusion").saliency}
        reached = step.history["prob"][-1]
        for name, sal in maps.items():
            c = deletion_insertion(model, clip, sal, item.label, steps=128)
            rows.append({"clip": i, "map": name, "insertion": c.auc_insertion, "deletion": c.auc_deletion,
                         "start": float(c.insertion[0]), "end": float(c.insertion[-1]),
                         **{f"ins@{k}": float(c.insertion[k]) for k in EARLY},
                         "mask_probability": reached if name.startswith("step") else None})
            r = rows[-1]
            print(f"clip {i} {name:15s} ins {r['insertion']:.3f} del {r['deletion']:.3f} "
                  + " ".join(f"@{k}:{r[f'ins@{k}']:.2f}" for k in EARLY), file=sys.stderr, flush=True)
    names = list(dict.fromkeys(r["map"] for r in rows))
    print(f"{a.clips} toy clips; insertion curve value after k of 128 steps (k/128 of the blocks restored).\n")
    print("| map | insertion AUC | deletion AUC | " + " | ".join(f"after {k} step{'s' * (k > 1)}" for k in EARLY)
          + " |")
    print("|---|---:|---:|" + "---:|" * len(EARLY))
    summary = {}
    for n in names:
        rs = [r for r in rows if r["map"] == n]
        summary[n] = {k: statistics.fmean(r[k] for r in rs)
                      for k in ["insertion", "deletion", "start", "end"] + [f"ins@{k}" for k in EARLY]}
        s = summary[n]
        print(f"| {n} | {s['insertion']:.3f} | {s['deletion']:.3f} | "
              + " | ".join(f"{s[f'ins@{k}']:.3f}" for k in EARLY) + " |")
    probs = [p for r in rows if r["map"] == "step" for p in r["mask_probability"]]
    print(f"\nProbability of the target under STEP's own masks at the end of the optimisation (all areas): "
          f"mean {statistics.fmean(probs):.3f}, min {min(probs):.3f}; blurred clip "
          f"{summary['step']['start']:.3f}, clean clip {summary['step']['end']:.3f}.")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"clips": a.clips, "summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
