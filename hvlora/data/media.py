"""Probe media with the library musubi-tuner loads them with: what musubi will see.

Images: Pillow, as musubi's dataset/datasources.py (`Image.open`, then `convert("RGB")` unless RGB/RGBA): what
raises there is what musubi would crash on, and what opens there trains (an animated WebP too).
Videos: PyAV, as musubi's load_video. Only what is needed is decoded: the first frame (size, pixel format, rotation,
sample aspect ratio) and the last keyframe (the end of the file is readable). Frames are counted from the demuxed
packets, not from the header (webm and mkv have none; a header can lie) and not by decoding (slow). Packet
timestamps tell the frame rate and whether it varies.
"""

from __future__ import annotations

import math
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# What users may put in the zip; all are also in musubi's IMAGE_EXTENSIONS / VIDEO_EXTENSIONS
# (dataset/media_utils.py), which match lower- or upper-case only, so dataset files get lower-case extensions.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".mkv", ".avi")
VFR_TOLERANCE = 0.1  # a frame interval more than 10% off the median one makes the frame rate variable
# musubi opens images with Pillow (dataset/datasources.py), whose decompression-bomb guard warns above
# Image.MAX_IMAGE_PIXELS and raises DecompressionBombError above twice that.
PILLOW_MAX_PIXELS = 89_478_485
TRUNCATION_SLACK_FRAMES = 2  # packets may end this many frame intervals before the declared duration
HDR_TRANSFERS = {"arib-std-b67": "HLG", "smpte2084": "PQ"}
# FFmpeg's AVColorTransferCharacteristic / AVColorPrimaries values (libavutil/pixfmt.h) by their FFmpeg names
TRANSFER_NAMES = {1: "bt709", 6: "smpte170m", 8: "linear", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12",
                  16: "smpte2084", 18: "arib-std-b67"}  # fmt: skip
PRIMARY_NAMES = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020", 11: "smpte431", 12: "smpte432"}


class MediaError(Exception):
    """The file cannot be used: the message says why (not decodable, no video stream, no frames, truncated)."""


@dataclass(frozen=True)
class MediaInfo:
    """What musubi will see of one file.

    `width`/`height`: pixels as stored (rotation metadata and EXIF orientation not applied: musubi applies
    neither). `pix_fmt`/`codec`: for videos FFmpeg's names (e.g. 'yuv420p'; 'h264'), for images Pillow's mode and
    format (e.g. 'RGBA', 'P', 'I;16', 'CMYK'; 'JPEG'). `orientation`: an image's EXIF orientation (1 = as stored).
    `transparency`: an image with an alpha channel or a transparent palette colour. `frames`: a video's frames
    counted from packets, an animated image's frame count (None for a still image). Videos only: `header_frames`
    what the container declares (0: nothing), `fps` average frames per second (None when unknown), `vfr` variable
    frame rate, `duration` seconds, `rotation` the clockwise degrees a player turns the picture (the display
    matrix, as exiftool and MediaInfo show it: a phone's portrait video is 90), `sample_aspect_ratio` the pixel
    shape (None or 1 for square pixels), `transfer`/`primaries` the colour tags (FFmpeg's names, e.g.
    'arib-std-b67' for HLG, 'smpte2084' for PQ, 'bt2020'; None when untagged), `bit_depth` bits per sample.
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
    orientation: int = 1
    transparency: bool = False
    sample_aspect_ratio: float | None = None
    transfer: str | None = None
    primaries: str | None = None
    bit_depth: int | None = None

    @property
    def hdr_transfer(self) -> str | None:
        """'HLG' or 'PQ' for an HDR video (what iPhones and Android phones record by default), else None."""
        return HDR_TRANSFERS.get(self.transfer or "")

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


def parses_as(open_file: Callable[[], BinaryIO], kind: str) -> bool:
    """True when the file's header parses as an image (Pillow identifies a format; a pixel count Pillow refuses
    still counts: the probe reports it) or a video (PyAV opens the container and finds a video stream). Reads only
    what that needs from `open_file()`, a readable, seekable binary stream (e.g. a zip entry, decompressed as read)."""
    import warnings

    if kind == "image":
        from PIL import Image

        try:
            with warnings.catch_warnings(), open_file() as f:
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(f) as img:
                    return bool(img.format)
        except Image.DecompressionBombError:
            return True
        except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error):
            return False
    import av

    try:
        with open_file() as f, av.open(f) as container:
            return bool(container.streams.video)
    except (av.error.FFmpegError, OSError, ValueError, EOFError, IndexError):
        return False


def probe(path: Path, kind: str) -> MediaInfo:
    """Describe `path` as an 'image' (Pillow) or 'video' (PyAV). Raises MediaError with the reason when it cannot
    be used. Thread-safe: FFmpeg's messages are captured per thread, never printed."""
    if kind == "image":
        return _probe_image(path)
    import av
    import av.logging

    _enable_ffmpeg_log()
    try:
        with av.logging.Capture(local=True):
            return _probe_video(path)
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


