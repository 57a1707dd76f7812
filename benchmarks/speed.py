"""How fast is the engine? Overhead over the model's own passes, the presets' passes and quality, and scaling.

    python benchmarks/speed.py --quick                       # a few minutes on 2 CPU cores
    python benchmarks/speed.py --quick --skip scaling --clock cpu --threads 1   # on a CPU shared with other work
    python benchmarks/speed.py --json benchmarks/results/speed_cpu.json
    python benchmarks/speed.py --device cuda --clip-seconds videomae-b x3d_m slowfast_r50   # on a GPU

Sections, all measured in one run on one device:

* **overhead**: seconds per optimisation iteration (mask generator, perturbation, model forward+backward,
  losses, optimiser step) divided by seconds of the bare model forward+backward (gradient to the input) on
  the same batch, for every preset in ``step.PRESETS``. 1.00 would be an engine that costs nothing beyond the
  model. Iterations are timed one by one after a warm-up iteration (which pays for torch.compile); the median is
  reported, in the steady state (L_K on, as after the preset's warm-up). The bare pass is timed just before and
  just after each preset's iterations (a shared machine's load then moves both alike). At the preset's areas
  (one batch of masks), or at one area with ``--quick`` (the toy then both ways).
* **breakdown**: where one toy iteration's time goes, part by part (forward and backward each): the bare
  model pass, the mask generator, the perturbation, the area loss, L_K, the optimiser step, and the rest, for
  every preset at one area, with the number of smooth-max terms (points × neighbours) the generator evaluates.
* **presets** (``fast-vs-paper``): wall time, model passes (``Explanation.evaluations``: one forward+backward
  per mask and iteration) and quality (insertion AUC with 128 block steps, pointing game, temporal hit) of
  STEP with every preset on the same seeded toy clips (``toy.generate(n, seed=500)``, never used in training).
  The one-off compile warm-up is timed separately and left out of the per-clip time.
* **scaling**: seconds per iteration and peak memory of the ``fast`` preset on the toy network as frames,
  resolution, areas and targets grow (one factor at a time). Peak memory is ``torch.cuda.max_memory_allocated``
  on CUDA; on a CPU, the growth of the process's resident memory sampled every 2 ms (approximate).
* **clip seconds** (``--clip-seconds``): per-iteration time of each preset, fp32 against the automatic
  precision (bf16 or fp16 autocast, chosen by the GPU's compute capability), on the named models with random weights, times the preset's iteration count: the seconds one clip would take.

Imports only torch, the engine and the model zoo (transformers / pytorchvideo for those models), so it runs on
a bare CUDA machine. Prints markdown tables; ``--json`` writes every figure (overhead_ratios: preset -> model ->
ratio; overhead_ratios_batched: the same at the preset's areas; passes_per_clip and seconds_per_toy_clip: preset -> mean over the toy clips; overhead_ratio and
paper_overhead_ratio: fast's and paper's ratios as before; fast_vs_paper_time_ratio, fast/paper_insertion_auc,
fast/paper_pointing_game, fast_seconds_per_toy_clip).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attribution import step as S  # noqa: E402
from attribution.explain import explain, make_settings  # noqa: E402
from attribution.metrics import deletion_insertion, pointing_game, temporal_hit  # noqa: E402
from model_zoo import clear_cache, load_model, toy  # noqa: E402

SEED = 500
_clock = time.perf_counter   # --clock cpu: time.process_time (this process's CPU seconds, all its threads)


def _now() -> float:
    return _clock()
ALIASES = {"videomae-b": "MCG-NJU/videomae-base-finetuned-kinetics"}
OVERHEAD_MODELS = ["toy", "x3d_xs", "videomae-b"]


# ------------------------------------------------------------------------------------------------ helpers
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


class PeakMemory:
    """Peak memory (MB) a block adds on top of what the process held before it: the CUDA allocator's peak, or
    on Linux CPUs the resident-set high-water mark (VmHWM, reset at entry through /proc/self/clear_refs). The
    CPU figure is approximate (freed memory the allocator kept is reused unseen), so ``scaling`` measures
    every CPU point in a fresh process after a compile warm-up."""

    def __init__(self, device):
        self.device, self.peak = device, float("nan")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")                                  # reset VmHWM to the current RSS
                self._base = _status_kb("VmRSS")
            except OSError:
                pass
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2 ** 20
        elif hasattr(self, "_base"):
            self.peak = (_status_kb("VmHWM") - self._base) / 1024


def bare_pass_seconds(model, batch: int, device, dtype, repeats: int) -> float:
    """Median seconds of the model's forward + backward to the input on ``batch`` clips (after a warm-up)."""
    x = torch.rand(batch, 3, model.num_frames, model.crop_size, model.crop_size, device=device)
    tgt = torch.zeros(batch, dtype=torch.long, device=device)
    times = []
    with S.frozen(model):
        for i in range(repeats + 1):
            xi = x.clone().requires_grad_(True)
            _sync(device)
            t0 = _now()
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = model(xi)
            S.reward(logits, tgt, "preserve").sum().backward()
            _sync(device)
            if i:
                times.append(_now() - t0)
    return statistics.median(times)


