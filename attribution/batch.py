"""Dataset-scale runs: explain every clip of a folder or list, resumably, on one or many processes.

``python -m attribution batch CLIPS_DIR_OR_LIST --model toy --method step --out DIR [--curves]``

* Each clip's :class:`Explanation` is saved into ``DIR/<clip-stem>/`` first, then one JSON line describing
  it (clip, prediction, target, AUCs, timings, where the maps are) is appended to the results file with
  flush + fsync. A crash loses at most the clip in flight; a rerun skips the clips already done.
* Under ``torchrun --nproc-per-node N`` rank r takes clips r, r+N, r+2N, ... of the sorted list, writes
  ``DIR/results-rank{r}.jsonl``, and rank 0 merges every rank's file into ``DIR/results.jsonl`` after a
  barrier. A single process writes ``DIR/results.jsonl`` directly. What is done is read from all
  ``results*.jsonl`` files, so a crashed multi-process run resumes even before its merge happened.
* A clip that fails gets a line with ``"status": "error"`` and the message; the others still run. Errors of
  the input (an unreadable video: :class:`ExplorerError`) are final; other errors (out of memory, ...) are
  retried by the next run, and ``retry_errors`` retries all of them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Iterable, Sequence

from attribution import pipeline
from attribution.common import resolve_device
from attribution.errors import ExplorerError, InputError
from attribution.explain import json_default
from attribution.pipeline import PAPER_CURVE_STEPS

VIDEO_EXTENSIONS = {".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v", ".gif", ".mpg", ".mpeg", ".ogv", ".wmv",
                    ".flv", ".3gp", ".ts"}
RESULTS = "results.jsonl"


@dataclasses.dataclass(frozen=True)
class Dist:
    """Where this process sits in a ``torchrun`` launch (world 1 without one)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Dist":
        try:
            return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                       int(os.environ.get("LOCAL_RANK", 0)))
        except ValueError:
            raise InputError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them).") from None


# ------------------------------------------------------------------------------------------ clip listing
def list_clips(source) -> list[str]:
    """Sorted clip paths from a folder (its video files, recursively) or a text file (one path a line;
    blank lines and ``#`` comments skipped; relative paths are relative to the list's folder).

    Entries of a list are kept even when the file is missing, so that the clip gets its own error line.
    """
    src = Path(source)
    if src.is_dir():
        clips = [p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS]
        if not clips:
            raise InputError(f"No video files ({', '.join(sorted(VIDEO_EXTENSIONS))}) in the folder {src}.")
        return sorted(str(p) for p in clips)
    if src.is_file():
        if src.suffix.lower() in VIDEO_EXTENSIONS:
            return [str(src)]
        lines = [ln.strip() for ln in src.read_text(encoding="utf-8", errors="replace").splitlines()]
        clips = [ln for ln in lines if ln and not ln.startswith("#")]
        if not clips:
            raise InputError(f"The list {src} names no clips (one path per line).")
        return sorted(str(p if Path(p).is_absolute() else src.parent / p) for p in clips)
    raise InputError(f"{source} is neither a folder of videos nor a text file listing them.")


def clip_ids(clips: Sequence[str]) -> dict[str, str]:
    """Output folder name of each clip: its stem, plus a short hash of the path where stems collide."""
    stems: dict[str, int] = {}
    for c in clips:
        stems[Path(c).stem] = stems.get(Path(c).stem, 0) + 1
    out = {}
    for c in clips:
        stem = Path(c).stem
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem) or "clip"
        if stems[stem] > 1:
            safe += "-" + hashlib.sha1(os.path.abspath(c).encode()).hexdigest()[:8]
        out[c] = safe
    return out


# ------------------------------------------------------------------------------------------- result files
def read_results(out_dir) -> list[dict]:
    """Every parsable line of ``results.jsonl`` and ``results-rank*.jsonl`` (a torn last line is skipped)."""
    rows = []
    for f in sorted(Path(out_dir).glob("results*.jsonl")):
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                row = json.loads(line)
                if isinstance(row, dict) and "id" in row:
                    rows.append(row)
    return rows


def done_ids(out_dir, retry_errors: bool = False) -> set[str]:
    """Clips that need no new run: done, or failed on their input (unless ``retry_errors``)."""
    done = set()
    for row in read_results(out_dir):
        if row.get("status") == "ok" or (row.get("status") == "error" and row.get("final") and not retry_errors):
            done.add(row["id"])
    return done


