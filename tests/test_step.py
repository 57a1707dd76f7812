"""STEP's building blocks and loop (attribution/step.py)."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from attribution import step as S
from attribution.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(k=3, frames=8, size=32):
    from model_zoo.classifier import VideoClassifier

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Conv3d(3, 4, 3, padding=1)
            self.f = torch.nn.Linear(4, k)

        def forward(self, x):
            return self.f(self.c(x).mean((2, 3, 4)))

    torch.manual_seed(0)
    return VideoClassifier(Net(), name="tiny", labels=[str(i) for i in range(k)], num_frames=frames,
                           crop_size=size, mean=[0.45] * 3, std=[0.225] * 3)


# ------------------------------------------------------------------------------------------- mask generator
def test_geometry_matches_the_paper_at_112():
    g = S.mask_geometry(112, 112, S.GRID_STEP, S.SIGMA)
    assert g["grid"] == (16, 16) and g["margin"] == 11 and g["radius"] == 3 and g["pad"] == 5
    s = S.Settings().scaled(112)
    assert (s.grid_step, s.sigma, s.max_blur, s.final_blur) == (7, 11, 20, 10)


def test_smooth_mask_of_ones_is_close_to_one_and_shapes():
    g = S.mask_geometry(64, 64, 4, 6.3)
    k = S.smooth_mask_kernel(g["step"], 6.3, g["radius"])
    padded, mask = S.smooth_mask(torch.ones(5, 1, 16, 16), g, k, 64, 64)
    assert padded.shape == (5, 1, 64 + 2 * g["margin"], 64 + 2 * g["margin"]) and mask.shape == (5, 1, 64, 64)
    assert mask.min() > 0.95 and mask.max() <= 1


def test_smooth_mask_one_cell_gives_a_blob_centred_on_the_cell():
    g = S.mask_geometry(64, 64, 4, 6.3)
    k = S.smooth_mask_kernel(g["step"], 6.3, g["radius"])
    p = torch.zeros(1, 1, 16, 16)
    p[0, 0, 5, 10] = 1                       # cell covering rows 20..23, columns 40..43
    _, m = S.smooth_mask(p, g, k, 64, 64)
    m = m[0, 0]
    ys, xs = torch.nonzero(m > 0.5, as_tuple=True)
    assert abs(ys.float().mean() - 21.5) < 0.6 and abs(xs.float().mean() - 41.5) < 0.6
    assert m[21, 41] > 0.95 and m[21, 60] < 0.05 and m.max() <= 1


def test_subsampled_generator_stays_close_to_the_exact_one():
    g = S.mask_geometry(64, 64, 4, 6.3)
    torch.manual_seed(0)
    p = torch.rand(3, 1, 16, 16)
    exact = S.smooth_mask(p, g, S.smooth_mask_kernel(4, 6.3, g["radius"]), 64, 64)[1]
    approx = S.smooth_mask(p, g, S.smooth_mask_kernel(4, 6.3, g["radius"], 2), 64, 64)[1]
    assert (exact - approx).abs().mean() < 0.03   # random parameters: the worst case for interpolation


@pytest.mark.parametrize("n_in,factor,offset,n_out", [(40, 2.0, 2, 76), (34, 5.5, 3, 150), (20, 4.0, 0, 80)])
def test_interpolation_matrix_is_bilinear_upsampling_and_crop(n_in, factor, offset, n_out):
    torch.manual_seed(0)
    v = torch.rand(2, 1, n_in, n_in)
    ref = torch.nn.functional.interpolate(v, scale_factor=factor, mode="bilinear", align_corners=False)
    m = S._interpolation_matrix(n_in, factor, offset, n_out)
    assert torch.allclose(m @ v @ m.T, ref[:, :, offset:offset + n_out, offset:offset + n_out], atol=1e-5)


# --------------------------------------------------------------------------------------------- perturbation
def test_pyramid_ends_are_the_clip_and_its_full_blur():
    torch.manual_seed(0)
    clip = torch.rand(1, 3, 4, 32, 32)
    pyr = S.blur_pyramid(clip, max_blur=5.0)
    assert pyr.shape == (S.LEVELS, 3, 4, 32, 32)
    ones = S.apply_pyramid(pyr, torch.ones(2, 1, 4, 32, 32))
    zeros = S.apply_pyramid(pyr, torch.zeros(2, 1, 4, 32, 32))
    assert torch.equal(ones[0], clip[0])                     # m = 1 keeps every pixel
    assert torch.allclose(zeros[1], pyr[0])                  # m = 0 is the fully blurred clip
    full_blur = S.gaussian_blur(clip[0].transpose(0, 1), 5.0).transpose(0, 1)
    assert torch.allclose(zeros[0], full_blur, atol=1e-6)
    assert zeros.std() < clip.std() * 0.5                   # the blur really removes detail
    half = S.apply_pyramid(pyr, torch.full((1, 1, 4, 32, 32), 0.5))
    assert torch.allclose(half[0], 0.5 * (pyr[3] + pyr[4]), atol=1e-6)  # 3.5 sits between levels 3 and 4


def test_blur_never_mixes_frames():
    clip = torch.zeros(1, 3, 3, 16, 16)
    clip[:, :, 1] = 1
    pyr = S.blur_pyramid(clip, max_blur=4.0)
    assert torch.all(pyr[:, :, 0] == 0) and torch.all(pyr[:, :, 2] == 0)


def test_fade_goes_to_the_fill_colour():
    clip = torch.rand(1, 3, 2, 8, 8)
    fill = torch.tensor([0.1, 0.2, 0.3])
    pyr = S.blur_pyramid(clip, 1.0, kind="fade", fill=fill)
    out = S.apply_pyramid(pyr, torch.zeros(1, 1, 2, 8, 8))
    assert torch.allclose(out[0, :, 0, 0, 0], fill)


# ---------------------------------------------------------------------------------------------------- losses
def test_area_loss_is_zero_exactly_at_the_target_area():
    v = 1000
    a = 0.1
    ref = S.area_reference(v, a).unsqueeze(0)
    m = torch.zeros(1, 1, 10, 10, 10)
    m.view(-1)[torch.randperm(v)[: int(round(a * v))]] = 1
    assert S.area_loss(m, ref).item() == 0
    assert S.area_loss(torch.ones(1, 1, 10, 10, 10), ref).item() == pytest.approx(0.9)
    assert S.area_loss(torch.full((1, 1, 10, 10, 10), 0.5), ref).item() == pytest.approx(0.25)


def test_area_loss_per_frame_constrains_each_frame():
    ref = S.area_reference(100, 0.5).unsqueeze(0)
    m = torch.zeros(1, 1, 2, 10, 10)
    m[0, 0, 0, :5] = 1
    m[0, 0, 1, 5:] = 1                                      # each frame half on
    assert S.area_loss(m, ref, per_frame=True).item() == 0
    m2 = torch.zeros(1, 1, 2, 10, 10)
    m2[0, 0, 0] = 1                                         # right volume, wrong per-frame split
    ref3 = S.area_reference(200, 0.5).unsqueeze(0)
    assert S.area_loss(m2, ref3).item() == 0
    assert S.area_loss(m2, ref, per_frame=True).item() > 0.2


def test_core_loss_zero_for_exactly_k_whole_ellipsoids():
    kt, side, t = 4, 5, 8
    kern = S.ellipsoid_kernel(kt, side)
    assert kern.sum() > 0 and kern[kt // 2, side // 2, side // 2] == 1 and kern[0, 0, 0] == 0
    m = torch.zeros(1, 1, t, 20, 20)
    m[..., 5:10, 10:15] = 1                                  # one tile on in every frame
    k = t - kt + 1                                           # -> that many responses of exactly 1
    assert S.core_loss(m, kern, torch.tensor([k])).item() == pytest.approx(0, abs=1e-6)
    assert S.core_loss(m, kern, torch.tensor([k + 3])).item() > 0.1   # asks for more blobs than exist
    assert S.core_loss(m, kern, torch.tensor([k - 2])).item() > 0.02  # asks for fewer (2 extra among 77 "off")
    half = torch.zeros_like(m)
    half[..., 5:10, 10:12] = 1                               # a partial blob is penalised either way
    assert S.core_loss(half, kern, torch.tensor([k])).item() > 0.05


@pytest.mark.parametrize("kt,side,t,h,w",
                         [(4, 5, 8, 20, 23), (1, 3, 3, 9, 7), (8, 11, 16, 134, 134), (2, 6, 2, 76, 77)])
def test_ellipsoid_responses_equal_the_strided_convolution(kt, side, t, h, w):
    torch.manual_seed(kt + side)
    kern = S.ellipsoid_kernel(kt, side)
    x = torch.rand(2, 1, t, h, w, dtype=torch.float64, requires_grad=True)
    conv = torch.nn.functional.conv3d(x, (kern / kern.sum()).view(1, 1, *kern.shape).double(),
                                      stride=(1, side, side))
    fast = S.ellipsoid_responses(x, kern)
    assert fast.shape == conv.shape[:1] + conv.shape[2:]
    torch.testing.assert_close(fast, conv[:, 0])
    g = torch.rand_like(fast)
    (ga,) = torch.autograd.grad((conv[:, 0] * g).sum(), x)
    (gb,) = torch.autograd.grad((fast * g).sum(), x)
    torch.testing.assert_close(ga, gb)


def test_core_counts_match_the_papers_numbers():
    # docs/method.md §3.3: K_t = 8, 134^2 canvas, 16 frames: k = 29/57/86/171/284 for 0.05/0.1/0.15/0.3/0.5
    assert S.core_counts([0.05, 0.1, 0.15, 0.3, 0.5], 16 * 134 * 134, 8, 11) == [29, 57, 86, 171, 284]


def test_rewards():
    logits = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    t = torch.tensor([0, 0])
    pres = S.reward(logits, t, "preserve")
    dele = S.reward(logits, t, "delete")
    p = logits.softmax(-1)[:, 0]
    assert torch.allclose(pres, -p.log()) and torch.allclose(dele, -(1 - p.double()).log().float(), rtol=1e-4)
    assert pres[0] < 1e-3 < pres[1]
    with pytest.raises(InputError):
        S.reward(logits, t, "nope")


def test_final_map_sums_areas_and_normalises_globally():
    m = torch.zeros(2, 3, 16, 16)
    m[0, 1, 4:8, 4:8] = 1
    m[1, 1, 4:8, 4:8] = 1
    m[0, 2, 10:12, 10:12] = 1
    s = S.final_map(m, 1.0)
    assert s.shape == (3, 16, 16) and s.max() == pytest.approx(1) and s.min() >= 0
    assert s[0].max() == 0 and s[2].max() < 0.5             # a frame with less mass stays dimmer


# ------------------------------------------------------------------------------------------------- the loop
def test_gradients_reach_the_mask_and_never_the_model():
    model = tiny_model()
    for p in model.parameters():
        p.requires_grad_(True)
    clip = torch.rand(1, 3, 8, 32, 32)
    seen = []
    orig = S.apply_pyramid

    def spy(pyr, mask):
        mask.register_hook(lambda g: seen.append(float(g.abs().sum())))
        return orig(pyr, mask)

    S.apply_pyramid, saved = spy, S.apply_pyramid
    try:
        res = S.perturbation(model, clip, [1], settings=S.Settings(iterations=2, areas=(0.1, 0.3)))
    finally:
        S.apply_pyramid = saved
    assert seen and all(g > 0 for g in seen)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())     # the caller's flags are restored
    assert res.masks.shape == (1, 2, 8, 32, 32) and res.saliency.shape == (1, 8, 32, 32)
    assert res.evaluations == 2 * 2


def test_same_seed_same_map_and_targets_batch():
    model = tiny_model()
    clip = torch.rand(1, 3, 8, 32, 32)
    st = S.Settings(iterations=5, areas=(0.1, 0.2))
    a = S.perturbation(model, clip, [0, 2], settings=st, seed=3)
    b = S.perturbation(model, clip, [0, 2], settings=st, seed=3)
    assert torch.equal(a.saliency, b.saliency)
    assert a.masks.shape == (2, 2, 8, 32, 32) and a.evaluations == 5 * 4


def test_batches_split_into_chunks_give_the_same_masks():
    model, clip = tiny_model(), torch.rand(1, 3, 8, 32, 32)
    st = S.Settings(iterations=5, areas=(0.1, 0.2), core_warmup=2)
    whole = S.perturbation(model, clip, [0, 2], settings=st)
    chunks = S.perturbation(model, clip, [0, 2], settings=dataclasses.replace(st, batch=3))
    assert torch.allclose(whole.masks, chunks.masks, atol=1e-5)
    assert whole.evaluations == chunks.evaluations == 5 * 4


def test_out_of_memory_halves_the_batch_instead_of_failing():
    model, clip = tiny_model(), torch.rand(1, 3, 8, 32, 32)
    limit = {"n": 1}
    forward = model.forward

    def small_batches_only(x):
        if x.shape[0] > limit["n"]:
            raise torch.OutOfMemoryError("simulated: out of memory")
        return forward(x)

    model.forward = small_batches_only
    st = S.Settings(iterations=3, areas=(0.1, 0.2), game="dual")
    info = []
    res = S.perturbation(model, clip, [0, 1], settings=st, progress=lambda d, t, i: info.append(i))
    assert [i["batch"] for i in info if "batch" in i] == [2, 1]      # 4 masks -> 2 -> 1, then it fits
    model.forward = forward
    ref = S.perturbation(model, clip, [0, 1], settings=st)
    assert torch.allclose(res.masks, ref.masks, atol=1e-5)
    limit["n"] = 0
    model.forward = small_batches_only
    with pytest.raises(torch.OutOfMemoryError):                      # even one mask does not fit: say so
        S.perturbation(model, clip, [0], settings=st)


def test_a_failing_compiler_falls_back_to_the_eager_generator(monkeypatch):
    def broken_compile(fn, **kw):
        def run(*a, **k):
            raise RuntimeError("simulated: no C++ compiler")
        return run
    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(S, "_COMPILED", {})
    model, clip = tiny_model(), torch.rand(1, 3, 8, 32, 32)
    st = S.Settings(iterations=3, areas=(0.2,))
    with pytest.warns(RuntimeWarning, match="running it eagerly"):
        res = S.perturbation(model, clip, [0], settings=dataclasses.replace(st, compile=True))
    assert res.settings.compile is False
    assert torch.allclose(res.masks, S.perturbation(model, clip, [0], settings=st).masks)


def test_compiled_smooth_max_matches_the_eager_one():
    g = S.mask_geometry(32, 32, 4, 6.3)
    k = S.smooth_mask_kernel(g["step"], 6.3, g["radius"])
    torch.manual_seed(0)
    p1 = torch.rand(2, 1, *g["grid"], requires_grad=True)
    p2 = p1.detach().clone().requires_grad_(True)
    eager = S.smooth_mask(p1, g, k, 32, 32)[0]
    compiled = S.smooth_mask(p2, g, k, 32, 32, compiled=True)[0]
    assert torch.allclose(eager, compiled, atol=1e-5)
    w = torch.rand_like(eager)
    (eager * w).sum().backward()
    (compiled * w).sum().backward()
    assert torch.allclose(p1.grad, p2.grad, atol=1e-4, rtol=1e-4)


def test_compiled_perturbation_matches_the_eager_one():
    torch.manual_seed(0)
    pyramid = torch.rand(8, 3, 4, 16, 16)
    m1 = torch.rand(2, 1, 4, 16, 16, requires_grad=True)
    m2 = m1.detach().clone().requires_grad_(True)
    eager = S.apply_pyramid(pyramid, m1)
    fn = S._compiled_fn(True, S.apply_pyramid, pyramid, m2, grad=1)
    assert fn is not S.apply_pyramid                        # it did compile (no fallback to eager)
    compiled = fn(pyramid, m2)
    assert torch.allclose(eager, compiled, atol=1e-6)
    w = torch.rand_like(eager)
    (eager * w).sum().backward()
    (compiled * w).sum().backward()
    assert torch.allclose(m1.grad, m2.grad, atol=1e-5)


@pytest.mark.parametrize("method,game", [("3d-ep", "dual"), ("2d-ep", "delete"), ("step", "preserve")])
def test_methods_and_games_run(method, game):
    res = S.perturbation(tiny_model(), torch.rand(1, 3, 8, 32, 32), [0], method=method,
                         settings=S.Settings(iterations=3, areas=(0.2,), game=game, core_warmup=1))
    assert torch.isfinite(res.saliency).all() and res.saliency.max() == pytest.approx(1)


def test_progress_and_cancel():
    calls = []
    S.perturbation(tiny_model(), torch.rand(1, 3, 8, 32, 32), [0], settings=S.Settings(iterations=4, areas=(0.2,)),
                   progress=lambda d, t, info: calls.append((d, t)))
    assert calls[-1] == (4, 4)
    with pytest.raises(S.Cancelled):
        S.perturbation(tiny_model(), torch.rand(1, 3, 8, 32, 32), [0], settings=S.Settings(iterations=4),
                       cancel=lambda: True)


def test_bad_settings_are_input_errors():
    for st in (S.Settings(areas=(0.0,)), S.Settings(areas=(1.5,)), S.Settings(iterations=0),
               S.Settings(game="x"), S.Settings(perturbation="x", iterations=1), S.Settings(batch=0)):
        with pytest.raises(InputError):
            S.perturbation(tiny_model(), torch.rand(1, 3, 8, 32, 32), [0], settings=st)
    with pytest.raises(InputError):
        S.perturbation(tiny_model(), torch.rand(1, 3, 8, 32, 32), [0], method="4d-ep")


def test_key_frames_shrink_for_short_clips():
    # 4 frames: K_t = min(8, T/2) = 2; the loop must run (a K_t longer than T would fail in conv3d)
    res = S.perturbation(tiny_model(frames=4), torch.rand(1, 3, 4, 32, 32), [0],
                         settings=S.Settings(iterations=2, areas=(0.2,), core_warmup=0))
    assert res.saliency.shape == (1, 4, 32, 32)
    assert math.isfinite(res.history["energy"][-1])


def test_area_loss_equals_the_sorted_vector_definition():
    torch.manual_seed(1)
    m = torch.rand(3, 1, 4, 9, 9)
    refs = torch.stack([S.area_reference(4 * 81, a) for a in (0.05, 0.3, 0.05)])
    want = ((m.reshape(3, -1).sort(1).values - refs) ** 2).mean(1)
    assert torch.allclose(S.area_loss(m, refs), want, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    refs2 = torch.stack([S.area_reference(81, a) for a in (0.05, 0.3, 0.5)])
    want2 = ((m.reshape(12, -1).sort(1).values - refs2.repeat_interleave(4, 0)) ** 2).mean(1).view(3, 4).mean(1)
    assert torch.allclose(S.area_loss(m, refs2, per_frame=True, generator=g), want2, atol=1e-6)
    # and its gradient is the sorted-vector definition's (the loss forms it in the forward pass)
    def sorted_vector(x, r, rows):
        return ((x.reshape(rows, -1).sort(1).values - r.repeat_interleave(rows // 3, 0)) ** 2).mean(1)
    for per_frame, r, w in ((False, refs, lambda x: sorted_vector(x, refs, 3)),
                            (True, refs2, lambda x: sorted_vector(x, refs2, 12).view(3, 4).mean(1))):
        x = m.clone().requires_grad_(True)
        weights = torch.tensor([1.0, -2.0, 0.5])
        (ga,) = torch.autograd.grad((S.area_loss(x, r, per_frame=per_frame) * weights).sum(), x)
        (gb,) = torch.autograd.grad((w(x) * weights).sum(), x)
        torch.testing.assert_close(ga, gb)


def test_area_loss_breaks_ties_at_random_and_never_reorders_distinct_values():
    v, k = 100, 10
    ref = S.area_reference(v, k / v).unsqueeze(0)
    chosen = torch.zeros(v)
    for seed in range(60):                                   # all equal: which 10 count as "on" is random
        m = torch.full((1, 1, 1, 10, 10), 0.5, requires_grad=True)
        S.area_loss(m, ref, generator=torch.Generator().manual_seed(seed)).backward()
        on = m.grad.flatten() < 0                            # d/dm: (2m - 2)/V for the chosen, 2m/V for the rest
        assert on.sum() == k
        chosen += on
    assert chosen.min() > 0 and chosen.max() < 25            # every index chosen sometimes, none nearly always
    assert chosen[:k].sum() < 0.5 * 60 * k                   # not the first indices (a by-index tie-break)
    # distinct float32 values one step apart just below 1 keep their order whatever the seed
    m = (1 - torch.arange(v, dtype=torch.float32).flip(0) * 2 ** -24).view(1, 1, 1, 10, 10).requires_grad_(True)
    assert m.detach().unique().numel() == v
    S.area_loss(m, ref, generator=torch.Generator().manual_seed(3)).backward()
    on = m.grad.flatten() < (2 * m.detach().flatten() - 1) / v
    assert torch.equal(on.nonzero().flatten(), torch.arange(v - k, v))


@pytest.mark.parametrize("frames,side", [(2, 6), (1, 4), (3, 5), (8, 11)])
def test_ellipsoid_kernel_is_never_empty(frames, side):
    k = S.ellipsoid_kernel(frames, side)
    assert k.shape == (frames, side, side) and k.sum() > 0
    assert torch.equal(k, k.flip(0)) and torch.equal(k, k.flip(1)) and torch.equal(k, k.transpose(1, 2))


def test_ellipsoid_voxel_count_matches_the_authors_kernel():
    assert S.ellipsoid_kernel(8, 11).sum() == 352    # docs/method.md §3.3: 352 voxels against n1 = 506


# ---------------------------------------------------------------------- pins: what the loop does with each term
def _record(monkeypatch, name: str) -> list:
    """Wrap ``step.<name>``: each call's output is recorded with the gradient the energy sends back into it."""
    calls, orig = [], getattr(S, name)

    def spy(*args, **kwargs):
        out = orig(*args, **kwargs)
        call = {"args": args, "out": out.detach().clone(), "grad": None}
        calls.append(call)
        if out.requires_grad:
            out.register_hook(lambda g: call.__setitem__("grad", g.detach().clone()))
        return out
    monkeypatch.setattr(S, name, spy)
    return calls


