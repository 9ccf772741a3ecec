"""Shared end-to-end helpers: a project layout in a temporary folder with a fake hub, `train_local.py` run in it
as a subprocess with the stand-in musubi package (tests/standin) on PYTHONPATH."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from hubserver import FakeHub

from hvlora.core.cli import load_settings
from hvlora.core.context import RunContext, Summary, new_run_paths
from hvlora.families.hunyuan_video_1_5 import catalog
from hvlora.stages import download

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "standin"
SMOKE = [
    "--device",
    "cpu",
    "--resolution",
    "64x64",
    "--target_frames",
    "1,5",
    "--max_train_steps",
    "2",
    "--rank",
    "4",
    "--optimizer",
    "adamw",
]


def hub_repos() -> dict[str, dict[str, bytes]]:
    repos: dict[str, dict[str, bytes]] = {}
    for w in catalog.WEIGHTS:
        repos.setdefault(w.repo_id, {})[w.filename] = f"weights of {w.component} {w.filename}".encode() * 64
    for tok in catalog.TOKENIZERS:
        for f in tok.required_files:
            repos.setdefault(tok.repo_id, {})[f] = json.dumps({"name": f}).encode()
    return repos


class Workspace:
    """A project layout in a temporary folder, a fake hub, and a way to run train_local.py in it."""

    def __init__(self, root: Path, hub: FakeHub):
        self.root, self.hub = root, hub
        self.data, self.models, self.output = root / "data", root / "models", root / "output"
        self.config = root / "train.toml"
        self.config.write_text("")
        self.calls = root / "calls.jsonl"
        self.last_run: Path | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "STANDIN_"))}
        env.update(
            PYTHONPATH=str(STANDIN),
            HF_ENDPOINT=self.hub.url,
            HF_HOME=str(self.root / "hf"),
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            STANDIN_CALLS=str(self.calls),
        )
        env.update(extra)
        return env

    def argv(self, *flags: str) -> list[str]:
        return [
            sys.executable,
            str(ROOT / "train_local.py"),
            "--config",
            str(self.config),
            "--data_dir",
            str(self.data),
            "--models_dir",
            str(self.models),
            "--output_dir",
            str(self.output),
            *flags,
        ]

    def train(self, *flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run(self.argv(*flags), capture_output=True, text=True, env=self.env(**(env or {})), timeout=600)
        self.last_run = run_folder(r.stdout) or self.last_run
        return r

    def runs(self) -> list[Path]:
        return sorted((self.output / "runs").glob("lora-*"))  # names hold the UTC time: oldest first

    def summary(self, run: Path | None = None) -> dict:
        """The summary of `run`, by default of the run folder the last command used (new or continued)."""
        return json.loads(((run or self.last_run) / "summary.json").read_text())

    def calls_made(self) -> list[dict]:
        if not self.calls.exists():
            return []
        return [json.loads(line) for line in self.calls.read_text().splitlines() if line.strip()]


def prefetch(w: Workspace, task: str) -> None:
    """The real download stage, in-process, against the fake hub."""
    s = load_settings(
        [
            "--config",
            str(w.config),
            "--models_dir",
            str(w.models),
            "--output_dir",
            str(w.root / "prefetch"),
            "--task",
            task,
            "--device",
            "cpu",
        ]
    )
    paths = new_run_paths(s.output_dir, s.output_name)
    env = {"HF_ENDPOINT": w.hub.url, "HF_HOME": str(w.root / "hf"), "HF_HUB_DISABLE_XET": "1"}
    download.run(RunContext(s, paths, Summary(paths.summary, s), env))


def run_folder(stdout: str) -> Path | None:
    """The run folder a command used, from its console ("run folder: X" or "continuing X")."""
    m = re.search(r"^(?:run folder:|continuing) (\S+)$", stdout, re.M)
    return Path(m.group(1)) if m else None
