"""Stage 3: write musubi's dataset config (RUN/dataset.toml) and read it back with tomllib.

One `[[datasets]]` block for images (`image_directory`) and one per video frame rate (`video_directory` with its
measured `source_fps`, written as a float as musubi's schema demands), so a mixed zip trains on both (the system we
replace dropped every image) and motion plays at the model's 24 fps whatever the source rate. Each block is complete
on its own (no `[general]`) and has its own `cache_directory` under OUTPUT_DIR/cache/<key>/. Schema: musubi
dataset/config_utils.py (contract §4); video-only keys never appear in an image block.
"""

from __future__ import annotations

from pathlib import Path

import tomli_w
import tomllib

from .. import cache, musubi
from ..config import Settings
from ..context import RunContext
from ..errors import StageFailed
from ..fsutil import atomic_write_text
from ..preflight import Block

NAME = "dataset_toml"
TITLE = "write dataset TOML"


def block_table(s: Settings, block: Block, directory: Path, cache_dir: Path) -> dict:
    """The [[datasets]] table of one block."""
    table = {
        "image_directory" if block.kind == "image" else "video_directory": str(directory),
        "cache_directory": str(cache_dir),
        "resolution": list(s.resolution),
        "enable_bucket": True,
        "bucket_no_upscale": False,
        "caption_extension": musubi.CAPTION_EXTENSION,
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


def run(ctx: RunContext) -> dict:
    """Write the TOML, verify it round-trips, set ctx.dataset_toml / ctx.cache_root / ctx.cache_dirs."""
    s, report, log = ctx.settings, ctx.data, ctx.log(NAME)
    root = cache.cache_root(s.output_dir, cache.cache_key(report.fingerprint(), s))
    tables = {name: block_table(s, b, ctx.paths.block(name), root / name) for name, b in report.blocks.items()}
    doc = {"datasets": list(tables.values())}
    path = ctx.paths.dataset_toml
    atomic_write_text(path, "# musubi-tuner dataset config, written by train_local.py\n" + tomli_w.dumps(doc))
    with open(path, "rb") as f:
        back = tomllib.load(f)
    if back != doc:
        raise StageFailed(NAME, f"{path} does not read back as written; this is a bug, please report it")
    ctx.dataset_toml = path
    ctx.cache_root = root
    ctx.cache_dirs = {name: Path(t["cache_directory"]) for name, t in tables.items()}
    log(f"{path}: {', '.join(f'{k} -> {v}' for k, v in ctx.cache_dirs.items())}")
    return {"dataset_config": str(path), "blocks": list(tables), "cache_root": str(root)}