@pytest.mark.parametrize("game, sides", [("preserve", ["m"]), ("delete", ["1 - m"]), ("dual", ["m", "1 - m"])])
def test_each_game_perturbs_with_its_side_of_the_mask(monkeypatch, game, sides):
    """Preserve keeps m, delete keeps 1 − m, dual plays both (the paper's preservation and deletion games). With a
    learning rate of 0 the final masks are the masks every game saw."""
    seen = _record(monkeypatch, "apply_pyramid")
    res = S.perturbation(tiny_model(), torch.rand(1, 3, 8, 32, 32), [1], method="3d-ep",
                         settings=S.Settings(iterations=1, areas=(0.1, 0.3), game=game, lr=0.0))
    m = res.masks[0].unsqueeze(1)                               # (A,1,T,H,W)
    assert (2 * m - 1).abs().mean() > 0.5                       # far from 0.5: m and 1 - m differ everywhere
    assert len(seen) == len(sides)
    for call, side in zip(seen, sides):
        assert torch.allclose(call["args"][1], m if side == "m" else 1 - m, atol=1e-6), side


@pytest.mark.parametrize("method", ["step", "3d-ep", "2d-ep"])
def test_core_loss_enters_the_energy_only_for_step_and_only_from_its_warm_up(monkeypatch, method):
    """L_K (the paper's spatio-temporal regulariser) weighs λ_K = core_weight from iteration core_warmup on, and only in STEP: the energy sends
    exactly λ_K back into it, and the ablations never compute it."""
    areas = _record(monkeypatch, "area_loss")
    core = _record(monkeypatch, "core_loss")
    iteration = {"now": []}
    orig = S.core_loss

    def tagged(*args, **kwargs):
        iteration["now"].append(len(areas) - 1)     # the area loss is computed once per iteration, before L_K
        return orig(*args, **kwargs)
    monkeypatch.setattr(S, "core_loss", tagged)
    S.perturbation(tiny_model(), torch.rand(1, 3, 8, 32, 32), [0], method=method,
                   settings=S.Settings(iterations=5, areas=(0.1, 0.3), core_warmup=3, core_weight=7.0))
    assert len(areas) == 5
    if method != "step":
        assert core == [] and iteration["now"] == []
        return
    assert iteration["now"] == [3, 4]
    assert all(c["grad"] is not None and torch.allclose(c["grad"], torch.full((2,), 7.0)) for c in core)


