"""Tests of attribution/batch.py and the ``batch`` subcommand: sharding under torchrun (each clip done exactly
once), resuming after a crash, and a bad clip that gets an error line while the rest still run."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from attribution import batch as Bt
from attribution.video import write_video
from model_zoo import VideoClassifier, toy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    for i, item in enumerate(toy.generate(4, seed=610)):
        write_video(item.frames, d / f"clip{i}.mp4", fps=8, crf=12)
    return d


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return VideoClassifier(toy.ToyNet(), name="toy-untrained", labels=toy.LABELS, num_frames=16, crop_size=64,
                           mean=toy.MEAN, std=toy.STD, gradcam_layer="features.5").eval()


def _ok(rows):
    return sorted(r["id"] for r in rows if r["status"] == "ok")


def test_torchrun_two_ranks_do_every_clip_exactly_once(clips, tmp_path):
    """A saved toy net with a sidecar stands in for any user model, so no trained weights are needed."""
    torch.save(toy.ToyNet().eval(), tmp_path / "net.pt")
    (tmp_path / "net.pt.json").write_text(json.dumps(
        {"frames": 16, "crop": 64, "mean": list(toy.MEAN), "std": list(toy.STD), "layout": "BCTHW",
         "labels": toy.LABELS}))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "attribution", "batch", str(clips), "--model", str(tmp_path / "net.pt"),
           "--method", "frame-difference", "--out", str(out), "--device", "cpu", "--quiet"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)  # hang guard
    assert res.returncode == 0, res.stderr[-3000:]
    assert not list(out.glob("results-rank*.jsonl"))                 # merged by rank 0
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert _ok(rows) == ["clip0", "clip1", "clip2", "clip3"] and len(rows) == 4
    assert sorted(r["rank"] for r in rows) == [0, 0, 1, 1]            # clips r::2 of the sorted list
    assert {r["id"]: r["rank"] for r in rows} == {"clip0": 0, "clip1": 1, "clip2": 0, "clip3": 1}
    for r in rows:
        assert (out / r["id"] / "saliency.npz").exists() and (out / r["id"] / "summary.json").exists()
        assert r["out"] == str(out / r["id"]) and r["method"] == "frame-difference"
    summaries = _json_objects(res.stdout)   # the two ranks share stdout: their lines may run together
    assert {s["rank"] for s in summaries} == {0, 1} and sum(s["ok"] for s in summaries) == 4


def _json_objects(text: str) -> list:
    dec, out, i = json.JSONDecoder(), [], text.find("{")
    while i >= 0:
        obj, end = dec.raw_decode(text, i)
        out.append(obj)
        i = text.find("{", end)
    return out


def test_resume_skips_clips_already_done(clips, model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # a crashed earlier run: three clips done (one by another rank), then a line torn by the crash
    with open(out / "results.jsonl", "w") as f:
        for cid in ("clip0", "clip2"):
            f.write(json.dumps({"id": cid, "clip": str(clips / f"{cid}.mp4"), "status": "ok"}) + "\n")
        f.write('{"id": "clip3", "status": "o')
    Bt.append_line(out / "results-rank1.jsonl", {"id": "clip1", "status": "ok"})
    stats = Bt.run_batch(clips, out, model=model, method="random", curves=True, steps=4, log=None)
    assert stats["skipped"] == 3 and stats["ok"] == 1
    assert [p.name for p in out.iterdir() if p.is_dir()] == ["clip3"]
    rows = Bt.read_results(out)
    assert _ok(rows) == ["clip0", "clip1", "clip2", "clip3"]
    fresh = [r for r in rows if r["id"] == "clip3" and "out" in r]
    assert len(fresh) == 1
    for r in fresh:
        assert {"auc_deletion", "auc_insertion", "auc_random_deletion", "auc_random_insertion"} <= set(r)
        assert (out / r["id"] / "curves.png").exists()
        assert r["prediction"]["label"] in toy.LABELS and r["timings"]["total"] > 0
        summary = json.loads((out / r["id"] / "summary.json").read_text())
        assert summary["curves"]["auc"]["auc_insertion"] == r["auc_insertion"]
    again = Bt.run_batch(clips, out, model=model, method="random", log=None)
    assert again["skipped"] == 4 and again["ok"] == 0


def test_a_bad_clip_gets_an_error_line_and_the_rest_still_run(clips, model, tmp_path):
    (tmp_path / "broken.mp4").write_text("this is not a video")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# clips\nbroken.mp4\nmissing.mp4\n\n{clips / 'clip0.mp4'}\n")
    out = tmp_path / "out"
    stats = Bt.run_batch(listing, out, model=model, method="frame-difference", log=None)
    assert stats["ok"] == 1 and stats["errors"] == 2
    rows = {r["id"]: r for r in Bt.read_results(out)}
    assert rows["broken"]["status"] == "error" and rows["broken"]["error_type"] == "VideoError"
    assert rows["missing"]["status"] == "error" and rows["broken"]["final"]
    assert "not a video" in rows["broken"]["error"]
    assert rows["clip0"]["status"] == "ok"
    # input errors are final: a rerun does not retry them unless asked to
    assert Bt.run_batch(listing, out, model=model, method="frame-difference", log=None)["skipped"] == 3
    assert Bt.run_batch(listing, out, model=model, method="frame-difference", log=None,
                        retry_errors=True)["errors"] == 2


def test_clip_ids_are_unique_and_merge_keeps_one_line_per_clip(tmp_path):
    ids = Bt.clip_ids(["a/x.mp4", "b/x.mp4", "c/y z.mp4"])
    assert len(set(ids.values())) == 3 and ids["c/y z.mp4"] == "y_z"
    Bt.append_line(tmp_path / "results-rank0.jsonl", {"id": "x", "status": "error", "error": "oom"})
    Bt.append_line(tmp_path / "results-rank1.jsonl", {"id": "x", "status": "ok"})
    Bt.append_line(tmp_path / "results-rank1.jsonl", {"id": "y", "status": "ok"})
    Bt.merge_results(tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert rows == [{"id": "x", "status": "ok"}, {"id": "y", "status": "ok"}]
    assert Bt.done_ids(tmp_path) == {"x", "y"}


# The first run of the kill test: the real CLI, except that the third clip's call blocks once its files are
# written (before its result line), so that the test kills the process at a known point: mid-clip.
_STALL_THIRD_CLIP = """
import sys, time
import attribution.batch as batch
from attribution.cli import main
real, calls = batch.explain_clip, []

