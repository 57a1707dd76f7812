"""How good is the cost model? Predicted seconds (attribution/cost.py) against measured seconds, in one run.

    python benchmarks/cost.py --json benchmarks/results/cost_cpu.json                  # toy and x3d_xs
    python benchmarks/cost.py --models toy --json /tmp/cost_toy.json                   # a minute or two

For each model (``toy`` with its weights, ``x3d_xs`` with random weights: the time does not depend on them)
the run first measures the model's passes and the engine's per-pixel figures into a fresh cache (so the
prediction and the measurement share the machine's state), compiles the engine once per preset (a short run:
the one-off compile is reported apart, as ``engine_compile_s``), then for each case times ``explain()`` on one
clip and, where asked, ``deletion_insertion`` (128 block steps with the random map, as the app draws them), and
compares each with the estimate. Ratios are predicted ÷ actual: above 1 the estimate is pessimistic.

``--paper-iterations N`` runs the paper preset for N of its 1200 iterations (the preset has no early stop, so
its time is N times one iteration's; N ≥ 101 includes iterations with the L_K term, which starts at 100) and
compares with the estimate of the same N iterations; the output says so and also prints the full request's
estimate. Without it the paper preset runs in full.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attribution import cost, step as S  # noqa: E402
from attribution.explain import explain  # noqa: E402
from attribution.metrics import deletion_insertion  # noqa: E402
from model_zoo import load_model, toy  # noqa: E402

SEED = 500
CASES = [("step", "fast"), ("step", "paper"), ("occlusion", None), ("integrated-gradients", None)]


def _clip(model, name: str):
    if name == "toy":
        item = toy.generate(1, seed=SEED)[0]
        return model.prepare(item.frames), item.label
    T, H, W = model.num_frames, *model.input_size
    return torch.rand(1, 3, T, H, W, generator=torch.Generator().manual_seed(SEED)), None


def run_model(name: str, args, out: dict, save) -> None:
    model = load_model(name, pretrained=name == "toy", device="cpu")
    clip, target = _clip(model, name)
    t0 = time.perf_counter()
    passes = cost.pass_costs(model)
    engine = {p: cost.engine_costs(p) for p in ("fast", "paper")}
    info = {"pass_costs": passes.measured, "engine": engine, "measure_s": round(time.perf_counter() - t0, 2)}
    out["models"][name] = info
    print(f"{name}: passes measured in {info['measure_s']} s; fwd+bwd(1) {passes.backward(1):.3f} s, "
          f"fwd(1) {passes.forward(1):.3f} s; engine {engine['fast']['per_pixel']:.2e} / "
          f"{engine['paper']['per_pixel']:.2e} s per mask px", flush=True)
    for preset in args.presets or ("fast", "paper"):   # compile this model's shapes once, outside the timings
        explain(model, clip, target=target, preset=preset, iterations=2, compile=True)
    for method, preset in CASES:
        if args.methods and method not in args.methods or preset and args.presets and preset not in args.presets:
            continue
        overrides, note = {}, ""
        if preset == "paper" and args.paper_iterations and name in args.cap_models:
            overrides = dict(iterations=args.paper_iterations, compile=True)
            note = f"{args.paper_iterations} of 1200 iterations"
        with_curves = name not in args.curves_skip or method == "step"
        est = cost.estimate(model, method, preset or "fast", iterations=overrides.get("iterations"),
                            curves=with_curves, costs=passes, compiled=True)
        t1 = time.perf_counter()
        exp = explain(model, clip, target=target, method=method, preset=preset or "fast", seed=0, **overrides)
        attribution_s = time.perf_counter() - t1
        curves_s = None
        if with_curves:
            t2 = time.perf_counter()
            deletion_insertion(model, clip, exp.saliency, exp.target, steps=128, random_baseline=True)
            curves_s = time.perf_counter() - t2
        pred_attr = est.seconds - est.breakdown.get("curves", 0.0)
        row = {"model": name, "method": method, "preset": preset, "note": note,
               "iterations": exp.iterations, "expected_iterations": est.passes.get("iterations"),
               "predicted_s": round(pred_attr, 3), "actual_s": round(attribution_s, 3),
               "ratio": round(pred_attr / attribution_s, 3),
               "breakdown": {k: round(v, 3) for k, v in est.breakdown.items()}}
        if curves_s is not None:
            row.update(predicted_curves_s=round(est.breakdown["curves"], 3), actual_curves_s=round(curves_s, 3),
                       curves_ratio=round(est.breakdown["curves"] / curves_s, 3),
                       predicted_total_s=round(est.seconds, 3), actual_total_s=round(attribution_s + curves_s, 3),
                       total_ratio=round(est.seconds / (attribution_s + curves_s), 3))
        if note:
            full = cost.estimate(model, method, preset, curves=with_curves, costs=passes, compiled=True)
            row["full_request_predicted_s"] = round(full.seconds, 1)
            row["full_request_words"] = full.words()
        out["rows"].append(row)
        save()
        print(f"{name} {method} {preset or ''} {note}: predicted {pred_attr:.1f} s, actual {attribution_s:.1f} s, "
              f"ratio {row['ratio']:.2f}" + (f"; curves {row['curves_ratio']:.2f}; with curves "
                                             f"{row['total_ratio']:.2f}" if curves_s is not None else ""),
              flush=True)


def table(rows) -> str:
    lines = ["| model | method | preset | iterations (expected) | predicted s | actual s | ratio | "
             "curves ratio | with curves ratio |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        it = f"{r['iterations']} ({r['expected_iterations']})" if r["iterations"] else "-"
        preset = (r["preset"] or "-") + (f" ({r['note']})" if r["note"] else "")
        lines.append(f"| {r['model']} | {r['method']} | {preset} | {it} | {r['predicted_s']:.1f} | "
                     f"{r['actual_s']:.1f} | {r['ratio']:.2f} | {r.get('curves_ratio', float('nan')):.2f} | "
                     f"{r.get('total_ratio', float('nan')):.2f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["toy", "x3d_xs"])
    ap.add_argument("--methods", nargs="*", default=None, help="only these methods (default: all cases)")
    ap.add_argument("--presets", nargs="*", default=None, help="only these presets of STEP (default: both)")
    ap.add_argument("--paper-iterations", type=int, default=None,
                    help="run the paper preset for N of its 1200 iterations on --cap-models (said in the output)")
    ap.add_argument("--cap-models", nargs="*", default=["x3d_xs"])
    ap.add_argument("--curves-skip", nargs="*", default=[],
                    help="models whose comparison methods are timed without curves (the curves' passes do not "
                         "depend on the map; they are still timed for STEP)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: the other benchmarks on this shared machine do the same)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows and figures of other models already in --json (runs per model)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="vae-cost-")
    atexit.register(shutil.rmtree, tmp, True)   # the figures measured now live there for this run only
    os.environ[cost.CACHE_ENV] = str(Path(tmp) / "cost.json")   # measured now, in this run
    out = {"device": cost.describe_device("cpu"), "torch": torch.__version__, "python": platform.python_version(),
           "threads": torch.get_num_threads(), "paper_iterations": args.paper_iterations,
           "expected_fast_iterations": cost.expected_iterations(S.Settings(**S.PRESETS["fast"])),
           "models": {}, "rows": []}

    def save():
        if not args.json:
            return
        data = out
        if args.merge and args.json.exists():
            old = json.loads(args.json.read_text())
            data = dict(out, models={**{k: v for k, v in old.get("models", {}).items() if k not in args.models},
                                     **out["models"]},
                        rows=[r for r in old.get("rows", []) if r["model"] not in args.models] + out["rows"])
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1))
    for name in args.models:
        run_model(name, args, out, save)
    print(table(out["rows"]))
    save()


if __name__ == "__main__":
    main()
