"""Probe images and videos with PyAV (the library musubi-tuner decodes videos with): what musubi will see.

Only what is needed is decoded: an image's only frame; a video's first frame (size, pixel format, rotation) and its
last keyframe (the end of the file is readable). Frames are counted from the demuxed packets, not from the header (webm and mkv
have none; a header can lie) and not by decoding (slow). Packet timestamps tell the frame rate and whether it varies.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

# What users may put in the zip; all are also in musubi's IMAGE_EXTENSIONS / VIDEO_EXTENSIONS
# (dataset/media_utils.py), which match lower- or upper-case only, so dataset files get lower-case extensions.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".mkv", ".avi")
VFR_TOLERANCE = 0.1  # a frame interval more than 10% off the median one makes the frame rate variable
# musubi opens images with Pillow (dataset/datasources.py), whose decompression-bomb guard warns above
# Image.MAX_IMAGE_PIXELS and raises DecompressionBombError above twice that.
PILLOW_MAX_PIXELS = 89_478_485
TRUNCATION_SLACK_FRAMES = 2  # packets may end this many frame intervals before the declared duration


class MediaError(Exception):
    """The file cannot be used: the message says why (not decodable, no video stream, no frames, truncated)."""


@dataclass(frozen=True)
class MediaInfo:
    """What musubi will see of one file.

    `width`/`height`: pixels of the decoded frame (rotation metadata not applied, as musubi does not apply it).
    `pix_fmt`/`codec`: FFmpeg's names (e.g. 'rgba', 'pal8', 'gray16be'; 'mjpeg'). Videos only: `frames` counted
    from packets, `header_frames` what the container declares (0: nothing), `fps` average frames per second (None
    when unknown), `vfr` variable frame rate, `duration` seconds, `rotation` degrees from the display matrix.
    """

    kind: str
    width: int
    height: int
    pix_fmt: str | None = None
    codec: str | None = None
    frames: int | None = None
    header_frames: int | None = None
    fps: float | None = None
    vfr: bool = False
    duration: float | None = None
    rotation: int = 0
    declared_duration: float | None = None

    def cut_short(self) -> bool:
        """True when the frames end well before the duration the container declares: a file cut off mid-stream
        (mkv and webm keep their full duration in the header), or a header that is wrong."""
        if not (self.fps and self.duration and self.declared_duration):
            return False
        return self.declared_duration - self.duration > TRUNCATION_SLACK_FRAMES / self.fps + 0.05


def kind_of(name: str) -> str | None:
    """'image', 'video' or None from a file name's extension (case-insensitive)."""
    ext = Path(name).suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


def probe(path: Path, kind: str) -> MediaInfo:
    """Describe `path` as an 'image' or 'video'. Raises MediaError with the reason when it cannot be used.
    Thread-safe: FFmpeg's messages are captured per thread, never printed."""
    import av
    import av.logging

    _enable_ffmpeg_log()
    try:
        with av.logging.Capture(local=True) as logs:
            if kind == "video":
                return _probe_video(path)
            info = _probe_image(path)
        _check_image_log(logs)
        return info
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, EOFError, IndexError) as e:
        raise MediaError(f"PyAV cannot decode it ({type(e).__name__}: {e})") from None


_log_enabled = False


def _enable_ffmpeg_log() -> None:
    """PyAV (13+) silences FFmpeg by default; its warnings are needed to see damage FFmpeg conceals."""
    global _log_enabled
    if not _log_enabled:
        import av.logging

        av.logging.set_level(av.logging.WARNING)
        _log_enabled = True


def _check_image_log(logs: list) -> None:
    """FFmpeg conceals a truncated JPEG ("EOI missing, emulating") where Pillow, which musubi uses, raises."""
    import av.logging

    damage = [msg.strip() for level, _, msg in logs if level <= av.logging.ERROR or "EOI missing" in msg]
    if damage:
        raise MediaError(f"is truncated or corrupt (FFmpeg: {damage[0]})")


