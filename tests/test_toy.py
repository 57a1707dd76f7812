"""The toy task, its model, the adapter and the registry core (model_zoo/toy.py, classifier.py, __init__.py)."""
import numpy as np
import pytest
import torch

from attribution.errors import ModelError
from attribution.step import blur_pyramid
from model_zoo import list_models, load_model, toy, toy_train
from model_zoo.classifier import VideoClassifier

UNSEEN_SEED = 7   # training draws from seeds >= toy.TRAIN_SEED


@pytest.fixture(scope="module")
def model():
    return load_model("toy", device="cpu")


@pytest.fixture(scope="module")
def clips():
    return toy.generate(40, seed=11)


def test_generator_is_seeded_and_well_formed(clips):
    again = toy.generate(3, seed=11)
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(clips[:3], again))
    assert not np.array_equal(toy.generate(1, seed=12)[0].frames, clips[0].frames)
    for c in clips:
        assert c.frames.shape == (toy.FRAMES, toy.SIZE, toy.SIZE, 3) and c.frames.dtype == np.uint8
        s, e = c.event
        assert 0 <= s < e <= toy.FRAMES and toy.EVENT_LEN[0] <= e - s < toy.EVENT_LEN[1]
        assert all((b is not None) == (s <= t < e) for t, b in enumerate(c.boxes))
    assert {c.label for c in clips} == set(range(len(toy.LABELS)))


def test_boxes_hold_the_evidence_and_it_moves_the_labelled_way(clips):
    for c in clips:
        s, e = c.event
        inside = [c.frames[t, b[1]:b[3], b[0]:b[2]].reshape(-1, 3).astype(float) for t, b in enumerate(c.boxes) if b]
        colour = np.median(np.concatenate(inside), axis=0)
        for px in inside:  # every pixel of every box is the object's colour (up to sensor noise)
            assert np.abs(px - colour).max() < 25
        centres = np.array([((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in c.boxes if b])
        step = np.diff(centres, axis=0)
        assert np.allclose(step, toy.DIRECTIONS[c.label] * toy.SPEED, atol=1.01)


def test_no_low_level_cue_points_at_the_evidence():
    """Frame-difference energy peaks on the evidence no more often than the share of moving objects it is."""
    hits, share = [], []
    for c in toy.generate(60, seed=21):
        f = c.frames.astype(float).mean(-1)
        diff = np.abs(np.diff(f, axis=0))
        for t in range(1, toy.FRAMES):
            b = c.boxes[t]
            others = c.distractor_boxes[t]
            if b is None or not others or c.boxes[t - 1] is None:
                continue
            y, x = np.unravel_index(diff[t - 1].argmax(), diff[t - 1].shape)
            hits.append(b[0] - 2 <= x < b[2] + 2 and b[1] - 2 <= y < b[3] + 2)
            share.append(1 / (1 + len(others)))
    assert len(hits) > 100
    assert np.mean(hits) < np.mean(share) + 0.15


def test_toy_accuracy_on_fresh_clips(model):
    assert toy_train.evaluate(model, n=500, seed=UNSEEN_SEED) >= 0.95


def test_evidence_is_confined_to_the_boxes(model):
    """Blurring all but the evidence keeps the prediction; blurring only the evidence destroys it."""
    keep, destroy = [], []
    for c in toy.generate(24, seed=31):
        clip = model.prepare(c.frames)
        blurred = blur_pyramid(clip, max_blur=toy.SIZE * 20 / 112)[0].unsqueeze(0)
        box = torch.zeros(1, 1, toy.FRAMES, toy.SIZE, toy.SIZE)
        for t, b in enumerate(c.boxes):
            if b:
                box[..., t, max(0, b[1] - 2):b[3] + 2, max(0, b[0] - 2):b[2] + 2] = 1
        with torch.no_grad():
            only_evidence = model(clip * box + blurred * (1 - box)).softmax(-1)[0]
            no_evidence = model(clip * (1 - box) + blurred * box).softmax(-1)[0]
        keep.append(int(only_evidence.argmax()) == c.label)
        destroy.append(float(no_evidence[c.label]) < 0.5)
    assert np.mean(keep) >= 0.9 and np.mean(destroy) >= 0.8


def test_prepare_shapes_for_any_size(model):
    for shape in [(16, 90, 160), (5, 300, 120), (40, 7, 9), (16, 64, 64), (3, 1080, 1920)]:
        frames = np.random.randint(0, 255, shape + (3,), dtype=np.uint8)
        x = model.prepare(frames)
        assert x.shape == (1, 3, model.num_frames, model.crop_size, model.crop_size)
        assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    # a clip already at the input size passes through unchanged
    frames = np.random.randint(0, 255, (16, 64, 64, 3), dtype=np.uint8)
    assert torch.allclose(model.prepare(frames)[0].permute(1, 2, 3, 0), torch.from_numpy(frames) / 255.0)


def test_prepare_crops_the_centre():
    m = VideoClassifier(torch.nn.Identity(), name="id", labels=["a"], num_frames=2, crop_size=4,
                        mean=[0, 0, 0], std=[1, 1, 1])
    frames = np.zeros((2, 4, 12, 3), dtype=np.uint8)
    frames[:, :, 4:8] = 255                          # a bright centre column band
    assert torch.all(m.prepare(frames) == 1)


@pytest.mark.parametrize("layout", ["BCTHW", "BTCHW"])
def test_adapter_normalises_and_lays_out_the_clip(layout):
    """Every axis a different size and every value different: a swapped or reshaped layout cannot pass."""
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, pixel_values):
            seen["x"] = pixel_values
            return torch.zeros(pixel_values.shape[0], 2)

    mean, std = [0.1, 0.5, 0.9], [0.5, 0.25, 0.125]
    m = VideoClassifier(Spy(), name="spy", labels=["a", "b"], num_frames=5, crop_size=4, mean=mean, std=std,
                        layout=layout, input_key="pixel_values")
    clip = torch.rand(2, 3, 5, 4, 6)
    m(clip)
    norm = (clip - torch.tensor(mean).view(1, 3, 1, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1, 1)
    want = norm.permute(0, 2, 1, 3, 4) if layout == "BTCHW" else norm
    assert seen["x"].shape == want.shape
    torch.testing.assert_close(seen["x"], want)


def test_registry(model):
    assert list_models()[0] == "toy"
    assert load_model("toy", device="cpu") is model            # cached
    assert all(not p.requires_grad for p in model.parameters()) and not model.training
    with pytest.raises(ModelError, match="Unknown model"):
        load_model("no_such_model", device="cpu")
