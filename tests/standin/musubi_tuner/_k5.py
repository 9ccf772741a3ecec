"""What the Kandinsky 5 stand-ins share: musubi v0.3.4's task table as far as the stand-ins need it (kandinsky5/
configs.py: the task names, from the captured parser's --task choices, and each task's DiT size), and the checks of
transformers' `from_pretrained(path)` on the text-encoder folders (kandinsky5/models/text_embedders.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from . import _flags

ARCHITECTURE, ARCHITECTURE_FULL = "k5", "kandinsky5"  # dataset/architectures.py ARCHITECTURE_KANDINSKY5(_FULL)


@dataclass(frozen=True)
class DitSize:
    """configs.DiTParams: model_dim, ff_dim, num_text_blocks, num_visual_blocks; `resolution` the task's."""

    dim: int
    ff: int
    text_blocks: int
    visual_blocks: int
    resolution: int


LITE, PRO, LITE_IMAGE = (
    DitSize(1792, 7168, 2, 32, 512),
    DitSize(4096, 16384, 4, 60, 512),
    DitSize(2560, 10240, 2, 50, 1024),
)


def tasks() -> list[str]:
    """TASK_CONFIGS' keys (the real --task choices of kandinsky5_generate_video)."""
    spec = _flags.module_spec("kandinsky5_generate_video")
    return next(a["choices"] for a in spec["actions"] if a["dest"] == "task")


def dit_of(task: str) -> DitSize:
    """The DiT size of a task: Pro, Lite video, or Lite image (t2i/i2i), with the HD tasks' 1024 resolution."""
    size = PRO if task.startswith("k5-pro") else LITE_IMAGE if "t2i" in task or "i2i" in task else LITE
    return DitSize(
        size.dim, size.ff, size.text_blocks, size.visual_blocks, 1024 if task.endswith("-hd") else size.resolution
    )


def require_pretrained(path: str, what: str, weights: bool = True) -> None:
    """transformers' from_pretrained(path) under HF_HUB_OFFLINE=1: a path that is no folder is a repo id it cannot
    fetch; a folder needs config.json and, for a model, model.safetensors (a link is followed) or an index whose
    every shard is there. Raises OSError as transformers does."""
    if not os.path.isdir(path):
        raise OSError(
            f"We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in the cached "
            f"files. Check your internet connection or see how to run the library in offline mode ({what}: {path})."
        )
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise OSError(f"{path} does not appear to have a file named config.json.")
    if not weights:
        return
    if os.path.isfile(os.path.join(path, "model.safetensors")):
        return
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            shards = set(json.load(f)["weight_map"].values())
        missing = sorted(s for s in shards if not os.path.isfile(os.path.join(path, s)))
        if not missing:
            return
        raise OSError(f"{path} does not appear to have a file named {missing[0]}.")
    raise OSError(f"Error no file named model.safetensors found in directory {path}.")