def iteration_seconds(model, clip, settings: S.Settings, repeats: int, targets=(0,)) -> tuple[float, float]:
    """Median seconds per optimisation iteration (after one warm-up iteration) and the peak memory (MB).

    The iterations are timed in the steady state, with L_K on from the first (``core_warmup=0``): a short run
    would otherwise fall inside the preset's warm-up (paper 100, fast 17 iterations) and leave out a part that
    every later iteration pays (1 100 of paper's 1 200)."""
    stamps = []

    def tick(done, total, info):
        _sync(clip.device)
        stamps.append(_now())

    st = dataclasses.replace(settings, iterations=repeats + 1, early_stop=0.0, core_warmup=0)
    with PeakMemory(clip.device) as mem:
        S.perturbation(model, clip, list(targets), settings=st, progress=tick)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])][:repeats]
    return statistics.median(gaps), mem.peak


def _settings(model, preset: str, **kw) -> S.Settings:
    st = make_settings(model, "step", preset, kw)
    if st.compile is None:  # the runs here are short; compile as the full-length preset would
        st = dataclasses.replace(st, compile=S.will_compile(st))
    return st


# ----------------------------------------------------------------------------------------------- sections
def overhead(names, device, repeats: int, single_area: bool) -> list[dict]:
    """One row per model and preset, at the preset's own areas (all masks in one batch), or, with
    ``single_area``, at one area; the toy, whose passes are cheap, gets both rows then. The row's ``batch`` is
    the number of masks (the bare pass is timed on as many clips)."""
    rows = []
    for name in names:
        model = load_model(ALIASES.get(name, name), pretrained=name == "toy", device=device)
        clip = torch.rand(1, 3, model.num_frames, model.crop_size, model.crop_size, device=device)
        for preset in S.PRESETS:
            for one in ((True, False) if single_area and name == "toy" else (single_area,)):
                st = _settings(model, preset)
                if one:
                    st = dataclasses.replace(st, areas=st.areas[:1], area_count=None)
                rows.append(dict(_overhead_row(model, name, preset, st, clip, device, repeats), single_area=one))
        del model
        clear_cache()
    return rows


def _overhead_row(model, name: str, preset: str, st: S.Settings, clip, device, repeats: int) -> dict:
    amp = S.autocast_dtype(device, st.precision)
    # The bare pass is timed right before and after the preset's iterations, and the iterations between
    # them, so that a machine whose load changes during the run moves both sides of the ratio alike.
    batch = len(S.areas_kept(st.areas, st.area_count))
    before = bare_pass_seconds(model, batch, device, amp, repeats)
    it, _ = iteration_seconds(model, clip, st, repeats)
    bare = statistics.fmean([before, bare_pass_seconds(model, batch, device, amp, repeats)])
    print(f"overhead {name}/{preset} ({batch} area(s)): {it:.3f} s / {bare:.3f} s = {it / bare:.2f}",
          file=sys.stderr, flush=True)
    return {"model": name, "preset": preset, "batch": batch, "frames": model.num_frames, "crop": model.crop_size,
            "iteration_s": it, "bare_s": bare, "ratio": it / bare, "compile": st.compile,
            "precision": S.describe_precision(device, st.precision)}


