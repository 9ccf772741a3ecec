"""Real test media made with PyAV (h264 clips, png/jpg/webp/bmp images) and real zip files."""
from __future__ import annotations

import stat
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def _frame(width: int, height: int, i: int) -> np.ndarray:
    """An RGB frame with a moving gradient, so encoders produce real, distinct frames."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([(x * 255 // max(1, width - 1) + 7 * i) % 256,
                    (y * 255 // max(1, height - 1)) % 256,
                    np.full_like(x, (40 * i) % 256)], axis=-1)
    return img.astype(np.uint8)


def make_video(path: Path, frames: int = 9, width: int = 96, height: int = 64, fps: int = 24,
               codec: str | None = None) -> Path:
    """Encode `frames` frames at `fps` into `path` (container from the extension: mp4/mov/mkv/avi -> h264,
    webm -> vp9)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = codec or ("libvpx-vp9" if path.suffix.lower() == ".webm" else
                      "mpeg4" if path.suffix.lower() == ".avi" else "libx264")
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_frame(width, height, i), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_image(path: Path, width: int = 80, height: int = 48) -> Path:
    """Write one RGB image; the format follows the extension (png, jpg/jpeg, webp, bmp)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    codec = {".png": "png", ".jpg": "mjpeg", ".jpeg": "mjpeg", ".webp": "libwebp", ".bmp": "bmp"}[ext]
    pix = {"png": "rgb24", "mjpeg": "yuvj420p", "libwebp": "yuv420p", "bmp": "bgr24"}[codec]
    frame = av.VideoFrame.from_ndarray(_frame(width, height, 3), format="rgb24").reformat(format=pix)
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream(codec, rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, pix
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_zip(zip_path: Path, files: dict[str, bytes | Path], symlinks: dict[str, str] | None = None) -> Path:
    """A zip with `files` (name -> bytes or a file to copy) and optional Unix symlink entries (name -> target)."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            data = Path(content).read_bytes() if isinstance(content, Path) else content
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return zip_path


def dataset_zip(tmp: Path, zip_path: Path, *, images: dict[str, str] | None = None,
                videos: dict[str, tuple[str, int]] | None = None, extra: dict[str, bytes] | None = None) -> Path:
    """A dataset zip: images {zip path: caption}, videos {zip path: (caption, frames)}, extra raw entries.
    Captions are written beside each media file as `.txt` (skip by passing caption None)."""
    files: dict[str, bytes | Path] = {}
    work = tmp / "src"
    for name, caption in (images or {}).items():
        files[name] = make_image(work / name)
        if caption is not None:
            files[str(Path(name).with_suffix(".txt"))] = caption.encode()
    for name, (caption, frames) in (videos or {}).items():
        files[name] = make_video(work / name, frames=frames)
        if caption is not None:
            files[str(Path(name).with_suffix(".txt"))] = caption.encode()
    files.update(extra or {})
    return make_zip(zip_path, files)
