"""musubi's dataset config (TOML): one `[[datasets]]` table per block, written and read back.

One block for images (`image_directory`) and one per video frame rate (`video_directory` with its measured
`source_fps`, written as a float as musubi's schema demands), so a mixed zip trains on both and motion plays at the
model's frame rate (its family's target fps) whatever the source rate. Each block is complete on its own (no `[general]`). Schema: musubi
dataset/config_utils.py (contract §4); video-only keys never appear in an image block. The train stage's config and
the cache stages' staging configs (only the items to encode) are made here alike.
"""

from __future__ import annotations

from pathlib import Path

import tomli_w
import tomllib

from ..core.config import Settings
from ..core.fsutil import atomic_write_text
from .preflight import Block

# The caption files beside each dataset file (the dataset TOML's caption_extension).
CAPTION_EXTENSION = ".txt"


def block_table(s: Settings, block: Block, directory: Path, cache_dir: Path) -> dict:
    """The [[datasets]] table of one block."""
    table = {
        "image_directory" if block.kind == "image" else "video_directory": str(directory),
        "cache_directory": str(cache_dir),
        "resolution": list(s.resolution),
        "enable_bucket": True,
        "bucket_no_upscale": False,
        "caption_extension": CAPTION_EXTENSION,
        "batch_size": 1,
        "num_repeats": s.num_repeats,
    }
    if block.kind == "video":
        table["target_frames"] = list(s.target_frames)
        table["frame_extraction"] = s.frame_extraction
        if s.frame_extraction == "slide":
            table["frame_stride"] = s.frame_stride
        if s.frame_extraction == "uniform":
            table["frame_sample"] = s.frame_sample
        if s.frame_extraction == "full":
            table["max_frames"] = s.max_frames
        if block.source_fps is not None:
            table["source_fps"] = float(block.source_fps)
    return table


def write(path: Path, tables: list[dict]) -> None:
    """Write the config and read it back with tomllib. Raises ValueError if it does not read back as written."""
    doc = {"datasets": tables}
    atomic_write_text(path, "# musubi-tuner dataset config, written by train_local.py\n" + tomli_w.dumps(doc))
    with open(path, "rb") as f:
        if tomllib.load(f) != doc:
            raise ValueError(f"{path} does not read back as written; this is a bug, please report it")