def fast_vs_paper(n_clips: int, device, seed: int = 0, presets=None) -> dict:
    """Every preset (default: all of ``step.PRESETS``) on the same toy clips: seconds, iterations, model passes
    (``Explanation.evaluations``: forward+backward passes, one per mask and iteration) and quality."""
    presets = list(presets or S.PRESETS)
    model = load_model("toy", device=device)
    items = toy.generate(n_clips, seed=SEED)
    warm = {}
    for preset in presets:  # pay the one-off compile outside the per-clip timings
        t0 = time.perf_counter()
        explain(model, items[0].frames, target=items[0].label, preset=preset, iterations=2,
                compile=_settings(model, preset).compile)
        warm[preset] = time.perf_counter() - t0
    rows = []
    for i, item in enumerate(items):
        for preset in presets:
            _sync(device)
            t0 = time.perf_counter()
            exp = explain(model, item.frames, target=item.label, preset=preset, seed=seed)
            _sync(device)
            seconds = time.perf_counter() - t0
            curves = deletion_insertion(model, model.prepare(item.frames).to(device), exp.saliency, item.label,
                                        steps=128, seed=seed)
            rows.append({"clip": i, "preset": preset, "seconds": seconds, "iterations": exp.iterations,
                         "evaluations": exp.evaluations, "insertion": curves.auc_insertion,
                         "deletion": curves.auc_deletion,
                         "pointing_game": pointing_game(exp.saliency, item.boxes),
                         "temporal_hit": float(temporal_hit(exp.saliency, item.event))})
            r = rows[-1]
            print(f"{preset} clip {i}: {seconds:.1f} s, {r['iterations']} it, {r['evaluations']} passes, "
                  f"ins {r['insertion']:.3f} pg {r['pointing_game']:.2f} hit {r['temporal_hit']:.0f}",
                  file=sys.stderr, flush=True)

    def mean(preset, key):
        return statistics.fmean(r[key] for r in rows if r["preset"] == preset)
    out = {"clips": n_clips, "presets": presets, "compile_warmup_s": warm, "rows": rows}
    for p in presets:
        for key in ("seconds", "iterations", "evaluations", "insertion", "deletion", "pointing_game",
                    "temporal_hit"):
            out[f"{p}_{key}"] = mean(p, key)
    if "fast" in presets and "paper" in presets:
        out["time_ratio"] = out["fast_seconds"] / out["paper_seconds"]
    return out


def _scaling_point(cfg: dict, device: str, repeats: int, threads: int) -> tuple[float, float]:
    """Seconds per iteration and peak MB of the fast preset on the toy network at one (frames, size, areas,
    targets) point. On a CPU (a fresh process) the peak is that of a 2-iteration eager run measured first:
    torch.compile's own memory would swamp it, and the fused compiled generator needs less than eager code."""
    torch.set_num_threads(threads)
    device = torch.device(device)
    model = load_model("toy", device=device)
    clip = torch.rand(1, 3, cfg["frames"], cfg["size"], cfg["size"], device=device)
    st = _settings(model, "fast", areas=tuple(toy.AREAS * 2)[:cfg["areas"]])
    targets = list(range(cfg["targets"]))
    peak = None
    if device.type == "cpu":  # a tiny first run loads the kernels and libraries (200+ MB the run would show)
        S.perturbation(model, torch.rand(1, 3, 4, 32, 32), [0], settings=S.Settings(iterations=1, areas=(0.1,),
                                                                                      compile=False))
        with PeakMemory(device) as mem:
            S.perturbation(model, clip, targets, settings=dataclasses.replace(st, iterations=2, compile=False))
        peak = mem.peak
    it, cuda_peak = iteration_seconds(model, clip, st, repeats, targets=targets)
    return it, cuda_peak if peak is None else peak


def scaling(device, repeats: int, quick: bool) -> list[dict]:
    base = dict(frames=16, size=64, areas=3, targets=1)
    grid = {"frames": [8, 16, 32], "size": [64, 112] + ([] if quick else [224]),
            "areas": [1, 3, 6], "targets": [1, 2, 4]}
    rows = []
    threads = torch.get_num_threads()
    # a CPU point's peak resident memory needs a process of its own; CUDA has its own allocator statistics
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) \
        if device.type == "cpu" else None
    try:
        for factor, values in grid.items():
            for v in values:
                cfg = dict(base, **{factor: v})
                args = (cfg, str(device), repeats, threads)
                it, peak = pool.submit(_scaling_point, *args).result() if pool else _scaling_point(*args)
                rows.append({"factor": factor, **cfg, "iteration_s": it, "peak_mb": peak})
                print(f"scaling {cfg}: {it:.3f} s/it, {peak:.0f} MB", file=sys.stderr, flush=True)
    finally:
        if pool:
            pool.shutdown()
    return rows


