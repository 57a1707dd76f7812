"""The result cache (attribution/cache.py): identical results on a hit, a miss whenever the request or the weights
differ, size-bounded LRU eviction, atomic writes, corrupt entries, concurrent writers."""
from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import attribution
import attribution.metrics
from attribution import cache as cache_mod
from attribution.cache import ResultCache, cached_explain
from attribution.cli import main as cli_main
from model_zoo import load_model, toy

EXAMPLE = Path(__file__).parents[1] / "examples" / "toy_moving_up.mp4"
STEP = dict(method="step", iterations=3, areas=(0.02,), seed=0)   # a few iterations: the cache, not the map


@pytest.fixture(scope="module")
def model():
    return load_model("toy", device="cpu")


@pytest.fixture(scope="module")
def frames():
    return toy.generate(1, seed=3)[0].frames


@pytest.fixture
def cache(tmp_path):
    return ResultCache(tmp_path / "results", max_bytes=200 * 2 ** 20)


def _same(a, b, path=""):
    """Deep equality: arrays by dtype, shape and values; everything else by type and value."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, path
        assert np.array_equal(a, b, equal_nan=True), path
    elif isinstance(a, dict):
        assert type(b) is dict and list(a) == list(b), path
        for k in a:
            _same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} != {b!r}"


def _strip(exp):
    """The result without what the cache adds (its flag and the lookup time)."""
    return dataclasses.replace(exp, source={k: v for k, v in exp.source.items() if k not in cache_mod.CACHE_FIELDS},
                               timings={k: v for k, v in exp.timings.items() if k != "cache_lookup"})


def test_a_repeat_is_a_hit_with_identical_outputs_and_no_computation(model, frames, cache, monkeypatch, one_thread):
    first = cached_explain(cache, model, frames, curves={"steps": 4}, **STEP)
    assert first.source["cache"] == "stored" and first.curves is not None and first.masks is not None
    assert isinstance(first.settings["areas"], tuple)

    def boom(*a, **k):
        raise AssertionError("a hit must not run explain")
    monkeypatch.setattr(attribution, "explain", boom)
    monkeypatch.setattr(attribution.metrics, "deletion_insertion", boom)
    again = cached_explain(cache, model, frames, curves={"steps": 4}, **STEP)
    assert again.source["cache"] == "hit" and again.source["cache_key"] == first.source["cache_key"]
    _same(_strip(again), _strip(first))
    assert again.curves.auc_deletion == first.curves.auc_deletion
    assert cache.info()["hits"] == 1 and cache.info()["entries"] == 1


def test_the_stored_result_equals_a_fresh_run(model, frames, cache, one_thread):
    fresh = attribution.explain(model, frames, **STEP)
    cached_explain(cache, model, frames, **STEP)
    hit = cached_explain(cache, model, frames, **STEP)
    assert hit.source["cache"] == "hit"
    fresh.timings = hit.timings = {}
    _same(_strip(hit), fresh)


@pytest.mark.parametrize("change", [
    dict(iterations=4), dict(areas=(0.04,)), dict(areas=(0.02, 0.04)), dict(seed=1), dict(target=1),
    dict(method="3d-ep"), dict(method="gradient"), dict(preset="paper"), dict(lr=0.2), dict(perturbation="fade"),
    dict(curves={"steps": 8}), dict(precision="bf16"), dict(contrast=1), dict(target=[0, 1])])
def test_any_change_of_the_request_is_another_key(model, frames, change):
    base = dict(STEP, curves={"steps": 4})
    assert cache_mod.request_key(model, frames, **base) == cache_mod.request_key(model, frames, **dict(base))
    assert cache_mod.request_key(model, frames, **base) != cache_mod.request_key(model, frames, **dict(base, **change))


def test_equivalent_requests_share_a_key_and_other_clips_do_not(model, frames):
    key = cache_mod.request_key
    assert key(model, frames, target=3) == key(model, frames, target="moving down") == key(model, frames, target="3")
    assert key(model, frames, method="step", areas=[0.02]) == key(model, frames, method="step", areas=(0.02,))
    fast = attribution.PRESETS["fast"]["iterations"]          # the settings as resolved, not as spelled
    assert key(model, frames, method="step") == key(model, frames, method="step", iterations=fast)
    assert key(model, frames, method="step", areas=list(model.areas)) == key(model, frames, method="step")
    other = frames.copy()
    other[5, 10, 10, 0] ^= 1                                # one value of one pixel
    assert key(model, other) != key(model, frames)
    assert key(model, frames[:, :, ::-1].copy()) != key(model, frames)


def test_trim_and_frame_indices_are_part_of_the_key(model):
    from attribution.video import load_clip
    whole, late = load_clip(EXAMPLE, model), load_clip(EXAMPLE, model, start=0.5)
    assert cache_mod.request_key(model, whole) != cache_mod.request_key(model, late)
    moved = dataclasses.replace(whole, indices=np.asarray(whole.indices) + 1)   # same pixels, other frames
    assert cache_mod.request_key(model, moved) != cache_mod.request_key(model, whole)


def test_several_targets_are_one_entry_of_several_explanations(model, frames, cache, one_thread):
    first = cached_explain(cache, model, frames, method="gradient", target=[0, 3])
    again = cached_explain(cache, model, frames, method="gradient", target=[0, 3])
    assert [e.target for e in again] == [0, 3] and all(e.source["cache"] == "hit" for e in again)
    for a, b in zip(again, first):
        _same(_strip(a), _strip(b))
    key = cache_mod.request_key
    assert key(model, frames, target=[0, 3]) != key(model, frames, target=[3, 0]) != key(model, frames, target=0)


def test_a_prepared_clip_is_keyed_by_its_pixels_and_frames_not_its_file_name(model, cache, tmp_path):
    from attribution.explain import prepare_clip
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    shutil.copy(EXAMPLE, a)
    shutil.copy(EXAMPLE, b)
    pa, pb = prepare_clip(model, a), prepare_clip(model, b)
    assert pa.source["path"] != pb.source["path"]
    key = cache_mod.request_key(model, pa, method="gradient")
    assert key == cache_mod.request_key(model, pb, method="gradient")
    assert key != cache_mod.request_key(model, pa.clip, method="gradient")   # the source is part of it
    calls = []
    compute = lambda: calls.append(1) or attribution.explain(model, pa, method="gradient")   # noqa: E731
    assert cache.get_or_compute(key, compute).source["cache"] == "stored"
    assert cache.get_or_compute(key, compute).source["cache"] == "hit" and calls == [1]


def test_the_same_upload_under_another_name_is_a_hit_reporting_its_own_path(model, cache, tmp_path, one_thread):
    a, b = tmp_path / "upload-1.mp4", tmp_path / "upload-2.mp4"
    shutil.copy(EXAMPLE, a)
    shutil.copy(EXAMPLE, b)
    first = cached_explain(cache, model, a, method="gradient")
    second = cached_explain(cache, model, b, method="gradient")
    assert first.source["cache"] == "stored" and second.source["cache"] == "hit"
    assert first.source["path"] == str(a) and second.source["path"] == str(b)
    assert second.source["indices"] == first.source["indices"]


def test_other_weights_are_another_key(model, frames):
    key = cache_mod.request_key(model, frames, method="gradient")
    twin = copy.deepcopy(model)
    assert cache_mod.request_key(twin, frames, method="gradient") == key     # the same weights: the same model
    nudged = copy.deepcopy(model)
    with torch.no_grad():
        nudged.module.head.bias[0] += 1e-4                   # one parameter of a copy
    assert cache_mod.request_key(nudged, frames, method="gradient") != key
    buffers = copy.deepcopy(model)
    buffers.module.features[0][1].running_var[0] += 1e-3     # BatchNorm statistics are weights too
    assert cache_mod.request_key(buffers, frames, method="gradient") != key
    renamed = copy.deepcopy(model)
    renamed.std = renamed.std * 1.01                         # normalisation (a non-persistent buffer)
    assert cache_mod.request_key(renamed, frames, method="gradient") != key


def test_an_in_place_change_of_the_same_model_object_is_seen(model, frames):
    m = copy.deepcopy(model)
    before = cache_mod.request_key(m, frames, method="gradient")
    with torch.no_grad():
        m.module.features[2][0].weight.mul_(1.001)           # the version counter moves: hashed again
    after = cache_mod.request_key(m, frames, method="gradient")
    assert after != before
    m.module.head.weight.data[0, 0] += 1.0                   # through .data: documented, forget_model() needed
    cache_mod.forget_model(m)
    assert cache_mod.request_key(m, frames, method="gradient") not in (before, after)


def test_a_model_built_under_inference_mode_is_fingerprinted(model, frames):
    with torch.inference_mode():
        m = copy.deepcopy(model)                              # tensors without a version counter
    assert cache_mod.model_fingerprint(m) == cache_mod.model_fingerprint(model)


def test_eviction_by_size_keeps_the_most_recently_used(model, frames, tmp_path, one_thread):
    exp = attribution.explain(model, frames, method="gradient")
    size = len(cache_mod.dumps(exp, "0" * 64))
    c = ResultCache(tmp_path / "lru", max_bytes=int(2.5 * size))
    k1, k2, k3 = ("1" * 64, "2" * 64, "3" * 64)
    c.put(k1, exp)
    c.put(k2, exp)
    assert c.get(k1) is not None                             # k1 is now the most recently used
    c.put(k3, exp)
    assert c.get(k2) is None and c.get(k1) is not None and c.get(k3) is not None
    assert c.info()["entries"] == 2 and c.info()["megabytes"] * 2 ** 20 <= 2.5 * size + 1e3
    assert ResultCache(tmp_path / "tiny", max_bytes=size // 2).put(k1, exp) is None   # larger than the bound


def test_a_writer_that_died_mid_write_leaves_nothing_that_is_read(model, frames, cache, monkeypatch, one_thread):
    exp = attribution.explain(model, frames, method="gradient")
    key = "a" * 64
    data = cache_mod.dumps(exp, key)
    cache.directory.mkdir(parents=True)
    partial = cache.directory / f"{cache_mod.TMP_PREFIX}{key[:16]}-dead.part"   # a killed writer's temp file
    partial.write_bytes(data[: len(data) // 2])
    assert cache.get(key) is None and cache.info()["entries"] == 0

    def crash(src, dst):
        raise OSError("disk went away")
    monkeypatch.setattr(cache_mod.os, "replace", crash)      # the write fails before the rename
    assert cache.put(key, exp) is None and cache.get(key) is None
    assert sorted(p.name for p in cache.directory.iterdir()) == [partial.name]   # its own temp file removed
    monkeypatch.undo()
    os.utime(partial, (1, 1))                                 # stale: removed on the next eviction pass
    assert cache.put(key, exp) is not None and cache.get(key) is not None
    assert not partial.exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "other-key", "empty", "not-npz"])
def test_a_corrupt_entry_is_a_miss_and_is_removed(model, frames, cache, damage, one_thread):
    exp = attribution.explain(model, frames, method="gradient")
    key = "b" * 64
    path = cache.put(key, exp)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) - 100])
    elif damage == "flip":
        mid = len(data) // 3
        path.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:])
    elif damage == "other-key":
        path.write_bytes(cache_mod.dumps(exp, "c" * 64))     # a whole entry, filed under the wrong name
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_text("not a result")
    assert cache.get(key) is None
    assert not path.exists()


def test_an_entry_cannot_make_the_loader_build_other_objects(model, frames):
    exp = attribution.explain(model, frames, method="gradient")
    data = cache_mod.dumps(exp, "d" * 64)
    with np.load(io.BytesIO(data)) as z:
        arrays = {n: z[n] for n in z.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta["value"]["__object__"] = "Popen"
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(KeyError):
        cache_mod.loads(buf.getvalue(), "d" * 64)


def test_concurrent_writers_of_one_key_never_give_a_half_read(model, frames, cache, one_thread):
    a = attribution.explain(model, frames, method="gradient", seed=0)
    b = attribution.explain(model, frames, method="random", seed=1)   # another whole result under the same key
    key = "e" * 64
    cache.put(key, a)
    stop = threading.Event()
    errors: list = []

    def writer(exp):
        try:
            while not stop.is_set():
                cache.put(key, exp)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    seen = []
    threads = [threading.Thread(target=writer, args=(e,)) for e in (a, b, a)]
    for t in threads:
        t.start()
    try:
        for _ in range(60):
            got = cache.get(key)
            assert got is not None, "a reader met a missing or partial entry"
            seen.append(got.method)
            assert np.array_equal(got.saliency, a.saliency if got.method == "gradient" else b.saliency)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors and cache.misses == 0
    assert [p.name for p in cache.directory.iterdir()] == [f"{key}.npz"]   # no temp file left behind


def test_clear_info_the_command_and_the_switch_off(model, frames, tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv(cache_mod.DIR_ENV, str(tmp_path / "env"))
    monkeypatch.setenv(cache_mod.SIZE_ENV, "1")
    c = ResultCache()
    assert c.directory == tmp_path / "env" and c.max_bytes == 2 ** 20
    exp = attribution.explain(model, frames, method="gradient")
    c.put("f" * 64, exp)
    assert cli_main(["cache", "info"]) == 0 and '"entries": 1' in capsys.readouterr().out
    assert cli_main(["cache", "clear"]) == 0 and '"removed": 1' in capsys.readouterr().out
    assert c.info()["entries"] == 0
    monkeypatch.setenv(cache_mod.SIZE_ENV, "0")
    off = ResultCache()
    assert not off.enabled and off.put("f" * 64, exp) is None and off.get("f" * 64) is None
    assert cached_explain(off, model, frames, method="gradient").source.get("cache") is None


def test_a_perturbation_key_holds_the_settings_explain_resolves():
    """The key of a STEP request holds the settings the run will use (the preset, the model's areas, the
    method's defaults), so a change of any of them is a new entry; a comparison method's keys its options."""
    from attribution.cache import resolved_settings
    from attribution.step import PRESETS
    from model_zoo import load_model
    model = load_model("toy")
    key = resolved_settings(model, "step", "interactive", {"iterations": None})["resolved"]
    assert tuple(key["areas"]) == tuple(model.areas) and key["iterations"] == PRESETS["interactive"]["iterations"]
    assert resolved_settings(model, "step", "fast", {})["resolved"] != key
    assert resolved_settings(model, "2d-ep", "interactive", {})["resolved"] != key   # 2D-EP's own defaults
    assert resolved_settings(model, "gradient", None, {"output": "logit"}) == {"given": {"output": "logit"}}
