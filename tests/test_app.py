"""Tests for app.py: the callbacks called directly, then the served app driven with gradio_client.

Offline, toy model only, few iterations (``iterations=`` is an Advanced input), so the whole file runs in
well under two minutes on two CPU cores. Bad inputs are generated with PyAV into a temporary folder.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAVED = ("overlay.mp4", "temporal.png", "curves.png", "saliency.npz", "summary.json")
# gradio's queue code trips pandas 3 deprecation warnings; not ours to fix
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]
FEW = 3          # optimisation iterations in tests: enough to exercise the loop, not to converge
CURVE_STEPS = 16  # the quick curves' steps in tests (the app's default is 32; the paper's 128 one click away)


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    """The app module, with its temporary folders and the examples cache moved into pytest's tmp."""
    tmp = tmp_path_factory.mktemp("app")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                           "VAE_TMP": str(tmp / "requests"), "GRADIO_EXAMPLES_CACHE": str(tmp / "examples_cache"),
                           "GRADIO_TEMP_DIR": str(tmp / "gradio"), "VAE_CURVE_STEPS": str(CURVE_STEPS)}.items():
            mp.setenv(key, value)
        import app as app_module
        from attribution import pipeline
        from model_zoo import toy
        from ui import callbacks, config, costs, files, inputs, text
        # the app's modules, read after the environment above is set (ui.config reads it at import)
        globals().update(pipeline=pipeline, callbacks=callbacks, config=config, costs=costs, files=files,
                         inputs=inputs, ui_text=text)
        if not toy.WEIGHTS.exists():
            pytest.fail(f"{toy.WEIGHTS} is missing: train it with `python -m model_zoo.toy_train train`")
        yield app_module


def _encode(path, frames, rate=8, codec="libx264", **opts):
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"preset": "ultrafast", **opts}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(s.encode(None))
    return str(path)


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """A toy-task clip (16 frames, 64 px) the toy model classifies, written as H.264 mp4."""
    from model_zoo.toy import generate
    from attribution.video import write_video
    c = generate(1, seed=3)[0]
    path = tmp_path_factory.mktemp("clip") / "toy clip.mp4"
    write_video(c.frames, path, fps=8, crf=12)
    return str(path)


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory):
    """name -> (path, model, target, fragment of the error message the person must see)."""
    d = tmp_path_factory.mktemp("bad")
    grey = lambda t, h, w: np.full((t, h, w, 3), 110, np.uint8)  # noqa: E731
    (d / "empty.mp4").write_bytes(b"")
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 40)
    with av.open(str(d / "audio.mp4"), "w") as c:  # an audio track and nothing else
        s = c.add_stream("aac", rate=16000)
        f = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        f.sample_rate = 16000
        c.mux(s.encode(f))
        c.mux(s.encode(None))
    from PIL import Image
    Image.new("RGB", (64, 48), (200, 30, 30)).save(d / "photo.png")
    (d / "photo.png").rename(d / "photo.mp4")
    _encode(d / "huge.mp4", grey(1, 4200, 4200))                       # 17.6 megapixels > 16.8
    _encode(d / "long.mp4", grey(62, 32, 32), rate=Fraction(1, 10))    # 620 s > 600 s
    _encode(d / "one.mp4", grey(1, 64, 64))
    return {
        "empty": (d / "empty.mp4", "toy", "", "empty"),
        "corrupt": (d / "corrupt.mp4", "toy", "", "damaged"),
        "audio only": (d / "audio.mp4", "toy", "", "only audio"),
        "image renamed to mp4": (d / "photo.mp4", "toy", "", "still image"),
        "huge resolution": (d / "huge.mp4", "toy", "", "resolution is too high"),
        "too long": (d / "long.mp4", "toy", "", "too long"),
        "one frame": (d / "one.mp4", "toy", "", "single frame"),
        "unknown target": (None, "toy", "playing the banjo", "Unknown target label"),
        "model needs network": (None, "x3d_xs", "", "network"),
    }


def _bad(bad_inputs, name, clip):
    path, model, target, message = bad_inputs[name]
    return str(path or clip), model, target, message


def _check_outputs(label, overlay, temporal, curves, archive, method="step"):
    """Every output of explain is there and usable."""
    from media import probe_video
    from PIL import Image
    assert isinstance(label, dict) and len(label) == 4  # the toy model has 4 classes: the top-5 is all of them
    assert abs(sum(label.values()) - 1) < 1e-3
    info = probe_video(overlay)
    assert (info["codec"], info["pix_fmt"]) == ("h264", "yuv420p") and info["frames"] == 16
    for png in (temporal, curves):
        with Image.open(png) as im:
            assert im.format == "PNG" and im.width > 400
    with zipfile.ZipFile(archive) as z:
        assert set(SAVED) <= set(z.namelist())
        summary = json.loads(z.read("summary.json"))
    assert summary["method"] == method and summary["model"] == "toy"
    assert set(summary["curves"]["auc"]) >= {"auc_deletion", "auc_insertion", "auc_random_deletion"}
    return summary


