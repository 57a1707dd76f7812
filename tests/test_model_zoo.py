"""The model zoo: every registry entry builds and maps the canonical clip to logits, the loaders work offline.

Full-size models are checked on the meta device (shapes, layers, token grids, no arithmetic); real numbers
run on reduced inputs or reduced configs through the same builder functions, so the file stays fast on 2 CPU
cores. Nothing here touches the network: missing weights must fail at once with a ModelError.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import model_zoo
from attribution.errors import ModelError
from model_zoo import TokenGrid, VideoClassifier, get_entry, list_models, load_model, wrap
from model_zoo.sampling import frame_indices

torch.set_num_threads(2)

# Every registry row of the two real families: a row added to the registry is tested here with no list to edit.
PYTORCHVIDEO = [n for n in list_models() if get_entry(n).family == "pytorchvideo"]
HUGGINGFACE = [n for n in list_models() if get_entry(n).family == "huggingface"]
# The rows this file was written against (each family's architectures): they must stay registered.
KNOWN = {"x3d_xs", "x3d_s", "x3d_m", "slow_r50", "slowfast_r50", "r2plus1d_r50", "i3d_r50", "c2d_r50", "csn_r101",
         "mvit_base_16x4", "MCG-NJU/videomae-base-finetuned-kinetics", "MCG-NJU/videomae-base-finetuned-ssv2",
         "facebook/timesformer-base-finetuned-k400", "google/vivit-b-16x2-kinetics400",
         "facebook/vjepa2-vitl-fpc16-256-ssv2"}

# Reduced versions through the real builders: (builder kwargs, frames, size). X3D's head pool is fixed by the
# builder's input size, so X3D-S/M shrink depth and width instead; the ResNets are 1/4 as wide and pool
# globally at 32 px; MViT runs 4x32x32 tokens at 1/3 width.
GLOBAL = nn.AdaptiveAvgPool3d
_RESNET = ({"head_pool": GLOBAL, "stem_dim_out": 16}, 2, 32)
SMALL = {
    "x3d_xs": ({}, 4, 160),  # the real model at its training crop (its head pools 4x5x5 cells)
    "x3d_s": ({"depth_factor": 0.5, "width_factor": 0.5}, 13, 160),
    "x3d_m": ({"depth_factor": 0.5, "width_factor": 0.5}, 16, 224),
    "slowfast_r50": ({"head_pool": GLOBAL, "stem_dim_outs": (16, 2)}, 8, 32),
    "mvit_base_16x4": ({"spatial_size": 32, "temporal_size": 4, "patch_embed_dim": 32}, 4, 32),
}  # every other PyTorchVideo row is a ResNet: _RESNET

# Tiny transformers configs: ~50k parameters, 4 frames of 32 px.
_T = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
TINY = {
    "videomae": dict(_T, intermediate_size=64, image_size=32, patch_size=8, num_frames=4, tubelet_size=2),
    "timesformer": dict(_T, intermediate_size=64, image_size=32, patch_size=8, num_frames=4),
    "vivit": dict(_T, intermediate_size=64, image_size=32, num_frames=4, tubelet_size=[2, 8, 8]),
    "vjepa2": dict(_T, mlp_ratio=2.0, crop_size=32, frames_per_clip=4, patch_size=8, tubelet_size=2,
                   pred_hidden_size=32, pred_num_hidden_layers=1, pred_num_attention_heads=2, num_pooler_layers=1),
}
HF_TYPE = {name: get_entry(name).build.args[0]["model_type"] for name in HUGGINGFACE}


@functools.lru_cache(maxsize=None)
def small_model(name: str) -> VideoClassifier:
    e = get_entry(name)
    if name in PYTORCHVIDEO:
        kw, t, s = SMALL.get(name, _RESNET)
        m = wrap(e, e.build(e, False, **kw))
        m.num_frames, m.crop_size = t, s
        m.preprocess = dataclasses.replace(m.preprocess, resize=s, crop=(s, s))
        m.input_size = (s, s)
        if m.token_grid is not None:  # MViT: patches of 2x4x4, then three 2x spatial poolings
            m.token_grid = TokenGrid(t // 2, s // 32, s // 32, prefix=1)
    else:
        m = e.build(e, False, **TINY[HF_TYPE[name]])
    return model_zoo._freeze(m, "cpu")  # what load_model does


def _layer_output(model: VideoClassifier, x: torch.Tensor):
    seen = []
    h = model.module.get_submodule(model.gradcam_layer).register_forward_hook(lambda mod, i, o: seen.append(o))
    try:
        y = model(x)
    finally:
        h.remove()
    return y, seen[0]


def _check_feature_map(model, act):
    """The Grad-CAM layer's output is (or, for transformers, reshapes to) a (B,C,T',H',W') map."""
    if model.token_grid is not None:
        fmap = model.token_grid.reshape(act)
        g = model.token_grid
        assert tuple(fmap.shape[2:]) == (g.t, g.h, g.w)
    else:
        fmap = act[0] if isinstance(act, (tuple, list)) else act
    assert fmap.ndim == 5


# ---------------------------------------------------------------------------------------------- registry
def test_registry_lists_every_family():
    names = list_models()
    assert names[0] == "toy"
    assert KNOWN <= set(PYTORCHVIDEO + HUGGINGFACE)
    for n in PYTORCHVIDEO + HUGGINGFACE:
        e = get_entry(n)
        assert e.weights and e.licence and e.trained_on and e.gradcam_layer
        assert (e.layout, e.family) in {("BCTHW", "pytorchvideo"), ("BTCHW", "huggingface")}


def test_kinetics400_labels_equal_torchvision():
    from torchvision.models.video import R3D_18_Weights
    shipped = json.loads((Path(model_zoo.__file__).parent / "labels" / "kinetics400.json").read_text())
    assert shipped == list(R3D_18_Weights.KINETICS400_V1.meta["categories"])
    assert list(get_entry("x3d_xs").labels) == shipped
    assert list(get_entry("MCG-NJU/videomae-base-finetuned-kinetics").labels) == shipped


@pytest.mark.parametrize("name", PYTORCHVIDEO + HUGGINGFACE)
def test_full_size_entry_builds_on_meta(name):
    """The real architecture at the real input size: output (B,K), Grad-CAM layer and token grid fit."""
    e = get_entry(name)
    if name == "mvit_base_16x4":  # its builder calls .item(), which meta tensors refuse
        m = wrap(e, e.build(e, False)).to("meta")
    else:
        with torch.device("meta"):
            m = wrap(e, e.build(e, False))
    assert (m.num_frames, m.crop_size, m.layout) == (e.num_frames, e.crop_size, e.layout)
    x = torch.empty(2, 3, e.num_frames, e.crop_size, e.crop_size, device="meta")
    y, act = _layer_output(m, x)
    assert tuple(y.shape) == (2, len(m.labels))
    _check_feature_map(m, act)
    if e.token_grid is not None:
        assert m.token_grid == e.token_grid


# ----------------------------------------------------------------------------------- real numbers, reduced
@pytest.mark.parametrize("name", PYTORCHVIDEO + HUGGINGFACE)
def test_entry_maps_clip_to_finite_logits(name):
    m = small_model(name)
    x = torch.rand(2, 3, m.num_frames, m.crop_size, m.crop_size)
    with torch.no_grad():
        y, act = _layer_output(m, x)
    assert tuple(y.shape) == (2, len(m.labels)) and torch.isfinite(y).all()
    _check_feature_map(m, act)


@pytest.mark.parametrize("name", ["x3d_s", "slowfast_r50", "mvit_base_16x4", "google/vivit-b-16x2-kinetics400",
                                  "facebook/vjepa2-vitl-fpc16-256-ssv2"])
def test_gradient_reaches_the_mask_not_the_parameters(name):
    m = small_model(name)
    mask = torch.full((1, 1, m.num_frames, m.crop_size, m.crop_size), 0.8, requires_grad=True)
    clip = torch.rand(1, 3, m.num_frames, m.crop_size, m.crop_size)
    m(clip * mask)[0, 1].backward()
    assert torch.isfinite(mask.grad).all() and mask.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in m.parameters())
    assert not m.training


def test_load_model_builds_the_real_x3d_xs():
    m = load_model("x3d_xs", pretrained=False, device="cpu")
    assert isinstance(m, VideoClassifier) and m is load_model("x3d_xs", pretrained=False, device="cpu")
    assert (m.num_frames, m.crop_size, m.resize_side, m.sampling_rate) == (4, 182, 182, 12)
    assert sum(p.numel() for p in m.parameters()) == pytest.approx(3.79e6, rel=0.01)
    assert not m.training and not any(p.requires_grad for p in m.parameters())


@pytest.mark.parametrize("name", ["x3d_s", "r2plus1d_r50"])
def test_softmax_heads_return_logits(name):
    from pytorchvideo.models import hub
    m = small_model(name)
    assert m.module.blocks[-1].activation is None
    x = torch.rand(1, 3, m.num_frames, m.crop_size, m.crop_size)
    with torch.no_grad():
        y = m(x)
    assert not ((y >= 0).all() and torch.allclose(y.sum(-1), torch.ones(1), atol=1e-3))
    # The unpatched builder does end in a softmax, so the test above would catch a regression.
    raw = getattr(hub, name)(pretrained=False, **SMALL.get(name, _RESNET)[0]).eval()
    with torch.no_grad():
        p = raw((x - 0.45) / 0.225)
    assert (p >= 0).all() and torch.allclose(p.sum(-1), torch.ones(1), atol=1e-4)


def test_slowfast_pack_takes_every_fourth_fast_frame():
    from model_zoo.pytorchvideo_models import slowfast_pack
    x = torch.arange(32.0).view(1, 1, 32, 1, 1).expand(1, 3, 32, 2, 2)
    slow, fast = slowfast_pack(x)
    assert fast is x and slow.shape == (1, 3, 8, 2, 2)
    assert slow[0, 0, :, 0, 0].tolist() == torch.linspace(0, 31, 8).long().float().tolist()


# ------------------------------------------------------------------------------------- Hugging Face folders
def _tiny_hf(kind: str):
    import transformers as tf
    from model_zoo.classifier import kinetics400_labels
    cls = {"videomae": ("VideoMAEConfig", "VideoMAEForVideoClassification", "VideoMAEVideoProcessor"),
           "timesformer": ("TimesformerConfig", "TimesformerForVideoClassification", "TimesformerVideoProcessor"),
           "vivit": ("VivitConfig", "VivitForVideoClassification", "VivitVideoProcessor"),
           "vjepa2": ("VJEPA2Config", "VJEPA2ForVideoClassification", "VJEPA2VideoProcessor")}[kind]
    labels = list(kinetics400_labels())
    config = getattr(tf, cls[0])(**TINY[kind], num_labels=400, id2label=dict(enumerate(labels)),
                                 label2id={n: i for i, n in enumerate(labels)})
    torch.manual_seed(0)
    model = getattr(tf, cls[1])(config).eval()
    proc_kw = {"size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 32}}
    if kind == "timesformer":
        proc_kw.update(image_mean=[0.45] * 3, image_std=[0.225] * 3)
    processor = getattr(tf, cls[2])(**proc_kw)  # ViViT keeps its class defaults: 1/127.5, offset, 0.5/0.5
    return model, processor, labels


@pytest.mark.parametrize("kind", ["videomae", "timesformer", "vivit", "vjepa2"])
def test_hf_folder_round_trip_matches_the_processor(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf, processor, labels = _tiny_hf(kind)
    hf.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    model_zoo.clear_cache()
    m = load_model(str(tmp_path), device="cpu")
    assert m.labels == labels and m.layout == "BTCHW"
    assert (m.num_frames, m.crop_size) == (4, 32)
    assert m.resize_side == (36 if kind == "vjepa2" else 40)  # VJEPA2's processor forces crop * 256/224
    assert m.input_key == ("pixel_values_videos" if kind == "vjepa2" else "pixel_values")
    assert m.gradcam_layer.endswith(".1") and m.token_grid is not None
    if kind == "vivit":  # [0,255] * 1/127.5 - 1, then (. - 0.5) / 0.5  ==  ([0,1] - 0.75) / 0.25
        assert np.allclose(m.mean.flatten().tolist(), 0.75) and np.allclose(m.std.flatten().tolist(), 0.25)
    frames = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    inputs = processor(frames, do_resize=False, do_center_crop=False, return_tensors="pt")
    clip = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 255
    with torch.no_grad():
        want = hf(**inputs).logits
        got, act = _layer_output(m, clip)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    _check_feature_map(m, act)


def test_vivit_entry_matches_the_real_processor_formula():
    from transformers import VivitVideoProcessor
    from model_zoo.hf_models import processor_preprocessing
    pre = processor_preprocessing(VivitVideoProcessor())
    e = get_entry("google/vivit-b-16x2-kinetics400")
    assert np.allclose(pre["mean"], e.mean) and np.allclose(pre["std"], e.std)
    assert (pre["crop_size"], pre["resize_side"]) == (e.crop_size, e.resize_side)
    px = torch.tensor([255.0, 128.0, 0.0]).view(1, 3, 1, 1)  # ViViT's rescale with offset: R,G,B -> 1.0, -0.99, -3.0
    out = (px / 255 - torch.tensor(e.mean).view(1, 3, 1, 1)) / torch.tensor(e.std).view(1, 3, 1, 1)
    assert torch.allclose(out.flatten(), torch.tensor([1.0, 128 / 63.75 - 3, -3.0]), atol=1e-5)


def test_hf_hub_ids_offline_fail_fast(no_network, monkeypatch):
    """HF_HUB_OFFLINE: a hub id that is not in the (empty) cache is a ModelError without any network attempt."""
    import huggingface_hub.constants as hub_constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)   # what huggingface_hub reads from it at import
    for name in ["MCG-NJU/videomae-base-finetuned-kinetics", "someone/not-cached-video-model"]:
        with pytest.raises(ModelError, match="network"):
            load_model(name, device="cpu")
    assert no_network == []


def test_hf_hub_id_without_offline_flag_fails_fast_when_unreachable(no_network, monkeypatch):
    """No flag, the hub does not answer: the loader asks the reachability check once and never the network."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    asked = []
    monkeypatch.setattr("model_zoo.hf_models.reachable", lambda url, timeout=3.0: asked.append(url) or False)
    with pytest.raises(ModelError, match="network"):
        load_model("someone/not-cached-video-model", device="cpu")
    assert asked == ["https://huggingface.co"]
    # The model files are never asked for. huggingface_hub itself may look its agent registry up once per process
    # (bounded by its own 3 s timeout) when it was imported without HF_HUB_OFFLINE: that is the only attempt.
    assert set(no_network) <= {("getaddrinfo", "huggingface.co")}