def clip_seconds(names, device, repeats: int) -> list[dict]:
    rows = []
    for name in names:
        model = load_model(ALIASES.get(name, name), pretrained=name == "toy", device=device)
        clip = torch.rand(1, 3, model.num_frames, model.crop_size, model.crop_size, device=device)
        for preset in S.PRESETS:
            for precision in ("fp32", "auto"):
                st = dataclasses.replace(_settings(model, preset), precision=precision)
                word = S.describe_precision(device, precision)
                it, peak = iteration_seconds(model, clip, st, repeats)
                rows.append({"model": name, "preset": preset, "precision": word,
                             "iteration_s": it, "iterations": st.iterations, "clip_s": it * st.iterations,
                             "peak_mb": peak})
                print(f"clip seconds {name}/{preset}/{word}: {it * st.iterations:.1f} s",
                      file=sys.stderr, flush=True)
        del model
        clear_cache()
    return rows


def overhead_ratios(rows: list[dict], single_area: bool) -> dict:
    """The JSON's ratios: ``overhead_ratios`` (preset -> model -> ratio) at one area under ``--quick``, else at the
    preset's areas; ``overhead_ratios_batched`` at the preset's areas, where timed; ``overhead_ratio`` and
    ``paper_overhead_ratio``: fast's and paper's rows of the first."""
    def pick(one: bool) -> dict:
        return {p: {r["model"]: r["ratio"] for r in rows if r["preset"] == p and r["single_area"] == one}
                for p in S.PRESETS}
    main = pick(single_area)
    out = {"overhead_ratios": main, "overhead_ratio": main["fast"], "paper_overhead_ratio": main["paper"]}
    batched = pick(False) if single_area else main
    if any(batched.values()):
        out["overhead_ratios_batched"] = batched
    return out