def append_line(path, row: dict) -> None:
    """Append one JSON line in a single write, then fsync (an O_APPEND write is not interleaved with others).

    After a crash mid-line the torn line is closed first, so it spoils only itself (``read_results`` skips it).
    """
    data = (json.dumps(row, default=json_default) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn line from a crash: end it first
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def merge_results(out_dir) -> Path:
    """Fold every rank's lines into ``results.jsonl`` (one line per clip, the latest wins; ``ok`` beats an
    error), atomically, then delete the rank files."""
    d = Path(out_dir)
    best: dict[str, dict] = {}
    for row in read_results(d):
        old = best.get(row["id"])
        if old is None or row.get("status") == "ok" or old.get("status") != "ok":
            best[row["id"]] = row
    tmp = d / f".{RESULTS}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for key in sorted(best):
                f.write(json.dumps(best[key], default=json_default) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / RESULTS)
    except BaseException:
        tmp.unlink(missing_ok=True)   # the rank files are still there: the merge can run again
        raise
    for f in d.glob("results-rank*.jsonl"):
        f.unlink()
    return d / RESULTS


# --------------------------------------------------------------------------------------------------- run
def _device(requested, dist: Dist):
    """The rank's device: the one requested (checked against the machine), else ``cuda:LOCAL_RANK`` when there
    is a GPU, else the CPU."""
    import torch
    if requested:
        return resolve_device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", dist.local_rank % torch.cuda.device_count())
    return resolve_device(None)


@contextlib.contextmanager
def _process_group(dist: Dist, device):
    """torch.distributed on for the run when WORLD_SIZE > 1: gloo on CPU, nccl on GPU."""
    if dist.world <= 1:
        yield None
        return
    import torch.distributed as tdist
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        import torch
        torch.cuda.set_device(device)
    tdist.init_process_group(backend=backend)
    try:
        yield tdist
    finally:
        tdist.destroy_process_group()


def _barrier(tdist, device) -> None:
    if tdist is None:
        return
    if device.type == "cuda":
        tdist.barrier(device_ids=[device.index or 0])
    else:
        tdist.barrier()


def explain_clip(model, clip: str, out: Path, *, method: str, preset: str, target=None, seed: int = 0,
                 curves: bool = False, steps: int = PAPER_CURVE_STEPS, overrides: dict | None = None, start=None,
                 end=None, cache=None) -> dict:
    """Explain one clip (:func:`attribution.pipeline.run`, through ``cache`` when given), save it into ``out``
    and return its result line (without id / status; ``cached``: whether it came from the cache)."""
    from attribution.video import load_clip

    t0 = time.perf_counter()
    video = load_clip(clip, model, start=start, end=end)
    t1 = time.perf_counter()
    exp = pipeline.run(model, video, method, target=target, preset=preset, seed=seed,
                       curve_steps=steps if curves else 0, cache=cache, **(overrides or {}))
    exp.source["path"] = clip
    t2 = time.perf_counter()
    row = {"clip": clip, "model": model.name, "method": exp.method, "preset": exp.preset, "seed": seed,
           "prediction": {"index": model.labels.index(exp.topk[0][0]), "label": exp.topk[0][0],
                          "probability": round(exp.topk[0][1], 5)},
           "target": exp.target, "label": exp.label, "probability": round(exp.probability, 5),
           "peak_frame": exp.peak_frame, "iterations": exp.iterations, "evaluations": exp.evaluations,
           "frames": exp.source.get("indices"), "times": exp.source.get("times"),
           "cached": exp.source.get("cache") == "hit"}
    if exp.curves is not None:
        row.update(exp.curves.aucs())
    exp.save(out)
    t3 = time.perf_counter()
    row["timings"] = {"load": round(t1 - t0, 3), "explain": round(t2 - t1, 3), "save": round(t3 - t2, 3),
                      "total": round(t3 - t0, 3), **{f"explain_{k}": v for k, v in exp.timings.items()}}
    row["out"] = str(out)
    return row


def run_batch(source, out_dir, *, model="toy", method: str = "step", preset: str = "fast",
              target=None, seed: int = 0, curves: bool = False, steps: int = PAPER_CURVE_STEPS, device=None,
              overrides: dict | None = None, retry_errors: bool = False, dist: Dist | None = None,
              start=None, end=None, cache=None, log=sys.stderr) -> dict:
    """Explain every clip of ``source`` (folder or list) into ``out_dir``; resumable; sharded under torchrun.

    Args:
        source: a folder of videos (searched recursively) or a text file with one path a line.
        out_dir: gets ``<clip-id>/`` per clip (Explanation.save) and the results JSONL.
        model: registry name / path for :func:`model_zoo.load_model`, or a built ``VideoClassifier``.
        method, preset, target, seed, overrides: as :func:`attribution.explain`; ``target`` None explains
            each clip's top-1 class.
        start, end: the part of every clip (seconds) the model's frame sampling is applied to.
        curves: also measure deletion/insertion (blocks, blur substrate, ``steps`` steps) with a random map.
        device: default ``cuda:LOCAL_RANK`` when there is a GPU, else the CPU.
        retry_errors: also rerun clips whose input failed before.
        cache: a result cache (``attribution.cache.ResultCache``): a clip explained before with the same model,
            settings and seed (in this run's folder or any other) is read from it, not computed again.
        dist: rank and world size; default from the RANK / WORLD_SIZE / LOCAL_RANK environment.

    Returns:
        {"rank", "world", "clips", "assigned", "skipped", "ok", "errors", "results"} for this process.
    """
    import torch

    dist = dist or Dist.from_env()
    dev = _device(device, dist)          # a bad device or clip list is refused before the folder is made
    clips = list_clips(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = clip_ids(clips)
    mine, todo = _assigned(clips, ids, out, dist, retry_errors)
    results = out / (RESULTS if dist.world == 1 else f"results-rank{dist.rank}.jsonl")
    if dev.type == "cpu" and dist.world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.world))
    stats = {"rank": dist.rank, "world": dist.world, "clips": len(clips), "assigned": len(mine),
             "skipped": len(mine) - len(todo), "ok": 0, "errors": 0}
    job = dict(method=method, preset=preset, target=target, seed=seed, curves=curves, steps=steps,
               overrides=overrides, start=start, end=end, cache=cache)
    with _process_group(dist, dev) as tdist:
        net = _model_on(model, dev, needed=bool(todo))
        _explain_clips(net, todo, ids, out, results, dist, stats, log, job)
        _barrier(tdist, dev)
        if dist.world > 1 and dist.rank == 0:
            merge_results(out)
        _barrier(tdist, dev)
    stats["results"] = str(out / RESULTS)
    return stats