# --------------------------------------------------------------------------------- PyTorchVideo checkpoints
def test_checkpoint_in_torch_home_loads_without_network(tmp_path, monkeypatch):
    import model_zoo.pytorchvideo_models as pv
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(pv, "reachable", lambda *a, **k: pytest.fail("the network was consulted"))
    e = get_entry("x3d_xs")
    torch.manual_seed(1)
    state = e.build(e, False).state_dict()
    ckpt = pv.checkpoint_path(e.weights)
    assert ckpt == tmp_path / "hub" / "checkpoints" / "X3D_XS.pyth"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model_state": state, "epoch": 300}, ckpt)
    model_zoo.clear_cache()
    m = load_model("x3d_xs", pretrained=True, device="cpu")
    loaded = m.module.state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert m.module.blocks[-1].activation is None


def test_pytorchvideo_pretrained_offline_fails_fast(no_network):
    with pytest.raises(ModelError, match="network connection") as err:
        load_model("x3d_xs", pretrained=True, device="cpu")
    assert "X3D_XS.pyth" in str(err.value) and no_network == []


def test_reachable_asks_the_host_once_with_its_timeout(monkeypatch):
    """No DNS look-up of a real name: the connection is faked, its arguments checked."""
    calls = []

    def refuse(address, timeout=None):
        calls.append((address, timeout))
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(model_zoo.socket, "create_connection", refuse)
    assert not model_zoo.reachable("https://model-zoo-test.invalid/X3D_XS.pyth", timeout=2.0)
    assert not model_zoo.reachable("http://example.invalid:8080/x", timeout=0.5)
    assert calls == [(("model-zoo-test.invalid", 443), 2.0), (("example.invalid", 8080), 0.5)]
    assert not model_zoo.reachable("https://bad-port.invalid:http/x")   # a malformed URL is "not reachable"


