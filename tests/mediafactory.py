"""Real test media made with PyAV (h264 clips, png/jpg/webp/bmp images) and real zip files, plus the bad inputs
the preflight must catch: audio-only, zero-frame, variable-frame-rate, rotated, truncated and lying-header videos,
16-bit/palette/alpha PNGs, CMYK JPEGs (Pillow), and zips with raw non-UTF-8 names, encrypted or special entries
and understated sizes (patched bytes)."""

from __future__ import annotations

import stat
import struct
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def _frame(width: int, height: int, i: int) -> np.ndarray:
    """An RGB frame with a moving gradient, so encoders produce real, distinct frames."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack(
        [
            (x * 255 // max(1, width - 1) + 7 * i) % 256,
            (y * 255 // max(1, height - 1)) % 256,
            np.full_like(x, (40 * i) % 256),
        ],
        axis=-1,
    )
    return img.astype(np.uint8)


def make_video(
    path: Path,
    frames: int = 9,
    width: int = 96,
    height: int = 64,
    fps: int = 24,
    codec: str | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Encode `frames` frames at `fps` into `path` (container from the extension: mp4/mov/mkv -> h264,
    avi -> mpeg4, webm -> vp9). `options` go to the muxer, e.g. {"movflags": "faststart"}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = codec or (
        "libvpx-vp9" if path.suffix.lower() == ".webm" else "mpeg4" if path.suffix.lower() == ".avi" else "libx264"
    )
    with av.open(str(path), "w", options=options or {}) as out:
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


HDR_TRANSFER = {"hlg": ("arib-std-b67", 18), "pq": ("smpte2084", 16)}  # x265 name, FFmpeg's AVColorTransfer value


def make_hdr_video(path: Path, transfer: str = "hlg", frames: int = 5, width: int = 96, height: int = 64) -> Path:
    """An HDR clip as an iPhone records it: HEVC Main 10 (libx265, yuv420p10le), BT.2020 primaries and matrix, the
    HLG (or PQ) transfer, tagged in the bitstream (x265's VUI) and in the container."""
    name, value = HDR_TRANSFER[transfer]
    path.parent.mkdir(parents=True, exist_ok=True)
    params = f"colorprim=bt2020:transfer={name}:colormatrix=bt2020nc:log-level=error"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx265", rate=24, options={"x265-params": params})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p10le"
        cc = stream.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace = 9, value, 9  # BT.2020, HLG/PQ, BT.2020 non-constant
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_frame(width, height, i), format="rgb24").reformat(format="yuv420p10le")
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


def dataset_zip(
    tmp: Path,
    zip_path: Path,
    *,
    images: dict[str, str] | None = None,
    videos: dict[str, tuple[str, int]] | None = None,
    extra: dict[str, bytes] | None = None,
) -> Path:
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


# --- bad media -------------------------------------------------------------------------------------------------


