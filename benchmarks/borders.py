"""Does the border treatment matter? STEP on toy clips whose evidence touches a frame border, run with the
authors' border treatment and with ours, paired on the same clips.

    python benchmarks/borders.py --preset fast --clips 24              # table; benchmarks/results/borders.json
    python benchmarks/borders.py --preset paper --clips 24              # minutes per clip on a CPU

Border treatments (:class:`attribution.step.Settings` fields ``param_padding`` and ``blur_border``):

* ``authors``: mask parameters zero-padded beyond the image, the blur pyramid blurred towards the model's mean
  colour at the borders (the ``paper`` preset);
* ``ours``: parameters replicate-padded, the pyramid mirrored at the borders (the mirrored treatment);
* ``zero-reflect`` and ``replicate-mean``: one change at a time.

Clips: ``toy.generate(n, seed=900)`` (quality.py uses 500, tune.py 700, training >= 1000), each rolled (np.roll,
the texture wraps round) across the direction of motion so that the evidence square runs along a frame edge,
the top or bottom one for horizontal motion and the left or right one for vertical motion (chosen at random,
seeded): the evidence touches the border in every frame of its event. The target is the true class; metrics are
quality.py's, plus ``border_mass``, the share of the map's mass within one object side (8 px) of the frame's
edges. Every variant is compared with the first on the same clips: the mean per-clip difference and its
standard error. Rows go to a JSONL file as they are done (resumable; ``--shard I/N`` splits the clips).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality import PAIRED_METRICS, _mean, append_line, parse_shard, read_rows, run_one  # noqa: E402
from tune import paired_run_args, report, table  # noqa: E402
from model_zoo import load_model, toy  # noqa: E402

SEED = 900   # a clip stream of its own (quality.py: 500, tune.py: 700, training: >= toy.TRAIN_SEED)
VARIANTS = {
    "authors": dict(param_padding="zero", blur_border="mean"),
    "ours": dict(param_padding="replicate", blur_border="reflect"),
    "zero-reflect": dict(param_padding="zero", blur_border="reflect"),
    "replicate-mean": dict(param_padding="replicate", blur_border="mean"),
}
METHOD = {"fast": "step", "paper": "step-paper"}   # quality.py's method names for STEP with each preset
METRICS = PAIRED_METRICS + ("border_mass",)
SHOWN = ("pointing_game", "mass_in_tube", "border_mass", "insertion", "temporal_hit")
DELTAS = ("pointing_game", "mass_in_tube", "border_mass", "insertion")


def at_border(item: toy.ToyClip, rng: np.random.Generator) -> toy.ToyClip:
    """The clip rolled across its direction of motion so that the evidence runs along a frame edge.

    Horizontal motion (left, right) keeps one row for the evidence's whole event; the clip is rolled vertically
    so that row is 0 (the top edge) or SIZE - OBJECT (the bottom one). Vertical motion likewise, sideways.
    """
    boxes = [b for b in item.boxes if b is not None]
    dx, _ = toy.DIRECTIONS[item.label]
    axis = 0 if dx != 0 else 1                     # 0: roll rows (y), 1: roll columns (x)
    lo = boxes[0][1] if axis == 0 else boxes[0][0]
    edge = 0 if rng.random() < 0.5 else toy.SIZE - toy.OBJECT
    shift = edge - lo

    def move(b):
        if b is None:
            return None
        x0, y0, x1, y1 = b
        if axis == 0:
            y0 = (y0 + shift) % toy.SIZE
            return (x0, y0, x1, y0 + (y1 - b[1]))
        x0 = (x0 + shift) % toy.SIZE
        return (x0, y0, x0 + (x1 - b[0]), y1)

    frames = np.roll(item.frames, shift, axis=1 + axis)          # frames (T,H,W,3)
    return dataclasses.replace(item, frames=frames, boxes=[move(b) for b in item.boxes],
                               distractor_boxes=[[move(b) for b in fb] for fb in item.distractor_boxes])


def border_clips(n: int, seed: int = SEED) -> list[toy.ToyClip]:
    """``n`` toy clips with the evidence along a frame edge, the same for the same seed."""
    rng = np.random.default_rng(seed + 1)
    return [at_border(item, rng) for item in toy.generate(n, seed=seed)]


def border_mass(saliency: np.ndarray, band: int = toy.OBJECT) -> float:
    """Share of the map's mass within ``band`` px of the frame's edges (T,H,W)."""
    s = np.asarray(saliency, dtype=np.float64)
    inner = s[:, band:-band, band:-band].sum()
    total = s.sum()
    return float((total - inner) / total) if total > 0 else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="fast", choices=sorted(METHOD))
    ap.add_argument("--variants", nargs="+", default=["authors", "ours"], choices=list(VARIANTS),
                    help="border treatments; the first is the baseline of the paired differences")
    ap.add_argument("--clips", type=int, default=24)
    paired_run_args(ap)
    ap.add_argument("--report", action="store_true", help="compute nothing: summarise the rows in the JSONL")
    ap.add_argument("--jsonl", default="benchmarks/results/borders.jsonl", help="per-clip rows (resumable)")
    ap.add_argument("--json", default="benchmarks/results/borders.json",
                    help="summary file; each preset's summary is kept under its own key")
    a = ap.parse_args(argv)
    shard, shards = parse_shard(ap, a.shard)
    torch.set_num_threads(a.threads)
    model = load_model("toy")
    items = border_clips(a.clips)
    path = Path(a.jsonl)
    rows = [r for r in read_rows(path) if r.get("clip_seed") == SEED and r.get("preset") == a.preset
            and r.get("steps") == a.steps and r.get("seed") == a.seed and r["clip"] < a.clips
            and r["method"] in a.variants]
    done = {(r["method"], r["clip"]) for r in rows}
    for i in range(shard, a.clips, shards) if not a.report else ():
        for v in a.variants:
            if (v, i) in done:
                continue
            row = run_one(model, items[i], i, METHOD[a.preset], a.steps, "block", "blur", a.seed, VARIANTS[v],
                          saliency=True)
            sal = row.pop("saliency")
            row.update(method=v, preset=a.preset, overrides=VARIANTS[v], clip_seed=SEED,
                       border_mass=border_mass(sal))
            rows.append(row)
            append_line(path, row)
            print(f"{a.preset} {v:15s} clip {i:3d}: {row['iterations']} it, pg {row['pointing_game']:.2f} "
                  f"tube {row['mass_in_tube']:.3f} border {row['border_mass']:.3f} ins {row['insertion']:.3f} "
                  f"{row['seconds']:.1f}s", file=sys.stderr, flush=True)
    if shards > 1:
        return 0
    rows = list({(r["method"], r["clip"]): r for r in rows}.values())
    summary = report(rows, a.variants, METRICS)
    acc = _mean([float(r["predicted"] == r["label"]) for r in rows if r["method"] == a.variants[0]])
    print(f"STEP ({a.preset}) on toy clips seed {SEED} with the evidence along a frame edge (target = true class; "
          f"model accuracy on them {acc:.0%}); Δ = paired difference ± its standard error.\n")
    print(table(summary, a.variants, SHOWN, DELTAS, "border treatment"))
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        kept = json.loads(out.read_text()) if out.exists() else {}
        kept[a.preset] = {"clip_seed": SEED, "clips": a.clips, "threads": a.threads,
                          "variants": {v: VARIANTS[v] for v in a.variants}, "accuracy": acc, "summary": summary}
        out.write_text(json.dumps(kept, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