def test_the_area_weight_grows_by_its_factor_every_iteration(monkeypatch):
    """λ_area(t) = area_weight · area_growth^t (README, How it works): the gradient the energy sends into the area loss."""
    areas = _record(monkeypatch, "area_loss")
    S.perturbation(tiny_model(), torch.rand(1, 3, 8, 32, 32), [0], method="step",
                   settings=S.Settings(iterations=4, areas=(0.2,), area_weight=2.0, area_growth=1.5))
    assert [round(float(c["grad"][0]), 5) for c in areas] == [2.0, 3.0, 4.5, 6.75]


def test_early_stop_fires_once_the_mask_settles_and_never_when_off():
    model, clip = tiny_model(frames=4, size=16), torch.rand(1, 3, 4, 16, 16)
    st = S.Settings(iterations=40, areas=(0.2,), early_stop=1.0, min_iterations=25)   # any change is "settled"
    stopped = S.perturbation(model, clip, [0], settings=st)
    # checked every 10 iterations against the mask 10 iterations before, not before min_iterations
    assert stopped.iterations == 30 and stopped.evaluations == 30
    assert S.perturbation(model, clip, [0], settings=dataclasses.replace(st, min_iterations=0)).iterations == 20
    # early_stop=0 runs every iteration, even when the mask does not move at all (learning rate 0)
    off = S.perturbation(model, clip, [0], settings=dataclasses.replace(st, early_stop=0.0, lr=0.0))
    assert off.iterations == 40 and off.evaluations == 40


