"""Read uploaded videos into uint8 frames and write browser-playable H.264 mp4 files (PyAV only).

``load_video`` is the only door through which a user's file enters the engine, so it is defensive: it
checks size, length and resolution before decoding, samples frames uniformly *in time* (variable frame
rate clips included), shrinks frames while decoding (a 4K upload is never held at full size), applies
the rotation a phone stored in the file, turns every pixel format (gray, 10-bit, alpha, palette) into
RGB uint8, and turns every failure into a ``VideoError`` whose message is one sentence for a person.

``write_video`` writes H.264 / yuv420p / faststart mp4, the one combination every browser plays.

How ``load_video`` decodes (two reads of the file, one decode):

1. *Scan* (``_scan_file``): demux the video packets without decoding them to learn every frame's presentation
   timestamp. This is cheap (about 15 ms for 900 frames) and gives the true frame count even where the
   container reports 0 frames (webm / mkv) and the true times where the frame rate varies.
2. *Pick*: choose the wanted frames from those timestamps (see ``_pick_frames``).
3. *Decode* (``_decode_wanted``): decode from the start, convert to RGB only the wanted frames (matched by
   timestamp), and stop after the last one; a few frames that fail to decode are stood in by their nearest
   decoded neighbour (``_stand_in_missing``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from attribution.errors import ExplorerError, InputError, VideoError

try:
    import av
except ModuleNotFoundError:   # reading and writing files need PyAV; explaining clip tensors does not
    av = None


def _require_av() -> None:
    if av is None:
        raise ExplorerError("Reading or writing video files needs PyAV: pip install av (requirements.txt).")

__all__ = ["Video", "load_video", "load_clip", "write_video", "apply_display_matrix", "MAX_FRAMES"]

MAX_FRAMES = 2000  # most frames one call returns (2000 x 640x360 RGB is 1.4 GB)
# What every reader (API, CLI, batch, app) refuses before decoding; the app lowers MAX_BYTES by VAE_MAX_UPLOAD_MB.
MAX_BYTES = 200 * 2**20          # file size
MAX_SECONDS = 600.0              # video length
MAX_PIXELS = 4096 * 4096         # frame resolution, width x height (4K UHD and DCI 4K fit)
MAX_SIDE = 640                   # frames are shrunk to this while decoding, before the model's own resize

_TEXT = "The file '{name}' is a text file, not a video: upload a video file such as mp4, webm or mov."

_JPEG_RANGE = 2  # AVCOL_RANGE_JPEG: full-range YUV (many phones record it)


@dataclass
class Video:
    """Frames sampled from a video file, with where they came from.

    frames:   uint8 (T, H, W, 3) RGB, upright, longer side <= ``max_side``.
    fps:      the source's average frame rate (frames per second).
    duration: length of the source video track in seconds.
    size:     (W0, H0), the source's display size after rotation, before any resizing.
    indices:  int (T,), index of each returned frame among the source's frames in display order.
    times:    float (T,), time of each returned frame in seconds, 0 = the first frame of the source.
    num_source_frames: how many frames the source video track has.
    """

    frames: np.ndarray
    fps: float
    duration: float
    size: tuple
    indices: np.ndarray
    times: np.ndarray
    num_source_frames: int

    def __len__(self) -> int:
        return len(self.frames)


# --------------------------------------------------------------------------------------------------
# Reading


def load_video(path, num_frames=None, max_side=MAX_SIDE, start=None, end=None, *, sampler=None,
               max_bytes=MAX_BYTES, max_seconds=MAX_SECONDS, max_pixels=MAX_PIXELS) -> Video:
    """Decode ``num_frames`` frames sampled uniformly in time from a video file.

    Args:
        path: the video file (any container / codec FFmpeg reads: mp4, webm, mov, mkv, avi, gif, ...).
        num_frames: how many frames to return, spread uniformly over the clip (or over [start, end]):
            the frames nearest to ``np.linspace(t_first, t_last, num_frames)``; for a constant frame
            rate this is exactly the frame indices ``np.linspace(first, last, num_frames).round()``.
            Frames repeat when ``num_frames`` exceeds the frames available. ``None`` returns every
            frame (at most ``MAX_FRAMES``).
        max_side: the longer side of the returned frames is at most this many pixels (aspect ratio
            kept, never enlarged); ``None`` keeps the source size.
        start, end: optional window in seconds (0 = first frame); only frames inside it are sampled.
        sampler: ``sampler(n, fps) -> indices`` choosing frames among the ``n`` frames inside [start, end] of a
            clip at ``fps`` (a model's recipe, ``VideoClassifier.frame_indices``); replaces ``num_frames``'
            uniform rule. Where the frame rate varies, the indices are read as instants ``index / fps``.
        max_bytes, max_seconds, max_pixels: limits on file size, video length and frame resolution
            (width x height) beyond which the file is refused before it is decoded.

    Returns:
        ``Video`` with ``frames`` uint8 (T, H, W, 3) RGB.

    Raises:
        VideoError: the file cannot be used (missing, empty, too large, too long, not a video,
            damaged, no frames, resolution too high); the message says what to do.
        InputError: an argument is wrong (``num_frames`` < 1, a window without frames, ...).
    """
    try:
        return _load_video(path, num_frames, max_side, start, end, max_bytes, max_seconds, max_pixels, sampler)
    except ExplorerError:
        raise
    except MemoryError:
        raise VideoError(f"The video '{_name(path)}' needs more memory than is available: "
                         "ask for fewer frames or a smaller max_side.") from None
    except Exception as e:  # PyAV raises many types; a person should only ever see a VideoError
        raise VideoError(f"The video '{_name(path)}' could not be read ({_reason(e)}): "
                         "it may be damaged; export it again as mp4 (H.264) and retry.") from e


def load_clip(path, model, start=None, end=None, **kwargs) -> Video:
    """The frames of ``path`` that ``model`` sees: its own sampling recipe, applied to [start, end].

    Every path that reads a file for a model (``explain``, the app, the CLI, ``batch``, the benchmarks) goes
    through here, so they all show the model the same frames. ``model`` is anything with ``num_frames`` and,
    optionally, ``frame_indices(n, fps)`` (a :class:`model_zoo.VideoClassifier`); without it the frames are
    spread uniformly. ``kwargs`` go to :func:`load_video` (``max_side`` and the size limits).
    """
    return load_video(path, num_frames=model.num_frames, start=start, end=end,
                      sampler=getattr(model, "frame_indices", None), **kwargs)


def _load_video(path, num_frames, max_side, start, end, max_bytes, max_seconds, max_pixels, sampler):
    """``load_video``'s steps (the module docstring): check the request, scan, pick, decode."""
    start, end = _check_request(num_frames, max_side, start, end)
    path = _check_file(path, max_bytes)
    scan, duration = _scan_file(path, max_seconds, max_pixels)
    positions = _pick_frames(scan.times, num_frames, start, end, scan.uniform, duration, sampler, scan.fps)
    wanted = set(scan.keys[positions].tolist())
    kept, size = _decode_wanted(path, scan, wanted, max_side, max_pixels)
    positions = _stand_in_missing(kept, wanted, positions, scan, path.name)
    return Video(
        frames=np.stack([kept[k] for k in scan.keys[positions].tolist()]),
        fps=scan.fps,
        duration=float(duration),
        size=size,
        indices=positions.astype(np.int64),
        times=scan.times[positions],
        num_source_frames=len(scan.times),
    )


def _check_request(num_frames, max_side, start, end) -> tuple[float, float]:
    """(start, end) in seconds (None: 0 and infinity); InputError on a bad num_frames, max_side or window."""
    if num_frames is not None and not 1 <= int(num_frames) <= MAX_FRAMES:
        raise InputError(f"num_frames must be between 1 and {MAX_FRAMES}, got {num_frames}.")
    if max_side is not None and int(max_side) < 1:
        raise InputError(f"max_side must be a positive number of pixels, got {max_side}.")
    start = 0.0 if start is None else float(start)
    end = np.inf if end is None else float(end)
    if start < 0 or end <= start:
        raise InputError(f"start and end must satisfy 0 <= start < end (seconds), got start={start}, "
                         f"end={end}.")
    return start, end


def _scan_file(path: Path, max_seconds, max_pixels) -> tuple[_Scan, float]:
    """The first read: check resolution and length, scan every frame's timestamp; (scan, duration in seconds)."""
    with _open(path) as container:
        stream = _video_stream(container, path.name)
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_resolution(width, height, max_pixels)
        header_duration = _header_duration(container, stream)
        if header_duration is not None:
            _check_length(header_duration, max_seconds)
        scan = _scan(container, stream, path.name, max_seconds)
        # The container's duration can include a longer audio track; the scan measures the video itself.
        duration = float(stream.duration * stream.time_base) if stream.duration else scan.duration
    return scan, duration


def _decode_wanted(path: Path, scan: _Scan, wanted: set, max_side, max_pixels):
    """The second read: decode until every wanted frame is in. Returns (kept, size): kept maps a frame's key to
    its RGB uint8 (h,w,3), scaled to max_side and upright; size is the clip's (width, height) as displayed
    (None when no frame decoded)."""
    with _open(path) as container:
        stream = _video_stream(container, path.name)
        stream.thread_type = "AUTO"
        sar = stream.codec_context.sample_aspect_ratio
        kept, matrix, size = {}, None, None
        for frame, key in _decode(container, stream, scan):
            if size is None:  # the first frame fixes size and orientation for the whole clip
                width, height = frame.width, frame.height
                _check_resolution(width, height, max_pixels)
                matrix = _display_matrix(frame)
                display_w = width * float(sar) if sar and sar > 0 else float(width)
                out_w, out_h = _fit(display_w, height, max_side)
                size = _display_size(display_w, height, matrix)
            if key in wanted and key not in kept:
                kept[key] = apply_display_matrix(_to_rgb(frame, out_w, out_h), matrix)
                if len(kept) == len(wanted):
                    break
    return kept, size


def _display_size(display_w: float, height: int, matrix) -> tuple[int, int]:
    """(width, height) of a frame as shown: the display width and height, swapped when the matrix turns it."""
    size = (round(display_w), height)
    if _swaps_axes(matrix):
        size = size[::-1]
    return int(size[0]), int(size[1])


def _stand_in_missing(kept: dict, wanted: set, positions: np.ndarray, scan: _Scan, name: str) -> np.ndarray:
    """The positions, each undecodable frame replaced by the nearest one that decoded; VideoError when no frame
    or at most half of the wanted ones decoded."""
    if not kept:
        raise VideoError(f"No frame of the video '{name}' could be decoded: the file is probably "
                         "damaged; export or upload it again.")
    missing = wanted - kept.keys()
    if len(missing) > len(wanted) // 2:
        raise VideoError(f"The video '{name}' is damaged: {len(missing)} of the {len(wanted)} frames "
                         "needed could not be decoded; export or upload it again.")
    if missing:
        # A few undecodable frames (a damaged packet) should not sink the whole clip: stand in the
        # nearest frame that did decode, and report its true index and time.
        found = np.flatnonzero(np.isin(scan.keys, list(kept)))
        positions = np.array([p if scan.keys[p] in kept else found[np.abs(found - p).argmin()]
                              for p in positions])
    return positions


def _in_temp(path: Path) -> bool:
    """Whether ``path`` lies in the system's temporary folder (where the app's uploads are)."""
    try:
        return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(tempfile.gettempdir()))
    except (OSError, ValueError):
        return False