def explain_clip(*args, **kwargs):
    calls.append(args[1])
    row = real(*args, **kwargs)
    if len(calls) == 3:
        open(sys.argv[1], "w").close()
        time.sleep(3600)
    return row

batch.explain_clip = explain_clip
sys.exit(main(sys.argv[2:]))
"""


def _tree(folder: Path) -> dict:
    """Every file under ``folder``: (inode, mtime in ns, bytes), to tell a file left alone from one rewritten."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_batch_killed_mid_run_resumes_every_clip_exactly_once(clips, tmp_path):
    """The CLI batch in a subprocess, killed (SIGKILL) while the third clip is in flight, then run again: the
    retryable error of the first run is retried, the finished clip is not touched, every clip ends done once."""
    out, stalled = tmp_path / "out", tmp_path / "stalled"
    out.mkdir()
    (out / "clip0").write_text("a file where clip0's folder goes: saving fails with an OSError (retryable)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ["batch", str(clips), "--model", "toy", "--method", "frame-difference", "--out", str(out), "--quiet"]
    first = subprocess.Popen([sys.executable, "-c", _STALL_THIRD_CLIP, str(stalled), *args], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(3000):                       # poll (up to 5 minutes) for the marker of the stalled clip
            if stalled.exists() or first.poll() is not None:
                break
            time.sleep(0.1)
        assert stalled.exists(), first.communicate(timeout=60)
    finally:
        first.kill()
        first.communicate(timeout=60)
    rows = Bt.read_results(out)
    assert [(r["id"], r["status"]) for r in rows] == [("clip0", "error"), ("clip1", "ok")]
    assert rows[0]["final"] is False and rows[0]["error_type"] in ("FileExistsError", "NotADirectoryError")
    assert (out / "clip2" / "summary.json").exists()         # the clip in flight wrote its files, not its line
    finished = _tree(out / "clip1")

    (out / "clip0").unlink()                                  # the cause of the retryable error is gone
    second = subprocess.run([sys.executable, "-m", "attribution", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    stats = json.loads(second.stdout.strip().splitlines()[-1])
    assert (stats["skipped"], stats["ok"], stats["errors"]) == (1, 3, 0)   # only clip1 counted as done
    rows = Bt.read_results(out)
    ok = [r["id"] for r in rows if r["status"] == "ok"]
    assert sorted(ok) == ["clip0", "clip1", "clip2", "clip3"] and len(ok) == 4      # each clip done exactly once
    assert _tree(out / "clip1") == finished                                          # the finished clip untouched
    for cid in ("clip0", "clip2", "clip3"):
        summary = json.loads((out / cid / "summary.json").read_text())
        assert summary["source"]["path"].endswith(f"{cid}.mp4") and summary["method"] == "frame-difference"
    assert Bt.done_ids(out) == {"clip0", "clip1", "clip2", "clip3"}                 # a third run has nothing to do


def test_a_rerun_elsewhere_reads_every_clip_from_the_result_cache(clips, model, tmp_path, monkeypatch):
    """batch shares the result cache of the app and the CLI: the same clips, model and settings into another
    folder compute nothing and write the same maps."""
    import numpy as np

    from attribution import pipeline
    from attribution.cache import ResultCache
    cache = ResultCache(tmp_path / "results", max_bytes=100 * 2**20)
    kw = dict(model=model, method="gradient", curves=True, steps=8, cache=cache, log=None)
    Bt.run_batch(clips, tmp_path / "a", **kw)
    first = [r for r in Bt.read_results(tmp_path / "a") if r["status"] == "ok"]
    assert first and not any(r["cached"] for r in first)
    monkeypatch.setattr(pipeline, "explain", lambda *a, **k: pytest.fail("a cached clip ran the model"))
    Bt.run_batch(clips, tmp_path / "b", **kw)
    again = [r for r in Bt.read_results(tmp_path / "b") if r["status"] == "ok"]
    assert len(again) == len(first) and all(r["cached"] for r in again)
    for a, b in zip(sorted(first, key=lambda r: r["id"]), sorted(again, key=lambda r: r["id"])):
        assert a["auc_insertion"] == b["auc_insertion"]
        sa, sb = (np.load(Path(r["out"]) / "saliency.npz")["saliency"] for r in (a, b))
        assert np.array_equal(sa, sb)