def test_cancel_in_the_middle_of_a_run_stops_it_at_the_next_iteration():
    import threading
    cancel, done = threading.Event(), []

    def progress(d, total, info):
        done.append(d)
        if d == 3:
            cancel.set()
    with pytest.raises(S.Cancelled):
        S.perturbation(tiny_model(), torch.rand(1, 3, 8, 32, 32), [0], progress=progress, cancel=cancel,
                       settings=S.Settings(iterations=40, areas=(0.2,)))
    assert done == [1, 2, 3]


def test_area_reference_is_sorted_ascending_with_the_area_in_ones():
    for n, a in ((1000, 0.1), (77, 0.5), (10, 0.05)):
        ref = S.area_reference(n, a)
        assert ref.shape == (n,) and torch.equal(ref, ref.sort().values)
        assert int(ref.sum()) == n - int((1 - a) * n) and set(ref.unique().tolist()) <= {0.0, 1.0}


# ------------------------------------------------------------------------------ presets, speed-ups, interactive
def test_fast_preset_is_the_papers_schedule_six_times_faster():
    fast = S.PRESETS["fast"]
    assert S.FAST_SPEEDUP == 6
    assert fast["iterations"] == 200 and fast["core_warmup"] == 17 and fast["lr"] == 0.3 == S.FAST_LR
    assert fast["area_growth"] == pytest.approx(1.0008668 ** 6, rel=1e-12)