def _check_file(path, max_bytes) -> Path:
    try:
        path = Path(os.fspath(path))
    except TypeError:
        raise InputError(f"Expected a path to a video file, got {type(path).__name__}.") from None
    if not path.exists():
        # the path as given (a command line's), but not the server's own upload folder (the app's)
        shown = path.name if _in_temp(path) else str(path)
        raise VideoError(f"The file '{shown}' does not exist: check the path, or upload the video again.")
    if path.is_dir():
        raise VideoError(f"'{path.name}' is a folder, not a video file: choose a video file inside it.")
    size = path.stat().st_size
    if size == 0:
        raise VideoError(f"The file '{path.name}' is empty (0 bytes): the upload probably failed; "
                         "upload the video again.")
    if max_bytes is not None and size > max_bytes:
        raise VideoError(f"The file '{path.name}' is too large ({_megabytes(size)}, the limit is "
                         f"{_megabytes(max_bytes)}): trim or compress the video and try again.")
    return path


class _open:
    """``av.open`` for reading, with the errors of opening turned into messages for people."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        _require_av()
        name = self.path.name
        try:
            self.container = av.open(str(self.path), "r", metadata_errors="ignore")
        except av.error.PermissionError:
            raise VideoError(f"The file '{name}' cannot be read (permission denied): check its "
                             "permissions.") from None
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError):
            head = _head(self.path)
            if _looks_like_text(head):
                raise VideoError(_TEXT.format(name=name)) from None
            if head[4:8] == b"ftyp" or head[:4] in (b"\x1a\x45\xdf\xa3", b"RIFF"):  # mp4/mov, mkv/webm, avi
                raise VideoError(f"The file '{name}' is a damaged or incomplete video (perhaps the upload "
                                 "or export was cut off): export or upload it again.") from None
            raise VideoError(f"The file '{name}' is not a video that can be read, or it is damaged: "
                             "upload an mp4, webm or mov file.") from None
        fmt = self.container.format.name
        if fmt == "tty":  # FFmpeg shows .txt files as a "video" of rendered text
            self.container.close()
            raise VideoError(_TEXT.format(name=name))
        # A picture opens as a one-frame "video" (demuxers image2 and *_pipe), but a user who uploads
        # one has picked the wrong file, and a video model cannot explain a picture.
        if fmt == "image2" or fmt.endswith("_pipe"):
            self.container.close()
            kind = fmt.removesuffix("_pipe").upper() if fmt.endswith("_pipe") else "image"
            raise VideoError(f"The file '{name}' is a still image ({kind}), not a video: upload a "
                             "video file such as mp4, webm or mov.")
        return self.container

    def __exit__(self, *exc):
        self.container.close()
        return False


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4096)


def _looks_like_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:  # a multi-byte character cut at the 4096-byte boundary is fine
        return e.start >= len(head) - 3
    return True


def _video_stream(container, name):
    """The first real video track (cover art in music files also counts as "video" in FFmpeg)."""
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    for stream in videos:
        if stream.codec_context is not None:
            return stream
    if videos:
        raise VideoError(f"The video in '{name}' uses a codec that cannot be decoded here: export it "
                         "as mp4 (H.264) and try again.")
    if container.streams.audio:
        raise VideoError(f"The file '{name}' contains only audio, no video track: upload a video file.")
    if not len(container.streams):
        # What an mp4 cut before its index (the moov atom, often at the end) looks like.
        raise VideoError(f"The file '{name}' is damaged or incomplete (perhaps the upload or export "
                         "was cut off): export or upload it again.")
    raise VideoError(f"The file '{name}' has no video track: upload a video file such as mp4 or webm.")


def _check_resolution(width, height, max_pixels):
    if max_pixels is not None and width * height > max_pixels:
        raise VideoError(f"The video's resolution is too high ({width}x{height} pixels, the limit is "
                         f"{max_pixels / 1e6:.3g} megapixels): downscale it and try again.")


def _check_length(seconds, max_seconds):
    if max_seconds is not None and seconds > max_seconds:
        raise VideoError(f"The video is too long ({_clock(seconds)}, the limit is {_clock(max_seconds)}): "
                         "trim it to the part you want explained and try again.")


def _header_duration(container, stream):
    """Length of the video track in seconds as the container states it, or None if it does not."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return None


