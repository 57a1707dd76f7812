"""The ground-truth task at real input sizes and its registry entries (model_zoo/groundtruth*.py)."""
import math

import numpy as np
import pytest
import torch

from model_zoo import groundtruth as gt, list_models, load_model, toy, wrap
from model_zoo.groundtruth_models import ENTRIES
from attribution import step as S

GEOMETRIES = sorted(set(gt.GEOMETRY.values()))


@pytest.fixture(scope="module", params=GEOMETRIES, ids=[f"{f}x{s}" for f, s in GEOMETRIES])
def clips(request):
    frames, size = request.param
    return gt.generate(24, seed=11, frames=frames, size=size)


def test_generator_is_seeded_and_well_formed(clips):
    frames, size = clips[0].frames.shape[:2]
    again = gt.generate(2, seed=11, frames=frames, size=size)
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(clips[:2], again))
    assert not np.array_equal(gt.generate(1, seed=12, frames=frames, size=size)[0].frames, clips[0].frames)
    for c in clips:
        assert c.frames.shape == (frames, size, size, 3) and c.frames.dtype == np.uint8
        s, e = c.event
        assert 0 <= s < e <= frames and gt.EVENT[0] * frames <= e - s < max(gt.EVENT[1] * frames, 2)
        assert all((b is not None) == (s <= t < e) for t, b in enumerate(c.boxes))
        assert all((d is not None) == (b is not None) for d, b in zip(c.discs, c.boxes))
        # every frame of the event shows at least one look-alike distractor beside the evidence
        assert all(len(c.distractor_boxes[t]) >= 1 for t in range(s, e))
    assert {c.label for c in clips} == set(range(len(gt.LABELS)))


def test_evidence_has_realistic_proportions(clips):
    size = clips[0].frames.shape[1]
    for c in clips:
        for d in filter(None, c.discs):
            assert 0.03 <= math.pi * d[2] ** 2 / size ** 2 <= 0.20
    empirical = np.mean([sum((b[2] - b[0]) * (b[3] - b[1]) for b in c.boxes if b) / (c.frames.shape[0] * size ** 2)
                         for c in clips])
    assert empirical == pytest.approx(gt.evidence_fraction(*clips[0].frames.shape[:2]), rel=0.2)


def test_no_disc_hides_the_evidence(clips):
    size = clips[0].frames.shape[1]
    apart = []
    for c in clips:
        for d, others in zip(c.discs, c.distractor_discs):
            if d is not None:
                apart.extend(math.hypot(d[0] - o[0], d[1] - o[1]) - d[2] - o[2] >= gt.GAP * size for o in others)
    assert len(apart) > 20 and np.mean(apart) >= 0.9


def _orientation(gray, mask):
    """Dominant gradient direction (rad, mod pi) and its coherence in [0,1] (structure tensor over mask)."""
    gy, gx = np.gradient(gray)
    jxx, jyy, jxy = (gx * gx)[mask].sum(), (gy * gy)[mask].sum(), (gx * gy)[mask].sum()
    angle = 0.5 * math.atan2(2 * jxy, jxx - jyy) % math.pi
    coherence = math.hypot(jxx - jyy, 2 * jxy) / (jxx + jyy)
    return angle, coherence


def _angle_error(angle, ref):
    """Distance (rad) between two stripe directions, mod pi."""
    return abs((angle - ref + math.pi / 2) % math.pi - math.pi / 2)


def test_stripes_carry_the_label_and_distractors_an_orientation_no_class_has(clips):
    """The evidence's stripes run at its class's angle; every whole distractor's stripes are as coherent (any
    part of them is a grating too, so a mask cannot carve a class's stripes out of one) and 22.5 degrees off
    every class's angle."""
    size = clips[0].frames.shape[1]
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    checked = 0
    for c in clips:
        t = c.event[0]
        gray = c.frames[t].astype(float).mean(-1)
        cx, cy, r = c.discs[t]
        inner = (xx - cx) ** 2 + (yy - cy) ** 2 < (0.7 * r) ** 2
        angle, coherence = _orientation(gray, inner)
        assert coherence > 0.7 and _angle_error(angle, gt.ANGLES[c.label]) < math.radians(10), (c.label, angle)
        boxes = c.distractor_boxes[t]
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            dx, dy, dr = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2, (x1 - x0 - 1) / 2
            others = [(cx, cy, r)] + [((b[0] + b[2] - 1) / 2, (b[1] + b[3] - 1) / 2, (b[2] - b[0]) / 2)
                                      for j, b in enumerate(boxes) if j != i]
            if all(math.hypot(dx - ox, dy - oy) > dr + orad + 2 for ox, oy, orad in others) and \
                    0 < x0 and x1 < size and 0 < y0 and y1 < size:   # a whole disc, no other disc over it
                inside = (xx - dx) ** 2 + (yy - dy) ** 2 < (0.7 * dr) ** 2
                angle, coherence = _orientation(gray, inside)
                assert coherence > 0.7
                assert min(_angle_error(angle, a) for a in gt.ANGLES) > math.radians(15), angle
                checked += 1
    assert checked >= 5


