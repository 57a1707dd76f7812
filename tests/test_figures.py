"""Tests of attribution/figures.py: the temporal plot (bars, evidence window, areas, thumbnails), the deletion /
insertion curves, writing a figure as PNG."""
import inspect

import numpy as np
import pytest
from PIL import Image

from attribution import figures as F
from attribution.errors import InputError
from media import figure_to_array


def _frames(T=3, H=64, W=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------- temporal plot
def test_temporal_figure_shades_the_event_and_shows_areas_and_thumbnails():
    T = 16
    temporal = np.linspace(0.1, 0.8, T)
    per_area = np.random.default_rng(0).random((3, T))
    fig = F.temporal_figure(temporal, per_area=per_area, area_labels=["5%", "10%", "50%"], event=(4, 9),
                            frames=_frames(T=T, H=32, W=32), times=np.arange(T) / 8, title="toy")
    img = figure_to_array(fig)
    assert img.dtype == np.uint8 and img.shape[1] == 900 and img.shape[0] > 300
    assert img.std() > 10
    spans = [p for ax in fig.axes for p in ax.patches if p.get_gid() == "evidence-window"]
    assert len(spans) == 1
    x0, x1 = spans[0].get_bbox().x0, spans[0].get_bbox().x1
    assert (x0, x1) == pytest.approx((3.5, 8.5)), "the shade must cover frames 4..8"
    bars_ax = spans[0].axes
    heights = [p.get_height() for p in bars_ax.patches if p.get_gid() != "evidence-window"]
    np.testing.assert_allclose(heights, temporal)
    assert sum(len(ax.lines) for ax in fig.axes) == 3
    assert sum(len(ax.images) for ax in fig.axes) == T
    assert any(t.get_text() == "evidence window" for t in bars_ax.texts)


def test_temporal_figure_subsamples_thumbnails_and_works_bare():
    fig = F.temporal_figure(np.random.default_rng(0).random(64), frames=_frames(T=64, H=16, W=16))
    assert 0 < sum(len(ax.images) for ax in fig.axes) <= F.MAX_THUMBNAILS
    assert figure_to_array(F.temporal_figure(np.zeros(5))).std() > 0
    with pytest.raises(InputError):
        F.temporal_figure(np.ones(8), event=(5, 12))


def test_curves_figure_with_and_without_random_baselines():
    fr = np.linspace(0, 1, 33)
    dele, ins = np.exp(-5 * fr), 1 - np.exp(-5 * fr)
    bare = F.curves_figure(fr, dele, ins, auc_deletion=0.2, auc_insertion=0.8)
    full = F.curves_figure(fr, dele, ins, auc_deletion=0.2, auc_insertion=0.8, random_deletion=1 - fr * 0.5,
                           random_insertion=fr * 0.5, auc_random_deletion=0.75, auc_random_insertion=0.25,
                           title="toy")
    for fig, lines in ((bare, 1), (full, 2)):
        assert figure_to_array(fig).std() > 10
        axes = [ax for ax in fig.axes if ax.lines]
        assert len(axes) == 2 and all(len(ax.lines) == lines for ax in axes)
        assert all(ax.get_ylim() == pytest.approx((0, 1.02)) for ax in axes)
        assert any("lower is better" in t.get_text() for t in fig.texts)
    legend = [t.get_text() for ax in full.axes for t in ax.get_legend().get_texts()]
    assert "explanation (AUC 0.200)" in legend and "random map (AUC 0.250)" in legend
    with pytest.raises(InputError):
        F.curves_figure(fr, dele[:-1], ins, auc_deletion=0.2, auc_insertion=0.8)


def test_save_figure_writes_a_png(tmp_path):
    fig = F.curves_figure(np.linspace(0, 1, 5), np.ones(5), np.ones(5), auc_deletion=1, auc_insertion=1)
    path = F.save_figure(fig, tmp_path / "a" / "curves.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (1000, 440)
    assert F.save_figure(fig, tmp_path / "b.png", dpi=50).endswith("b.png")
    with Image.open(tmp_path / "b.png") as im:
        assert im.size == (500, 220)


def test_figures_never_use_pyplot():
    # pyplot keeps global figure state, which is not safe for a threaded web server.
    src = inspect.getsource(F)
    assert "import pyplot" not in src and "matplotlib.pyplot" not in src
