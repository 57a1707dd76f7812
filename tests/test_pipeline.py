"""The pipeline every front end runs (attribution/pipeline.py) and the method registry (attribution/methods/):
every registered method through one call, several targets at once, comparisons of methods and of classes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from attribution import methods, pipeline
from attribution import step as S
from attribution.errors import InputError
from model_zoo import load_model, toy

pytestmark = pytest.mark.usefixtures("one_thread")   # toy-sized tensors: see conftest.py
QUICK = dict(iterations=12, early_stop=0)             # perturbation settings: the loop, not convergence
OPTIONS = {"occlusion": dict(window=(3, 8, 16, 16)), "integrated-gradients": dict(steps=4),
           "smoothgrad": dict(samples=4)}


@pytest.fixture(scope="module")
def model():
    return load_model("toy")


@pytest.fixture(scope="module")
def item():
    return toy.generate(1, seed=3)[0]


def _options(name: str) -> dict:
    return QUICK if methods.get(name).takes_settings else OPTIONS.get(name, {})


@pytest.mark.parametrize("name", methods.names())
def test_every_registered_method_runs_through_the_pipeline(model, item, name):
    """A method added to the registry is run here with no list to edit: one call, one result type, its curves
    measured on the same prepared clip."""
    spec = methods.get(name)
    assert spec.display and spec.short and spec.kind in methods.KINDS
    exp = pipeline.run(model, item.frames, name, target=item.label, curve_steps=8, **_options(name))
    assert exp.method == name and exp.target == item.label
    assert exp.saliency.shape == (16, 64, 64) and exp.saliency.dtype == np.float32
    assert 0 <= exp.saliency.min() and exp.saliency.max() <= 1
    assert exp.curves is not None and exp.curves.steps == 8 and exp.curves.auc_random_deletion is not None
    assert (exp.preset is not None) == spec.takes_settings
    assert exp.evaluations is not None and (exp.evaluations == 0) == spec.model_free


def test_unknown_method_names_the_closest(model, item):
    with pytest.raises(InputError, match="Did you mean 'grad-cam'"):
        pipeline.run(model, item.frames, "gradcam")


def test_several_targets_in_one_batch_equal_separate_runs(model, item):
    """Every target x area is one row of one optimisation: the maps equal those of separate runs with the same
    seed (up to the tie-breaking draws, which depend on the batch), and each target's passes are its own."""
    both = pipeline.run(model, item.frames, "step", target=[0, 3], seed=5, **QUICK)
    assert [e.target for e in both] == [0, 3]
    for e in both:
        alone = pipeline.run(model, item.frames, "step", target=e.target, seed=5, **QUICK)
        assert np.corrcoef(e.saliency.ravel(), alone.saliency.ravel())[0, 1] > 0.99
        assert np.abs(e.saliency - alone.saliency).mean() < 0.01
        # fast (the default) starts from the decision gradient, whose pyramid forwards the targets share
        shared = S.start_passes(S.Settings(**S.PRESETS["fast"])) - S.start_passes(S.Settings(**S.PRESETS["fast"]), 2) / 2
        assert e.evaluations == alone.evaluations - shared and e.label == model.labels[e.target]
    assert not np.allclose(both[0].saliency, both[1].saliency)     # not one map copied to both


def test_comparison_of_methods_saves_its_table_and_maps(model, item, tmp_path):
    cmp = pipeline.compare(model, item.frames, ["gradient", "random"], target=item.label, curve_steps=8)
    rows = cmp.rows()
    assert [r["method"] for r in rows] == ["Gradient", "Random"]   # the random map is a row already
    assert cmp.first.curves.auc_random_insertion is not None and cmp.explanations[1].curves.auc_random_deletion is None
    out = cmp.save(tmp_path / "cmp")
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["rows"] == rows and saved["by"] == "method" and saved["curve_steps"] == 8
    assert {p.name for p in out.iterdir()} >= {"comparison.png", "comparison.csv", "saliency_gradient.npz"}
    # without curves: the maps side by side, the table with empty AUC cells
    bare = pipeline.compare(model, item.frames, ["gradient", "frame-difference"], target=item.label, curve_steps=0)
    assert [r["deletion AUC ↓"] for r in bare.rows()] == [None, None] and bare.random_aucs() == (None, None)
    saved = json.loads((bare.save(tmp_path / "bare") / "comparison.json").read_text())
    assert saved["curve_steps"] == 0 and len(saved["rows"]) == 2


def test_comparison_of_classes_explains_the_top_k(model, item):
    cmp = pipeline.compare_targets(model, item.frames, "grad-cam", 3, curve_steps=8)
    probs = [e.probability for e in cmp.explanations]
    assert probs == sorted(probs, reverse=True) and cmp.explanations[0].label == cmp.first.topk[0][0]
    rows = cmp.rows()
    assert [r["target"] for r in rows[:3]] == [e.label for e in cmp.explanations]
    assert rows[-1]["target"] == "random map (reference)"
    with pytest.raises(InputError, match="between 1 and"):
        pipeline.compare_targets(model, item.frames, "grad-cam", 9)


def test_a_repeated_request_comes_from_the_cache_until_a_setting_changes(model, item, tmp_path, monkeypatch):
    """The app, the CLI and batch share pipeline.run's cache: a repeat returns the stored map and curves without
    running the model; another setting or seed is another entry."""
    from attribution.cache import ResultCache
    cache = ResultCache(tmp_path / "results", max_bytes=100 * 2**20)
    first = pipeline.run(model, item.frames, "step", curve_steps=8, cache=cache, **QUICK)
    assert first.source["cache"] == "stored"

    def boom(*a, **k):
        raise AssertionError("a hit must not run the model")
    monkeypatch.setattr(pipeline, "explain", boom)
    monkeypatch.setattr(pipeline, "deletion_insertion", boom)
    again = pipeline.run(model, item.frames, "step", curve_steps=8, cache=cache, **QUICK)
    assert again.source["cache"] == "hit"
    assert np.array_equal(again.saliency, first.saliency) and again.curves.auc_insertion == first.curves.auc_insertion
    for change in (dict(seed=1), dict(curve_steps=16), dict(iterations=13)):
        with pytest.raises(AssertionError, match="must not run"):
            pipeline.run(model, item.frames, "step", cache=cache, **{**QUICK, "curve_steps": 8, **change})