def test_no_low_level_map_finds_the_evidence():
    """Brightness, colour saliency and motion energy point at the evidence about as often as at any disc."""
    for frames, size in GEOMETRIES:
        floor = gt.low_level_floor(gt.generate(40, seed=21, frames=frames, size=size))
        for k in ("brightness", "colour", "motion"):
            assert floor[k] < floor["disc_share"] + 0.2 < 0.6, (frames, size, floor)


def test_default_areas_follow_one_rule():
    # the toy's evidence: an 8 px square over 8.5 frames on average, of 16 frames of 64 x 64
    assert gt.default_areas(8 * 8 * 8.5 / (16 * 64 * 64), 64) == tuple(toy.AREAS)
    for name, (frames, size) in gt.GEOMETRY.items():
        assert tuple(ENTRIES[name].areas) == gt.default_areas(gt.evidence_fraction(frames, size), size)
    # the areas are shares of the padded canvas (margin σ, 11 px at 112 px): the frame is 112² of 134² of it
    assert S.frame_share(112) == pytest.approx(112 ** 2 / 134 ** 2)
    assert S.frame_share(64, 128) == pytest.approx(64 * 128 / (76 * 140))     # margin 6 px at 64 px
    # so the smallest area keeps about the evidence's own volume of the frame, not 1.4 times it
    for frames, size in gt.GEOMETRY.values():
        kept = gt.default_areas(gt.evidence_fraction(frames, size), size)[0] / S.frame_share(size)
        assert 1.0 <= kept / gt.evidence_fraction(frames, size) < 1.15
    assert gt.pointing_tolerance(64) == 4 and gt.pointing_tolerance(224) == 14


def _untrained(name):
    e = ENTRIES[name]
    return wrap(e, e.build(e, False)).eval()