EXIF_ORIENTATION = 0x0112


def _probe_image(path: Path) -> MediaInfo:
    """Open, decode and convert the image exactly as musubi does; anything Pillow raises leaves it out."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # reported from the pixel count
            with Image.open(path) as img:
                mode, fmt, (width, height) = img.mode, img.format, img.size
                orientation = _exif_orientation(img)
                frames = getattr(img, "n_frames", 1)
                img.load()
                transparency = _has_transparency(img)
                if mode not in ("RGB", "RGBA"):
                    img.convert("RGB")
    except Image.DecompressionBombError as e:
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise MediaError(
            f"has {pixels.group(1) if pixels else 'more'} pixels, more than Pillow (which musubi uses) opens "
            f"({2 * PILLOW_MAX_PIXELS}): Pillow refuses it as a decompression bomb"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as e:
        raise MediaError(
            f"Pillow (which musubi opens images with) cannot read it ({e}): it is damaged, truncated or not an image"
        ) from None
    return MediaInfo(
        "image",
        width,
        height,
        mode,
        fmt,
        frames=frames if frames > 1 else None,
        orientation=orientation,
        transparency=transparency,
    )


def write_8_bit_grey(src: Path, dst: Path) -> None:
    """Write a 16-bit greyscale image (Pillow mode I;16 or I) as an 8-bit greyscale PNG, values scaled from 0-65535
    to 0-255 (what a viewer shows). Written to a temporary name, then renamed: `dst` appears complete or not at
    all."""
    from PIL import Image

    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        with Image.open(src) as img:
            img.convert("I").point(lambda v: v * (1 / 257)).convert("L").save(tmp, format="PNG")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _has_transparency(img) -> bool:
    """An alpha channel with a pixel below opaque, or a palette/colour-key transparency (musubi drops both)."""
    if "A" in img.getbands():
        return img.getchannel("A").getextrema()[0] < 255
    t = img.info.get("transparency")
    if isinstance(t, bytes):
        return min(t, default=255) < 255
    return t is not None


def _exif_orientation(img) -> int:
    try:
        value = img.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, struct.error):  # a damaged EXIF block: Pillow still decodes
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _probe_video(path: Path) -> MediaInfo:
    import av

    with av.open(str(path)) as container:
        stream = _video_stream(container)
        first = _first_frame(container, stream)
        width, height, pix_fmt = first.width, first.height, first.format.name
        rotation = _rotation(first)
        transfer, primaries = _colour_tags(stream.codec_context)
        bit_depth = max((c.bits for c in first.format.components), default=None)
        sar = float(stream.sample_aspect_ratio) if stream.sample_aspect_ratio else None
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
        "video",
        width,
        height,
        pix_fmt,
        codec,
        len(pts),
        header_frames,
        fps,
        vfr,
        duration,
        rotation,
        declared,
        sample_aspect_ratio=sar,
        transfer=transfer,
        primaries=primaries,
        bit_depth=bit_depth,
    )


def _colour_tags(codec_context) -> tuple[str | None, str | None]:
    """(transfer, primaries) by FFmpeg's names from the decoder (bitstream VUI or container 'colr'); None when
    unspecified (2) or unknown to these tables."""
    trc, prim = int(codec_context.color_trc or 2), int(codec_context.color_primaries or 2)
    return TRANSFER_NAMES.get(trc), PRIMARY_NAMES.get(prim)


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
    """Clockwise degrees of the display matrix on a decoded frame (0 when none), as exiftool and MediaInfo report
    it: phones store portrait video as landscape frames with 90. FFmpeg's av_display_rotation_get gives the
    counter-clockwise angle (-90 for the same file)."""
    import av

    for side_data in frame.side_data:
        if side_data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            m = struct.unpack("<9i", bytes(side_data)[:36])
            scale0, scale1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
            if not scale0 or not scale1:
                return 0
            angle = -math.degrees(math.atan2(m[1] / scale1, m[0] / scale0))  # FFmpeg's av_display_rotation_get
            return round(-angle) % 360
    return 0
