"""How long does the app's default request take? The Explain button's callback, end to end, on the toy.

    python benchmarks/app_request.py --repeats 5 --json benchmarks/results/app_request.json

Calls ``ui.callbacks.explain_clip`` on the shipped toy example clips with the page's defaults (the default
method and preset, the quick curves, a random-map reference), the result cache off, and reports the seconds of
each request from the click to the files (decode, model, map, curves, rendering, zip) with the median per
repeat. The first request of the process pays the imports' and the model's warm-up and is reported apart.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _NoProgress:
    def __call__(self, *args, **kwargs):
        pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    os.environ["VAE_CACHE_MB"] = "0"            # every request computes
    import torch
    torch.set_num_threads(a.threads)
    from ui import callbacks, config
    clips = sorted((ROOT / "examples").glob("toy_*.mp4"))
    t0 = time.perf_counter()
    callbacks.explain_clip(str(clips[0]), config.DEFAULT_MODEL, progress=_NoProgress())
    first = time.perf_counter() - t0
    seconds = []
    for _ in range(a.repeats):
        for clip in clips:
            t0 = time.perf_counter()
            callbacks.explain_clip(str(clip), config.DEFAULT_MODEL, progress=_NoProgress())
            seconds.append(time.perf_counter() - t0)
    out = {"model": config.DEFAULT_MODEL, "method": config.DEFAULT_METHOD, "preset": config.DEFAULT_PRESET,
           "curve_steps": config.CURVE_STEPS, "requests": len(seconds), "first_request_seconds": round(first, 2),
           "median_seconds": round(statistics.median(seconds), 2), "max_seconds": round(max(seconds), 2),
           "threads": a.threads, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "command": "python benchmarks/app_request.py --repeats %d" % a.repeats}
    print(f"| default request ({out['method']}, {out['preset']}, curves of {out['curve_steps']} steps) | median "
          f"{out['median_seconds']} s | max {out['max_seconds']} s | first of the process {out['first_request_seconds']} s |")
    print(json.dumps(out, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
