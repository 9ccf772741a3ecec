"""Pictures of a run: the loss plot (loss.png) and the contact sheet of musubi's samples (samples.png).

matplotlib is used through its object-oriented API only (`Figure` + `FigureCanvasAgg`): no pyplot, no global
backend switch, nothing shared with other modules. Both files are written atomically (a temporary file in the same
folder, then os.replace). matplotlib is imported when a plot is drawn, not with this module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import av
from PIL import Image, ImageDraw, ImageFont

from ..core.fsutil import atomic_writer

PLOT_SIZE_PX = (1200, 600)  # loss.png: width, height
PLOT_DPI = 100
SHEET_LABEL_W = 110  # contact sheet: the row label column, px
SHEET_LABEL_H = 32  # contact sheet: the column label row, px
SHEET_PAD = 6  # contact sheet: gap around every cell, px
SHEET_BG = (24, 24, 24)
MISSING_GREY = (128, 128, 128)
VIDEO_SUFFIXES = {".mp4", ".webm", ".mkv", ".mov", ".avi"}


# ---------------------------------------------------------------------------------------------------------------
# loss plot


def loss_plot(
    rows: Sequence[dict[str, Any]],
    path: Path,
    checkpoints: Iterable[int] = (),
    resumes: Iterable[int] = (),
    title: str = "",
) -> Path:
    """Draw loss.png (PLOT_SIZE_PX) from metrics rows and return its path.

    rows: dicts with "step" (true global step) and optionally "loss" (per step, drawn thin and light), "avg_loss"
    (drawn bold: musubi's avr_loss; without it a moving average of "loss" over max(5, n/50) steps) and "lr"
    (right axis). None/NaN values leave gaps; rows without a step are skipped; 0 rows draw an empty plot saying
    "no steps yet". checkpoints / resumes: true steps marked with vertical lines (dotted green / dashed red).
    Raises OSError when the file cannot be written (nothing is left behind).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    data = sorted((r for r in rows if isinstance(r.get("step"), int)), key=lambda r: r["step"])
    fig = Figure(figsize=(PLOT_SIZE_PX[0] / PLOT_DPI, PLOT_SIZE_PX[1] / PLOT_DPI), dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    handles = _draw_losses(ax, data) + _draw_lr(ax, data)
    handles += _draw_markers(ax, sorted(set(checkpoints)), color="tab:green", style=":", label="checkpoint")
    handles += _draw_markers(ax, sorted(set(resumes)), color="tab:red", style="--", label="resume")
    if data and data[0]["step"] == data[-1]["step"]:
        ax.set_xlim(data[0]["step"] - 1, data[0]["step"] + 1)
    if not data:
        ax.text(0.5, 0.5, "no steps yet", transform=ax.transAxes, ha="center", va="center", fontsize=16, color="0.4")
        ax.set_xlim(0, 1)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=9)
    ax.set_title(_title(title, data))
    fig.tight_layout()
    return _write_atomic(Path(path), lambda f: fig.savefig(f, format="png"))


def _values(data: list[dict[str, Any]], key: str) -> list[float]:
    return [_num(r.get(key)) for r in data]


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values, NaN ignored (NaN where a window holds no number)."""
    out, acc, count = [], 0.0, 0
    for i, v in enumerate(values):
        if not math.isnan(v):
            acc, count = acc + v, count + 1
        if i >= window and not math.isnan(values[i - window]):
            acc, count = acc - values[i - window], count - 1
        out.append(acc / count if count else math.nan)
    return out


def _draw_losses(ax, data: list[dict[str, Any]]) -> list:
    steps = [r["step"] for r in data]
    loss, avg = _values(data, "loss"), _values(data, "avg_loss")
    marker = "o" if len(data) < 30 else None
    handles = []
    if any(not math.isnan(v) for v in loss):
        (h,) = ax.plot(steps, loss, color="tab:blue", alpha=0.35, linewidth=0.8, marker=marker, ms=3, label="loss")
        handles.append(h)
    if any(not math.isnan(v) for v in avg):
        label = "average loss (musubi avr_loss)"
    else:
        window = max(5, len(data) // 50)
        avg, label = moving_average(loss, window), f"moving average ({window} steps)"
    if any(not math.isnan(v) for v in avg):
        (h,) = ax.plot(steps, avg, color="tab:blue", linewidth=2.2, marker=marker, ms=4, label=label)
        handles.append(h)
    return handles


def _draw_lr(ax, data: list[dict[str, Any]]) -> list:
    lr = _values(data, "lr")
    if not any(not math.isnan(v) for v in lr):
        return []
    ax2 = ax.twinx()
    ax2.set_ylabel("learning rate")
    ax2.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    marker = "o" if len(data) < 30 else None
    (h,) = ax2.plot([r["step"] for r in data], lr, color="tab:orange", linewidth=1.2, marker=marker, ms=3, label="lr")
    top = max(v for v in lr if not math.isnan(v))
    if top > 0:
        ax2.set_ylim(0, top * 1.3)  # a constant lr stays below the legend
    return [h]


def _draw_markers(ax, steps: list[int], color: str, style: str, label: str) -> list:
    handles = []
    for i, step in enumerate(steps):
        handles.append(ax.axvline(step, color=color, linestyle=style, linewidth=1.5, label=label if i == 0 else None))
    return handles[:1]


def _title(title: str, data: list[dict[str, Any]]) -> str:
    parts = [title] if title else []
    if data:
        first, last = data[0]["step"], data[-1]["step"]
        parts.append(f"step {first}" if first == last else f"steps {first}-{last}")
    nan_steps = sum(
        1 for r in data if any(isinstance(r.get(k), float) and math.isnan(r[k]) for k in ("loss", "avg_loss"))
    )
    if nan_steps:
        parts.append(f"{nan_steps} steps with NaN loss")
    return "  |  ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# contact sheet


def sheet_size(rows: int, cols: int, thumb: int = 256) -> tuple[int, int]:
    """(width, height) in px of a contact sheet with `rows` sampling steps and `cols` prompt indices."""
    cell = thumb + SHEET_PAD
    return SHEET_LABEL_W + cols * cell + SHEET_PAD, SHEET_LABEL_H + rows * cell + SHEET_PAD


def contact_sheet(samples: Iterable[tuple[int, int, Path]], path: Path, thumb: int = 256) -> Path:
    """Draw samples.png and return its path: one row per sampling step (ascending, labelled "step N"), one column
    per prompt index present (ascending, "prompt i"), size `sheet_size(rows, cols, thumb)`.

    samples: (true global step, prompt index, file). Images (PNG/JPG/WebP) are opened with Pillow; videos
    (MP4/WebM/...) give their middle frame, decoded with PyAV. Each picture is scaled to fit thumb x thumb,
    centred in its cell. Cells without a sample, or whose file cannot be read, are grey. With the same
    (step, prompt) twice the later one is used. Raises OSError when the sheet cannot be written.
    """
    cells = {(step, idx): Path(p) for step, idx, p in samples}
    steps = sorted({s for s, _ in cells})
    prompts = sorted({i for _, i in cells})
    width, height = sheet_size(len(steps), len(prompts), thumb)
    sheet = Image.new("RGB", (width, height), SHEET_BG)
    draw = ImageDraw.Draw(sheet)
    font = label_font(14)
    cell = thumb + SHEET_PAD
    for c, idx in enumerate(prompts):
        x = SHEET_LABEL_W + c * cell + SHEET_PAD
        draw_label(draw, (x + thumb // 2, SHEET_LABEL_H // 2), f"prompt {idx}", font, "mm")
    for r, step in enumerate(steps):
        y = SHEET_LABEL_H + r * cell + SHEET_PAD
        draw_label(draw, (SHEET_PAD, y + thumb // 2), f"step {step}", font, "lm")
        for c, idx in enumerate(prompts):
            x = SHEET_LABEL_W + c * cell + SHEET_PAD
            picture = _thumbnail(cells.get((step, idx)), thumb)
            if picture is None:
                draw.rectangle((x, y, x + thumb - 1, y + thumb - 1), fill=MISSING_GREY)
            else:
                sheet.paste(picture, (x + (thumb - picture.width) // 2, y + (thumb - picture.height) // 2))
    if not steps:
        draw_label(draw, (SHEET_PAD, SHEET_PAD), "no samples yet", font, "la")
    return _write_atomic(Path(path), lambda f: sheet.save(f, format="PNG"))


def label_font(size: int):
    """Pillow's default font at `size` px (a scalable one since Pillow 10.1; the fixed bitmap font before)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def draw_label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, font, anchor: str) -> None:
    """White `text` at `xy` with Pillow's `anchor` ("mm": centred, "la": left/top, ...; ignored by bitmap fonts)."""
    try:
        draw.text(xy, text, fill="white", font=font, anchor=anchor)
    except ValueError:  # a bitmap font has no anchors
        draw.text(xy, text, fill="white", font=font)


def _thumbnail(path: Path | None, thumb: int) -> Image.Image | None:
    if path is None:
        return None
    try:
        image = middle_frame(path) if path.suffix.lower() in VIDEO_SUFFIXES else _open_image(path)
    except (OSError, ValueError, IndexError, av.FFmpegError):
        return None
    if image is None:
        return None
    image = image.convert("RGB")
    image.thumbnail((thumb, thumb))
    return image


def _open_image(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im.copy()


def middle_frame(path: Path) -> Image.Image | None:
    """The middle frame (index frames // 2) of a video's first video stream, decoded with PyAV; None when it has
    no frame. Raises OSError (av.error.FFmpegError is one) for files PyAV cannot open or decode."""
    count = _frame_count(path)
    if count == 0:
        return None
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= count // 2:
                return frame.to_image()
    return None


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.frames:
            return stream.frames
        return sum(1 for packet in container.demux(stream) if packet.size)  # WebM/MKV carry no frame count


# ---------------------------------------------------------------------------------------------------------------
# musubi's sample names

_SAMPLE = re.compile(r"(?P<e>e?)(?P<num>\d{6,})_(?P<idx>\d{2,})_\d{14}(?:_-?\d+)?(?:\.mp4|_\d{3}\.png)")


def parse_sample_name(name: str, output_name: str | None) -> tuple[str, int, int] | None:
    """(kind, number, prompt_idx) from a sample file name musubi wrote, else None.

    Mirrors trainer_base.py `sample_image_inference`: `{output_name}_` (nothing when output_name is None) +
    `e{epoch:06d}` (kind "epoch") or `{steps:06d}` (kind "step") + `_{prompt_idx:02d}_{YYYYmmddHHMMSS}` +
    `_{seed}` when the prompt has a seed; then `.mp4` for more than one frame (hv_generate_video.save_videos_grid)
    or `_000.png` for one (save_images_grid, `{name}_{i:03d}.png`). Numbers are musubi's run-local ones.
    """
    prefix = "" if output_name is None else output_name + "_"
    if not name.startswith(prefix):
        return None
    m = _SAMPLE.fullmatch(name[len(prefix) :])
    if m is None:
        return None
    return ("epoch" if m["e"] else "step"), int(m["num"]), int(m["idx"])


# ---------------------------------------------------------------------------------------------------------------
# files


def _write_atomic(path: Path, write) -> Path:
    """Call write(binary file) through fsutil.atomic_writer (readers never see a half-drawn image); returns path."""
    with atomic_writer(path) as f:
        write(f)
    return path
