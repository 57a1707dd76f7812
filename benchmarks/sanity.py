"""Model-parameter randomisation (Adebayo et al., NeurIPS 2018, §3.1) of every method on the toy's example clips.

For each clip (``examples/toy_*.mp4``, read with the model's own sampling) the toy model's layers are re-initialised
one after the other from the top down (``attribution.sanity``); at each stage every method's map is computed again
and compared with the original map (Spearman rank correlation, SSIM). The table is the mean over the clips; a
method whose map keeps a rank correlation >= 0.5 once every layer is random is flagged. One JSON line per clip
goes to ``--jsonl`` as it finishes (a rerun skips the clips already there), the mean to ``--json``, the plot to
``--plot``.

The perturbation methods run the ``fast`` preset (100-200 iterations, early stop), the app's default; ``--iterations``
caps them for a quicker look.

    nice -n 10 python benchmarks/sanity.py    # benchmarks/results/sanity.{jsonl,json,png}
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attribution import available_methods, load_clip   # noqa: E402
from attribution.sanity import Layer, SanityReport, combine, sanity_check   # noqa: E402
from model_zoo import load_model   # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _report(row: dict) -> SanityReport:
    """A report back from its JSON line."""
    return SanityReport(model_name=row["model"], target=row["target"], label=row["label"], seed=row["seed"],
                        methods=row["methods"], layers=[Layer(**layer) for layer in row["layers"]], rows=row["rows"],
                        settings=row["settings"], seconds=row["seconds"], source=row.get("source", {}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="+", type=Path, default=sorted((ROOT / "examples").glob("toy_*.mp4")))
    ap.add_argument("--methods", nargs="+", default=None, help="default: every method")
    ap.add_argument("--iterations", type=int, default=None, help="perturbation methods (default: the fast preset's)")
    ap.add_argument("--model", default="toy", help="registry name (the ground-truth models: gt_x3d_xs, gt_videomae)")
    ap.add_argument("--preset", default="fast", help="the perturbation methods' preset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jsonl", type=Path, default=RESULTS / "sanity.jsonl")
    ap.add_argument("--json", type=Path, default=RESULTS / "sanity.json")
    ap.add_argument("--plot", type=Path, default=RESULTS / "sanity.png")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = load_model(a.model, device="cpu")
    methods = a.methods or available_methods()
    schedule = f"{a.preset} preset capped at {a.iterations} iterations" if a.iterations else f"{a.preset} preset"
    print(f"{a.model} model, {len(a.clips)} clips, methods {', '.join(methods)}; perturbation methods: {schedule}",
          flush=True)
    overrides = {"iterations": a.iterations} if a.iterations else {}
    done = {}
    if a.jsonl.exists():
        for line in a.jsonl.read_text().splitlines():
            row = json.loads(line)
            if row["methods"] == methods and row["settings"]["perturbation"].get("iterations") == a.iterations \
                    and row["seed"] == a.seed and row.get("model", "toy") == model.name \
                    and row.get("preset", "fast") == a.preset:
                done[row["clip"]] = row
    a.jsonl.parent.mkdir(parents=True, exist_ok=True)
    reports = []
    for clip in a.clips:
        name = clip.name
        if name in done:
            reports.append(_report(done[name]))
            print(f"{name}: from {a.jsonl.name}", flush=True)
            continue
        t0 = time.perf_counter()
        video = load_clip(clip, model)
        rep = sanity_check(model, video, methods, seed=a.seed, keep_maps=False, preset=a.preset, **overrides)
        rep.source["path"] = str(clip.relative_to(ROOT)) if clip.is_relative_to(ROOT) else str(clip)
        reports.append(rep)
        with a.jsonl.open("a") as f:
            f.write(json.dumps(dict(rep.to_dict(), clip=name, preset=a.preset)) + "\n")
        last = {m: v["spearman"] for m, v in rep.verdicts().items()}
        print(f"{name}: target '{rep.label}', {time.perf_counter() - t0:.0f} s; rank correlation once every layer is "
              f"random: " + ", ".join(f"{m} {v:.2f}" for m, v in last.items()), flush=True)
    mean = combine(reports)
    print(mean.format_table())
    out = dict(mean.to_dict(), clips_used=[c.name for c in a.clips], iterations=a.iterations,
               note=f"perturbation methods: {schedule}; rows are means over the clips (*_sd: their standard "
                    "deviation over the clips)")
    a.json.write_text(json.dumps(out, indent=1, default=str))
    mean.plot(a.plot)
    print(f"wrote {a.json} and {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
