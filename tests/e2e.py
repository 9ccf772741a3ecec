"""Shared end-to-end helpers: a project layout in a temporary folder with a fake hub, `train_local.py` run in it
as a subprocess with the stand-in musubi package (tests/standin) on PYTHONPATH."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import safetensors.numpy
from hubserver import FakeHub

from hvlora.core.cli import load_settings
from hvlora.core.context import RunContext, Summary, new_run_paths
from hvlora.families.hunyuan_video_1_5 import catalog
from hvlora.families.kandinsky5 import catalog as k5catalog
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


QWEN_TENSORS = ("lm_head.weight", "model.embed_tokens.weight", "visual.merger.mlp.0.weight")


def tiny_safetensors(names, metadata: dict[str, str] | None = None) -> bytes:
    """A real safetensors file with one small tensor per name."""
    return safetensors.numpy.save({n: np.full((2, 2), i, dtype=np.float16) for i, n in enumerate(names)}, metadata)


def k5_hub_repos(qwen_metadata: dict[str, str] | None = None, qwen_names=QWEN_TENSORS) -> dict[str, dict[str, bytes]]:
    """Both families' repos: HunyuanVideo 1.5's (hub_repos), Kandinsky 5's DiTs and VAE as bytes, the
    Qwen2.5-VL-7B-Instruct and CLIP folders as small files, and the Comfy-Org Qwen2.5-VL single file as a real
    safetensors file holding the tensors of the Instruct repo's index (`qwen_names`, `qwen_metadata` change it)."""
    repos = hub_repos()
    for task in k5catalog.TASKS:
        for variant in k5catalog.DIT_VARIANTS:
            try:
                entries = k5catalog.weights_for(task, variant)
            except Exception:  # noqa: BLE001 - a task the variant does not train
                continue
            for w in (entries["dit"], entries["vae"]):
                repos.setdefault(w.repo_id, {})[w.filename] = f"weights of {w.component} {w.filename}".encode() * 64
    qwen, clip = k5catalog.qwen_folder(), k5catalog.clip_folder()
    shards = {name: qwen.shards[i % len(qwen.shards)] for i, name in enumerate(QWEN_TENSORS)}
    repo = repos.setdefault(qwen.repo_id, {})
    for f in qwen.files:
        repo[f] = json.dumps({"weight_map": shards} if f == qwen.index else {"name": f}).encode()
    for shard in qwen.shards:
        repo[shard] = tiny_safetensors([n for n, s in shards.items() if s == shard], {"format": "pt"})
    repos[qwen.shared.repo_id][qwen.shared.filename] = tiny_safetensors(qwen_names, qwen_metadata)
    repos[clip.repo_id] = {f: (tiny_safetensors(["text_model.embeddings.token_embedding.weight"], {"format": "pt"})
                               if f.endswith(".safetensors") else json.dumps({"name": f}).encode()) for f in clip.files}  # fmt: skip
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


def prefetch(w: Workspace, task: str, *flags: str) -> None:
    """The real download stage, in-process, against the fake hub (`flags`: e.g. another --model_family)."""
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
            *flags,
        ]
    )
    paths = new_run_paths(s.output_dir, s.output_name)
    env = {"HF_ENDPOINT": w.hub.url, "HF_HOME": str(w.root / "hf"), "HF_HUB_DISABLE_XET": "1"}
    download.run(RunContext(s, paths, Summary(paths.summary, s), env))


def run_folder(stdout: str) -> Path | None:
    """The run folder a command used, from its console ("run folder: X" or "continuing X")."""
    m = re.search(r"^(?:run folder:|continuing) (\S+)$", stdout, re.M)
    return Path(m.group(1)) if m else None
