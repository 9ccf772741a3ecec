"""The preflight's report: a table for the console, dataset_report.json for tools, both from one DataReport."""

from __future__ import annotations

from pathlib import Path

from ..core.fsutil import atomic_write_json, atomic_write_text
from .preflight import DataReport, FileRecord
from .problems import NOTE, by_weight, printable

FULL_TABLE_MAX = 60  # larger datasets show only the rows with something to say; the .txt has every row
COLUMNS = ("file", "kind", "size", "frames", "fps", "duration", "clips", "trained", "status", "problem")
STATUS = COLUMNS.index("status")


def rows(report: DataReport) -> list[tuple[str, ...]]:
    """One row per media file; a file with several problems gets one row per extra problem."""
    out = []
    for f in report.files:
        info = f.info
        size = f"{info.width}x{info.height}" if info else "-"
        frames = str(info.frames) if info and info.frames is not None else "-"
        fps = f"{info.fps:.3g}" if info and info.fps else "-"
        duration = f"{info.duration:.2f} s" if info and info.duration else "-"
        clips = str(len(f.clips)) if f.frames_total is not None else "-"
        trained = f"{f.frames_trained / f.frames_total:.0%}" if f.frames_total else "-"
        problems = by_weight([p for p in f.problems if p.severity != NOTE] or f.problems)
        first = _problem_text(problems[0], f.name) if problems else ""
        out.append((printable(f.name), f.kind, size, frames, fps, duration, clips, trained, f.status, first))
        out += [("",) * (len(COLUMNS) - 1) + (_problem_text(p, f.name),) for p in problems[1:]]
    return out


def _problem_text(p, row_file: str) -> str:
    message = p.message.removeprefix("left out: ")  # the status column says so already
    if p.file != row_file:  # a finding about the caption file, shown on its media's row
        message = f"{printable(p.file)} {message}"
    return f"{message}. {p.fix}" if p.fix else message