def test_eager_smooth_max_has_the_formulas_forward_and_its_gradient():
    """_SmoothMax (eager) against the formula run through autograd: forward bit for bit, backward to rounding."""
    g = torch.Generator().manual_seed(1)
    nb, kern = torch.rand(3, 20, 1, 49, generator=g), torch.rand(4, 49, generator=g)
    w = torch.rand(3, 20, 4, generator=g)
    a, b = nb.clone().requires_grad_(True), nb.clone().requires_grad_(True)
    ref, fused = S.smooth_max(a, kern), S._SmoothMax.apply(b, kern, S.COLDNESS)
    assert torch.equal(ref, fused)
    (ref * w).sum().backward()
    (fused * w).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-5)
    assert a.grad.abs().max() > 0.1                               # a gradient that tells the two apart


def test_recomputing_smooth_max_kernels_match_the_formula():
    """The forward and closed-form backward that the compiled generator runs (nothing of size N·C·P·K kept
    between them; the exponent shifted by a bound instead of the max) give the formula's value and gradient."""
    g = torch.Generator().manual_seed(2)
    nb, kern = torch.rand(3, 20, 1, 49, generator=g), torch.rand(4, 49, generator=g)
    w = torch.rand(3, 20, 4, generator=g)
    a = nb.clone().requires_grad_(True)
    ref = S.smooth_max(a, kern)
    (ref * w).sum().backward()
    out, den = S._smooth_max_forward(nb, kern, S.COLDNESS)
    assert torch.allclose(out, ref, atol=1e-6, rtol=0)
    grad = S._smooth_max_backward(nb, kern, out, den, w, S.COLDNESS)
    assert torch.allclose(grad, a.grad, atol=1e-5, rtol=1e-5)