def _assigned(clips: list[str], ids: dict[str, str], out: Path, dist: Dist, retry_errors: bool):
    """(mine, todo): this rank's share of the clips, and the part of it not done yet."""
    # Shard the full sorted list before looking at what is done, so that every rank agrees on the split
    # even while the others are already appending results.
    mine = clips[dist.rank::dist.world]
    done = done_ids(out, retry_errors)
    return mine, [c for c in mine if ids[c] not in done]


def _model_on(model, dev, needed: bool):
    """The model on ``dev``: loaded from the registry by name (None when no clip needs it), or moved there."""
    from model_zoo import load_model

    if isinstance(model, str):
        return load_model(model, device=dev) if needed else None
    return model.to(dev)  # an already built VideoClassifier (in-process callers)


def _explain_clips(net, todo: list[str], ids: dict[str, str], out: Path, results: Path, dist: Dist, stats: dict,
                   log, job: dict) -> None:
    """Explain the clips one by one: append each one's result line (and count it in ``stats``), log progress."""
    for i, clip in enumerate(todo, 1):
        cid = ids[clip]
        t0 = time.perf_counter()
        row, ok = _explain_or_error(net, clip, out / cid, {"id": cid, "clip": clip, "rank": dist.rank}, t0, job)
        stats["ok" if ok else "errors"] += 1
        append_line(results, row)
        if log is not None:
            what = row["status"] if row["status"] == "ok" else f"error: {row['error']}"
            print(f"[rank {dist.rank}] {i}/{len(todo)} {cid}: {what} ({time.perf_counter() - t0:.1f}s)",
                  file=log, flush=True)


def _explain_or_error(net, clip: str, out: Path, base: dict, t0: float, job: dict) -> tuple[dict, bool]:
    """(result line, explained): the line of :func:`explain_clip` with status "ok", or the error's line (final for
    an error of the input; other errors carry their traceback and are retried by the next run)."""
    try:
        return {**base, "status": "ok", **explain_clip(net, clip, out, **job)}, True
    except KeyboardInterrupt:
        raise
    except Exception as e:  # one bad clip must not stop a dataset run
        final = isinstance(e, ExplorerError)
        row = {**base, "status": "error", "final": final, "error_type": type(e).__name__,
               "error": str(e) or type(e).__name__, "seconds": round(time.perf_counter() - t0, 3)}
        if not final:
            row["traceback"] = traceback.format_exc(limit=6)
        return row, False


def summarise(rows: Iterable[dict]) -> dict:
    """Counts and mean AUCs over result lines (what the CLI prints at the end)."""
    rows = list(rows)
    ok = [r for r in rows if r.get("status") == "ok"]
    out = {"ok": len(ok), "errors": sum(r.get("status") == "error" for r in rows)}
    for key in ("auc_deletion", "auc_insertion", "auc_random_deletion", "auc_random_insertion"):
        vals = [r[key] for r in ok if key in r]
        if vals:
            out[f"mean_{key}"] = round(sum(vals) / len(vals), 5)
    return out