def table(report: DataReport, only_problems: bool = False) -> str:
    """The rows as aligned text; with only_problems, files whose status is 'ok' are left out."""
    body = rows(report)
    if only_problems:
        keep, current = [], False
        for r in body:
            current = (r[STATUS] != "ok") if r[0] else current
            if current:
                keep.append(r)
        body = keep
    widths = [min(40, max(len(c), *(len(r[i]) for r in body))) if body else len(c) for i, c in enumerate(COLUMNS)]
    widths[-1] = 0  # the problem text runs to the end of the line
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)).rstrip()]
    for r in body:
        lines.append("  ".join(_cell(v, w) for v, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def _cell(value: str, width: int) -> str:
    if width and len(value) > width:
        value = "..." + value[-(width - 3) :]
    return value.ljust(width)


def totals(report: DataReport) -> dict:
    """Counts for the summary: files by kind and status, items per bucket, training items per epoch."""
    s = report.settings
    usable = report.usable
    buckets = report.buckets()
    items = sum(buckets.values())
    videos = [f for f in report.planned if f.frames_total]
    return {
        "clips": sum(len(f.clips) for f in videos),
        "videos_with_clips": len(videos),
        "video_frames": sum(f.frames_total for f in videos),
        "video_frames_trained": sum(f.frames_trained for f in videos),
        "images": sum(f.kind == "image" for f in usable),
        "videos": sum(f.kind == "video" for f in usable),
        "left_out": sum(not f.usable for f in report.files),
        "errors": len(report.errors),
        "warnings": sum(p.severity == "warning" for p in report.all_problems()),
        "skipped_junk": report.skipped_junk,
        "items": items,
        "items_per_bucket": {f"{w}x{h}x{n}": c for (w, h, n), c in buckets.items()},
        "training_items_per_epoch": items * s.num_repeats,
        "captions": caption_sources(report),
        "blocks": {
            b.name: {"kind": b.kind, "source_fps": b.source_fps, "files": len(b.files)} for b in report.blocks.values()
        },
    }


CAPTION_SOURCES = {
    "user": "from the data",
    "generated": "generated",
    "edited": "edited in the overlay",
    "trigger": "the trigger word",
    "pending": "to generate",
}


def caption_sources(report: DataReport) -> dict[str, int]:
    """How many usable files take their caption from each source (user, generated, edited, trigger, pending)."""
    counts: dict[str, int] = {}
    for f in report.usable:
        if f.caption_source is not None and (f.caption_source != "pending" or f.block is not None):
            counts[f.caption_source] = counts.get(f.caption_source, 0) + 1
    return {k: counts[k] for k in CAPTION_SOURCES if k in counts}


def text(report: DataReport) -> str:
    """What the console shows: the table (or its problem rows), input-level problems, and totals."""
    t = totals(report)
    big = len(report.files) > FULL_TABLE_MAX
    parts = [
        f"data: {report.input} ({report.input_kind}, {len(report.files)} media files"
        f"{f', {report.skipped_junk} junk entries skipped' if report.skipped_junk else ''})"
    ]
    if report.files:
        parts.append(
            table(report, only_problems=big) + ("\n(files without problems are in dataset_report.txt)" if big else "")
        )
    parts += [str(p) for p in report.problems]
    per_bucket = ", ".join(f"{k}: {v}" for k, v in t["items_per_bucket"].items()) or "none"
    fps = ", ".join(
        f"{name} (source_fps {b['source_fps']})" if b["source_fps"] else name for name, b in t["blocks"].items()
    )
    parts.append(
        f"usable: {t['images']} image(s), {t['videos']} video(s); left out: {t['left_out']}; "
        f"{t['errors']} error(s), {t['warnings']} warning(s)"
    )
    if t["video_frames"]:
        parts.append(
            f"videos: {t['clips']} clip(s) from {t['videos_with_clips']} video(s); {t['video_frames_trained']} of their "
            f"{t['video_frames']} frames (at {report.settings.family.frames.target_fps:g} fps) train ({t['video_frames_trained'] / t['video_frames']:.0%}; "
            f"--frame_extraction {report.settings.frame_extraction})"
        )
    if set(t["captions"]) - {"user"}:
        sources = ", ".join(f"{n} {CAPTION_SOURCES[k]}" for k, n in t["captions"].items())
        parts.append(f"captions of the usable files: {sources} (overlay: {report.overlay.root})")
    parts.append(f"musubi items per bucket (WxHxframes): {per_bucket}")
    parts.append(
        f"dataset blocks: {fps or 'none'}; training items per epoch: {t['training_items_per_epoch']} "
        f"({t['items']} x num_repeats {report.settings.num_repeats})"
    )
    return "\n".join(parts)


def file_json(f: FileRecord) -> dict:
    info = f.info
    return {
        "file": f.name,
        "kind": f.kind,
        "bytes": f.bytes,
        "status": f.status,
        "width": info.width if info else None,
        "height": info.height if info else None,
        "frames": info.frames if info else None,
        "fps": info.fps if info else None,
        "duration_s": round(info.duration, 3) if info and info.duration else None,
        "pix_fmt": info.pix_fmt if info else None,
        "rotation": info.rotation if info else None,
        "variable_frame_rate": info.vfr if info else None,
        "caption_file": f.caption_file,
        "caption": f.caption,
        "caption_source": f.caption_source,
        "overlay_caption": f.overlay_caption if f.caption_file is None else None,
        "problems": [p.to_json() for p in f.problems],
        "block": f.block,
        "dataset_name": f.flat,
        "bucket": list(f.bucket) if f.bucket else None,
        "clips": [{"start": c.start, "frames": c.frames} for c in f.clips],
        "frames_read": f.frames_total,  # as musubi's load_video reads them (resampled to the family's fps)
        "frames_trained": f.frames_trained,
        "latent_cache_files": f.cache_files,
    }


def write(report: DataReport, run_dir: Path) -> Path:
    """dataset_report.json (and the full table as dataset_report.txt) in the run folder; returns the json path."""
    path = run_dir / "dataset_report.json"
    atomic_write_json(
        path,
        {
            "input": str(report.input),
            "input_kind": report.input_kind,
            "usable": not report.errors,
            "files": [file_json(f) for f in report.files],
            "problems": [p.to_json() for p in report.problems],
            "caption_overlay": str(report.overlay.root) if report.overlay else None,
            "totals": totals(report),
        },
    )
    atomic_write_text(run_dir / "dataset_report.txt", table(report) + "\n")
    return path
