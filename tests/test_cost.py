"""The cost model (attribution/cost.py): cache and keys, estimates, limits and the refusal sentence."""
import json
import math
import os

import pytest
import torch

from attribution import cost
from attribution.explain import explain

pytestmark = pytest.mark.usefixtures("one_thread")   # toy-sized tensors: see conftest.py


class Tiny(torch.nn.Module):
    """A 4-class video classifier on 8 x 32 x 32 clips, with what explain() and the cost model read."""

    def __init__(self, name="tiny"):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 4)
        self.name, self.num_frames, self.crop_size, self.input_size = name, 8, 32, (32, 32)
        self.labels = ["a", "b", "c", "d"]
        self.areas = (0.05, 0.1, 0.2)
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.ones(1, 3, 1, 1, 1), persistent=False)

    @property
    def device(self):
        return self.mean.device

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3, 4)))


FAKE = {"forward": {"1": 0.02, "4": 0.05}, "backward": {"1": 0.05, "4": 0.11}, "forward_fit": [0.01, 0.01],
        "backward_fit": [0.03, 0.02], "shape": [8, 32, 32], "precision": "fp32", "device": "x", "seconds": 0.1}
ENGINE = {"per_pixel": 1e-7, "compile": 5.0}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "cost.json"
    monkeypatch.setenv(cost.CACHE_ENV, str(path))
    cost.clear_memory()
    yield path
    cost.clear_memory()


@pytest.fixture
def counted(monkeypatch):
    calls = []

    def fake(model, device=None, **kw):
        calls.append(model.name)
        return json.loads(json.dumps(FAKE))
    monkeypatch.setattr(cost, "measure_passes", fake)
    return calls


def costs(model=None):
    return cost.PassCost.from_measurement("k", "tiny", FAKE)


# ----------------------------------------------------------------------------------------------- cache
def test_cache_round_trip_and_keys(cache, counted):
    model = Tiny()
    assert cost.pass_costs(model, measure=False) is None
    first = cost.pass_costs(model)
    assert counted == ["tiny"] and cache.exists()
    assert first.backward(4) == pytest.approx(0.03 + 4 * 0.02)
    cost.clear_memory()                                   # a new process: read from the file, not measured
    again = cost.pass_costs(model)
    assert counted == ["tiny"] and again == first
    key = cost.pass_key(model)
    assert "tiny" in key and "8x32x32" in key and torch.__version__ in key and "threads" in key
    torch.set_num_threads(2)                              # another thread count is another device
    try:
        assert cost.pass_key(model) != key
        assert cost.pass_costs(model, measure=False) is None
    finally:
        torch.set_num_threads(1)
    assert cost.pass_costs(Tiny("other"), measure=False) is None   # another model
    entries = json.loads(cache.read_text())["entries"]
    assert list(entries) == [key]