def test_reachable_says_yes_to_a_listening_port():
    with socket.socket() as server:       # bound and listening for the whole test: no free-port race
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert model_zoo.reachable(f"http://127.0.0.1:{port}/weights.pth", timeout=5.0)


def test_wrong_checkpoint_is_a_model_error(tmp_path, monkeypatch):
    import model_zoo.pytorchvideo_models as pv
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ckpt = pv.checkpoint_path(get_entry("x3d_xs").weights)
    ckpt.parent.mkdir(parents=True)
    torch.save({"model_state": {"blocks.0.weight": torch.zeros(1)}}, ckpt)
    model_zoo.clear_cache()
    with pytest.raises(ModelError, match="does not fit"):
        load_model("x3d_xs", pretrained=True, device="cpu")


# ------------------------------------------------------------------------------------------ users' files
class UserNet(nn.Module):
    """(B,T,C,H,W) -> (B,3); module-level so that torch.save(whole module) can be unpickled."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x.permute(0, 2, 1, 3, 4)).mean((2, 3, 4)))


SIDECAR = {"frames": 4, "crop": 16, "mean": [0.4, 0.5, 0.6], "std": 0.25, "layout": "BTCHW",
           "labels": "labels.txt", "resize_side": 20, "gradcam_layer": "conv", "sampling_rate": 3}


def _expected(net, clip):
    mean = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1, 1)
    with torch.no_grad():
        return net(((clip - mean) / 0.25).permute(0, 2, 1, 3, 4))


@pytest.mark.parametrize("fmt", ["torchscript", "torch.save"])
def test_user_file_with_sidecar(fmt, tmp_path):
    torch.manual_seed(0)
    net = UserNet().eval()
    path = tmp_path / "net.pt"
    if fmt == "torchscript":
        torch.jit.script(net).save(str(path))
    else:
        torch.save(net, path)
    (tmp_path / "labels.txt").write_text("walk\nrun\n\njump\n")
    (tmp_path / "net.pt.json").write_text(json.dumps(SIDECAR))
    model_zoo.clear_cache()
    m = load_model(str(path), device="cpu")
    assert m.labels == ["walk", "run", "jump"] and (m.num_frames, m.crop_size, m.resize_side) == (4, 16, 20)
    assert m.sampling_rate == 3 and not m.training
    clip = torch.rand(2, 3, 4, 16, 16)
    mask = torch.ones(1, 1, 4, 16, 16, requires_grad=True)
    y = m(clip * mask)
    assert torch.allclose(y.detach(), _expected(net, clip), atol=1e-5)
    y[0, 2].backward()
    assert mask.grad.abs().sum() > 0 and all(p.grad is None for p in m.parameters())


def test_user_file_with_sidecar_dict_and_json_labels(tmp_path):
    from model_zoo import user_models
    path = tmp_path / "model.ts"
    torch.jit.script(UserNet()).save(str(path))
    (tmp_path / "names.json").write_text(json.dumps({"a": 0, "c": 2, "b": 1}))
    m = user_models.load(path, sidecar=dict(SIDECAR, labels=str(tmp_path / "names.json"), layout="BTCHW"))
    assert m.labels == ["a", "b", "c"]


@pytest.mark.parametrize("change, match", [
    ({"frames": None}, "lacks frames"),
    ({"colour": "rgb"}, "Unknown sidecar key"),
    ({"layout": "BHWC"}, "layout"),
    ({"mean": [0.5, 0.5]}, "3 values"),
    ({"crop": "big"}, "Bad sidecar value"),
    ({"labels": ["one", "two"]}, "2 labels"),
    ({"labels": "missing.txt"}, "Cannot read the labels"),
    ({"layout": "BCTHW", "frames": 2}, "fails on a clip"),
    ({"gradcam_layer": "nope"}, "gradcam_layer"),
])
def test_bad_sidecar_is_a_model_error(change, match, tmp_path):
    from model_zoo import user_models
    path = tmp_path / "net.pt"
    torch.jit.script(UserNet()).save(str(path))
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    spec = dict(SIDECAR)
    for k, v in change.items():
        if v is None:
            spec.pop(k)
        else:
            spec[k] = v
    with pytest.raises(ModelError, match=match):
        user_models.load(path, sidecar=spec)


def test_user_file_problems_are_model_errors(tmp_path):
    from model_zoo import user_models
    path = tmp_path / "net.pt"
    torch.jit.script(UserNet()).save(str(path))
    with pytest.raises(ModelError, match="needs a sidecar"):
        user_models.load(path)
    (tmp_path / "net.pt.json").write_text("{not json")
    with pytest.raises(ModelError, match="Cannot read the sidecar"):
        user_models.load(path)
    weights = tmp_path / "weights.pt"
    torch.save(UserNet().state_dict(), weights)
    with pytest.raises(ModelError, match="state dict"):
        user_models.load(weights, sidecar=dict(SIDECAR, labels=["a", "b", "c"]))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="neither"):
        user_models.load(junk, sidecar=dict(SIDECAR, labels=["a", "b", "c"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json"):
        user_models.load(tmp_path / "empty")


def test_unknown_names_are_model_errors():
    with pytest.raises(ModelError, match="Unknown model"):
        load_model("x3d_xxl", device="cpu")
    with pytest.raises(ModelError, match="Unknown model"):
        load_model("./no/such/file.pt", device="cpu")
    with pytest.raises(ModelError, match="Unknown model"):
        get_entry("resnet9000")


def test_pretrained_weights_with_architecture_changes_are_refused():
    e = get_entry("x3d_xs")
    with pytest.raises(ModelError, match="pretrained=False"):
        e.build(e, True, depth_factor=1.0)


# --------------------------------------------------------------------------------------------- sampling
def test_frame_indices_follow_the_recipe():
    e = get_entry("x3d_xs")  # 4 frames every 12 frames at 30 fps: a 48-frame window
    idx = frame_indices(e, 300, 30)
    assert idx.tolist() == [126, 142, 157, 173]
    assert np.allclose(np.diff(idx), 47 / 3, atol=1)
    assert np.diff(frame_indices(e, 600, 60)).mean() == pytest.approx(95 / 3, abs=1)  # twice the fps
    assert abs(frame_indices(e, 301, 25).mean() - 150) <= 1  # centred


def test_frame_indices_fall_back_to_uniform():
    e = get_entry("x3d_m")  # 16 x 5 = 80 frames at 30 fps
    assert frame_indices(e, 50, 30).tolist() == np.linspace(0, 49, 16).round().astype(int).tolist()
    ssv2 = get_entry("MCG-NJU/videomae-base-finetuned-ssv2")  # no sampling rate: the whole clip
    assert frame_indices(ssv2, 1000, 30).tolist() == np.linspace(0, 999, 16).round().astype(int).tolist()
    few = frame_indices(e, 5, None)
    assert len(few) == 16 and few.min() == 0 and few.max() == 4 and (np.diff(few) >= 0).all()
    assert frame_indices(small_model("x3d_xs"), 300, 30).tolist() == [126, 142, 157, 173]
    with pytest.raises(ValueError):
        frame_indices(e, 0, 30)


def test_token_grid_reshape_orders():
    t, h, w, c = 2, 3, 4, 5
    grid = torch.arange(t * h * w * c, dtype=torch.float32).view(1, c, t, h, w)
    thw = torch.cat([torch.zeros(1, 1, c), grid.flatten(2).transpose(1, 2)], 1)  # CLS + (t,h,w) tokens
    assert torch.equal(TokenGrid(t, h, w, prefix=1).reshape(thw), grid)
    hwt = grid.permute(0, 3, 4, 2, 1).reshape(1, h * w * t, c)
    assert torch.equal(TokenGrid(t, h, w, order="hwt").reshape((hwt,)), grid)
    with pytest.raises(ValueError):
        TokenGrid(t, h, w).reshape(thw)


@pytest.mark.parametrize("name", PYTORCHVIDEO + HUGGINGFACE)
def test_every_entry_is_explained_end_to_end(name):
    """A short STEP run through the same API as the toy: every family fits the engine."""
    from attribution import explain
    model = small_model(name)
    frames = (np.random.default_rng(0).random((model.num_frames, 40, 52, 3)) * 255).astype(np.uint8)
    e = explain(model, frames, method="step", preset="fast", iterations=2, seed=0)
    assert e.saliency.shape == (model.num_frames, model.crop_size, model.crop_size)
    assert np.isfinite(e.saliency).all() and e.saliency.max() == pytest.approx(1)
    assert all(p.grad is None for p in model.parameters())