# ------------------------------------------------------------------------------------- callbacks directly
def test_explain_callback_gives_every_output(app, clip):
    label, overlay, temporal, curves, archive, text = app.explain_clip(
        clip, "toy", "", "step", "fast", 0, 0, "", FEW, 0, "blur", 0, True)
    summary = _check_outputs(label, overlay, temporal, curves, archive)
    assert summary["iterations"] == FEW and summary["label"] == max(label, key=label.get)
    assert "The model sees" in text and "for a random map" in text


def test_explain_callback_target_by_name_and_options(app, clip):
    """A named target, another method, no curves: the summary says so and the curve plot is absent."""
    label, overlay, temporal, curves, archive, text = app.explain_clip(
        clip, "toy", "moving up", "gradient", "fast", 0.2, 1.8, "", 0, 0, "blur", 3, False)
    assert curves is None and Path(overlay).exists() and Path(temporal).exists()
    summary = json.loads(zipfile.ZipFile(archive).read("summary.json"))
    assert (summary["label"], summary["method"], summary["seed"]) == ("moving up", "gradient", 3)
    assert summary["source"]["times"][0] >= 0.2 - 1e-6 and summary["source"]["times"][-1] <= 1.8 + 1e-6
    assert "moving up" in text


def test_advanced_options_reach_the_engine(app, clip):
    _, _, _, _, archive, _ = app.explain_clip(clip, "toy", "", "3d-ep", "fast", 0, 0, "0.03, 0.2", 2, 0,
                                              "fade", 0, False)
    s = json.loads(zipfile.ZipFile(archive).read("summary.json"))
    assert s["areas"] == [0.03, 0.2] and s["iterations"] == 2 and s["settings"]["perturbation"] == "fade"


def test_predict_fills_the_top5_target_choices(app, clip):
    label, dropdown = app.predict_clip(clip, "toy")
    assert len(label) == 4
    values = [c[1] if isinstance(c, tuple) else c for c in dropdown.choices]
    assert values[0] == app.TOP1 and set(values[1:5]) == set(label)
    assert dropdown.value == app.TOP1


def test_compare_callback(app, clip):
    strip, table, archive, note = app.compare_clip(clip, "toy", "", ["step", "gradient", "random"], "fast",
                                                   0, 0, FEW, 0)
    from PIL import Image
    with Image.open(strip) as im:
        assert im.width > 300 and im.height > 300  # input row + three method rows
    assert list(table["method"]) == ["STEP", "Gradient", "Random"]
    assert table["deletion AUC ↓"].between(0, 1).all()
    assert {"comparison.png", "comparison.csv", "comparison.json"} <= set(zipfile.ZipFile(archive).namelist())


def test_a_repeated_request_is_answered_from_the_result_cache(app, clip, monkeypatch, tmp_path):
    """The same upload with the same settings again: no model work, no GPU window, the same outputs, and the
    summary says where they came from; another seed runs again."""
    from attribution.cache import ResultCache
    monkeypatch.setattr(callbacks, "RESULTS", ResultCache(tmp_path / "results", max_bytes=50 * 2**20))
    args = (clip, "toy", "", "step", "fast", 0, 0, "", FEW, 0, "blur", 0, True)
    first = app.explain_clip(*args)
    assert "result cache" not in first[5]

    def boom(*a, **k):
        raise AssertionError("a repeat must not run the model")
    monkeypatch.setattr(callbacks, "model_work", boom)
    again = app.explain_clip(*args)
    assert again[0] == first[0] and "shown from the result cache" in again[5]
    with zipfile.ZipFile(again[4]) as z:
        saved = json.loads(z.read("summary.json"))
    assert saved["source"]["cache"] == "hit"
    with pytest.raises(Exception, match="must not run the model|went wrong"):
        app.explain_clip(*args[:11], 1, True)        # another seed is another request


def test_sanity_callback_flags_a_method_that_ignores_the_model(app, clip):
    plot, table, archive, note = app.sanity_clip(clip, "toy", "", ["gradient", "frame-difference"], "fast", 0, 0,
                                                 0, 0)
    verdicts = dict(zip(table["method"], table["verdict"]))
    assert verdicts["Frame difference"].startswith("survives") and verdicts["Gradient"].startswith("changes")
    assert Path(plot).exists() and "**Frame difference** kept its map" in note
    assert {"sanity.json", "sanity.png"} <= set(zipfile.ZipFile(archive).namelist())