@dataclass
class _Scan:
    """Every frame of the video track, in display order, learnt by demuxing without decoding.

    keys:  int (N,) what a decoded frame is matched on: its pts (by_timestamp), or else its position
           in decoding order (files without timestamps).
    times: float (N,) seconds from the first frame.
    """

    keys: np.ndarray
    times: np.ndarray
    by_timestamp: bool
    uniform: bool
    fps: float
    duration: float


def _scan(container, stream, name, max_seconds) -> _Scan:
    tb = stream.time_base
    pts, durations, first = [], [], None
    try:
        for packet in container.demux(stream):
            # size 0: the end-of-stream marker; discard: frames an edit list cuts, the decoder drops them.
            if not packet.size or packet.is_discard:
                continue
            pts.append(packet.pts)
            durations.append(packet.duration or 0)
            if packet.pts is not None and tb is not None and max_seconds is not None:
                first = packet.pts if first is None else min(first, packet.pts)
                _check_length(float((packet.pts - first) * tb), max_seconds)
    except av.error.FFmpegError:
        raise VideoError(f"The file '{name}' is damaged (its data cannot be read past frame "
                         f"{len(pts)}): export or upload it again.") from None
    n = len(pts)
    if n == 0:
        raise VideoError(f"The video '{name}' contains no frames: export or upload it again.")
    # Indexes sometimes count an entry or two more than there are pictures (AVI), so only a clear
    # shortfall means the data ends early.
    if stream.frames and n < stream.frames - max(2, stream.frames // 50):
        raise VideoError(f"The file '{name}' is incomplete (it ends after {n} of its {stream.frames} "
                         "frames, perhaps the upload was cut off): upload it again.")

    rate = stream.average_rate or stream.guessed_rate
    by_timestamp = tb is not None and all(p is not None for p in pts)
    if by_timestamp:
        keys = np.unique(np.asarray(pts, dtype=np.int64))
        times = (keys - keys[0]).astype(np.float64) * float(tb)
        steps = np.diff(keys)
        # Timestamps in milliseconds (webm) round a constant rate to steps like 33, 33, 34.
        uniform = len(steps) == 0 or np.ptp(steps) <= max(1.0, 0.02 * np.median(steps))
        step = float(np.median(steps)) * float(tb) if len(steps) else float(max(durations) * tb)
        fps = float(rate) if rate else (1.0 / step if step > 0 else 1.0)
        duration = times[-1] + (step if step > 0 else 1.0 / fps)
    else:
        fps = float(rate) if rate else 25.0  # no timestamps and no rate: assume the PAL rate
        keys = np.arange(n, dtype=np.int64)
        times = keys / fps
        uniform = True
        duration = n / fps
    return _Scan(keys=keys, times=times, by_timestamp=by_timestamp, uniform=uniform, fps=fps,
                 duration=float(duration))


def _pick_frames(times, num_frames, start, end, uniform, duration, sampler=None, fps=None) -> np.ndarray:
    """Positions (into the display-ordered frame list) of the frames to return.

    times (N,) seconds, sorted. Uniform in time: the frame nearest to each of ``num_frames`` evenly
    spaced instants between the first and last frame inside [start, end]. Where the frame rate is
    constant this is computed on indices, which is the same thing without floating-point ties.
    With a ``sampler`` its indices among the frames inside [start, end] are used (as instants
    ``times[first] + index / fps`` where the frame rate varies).
    """
    eps = 1e-6
    inside = np.flatnonzero((times >= start - eps) & (times <= end + eps))
    if len(inside) == 0:
        raise InputError(f"No frame lies between start={start:g} s and end={end:g} s: the video is "
                         f"{duration:.2f} s long.")
    first, last = int(inside[0]), int(inside[-1])
    span = np.arange(first, last + 1)
    if sampler is not None:
        idx = np.asarray(sampler(last - first + 1, fps), dtype=np.float64)
        if uniform:
            return (first + idx).round().astype(np.int64)
        instants = times[first] + idx / fps
        return np.interp(instants, times[first:last + 1], span).round().astype(np.int64)
    if num_frames is None:
        if last - first + 1 > MAX_FRAMES:
            raise VideoError(f"The clip has {last - first + 1} frames, more than the {MAX_FRAMES} that "
                             "can be loaded at once: choose a number of frames to sample, or trim it.")
        return np.arange(first, last + 1)
    if uniform:
        return np.linspace(first, last, int(num_frames)).round().astype(np.int64)
    instants = np.linspace(times[first], times[last], int(num_frames))
    return np.interp(instants, times[first:last + 1], span).round().astype(np.int64)


def _decode(container, stream, scan: _Scan):
    """Yield (frame, key) for each decoded frame in display order; key as in ``scan.keys``.

    A packet that fails to decode is skipped, as video players do; the caller decides whether the
    frames that came out are enough.
    """
    count = 0

    def key_of(frame):
        if scan.by_timestamp and frame.pts is not None:
            return frame.pts
        return int(scan.keys[count]) if count < len(scan.keys) else None

    try:
        for packet in container.demux(stream):
            try:
                frames = stream.decode(packet)
            except av.error.FFmpegError:
                continue
            for frame in frames:
                yield frame, key_of(frame)
                count += 1
    except av.error.FFmpegError:
        try:  # the demuxer gave up: still collect the frames the decoder holds
            for frame in stream.decode(None):
                yield frame, key_of(frame)
                count += 1
        except av.error.FFmpegError:
            pass


def _fit(width: float, height: float, max_side) -> tuple[int, int]:
    """(w, h) of a frame of display size width x height scaled so that max(w, h) <= max_side."""
    scale = 1.0 if max_side is None else min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(frame, width: int, height: int) -> np.ndarray:
    """uint8 (height, width, 3) RGB of a decoded frame, resized by swscale during the conversion."""
    fmt = frame.format
    options = dict(width=width, height=height)
    if frame.color_range == _JPEG_RANGE:  # otherwise swscale assumes limited range and clips colours
        options["src_color_range"] = _JPEG_RANGE
    if fmt.has_palette or any(c.is_alpha for c in fmt.components):
        # Composite over black (premultiply): the colour of fully transparent pixels is arbitrary.
        rgba = frame.to_ndarray(format="rgba", **options).astype(np.uint16)
        return ((rgba[..., :3] * rgba[..., 3:] + 127) // 255).astype(np.uint8)
    return frame.to_ndarray(format="rgb24", **options)


def _display_matrix(frame):
    """The frame's 3x3 display matrix (FFmpeg layout, 9 int32), or None."""
    for side_data in frame.side_data:
        if side_data.type.name == "DISPLAYMATRIX":
            return np.frombuffer(bytes(side_data), dtype=np.int32)[:9].copy()
    return None


def _swaps_axes(matrix) -> bool:
    return matrix is not None and abs(int(matrix[0])) < abs(int(matrix[1]))


def apply_display_matrix(image: np.ndarray, matrix) -> np.ndarray:
    """Turn a decoded picture upright as its display matrix (phone rotation metadata) asks.

    image: (H, W, ...) array. matrix: 9 numbers in FFmpeg's DISPLAYMATRIX layout or None.
    The matrix maps a source pixel (x, y), y pointing down, to (a·x + c·y, b·x + d·y) with
    a, b, c, d = matrix[0], matrix[1], matrix[3], matrix[4]. Rotations are rounded to the nearest
    quarter turn (what players do); mirrors are applied. ``VideoFrame.rotation`` = 90, i.e.
    matrix (0, -1, ·, 1, 0, ...), gives ``np.rot90(image, 1)`` (counter-clockwise), as FFmpeg's
    autorotate does.
    """
    if matrix is None:
        return image
    a, b, c, d = (int(matrix[i]) for i in (0, 1, 3, 4))
    if abs(a) >= abs(b):  # x stays x: at most mirrors
        out = image
        if a < 0:
            out = out[:, ::-1]
        if d < 0:
            out = out[::-1]
    else:  # x' = c·y, y' = b·x: a transpose, then mirrors
        out = np.swapaxes(image, 0, 1)
        if b < 0:
            out = out[::-1]
        if c < 0:
            out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _name(path) -> str:
    try:
        return Path(os.fspath(path)).name
    except TypeError:
        return str(path)


def _reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return text.split(":")[0].strip().rstrip(".")


def _clock(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.1f} min"


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.3g} MB"


# --------------------------------------------------------------------------------------------------
# Writing and probing


def write_video(frames, path, fps=8, crf=18):
    """Write frames as an mp4 that browsers play: H.264 (libx264), yuv420p, BT.709, faststart.

    Args:
        frames: uint8 (T, H, W, 3) RGB, or (T, H, W) gray; a numpy array or anything
            ``np.asarray`` accepts (e.g. a CPU torch tensor).
        path: output file; its parent folder must exist. Written as mp4 whatever the suffix.
        fps: frames per second, float or Fraction (stored as a fraction with denominator <= 1001,
            so a source's float(30000/1001) comes back as NTSC 30000/1001).
        crf: x264 quality, 0 (lossless) .. 51; 18 is visually lossless, 23 the x264 default.

    yuv420p needs even width and height: an odd size is padded by one row / column repeating the edge
    pixels (not cropped, so no content is lost; the output is then one pixel larger).
    The moov atom (the index) is written before the data (``movflags=faststart``) so a browser can
    start playing before the whole file arrived.

    Returns:
        ``path``.
    """
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise InputError(f"write_video expects uint8 frames (0..255), got dtype {arr.dtype}; "
                         "convert with (x * 255).round().astype(np.uint8) for frames in [0, 1].")
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] != 3 or min(arr.shape[:3]) < 1:
        raise InputError(f"write_video expects frames of shape (T, H, W, 3) or (T, H, W), got "
                         f"{tuple(np.shape(frames))}.")
    _, h, w, _ = arr.shape
    if h % 2 or w % 2:
        arr = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    try:
        rate = Fraction(fps).limit_denominator(1001)
    except (TypeError, ValueError):
        raise InputError(f"fps must be a positive number, got {fps!r}.") from None
    if rate <= 0:
        raise InputError(f"fps must be a positive number, got {fps!r}.")

    _require_av()
    created = not os.path.lexists(path)
    try:
        with av.open(os.fspath(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = arr.shape[2], arr.shape[1], "yuv420p"
            stream.options = {"crf": str(int(crf)), "preset": "medium"}
            # Tag what we convert to: untagged H.264 is shown as BT.601 by some browsers, BT.709 by others.
            cc = stream.codec_context
            cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1  # BT.709, limited
            for rgb in arr:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    except (av.error.FFmpegError, OSError) as e:
        if created and os.path.isfile(path):   # the half-written file this call made: leave nothing behind
            os.unlink(path)
        raise VideoError(f"The video could not be written to '{_name(path)}' ({_reason(e)}): check that "
                         "the folder exists and is writable.") from e
    return path
