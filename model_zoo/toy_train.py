"""Training and examples of the toy model (model_zoo/toy.py): ``python -m model_zoo.toy_train train`` trains it
deterministically on the CPU in a few minutes and writes ``model_zoo/weights/toy.pt``; ``eval`` measures the
shipped weights on fresh clips; ``examples`` writes the example clips with their ground truth.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model_zoo.toy import LABEL_SMOOTHING, LABELS, MEAN, STD, TRAIN_SEED, WEIGHTS, ToyNet, augment, draw_clip


def _batch(rng, n):
    clips = [draw_clip(rng) for _ in range(n)]
    x = torch.from_numpy(np.stack([c.frames for c in clips])).permute(0, 4, 1, 2, 3).float() / 255.0
    y = torch.tensor([c.label for c in clips])
    return x, y


def _normalise(x):
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1, 1)


def evaluate(model, n=500, seed=7, batch=50, device="cpu") -> float:
    """Accuracy of ``model`` (a VideoClassifier, [0,1] input) on ``n`` fresh clips of ``seed``."""
    rng = np.random.default_rng(seed)
    correct = 0
    with torch.no_grad():
        for i in range(0, n, batch):
            x, y = _batch(rng, min(batch, n - i))
            correct += int((model(x.to(device)).argmax(-1).cpu() == y).sum())
    return correct / n


def train(steps=800, batch=48, lr=3e-3, seed=0, out=WEIGHTS, log_every=50):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(TRAIN_SEED + seed)
    net = ToyNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    for step in range(1, steps + 1):
        x, y = _batch(rng, batch)
        logits = net(_normalise(augment(x, gen)))
        # Label smoothing bounds the logits: a saturated softmax (p = 1 - 1e-7) would give perturbation
        # methods, whose reward is -log p, no gradient until the evidence is already destroyed.
        loss = F.cross_entropy(logits, y, label_smoothing=LABEL_SMOOTHING)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps:
            acc = float((logits.argmax(-1) == y).float().mean())
            print(f"step {step}/{steps} loss {loss.item():.3f} batch-acc {acc:.2f} {time.time() - t0:.0f}s",
                  flush=True)
    net.eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": net.state_dict(), "steps": steps, "batch": batch, "lr": lr, "seed": seed,
                "label_smoothing": LABEL_SMOOTHING, "labels": LABELS}, out)
    return net


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m model_zoo.toy_train", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train the toy model and write its weights")
    tr.add_argument("--steps", type=int, default=800)
    tr.add_argument("--batch", type=int, default=48)
    tr.add_argument("--lr", type=float, default=3e-3)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", default=str(WEIGHTS))
    ev = sub.add_parser("eval", help="accuracy of the shipped weights on fresh clips")
    ev.add_argument("-n", type=int, default=500)
    ev.add_argument("--seed", type=int, default=7)
    ex = sub.add_parser("examples", help="write a few toy clips as mp4 into examples/")
    ex.add_argument("--out", default=str(Path(__file__).parents[1] / "examples"))
    a = ap.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if a.cmd == "train":
        train(a.steps, a.batch, a.lr, a.seed, a.out)
        from model_zoo import clear_cache, load_model
        clear_cache()
        print(json.dumps({"accuracy": evaluate(load_model("toy", device="cpu"), 500, seed=7)}))
    elif a.cmd == "eval":
        from model_zoo import load_model
        print(json.dumps({"accuracy": evaluate(load_model("toy", device="cpu"), a.n, a.seed), "n": a.n,
                          "seed": a.seed}))
    elif a.cmd == "examples":
        write_examples(a.out)


def write_examples(out, seed=2024, n=4):
    """Toy clips as near-lossless mp4 (one per class), with their ground truth in a JSON beside them."""
    from attribution.video import write_video
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    found = {}
    while len(found) < n:
        c = draw_clip(rng)
        found.setdefault(c.label, c)
    meta = {}
    for label, c in sorted(found.items()):
        name = f"toy_{LABELS[label].replace(' ', '_')}.mp4"
        write_video(c.frames, out / name, fps=8, crf=12)
        meta[name] = {"label": LABELS[label], "event": list(c.event), "boxes": c.boxes}
    (out / "toy_ground_truth.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
