"""Tests for attribution/video.py: decoding, sampling, formats, errors and the mp4 writer.

Every fixture is generated with PyAV into tmp_path (small moving squares, a few frames), so the file
runs offline in a few seconds. Where a test must know *which* source frame came back, frame i is
painted with the flat grey level ``_level(i)``, which H.264 keeps to within a few levels.
"""

from fractions import Fraction

import av
import numpy as np
import pytest

from attribution import video as video_module
from attribution.errors import InputError, VideoError
from attribution.video import apply_display_matrix, load_video, write_video
from media import probe_video


def _level(i):
    return 16 + 7 * np.asarray(i)


def _squares(t, h, w, identity=False):
    """uint8 (t, h, w, 3): a white square moving right over a red-green gradient (or grey levels)."""
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[..., 0] = np.linspace(40, 200, w, dtype=np.uint8)[None, None, :]
    frames[..., 1] = np.linspace(40, 200, h, dtype=np.uint8)[None, :, None]
    frames[..., 2] = 90
    side = max(2, min(h, w) // 4)
    for i in range(t):
        if identity:
            frames[i] = _level(i)
        x = (i * 3) % max(1, w - side)
        frames[i, h // 3:h // 3 + side, x:x + side] = 255
    return frames


def _encode(path, frames, codec="libx264", pix_fmt="yuv420p", rate=10, pts=None, time_base=None,
            rotation=None, hflip=False, in_format="rgb24", options=None):
    """Write frames (T,H,W,C) with PyAV, optionally with hand-made pts and a display rotation."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        stream.options = options or ({"preset": "ultrafast"} if codec.startswith("libx26") else {})
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation, hflip=hflip)
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=in_format)
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _mae(a, b):
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).mean()


# --------------------------------------------------------------------------------------------------
# Writing and round trip


def test_round_trip_write_then_load(tmp_path):
    frames = _squares(12, 48, 64)
    out = write_video(frames, tmp_path / "clip.mp4", fps=12)

    info = probe_video(out)
    assert (info["codec"], info["pix_fmt"]) == ("h264", "yuv420p")
    assert (info["width"], info["height"], info["frames"]) == (64, 48, 12)
    assert info["fps"] == pytest.approx(12) and info["duration"] == pytest.approx(1.0)
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat"), "moov must precede mdat (faststart)"
    assert info["faststart"] is True

    v = load_video(out)
    assert v.frames.shape == frames.shape and v.frames.dtype == np.uint8
    assert _mae(v.frames, frames) < 3.0
    assert v.fps == pytest.approx(12) and v.duration == pytest.approx(1.0)
    assert v.num_source_frames == 12 and v.size == (64, 48)
    np.testing.assert_array_equal(v.indices, np.arange(12))
    np.testing.assert_allclose(v.times, np.arange(12) / 12)


def test_write_video_pads_odd_size_by_edge_replication(tmp_path):
    frames = _squares(4, 121, 161)
    out = write_video(frames, tmp_path / "odd.mp4", fps=8)
    info = probe_video(out)
    assert (info["width"], info["height"]) == (162, 122)

    v = load_video(out, max_side=None)
    assert v.frames.shape == (4, 122, 162, 3)
    assert _mae(v.frames[:, :121, :161], frames) < 3.0
    # The added row / column repeat their neighbours instead of adding a black border.
    assert _mae(v.frames[:, -1], v.frames[:, -2]) < 3.0
    assert _mae(v.frames[:, :, -1], v.frames[:, :, -2]) < 3.0


def test_write_video_that_fails_midway_leaves_no_broken_file(tmp_path, monkeypatch):
    """An error while encoding (a full disk, say) is one sentence, and the half-written mp4 is removed; a file
    that could not even be opened is not touched."""
    from attribution.errors import VideoError
    real, calls = video_module.av.VideoFrame.from_ndarray, []

    def full_disk(*a, **k):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(28, "No space left on device")
        return real(*a, **k)
    monkeypatch.setattr(video_module.av.VideoFrame, "from_ndarray", full_disk)
    with pytest.raises(VideoError, match="could not be written"):
        write_video(np.zeros((6, 16, 16, 3), np.uint8), tmp_path / "half.mp4")
    assert calls and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    folder = tmp_path / "a folder"
    folder.mkdir()
    with pytest.raises(VideoError):
        write_video(np.zeros((2, 16, 16, 3), np.uint8), folder)
    assert folder.is_dir()


def test_write_video_accepts_gray_and_fractional_fps_and_rejects_floats(tmp_path):
    gray = _squares(3, 32, 32)[..., 0]
    out = write_video(gray, tmp_path / "gray.mp4", fps=30000 / 1001)
    info = probe_video(out)
    assert info["fps"] == pytest.approx(30000 / 1001)
    assert info["pix_fmt"] == "yuv420p"
    v = load_video(out)
    assert _mae(v.frames, np.repeat(gray[..., None], 3, -1)) < 3.0
    with pytest.raises(InputError, match="uint8"):
        write_video(gray / 255.0, tmp_path / "float.mp4")


# --------------------------------------------------------------------------------------------------
# Sampling


def test_uniform_sampling_picks_linspace_indices(tmp_path):
    path = _encode(tmp_path / "c.mp4", _squares(30, 32, 48, identity=True), rate=10)
    v = load_video(path, num_frames=7)
    expected = np.linspace(0, 29, 7).round().astype(int)
    np.testing.assert_array_equal(v.indices, expected)
    np.testing.assert_allclose(v.times, expected / 10)
    # The frames are the ones the indices name (grey level identifies the frame).
    np.testing.assert_allclose(np.median(v.frames, axis=(1, 2, 3)), _level(expected), atol=3)
    # More frames than the clip has: frames repeat, still in order.
    v = load_video(path, num_frames=45)
    assert len(v.frames) == 45 and np.all(np.diff(v.indices) >= 0)


def test_start_end_trimming(tmp_path):
    path = _encode(tmp_path / "c.mp4", _squares(30, 32, 48, identity=True), rate=10)
    v = load_video(path, start=1.0, end=2.0)
    np.testing.assert_array_equal(v.indices, np.arange(10, 21))
    v = load_video(path, num_frames=3, start=1.0, end=2.0)
    np.testing.assert_array_equal(v.indices, [10, 15, 20])
    np.testing.assert_allclose(np.median(v.frames, axis=(1, 2, 3)), _level([10, 15, 20]), atol=3)
    with pytest.raises(InputError, match="No frame"):
        load_video(path, start=5.0, end=6.0)
    with pytest.raises(InputError):
        load_video(path, start=2.0, end=1.0)


def test_variable_frame_rate_samples_by_time(tmp_path):
    # 20 frames 20 ms apart, then 10 frames 500 ms apart: uniform in time != uniform in index.
    pts = list(range(0, 400, 20)) + list(range(880, 5400, 500))
    path = _encode(tmp_path / "vfr.mp4", _squares(30, 32, 48, identity=True), rate=50, pts=pts,
                   time_base=Fraction(1, 1000))
    v = load_video(path, num_frames=6)
    instants = np.linspace(0, 5.38, 6)
    assert np.all(np.abs(v.times - instants) <= 0.25 + 1e-6), v.times
    assert not np.array_equal(v.indices, np.linspace(0, 29, 6).round())
    np.testing.assert_allclose(v.times, np.asarray(pts)[v.indices] / 1000)
    np.testing.assert_allclose(np.median(v.frames, axis=(1, 2, 3)), _level(v.indices), atol=3)
    assert v.num_source_frames == 30


# --------------------------------------------------------------------------------------------------
# Formats


def test_webm_with_zero_reported_frames(tmp_path):
    path = _encode(tmp_path / "c.webm", _squares(20, 32, 48, identity=True), codec="libvpx-vp9",
                   options={"deadline": "realtime", "cpu-used": "8"})
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # the premise of this test
    v = load_video(path, num_frames=5)
    assert v.num_source_frames == 20 and v.duration == pytest.approx(2.0, abs=0.11)
    np.testing.assert_array_equal(v.indices, np.linspace(0, 19, 5).round())
    np.testing.assert_allclose(np.median(v.frames, axis=(1, 2, 3)), _level(v.indices), atol=4)
    assert probe_video(path)["frames"] == 20


def test_grayscale_source(tmp_path):
    gray = _squares(5, 32, 48)[..., 0]
    path = _encode(tmp_path / "gray.mkv", gray, codec="ffv1", pix_fmt="gray", in_format="gray")
    assert probe_video(path)["pix_fmt"] == "gray"
    v = load_video(path)
    assert v.frames.shape == (5, 32, 48, 3)
    assert np.array_equal(v.frames[..., 0], v.frames[..., 1]) and np.array_equal(v.frames[..., 1], v.frames[..., 2])
    assert _mae(v.frames[..., 0], gray) < 1.5


def test_10bit_source(tmp_path):
    frames = _squares(5, 32, 48)
    path = _encode(tmp_path / "ten.mp4", frames, pix_fmt="yuv420p10le")
    assert probe_video(path)["pix_fmt"] == "yuv420p10le"
    v = load_video(path)
    assert v.frames.dtype == np.uint8 and v.frames.shape == frames.shape
    assert _mae(v.frames, frames) < 4.0


def test_alpha_source_is_composited_over_black(tmp_path):
    rgba = np.zeros((3, 32, 48, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:, :, :24, 3] = 255  # left half opaque, right half transparent
    path = _encode(tmp_path / "alpha.mov", rgba, codec="png", pix_fmt="rgba", in_format="rgba")
    v = load_video(path)
    assert v.frames.shape == (3, 32, 48, 3)
    assert np.all(v.frames[:, :, :24] == (200, 100, 50))
    assert np.all(v.frames[:, :, 24:] == 0)


def test_vp9_alpha_webm_loads(tmp_path):
    rgba = np.concatenate([_squares(4, 32, 48), np.full((4, 32, 48, 1), 255, np.uint8)], axis=-1)
    path = _encode(tmp_path / "alpha.webm", rgba, codec="libvpx-vp9", pix_fmt="yuva420p", in_format="rgba",
                   options={"deadline": "realtime", "cpu-used": "8"})
    v = load_video(path)
    assert v.frames.shape == (4, 32, 48, 3) and _mae(v.frames, rgba[..., :3]) < 6.0


def test_large_frames_are_resized_while_decoding(tmp_path):
    frames = np.zeros((2, 2160, 3840, 3), np.uint8)
    frames[:, 540:1620, 960:2880] = (255, 128, 0)
    path = _encode(tmp_path / "4k.mp4", frames)
    v = load_video(path, max_side=640)
    assert v.frames.shape == (2, 360, 640, 3)
    assert v.size == (3840, 2160)
    np.testing.assert_allclose(v.frames[:, 180, 320], [(255, 128, 0)] * 2, atol=4)
    assert max(load_video(path, max_side=100).frames.shape[1:3]) == 100


# --------------------------------------------------------------------------------------------------
# Rotation


@pytest.mark.parametrize("degrees,hflip,expect", [
    (90, False, lambda a: np.rot90(a, 1)),
    (-90, False, lambda a: np.rot90(a, -1)),
    (180, False, lambda a: np.rot90(a, 2)),
    (90, True, lambda a: np.fliplr(np.rot90(a, 1))),
])
def test_rotation_metadata_is_applied(tmp_path, degrees, hflip, expect):
    frames = np.zeros((3, 32, 64, 3), np.uint8)
    frames[:, :16, :16] = 255  # top-left corner marks the orientation
    frames[:, 16:, 48:] = (0, 0, 255)
    path = _encode(tmp_path / "rot.mp4", frames, rotation=degrees, hflip=hflip)
    assert probe_video(path)["rotation"] == (degrees if degrees != 180 else -180)
    v = load_video(path)
    upright = expect(frames.transpose(1, 2, 0, 3)).transpose(2, 0, 1, 3)
    assert v.frames.shape == upright.shape
    assert _mae(v.frames, upright) < 3.0
    assert v.size == (upright.shape[2], upright.shape[1])


def _matrix(a, b, c, d):
    one = 1 << 16
    return np.array([a * one, b * one, 0, c * one, d * one, 0, 0, 0, 1 << 30], np.int32)


def test_apply_display_matrix_helper():
    image = np.arange(6 * 4).reshape(6, 4)
    assert apply_display_matrix(image, None) is image
    np.testing.assert_array_equal(apply_display_matrix(image, _matrix(1, 0, 0, 1)), image)
    # VideoFrame.rotation = 90 (counter-clockwise): a=cos, b=-sin, c=sin, d=cos.
    np.testing.assert_array_equal(apply_display_matrix(image, _matrix(0, -1, 1, 0)), np.rot90(image, 1))
    np.testing.assert_array_equal(apply_display_matrix(image, _matrix(0, 1, -1, 0)), np.rot90(image, -1))
    np.testing.assert_array_equal(apply_display_matrix(image, _matrix(-1, 0, 0, -1)), np.rot90(image, 2))
    np.testing.assert_array_equal(apply_display_matrix(image, _matrix(-1, 0, 0, 1)), np.fliplr(image))
    np.testing.assert_array_equal(apply_display_matrix(image, _matrix(1, 0, 0, -1)), np.flipud(image))
    # Angles off a quarter turn round to the nearest one (30 degrees -> no turn).
    cos, sin = np.cos(np.pi / 6), np.sin(np.pi / 6)
    tilted = (np.array([cos, -sin, 0, sin, cos, 0, 0, 0, 0]) * (1 << 16)).astype(np.int32)
    np.testing.assert_array_equal(apply_display_matrix(image, tilted), image)


# --------------------------------------------------------------------------------------------------
# Files that cannot be used


def _clip(tmp_path, name="ok.mp4", faststart=False, t=10):
    path = tmp_path / name
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        noise = np.random.default_rng(0).integers(0, 256, (t, 48, 64, 3), dtype=np.uint8)
        for array in noise:  # noise: incompressible, so the media data is most of the file
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


def _audio_only(tmp_path):
    path = tmp_path / "song.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _first_half(tmp_path, faststart):
    data = _clip(tmp_path, faststart=faststart).read_bytes()
    return _write(tmp_path, "half.mp4", data[:len(data) // 2])


def _blank_media(tmp_path):
    data = bytearray(_clip(tmp_path).read_bytes())
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4:at], "big")
    data[at + 4:at - 4 + size] = bytes(size - 8)  # index intact, every picture zeroed
    return _write(tmp_path, "blank.mp4", bytes(data))


def _png_as_mp4(tmp_path):
    path = tmp_path / "photo.mp4"
    av.VideoFrame.from_ndarray(_squares(1, 32, 32)[0], format="rgb24").to_image().save(path, format="PNG")
    return path


BAD_FILES = {
    "missing": (lambda d: d / "nowhere.mp4", {}, "does not exist"),
    "empty": (lambda d: _write(d, "empty.mp4", b""), {}, "empty"),
    "too large": (lambda d: _clip(d), {"max_bytes": 1000}, "too large"),
    "too long": (lambda d: _clip(d), {"max_seconds": 0.5}, "too long"),
    "audio only": (_audio_only, {}, "only audio"),
    "text as mp4": (lambda d: _write(d, "notes.mp4", b"just some words\n" * 20), {}, "text file"),
    "image as mp4": (_png_as_mp4, {}, "still image"),
    "random bytes": (lambda d: _write(d, "noise.mp4", np.random.default_rng(1).bytes(50_000)), {},
                     "not a video"),
    "half, moov at end": (lambda d: _first_half(d, faststart=False), {}, "incomplete"),
    "half, moov first": (lambda d: _first_half(d, faststart=True), {}, "incomplete"),
    "no decodable frame": (_blank_media, {}, "could be decoded"),
    "resolution": (lambda d: _clip(d), {"max_pixels": 1000}, "resolution"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_unusable_files_raise_video_error_with_a_useful_message(tmp_path, case):
    make, limits, keyword = BAD_FILES[case]
    with pytest.raises(VideoError, match=keyword) as info:
        load_video(make(tmp_path), num_frames=4, **limits)
    message = str(info.value)
    assert "\n" not in message and ": " in message  # one sentence: what is wrong, then what to do


def test_too_many_frames_without_num_frames(tmp_path, monkeypatch):
    path = _clip(tmp_path)
    monkeypatch.setattr(video_module, "MAX_FRAMES", 5)
    with pytest.raises(VideoError, match="num|trim"):
        load_video(path)
    assert len(load_video(path, num_frames=5)) == 5


def test_without_pyav_files_say_so_and_clip_tensors_are_still_explained(monkeypatch, tmp_path):
    """A machine without PyAV (a bare GPU box running benchmarks/gpu_check.py) still explains clip tensors;
    reading or writing a file there says in one sentence what is missing."""
    import torch

    from attribution import explain
    from attribution.errors import ExplorerError
    from model_zoo import load_model

    path = tmp_path / "clip.mp4"
    write_video(np.zeros((4, 16, 16, 3), np.uint8), path)
    monkeypatch.setattr(video_module, "av", None)
    with pytest.raises(ExplorerError, match="needs PyAV"):
        load_video(path)
    with pytest.raises(ExplorerError, match="needs PyAV"):
        write_video(np.zeros((4, 16, 16, 3), np.uint8), tmp_path / "out.mp4")
    model = load_model("toy")
    clip = torch.rand(1, 3, model.num_frames, model.crop_size, model.crop_size, generator=torch.Generator().manual_seed(0))
    exp = explain(model, clip, method="gradient")
    assert exp.saliency.shape == (model.num_frames, model.crop_size, model.crop_size)