def test_areas_kept_spreads_over_the_range():
    assert S.areas_kept((0.01, 0.02, 0.04), 3) == (0.01, 0.02, 0.04)
    assert S.areas_kept((0.05, 0.10, 0.15, 0.50), 3) == (0.05, 0.15, 0.50)
    assert S.areas_kept((0.05, 0.10, 0.15, 0.50), 2) == (0.05, 0.50)
    assert S.areas_kept((0.05, 0.10, 0.15, 0.50), 1) == (0.10,)       # single_area: the lower median
    assert S.areas_kept((0.3, 0.1), None) == (0.3, 0.1)
    with pytest.raises(InputError):
        S.areas_kept((0.1, 0.2), 0)


def test_init_from_gradient_keeps_each_masks_share_of_the_most_negative_cells():
    grad = torch.tensor([[0.0, -3.0, 1.0, -1.0, 2.0, -2.0, 0.5, 0.1, 0.2, 0.3],
                         [5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0]])
    out = S.init_from_gradient(grad, torch.tensor([0.3, 0.2]))
    assert out.tolist()[0] == [0, 1, 0, 1, 0, 1, 0, 0, 0, 0]
    assert out.tolist()[1] == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]


class Corner(torch.nn.Module):
    """Class 0 is the brightness of the top-left corner of every frame."""
    def forward(self, x):
        s = x[:, :, :, :8, :8].mean((1, 2, 3, 4)) * 20
        return torch.stack([s, -s], 1)