def test_compare_callback_by_class_shows_the_top_k(app, clip):
    """"Why this class, and why that one?": the first ticked method on the model's top-3 classes, side by side."""
    strip, table, archive, note = app.compare_clip(clip, "toy", "", ["gradient", "random"], "fast", 0, 0, FEW, 0,
                                                   False, "target", 3)
    labels = list(table["target"])
    assert len(labels) == 4 and labels[-1] == "random map (reference)" and len(set(labels[:3])) == 3
    assert list(table["probability"][:3]) == sorted(table["probability"][:3], reverse=True)
    assert "top 3 classes" in note and "Gradient" in note
    saved = json.loads(zipfile.ZipFile(archive).read("comparison.json"))
    assert saved["by"] == "target" and saved["labels"] == labels[:3]


@pytest.mark.parametrize("name", ["empty", "corrupt", "audio only", "image renamed to mp4", "huge resolution",
                                  "too long", "one frame", "unknown target", "model needs network"])
def test_bad_inputs_give_one_sentence(app, bad_inputs, clip, name, no_network):
    import gradio as gr
    path, model, target, message = _bad(bad_inputs, name, clip)
    with pytest.raises(gr.Error) as err:
        app.explain_clip(path, model, target, "step", "fast", 0, 0, "", FEW, 0, "blur", 0, False)
    assert message in err.value.message and "Traceback" not in err.value.message


@pytest.mark.parametrize("kwargs, message", [
    (dict(video=None), "Upload a video first"),
    (dict(areas="0.1, 1.5"), "Areas must be fractions"),
    (dict(start=2.5, end=1.0), "start and end"),
    (dict(method="nonsense"), "Unknown method"),
])
def test_bad_settings_give_one_sentence(app, clip, kwargs, message):
    import gradio as gr
    args = dict(video=clip, model="toy", target="", method="step", preset="fast", iterations=FEW, curves=False)
    with pytest.raises(gr.Error, match=message):
        app.explain_clip(**{**args, **kwargs})


def test_unexpected_errors_are_logged_not_shown(app, clip, monkeypatch, caplog):
    import gradio as gr

    def boom(*a, **k):
        raise RuntimeError("secret internal detail")
    monkeypatch.setattr(pipeline, "explain", boom)
    with pytest.raises(gr.Error) as err:
        app.explain_clip(clip, "toy")
    assert "went wrong on our side" in err.value.message and "secret" not in err.value.message
    assert "secret internal detail" in caplog.text


def test_request_folders_are_private_and_swept(app):
    a, b = files.request_dir(), files.request_dir()
    assert a != b and a.parent == b.parent == config.TMP_ROOT
    old = time.time() - 2 * app.KEEP_SECONDS
    os.utime(a, (old, old))
    files.request_dir()
    assert not a.exists() and b.exists()
    files.cleanup(only_pid=os.getpid())
    assert not b.exists()


def test_request_folders_of_servers_that_no_longer_run_are_swept_at_start(app):
    """A server killed outright (SIGKILL) never runs its atexit sweep: the next server removes the request
    folders of this host's processes that are gone and the older ones named with its own id (a restarted
    container's predecessor), and leaves those of live processes, of other hosts and anything else."""
    root = config.TMP_ROOT
    root.mkdir(parents=True, exist_ok=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = files.HOST
    dead, before = root / f"{gone.pid}@{host}-abcd1234", root / f"{os.getpid()}@{host}-old12345"
    keep = [root / f"{os.getpid()}@{host}-new12345", root / f"1@{host}-live1234",     # pid 1 always runs
            root / f"{gone.pid}@another.host-abcd1234", root / "20240101123456-notes", root / f"{gone.pid}-x"]
    try:
        for d in (dead, before, *keep):
            d.mkdir(exist_ok=True)
        old = files._STARTED - 60
        os.utime(before, (old, old))
        files.cleanup_orphans()
        assert not dead.exists() and not before.exists() and all(d.exists() for d in keep)
    finally:
        for d in (dead, before, *keep):
            if d.exists():
                d.rmdir()


def test_api_signature_and_hosting_settings(app):
    info = app.demo.get_api_info()["named_endpoints"]
    params = info["/explain"]["parameters"]
    assert [p["parameter_name"] for p in params[:5]] == ["video", "model", "target", "method", "preset"]
    assert all(p["parameter_has_default"] for p in params[1:])
    assert {"/explain", "/predict", "/compare"} <= set(info)
    for name, endpoint in info.items():   # every output named for a client (not Gradio's "value_N")
        assert all(r.get("label") and not r["label"].startswith("value_") for r in endpoint["returns"]), name
    assert app.demo._queue.max_size == app.MAX_QUEUE
    assert app.launch_kwargs()["max_file_size"] == f"{app.MAX_UPLOAD_MB}mb"
    choices = dict((v, k) for k, v in inputs.model_choices())
    assert "offline" in choices["toy"] and "download" in choices["x3d_xs"]
    assert {"step", "3d-ep", "2d-ep", "grad-cam", "random"} <= {v for _, v in inputs.method_choices()}


def test_no_gradio_in_the_library():
    for folder in ("attribution", "model_zoo"):
        for f in (ROOT / folder).rglob("*.py"):
            text = f.read_text()
            assert "import gradio" not in text and "from gradio" not in text, f


# --------------------------------------------------------------------------------- the served app + client
@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client
    _, url, _ = app.demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True,
                                **app.launch_kwargs())
    try:
        yield Client(url, verbose=False, download_files=str(Path(os.environ["VAE_TMP"]).parent / "downloads"))
    finally:
        app.demo.close()


