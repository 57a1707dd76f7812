"""Tests of attribution/render.py: heat-map colour, overlay geometry and colour, video output, the comparison
strip. The figures are tested in test_figures.py."""
import inspect
import math

import numpy as np
import pytest

from attribution import render as R
from attribution.errors import InputError
from media import probe_video


def _frames(T=3, H=64, W=64, lo=0, hi=256, seed=0):
    return np.random.default_rng(seed).integers(lo, hi, (T, H, W, 3), dtype=np.uint8)


def _find_left_panel(out_frame, big, x_max=None):
    """(y, x) where big (the nearest-upscaled input) sits unchanged in out_frame, with x + width <= x_max
    (default: in the left third); None if nowhere."""
    ph, pw = big.shape[:2]
    x_max = out_frame.shape[1] // 3 if x_max is None else x_max
    for y in range(out_frame.shape[0] - ph + 1):
        for x in range(x_max - pw + 1):
            if np.array_equal(out_frame[y, x], big[0, 0]) and np.array_equal(out_frame[y:y + ph, x:x + pw], big):
                return y, x
    return None


def _panels(out_frame, big):
    """The three panels of one overlay frame, assuming equal gaps (the left margin is the gap)."""
    y, x = _find_left_panel(out_frame, big)
    ph, pw = big.shape[:2]
    return [out_frame[y:y + ph, x + i * (pw + x):x + i * (pw + x) + pw] for i in range(3)]


def _up(frame, k):
    return np.repeat(np.repeat(frame, k, 0), k, 1)


# -------------------------------------------------------------------------------------------------- heatmap
def test_heatmap_uses_a_fixed_scale():
    s = np.stack([np.zeros((8, 8)), np.full((8, 8), 0.2), np.full((8, 8), 0.9), np.ones((8, 8))])
    h = R.heatmap(s)
    assert h.shape == (4, 8, 8, 3) and h.dtype == np.uint8
    # A per-frame renormalisation would paint the constant frames alike; a fixed scale orders them by value.
    brightness = h.astype(float).mean(axis=(1, 2, 3))
    assert np.all(np.diff(brightness) > 5), brightness
    assert not np.array_equal(h[0], h[3])


def test_heatmap_rejects_unknown_colour_map():
    with pytest.raises(InputError):
        R.heatmap(np.zeros((1, 2, 2)), cmap="no-such-map")


# ---------------------------------------------------------------------------------------------- overlays
def test_overlay_shape_and_left_panel_is_the_upscaled_input():
    frames = _frames(T=3)
    sal = np.random.default_rng(1).random((3, 64, 64))
    out = R.overlay_frames(frames, sal, min_height=256)
    T, H2, W2, C = out.shape
    assert (T, C) == (3, 3) and out.dtype == np.uint8
    assert H2 >= 256 and W2 >= 3 * 256 and H2 % 2 == 0 and W2 % 2 == 0
    k = 4
    pos = [_find_left_panel(out[t], _up(frames[t], k)) for t in range(T)]
    assert pos[0] is not None, "the input panel is not the nearest-upscaled frame"
    assert pos == [pos[0]] * T, "the input panel moves between frames"


def test_overlay_odd_and_small_inputs_give_even_readable_frames():
    frames = _frames(T=2, H=45, W=61)
    out = R.overlay_frames(frames, np.full((2, 45, 61), 0.5), min_height=256, titles=None, legend=False)
    assert out.shape[1] % 2 == 0 and out.shape[2] % 2 == 0
    k = math.ceil(256 / 45)
    assert _find_left_panel(out[0], _up(frames[0], k)) is not None
    assert out.shape[1] >= 45 * k


def test_overlay_zero_saliency_dims_the_preserved_panel_and_full_saliency_keeps_it():
    frames = _frames(T=2, lo=60, hi=256)
    sal = np.stack([np.zeros((64, 64)), np.ones((64, 64))])
    out = R.overlay_frames(frames, sal)
    left0, mid0, right0 = _panels(out[0], _up(frames[0], 4))
    left1, mid1, right1 = _panels(out[1], _up(frames[1], 4))
    assert right0.mean() < 0.5 * left0.mean()
    np.testing.assert_allclose(right1.astype(float), left1.astype(float), atol=1)
    # Fixed scale in the middle panel too: a frame that matters less looks dimmer.
    assert mid0.mean() < mid1.mean() - 20


