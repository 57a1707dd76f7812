"""What one mask-optimisation step costs per model: forward + backward to the input at the real input size.

    python benchmarks/models.py                                  # every registry entry, no cap
    python benchmarks/models.py --quick                          # cap each pass at 5 s, print '>cap' past it
    python benchmarks/models.py --only x3d_xs slow_r50 --json benchmarks/results/models.json

Each entry is built with random weights (``pretrained=False``: nothing is downloaded), batch 1, in eval mode
with frozen parameters, so the backward pass computes only the gradient with respect to the clip, as the
attribution loop does. One untimed warm-up pass precedes the timed ones (the first call also pays for
one-off kernel setup). Wall-clock seconds with ``--threads`` CPU threads (2, like the CI machine) or on CUDA,
and the process CPU time of the pass (less sensitive to other processes on a shared machine).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import model_zoo  # noqa: E402
from model_zoo import get_entry, list_models, load_model  # noqa: E402


class Capped(Exception):
    pass


@contextlib.contextmanager
def time_cap(seconds):
    """Raise Capped in the main thread after ``seconds`` (checked between Python-level ops, so a long
    backward, which runs in C++, overshoots by its own length)."""
    if not seconds:
        yield
        return

    def fire(*_):
        raise Capped()

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step(model, device):
    """One forward + backward to the clip; returns (forward s, backward s, process CPU s of both)."""
    x = torch.rand(1, 3, model.num_frames, model.crop_size, model.crop_size, device=device, requires_grad=True)
    _sync(device)
    c0, t0 = time.process_time(), time.perf_counter()
    y = model(x)
    _sync(device)
    t1 = time.perf_counter()
    y[0, int(y[0].argmax())].backward()
    _sync(device)
    t2, c2 = time.perf_counter(), time.process_time()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    return t1 - t0, t2 - t1, c2 - c0


def measure(name, device, cap=None, warmup=1, repeats=1):
    e = get_entry(name)
    row = {"name": name, "family": e.family, "frames": e.num_frames, "crop": e.crop_size,
           "sampling_rate": e.sampling_rate, "device": str(device), "threads": torch.get_num_threads(),
           "load_avg": os.getloadavg()[0]}  # other processes on the machine inflate CPU timings
    t0 = time.perf_counter()
    model = load_model(name, pretrained=False, device=device)
    row["build_s"] = time.perf_counter() - t0
    row["params"] = sum(p.numel() for p in model.parameters())
    times = []
    try:
        for i in range(warmup + repeats):
            with time_cap(cap):
                fwd, bwd, cpu = step(model, device)
            if i >= warmup:
                times.append((fwd, bwd, cpu))
    except Capped:
        row["capped"] = cap
    if times:
        row["forward_s"] = statistics.median(t[0] for t in times)
        row["backward_s"] = statistics.median(t[1] for t in times)
        row["fwd_bwd_s"] = statistics.median(t[0] + t[1] for t in times)
        row["process_cpu_s"] = statistics.median(t[2] for t in times)  # all threads together
    del model
    model_zoo.clear_cache()
    return row


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.0f}k"


def table(rows) -> str:
    out = ["| model | family | frames × crop | params | fwd+bwd s | process CPU s |", "|---|---|---|---|---|---|"]
    for r in rows:
        t = f"{r['fwd_bwd_s']:.2f}" if "fwd_bwd_s" in r else f">{r['capped']:g}"
        c = f"{r['process_cpu_s']:.2f}" if "process_cpu_s" in r else "-"
        out.append(f"| {r['name']} | {r['family']} | {r['frames']} × {r['crop']}² | {_count(r['params'])} | {t} "
                   f"| {c} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="registry names to measure (default: all)")
    ap.add_argument("--quick", action="store_true", help="cap every pass at --cap seconds (default 5)")
    ap.add_argument("--cap", type=float, default=None, help="per-pass time cap in seconds; '>cap' past it")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=1, help="timed passes after the warm-up (median reported)")
    ap.add_argument("--json", type=Path, help="write the rows as JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cap = a.cap if a.cap is not None else (5.0 if a.quick else None)
    device = torch.device(a.device)
    names = a.only or list_models()
    rows = []
    for name in names:
        rows.append(measure(name, device, cap=cap, repeats=a.repeats))
        r = rows[-1]
        print(f"{name}: " + (f"{r['fwd_bwd_s']:.2f} s" if "fwd_bwd_s" in r else f">{cap:g} s"), file=sys.stderr,
              flush=True)
    print(table(rows))
    loads = [r["load_avg"] for r in rows]
    print(f"\n{device} with {a.threads} threads, batch 1, random weights; 1-min load average "
          f"{min(loads):.1f}-{max(loads):.1f} during the run.")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"torch": torch.__version__, "threads": a.threads, "cap_s": cap,
                                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
