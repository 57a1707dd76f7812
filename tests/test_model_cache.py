"""The model cache: bounded (``VAE_MODEL_CACHE``, default 2), least recently used evicted, moved off its device."""
from __future__ import annotations

import pytest
import torch

import model_zoo
from model_zoo import cached_models, clear_cache, load_model

TINY_X3D = "x3d_xs"   # random weights (pretrained=False) build offline in well under a second


@pytest.fixture(autouse=True)
def empty_cache():
    clear_cache()
    yield
    clear_cache()


def _names():
    return [name for name, _, _ in cached_models()]


def test_default_size_evicts_the_least_recently_used(monkeypatch):
    monkeypatch.delenv("VAE_MODEL_CACHE", raising=False)
    toy = load_model("toy", device="cpu")
    x3d = load_model(TINY_X3D, pretrained=False, device="cpu")
    assert _names() == ["toy", TINY_X3D]
    assert load_model("toy", device="cpu") is toy            # a hit returns the same object ...
    assert _names() == [TINY_X3D, "toy"]                     # ... and makes it the most recent
    load_model("x3d_s", pretrained=False, device="cpu")      # a third model evicts x3d_xs, not the toy
    assert _names() == ["toy", "x3d_s"]
    again = load_model(TINY_X3D, pretrained=False, device="cpu")   # reloaded: a new object
    assert again is not x3d and again.name == TINY_X3D
    assert _names() == ["x3d_s", TINY_X3D]


def test_each_name_gets_its_own_model(monkeypatch):
    monkeypatch.setenv("VAE_MODEL_CACHE", "3")
    a = load_model("toy", device="cpu")
    b = load_model(TINY_X3D, pretrained=False, device="cpu")
    assert (a.name, b.name) == ("toy", TINY_X3D) and a is not b
    assert load_model(TINY_X3D, pretrained=False, device="cpu").name == TINY_X3D
    assert load_model("toy", device="cpu").name == "toy"


def test_size_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("VAE_MODEL_CACHE", "1")
    load_model("toy", device="cpu")
    load_model(TINY_X3D, pretrained=False, device="cpu")
    assert _names() == [TINY_X3D]
    monkeypatch.setenv("VAE_MODEL_CACHE", "many")
    with pytest.raises(model_zoo.ModelError, match="VAE_MODEL_CACHE"):
        load_model("toy", device="cpu")


def test_an_evicted_model_is_moved_off_its_device(monkeypatch):
    """On a GPU the evicted model's weights go back to the CPU and the allocator's cache is emptied; here the
    device is simulated: a model cached under 'meta' is moved to the CPU when it is evicted."""
    monkeypatch.setenv("VAE_MODEL_CACHE", "1")
    model = load_model("toy", device="cpu")
    key = next(iter(model_zoo._CACHE))
    with model_zoo._LOCK:          # re-file the cached model as if it lived on another device
        model_zoo._CACHE[(key[0], key[1], "meta")] = model_zoo._CACHE.pop(key)
    moved = []
    monkeypatch.setattr(type(model), "to", lambda self, *a, **k: moved.append((self is model, a)) or self)
    load_model(TINY_X3D, pretrained=False, device="cpu")
    assert [a for mine, a in moved if mine] == [("cpu",)]
    assert _names() == [TINY_X3D]
    assert next(model.parameters()).device == torch.device("cpu")
