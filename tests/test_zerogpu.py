"""The app on ZeroGPU, through a test double of the ``spaces`` package (``tests/zerogpu_double.py``): the model
work runs in another process with pickled arguments and results, and only a ``gr.Error`` keeps its message.

Every bad input must still reach the visitor word for word, a good clip must give every output, and the
windows asked for must be short enough for a visitor's quota.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import pytest

import zerogpu_double
from test_app import FEW, _bad, bad_inputs, clip  # noqa: F401 - the shared clip and bad-input fixtures

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
              pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")]


@pytest.fixture(scope="module")
def zapp(tmp_path_factory):
    """app.py imported as a ZeroGPU Space would run it (SPACES_ZERO_GPU set, ``spaces`` importable): the modules
    that read ``ON_ZEROGPU`` or decorate with ``ui.runtime.gpu`` at import are imported again."""
    import ui.callbacks
    import ui.costs
    import ui.runtime
    reloaded = (ui.runtime, ui.costs, ui.callbacks)
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("zerogpu")
    mp.setenv("SPACES_ZERO_GPU", "true")
    mp.setenv("GRADIO_EXAMPLES_CACHE", str(tmp / "examples_cache"))
    mp.setitem(sys.modules, "spaces", zerogpu_double.module())
    for m in reloaded:
        importlib.reload(m)
    spec = importlib.util.spec_from_file_location("app_on_zerogpu", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mp.setattr(ui.config, "TMP_ROOT", tmp / "requests")
    module.GPU_CAP = ui.config.GPU_CAP
    assert module.ON_ZEROGPU
    yield module
    mp.undo()
    for m in reloaded:
        importlib.reload(m)


@pytest.mark.parametrize("name", ["empty", "corrupt", "audio only", "image renamed to mp4", "huge resolution",
                                  "too long", "one frame", "unknown target", "model needs network"])
def test_every_bad_input_keeps_its_sentence(zapp, bad_inputs, clip, name, no_network):  # noqa: F811
    import gradio as gr
    path, model, target, message = _bad(bad_inputs, name, clip)
    with pytest.raises(gr.Error) as err:
        zapp.explain_clip(path, model, target, "step", "fast", 0, 0, "", FEW, 0, "blur", 0, False)
    assert message in err.value.message, (name, err.value.message)
    assert err.value.message not in ("InputError", "VideoError", "ModelError")


def test_an_error_inside_the_window_keeps_its_sentence(zapp, clip):  # noqa: F811
    """The unknown label is found inside the GPU function (it needs the model's output): the double would turn
    anything but a gr.Error into its bare class name, so this shows the conversion happens inside."""
    import gradio as gr
    before = len(zerogpu_double.CALLS)
    with pytest.raises(gr.Error, match="Unknown target label 'playing the banjo'"):
        zapp.explain_clip(clip, "toy", "playing the banjo", "step", "fast", 0, 0, "", FEW, 0, "blur", 0, False)
    assert zerogpu_double.CALLS[before:] and zerogpu_double.CALLS[-1]["function"] == "model_work"


def test_a_good_clip_gives_every_output_through_the_window(zapp, clip):  # noqa: F811
    before = len(zerogpu_double.CALLS)
    label, overlay, temporal, curves, archive, text = zapp.explain_clip(
        clip, "toy", "", "step", "fast", 0, 0, "", FEW, 0, "blur", 0, True)
    assert Path(overlay).exists() and Path(temporal).exists() and Path(curves).exists()
    with zipfile.ZipFile(archive) as z:
        summary = json.loads(z.read("summary.json"))
    assert summary["settings"]["compile"] is False          # ZeroGPU does not support torch.compile
    assert abs(sum(label.values()) - 1) < 1e-3 and "The model sees" in text
    (call,) = zerogpu_double.CALLS[before:]
    assert call["function"] == "model_work" and call["duration"] <= 60   # the default request's window


def test_compare_and_predict_through_the_window(zapp, clip):  # noqa: F811
    strip, table, archive, note = zapp.compare_clip(clip, "toy", "", ["gradient", "random"], "fast", 0, 0, FEW, 0)
    assert list(table["method"]) == ["Gradient", "Random"] and Path(strip).exists()
    top5, _ = zapp.predict_clip(clip, "toy")
    assert len(top5) == 4
    assert all(c["duration"] <= zapp.GPU_CAP for c in zerogpu_double.CALLS)