def test_examples_are_not_computed_at_start_up(client):
    cache = Path(os.environ["GRADIO_EXAMPLES_CACHE"])  # set by the `app` fixture for the whole session
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


def test_example_runs_on_first_click_then_comes_from_the_cache(app, client, monkeypatch):
    calls = []
    full = app.explain_clip

    def quick(video, model):  # the example's default settings, cut short
        calls.append(model)
        return full(video, model, iterations=FEW)
    monkeypatch.setattr(callbacks, "explain_clip", quick)
    first = client.predict(0, api_name="/load_example")
    again = client.predict(0, api_name="/load_example")
    assert calls == ["toy"]
    assert first[0] == again[0] and len(first[0]["confidences"]) == 4
    overlay = again[1]["video"] if isinstance(again[1], dict) else again[1]
    assert Path(overlay).exists()
    assert any(p.is_file() for p in Path(os.environ["GRADIO_EXAMPLES_CACHE"]).rglob("*"))


def _example_clip(app, clip):
    rows, _ = app.examples()
    toy = [r[0] for r in rows if Path(r[0]).name.startswith("toy_")]
    return toy[0] if toy else clip


def test_client_explains_an_example_clip(app, client, clip):
    from gradio_client import handle_file
    label, overlay, temporal, curves, archive, text = client.predict(
        video=handle_file(_example_clip(app, clip)), model="toy", target="", method="step",
        preset="fast", iterations=FEW, api_name="/explain")
    overlay = overlay["video"] if isinstance(overlay, dict) else overlay
    assert label["label"] in {"moving left", "moving right", "moving up", "moving down"}
    scores = {c["label"]: c["confidence"] for c in label["confidences"]}
    _check_outputs(scores, overlay, temporal, curves, archive)
    with av.open(overlay) as c:  # the browser's codec, and it decodes
        assert c.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in c.decode(video=0)) == 16
    assert "The model sees" in text


