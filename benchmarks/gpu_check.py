"""Does the engine run right on an accelerator, and how fast? One prepared run for a GPU machine.

    python benchmarks/gpu_check.py --device cuda --out benchmarks/results/gpu

Every check runs even when an earlier one failed, and each is reported with its figures (a table on stdout,
``gpu_check.json`` and ``gpu_check.txt`` in ``--out``):

1. **Engine parts**: the generator (forward and gradient), the pyramid lookup, the area loss and L_K on the
   same random inputs at the toy's size, eager and compiled (Triton on CUDA), against the CPU's eager ones in
   fp32 with TF32 off: the largest difference relative to the part's largest value, at most ``PARTS_BOUND``.
2. **The paper preset's short run** (tests/test_paper_fidelity.py's pinned masks) on the device, eager and
   compiled, with the CPU's other seed as the scale: figures, not a check. From the all-ones start the area
   loss's top-k meets ties, broken at random as the paper's shuffle, and the rounding of another device or of
   the compiled generator decides which values tie, so such runs differ from the CPU's as two seeds do
   (README "Reproducibility").
3. **The default request on the toy**: ``explain(preset="interactive")`` on toy clip 0 on the CPU in fp32
   (eager, and compiled: rounding alone), on the device in fp32 and at its automatic precision, then 32-step
   deletion / insertion curves: passes,
   seconds, finite maps, and each saliency's correlation with the CPU's (at least ``CORRELATION_BOUND``:
   neither the device nor autocast may change the answer; the CPU's seed 1 is the scale).
4. **Speed** (``--speed``, default on): ``speed.py --quick`` on the device (engine overhead per preset on the
   toy, X3D-XS and VideoMAE-B, where the time of an iteration goes on the toy) and seconds per clip for each
   preset, fp32 against the automatic precision, on ``--clip-models`` (default VideoMAE-B 16 x 224, X3D-M and
   SlowFast-R50, random weights): README "Speed" (its GPU paragraph under "Overhead, fast against paper,
   scaling").

Imports torch, the engine and the model zoo only (transformers for VideoMAE, pytorchvideo for X3D / SlowFast,
captum for the engine's comparison methods): on a GPU machine without them, install their wheels first
(README "Speed" gives the two commands).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from attribution import step as S  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from test_paper_fidelity import tiny_model  # noqa: E402  (the pinned run's model, exactly the test's)

PINNED = ROOT / "tests" / "data" / "paper_preset_masks.pt"
CLIP_MODELS = ["videomae-b", "x3d_m", "slowfast_r50"]
PARTS_BOUND = 1e-4   # the parts of an iteration on the device against the CPU: largest |Δ| / largest |value|
CORRELATION_BOUND = 0.95   # the default request's saliency, automatic precision on the device vs fp32 on the CPU


def _parts(device, compiled: bool, seed: int = 0, frames: int = 16, size: int = 64) -> dict:
    """Every part of an iteration on the same random inputs at the toy's size (16 x 64 px, ``paper`` geometry,
    every pixel): the generator's forward and its parameters' gradient, the pyramid lookup and its gradient,
    the area loss and L_K with their gradients. Returns name -> CPU tensor."""
    g = torch.Generator().manual_seed(seed)
    T, H = frames, size
    cfg = S.Settings(**S.PRESETS["paper"]).scaled(H)
    geo = S.mask_geometry(H, H, cfg.grid_step, cfg.sigma, cfg.param_padding)
    kernel = S.smooth_mask_kernel(geo["step"], cfg.sigma, geo["radius"], cfg.subsample).to(device)
    params = torch.rand(T, 1, *geo["grid"], generator=g).to(device).requires_grad_(True)
    padded, mask = S.smooth_mask(params, geo, kernel, H, H, compiled=compiled)
    w = torch.rand(padded.shape, generator=g).to(device)
    (padded * w).sum().backward()
    out = {"generator": padded.detach(), "generator grad": params.grad}
    clip = torch.rand(1, 3, T, H, H, generator=g).to(device)
    pyramid = S.blur_pyramid(clip, cfg.max_blur, border=cfg.blur_border)
    m = torch.rand(2, 1, T, H, H, generator=g).to(device).requires_grad_(True)
    x = S.pyramid_lookup(compiled, pyramid, m)(pyramid, m)
    (x * torch.rand(x.shape, generator=g).to(device)).sum().backward()
    out.update({"pyramid": pyramid, "lookup": x.detach(), "lookup grad": m.grad})
    hp = H + 2 * geo["margin"]
    pad = torch.rand(2, 1, T, hp, hp, generator=g).to(device).requires_grad_(True)   # no ties: a random mask
    refs = torch.stack([S.area_reference(T * hp * hp, a, device) for a in (0.1, 0.5)])
    la = S.area_loss(pad, refs, False, torch.Generator().manual_seed(seed))
    kt = min(S.KEY_FRAMES, T // 2)
    counts = torch.tensor(S.core_counts((0.1, 0.5), T * hp * hp, kt, geo["margin"]), device=device)
    lk = S.core_loss(pad, S.ellipsoid_kernel(kt, geo["margin"]).to(device), counts, torch.Generator().manual_seed(seed))
    (la.sum() + lk.sum()).backward()
    out.update({"area loss": la.detach(), "L_K": lk.detach(), "losses grad": pad.grad})
    return {k: v.detach().float().cpu() for k, v in out.items()}


def parts_agree(device, **size) -> dict:
    """The parts of an iteration on ``device`` (eager and compiled) against the CPU's eager ones, fp32: the
    largest difference relative to each part's largest value."""
    ref = _parts(torch.device("cpu"), compiled=False, **size)
    rel = {}
    for compiled in (False, True):
        got = _parts(device, compiled, **size)
        for name, r in ref.items():
            rel[f"{name}{' (compiled)' if compiled else ''}"] = float((got[name] - r).abs().max() / r.abs().max())
    worst = max(rel.values())
    return {"max_relative_diff": worst, "bound": PARTS_BOUND, "ok": worst <= PARTS_BOUND, "parts": rel}


