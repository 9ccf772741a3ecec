"""Which run folder a command continues: the same command again continues the newest unfinished run of that
output_name whose data and training-defining settings are the same; `--new_run` starts afresh; `--resume RUN_DIR`
picks one (also a finished one, to extend it).

A run's identity (RUN/run.json) is what defines the LoRA it trains, normalised so that equal LoRAs compare equal:
the data (every planned file's content key, block and final caption: trigger word included; a generated caption
counts by its request key, the media's content and the captioning settings, so a run stopped while captioning
continues in the same folder), model family, task, DiT variant, rank and alpha (recorded only when it is not the
rank: unset alpha is the rank), optimizer, learning rate and its schedule, resolution, the frame settings the
extraction mode uses (none for data without videos), repeats, seed, the model files with the hub revision asked for
and the commit it resolved to (models/manifest.json), and the number of GPU processes (musubi's step counts and its
scheduler's state depend on it). The step or epoch count, save and sample frequency, memory knobs and precision may
change between segments: said, not refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .. import families
from ..cache.caches import Caches
from ..data.frames import effective_mode
from ..data.preflight import DataReport
from ..training.plan import Plan
from ..weights.manifest import Manifest
from .config import Settings
from .errors import UserError
from .fsutil import atomic_write_json

RUN_RECORD = "run.json"
TRAINING_KEYS = (
    "model_family",
    "task",
    "dit_variant",
    "rank",
    "optimizer",
    "learning_rate",
    "lr_scheduler",
    "lr_warmup_steps",
    "resolution",
    "target_frames",
    "frame_extraction",
    "num_repeats",
    "seed",
    "trigger_word",
    "output_name",
)
# frame settings that only one extraction mode reads (musubi image_video_dataset.py); the others are ignored there
MODE_KEYS = {"frame_stride": "slide", "frame_sample": "uniform", "max_frames": "full"}
VIDEO_KEYS = ("target_frames", "frame_extraction", *MODE_KEYS)
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
    """The training-defining settings (normalised: see the module docstring) and a fingerprint of the data, as a
    JSON-ready dict."""
    values = {k: getattr(s, k) for k in TRAINING_KEYS}
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    if s.alpha != s.rank:  # alpha = rank (or unset, which musubi is given as the rank) is the plain scale 1
        values["network_alpha"] = float(s.alpha)
    mode = effective_mode(s.frame_extraction, s.frame_sample)
    values["frame_extraction"] = mode
    for key, reader in MODE_KEYS.items():
        if mode == reader:
            values[key] = getattr(s, key)
    if not any(f.kind == "video" for f in report.planned):
        for key in VIDEO_KEYS:
            values.pop(key, None)
    values["weights"] = weights_identity(s)
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


def weights_identity(s: Settings) -> dict[str, dict]:
    """component -> {"file": "repo_id/filename", "revision": asked for, "commit": what it resolved to (None until
    the manifest has the file)} for the model files of the task."""
    manifest = Manifest(s.models_dir)
    out = {}
    for component, w in sorted(s.family.weights_for(s.task, s.dit_variant).items()):
        rec = manifest.get(w.key)
        out[component] = {"file": w.key, "revision": s.revision_for(w.repo_id), "commit": rec.commit if rec else None}
    return out


def settle_weights(run_dir: Path, s: Settings) -> list[str]:
    """After the download stage: the commits the model files resolved to go into RUN/run.json. Returns what changed
    under a run recorded with other commits (empty when nothing did); the caller refuses to go on then."""
    rec = _load(run_dir)
    if rec is None:
        return []
    now = weights_identity(s)
    old = rec.get("identity", {}).get("weights", {})
    changed = [
        f"{v['file']}: commit {old[c]['commit']} -> {v['commit']}"
        for c, v in now.items()
        if c in old and old[c].get("commit") and v["commit"] and old[c]["commit"] != v["commit"]
    ]
    if not changed:
        rec["identity"]["weights"] = {
            c: {**v, "commit": v["commit"] or old.get(c, {}).get("commit")} for c, v in now.items()
        }
        atomic_write_json(run_dir / RUN_RECORD, rec)
    return changed


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
    """'rank 32 -> 16'-style lines for each identity value that differs (the data as one line; model files by
    commit where both are known, else by the revision asked for)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if key == "weights":
            out += _weights_differences(a or {}, b or {})
        elif a != b:
            out.append("the data (files, captions or trigger word)" if key == "data" else f"{key} {a} -> {b}")
    return out


def _weights_differences(old: dict, new: dict) -> list[str]:
    out = []
    for c in sorted(set(old) | set(new)):
        a, b = old.get(c) or {}, new.get(c) or {}
        if a.get("file") != b.get("file"):
            out.append(f"{c} file {a.get('file')} -> {b.get('file')}")
        elif a.get("commit") and b.get("commit"):
            if a["commit"] != b["commit"]:
                out.append(f"{c} ({b.get('file')}) commit {a['commit']} -> {b['commit']}")
        elif a.get("revision") != b.get("revision"):
            out.append(f"{c} ({b.get('file')}) revision {a.get('revision')} -> {b.get('revision')}")
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
    messages = []
    for run in runs_of(s.output_dir, s.output_name):
        rec = _load(run)
        if _status(run) == "succeeded":
            continue
        diff = differences(rec.get("identity", {}), ident)
        if not diff:
            return Choice(run, messages + changed_settings(rec, s))
        messages.append(f"not continuing the unfinished run {run.name}: {'; '.join(diff[:4])} changed")
        break  # only the newest unfinished run is a candidate
    return Choice(None, messages)


_STAMP = re.compile(r"(\d{8}-\d{6})(?:-(\d+))?")


def runs_of(output_dir: Path, output_name: str) -> list[Path]:
    """The run folders of exactly `output_name` (its run.json says so: `lora` never matches a `lora-v2` run),
    newest first by the UTC time in their names (`NAME-YYYYmmdd-HHMMSS[-n]`)."""
    found = []
    runs = Path(output_dir) / "runs"
    for run in runs.iterdir() if runs.is_dir() else []:
        m = _STAMP.fullmatch(run.name[len(output_name) + 1 :]) if run.name.startswith(output_name + "-") else None
        rec = _load(run) if m else None
        if rec is not None and rec.get("identity", {}).get("output_name") == output_name:
            found.append(((m[1], int(m[2] or 0)), run))
    return [run for _, run in sorted(found, reverse=True)]


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