def test_cache_file_is_replaced_atomically(cache, counted, monkeypatch):
    cost.pass_costs(Tiny("one"))
    cost.pass_costs(Tiny("two"))                          # merged, not overwritten
    before = cache.read_text()
    assert len(json.loads(before)["entries"]) == 2

    def broken(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(cost.json, "dump", broken)
    cost.pass_costs(Tiny("three"))                        # the write fails: figures kept in memory only
    assert cache.read_text() == before
    assert sorted(os.listdir(cache.parent)) == ["cost.json"]   # no temporary file left behind
    assert cost.pass_costs(Tiny("three"), measure=False) is not None


def test_unreadable_cache_is_ignored(cache, counted):
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert cost.pass_costs(Tiny(), measure=False) is None
    cost.pass_costs(Tiny())
    assert json.loads(cache.read_text())["version"] == cost.CACHE_VERSION


def test_measure_passes_on_a_real_model():
    m = cost.measure_passes(Tiny(), batches=(1, 2), repeats=1)
    assert m["shape"] == [8, 32, 32] and m["precision"] == "fp32"
    assert set(m["forward"]) == {"1", "2"} and all(v > 0 for v in m["backward"].values())
    fixed, per = m["backward_fit"]
    assert fixed >= 0 and per > 0


def test_the_engine_is_timed_with_every_part_an_iteration_pays(monkeypatch):
    """measure_engine times iterations with L_K on: its few iterations would otherwise all fall inside the
    preset's warm-up (paper: 100) and leave out a loss that 1 100 of paper's 1 200 iterations pay."""
    from attribution import step
    calls = []
    core = step.core_loss
    monkeypatch.setattr(step, "core_loss", lambda *a, **k: calls.append(1) or core(*a, **k))
    monkeypatch.setattr(step, "will_compile", lambda settings: False)   # no compile to wait for here
    timed = cost.measure_engine("paper", iterations=2)
    assert len(calls) == 3 and timed["iteration"] > 0 and timed["preset"] == "paper"


def test_the_app_times_its_model_and_default_preset_in_the_background(cache, counted, monkeypatch):
    """What the server starts with (ui/costs.py): the model's passes and the default preset's engine figures,
    timed in a daemon thread under the model lock, so that the first page already shows an estimate."""
    import threading

    from ui import config
    from ui import costs as ui_costs
    monkeypatch.setattr(cost, "measure_engine", lambda preset, device=None: dict(ENGINE, preset=preset))
    started = []

    class Recorded(threading.Thread):
        def start(self):
            started.append(self)
            super().start()
    monkeypatch.setattr(ui_costs.threading, "Thread", Recorded)
    ui_costs.measure_in_background(Tiny("a"))
    assert not started                               # not from an import (tests, tools): only a running server
    monkeypatch.setattr(ui_costs, "TIME_IN_BACKGROUND", True)
    ui_costs.measure_in_background(Tiny("a"))
    started[0].join(30)
    assert not started[0].is_alive() and started[0].daemon and counted == ["a"]
    assert cost.engine_costs(config.DEFAULT_PRESET, measure=False)["preset"] == config.DEFAULT_PRESET


# --------------------------------------------------------------------------------------------- estimates
def est(method="step", preset="fast", **kw):
    kw.setdefault("engine", ENGINE)
    kw.setdefault("compiled", True)
    return cost.estimate(Tiny(), method, preset, costs=costs(), **kw)


def test_estimates_scale():
    fast, paper = est(curves=False), est(preset="paper", curves=False)
    assert paper.seconds > 5 * fast.seconds
    assert paper.passes["iterations"] == 1200 and fast.passes["iterations"] == round(math.sqrt(100 * 200))
    assert fast.passes["areas"] == 3                                        # the model's areas
    assert est(curves=False, areas=(0.1, 0.2, 0.3, 0.4, 0.5)).seconds > fast.seconds
    assert est(curves=False, iterations=400).seconds > fast.seconds
    assert est(preset="paper", curves=False, iterations=100).passes["iterations"] == 100
    with_curves = est()
    assert with_curves.seconds > fast.seconds and with_curves.breakdown["curves"] > 0
    assert est(random_baseline=False).breakdown["curves"] < with_curves.breakdown["curves"]
    both = est(compare=["step", "occlusion"])
    assert both.seconds == pytest.approx(est().seconds + est("occlusion").seconds)
    assert est(compiled=False).seconds == pytest.approx(with_curves.seconds + ENGINE["compile"])
    assert est("random", curves=False).seconds == pytest.approx(costs().forward(1))   # the prediction only
    assert est("integrated-gradients", curves=False).passes["backward"] == 25
    assert est("gradient", curves=False).seconds < est("smoothgrad", curves=False).seconds


def test_an_estimate_told_not_to_measure_never_times_the_engine(cache, monkeypatch):
    """The app's live time line and its ZeroGPU window sizer ask with measure=False: an engine not timed yet on
    this device is then estimated from the documented fallback, not timed (a compile of 10-15 s) on the spot."""
    def refuse(*a, **k):
        raise AssertionError("measure_engine ran")
    monkeypatch.setattr(cost, "measure_engine", refuse)
    for preset in ("fast", "paper"):
        guess = cost.estimate(Tiny(), "step", preset, costs=costs(), compiled=True, curves=False, measure=False)
        per_pixel = {"per_pixel": cost.FALLBACK_PER_PIXEL[preset], "compile": 0.0}
        assert guess.seconds == pytest.approx(est(preset=preset, curves=False, engine=per_pixel).seconds)
    with pytest.raises(AssertionError, match="measure_engine ran"):   # the default still times it
        cost.estimate(Tiny(), "step", "fast", costs=costs(), compiled=True, curves=False)


def test_pass_counts_follow_the_methods():
    # occlusion: Captum's forward of the clip plus one per window (4 x 8 x 8 at 8 frames), as the method reports
    assert sum(c for c, _, _ in cost.comparison_passes("occlusion", (8, 32, 32))) == 1 + 4 * 8 * 8
    # curves: clip + substrate, then 127 deletion and 127 insertion points, twice with the random map
    assert sum(c for c, _, _ in cost.curve_passes((8, 32, 32), 128)) == 2 + 2 * 2 * 127
    assert sum(c for c, _, _ in cost.curve_passes((8, 32, 32), 128, random_baseline=False)) == 2 + 2 * 127


def test_words():
    e = est()
    e.seconds = 40
    assert e.words() == "about 40 s on this CPU"
    e.seconds, e.device_kind = 185, "gpu"
    assert e.words() == "about 3 min on this GPU"
    assert cost.format_seconds(2 * 3600 + 60 * 20) == "2 h 20 min"


# ------------------------------------------------------------------------------------------ limits, refusal
def test_refusal_above_the_limit_only():
    e = est(preset="paper")
    assert cost.refusal(e, e.seconds + 1, "tiny", "step", "paper") is None
    msg = cost.refusal(e, e.seconds / 4, "tiny", "step", "paper")
    assert msg.startswith("This request would take about ") and msg.endswith(".")
    assert msg.count(".") == 1 and "\n" not in msg                  # one sentence
    for choice in ("interactive preset", "fewer iterations", "x3d_xs", "GPU"):
        assert choice in msg
    fast = cost.refusal(est(), 0.1, "x3d_xs", "step", "fast")
    assert "interactive preset" in fast and "toy" in fast and "x3d_xs" not in fast.split("limit")[1]
    cheapest = cost.refusal(est(preset="interactive"), 0.1, "x3d_xs", "step", "interactive")
    assert "preset" not in cheapest                                 # nothing cheaper to suggest
    occ = cost.refusal(est("occlusion"), 0.01, "tiny", "occlusion", None)
    assert "iterations" not in occ and "grad-cam" in occ


def test_limit_defaults_and_override(monkeypatch):
    monkeypatch.delenv(cost.LIMIT_ENV, raising=False)
    assert cost.default_limit("zerogpu") < cost.default_limit("cpu")
    assert cost.default_limit("gpu") > 0
    monkeypatch.setenv(cost.LIMIT_ENV, "42")
    assert cost.default_limit("cpu") == cost.default_limit("gpu") == 42
    monkeypatch.setenv(cost.LIMIT_ENV, "0")
    assert cost.default_limit("cpu") == math.inf
    monkeypatch.setenv(cost.LIMIT_ENV, "soon")
    with pytest.raises(ValueError, match=cost.LIMIT_ENV):
        cost.default_limit("cpu")


def test_device_kind(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert cost.device_kind("cpu") == "cpu" and cost.device_kind(torch.device("cuda")) == "gpu"
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    assert cost.device_kind("cuda") == "zerogpu"


# -------------------------------------------------------------------------------------------- vs. actual
class Heavier(Tiny):
    """Tiny with enough convolution work (two 24-channel 3-D convolutions) that its passes dominate a request."""

    def __init__(self):
        super().__init__("heavier")
        self.conv = torch.nn.Sequential(torch.nn.Conv3d(3, 24, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv3d(24, 24, 3, padding=1))
        self.head = torch.nn.Linear(24, 4)


def test_estimate_is_in_the_range_of_a_measured_explain(cache):
    """Integrated gradients (10 steps, forward+backward) on a small model: the estimate from its measured passes
    is within a generous factor of the measured time (ratios only; the benchmark reports the real figures)."""
    import time
    model = Heavier()
    clip = torch.rand(1, 3, 8, 32, 32)
    explain(model, clip, method="gradient")               # imports Captum, warms the kernels
    predicted = cost.estimate(model, "integrated-gradients", curves=False, options={"steps": 10}).seconds
    actual = []
    for _ in range(2):
        t0 = time.perf_counter()
        explain(model, clip, method="integrated-gradients", steps=10)
        actual.append(time.perf_counter() - t0)
    ratio = predicted / min(actual)
    print(f"integrated-gradients predicted ÷ actual = {ratio:.2f}")
    assert 0.2 < ratio < 5, (predicted, actual)


def test_the_interactive_preset_is_estimated_at_its_99_passes():
    """interactive: the start's 8 forwards (the pyramid's levels) and 4 backward passes, then at most 3 of a
    model's areas for 29 iterations: 99 passes, whatever the number of areas asked (what
    Explanation.evaluations reports), the start's forwards costed as forwards."""
    for areas in ((0.02, 0.05, 0.1), (0.01, 0.02, 0.05, 0.1)):
        e = est(preset="interactive", areas=areas, curves=False)
        assert e.passes["areas"] == 3 and e.passes["iterations"] == 29
        assert e.passes["backward"] == 29 * 3 + 4 and e.passes["forward"] == 1 + 8
        assert e.passes["backward"] + e.passes["forward"] - 1 == 99
