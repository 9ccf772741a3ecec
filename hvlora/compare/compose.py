"""The pictures of a comparison: one side-by-side video per (prompt, seed) and a contact sheet (family-agnostic).

Side by side: the base model's video left, the LoRA's right, at their own size (width 2 x W), under a band that
labels the halves and gives the prompt and seed; every frame of the shorter video, at the base video's frame
rate; H.264 (yuv420p) MP4 written with PyAV, or a PNG for one-frame "videos". Contact sheet: the middle frame of
each pair (base | LoRA), a row per pair under its prompt line. Everything is written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from ..core.fsutil import atomic_write_bytes
from ..training.plots import draw_label, label_font, middle_frame

BAND_BG = (24, 24, 24)
PAD = 6
SHEET_THUMB = 256  # contact sheet: the longest side of a picture, px
MAX_TITLE_LINES = 2


@dataclass(frozen=True)
class Pair:
    """One comparison: its `title` (the prompt and seed) and the two videos musubi rendered."""

    title: str
    base: Path
    lora: Path


def read_frames(path: Path) -> tuple[list[np.ndarray], Fraction]:
    """Every frame of a video's first stream as RGB arrays [H, W, 3] uint8, and its frame rate (24 if unknown).
    Raises OSError (av.FFmpegError) for a file PyAV cannot decode."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or Fraction(24)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return frames, Fraction(rate)


def side_by_side(pair: Pair, out: Path, labels: tuple[str, str]) -> Path:
    """Write base | LoRA with the label band to `out` (.mp4; .png when the videos have one frame); returns the path
    written. The LoRA's frames are resized to the base's size if they differ (they do not when both runs share the
    settings). Raises ValueError for a video without frames."""
    base, rate = read_frames(pair.base)
    lora, _ = read_frames(pair.lora)
    n = min(len(base), len(lora))
    if n == 0:
        raise ValueError(f"no frames in {pair.base if not base else pair.lora}")
    h, w = base[0].shape[:2]
    band = header(2 * w, w, labels, pair.title)
    frames = [np.vstack([band, np.hstack([base[i], _fit(lora[i], w, h)])]) for i in range(n)]
    if n == 1:
        return _write(out.with_suffix(".png"), lambda f: Image.fromarray(frames[0]).save(f, format="PNG"))
    return _write(out.with_suffix(".mp4"), lambda f: write_mp4(f, frames, rate))


def _fit(frame: np.ndarray, w: int, h: int) -> np.ndarray:
    if frame.shape[:2] == (h, w):
        return frame
    return np.asarray(Image.fromarray(frame).resize((w, h)))


def header(width: int, half: int, labels: tuple[str, str], title: str) -> np.ndarray:
    """The band above a side-by-side frame: `labels` centred over each half, then the title wrapped to at most two
    lines. Its height is even (yuv420p needs even sizes); the font scales with the halves (10-20 px)."""
    size = max(10, min(20, half // 8))
    font = label_font(size)
    line_h = size + 4
    lines = wrap(title, font, width - 2 * PAD)
    height = PAD + line_h * (1 + len(lines)) + PAD
    height += height % 2
    band = Image.new("RGB", (width, height), BAND_BG)
    draw = ImageDraw.Draw(band)
    for i, label in enumerate(labels):
        draw_label(draw, (half * i + half // 2, PAD + line_h // 2), label, font, "mm")
    for j, line in enumerate(lines, 1):
        draw_label(draw, (PAD, PAD + line_h * j), line, font, "la")
    return np.asarray(band)


def wrap(text: str, font, width: int, max_lines: int = MAX_TITLE_LINES) -> list[str]:
    """`text` broken into lines that fit `width` px in `font`; the last kept line ends with '...' when cut."""
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and draw.textlength(last + "...", font=font) > width:
            last = last[:-1]
        lines = lines[: max_lines - 1] + [last.rstrip() + "..."]
    return lines


def write_mp4(f, frames: Sequence[np.ndarray], rate: Fraction) -> None:
    """H.264 yuv420p MP4 of RGB frames (all the same even size) at `rate` frames per second, into the seekable
    binary file `f`."""
    with av.open(f, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def difference(a: Path, b: Path) -> float:
    """Mean absolute difference (0-255) between the middle frames of two videos: 0 means the LoRA changed
    nothing there."""
    fa, fb = middle_frame(a), middle_frame(b)
    if fa is None or fb is None:
        return 0.0
    if fa.size != fb.size:
        fb = fb.resize(fa.size)
    return float(np.abs(np.asarray(fa.convert("RGB"), dtype=np.int16) - np.asarray(fb.convert("RGB"))).mean())


def contact_sheet(pairs: Sequence[Pair], out: Path, labels: tuple[str, str], thumb: int = SHEET_THUMB) -> Path:
    """A PNG with the column labels on top and, per pair, its title line over the base and LoRA middle frames
    (scaled so the longer side is at most `thumb` px). Unreadable videos give grey cells."""
    pictures = [(_picture(p.base, thumb), _picture(p.lora, thumb)) for p in pairs]
    cell_w = max([thumb // 2] + [pic.width for row in pictures for pic in row if pic])
    cell_h = max([thumb // 4] + [pic.height for row in pictures for pic in row if pic])
    size = 14
    font, line_h = label_font(size), size + 6
    width = PAD + 2 * (cell_w + PAD)
    height = line_h + PAD + len(pairs) * (line_h + cell_h + PAD)
    sheet = Image.new("RGB", (width, height), BAND_BG)
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        draw_label(draw, (PAD + c * (cell_w + PAD) + cell_w // 2, line_h // 2 + 2), label, font, "mm")
    y = line_h + PAD
    for pair, row in zip(pairs, pictures):
        draw_label(draw, (PAD, y), wrap(pair.title, font, width - 2 * PAD, 1)[0], font, "la")
        y += line_h
        for c, pic in enumerate(row):
            x = PAD + c * (cell_w + PAD)
            if pic is None:
                draw.rectangle((x, y, x + cell_w - 1, y + cell_h - 1), fill=(128, 128, 128))
            else:
                sheet.paste(pic, (x + (cell_w - pic.width) // 2, y + (cell_h - pic.height) // 2))
        y += cell_h + PAD
    return _write(out, lambda f: sheet.save(f, format="PNG"))


def _picture(path: Path, thumb: int) -> Image.Image | None:
    try:
        image = middle_frame(path)
    except (OSError, ValueError):
        return None
    if image is None:
        return None
    image = image.convert("RGB")
    scale = thumb / max(image.size)
    if scale < 1 or max(image.size) < thumb // 2:  # small renders (a smoke test's 64 px) are enlarged to be seen
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.NEAREST)
    return image


def _write(path: Path, encode) -> Path:
    """encode(an in-memory binary file), then write its bytes to `path` atomically (a few MB at most)."""
    buf = io.BytesIO()
    encode(buf)
    atomic_write_bytes(path, buf.getvalue())
    return path