def test_client_bad_inputs_then_a_good_request(app, client, bad_inputs, clip, no_network):
    """Each bad input answers its one sentence; the server keeps serving."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    for name in bad_inputs:
        path, model, target, message = _bad(bad_inputs, name, clip)
        with pytest.raises(AppError, match=message):
            client.predict(video=handle_file(path), model=model, target=target, method="step", preset="fast",
                           iterations=FEW, curves=False, api_name="/explain")
    label, overlay, *_ = client.predict(video=handle_file(clip), model="toy", target="", method="random",
                                        preset="fast", curves=False, api_name="/explain")
    assert len(label["confidences"]) == 4 and Path(overlay["video"] if isinstance(overlay, dict) else overlay).exists()


def test_the_model_work_holds_the_model_lock_and_a_stopped_job_never_takes_it(app, monkeypatch):
    """The model runs only under ui.runtime.MODEL_LOCK (one model cache, Grad-CAM's hooks); a job stopped while
    it waited for its turn does not run at all."""
    import threading
    seen = []
    monkeypatch.setattr(pipeline, "run", lambda *a, **k: seen.append(callbacks.MODEL_LOCK.locked()) or "done")
    job = callbacks.Job("toy", None, ["random"])
    assert callbacks.model_work(job) == "done" and seen == [True]
    assert not callbacks.MODEL_LOCK.locked()
    stopped = threading.Event()
    stopped.set()
    with pytest.raises(Exception, match="stopped"):
        callbacks.model_work(job, cancel=stopped)
    assert seen == [True] and not callbacks.MODEL_LOCK.locked()


def test_client_cancel_stops_a_long_job_and_the_next_one_runs(app, client, clip, monkeypatch):
    """``Job.cancel()`` (what the Stop button does) ends a running explanation at its next iteration: the model
    lock is free again, the next request runs, and the stopped one left no request folder behind."""
    from gradio_client import handle_file
    monkeypatch.setenv("VAE_MAX_REQUEST_SECONDS", "0")   # no limit: the cost model would refuse 10^6 iterations
    before = set(config.TMP_ROOT.iterdir()) if config.TMP_ROOT.exists() else set()
    job = client.submit(video=handle_file(clip), model="toy", target="", method="step", preset="fast",
                        iterations=10 ** 6, curves=False, api_name="/explain")
    for _ in range(1200):            # until the optimisation is running (a hang guard, not a time limit)
        if app.MODEL_LOCK.locked():
            break
        time.sleep(0.1)
    assert app.MODEL_LOCK.locked(), "the long job never started"
    job.cancel()
    label, *_ = client.submit(video=handle_file(clip), model="toy", target="", method="random", preset="fast",
                              curves=False, api_name="/explain").result(timeout=300)   # hours if not stopped
    assert len(label["confidences"]) == 4
    for _ in range(600):             # the stopped job's thread may still be finishing the step it was in
        if not app.MODEL_LOCK.locked():
            break
        time.sleep(0.1)
    assert not app.MODEL_LOCK.locked(), "the stopped job kept the model"
    created = (set(config.TMP_ROOT.iterdir()) if config.TMP_ROOT.exists() else set()) - before
    assert len(created) == 1          # the short request's folder only


def test_quick_curves_by_default_the_papers_on_request(app, clip):
    for paper, steps in ((False, CURVE_STEPS), (True, 128)):
        *_, archive, text = app.explain_clip(clip, "toy", "", "random", "fast", curves=True, paper_curves=paper)
        with zipfile.ZipFile(archive) as z:
            saved = json.loads(z.read("summary.json"))
        assert saved["curves"]["steps"] == steps and len(saved["curves"]["deletion"]) == steps + 1
        assert f"({steps} steps" in text                     # the summary says which curves were measured


def test_a_request_above_the_limit_is_refused_before_it_runs(app, clip, monkeypatch):
    import gradio as gr
    ran = []
    monkeypatch.setattr(pipeline, "explain", lambda *a, **k: ran.append(1))
    monkeypatch.setenv("VAE_MAX_REQUEST_SECONDS", "0.001")
    with pytest.raises(gr.Error) as err:
        app.explain_clip(clip, "toy", "", "step", "paper", 0, 0, "", 0, 0, "blur", 0, True)
    text = err.value.message
    assert text.startswith("This request would take about") and "limit" in text and "interactive preset" in text
    assert text.count(". ") == 0 and not ran            # one sentence, and nothing ran
    # the sanity check is held to the same limit, counted over every stage of its cascade
    from attribution import sanity
    monkeypatch.setattr(sanity, "sanity_check", lambda *a, **k: ran.append(1))
    with pytest.raises(gr.Error) as err:
        app.sanity_clip(clip, "toy", "", ["gradient"], "fast", 0, 0, 0, 0)
    assert err.value.message.startswith("This request would take about") and not ran


def test_the_expected_time_is_read_again_when_a_page_opens(app):
    """The cost lines' first value is made when the page is built, before the background timing has run: each
    page load asks again (from figures already timed: nothing runs a model on load)."""
    loads = {f.fn: f for f in app.demo.fns.values() if any(t[1] == "load" for t in f.targets)}
    assert costs.cost_markdown in loads and callbacks.compare_cost in loads
    cost_ids = {c._id for c in app.demo.blocks.values()
                if getattr(c, "elem_id", None) in ("vae-cost", "vae-compare-cost")}
    assert {o._id for f in loads.values() for o in f.outputs} == cost_ids and len(cost_ids) == 2


def test_the_expected_time_adds_what_the_last_request_spent_drawing(app, clip, monkeypatch):
    """The cost model counts the model's work; a visitor also waits for the overlay video, the plots and the
    zip, which the line adds as long as the last Explain request of that model took them (not to the refusal or
    a ZeroGPU window: they run outside it)."""
    from attribution import cost
    from model_zoo import load_model
    cost.pass_costs(load_model("toy"))
    monkeypatch.setattr(costs, "RENDERING", {})
    app.explain_clip(clip, "toy", "", "random", "fast", curves=False)
    assert costs.RENDERING["toy"] > 0
    monkeypatch.setitem(costs.RENDERING, "toy", 600.0)
    assert "about 10 min" in costs.cost_markdown("toy", "random", "fast")
    assert "about 10 min" not in costs.cost_markdown("toy", ["random", "gradient"], "fast")   # Compare draws a strip
    assert costs.estimate(load_model("toy"), "random", "fast", {}, 0, measure=False).seconds < 600


def test_the_estimate_follows_the_settings(app, monkeypatch):
    from attribution import cost
    from model_zoo import load_model
    model = load_model("toy")
    cost.pass_costs(model)                               # timed once (what the first request does)
    for preset in ("fast", "paper"):                     # the engine's own cost per iteration, for both presets
        cost.engine_costs(preset, model.device, measure=True)
    assert "Expected time:" in costs.cost_markdown("toy", "step", "fast")
    fast = costs.estimate(model, "step", "fast", {}, True, measure=False).seconds
    paper = costs.estimate(model, "step", "paper", {}, True, measure=False).seconds
    fewer = costs.estimate(model, "step", "paper", {"iterations": 100}, True, measure=False).seconds
    both = costs.estimate(model, ["step", "gradient"], "fast", {}, True, measure=False).seconds
    assert fast < paper and fewer < paper and both > fast
    one = costs.estimate(model, "gradient", "fast", {}, 0, measure=False)
    cascade = costs.estimate(model, "gradient", "fast", {}, 0, measure=False, repeats=6)   # a 5-layer sanity check
    assert cascade.seconds == pytest.approx(6 * one.seconds) and cascade.passes["forward"] == 6 * one.passes["forward"]
    monkeypatch.setattr(config, "GPU_CAP", 10 ** 6)     # the cap (90 s) is not what is checked here
    assert costs.window("toy", ["step"], "interactive", {}, 0, repeats=6) > \
        costs.window("toy", ["step"], "interactive", {}, 0)


def test_requirements_for_the_space_and_for_development():
    text = (ROOT / "requirements.txt").read_text()
    dev = (ROOT / "requirements-dev.txt").read_text()
    pins = dict(line.split("==") for line in text.splitlines() if "==" in line and not line.startswith("#"))
    front = (ROOT / "README.md").read_text().split("---")[1]
    sdk = front.split("sdk_version:")[1].split()[0].strip('"')
    python = front.split("python_version:")[1].split()[0].strip('"')
    assert pins["gradio"] == sdk                         # the Space installs the front matter's version
    assert python in ("3.10", "3.12")                     # the Python versions ZeroGPU accepts
    assert "spaces" in pins and "pytest" not in pins and "playwright" not in pins
    assert "-r requirements.txt" in dev and "pytest==" in dev and "playwright==" in dev


def test_the_package_holds_every_file_its_modules_read():
    """pyproject.toml (``pip install -e .``): the engine's and the model zoo's packages are found, every data
    file they load at run time (weights, labels) is package data, the dependencies are requirements.txt and
    the console script is the CLI's main. (The app, app.py and ui/, runs from the repository.)"""
    import fnmatch
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = conf["tool"]["setuptools"]
    assert tool["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    assert conf["project"]["scripts"]["video-attribution"] == "attribution.cli:main"
    include = tool["packages"]["find"]["include"]
    for package in ("attribution", "model_zoo"):
        assert any(fnmatch.fnmatch(package, pat) for pat in include), package
        for f in (ROOT / package).rglob("*"):
            rel = f.relative_to(ROOT / package).as_posix()
            if f.is_file() and f.suffix not in (".py", ".pyc"):     # a glob's * stays within one folder
                assert any(fnmatch.fnmatch(rel, pat) and rel.count("/") == pat.count("/")
                           for pat in tool["package-data"].get(package, [])), f"{package}/{rel}"


def test_client_predict_endpoint(client, clip):
    from gradio_client import handle_file
    label, target = client.predict(video=handle_file(clip), model="toy", api_name="/predict")
    assert len(label["confidences"]) == 4 and target["value"] == ""
    assert [c[1] for c in target["choices"][1:5]] == [c["label"] for c in label["confidences"]]


def test_warm_up_compiles_the_generator_for_the_default_request(app, monkeypatch):
    """The start-up warm-up must compile exactly the shape a default request (toy, fast preset) then uses."""
    from attribution import explain, step
    from model_zoo import load_model, toy
    monkeypatch.setattr(step, "_COMPILED", {})
    app.warm_up(preset="fast")       # a preset that compiles (the server warms up only such a default)
    warmed = {k for k in step._COMPILED if isinstance(k, tuple)}
    # the smooth-max's compiled forward and backward, and the pyramid lookup
    assert {k[0] for k in warmed} == {"_smooth_max_forward", "_smooth_max_backward", "apply_pyramid"}
    seen = []

    def spy(compiled, fn, *args, grad=0):   # records what a run asks compiled; runs the eager function for it
        if not compiled:
            return fn
        seen.append(step.compile_key(fn, *args))
        return lambda *a, **k: fn(*a, **k)
    monkeypatch.setattr(step, "_compiled_fn", spy)
    c = toy.generate(1, seed=3)[0]
    explain(load_model(app.DEFAULT_MODEL), c.frames, preset="fast", iterations=1, compile=True)
    assert set(seen) == warmed


# ------------------------------------------------------------------------------------ the verdict sentence
def _explanation(curves=None, event=None, peak=5, label="moving left", probability=0.9, contrast_label=None):
    """What summary_markdown reads of an Explanation, built by hand."""
    import types
    temporal = np.full(16, 0.1)
    temporal[peak] = 1.0
    return types.SimpleNamespace(topk=[("moving left", 0.9), ("moving up", 0.1)], label=label,
                                 probability=probability, method="step", preset="fast", iterations=100,
                                 timings={"total": 1.0}, peak_frame=peak, temporal=temporal, source={},
                                 event=event, curves=curves, contrast_label=contrast_label)


def _curves(deletion, random_deletion, insertion, random_insertion):
    import types
    return types.SimpleNamespace(auc_deletion=deletion, auc_random_deletion=random_deletion,
                                 auc_insertion=insertion, auc_random_insertion=random_insertion)


@pytest.mark.parametrize("aucs, verdict", [
    ((0.20, 0.50, 0.80, 0.40), "beats random on both"),           # deletion lower, insertion higher: both win
    ((0.20, 0.50, 0.40, 0.80), "beats random on one of the two"),  # only deletion wins
    ((0.60, 0.50, 0.80, 0.40), "beats random on one of the two"),  # only insertion wins
    ((0.60, 0.30, 0.30, 0.60), "does no better than random"),      # the wrong way round on both
    ((0.495, 0.50, 0.505, 0.50), "does no better than random"),    # within the margin on both
])
def test_the_verdict_reads_each_curve_the_right_way_round(app, aucs, verdict):
    text = ui_text.summary_markdown(_explanation(_curves(*aucs)))
    assert f"this map {verdict}" in text
    assert f"deletion AUC **{aucs[0]:.3f}**" in text and f"insertion AUC **{aucs[2]:.3f}**" in text


def test_the_summary_says_whether_the_peak_is_in_the_known_window(app):
    assert "the peak is inside that window" in ui_text.summary_markdown(_explanation(event=(3, 9), peak=8))
    assert "the peak is outside that window" in ui_text.summary_markdown(_explanation(event=(3, 9), peak=9))
    assert "frames 4 to 9" in ui_text.summary_markdown(_explanation(event=(3, 9)))
    assert "Known evidence" not in ui_text.summary_markdown(_explanation())


def test_the_summary_says_when_the_model_hardly_sees_the_class_and_names_the_contrast(app):
    weak = ui_text.summary_markdown(_explanation(label="moving down", probability=0.004))
    assert "hardly sees here** (0.4 %" in weak and "not evidence that it sees it" in weak
    assert "hardly sees" not in ui_text.summary_markdown(_explanation())
    pair = ui_text.summary_markdown(_explanation(contrast_label="moving up"))
    assert "*rather than* **moving up**" in pair


def test_explain_callback_rather_than(app, clip):
    *_, archive, summary = app.explain_clip(clip, "toy", "moving down", "step", "fast", 0, 0, "", FEW, 0, "blur",
                                            0, False, "auto", False, "moving up")
    saved = json.loads(zipfile.ZipFile(archive).read("summary.json"))
    assert saved["contrast"] == {"index": 2, "label": "moving up"}
    assert saved["label"] == "moving down" and "*rather than* **moving up**" in summary


# ------------------------------------------------------------------------------------------ concurrency
MODEL_EVENTS = {"predict", "explain", "compare", "sanity", "load_example"}   # the api names of the events that run a model


def test_every_model_running_event_shares_one_concurrency_group(app):
    runners = [fn for fn in app.demo.fns.values() if fn.api_name in MODEL_EVENTS]
    assert sorted(fn.api_name for fn in runners) == sorted(MODEL_EVENTS)
    # a cached example's event is Gradio's own; it waits for the model lock inside the model work instead
    buttons = [fn for fn in runners if fn.api_name != "load_example"]
    assert len({fn.concurrency_id for fn in buttons}) == 1
    assert {fn.concurrency_limit for fn in buttons} == {app.CONCURRENCY}
    assert app.demo._queue.default_concurrency_limit == app.CONCURRENCY   # what the example's group gets
    assert app.demo._queue.max_size == app.MAX_QUEUE


def _wrap_model_events(demo, monkeypatch, before, after=lambda token: None):
    """Call ``token = before()`` as each model-running callback of ``demo`` starts (in a worker thread, so it may
    block) and ``after(token)`` once it has ended, for the duration of the test; sync and async callbacks alike."""
    import functools
    import inspect

    import anyio

    def around(fn):
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def inner(*args, **kwargs):
                token = await anyio.to_thread.run_sync(before)
                try:
                    return await fn(*args, **kwargs)
                finally:
                    after(token)
            return inner

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            token = before()
            try:
                return fn(*args, **kwargs)
            finally:
                after(token)
        return inner
    for block_fn in demo.fns.values():
        if block_fn.api_name in MODEL_EVENTS:
            monkeypatch.setattr(block_fn, "fn", around(block_fn.fn))


def _others_wait(queue, n: int, settle: float = 0.5, limit: float = 120, overlap=lambda: False) -> bool:
    """True once ``n`` requests have sat in ``queue`` for ``settle`` seconds on end (a request its concurrency
    group let start would have left the queue within milliseconds); False if that never happens (hang guard)
    or as soon as ``overlap()`` says another request got in anyway."""
    since, end = None, time.monotonic() + limit
    while time.monotonic() < end and not overlap():
        if len(queue) >= n:
            since = since or time.monotonic()
            if time.monotonic() - since >= settle:
                return True
        else:
            since = None
        time.sleep(0.02)
    return False


def test_simultaneous_requests_never_run_the_model_at_once(app, client, clip, monkeypatch):
    """Explain, predict and compare sent together: each callback is held inside until the requests that have
    not started are seen waiting in the queue; entry and exit times show one request at a time."""
    import threading
    from gradio_client import handle_file
    lock, log = threading.Lock(), {"active": 0, "most": 0, "entered": 0, "spans": [], "waited": []}
    expected = 3

    def before():
        with lock:
            log["active"] += 1
            log["entered"] += 1
            log["most"] = max(log["most"], log["active"])
            not_started = expected - log["entered"]
        entered = time.monotonic()
        log["waited"].append(_others_wait(app.demo._queue, not_started, overlap=lambda: log["most"] > 1))
        return entered

    def after(entered):
        with lock:
            log["active"] -= 1
            log["spans"].append((entered, time.monotonic()))
    _wrap_model_events(app.demo, monkeypatch, before, after)
    video = handle_file(clip)
    jobs = [client.submit(video=video, model="toy", target="", method="random", preset="fast", curves=False,
                          api_name="/explain"),
            client.submit(video=video, model="toy", api_name="/predict"),
            client.submit(video=video, model="toy", target="", methods=["random"], api_name="/compare")]
    explained, predicted, compared = [job.result(timeout=600) for job in jobs]
    assert len(explained[0]["confidences"]) == 4 and len(predicted[0]["confidences"]) == 4
    assert Path(compared[0]).exists()
    assert log["most"] == 1
    assert log["entered"] == expected and log["waited"] == [True] * expected   # the others really were waiting
    spans = sorted(log["spans"])
    assert len(spans) == expected
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans


def test_the_request_past_the_queue_limit_gets_its_sentence(app, clip, monkeypatch, tmp_path):
    """A page built with a queue of one: one request runs, one waits, the next is refused in words."""
    import functools
    import threading
    from gradio_client import Client, handle_file
    from gradio_client.utils import QueueError
    monkeypatch.setattr(app, "MAX_QUEUE", 1)
    demo = app.build_demo()
    assert demo._queue.max_size == 1
    inside, release = threading.Event(), threading.Event()
    _wrap_model_events(demo, monkeypatch, lambda: inside.set() or release.wait(300))
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.launch_kwargs())
    try:
        c = Client(url, verbose=False, download_files=str(tmp_path))
        video = handle_file(clip)
        ask = functools.partial(c.submit, video=video, model="toy", api_name="/predict")
        running = ask()
        assert inside.wait(300)
        waiting = ask()
        assert _others_wait(demo._queue, 1, settle=0.2)
        refused = ask()
        with pytest.raises(QueueError, match="Queue is full"):
            refused.result(timeout=300)
        release.set()
        assert all(len(job.result(timeout=300)[0]["confidences"]) == 4 for job in (running, waiting))
    finally:
        release.set()
        demo.close()