def _probe_image(path: Path) -> MediaInfo:
    import av

    with av.open(str(path)) as container:
        stream = _video_stream(container)
        frame = _first_frame(container, stream)
    if frame.width * frame.height > 2 * PILLOW_MAX_PIXELS:
        raise MediaError(
            f"has {frame.width}x{frame.height} pixels, more than Pillow (which musubi uses) opens "
            f"({2 * PILLOW_MAX_PIXELS})"
        )
    return MediaInfo("image", frame.width, frame.height, frame.format.name, stream.codec_context.name)


def _probe_video(path: Path) -> MediaInfo:
    import av

    with av.open(str(path)) as container:
        stream = _video_stream(container)
        first = _first_frame(container, stream)
        width, height, pix_fmt = first.width, first.height, first.format.name
        rotation = _rotation(first)
        codec, header_frames = stream.codec_context.name, stream.frames
        average_rate = float(stream.average_rate) if stream.average_rate else None
        declared = container.duration / 1_000_000 if container.duration else None  # AV_TIME_BASE units
    pts, time_base = _packet_times(path)
    if not pts:
        raise MediaError("contains no video frames")
    _check_last_frames(path, max(pts))
    fps, vfr = _frame_rate(pts, time_base, average_rate)
    duration = len(pts) / fps if fps else None
    return MediaInfo(
        "video", width, height, pix_fmt, codec, len(pts), header_frames, fps, vfr, duration, rotation, declared
    )


def _video_stream(container):
    if not container.streams.video:
        raise MediaError("has no video stream (audio only)" if container.streams.audio else "has no video stream")
    return container.streams.video[0]


def _first_frame(container, stream):
    for frame in container.decode(stream):
        return frame
    raise MediaError("contains no decodable frame")


def _packet_times(path: Path) -> tuple[list[int], float]:
    """Timestamps of the packets musubi's decoder turns into frames (non-empty, not flagged discard)."""
    import av

    pts: list[int] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        time_base = float(stream.time_base) if stream.time_base else 0.0
        try:
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    pts.append(packet.pts if packet.pts is not None else len(pts))
        except (av.error.FFmpegError, EOFError) as e:
            raise MediaError(f"is truncated or corrupt after {len(pts)} frames ({e})") from None
    return pts, time_base


def _check_last_frames(path: Path, last_pts: int) -> None:
    """Seek to the keyframe before the last packet and decode it: a file cut off or damaged at its end fails here.
    Only keyframes are decoded (skip_frame NONKEY): a long GOP of a 1080p clip would cost a second per file, and
    truncation after the keyframe shows in the demuxing and the declared duration instead."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        try:
            container.seek(last_pts, stream=stream, backward=True, any_frame=False)
            decoded = sum(1 for _ in container.decode(stream))
        except (av.error.FFmpegError, EOFError) as e:
            raise MediaError(f"its last frames do not decode: truncated or corrupt ({e})") from None
    if decoded == 0:
        raise MediaError("its last frames do not decode: truncated or corrupt")


def _frame_rate(pts: list[int], time_base: float, average_rate: float | None) -> tuple[float | None, bool]:
    """(frames per second, variable?) from the packets' presentation times; the container's average rate when the
    timestamps cannot tell (one frame, no time base). Containers with millisecond times (mkv, webm) round every
    interval, so one tick of difference never counts as variable."""
    times = sorted(pts)
    deltas = [b - a for a, b in zip(times, times[1:]) if b > a]
    if not deltas or not time_base:
        return average_rate, False
    median = sorted(deltas)[len(deltas) // 2]
    vfr = any(abs(d - median) > max(VFR_TOLERANCE * median, 1) for d in deltas)
    span = (times[-1] - times[0]) * time_base
    measured = (len(times) - 1) / span if span > 0 else None
    return (average_rate if average_rate and not vfr else measured), vfr


def _rotation(frame) -> int:
    """Degrees of the display matrix on a decoded frame (0 when none): phones store portrait video this way."""
    import av

    for side_data in frame.side_data:
        if side_data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            m = struct.unpack("<9i", bytes(side_data)[:36])
            scale0, scale1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
            if not scale0 or not scale1:
                return 0
            angle = -math.degrees(math.atan2(m[1] / scale1, m[0] / scale0))  # FFmpeg's av_display_rotation_get
            return round(angle) % 360
    return 0
