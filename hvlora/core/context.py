"""State shared by the stages of one run: settings, the run folder's layout, the summary, and what stages produced.

A stage reads what earlier stages put into `RunContext` and adds its own results; no stage imports another.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Settings
from .fsutil import atomic_write_json
from .timefmt import utc_now, utc_stamp


@dataclass(frozen=True)
class RunPaths:
    """Layout of one run folder, OUTPUT_DIR/runs/<output_name>-<UTC timestamp>/."""

    root: Path

    @property
    def dataset(self) -> Path:
        """Flat per-block folders musubi reads (images/, videos_24fps/, ...): links to the media + final captions."""
        return self.root / "dataset"

    def block(self, name: str) -> Path:
        """dataset/<block>: the folder musubi reads for one [[datasets]] block."""
        return self.dataset / name

    @property
    def dataset_toml(self) -> Path:
        return self.root / "dataset.toml"

    @property
    def config_toml(self) -> Path:
        return self.root / "config.toml"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def cache_view(self) -> Path:
        """RUN/cache/<block>/: hard links to this run's files in the shared cache stores (musubi's cache_directory
        for training)."""
        return self.root / "cache"

    def staging(self, stage: str) -> Path:
        """RUN/staging/<stage>/<block>/: what a cache stage gives musubi to encode (links named by content key)."""
        return self.root / "staging" / stage

    @property
    def segments(self) -> Path:
        """RUN/segments/NN/: musubi's --output_dir of each training segment (the first run and each resume)."""
        return self.root / "segments"

    @property
    def samples(self) -> Path:
        """Sample images and videos, named by true global step."""
        return self.root / "samples"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        """LoRA checkpoints and training states of every segment, under their true step/epoch numbers."""
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        """musubi's --logging_dir."""
        return self.root / "tensorboard"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    def log(self, stage: str) -> Path:
        """The log file of one stage: logs/<stage>.log."""
        return self.logs / f"{stage}.log"


def new_run_paths(output_dir: Path, output_name: str, now: dt.datetime | None = None) -> RunPaths:
    """Create a fresh run folder named after output_name and the UTC time; never reuses an existing one."""
    stamp = utc_stamp(now)
    runs = output_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        root = runs / (f"{output_name}-{stamp}" + (f"-{n}" if n else ""))
        try:
            root.mkdir()
            return RunPaths(root)
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run folder in {runs}")


class Summary:
    """summary.json: each stage with wall time and exit status, item counts, output paths. Rewritten atomically
    after every change, so a crash or Ctrl-C leaves an accurate record of what finished."""

    def __init__(self, path: Path, settings: Settings, resume: bool = False):
        self.path = path
        if resume and self._continue(settings):
            return
        self.data: dict[str, Any] = {
            "status": "running",
            "started_at": utc_now(),
            "finished_at": None,
            "run_dir": str(path.parent),
            "settings": settings.to_toml_dict(),
            "stages": [],
            "items": {},
            "outputs": {},
        }
        self.write()

    def _continue(self, settings: Settings) -> bool:
        """A resumed run keeps its record: earlier stages stay, this attempt's are appended."""
        try:
            self.data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        self.data.update(status="running", finished_at=None, settings=settings.to_toml_dict())
        self.data.setdefault("attempts", []).append({"started_at": utc_now(), "first_stage": len(self.data["stages"])})
        self.write()
        return True

    def stage(self, name: str, status: str, wall_s: float, **extra: Any) -> None:
        """Record one stage: status is 'ok', 'skipped', 'failed' or 'interrupted'."""
        self.data["stages"].append({"name": name, "status": status, "wall_s": round(wall_s, 3), **extra})
        self.write()

    def update(self, section: str, values: dict[str, Any]) -> None:
        """Merge values into a section ('items', 'outputs', ...; created when missing)."""
        self.data.setdefault(section, {}).update(values)
        self.write()

    def put(self, key: str, value: Any) -> None:
        """Set a top-level value (e.g. 'progress', 'segments')."""
        self.data[key] = value
        self.write()

    def finish(self, status: str) -> None:
        self.data["status"] = status
        self.data["finished_at"] = utc_now()
        self.write()

    def write(self) -> None:
        atomic_write_json(self.path, self.data)


def say(message: str, *, err: bool = True) -> None:
    """Print a line (stderr by default) that must not fail when no terminal is left (after SIGHUP: it was closed;
    the log files still get what matters)."""
    try:
        print(message, file=sys.stderr if err else sys.stdout, flush=True)
    except (OSError, ValueError):
        pass


class StageLog:
    """Messages of an in-process stage: printed to the console and appended to logs/<stage>.log."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: str, *, err: bool = False) -> None:
        say(message, err=err)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {message}\n")


@dataclass
class RunContext:
    """Everything a stage needs. `env` is the environment for child processes (HF_* and PYTHONPATH passed through)."""

    settings: Settings
    paths: RunPaths
    summary: Summary
    env: dict[str, str]
    data: Any = None  # preflight.DataReport: what musubi will train on (data preflight, before stage 1)
    weights: dict[str, Path] = field(default_factory=dict)  # component -> file (download stage)
    plan: Any = None  # plan.Plan: memory knobs, launch, steps (right after the preflight)
    caches: Any = None  # caches.Caches: the cache entries of every planned item (right after the preflight)
    dataset_toml: Path | None = None  # dataset_toml stage
    lora: Path | None = None  # train stage: musubi-format LoRA
    lora_comfyui: Path | None = None  # convert stage
    on_child: Callable[[int], None] | None = None  # told each child's process group (the run lock records it)

    def log(self, stage: str) -> StageLog:
        return StageLog(self.paths.log(stage))


def child_env(base: dict[str, str] | None = None, device: str = "cuda") -> dict[str, str]:
    """Environment for musubi processes: ours (PYTHONPATH, HF_HOME, HF_TOKEN, ...) plus unbuffered output so
    progress bars stream, and HF_HUB_OFFLINE=1: every file was fetched by the download stage, so a child that tried
    the network would be a bug to surface, not hide (musubi-tuner#773). With device "cpu", ACCELERATE_USE_CPU
    (what `accelerate launch --cpu` sets, for launches that cannot take that flag: musubi.launcher)."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if device == "cpu":
        env["ACCELERATE_USE_CPU"] = "true"
    return env