def test_overlay_peak_lands_where_the_saliency_peaks():
    frames = _frames(T=2, hi=40, seed=2)  # dark, textured
    yy, xx = np.mgrid[0:64, 0:64]
    sal = np.zeros((2, 64, 64))
    sal[1] = np.exp(-((yy - 20) ** 2 + (xx - 44) ** 2) / (2 * 4.0 ** 2))
    out = R.overlay_frames(frames, sal)
    left, mid, _ = _panels(out[1], _up(frames[1], 4))
    diff = np.abs(mid.astype(int) - left.astype(int)).sum(-1)
    y, x = np.unravel_index(np.argmax(diff), diff.shape)
    assert abs(y / 4 - 20) <= 3 and abs(x / 4 - 44) <= 3, (y / 4, x / 4)


def test_overlay_captions_and_importance_bar_change_per_frame():
    frames = np.repeat(_frames(T=1), 2, axis=0)
    same = R.overlay_frames(frames, np.full((2, 64, 64), 0.5))
    assert not np.array_equal(same[0], same[1]), "both frames carry the same caption"
    labelled = R.overlay_frames(frames, np.full((2, 64, 64), 0.5), frame_labels=["t=0.00 s", "event"])
    assert not np.array_equal(labelled[1], same[1])
    # The bar's length is the frame's mean saliency relative to the clip's top frame: 1.0 vs 0.5.
    out = R.overlay_frames(frames, np.stack([np.ones((64, 64)), np.full((64, 64), 0.5)]))
    filled = [int(np.all(f == np.array(R.BAR, np.uint8), axis=-1).sum()) for f in out]
    assert filled[1] > 0 and filled[0] / filled[1] == pytest.approx(2.0, rel=0.1)


def test_overlay_accepts_a_map_on_a_coarser_grid_and_rejects_bad_shapes():
    frames = _frames(T=2)
    out = R.overlay_frames(frames, np.random.default_rng(0).random((2, 16, 16)))
    assert out.shape[0] == 2
    with pytest.raises(InputError):
        R.overlay_frames(frames, np.zeros((3, 64, 64)))
    with pytest.raises(InputError):
        R.overlay_frames(frames, np.zeros((2, 64, 64)), frame_labels=["a"])
    with pytest.raises(InputError):
        R.overlay_frames(frames[0], np.zeros((2, 64, 64)))


def test_write_overlay_makes_a_browser_playable_mp4(tmp_path):
    video = pytest.importorskip("attribution.video")
    T = 6
    frames = _frames(T=T)
    sal = np.random.default_rng(3).random((T, 64, 64))
    path = R.write_overlay(tmp_path / "sub" / "overlay.mp4", frames, sal, fps=4)
    info = probe_video(path)
    expect = R.overlay_frames(frames, sal).shape
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["frames"] == T
    assert (info["height"], info["width"]) == expect[1:3]
    assert info["duration"] == pytest.approx(T / 4, abs=0.3)


def test_compare_strip_has_one_row_per_method():
    frames = _frames(T=8)
    maps = {"STEP": np.zeros((8, 64, 64)), "random": np.random.default_rng(0).random((8, 64, 64))}
    one = R.compare_strip(frames, {"STEP": maps["STEP"]}, frame_indices=[0, 7])
    two = R.compare_strip(frames, maps, frame_indices=[0, 7])
    assert one.dtype == np.uint8 and one.ndim == 3 and one.shape[0] % 2 == 0 and one.shape[1] % 2 == 0
    assert two.shape[0] - one.shape[0] >= 128, "a second method did not add a row"
    assert _find_left_panel(two, _up(frames[0], 2), x_max=two.shape[1]) is not None, "no plain input row"
    no_input = R.compare_strip(frames, maps, [0], show_input=False)
    assert _find_left_panel(no_input, _up(frames[0], 2), x_max=no_input.shape[1]) is None
    default = R.compare_strip(frames, maps)
    assert default.shape[1] > two.shape[1], "the default should show more than two frames"
    with pytest.raises(InputError):
        R.compare_strip(frames, maps, frame_indices=[8])
    with pytest.raises(InputError):
        R.compare_strip(frames, {})


def test_render_never_uses_pyplot():
    # pyplot keeps global figure state, which is not safe for a threaded web server.
    src = inspect.getsource(R)
    assert "import pyplot" not in src and "matplotlib.pyplot" not in src