def _median_seconds(fn, device, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up call (which pays for torch.compile)."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = _now()
        fn()
        _sync(device)
        times.append(_now() - t0)
    return statistics.median(times)


def breakdown(device, repeats: int, name: str = "toy") -> list[dict]:
    """Where one iteration's time goes, part by part, forward and backward, for every preset at one area: the
    bare model pass, the mask generator (smooth-max, docs/method.md §1.2), the perturbation (the pyramid
    lookup, §1.3), the area loss (§3.1), L_K (§3.3), the optimiser step with the clamp (§4), and the whole
    iteration as ``overhead`` times it; ``rest`` is what the parts do not account for (reshapes, the
    traces, Python). Compiled as the full-length preset would be."""
    model = load_model(ALIASES.get(name, name), pretrained=name == "toy", device=device)
    T, H = model.num_frames, model.crop_size
    clip = torch.rand(1, 3, T, H, H, device=device)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for preset in S.PRESETS:
        st = dataclasses.replace(_settings(model, preset), area_count=None)
        st = dataclasses.replace(st, areas=st.areas[:1])
        cfg = st.scaled(H)
        compiled = S.will_compile(cfg)
        geo = S.mask_geometry(H, H, cfg.grid_step, cfg.sigma, cfg.param_padding)
        kernel = S.smooth_mask_kernel(geo["step"], cfg.sigma, geo["radius"], cfg.subsample).to(device)
        gh, gw = geo["grid"]
        hp = H + 2 * geo["margin"]
        params = torch.rand(T, 1, gh, gw, device=device, requires_grad=True)
        fill = model.mean.view(3) if hasattr(model, "mean") else None
        pyramid = S.blur_pyramid(clip, cfg.max_blur, fill=fill, border=cfg.blur_border)
        mask = torch.rand(1, 1, T, H, H, device=device, requires_grad=True)
        padded = torch.rand(1, 1, T, hp, hp, device=device, requires_grad=True)
        refs = S.area_reference(T * hp * hp, cfg.areas[0], device).view(1, -1)
        kt = min(cfg.key_frames or max(1, min(S.KEY_FRAMES, T // 2)), T)
        ckernel = S.ellipsoid_kernel(kt, geo["margin"]).to(device)
        counts = torch.tensor(S.core_counts(cfg.areas, T * hp * hp, kt, geo["margin"]), device=device)
        opt = torch.optim.SGD([params], lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening)
        params.grad = torch.rand_like(params)
        lookup = S.pyramid_lookup(compiled, pyramid, mask)

        def step():
            opt.step()
            with torch.no_grad():
                params.clamp_(0, 1)

        parts = {
            "model": bare_pass_seconds(model, 1, device, S.autocast_dtype(device, cfg.precision), repeats),
            "generator": _median_seconds(lambda: S.smooth_mask(params, geo, kernel, H, H, compiled=compiled)[0]
                                         .sum().backward(), device, repeats),
            "perturbation": _median_seconds(lambda: lookup(pyramid, mask).sum().backward(), device, repeats),
            "area loss": _median_seconds(lambda: S.area_loss(padded, refs, False, gen).sum().backward(),
                                         device, repeats),
            "L_K": _median_seconds(lambda: S.core_loss(padded, ckernel, counts, gen).sum().backward(),
                                   device, repeats),
            "optimiser": _median_seconds(step, device, repeats),
        }
        it, _ = iteration_seconds(model, clip, st, repeats)
        points = kernel.shape[0]
        cells = (gh + 2 * geo["pad"] - 2 * geo["radius"]) * (gw + 2 * geo["pad"] - 2 * geo["radius"])
        row = {"model": name, "preset": preset, "compile": compiled, "iteration_s": it,
               "smooth_max_terms": T * cells * points * kernel.shape[1], **{f"{k}_s": v for k, v in parts.items()}}
        row["rest_s"] = it - sum(parts.values())
        row["ratio"] = it / parts["model"]
        row["generator_ratio"] = parts["generator"] / parts["model"]
        rows.append(row)
        print(f"breakdown {name}/{preset}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in parts.items())
              + f", iteration {it * 1e3:.2f} ms", file=sys.stderr, flush=True)
    del model
    clear_cache()
    return rows


# ------------------------------------------------------------------------------------------------- report
def _table(title: str, head: list[str], rows: list[list]) -> list[str]:
    """A markdown table under ``title``: the first column left-aligned, the others right-aligned."""
    return [title, "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1),
            *("| " + " | ".join(str(c) for c in r) + " |" for r in rows), ""]


def report(res: dict) -> str:
    lines = [f"Device: {res['device_name']}, torch {res['torch']}, {res['threads']} CPU threads, "
             f"{res.get('clock', 'wall')} clock for the overhead.", ""]
    if res.get("overhead"):
        lines += _table("Engine overhead: seconds per iteration / bare forward+backward on the same batch.",
                        ["model", "frames × crop", "preset", "batch", "iteration s", "bare fwd+bwd s", "ratio"],
                        [[r["model"], f"{r['frames']} × {r['crop']}", r["preset"], r["batch"],
                          f"{r['iteration_s']:.3f}", f"{r['bare_s']:.3f}", f"{r['ratio']:.2f}"]
                         for r in res["overhead"]])
    if res.get("breakdown"):
        names = ["model", "generator", "perturbation", "area loss", "L_K", "optimiser", "rest"]
        lines += _table("Where an iteration's time goes (ms, forward+backward, one area; ratio = iteration / model; "
                        "smooth-max terms = points × neighbours evaluated per iteration):",
                        ["model", "preset", *names, "iteration", "ratio", "generator / model", "smooth-max terms"],
                        [[r["model"], r["preset"], *(f"{r[k + '_s'] * 1e3:.2f}" for k in names),
                          f"{r['iteration_s'] * 1e3:.2f}", f"{r['ratio']:.2f}", f"{r['generator_ratio']:.2f}",
                          f"{r['smooth_max_terms'] / 1e6:.2f} M"] for r in res["breakdown"]])
    fp = res.get("fast_vs_paper")
    if fp:
        lines += _table(f"The presets on {fp['clips']} toy clip(s) (model passes: forward+backward, one per mask "
                        "and iteration):",
                        ["preset", "s / clip", "iterations", "model passes", "insertion AUC", "deletion AUC",
                         "pointing game", "temporal hit"],
                        [[p, f"{fp[p + '_seconds']:.1f}", f"{fp[p + '_iterations']:.0f}",
                          f"{fp[p + '_evaluations']:.0f}", f"{fp[p + '_insertion']:.3f}",
                          f"{fp[p + '_deletion']:.3f}", f"{fp[p + '_pointing_game']:.3f}",
                          f"{fp[p + '_temporal_hit']:.2f}"] for p in fp.get("presets", ("fast", "paper"))])
        if "time_ratio" in fp:
            lines += [f"fast / paper wall time: {fp['time_ratio']:.3f}"]
        lines += ["compile warm-up, once per process: "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in fp["compile_warmup_s"].items()), ""]
    if res.get("scaling"):
        lines += _table("Scaling of the fast preset on the toy network (one factor at a time from 16 frames, "
                        "64 px, 3 areas, 1 target):",
                        ["factor", "frames", "size", "areas", "targets", "s / iteration", "peak MB"],
                        [[r["factor"], r["frames"], r["size"], r["areas"], r["targets"], f"{r['iteration_s']:.3f}",
                          f"{r['peak_mb']:.0f}"] for r in res["scaling"]])
    if res.get("clip_seconds"):
        lines += _table("Seconds per clip (per-iteration median × the preset's iterations):",
                        ["model", "preset", "precision", "s / iteration", "s / clip", "peak MB"],
                        [[r["model"], r["preset"], r["precision"], f"{r['iteration_s']:.3f}",
                          f"{r['clip_s']:.1f}", f"{r['peak_mb']:.0f}"] for r in res["clip_seconds"]])
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 toy clip, 2 timed iterations, 1 area for the overhead rows (the toy at its "
                         "preset's areas too), 64/112 px scaling: a few minutes on 2 cores")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--models", nargs="+", default=OVERHEAD_MODELS, help="models for the overhead table")
    ap.add_argument("--clips", type=int, default=None, help="toy clips for fast vs paper (default 3; quick 1)")
    ap.add_argument("--repeats", type=int, default=None, help="timed iterations / passes (default 5; quick 2)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["overhead", "breakdown", "fast-vs-paper", "scaling"])
    ap.add_argument("--clip-seconds", nargs="*", default=None, metavar="MODEL",
                    help="also time whole clips, fp32 and the automatic precision, on these models (e.g. videomae-b x3d_m slowfast_r50)")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="time the overhead section by the wall clock (default) or by this process's CPU time "
                         "(on a machine shared with other work, where waiting for a core would count as work)")
    a = ap.parse_args(argv)
    global _clock
    _clock = time.process_time if a.clock == "cpu" else time.perf_counter
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    repeats = a.repeats or (2 if a.quick else 5)
    res = {"device": str(device), "torch": torch.__version__, "threads": a.threads, "quick": a.quick,
           "clock": a.clock,
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
           f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"}
    t0 = time.perf_counter()
    if "overhead" not in a.skip:
        res["overhead"] = overhead(a.models, device, repeats, single_area=a.quick)
        res.update(overhead_ratios(res["overhead"], a.quick))
    if "breakdown" not in a.skip:
        res["breakdown"] = breakdown(device, repeats)
    if "fast-vs-paper" not in a.skip:
        fp = fast_vs_paper(a.clips or (1 if a.quick else 3), device)
        res["fast_vs_paper"] = fp
        res["passes_per_clip"] = {p: fp[f"{p}_evaluations"] for p in fp["presets"]}
        res["seconds_per_toy_clip"] = {p: fp[f"{p}_seconds"] for p in fp["presets"]}
        res.update({"fast_vs_paper_time_ratio": fp["time_ratio"],
                    "fast_insertion_auc": fp["fast_insertion"], "paper_insertion_auc": fp["paper_insertion"],
                    "fast_pointing_game": fp["fast_pointing_game"], "paper_pointing_game": fp["paper_pointing_game"],
                    "fast_temporal_hit": fp["fast_temporal_hit"], "paper_temporal_hit": fp["paper_temporal_hit"],
                    "fast_seconds_per_toy_clip": fp["fast_seconds"], "paper_seconds_per_toy_clip": fp["paper_seconds"],
                    "fast_evaluations": fp["fast_evaluations"], "paper_evaluations": fp["paper_evaluations"]})
    if "scaling" not in a.skip:
        res["scaling"] = scaling(device, repeats, a.quick)
    if a.clip_seconds:
        res["clip_seconds"] = clip_seconds(a.clip_seconds, device, repeats)
    res["wall_s"] = time.perf_counter() - t0
    print(report(res))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
