"""Which LoRA `--generate` (and `--push_to_hub`) works on, and what its training run recorded (family-agnostic).

A run folder (OUTPUT_DIR/runs/NAME-TIME/) holds `run.json` (what defines it), `config.toml` (its effective
settings), `summary.json` (how it ended), `dataset_report.json` (every file with its final caption and bucket) and
`checkpoints/NAME.safetensors` (the final musubi-format LoRA). The LoRA file itself carries `hvlora.*` metadata
(task, DiT variant, trigger word, items per bucket, ...; training/lorainfo.py), so a file without its run folder
still says what it was trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from ..core.config import Settings
from ..core.errors import UserError
from ..core.runs import RUN_RECORD
from ..training import lorameta


@dataclass(frozen=True)
class Trained:
    """A LoRA and its training: `lora` (musubi format), `run_dir` (None for a file outside any run folder),
    `metadata` (its safetensors metadata), `run_settings` (the run's config.toml; {} without a run)."""

    lora: Path
    run_dir: Path | None
    metadata: dict[str, str]
    run_settings: dict[str, Any] = field(default_factory=dict)

    def value(self, key: str, default: Any = None) -> Any:
        """A training setting: the LoRA's `hvlora.<key>` metadata, else the run's config.toml, else `default`."""
        md = self.metadata.get(f"hvlora.{key}")
        return md if md not in (None, "") else self.run_settings.get(key, default)

    @property
    def output_name(self) -> str:
        return str(self.run_settings.get("output_name") or self.lora.stem)

    @property
    def buckets(self) -> dict[tuple[int, int, int], int]:
        """Training items per (width, height, frames) bucket, from `hvlora.items_per_bucket` ({"WxHxF": n})."""
        try:
            raw = json.loads(self.metadata.get("hvlora.items_per_bucket") or "{}")
            return {tuple(int(x) for x in key.split("x")): int(n) for key, n in raw.items()}  # type: ignore[misc]
        except (ValueError, AttributeError):
            return {}


def final_lora(run_dir: Path, output_name: str) -> Path:
    """RUN/checkpoints/NAME.safetensors: the musubi-format LoRA a finished run keeps (stages/convert.py publishes
    it and its ComfyUI conversion from there)."""
    return run_dir / "checkpoints" / f"{output_name}.safetensors"


def comfyui_lora(run_dir: Path, output_name: str) -> Path:
    """RUN/checkpoints/NAME_comfyui.safetensors."""
    return run_dir / "checkpoints" / f"{output_name}_comfyui.safetensors"


def locate(s: Settings) -> Trained:
    """The LoRA to work on: `--lora FILE`, else the run `--resume RUN_DIR`, else the newest finished run of
    `--output_name` in OUTPUT_DIR/runs. Raises UserError naming what is missing and what to pass instead."""
    if s.lora is not None:
        return _from_file(s.lora)
    if s.resume is not None:
        return from_run(s.resume)
    runs = sorted((s.output_dir / "runs").glob(f"{s.output_name}-*"), reverse=True)
    for run in runs:
        settings = run_settings(run)
        if status(run) == "succeeded" and final_lora(run, settings.get("output_name", s.output_name)).is_file():
            return from_run(run)
    raise UserError(
        f"no finished run of output_name {s.output_name!r} in {s.output_dir / 'runs'}: train one first, or pass "
        "--resume RUN_DIR (a finished run) or --lora FILE"
    )


def from_run(run_dir: Path) -> Trained:
    """A run folder's final LoRA. Raises UserError for a folder that is not a run or whose training did not end."""
    if not (run_dir / RUN_RECORD).is_file():
        raise UserError(
            f"{run_dir} is not a run folder of this trainer (no {RUN_RECORD}): pass a folder of OUTPUT_DIR/runs"
        )
    settings = run_settings(run_dir)
    lora = final_lora(run_dir, settings.get("output_name", run_dir.name.rsplit("-", 2)[0]))
    if not lora.is_file():
        raise UserError(
            f"{run_dir} has no final LoRA ({lora.name}): its training has not finished. Continue it with --resume "
            f"{run_dir}, or compare a checkpoint with --lora {run_dir / 'checkpoints'}/FILE"
        )
    return Trained(lora, run_dir, _metadata(lora), settings)


def _from_file(path: Path) -> Trained:
    if not path.is_file():
        raise UserError(f"--lora {path}: no such file")
    run_dir = next((p for p in (path.parent, path.parent.parent) if (p / RUN_RECORD).is_file()), None)
    return Trained(path, run_dir, _metadata(path), run_settings(run_dir) if run_dir else {})


def _metadata(path: Path) -> dict[str, str]:
    try:
        return lorameta.read_metadata(path)
    except (OSError, lorameta.SafetensorsError) as e:
        raise UserError(f"{path} is not a readable safetensors LoRA ({e})") from None


def run_settings(run_dir: Path) -> dict[str, Any]:
    """RUN/config.toml (the run's effective settings), or {} when missing or unreadable."""
    try:
        return tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def status(run_dir: Path) -> str | None:
    """summary.json's status ("succeeded", "failed", "interrupted", "running"), or None."""
    try:
        return json.loads((run_dir / "summary.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError):
        return None


def trained_files(run_dir: Path) -> list[dict[str, Any]]:
    """The files the run trained on (dataset_report.json entries that are usable and have a dataset block), sorted
    by their name in the data, as the samples pick their captions and first frame. [] without a report."""
    try:
        report = json.loads((run_dir / "dataset_report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    files = [f for f in report.get("files", []) if f.get("status") in ("ok", "warning") and f.get("block")]
    return sorted(files, key=lambda f: f.get("file", ""))


def dataset_media(run_dir: Path, entry: dict[str, Any]) -> Path:
    """Where a trained file lies in the run's dataset folder (RUN/dataset/<block>/<name>: what musubi read)."""
    return run_dir / "dataset" / entry["block"] / entry["dataset_name"]
