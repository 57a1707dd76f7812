"""Command line: ``python -m attribution explain CLIP --model toy --out DIR``.

Exit codes: 0 success, 2 bad input (one sentence on stderr), 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from attribution.common import check_output_folder, positive_int, writing_to
from attribution.errors import ExplorerError, InputError
from attribution.methods import available_methods
from attribution.methods.perturbation import areas_argument
from attribution.pipeline import PAPER_CURVE_STEPS
from attribution.step import GAMES, PERTURBATIONS, PRECISIONS, PRESETS


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line, as every other bad input gets (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"error: {message.rstrip('.')} (see '{self.prog} --help').\n")


def _engine_args(p) -> None:
    """Engine switches of the perturbation methods (none changes the result beyond rounding)."""
    p.add_argument("--no-compile", dest="compile", action="store_const", const=False, default=None,
                   help="do not torch.compile the mask generator and the perturbation "
                        "(default: compile runs of >= 100 iterations)")
    p.add_argument("--batch", type=positive_int, default=None,
                   help="masks per model call (default: all areas at once; halves itself on out-of-memory)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="the model's arithmetic: auto (default: bf16 autocast on GPUs of compute capability >= 8.0, "
                        "fp16 below, fp32 on the CPU), or force fp32 / bf16 / fp16")


def _run_args(p, device_help: str) -> None:
    """What ``explain`` and ``batch`` share: model, output, method, preset, target, seed, settings, trim, curves."""
    p.add_argument("--model", default="toy", help="registry name (see 'models'), HF folder/repo id or "
                                                  "TorchScript file (default: toy, offline)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", default="step", choices=available_methods(), metavar="METHOD",
                   help=f"step (default, the paper's), or one of: {', '.join(available_methods()[1:])}")
    p.add_argument("--preset", default="fast", choices=list(PRESETS),
                   help="perturbation methods: fast (default), paper (the authors' 1200 iterations) or interactive "
                        "(at most 99 model passes, the app's default)")
    p.add_argument("--device", default=None, help=device_help)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=positive_int, default=None, help="override the preset's iteration count")
    p.add_argument("--areas", type=areas_argument, default=None, help="mask areas, e.g. 0.02,0.05,0.1")
    p.add_argument("--start", type=float, default=None, help="start of the part to explain, seconds")
    p.add_argument("--end", type=float, default=None, help="end of the part to explain, seconds")
    p.add_argument("--curves", action="store_true", help="also measure deletion/insertion curves (with a random map)")
    p.add_argument("--steps", type=positive_int, default=PAPER_CURVE_STEPS,
                   help=f"deletion/insertion steps (default {PAPER_CURVE_STEPS}, the paper's)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="always compute (default: a request made before is read from the result cache, "
                        "$VAE_CACHE_DIR; see 'cache')")
    _engine_args(p)


def _settings(a) -> dict:
    """The perturbation settings given on the command line (the others keep the preset's)."""
    given = dict(iterations=a.iterations, areas=a.areas, key_frames=getattr(a, "key_frames", None),
                 perturbation=getattr(a, "perturbation", None), game=getattr(a, "game", None), compile=a.compile,
                 batch=a.batch, precision=a.precision)
    return {k: v for k, v in given.items() if v is not None}


def build_parser() -> argparse.ArgumentParser:
    installed = Path(sys.argv[0]).stem == "video-attribution"   # the console script of `pip install -e .`
    ap = _Parser(prog="video-attribution" if installed else "python -m attribution",
                                 description="Explain a video classifier's prediction with spatio-temporal "
                                             "perturbation masks (STEP) and other attribution methods.")
    sub = ap.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("explain", help="explain one clip and write overlay.mp4, temporal.png, summary.json, ...")
    ex.add_argument("clip", help="video file (mp4, webm, avi, mov, mkv, ...)")
    _run_args(ex, "cpu, cuda, cuda:1 (default: the GPU when there is one)")
    ex.add_argument("--target", action="append", default=None,
                    help="class index or label name (default: the top-1 class); give it several times to explain "
                         "several classes in one run (each into OUT/<class>/)")
    ex.add_argument("--top-k", type=positive_int, default=None,
                    help="explain the model's K most probable classes at once")
    ex.add_argument("--contrast", default=None,
                    help="a class (index or label): explain why the model sees the target rather than this one "
                         "(perturbation methods)")
    ex.add_argument("--key-frames", type=positive_int, default=None,
                    help="L_K ellipsoid length in frames (default: 8, or half the clip when shorter than 16 frames)")
    ex.add_argument("--perturbation", choices=list(PERTURBATIONS), default=None)
    ex.add_argument("--game", choices=list(GAMES), default=None)

    sub.add_parser("models", help="list the registered models")

    from attribution import cache, sanity
    cache.add_arguments(sub.add_parser("cache", help="the result cache: where it is and how big (info), or empty "
                                                     "it (clear)"))
    sanity.add_arguments(sub.add_parser("sanity", help="does each method's map depend on the model? (cascading "
                                                       "randomisation of the model's layers, Adebayo et al. 2018)"))

    bt = sub.add_parser("batch", help="explain every clip of a folder or list into DIR (resumable; shards "
                                      "clips across processes under torchrun)",
                        description="Explain every clip and write DIR/<clip>/ plus one JSON line per clip to "
                                    "DIR/results.jsonl. Clips already done are skipped, so rerun after a crash. "
                                    "Under 'torchrun --nproc-per-node N -m attribution batch ...' rank r takes "
                                    "clips r::N of the sorted list. Exit code 0 even when some clips failed "
                                    "(each has an error line); 2 when the run itself cannot start.")
    bt.add_argument("clips", help="folder of videos (searched recursively) or a text file with one path a line "
                                  "(relative paths are read from the list file's folder; # starts a comment)")
    _run_args(bt, "default: cuda:LOCAL_RANK when there is a GPU, else cpu")
    bt.add_argument("--target", default=None, help="class index or label for every clip (default: top-1)")
    bt.add_argument("--retry-errors", action="store_true", help="rerun clips that failed on their input before")
    return ap


def _progress_bar(quiet: bool):
    if quiet:
        return None, lambda: None
    from tqdm import tqdm
    bar = tqdm(total=1, desc="optimising mask", unit="it", file=sys.stderr, leave=False)

    def update(done, total, info=None):
        stage = "measuring curves" if info and info.get("stage") == "curves" else "optimising mask"
        if bar.desc != stage:
            bar.set_description(stage, refresh=False)
        if bar.total != total:
            bar.total = total
        bar.n = done
        if info and "probability" in info:
            bar.set_postfix(p=f"{info['probability']:.3f}", refresh=False)
        bar.refresh()
    return update, bar.close


def _cache(a):
    """The result cache, unless --no-cache."""
    from attribution.cache import ResultCache
    return ResultCache() if a.cache else None


def _targets(a, model, video):
    """None (top-1), one target, or a list (several --target, or --top-k)."""
    if a.top_k is not None and a.target:
        raise InputError("Give either --target or --top-k, not both.")
    if a.top_k is not None:
        from attribution import pipeline
        return pipeline.top_classes(model, video, a.top_k)
    if not a.target:
        return None
    return a.target[0] if len(a.target) == 1 else list(a.target)


def _summary_line(a, model, exp, out, seconds) -> dict:
    line = {"clip": a.clip, "model": model.name, "target": exp.target, "label": exp.label,
            "probability": round(exp.probability, 4), "method": exp.method, "preset": exp.preset,
            "frames": exp.source.get("indices"), "seconds_seen": exp.source.get("seen"),
            "peak_frame": exp.peak_frame, "iterations": exp.iterations, "seconds": round(seconds, 2),
            "cached": exp.source.get("cache") == "hit", "out": str(out)}
    if exp.curves is not None:
        line.update(exp.curves.summary().get("auc", {}))
    return line


def cmd_explain(a) -> int:
    from attribution import load_clip, pipeline
    from model_zoo import load_model

    t0 = time.perf_counter()
    check_output_folder(a.out)
    model = load_model(a.model, device=a.device)
    video = load_clip(a.clip, model, start=a.start, end=a.end)
    target = _targets(a, model, video)
    progress, close = _progress_bar(a.quiet)
    try:
        result = pipeline.run(model, video, a.method, target=target, preset=a.preset, seed=a.seed,
                              curve_steps=a.steps if a.curves else 0, random_baseline=True, progress=progress,
                              contrast=a.contrast, cache=_cache(a), **_settings(a))
    finally:
        close()
    several = isinstance(result, list)
    for exp in result if several else [result]:
        exp.source["path"] = a.clip
        out = Path(a.out) / _slug(exp.label) if several else Path(a.out)
        with writing_to(out):
            exp.save(out)
        print(json.dumps(_summary_line(a, model, exp, out, time.perf_counter() - t0)))
    return 0


def _slug(text: str) -> str:
    import re
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "class"


def cmd_models(_a) -> int:
    from model_zoo import get_entry, list_models
    from model_zoo.sampling import window_seconds
    print(f"{'name':48s} {'family':12s} {'frames x rate':>13s} {'seconds':>7s} {'crop':>4s}  weights")
    for name in list_models():
        e = get_entry(name)
        where = "offline" if e.offline else "needs download"
        recipe = f"{e.num_frames} x {e.sampling_rate}" if e.sampling_rate else f"{e.num_frames} uniform"
        seconds = window_seconds(e)
        print(f"{name:48s} {e.family:12s} {recipe:>13s} {f'{seconds:.2f}' if seconds else 'all':>7s} "
              f"{e.crop_size:>4d}  {where}")
    return 0


def cmd_batch(a) -> int:
    from attribution.batch import read_results, run_batch, summarise

    overrides = _settings(a)
    check_output_folder(a.out)
    stats = run_batch(a.clips, a.out, model=a.model, method=a.method, preset=a.preset, target=a.target, cache=_cache(a),
                      seed=a.seed, curves=a.curves, steps=a.steps, device=a.device, overrides=overrides,
                      retry_errors=a.retry_errors, start=a.start, end=a.end, log=None if a.quiet else sys.stderr)
    if stats["rank"] == 0:  # after the merge: every rank's clips, this run's and earlier runs'
        stats["all"] = summarise(read_results(a.out))
    print(json.dumps(stats))
    return 0


def main(argv=None) -> int:
    from attribution import cache, sanity
    a = build_parser().parse_args(argv)
    commands = {"explain": cmd_explain, "models": cmd_models, "batch": cmd_batch, "cache": cache.run_cli,
                "sanity": sanity.run_cli}
    try:
        return commands[a.command](a)
    except ExplorerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