class SharpCorner(torch.nn.Module):
    """Class 0 is the contrast (standard deviation) of the top-left corner, through a ramp from ``lo`` to
    ``hi``: the output moves only while the corner's contrast lies between them (a saturated model whose
    evidence a little blur erases), its gradient is exactly zero elsewhere."""
    def __init__(self, lo: float, hi: float):
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, x):
        s = ((x[:, :, :, :8, :8].std((1, 2, 3, 4)) - self.lo) / (self.hi - self.lo)).clamp(0, 1)
        return torch.stack([6 * (2 * s - 1), -6 * (2 * s - 1)], 1)


def corner_model(net=None, mean=0.5, std=0.25):
    from model_zoo.classifier import VideoClassifier
    return VideoClassifier(net or Corner(), name="corner", labels=["a", "b"], num_frames=4, crop_size=32,
                           mean=[mean] * 3, std=[std] * 3)


def test_gradient_start_counts_its_passes_and_keeps_the_evidence(monkeypatch):
    """init="gradient": the start (8 level forwards + 4 gradient passes, counted) sets the parameters to 0/1 with
    the cells where the evidence is (a model that reads one corner) on; then every iteration takes a step."""
    clip = torch.rand(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    steps = []
    orig = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: steps.append(1) or orig(self, *a, **k))
    st = S.Settings(iterations=1, areas=(0.1,), init="gradient", compile=False, lr=1e-9)
    res = S.perturbation(corner_model(), clip, [0], settings=st)
    assert res.evaluations == S.LEVELS + S.START_POINTS + 1 == S.start_passes(st) + 1 and steps == [1]
    mask = res.masks[0, 0]                                         # (T,H,W): the start, hardly moved by lr 1e-9
    assert mask[:, :8, :8].mean() > 0.8 and mask[:, 16:, 16:].max() < 0.1
    res = S.perturbation(corner_model(), clip, [0], settings=dataclasses.replace(st, iterations=3))
    assert res.evaluations == S.start_passes(st) + 3 and steps == [1, 1, 1, 1]