def paper_short_run(device) -> dict:
    """The ``paper`` preset's short run of tests/test_paper_fidelity.py (16 iterations, L_K from iteration 6,
    two areas) on ``device``, eager and compiled, against the masks stored from the CPU. From the all-ones start
    the area loss's top-k meets ties, broken at random as the paper's shuffle; another device's (or the compiled
    generator's) rounding decides which values are tied, so these runs differ from the CPU's as two seeds do
    (figures only; ``parts_agree`` is the check): the CPU's seed 6 against seed 5 is the scale."""
    clip = torch.rand(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(3))
    st = dataclasses.replace(S.Settings(**S.PRESETS["paper"]), iterations=16, core_warmup=6, areas=(0.1, 0.5),
                             precision="fp32")
    ref = torch.load(PINNED)["masks"]

    def run(where, compiled, seed=5):
        cfg = dataclasses.replace(st, compile=compiled)
        return S.perturbation(tiny_model().to(where), clip.to(where), [2], settings=cfg, seed=seed).masks.float()

    def diff(m):
        return {"max": round(float((m - ref).abs().max()), 5), "mean": round(float((m - ref).abs().mean()), 5)}

    cpu = torch.device("cpu")
    return {"ok": True, "cpu eager (pinned)": diff(run(cpu, False)), "cpu eager, seed 6": diff(run(cpu, False, 6)),
            "device eager": diff(run(device, False)), "device compiled": diff(run(device, True))}


def default_request(device) -> dict:
    """The app's default request on toy clip 0 (``interactive``, 32-step curves) on ``device`` at its
    automatic precision, against the same request in fp32 on the CPU."""
    from attribution.explain import explain
    from attribution.metrics import deletion_insertion
    from model_zoo import load_model, toy

    item = toy.generate(1, seed=500)[0]
    out, maps = {}, {}
    cpu = torch.device("cpu")
    runs = (("cpu fp32", cpu, "fp32", 0, False), ("cpu fp32, seed 1", cpu, "fp32", 1, False),
            ("cpu fp32, compiled", cpu, "fp32", 0, True), ("device fp32", device, "fp32", 0, False),
            (f"device automatic ({S.describe_precision(device, 'auto')})", device, "auto", 0, False))
    for key, where, precision, seed, compiled in runs:
        model = load_model("toy", device=where)
        clip = model.prepare(item.frames).to(where)
        t0 = time.perf_counter()
        exp = explain(model, clip, target=item.label, preset="interactive", precision=precision, seed=seed,
                      compile=compiled)
        t1 = time.perf_counter()
        curves = deletion_insertion(model, clip, exp.saliency, item.label, steps=32, random_baseline=True)
        t2 = time.perf_counter()
        maps[key] = np.asarray(exp.saliency, dtype=np.float64).ravel()
        out[key] = {"evaluations": exp.evaluations, "explain_s": round(t1 - t0, 3), "curves_s": round(t2 - t1, 3),
                    "insertion": round(float(curves.auc_insertion), 4),
                    "deletion": round(float(curves.auc_deletion), 4), "finite": bool(np.isfinite(maps[key]).all())}
    ref = maps.pop("cpu fp32")
    for key, m in maps.items():
        out[key]["correlation"] = float(np.corrcoef(ref, m)[0, 1]) if ref.std() > 0 and m.std() > 0 else float("nan")
    for key, m in maps.items():
        out[key]["max_abs_diff"] = round(float(np.abs(ref - m).max()), 5)
    out.update(bound=CORRELATION_BOUND, ok=all(out[k]["finite"] and out[k]["evaluations"] <= S.INTERACTIVE_BUDGET
                                                and out[k]["correlation"] >= CORRELATION_BOUND for k in maps))
    return out


