"""The caption stage (after the download, before the data is laid out for musubi; only with --missing_caption
generate or --caption_only, and only when a caption is to be generated or the overlay is behind the store):
generate the captions the preflight found missing, with one child process that loads the Qwen2.5-VL once
(captioning/worker.py, in musubi's interpreter with musubi's loader), then bring the overlay up to date.

- Per item and resumable: the child writes each caption into the store (OUTPUT_DIR/cache/captions/<key>.json) as
  soon as it is made; the overlay and captions.jsonl are written from the store when the child ends, however it
  ends (also on Ctrl-C), and a later command first takes what the store holds. With --recaption, captions this
  run folder already made again before it was stopped are kept.
- An overlay file the user edited is never written (checked again right before writing).
- Afterwards the files' final captions (trigger word applied) replace the pending ones, the cache plan is made again
  (text-encoder outputs are keyed by the final caption) and dataset_report.json is rewritten with every source.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..cache import caches, cachestore
from ..captioning import overlay as caption_overlay
from ..captioning import worker
from ..core.config import Settings
from ..core.console import ProgressConsole
from ..core.context import RunContext
from ..core.errors import StageFailed
from ..core.fsutil import atomic_write_json
from ..core.runner import run_logged
from ..data import captions, preflight
from ..data import report as data_report
from ..stages.download import hub_cache_dir
from ..training import progress
from ..training.presets import MemoryPlan

NAME = "caption"
TITLE = "caption media"
WORKER = "hvlora.captioning.worker"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where the hvlora package lives, for the child's imports


def needed(report: preflight.DataReport) -> bool:
    """Whether the stage has anything to do: captions to generate, or overlay files and captions.jsonl behind
    the store (a run stopped before it wrote them)."""
    if not report.settings.generates_captions:
        return False
    if report.to_caption:
        return True
    if not any(f.caption_source in ("generated", "edited") for f in report.usable):
        return False  # every caption is the user's (or the trigger word): no overlay to keep
    records, writes = _sync_plan(report, _store(report))
    return bool(writes) or report.overlay.index_lines() != _index_lines(records)


def command(ctx: RunContext, job: Path) -> list[str]:
    """The child's argv: this interpreter (musubi's, in the container) running the captioner module."""
    return [sys.executable, "-m", WORKER, str(job)]


def child_env(ctx: RunContext) -> dict[str, str]:
    """The run's child environment, with this project importable (the worker is part of hvlora)."""
    env = dict(ctx.env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run(ctx: RunContext) -> dict:
    """Generate what is missing, sync the overlay, hand the final captions on. Raises StageFailed when the child
    fails or a caption is still missing afterwards (the finished ones are kept either way)."""
    report: preflight.DataReport = ctx.data
    s, log, store = ctx.settings, ctx.log(NAME), _store(report)
    todo = _todo(report, store, ctx.paths.root.name)
    total = len({f.caption_request.key for f in report.to_caption})
    kept = f" (the other {total - len(todo)} are in {store.root} already)" if len(todo) < total else ""
    log(f"{len(todo)} of {total} captions to generate{kept}")
    seconds: list[float] = []
    try:
        if todo:
            seconds = _generate(ctx, store, todo)
    finally:
        written = _sync(report, store, log)
    missing = [f.name for f in report.to_caption if f.caption_source == "pending"]
    if missing:
        raise StageFailed(
            NAME, f"no caption was generated for {', '.join(missing[:5])}; see the log", log_path=ctx.paths.log(NAME)
        )
    if ctx.caches is not None:  # text-encoder outputs are keyed by the final captions, known only now
        index = cachestore.DigestIndex(s.output_dir / "cache" / "digests.json")
        ctx.caches = caches.plan(s, report, ctx.plan.memory, index)
    data_report.write(report, ctx.paths.root)
    info = {
        "generated": len(todo),
        "reused": total - len(todo),
        "overlay": str(report.overlay.root),
        "overlay_files_written": written,
        "seconds_per_item": round(sum(seconds) / len(seconds), 3) if seconds else None,
    }
    ctx.summary.update("items", {"captions_generated": len(todo), "caption_overlay": str(report.overlay.root)})
    return info


def _store(report: preflight.DataReport) -> caption_overlay.Store:
    return caption_overlay.Store(caption_overlay.store_dir(report.settings.output_dir))


def _todo(report: preflight.DataReport, store: caption_overlay.Store, run_name: str) -> list[preflight.FileRecord]:
    """One file per request key the store cannot give: not stored, or (--recaption) stored by another run."""
    out, seen = [], set()
    for f in report.to_caption:
        key = f.caption_request.key
        held = store.get(key)
        if key in seen or (held is not None and (not report.settings.recaption or held.get("run") == run_name)):
            continue
        seen.add(key)
        out.append(f)
    return out


def _generate(ctx: RunContext, store: caption_overlay.Store, todo: list[preflight.FileRecord]) -> list[float]:
    """Run the child on `todo`; returns the seconds per finished item."""
    store.root.mkdir(parents=True, exist_ok=True)
    job = ctx.paths.root / "caption_job.json"
    atomic_write_json(job, _job(ctx, store, todo))
    counter = _Counter(len(todo))
    console = ProgressConsole(counter.feed, counter.progress.status_line)
    argv = command(ctx, job)
    try:
        run_logged(
            argv, stage=NAME, log_path=ctx.paths.log(NAME), env=child_env(ctx), console=console, on_start=ctx.on_child
        )
    finally:
        console.close()
    return counter.seconds


def _job(ctx: RunContext, store: caption_overlay.Store, todo: list[preflight.FileRecord]) -> dict:
    s = ctx.settings
    return {
        "model_file": str(model_file(s)),
        "processor_dir": str(_processor_dir(ctx)),
        "device": s.device,
        "fp8": in_fp8(s, ctx.plan.memory),
        "store": str(store.root),
        "run": ctx.paths.root.name,
        "items": [
            {
                "key": f.caption_request.key,
                "file": f.name,
                "path": str(f.path),
                "kind": f.kind,
                "prompt": f.caption_request.prompt,
                "pixels": f.caption_request.settings["pixels"],
                "frames": list(f.caption_request.frames),
                "fps": f.caption_request.fps,
                "settings": f.caption_request.settings,
                "media": f.caption_request.media_key,
            }
            for f in todo
        ],
    }


def model_file(s: Settings) -> Path:
    """The file musubi's load_qwen2_5_vl reads for the family's captioner: its weight file, or for a model folder
    the folder's state_dict_file (the linked single file, or the first of the shards, which the loader reads all)."""
    entry = s.family.weights_for(s.task, s.dit_variant)[s.family.captioner.weight_component]
    return entry.state_dict_file(s.models_dir)


def in_fp8(s: Settings, memory: MemoryPlan) -> bool:
    """Whether the captioner loads Qwen2.5-VL in fp8: as the memory plan's field the family's captioner names."""
    return bool(getattr(memory, s.family.captioner.fp8_knob))


def _processor_dir(ctx: RunContext) -> Path:
    """The processor files' snapshot folder in the HF cache (the download stage put them there; children run
    with HF_HUB_OFFLINE, so nothing is fetched)."""
    from huggingface_hub import try_to_load_from_cache

    cache, captioner = hub_cache_dir(ctx.env), ctx.settings.family.captioner
    found = try_to_load_from_cache(captioner.processor_repo_id, captioner.processor_files[0], cache_dir=cache)
    if not isinstance(found, str):
        raise StageFailed(
            NAME,
            f"the processor files of {captioner.processor_repo_id} are not in {cache}; run once without "
            "--skip_download or --offline to fetch them",
        )
    return Path(found).parent


class _Counter:
    """Progress from the child's per-item lines: `caption: 12/48 items  3.4 s/item  ETA 2m`. The lines (with
    the caption text) stay in the log; the console shows the status line."""

    def __init__(self, total: int):
        self.progress = progress.CacheProgress(total, label="caption")
        self.done = 0
        self.seconds: list[float] = []

    def feed(self, line: str) -> bool:
        if not line.startswith(worker.LINE_PREFIX):
            return False
        self.done += 1
        self.progress.update(self.done)
        try:
            self.seconds.append(float(line.split(" (", 1)[1].split(" s,", 1)[0]))
        except (IndexError, ValueError):
            pass
        return True


def _sync_plan(report: preflight.DataReport, store: caption_overlay.Store):
    """(captions.jsonl records of every usable file, overlay files to write {caption_file: text}): a file whose
    caption the store holds gets it written, unless the user edited the overlay file (then it is kept)."""
    trigger = report.settings.trigger_word
    records, writes = [], {}
    for f in sorted(report.usable, key=lambda r: r.name):
        if f.caption_source in ("user", "trigger", None):
            records.append({"file": f.name, "caption_file": None, "caption": f.caption, "source": f.caption_source})
            continue
        held = store.get(f.caption_request.key) if f.caption_request else None
        if f.caption_source in ("generated", "pending") and held is not None:
            current = report.overlay.find(f.overlay_caption)
            if current is None or current.source == "generated":
                if current is None or current.text != held["caption"]:
                    writes[f.overlay_caption] = held["caption"]
                caption = captions.apply_trigger(held["caption"], trigger)
                records.append(_record(f, held, caption))
                continue
            f.caption_source = "edited"  # edited since the preflight: kept as it is
        old = report.overlay.records.get(f.overlay_caption) or {}
        fields = {"file": f.name, "caption_file": f.overlay_caption, "caption": f.caption, "source": f.caption_source}
        records.append({**old, **fields})
    return records, writes


def _record(f: preflight.FileRecord, held: dict, caption: str) -> dict:
    return {
        "file": f.name,
        "caption_file": f.overlay_caption,
        "caption": caption,
        "source": "generated",
        "seconds": held.get("seconds"),
        "tokens": held.get("tokens"),
        "truncated": held.get("truncated"),
        "settings": held.get("settings"),
        "key": f.caption_request.key,
        "media": held.get("media"),
        "generated_sha256": caption_overlay.sha256(held["caption"]),
    }


def _index_lines(records: list[dict]) -> list[str]:
    return [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]


def _sync(report: preflight.DataReport, store: caption_overlay.Store, log) -> int:
    """Write the overlay files and captions.jsonl from the store; generated captions become the files' final
    captions (trigger word applied, warned about like a user's). Returns the number of overlay files written."""
    records, writes = _sync_plan(report, store)
    for caption_file, text in writes.items():
        report.overlay.write_caption(caption_file, text)
    by_name = {f.name: f for f in report.usable}
    for rec in records:
        f = by_name[rec["file"]]
        if rec["source"] == "generated" and f.caption_source == "pending":
            f.caption_source, f.overlay_text = "generated", store.get(rec["key"])["caption"]
            preflight.final_caption(f, f.overlay_text, str(report.overlay.path(f.overlay_caption)), report.settings)
    report.overlay.write_index(records)
    if writes:
        log(f"{len(writes)} caption file(s) written to {report.overlay.root}")
    return len(writes)