def test_entries_use_the_real_builders_and_geometry():
    for name, (frames, size) in gt.GEOMETRY.items():
        e = ENTRIES[name]
        assert (e.num_frames, e.crop_size, e.offline) == (frames, size, True)
    x3d = _untrained("gt_x3d_xs")
    real = load_model("x3d_xs", pretrained=False, device="cpu")
    # the same network as the x3d_xs entry, up to the 4-class projection of the head
    shapes = {k: v.shape for k, v in x3d.module.state_dict().items()}
    ref = {k: v.shape for k, v in real.module.state_dict().items()}
    assert {k for k in shapes if shapes[k] != ref.get(k)} == {"blocks.5.proj.weight", "blocks.5.proj.bias"}
    vm = _untrained("gt_videomae")
    cfg = vm.module.config
    assert (type(vm.module).__name__, cfg.patch_size, cfg.tubelet_size, cfg.num_frames, cfg.image_size) == \
        ("VideoMAEForVideoClassification", 16, 2, 16, gt.GEOMETRY["gt_videomae"][1])
    assert vm.layout == "BTCHW" and vm.token_grid is not None
    seen = {}
    layer = dict(vm.module.named_modules())[vm.gradcam_layer]
    hook = layer.register_forward_hook(lambda m, i, o: seen.update(map=vm.token_grid.reshape(o)))
    with torch.no_grad():
        size = gt.GEOMETRY["gt_videomae"][1]
        out = vm(torch.rand(1, 3, 16, size, size))
    hook.remove()
    assert out.shape == (1, 4) and seen["map"].shape[2:] == (8, size // 16, size // 16)


def test_listed_once_trained_and_the_toy_stays_the_default():
    assert list_models()[0] == "toy"
    trained = sorted(n for n in gt.GEOMETRY if gt.weights_path(n).exists())
    assert [n for n in list_models() if n.startswith("gt_")] == trained


def test_quality_benchmark_takes_the_ground_truth_models():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("quality", Path(__file__).parents[1] / "benchmarks" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    assert quality.tolerance_for("toy") is None and quality.tolerance_for("gt_videomae") == \
        gt.pointing_tolerance(gt.GEOMETRY["gt_videomae"][1])
    items = quality.clips_for("gt_x3d_xs", 2, quality.SEED)
    assert items[0].frames.shape == (4, 182, 182, 3)
    assert np.array_equal(items[1].frames, gt.generate(2, seed=quality.SEED, frames=4, size=182)[1].frames)
    assert np.array_equal(quality.clips_for("toy", 1, 3)[0].frames, toy.generate(1, seed=3)[0].frames)


def test_training_is_deterministic_and_resumes(tmp_path, monkeypatch):
    """Two steps in one run give the same weights as one step, a stop, and a resumed second step."""
    kw = dict(batch=2, lr=1e-3, warmup=5, eval_clips=2, final_clips=2, log=lambda *_: None)
    monkeypatch.setattr(gt, "SHIP_ACCURACY", 0.0)   # two steps learn nothing; ship them anyway
    weights = {}
    for run, plan in (("straight", [2]), ("resumed", [1, 2])):
        monkeypatch.setattr(gt, "CHECKPOINTS", tmp_path / run / "runs")
        monkeypatch.setattr(gt, "WEIGHTS", tmp_path / run / "weights")
        for steps in plan:
            meta = gt.train("gt_videomae", steps, **kw)
        assert meta["final"]["step"] == 2
        weights[run] = torch.load(gt.weights_path("gt_videomae", tmp_path / run / "weights"), weights_only=True)
    a, b = weights["straight"]["model"], weights["resumed"]["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.dtype != torch.float32 for v in a.values())   # shipped in fp16
    assert weights["straight"]["labels"] == gt.LABELS


def test_fine_tuning_starts_from_the_given_weights(tmp_path, monkeypatch):
    """train(init=...) loads those weights (lr 0: they come out unchanged), runs FINETUNE_CURRICULUM, records
    the start's digest, and a checkpoint of another start is not resumed."""
    monkeypatch.setattr(gt, "SHIP_ACCURACY", 0.0)
    monkeypatch.setattr(gt, "CHECKPOINTS", tmp_path / "runs")
    monkeypatch.setattr(gt, "WEIGHTS", tmp_path / "first")
    kw = dict(batch=2, warmup=1, eval_clips=2, final_clips=2, log=lambda *_: None)
    gt.train("gt_videomae", 1, lr=1e-3, **kw)
    start = gt.weights_path("gt_videomae", tmp_path / "first")
    (tmp_path / "runs").rename(tmp_path / "runs_first")
    monkeypatch.setattr(gt, "WEIGHTS", tmp_path / "tuned")
    meta = gt.train("gt_videomae", 1, lr=0.0, init=str(start), **kw)
    assert meta["config"]["init"] == gt.file_digest(start)
    a = torch.load(start, weights_only=True)["model"]
    b = torch.load(gt.weights_path("gt_videomae", tmp_path / "tuned"), weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [gt.curriculum_stage(i, 8, gt.FINETUNE_CURRICULUM) for i in range(8)] == [0, 0, 1, 1, 1, 1, 1, 1]
    with pytest.raises(SystemExit):   # the checkpoint in runs/ started from `start`; this run starts afresh
        gt.train("gt_videomae", 2, lr=0.0, **kw)


def test_null_clips_hold_no_class_stripes():
    """The training's clips without an answer: the first half are task clips without the evidence disc (no
    stripes at a class's angle anywhere: every disc left is a distractor), the rest are blurred past the stripes'
    period (their high frequencies gone)."""
    gen = torch.Generator().manual_seed(0)
    x = gt.null_clips(4, [5, 6], 4, 96, gen, {})
    assert x.shape == (4, 3, 4, 96, 96) and 0 <= x.min() and x.max() <= 1
    free = gt._clip(np.random.default_rng([5, 6]), 4, 96, evidence=False)
    assert all(b is None for b in free.boxes) and all(d is None for d in free.discs)
    assert any(free.distractor_boxes)
    again = gt._clip(np.random.default_rng([5, 6]), 4, 96)   # the same clip with its evidence
    assert free.label == again.label and free.distractor_discs == again.distractor_discs
    detail = lambda v: float((v[..., 1:] - v[..., :-1]).abs().mean())   # noqa: E731
    assert max(detail(x[2]), detail(x[3])) < 0.25 * min(detail(x[0]), detail(x[1]))


def test_curriculum_eases_in_and_ends_on_the_task():
    steps = 100
    stages = [gt.curriculum_stage(s, steps) for s in range(steps)]
    assert stages == sorted(stages) and stages[0] == 0 and stages[-1] == len(gt.CURRICULUM) - 1
    assert gt.CURRICULUM[-1][1] == {}   # the last stage (most of the steps) is the task that is evaluated
    assert sum(s == stages[-1] for s in stages) >= steps / 2
    easy = gt.generate(6, seed=5, frames=16, size=224, **gt.CURRICULUM[0][1])
    for c in easy:
        assert c.event == (0, 16) and not any(c.distractor_boxes)
        assert min(d[2] for d in c.discs) >= gt.CURRICULUM[0][1]["diameter"][0] * 224 / 2
    task = gt.generate(6, seed=5, frames=16, size=224)
    assert all(c.event != (0, 16) and any(c.distractor_boxes) for c in task)


SHIPPED = sorted(n for n in gt.GEOMETRY if gt.weights_path(n).exists())
TEST_SEED = 3   # unseen: training uses seeds >= TRAIN_SEED, its progress checks seed 7, the benchmarks 500


def test_the_cnn_ships():
    assert "gt_x3d_xs" in SHIPPED


@pytest.fixture(scope="module", params=SHIPPED)
def trained(request):
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # batches of a few clips: a second thread's hand-offs cost more on a loaded CPU
    yield load_model(request.param, device="cpu")
    torch.set_num_threads(before)


def test_shipped_model_does_the_task(trained):
    assert not trained.module.training
    assert gt.evaluate(trained, n=50, seed=TEST_SEED, batch=5) >= 0.95


def test_shipped_model_reads_the_evidence_and_only_it(trained):
    """Blurring all but the striped disc keeps the class, blurring the disc destroys it (accuracy near chance,
    0.25), blurring a distractor (in every frame, more volume than the evidence) does not."""
    clips = gt.generate(8, seed=TEST_SEED + 1, frames=trained.num_frames, size=trained.crop_size)
    res = gt.confinement(trained, clips)
    assert res["keep"] >= 0.9 and res["control_keep"] >= 0.9 and res["blurred_accuracy"] <= 0.5, res
    assert res["p_evidence_blurred"] < 0.5 < min(res["p_distractor_blurred"], res["p_evidence_only"]), res


class _SeesOneFrameOfEachTubelet:
    """``model`` shown frame ``keep`` of each tubelet in all of the tubelet's places (the others never reach
    it): a model that reads that frame and no other, by construction."""

    def __init__(self, model, keep: int):
        k = gt.tubelet(model)
        self.model, self.num_frames, self.crop_size = model, model.num_frames, model.crop_size
        self.token_grid, self.prepare = model.token_grid, model.prepare
        self.index = torch.tensor([t // k * k + keep for t in range(model.num_frames)])

    def __call__(self, x):
        return self.model(x[:, :, self.index])


def test_frames_read_finds_the_tubelet_frame_a_model_uses(trained):
    k = gt.tubelet(trained)
    assert k == (2 if trained.name == "gt_videomae" else 1)            # VideoMAE's two-frame tubelets
    clips = gt.generate(4, seed=TEST_SEED + 2, frames=trained.num_frames, size=trained.crop_size)
    for keep in range(k):
        res = gt.frames_read(_SeesOneFrameOfEachTubelet(trained, keep), clips)
        assert res["read"] == [keep], res
        assert res["p_blurred"][keep] < 0.5 < res["p_only"][keep], res   # its frame alone decides
    boxes = [None, (0, 0, 4, 4), (1, 1, 5, 5), None]
    assert gt.boxes_read(boxes, [1], 2) == [None, (0, 0, 4, 4), None, None]
    assert gt.boxes_read(boxes, [0], 1) == boxes
