""""Why A rather than B": the pairwise game (attribution.step.reward with a contrast class, docs/method.md)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attribution import explain
from attribution.errors import InputError
from attribution.metrics import pointing_game
from attribution.step import reward
from model_zoo import load_model, toy

pytestmark = pytest.mark.usefixtures("one_thread")   # toy-sized tensors: see conftest.py


def test_the_pairwise_reward_reads_only_the_two_classes_and_is_bounded():
    logits = torch.tensor([[4.0, 1.0, -2.0], [0.0, 3.0, 9.0]])
    target, contrast = torch.tensor([0, 0]), torch.tensor([1, 1])
    r = reward(logits, target, "preserve", contrast)
    assert torch.allclose(r, torch.nn.functional.softplus(-(logits[:, 0] - logits[:, 1])))
    moved = logits.clone()
    moved[:, 2] += 50                                   # a third class does not enter the pair's game
    assert torch.allclose(reward(moved, target, "preserve", contrast), r)
    assert (r >= 0).all() and (reward(logits, target, "delete", contrast) >= 0).all()
    # preserve and delete pull the margin in opposite directions
    x = logits.clone().requires_grad_()
    reward(x, target, "preserve", contrast).sum().backward()
    assert (x.grad[:, 0] < 0).all() and (x.grad[:, 1] > 0).all() and (x.grad[:, 2] == 0).all()


@pytest.fixture(scope="module")
def model():
    return load_model("toy")


def test_the_contrastive_map_lies_on_the_evidence(model):
    """On unseen toy clips, "the true direction rather than another" points inside the evidence box in most
    frames (benchmarks/contrast.py: 0.91 over 8 clips x 3 contrasts with the fast preset; random maps about 0.1)."""
    scores = []
    for c in toy.generate(2, seed=500):
        other = next(k for k in range(4) if k != c.label)
        e = explain(model, c.frames, target=c.label, contrast=other, seed=0)
        assert e.contrast == other and e.contrast_label == toy.LABELS[other]
        assert e.summary()["contrast"] == {"index": other, "label": toy.LABELS[other]}
        scores.append(pointing_game(e.saliency, c.boxes, tolerance=4))
    assert np.mean(scores) >= 0.6, scores


def test_the_contrast_is_checked(model):
    c = toy.generate(1, seed=3)[0]
    with pytest.raises(InputError, match="must differ"):
        explain(model, c.frames, target=1, contrast=1, iterations=2)
    with pytest.raises(InputError, match="perturbation methods"):
        explain(model, c.frames, target=1, contrast=2, method="grad-cam")
    with pytest.raises(InputError, match="Unknown target label"):
        explain(model, c.frames, target=1, contrast="sideways", iterations=2)