def test_decision_gradient_finds_evidence_that_the_all_ones_gradient_misses():
    """A model whose output moves only while the corner's contrast lies between that of pyramid levels 5 and 6:
    its gradient is zero at the all-ones mask (saturated) and at a uniform half blur; the decision gradient,
    taken between the two levels where the reward changes most, is on the corner and nowhere else."""
    clip = torch.rand(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    pyr = S.blur_pyramid(clip, max_blur=6.0)
    contrast = [float(pyr[lv, :, :, :8, :8].std()) for lv in range(S.LEVELS)]
    assert contrast[5] < contrast[6] < contrast[7]
    model = corner_model(SharpCorner(contrast[5], contrast[6]), mean=0.0, std=1.0)   # sees the clip as it is
    tgt = torch.tensor([0])

    def grad_at(u):
        m = torch.full((1, 1, 4, 32, 32), u, requires_grad=True)
        with S.frozen(model):
            S.reward(model(S.apply_pyramid(pyr, m)), tgt, "preserve").sum().backward()
        return m.grad[0, 0]
    assert grad_at(1.0).abs().max() == 0 and grad_at(0.5).abs().max() == 0
    with S.frozen(model):
        g, moved, passes = S.decision_gradient(model, pyr, tgt, ["preserve"], chunk=8)
    assert passes == S.LEVELS + S.START_POINTS and g.shape == (1, 1, 4, 32, 32) and moved.tolist() == [True]
    corner = torch.zeros(4, 32, 32, dtype=torch.bool)
    corner[:, :8, :8] = True
    assert g[0, 0][corner].sum() < 0 and g[0, 0][~corner].abs().max() == 0


class Indifferent(torch.nn.Module):
    """Logits that hardly depend on the clip (as a randomly initialised network's): blurring it all moves the
    reward by far less than START_MIN_CHANGE."""
    def forward(self, x):
        s = x.mean((1, 2, 3, 4)) * 1e-3
        return torch.stack([s, -s], 1)


def test_a_model_that_decides_nothing_along_the_blur_keeps_the_all_ones_start():
    clip = torch.rand(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    st = S.Settings(iterations=1, areas=(0.1,), init="gradient", compile=False, lr=1e-9)
    flat = S.perturbation(corner_model(Indifferent()), clip, [0], settings=st)
    assert flat.evaluations == S.start_passes(st) + 1
    assert flat.masks[0, 0, :, 8:-8, 8:-8].min() > 0.99            # the paper's start, away from the borders
    corner = S.perturbation(corner_model(), clip, [0], settings=st)   # a model that decides: the 0/1 start
    assert corner.masks[0, 0, :, 16:, 16:].max() < 0.1


def test_interactive_preset_spends_at_most_99_passes_whatever_the_areas():
    inter = S.Settings(**S.PRESETS["interactive"])
    assert S.start_passes(inter) + 3 * inter.iterations == S.INTERACTIVE_BUDGET == 99
    assert inter.core_warmup == 3 and inter.init == "gradient" and inter.area_count == 3
    clip = torch.rand(1, 3, 8, 32, 32)
    for areas in ((0.05, 0.1, 0.15, 0.5), (0.1, 0.3)):
        st = dataclasses.replace(inter, areas=areas, compile=False)
        res = S.perturbation(tiny_model(), clip, [0], settings=st)
        kept = min(3, len(areas))
        assert res.evaluations == S.start_passes(st) + res.iterations * kept <= 99
        assert res.masks.shape[1] == kept and len(res.settings.areas) == kept
    two = S.perturbation(tiny_model(), clip, [0, 1], settings=dataclasses.replace(inter, compile=False))
    assert two.evaluations == S.start_passes(inter, 2) + 2 * 3 * inter.iterations <= 2 * 99   # per target: <= 99


def test_adam_and_bad_optimiser_or_start():
    clip = torch.rand(1, 3, 8, 32, 32)
    res = S.perturbation(tiny_model(), clip, [0], settings=S.Settings(iterations=3, areas=(0.2,), optimizer="adam",
                                                                      lr=0.1, compile=False))
    assert res.iterations == 3 and res.masks.min() < 1
    for bad in (dict(optimizer="lbfgs"), dict(init="zeros")):
        with pytest.raises(InputError):
            S.perturbation(tiny_model(), clip, [0], settings=S.Settings(iterations=1, areas=(0.2,), **bad))


def test_nsgd_steps_are_the_same_length_whatever_the_scale_of_the_objective():
    g = torch.randn(2 * 4, 1, 3, 3)
    n = S.normalised_gradient(g.clone(), 2).view(2, -1)
    assert torch.allclose(n.pow(2).mean(1), torch.ones(2)) and torch.allclose(n[1] * g.view(2, -1)[1].norm(),
                                                                               g.view(2, -1)[1] * n[1].norm())
    clip = torch.rand(1, 3, 8, 32, 32)

    def masks(opt, c):
        cfg = S.Settings(iterations=4, areas=(0.2, 0.4), optimizer=opt, lr=0.1, compile=False, core_warmup=2,
                         reward_weight=c, area_weight=300.0 * c, core_weight=300.0 * c)
        return S.perturbation(tiny_model(), clip, [0], settings=cfg, seed=0).masks
    # every term of the objective ten times larger: nsgd takes the same steps, the paper's SGD longer ones
    assert torch.allclose(masks("nsgd", 1.0), masks("nsgd", 10.0), atol=1e-4)
    assert not torch.allclose(masks("sgd", 1.0), masks("sgd", 10.0), atol=1e-2)


def test_should_cancel_reads_an_event_a_callable_or_none():
    import threading
    ev = threading.Event()
    assert S.should_cancel(None) is False and S.should_cancel(ev) is False and S.should_cancel(lambda: True)
    ev.set()
    assert S.should_cancel(ev)


@pytest.mark.parametrize("preset", ["fast", "interactive"])
def test_the_iterations_bring_the_started_masks_to_their_areas_and_keep_the_class(preset):
    """The decision-gradient start switches on whole parameter cells, so its masks cover several times their
    areas (area error about 0.25 on a toy clip); the optimisation then carves them down to their areas (error
    below a quarter of that within 30 iterations) while the class keeps its probability. A start that the
    optimiser never moves (a learning rate of 0, a step that updates nothing) keeps the start's error."""
    from model_zoo import load_model, toy
    model, c = load_model("toy"), toy.generate(1, seed=500)[0]
    cfg = dict(S.PRESETS[preset], iterations=30, early_stop=0.0)
    h = S.perturbation(model, model.prepare(c.frames), [c.label], settings=S.Settings(**cfg), seed=0).history
    assert h["area_error"][-1] < 0.25 * h["area_error"][0], h["area_error"]
    assert np.mean(h["prob"][-1]) > np.mean(h["prob"][0]) - 0.05