def make_png(path: Path, pix_fmt: str, width: int = 80, height: int = 48) -> Path:
    """A PNG stored in `pix_fmt`: 'rgb24', 'rgba' (half transparent), 'gray', 'gray16be' (16-bit greyscale) or
    'pal8' (a 16-colour palette)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = _frame(width, height, 3)
    if pix_fmt == "pal8":
        index = (np.arange(width * height).reshape(height, width) % 16).astype(np.uint8)
        palette = np.zeros((256, 4), np.uint8)
        # opaque whichever byte FFmpeg takes as alpha (its pal8 palette is native-endian ARGB): colours in 1 and 2
        palette[:, 0], palette[:16, 1], palette[:16, 2], palette[:, 3] = (
            255,
            np.arange(16) * 16,
            255 - np.arange(16) * 16,
            255,
        )
        frame = av.VideoFrame.from_ndarray((index, palette), format="pal8")  # swscale cannot make pal8
    elif pix_fmt == "rgba":
        rgba = np.concatenate([rgb, np.full((height, width, 1), 128, np.uint8)], axis=-1)
        frame = av.VideoFrame.from_ndarray(rgba, format="rgba")
    else:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_huge_png(path: Path, side: int = 13400) -> Path:
    """A black 1-bit PNG of side x side pixels: 13400^2 is just over Pillow's decompression-bomb limit
    (2 x Image.MAX_IMAGE_PIXELS = 178956970 pixels), yet the file is about 22 kB and PyAV decodes it in ~0.1 s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = av.VideoFrame(side, side, "monob")
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = side, side, "monob"
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_cmyk_jpeg(path: Path, width: int = 80, height: int = 48) -> Path:
    """A CMYK JPEG (as print workflows write them), made with Pillow: FFmpeg's encoder cannot write CMYK."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = _frame(width, height, 3)
    cmyk = np.concatenate([255 - rgb, np.full((height, width, 1), 30, np.uint8)], axis=-1)
    Image.fromarray(cmyk, "CMYK").save(path, format="JPEG", quality=90)
    return path


def make_audio_only(path: Path, seconds: float = 0.3, codec: str = "aac") -> Path:
    """A media file (e.g. .mp4) with one audio stream (a 440 Hz tone) and no video stream."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rate, n = 16000, 1024
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        for i in range(max(1, int(seconds * rate) // n)):
            t = (np.arange(n) + i * n) / rate
            frame = av.AudioFrame.from_ndarray(
                (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, i * n
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_zero_frame_video(path: Path, width: int = 64, height: int = 48) -> Path:
    """A container (.avi: the one muxer that keeps a stream without packets; mp4 drops the track, mkv writes an
    unreadable file) with a video stream and no packets at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        out.start_encoding()
    return path


def make_vfr_video(path: Path, pts_ms: list[int], width: int = 96, height: int = 64) -> Path:
    """A variable-frame-rate clip: one frame at each of `pts_ms` (milliseconds, time base 1/1000)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for i, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(_frame(width, height, i), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


ROTATE_90 = (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)  # tkhd matrix (16.16 / 2.30 fixed point)
ROTATE_180 = (-0x10000, 0, 0, 0, -0x10000, 0, 0, 0, 0x40000000)
ROTATE_270 = (0, -0x10000, 0, 0x10000, 0, 0, 0, 0, 0x40000000)


def rotate_mp4(path: Path, matrix: tuple[int, ...] = ROTATE_90) -> Path:
    """Patch the first track header ('tkhd') matrix of an mp4/mov in place, as phones store portrait video."""
    data = bytearray(path.read_bytes())
    box = data.find(b"tkhd") - 4
    assert box >= 0, f"{path} has no tkhd box"
    at = box + (48 if data[box + 8] == 0 else 60)  # version 0: 32-bit times; version 1: 64-bit times
    data[at : at + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(bytes(data))
    return path


def lie_avi_frames(path: Path, frames: int) -> Path:
    """Patch the first AVI stream header's dwLength (what FFmpeg reports as stream.frames) to `frames`."""
    data = bytearray(path.read_bytes())
    strh = data.find(b"strh")
    assert data[strh + 8 : strh + 12] == b"vids", f"{path}: first stream is not video"
    data[strh + 8 + 32 : strh + 8 + 36] = struct.pack("<I", frames)  # AVISTREAMHEADER.dwLength
    path.write_bytes(bytes(data))
    return path


def box_end(path: Path, box: bytes) -> int:
    """Offset just after the first top-level-or-nested mp4 box named `box` (e.g. b'moov')."""
    data = path.read_bytes()
    start = data.find(box) - 4
    assert start >= 0, f"{path} has no {box!r} box"
    return start + struct.unpack(">I", data[start : start + 4])[0]


def truncate(path: Path, size: int) -> Path:
    """Cut `path` to its first `size` bytes (a download or copy that stopped)."""
    path.write_bytes(path.read_bytes()[:size])
    return path


def corrupt_first_packet(path: Path) -> Path:
    """Overwrite the bytes of the first video packet (the first keyframe) with garbage."""
    with av.open(str(path)) as c:
        packet = next(p for p in c.demux(c.streams.video[0]) if p.size)
        pos, size = packet.pos, packet.size
    data = bytearray(path.read_bytes())
    data[pos : pos + size] = bytes((0xAB, 0x17)) * (size // 2) + b"\x17" * (size % 2)
    path.write_bytes(bytes(data))
    return path


# --- hand-made zip entries -------------------------------------------------------------------------------------


def add_zip_entry(
    zip_path: Path, name: str, data: bytes = b"", *, mode: int | None = None, compress: int = zipfile.ZIP_DEFLATED
) -> Path:
    """Append one entry; `mode` (e.g. stat.S_IFIFO | 0o644) is stored as a Unix st_mode in external_attr."""
    with zipfile.ZipFile(zip_path, "a", compression=compress) as zf:
        info = zipfile.ZipInfo(name)
        info.compress_type = compress
        if mode is not None:
            info.create_system = 3
            info.external_attr = mode << 16
        zf.writestr(info, data)
    return zip_path


def _central_header(data: bytes | bytearray, name: bytes) -> int:
    """Offset of the central directory header of the entry whose raw name is `name`."""
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        n = struct.unpack("<H", data[pos + 28 : pos + 30])[0]
        if data[pos + 46 : pos + 46 + n] == name:
            return pos
        pos = data.find(b"PK\x01\x02", pos + 4)
    raise AssertionError(f"no central directory entry {name!r}")


def rename_zip_entry_raw(zip_path: Path, placeholder: str, raw: bytes, *, central: bool = True) -> Path:
    """Replace an entry's ASCII name by `raw` bytes of the same length in its local and (unless `central` is
    False) central header, leaving the UTF-8 flag clear: e.g. b'caf\\xe9.png' is a latin-1 name that is not
    valid UTF-8."""
    assert len(raw) == len(placeholder)
    data = bytearray(zip_path.read_bytes())
    cd = _central_header(data, placeholder.encode())
    local = struct.unpack("<I", data[cd + 42 : cd + 46])[0]
    assert data[local + 30 : local + 30 + len(raw)] == placeholder.encode()
    if central:
        data[cd + 46 : cd + 46 + len(raw)] = raw
    data[local + 30 : local + 30 + len(raw)] = raw
    zip_path.write_bytes(bytes(data))
    return zip_path


def set_zip_flag(zip_path: Path, name: str | bytes, bit: int, *, central: bool = True, local: bool = True) -> Path:
    """Set a general-purpose flag bit (0x1: encrypted, 0x800: the name is UTF-8) on an entry (found by its name, or
    its raw name bytes) in its local and/or central header."""
    data = bytearray(zip_path.read_bytes())
    cd = _central_header(data, name if isinstance(name, bytes) else name.encode())
    at = struct.unpack("<I", data[cd + 42 : cd + 46])[0]
    for offset, wanted in ((cd + 8, central), (at + 6, local)):  # flag bits: low byte at +8 / +6, high byte next
        if wanted:
            data[offset : offset + 2] = struct.pack("<H", struct.unpack("<H", data[offset : offset + 2])[0] | bit)
    zip_path.write_bytes(bytes(data))
    return zip_path


def set_zip_method(zip_path: Path, name: str, method: int) -> Path:
    """Mark an entry as compressed with zip `method` (9 Deflate64, 93 zstd) in its local and central headers, as
    7-Zip or WinZip write such entries. The data stays what it was: zipfile refuses the method from this field
    before it reads any data, and so does the preflight (from the central directory alone)."""
    data = bytearray(zip_path.read_bytes())
    cd = _central_header(data, name.encode())
    local = struct.unpack("<I", data[cd + 42 : cd + 46])[0]
    data[cd + 10 : cd + 12] = struct.pack("<H", method)
    data[local + 8 : local + 10] = struct.pack("<H", method)
    zip_path.write_bytes(bytes(data))
    return zip_path


class _ExplorerName(zipfile.ZipInfo):
    """A zip entry named as Windows Explorer ("Send to > Compressed folder") names it: the name in the OEM code
    page (CP437 here) with the UTF-8 flag (bit 11) unset, where zipfile would write UTF-8 and set the flag."""

    def _encodeFilenameFlags(self):  # noqa: N802 - zipfile's own method, called for the local and central header
        try:
            return self.filename.encode("cp437"), self.flag_bits & ~0x800
        except UnicodeEncodeError:  # Explorer falls back to UTF-8 (with the flag) for names CP437 cannot hold
            return super()._encodeFilenameFlags()


def explorer_zipinfo(name: str) -> zipfile.ZipInfo:
    """A ZipInfo for `name` as Windows Explorer writes it: Deflate, MS-DOS attributes, a CP437 name without the
    UTF-8 flag."""
    info = _ExplorerName(name)
    info.compress_type, info.create_system = zipfile.ZIP_DEFLATED, 0
    return info


def make_explorer_zip(zip_path: Path, files: dict[str, bytes | Path]) -> Path:
    """A zip as Windows Explorer writes it (see explorer_zipinfo)."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(explorer_zipinfo(name), Path(content).read_bytes() if isinstance(content, Path) else content)
    return zip_path


def make_flat_bmp(path: Path, width: int = 1920, height: int = 1080) -> Path:
    """A screenshot-like 24-bit BMP (as Paint saves it): white with one red rectangle. Deflate packs a
    1920x1080 one about 770x."""
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    ImageDraw.Draw(img).rectangle((width // 5, height // 4, width // 2, 2 * height // 3), fill=(255, 0, 0))
    img.save(path, format="BMP")
    return path


def make_flat_jpeg(path: Path, side: int = 7000) -> Path:
    """Flat-colour JPEG art (one colour, 4:4:4): at 7000x7000 about 1.3 MB that Deflate packs about 600x."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (side, side), (40, 90, 200)).save(path, format="JPEG", quality=95, subsampling=0)
    return path


def set_declared_size(zip_path: Path, name: str, size: int) -> Path:
    """Understate an entry's uncompressed size in the central directory (what zipfile and the preflight trust)."""
    data = bytearray(zip_path.read_bytes())
    cd = _central_header(data, name.encode())
    data[cd + 24 : cd + 28] = struct.pack("<I", size)
    zip_path.write_bytes(bytes(data))
    return zip_path
