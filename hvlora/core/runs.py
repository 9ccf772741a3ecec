"""Which run folder a command continues: the same command again continues the newest unfinished run of that
output_name whose data and training-defining settings are the same; `--new_run` starts afresh; `--resume RUN_DIR`
picks one (also a finished one, to extend it).

A run's identity (RUN/run.json) is what defines the LoRA it trains: the data (every planned file's content key,
block and final caption: trigger word included; a generated caption counts by its request key, the media's
content and the captioning settings, so a run stopped while captioning continues in the same folder), model
family, task, DiT variant, rank/alpha, optimizer, learning rate and its
schedule, resolution, frame settings, repeats, seed, and the number of GPU processes (musubi's step counts and its
scheduler's state depend on it). The step or epoch count, save and sample frequency, memory knobs and precision may
change between segments: said, not refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .. import families
from ..cache.caches import Caches
from ..data.preflight import DataReport
from ..training.plan import Plan
from .config import Settings
from .errors import UserError
from .fsutil import atomic_write_json

RUN_RECORD = "run.json"
TRAINING_KEYS = (
    "model_family",
    "task",
    "dit_variant",
    "rank",
    "network_alpha",
    "optimizer",
    "learning_rate",
    "lr_scheduler",
    "lr_warmup_steps",
    "resolution",
    "target_frames",
    "frame_extraction",
    "frame_stride",
    "frame_sample",
    "max_frames",
    "num_repeats",
    "seed",
    "trigger_word",
    "output_name",
)
CHANGEABLE_KEYS = (
    "epochs",
    "max_train_steps",
    "save_every_n_epochs",
    "save_every_n_steps",
    "sample_every_n_epochs",
    "sample_every_n_steps",
    "vram",
    "fp8",
    "blocks_to_swap",
    "save_precision",
)


def identity(s: Settings, report: DataReport, caches: Caches, plan: Plan) -> dict:
    """The training-defining settings and a fingerprint of the data, as a JSON-ready dict."""
    values = {k: getattr(s, k) for k in TRAINING_KEYS}
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    h = hashlib.sha256()
    for f in sorted(report.planned, key=lambda r: r.name):
        caption = (
            f"generated:{f.caption_request.key}"
            if f.caption_source in ("generated", "pending") and f.caption_request
            else f.caption
        )
        h.update(f"{caches.media_keys[f.name]}\0{f.block}\0{caption}\n".encode())
    values["data"] = h.hexdigest()[:32]
    values["items"] = plan.items
    values["num_processes"] = plan.launch.num_processes
    return values


def record(run_dir: Path, ident: dict, s: Settings, plan: Plan) -> None:
    """RUN/run.json: the identity and the changeable settings of the latest segment."""
    changeable = {k: getattr(s, k) for k in CHANGEABLE_KEYS}
    atomic_write_json(
        run_dir / RUN_RECORD, {"identity": ident, "settings": changeable, "total_steps": plan.total_steps}
    )


@dataclass(frozen=True)
class Choice:
    """The run folder to use (None: a new one) and what to tell the user about the choice."""

    run_dir: Path | None
    messages: list[str]


def _load(run_dir: Path) -> dict | None:
    try:
        record = json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(record, dict) and isinstance(
        record.get("identity"), dict
    ):  # runs recorded before families existed trained the default one
        record["identity"].setdefault("model_family", families.DEFAULT)
    return record


def _status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "summary.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError):
        return None


def differences(old: dict, new: dict) -> list[str]:
    """'rank 32 -> 16'-style lines for each identity value that differs (the data as one line)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a != b:
            out.append("the data (files, captions or trigger word)" if key == "data" else f"{key} {a} -> {b}")
    return out


def changed_settings(old: dict, s: Settings) -> list[str]:
    """The changeable settings that differ from the run's previous segment."""
    prev = old.get("settings", {})
    return [f"{k} {prev.get(k)} -> {getattr(s, k)}" for k in CHANGEABLE_KEYS if k in prev and prev[k] != getattr(s, k)]


def choose(s: Settings, ident: dict) -> Choice:
    """The run to continue, by the rules above. Raises UserError for an explicit --resume that cannot be honoured
    (not a run folder, or another run's data or settings)."""
    if s.resume is not None:
        return _explicit(s, ident)
    if s.new_run:
        return Choice(None, ["--new_run: starting a new run"])
    runs = sorted((s.output_dir / "runs").glob(f"{s.output_name}-*"), reverse=True)
    messages = []
    for run in runs:
        rec = _load(run)
        if rec is None or _status(run) == "succeeded":
            continue
        diff = differences(rec.get("identity", {}), ident)
        if not diff:
            return Choice(run, messages + changed_settings(rec, s))
        messages.append(f"not continuing the unfinished run {run.name}: {'; '.join(diff[:4])} changed")
        break  # only the newest unfinished run is a candidate
    return Choice(None, messages)


def check_resume(s: Settings) -> dict | None:
    """What can be told about --resume before the data is read (the real run and --dry_run both call this first):
    the folder exists, is a run folder of this trainer and lies in OUTPUT_DIR/runs. Returns its run.json (None
    without --resume). Raises UserError naming the path and what to pass."""
    run = s.resume
    if run is None:
        return None
    runs = s.output_dir / "runs"
    if not run.exists():
        raise UserError(f"--resume {run} does not exist; pass a run folder from {runs}")
    if not run.is_dir():
        raise UserError(f"--resume {run} is a file, not a run folder; pass a run folder from {runs}")
    rec = _load(run)
    if rec is None:
        raise UserError(
            f"--resume {run}: not a run folder of this trainer (no {RUN_RECORD}); pass a folder from {runs}"
        )
    if run.parent.resolve() != runs.resolve():
        raise UserError(f"--resume {run}: it is not in {runs}; pass --output_dir {run.parent.parent}")
    return rec


def _explicit(s: Settings, ident: dict) -> Choice:
    run, rec = s.resume, check_resume(s)
    diff = differences(rec.get("identity", {}), ident)
    if diff:
        raise UserError(
            f"--resume {run.name}: this command trains another LoRA than that run ({'; '.join(diff)}). Use the run's "
            f"settings (its config.toml: --config {run / 'config.toml'}), or drop --resume to start a new run"
        )
    return Choice(run, changed_settings(rec, s))
