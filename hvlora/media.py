"""Probe images and videos with PyAV (the library musubi-tuner itself decodes with): size, frames, fps.

Only what is needed is decoded: the first frame (proves the file decodes and gives the true size); frame counts
come from the stream header, or from counting packets when the header has none (webm, mkv).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# What the issue promises users; all are also in musubi's IMAGE_EXTENSIONS / VIDEO_EXTENSIONS
# (dataset/media_utils.py), which match lower- or upper-case only, so files are given lower-case extensions.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".mkv", ".avi")


class MediaError(Exception):
    """The file cannot be used: the message says why (not decodable, no video stream, no frames)."""


@dataclass(frozen=True)
class MediaInfo:
    """What musubi will see: `kind` 'image' or 'video', `width`/`height` in pixels of the first decoded frame;
    for videos `frames` (count) and `fps` (average frames per second, None when the file does not say)."""

    kind: str
    width: int
    height: int
    frames: int | None = None
    fps: float | None = None


def kind_of(name: str) -> str | None:
    """'image', 'video' or None from a file name's extension (case-insensitive)."""
    ext = Path(name).suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


def probe(path: Path, kind: str) -> MediaInfo:
    """Open `path` with PyAV and describe it. Raises MediaError with the reason when PyAV cannot use it."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError("has no video stream (audio only?)")
            stream = container.streams.video[0]
            first = _first_frame(container, stream)
            if kind == "image":
                return MediaInfo("image", first.width, first.height)
            fps = float(stream.average_rate) if stream.average_rate else None
            frames = stream.frames or _count_packets(path)
            return MediaInfo("video", first.width, first.height, frames=frames, fps=fps)
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as e:
        raise MediaError(f"PyAV cannot decode it ({type(e).__name__}: {e})") from None


def _first_frame(container, stream):
    for frame in container.decode(stream):
        return frame
    raise MediaError("contains no decodable frame")


def _count_packets(path: Path) -> int:
    """Video frames by counting the stream's non-empty packets (one frame each for the codecs in use)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        n = sum(1 for packet in container.demux(stream) if packet.size)
    if n == 0:
        raise MediaError("contains no video frames")
    return n