def speed_figures(device, clip_models, out_dir: Path) -> dict:
    """speed.py --quick on ``device`` with --clip-seconds ``clip_models``; its JSON and tables."""
    import speed

    path = out_dir / "speed.json"
    args = ["--quick", "--device", str(device), "--threads", str(torch.get_num_threads()), "--skip", "scaling", "fast-vs-paper", "--json", str(path)]
    if clip_models:
        args += ["--clip-seconds", *clip_models]
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        speed.main(args)
    (out_dir / "speed.txt").write_text(text.getvalue())
    print(text.getvalue())
    res = json.loads(path.read_text())
    return {"ok": True, "json": str(path), "overhead_ratios": res.get("overhead_ratios"),
            "clip_seconds": res.get("clip_seconds")}


def environment(device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        env.update(name=torch.cuda.get_device_name(device), capability=list(torch.cuda.get_device_capability(device)),
                   memory_gb=round(torch.cuda.get_device_properties(device).total_memory / 2 ** 30, 1))
    env["automatic_precision"] = S.describe_precision(device, "auto")
    return env


def _save(results: dict, out_dir: Path) -> None:
    """The JSON and the table so far: a run stopped by a time limit keeps the checks it finished."""
    (out_dir / "gpu_check.txt").write_text(report(results) + "\n")
    (out_dir / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))


def _check(name: str, fn, results: dict, out_dir: Path) -> None:
    t0 = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as e:  # noqa: BLE001 - a failed check is a finding; the others still run
        results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
    results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"{name}: {'ok' if results[name].get('ok') else 'FAILED'} "
          f"{ {k: v for k, v in results[name].items() if k not in ('trace', 'clip_seconds', 'overhead_ratios')} }",
          flush=True)
    _save(results, out_dir)


def _figures(d: dict) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    return ", ".join(f"{k} {fmt(v)}" for k, v in d.items() if not isinstance(v, (dict, list)))


def report(results: dict) -> str:
    """A markdown table: one row per check with its scalar figures, one indented row per run inside it."""
    env = results["environment"]
    lines = [f"Device: {env.get('name', env['device'])} (torch {env['torch']}, automatic precision "
             f"{env['automatic_precision']})", "", "| check | result | figures |", "|---|---|---|"]
    hidden = ("ok", "trace", "json", "parts", "clip_seconds", "overhead_ratios")
    for name, r in results.items():
        if name == "environment":
            continue
        lines.append(f"| {name} | {'ok' if r.get('ok') else 'FAILED'} | "
                     f"{_figures({k: v for k, v in r.items() if k not in hidden})} |")
        lines += [f"| &nbsp;&nbsp;{k} | | {_figures(v)} |" for k, v in r.items() if isinstance(v, dict) and k not in hidden]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu")
    ap.add_argument("--no-speed", dest="speed", action="store_false", help="checks 1-3 only")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's)")
    ap.add_argument("--clip-models", nargs="*", default=CLIP_MODELS,
                    help="models for the seconds per clip (default: videomae-b x3d_m slowfast_r50)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    a.out.mkdir(parents=True, exist_ok=True)
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if device.type == "cuda":   # fp32 means fp32 in the fidelity checks (TF32 would round the model's products)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    results = {"environment": environment(device)}
    _check("engine parts", lambda: parts_agree(device), results, a.out)
    _check("paper short run", lambda: paper_short_run(device), results, a.out)
    _check("default request (toy)", lambda: default_request(device), results, a.out)
    if a.speed:
        # the speed figures are for what a user gets: PyTorch's default TF32 settings
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        _check("speed", lambda: speed_figures(device, a.clip_models, a.out), results, a.out)
    print(report(results))
    return 0 if all(r.get("ok") for k, r in results.items() if k != "environment") else 1


if __name__ == "__main__":
    sys.exit(main())
