"""Every path that reads a file shows the model its recipe's frames: the API, the CLI, the app and ``batch``.

The clip is 10 s at 30 fps whose frames carry their own index in their pixels (two grey halves: index // 20 and
index % 20, in steps of 12 grey levels), so the frames a model received can be read back from what it saw.
The model is a user's TorchScript file whose sidecar gives a recipe of 4 frames x rate 12: a 1.6 s window.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

SECONDS, FPS = 10, 30
# 300 frames, window 4 x 12 = 48 frames centred: start (300 - 48) / 2 = 126, then linspace(0, 47, 4) -> rounded
WINDOW = [126, 142, 157, 173]
# trimmed to [2 s, 6 s]: frames 60..180 (121 frames); start 60 + (121 - 48) / 2 = 96.5, same spacing -> rounded
TRIM = (2.0, 6.0)
TRIMMED = [96, 112, 128, 144]
STEP = 12


class CountNet(nn.Module):
    """(B,3,T,H,W) -> (B,3) logits; module-level for TorchScript."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(x.mean((2, 3, 4)))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from attribution.video import write_video
    n = SECONDS * FPS
    frames = np.zeros((n, 48, 64, 3), np.uint8)
    for i in range(n):
        frames[i, :24] = (i // 20) * STEP
        frames[i, 24:] = (i % 20) * STEP
    path = tmp_path_factory.mktemp("sampling") / "ten_seconds.mp4"
    write_video(frames, path, fps=FPS, crf=0)
    return str(path)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("recipe_model")
    torch.manual_seed(0)
    torch.jit.script(CountNet().eval()).save(str(d / "net.pt"))
    (d / "net.pt.json").write_text(json.dumps({
        "frames": 4, "crop": 32, "resize_side": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "layout": "BCTHW",
        "labels": ["a", "b", "c"], "sampling_rate": 12}))
    return str(d / "net.pt")


def _decoded(frames) -> list[int]:
    """The indices written into frames (T,H,W,3) uint8 at the model's input size."""
    f = np.asarray(frames, dtype=np.float64)
    h = f.shape[1]
    hi = f[:, 2:h // 2 - 3].mean((1, 2, 3)) / STEP
    lo = f[:, h // 2 + 3:-2].mean((1, 2, 3)) / STEP
    return [int(round(a)) * 20 + int(round(b)) for a, b in zip(hi, lo)]


def test_the_recipe_picks_the_centred_window(model_path):
    from model_zoo import load_model
    m = load_model(model_path, device="cpu")
    assert m.frame_indices(300, 30).tolist() == WINDOW
    assert m.frame_indices(600, 60).tolist() == [252, 284, 315, 347]   # 60 fps: the same 1.6 s, twice the frames
    assert "rate 12" in m.sampling()


def test_api_with_a_path_and_a_video(clip, model_path):
    from attribution import explain, load_clip, load_video
    from model_zoo import load_model
    m = load_model(model_path, device="cpu")
    exp = explain(m, clip, method="random")
    assert exp.source["indices"] == WINDOW
    assert _decoded(exp.frames) == WINDOW                       # what the model saw, read back from its pixels
    assert exp.source["times"] == pytest.approx([i / FPS for i in WINDOW], abs=1e-3)
    assert exp.source["seen"] == pytest.approx([WINDOW[0] / FPS, WINDOW[-1] / FPS], abs=1e-3)
    # a Video with every frame is sampled by the recipe too
    everything = load_video(clip, max_side=None)
    assert explain(m, everything, method="random").source["indices"] == WINDOW
    # the trim chooses the part of the clip the rule is applied to
    trimmed = load_clip(clip, m, start=TRIM[0], end=TRIM[1])
    assert trimmed.indices.tolist() == TRIMMED
    exp = explain(m, trimmed, method="random")
    assert exp.source["indices"] == TRIMMED and _decoded(exp.frames) == TRIMMED


def test_cli(clip, model_path, tmp_path, capsys):
    from attribution.cli import main
    for trim, expected in ((None, WINDOW), (TRIM, TRIMMED)):
        out = tmp_path / f"out{bool(trim)}"
        args = ["explain", clip, "--model", model_path, "--method", "random", "--out", str(out), "--quiet"]
        if trim:
            args += ["--start", str(trim[0]), "--end", str(trim[1])]
        assert main(args) == 0
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert line["frames"] == expected
        summary = json.loads((out / "summary.json").read_text())
        assert summary["source"]["indices"] == expected
        assert _decoded(np.load(out / "saliency.npz")["frames"]) == expected


def test_app_callback(clip, model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    import app
    from ui import config
    monkeypatch.setattr(config, "TMP_ROOT", tmp_path / "requests")
    for (start, end), expected in (((0, 0), WINDOW), (TRIM, TRIMMED)):
        *_, archive, summary = app.explain_clip(clip, model_path, method="random", start=start, end=end,
                                                curves=False)
        with zipfile.ZipFile(archive) as z:
            saved = json.loads(z.read("summary.json"))
        assert saved["source"]["indices"] == expected
        first, last = expected[0] / FPS, expected[-1] / FPS
        assert f"{first:.2f} s to {last:.2f} s" in summary          # the app says which seconds the model saw


def test_batch(clip, model_path, tmp_path):
    from attribution.batch import read_results, run_batch
    for trim, expected in ((None, WINDOW), (TRIM, TRIMMED)):
        out = tmp_path / f"batch{bool(trim)}"
        start, end = trim or (None, None)
        stats = run_batch(clip, out, model=model_path, method="random", start=start, end=end, log=None)
        assert stats["ok"] == 1
        (row,) = read_results(out)
        assert row["frames"] == expected
        assert _decoded(np.load(Path(row["out"]) / "saliency.npz")["frames"]) == expected
