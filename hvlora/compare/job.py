"""What a model family's generator is asked to do: one musubi generation run over a prompt file (family-agnostic).

The compare machinery (compare.py) fills these; a family's generator module turns them into its musubi argv
(families/hunyuan_video_1_5/generate.py for HunyuanVideo 1.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Inference:
    """The settings both runs share (musubi's names): `width` x `height` in pixels (multiples of 16),
    `video_length` frames (4n+1), `infer_steps`, `guidance_scale`, `flow_shift`, and the LoRA's
    `lora_multiplier` (used by the LoRA run only)."""

    width: int
    height: int
    video_length: int
    infer_steps: int
    guidance_scale: float
    flow_shift: float
    lora_multiplier: float

    def describe(self) -> str:
        return (
            f"{self.width}x{self.height}, {self.video_length} frame(s), {self.infer_steps} steps, guidance "
            f"{self.guidance_scale:g}, flow shift {self.flow_shift:g}"
        )


@dataclass(frozen=True)
class GenerateJob:
    """One generator process: `task` (t2v/i2v), `device` (cuda/cpu), the prompt file (musubi's `--from_file`
    format, one prompt and seed per line), the folder musubi saves into (`--save_path`), the shared `inference`
    settings, the first frame for i2v (`image`, else None), the family's inference memory plan (`memory`),
    `single`: (prompt, seed) when the file holds one plain line (musubi then runs it as a single `--prompt`), and
    the LoRA's `dit_variant` (a family whose generator picks its architecture by it)."""

    task: str
    device: str
    prompt_file: Path
    save_path: Path
    inference: Inference
    image: Path | None
    memory: Any
    single: tuple[str, int] | None = None
    dit_variant: str = ""
