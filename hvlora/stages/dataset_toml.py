"""Stage 3: write musubi's dataset config (RUN/dataset.toml) and read it back with tomllib.

One `[[datasets]]` block per kind present: images (`image_directory`) and videos (`video_directory`), so a mixed
zip trains on both (the system we replace wrote only the video block and silently dropped every image). Each block
is complete on its own (no `[general]`) and has its own `cache_directory` under OUTPUT_DIR/cache/<key>/. Schema:
musubi dataset/config_utils.py (contract §4): video-only keys never appear in an image block.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import tomli_w

from .. import cache
from ..config import Settings
from ..context import RunContext
from ..errors import StageFailed
from ..fsutil import atomic_write_text

NAME = "dataset_toml"
TITLE = "write dataset TOML"


def blocks(s: Settings, image_dir: Path | None, video_dir: Path | None, cache_root: Path) -> dict[str, dict]:
    """Block name ('images', 'videos') -> the [[datasets]] table for it. A None directory gives no block."""
    common = {
        "resolution": list(s.resolution),
        "enable_bucket": True,
        "bucket_no_upscale": False,
        "caption_extension": ".txt",
        "batch_size": 1,
        "num_repeats": s.num_repeats,
    }
    out: dict[str, dict] = {}
    if image_dir is not None:
        out["images"] = {"image_directory": str(image_dir), "cache_directory": str(cache_root / "images"), **common}
    if video_dir is not None:
        out["videos"] = {"video_directory": str(video_dir), "cache_directory": str(cache_root / "videos"), **common,
                         "target_frames": list(s.target_frames), "frame_extraction": s.frame_extraction}
    return out


def run(ctx: RunContext) -> dict:
    """Write the TOML, verify it round-trips, set ctx.dataset_toml / ctx.cache_root / ctx.cache_dirs."""
    s, ds, log = ctx.settings, ctx.dataset, ctx.log(NAME)
    root = cache.cache_root(s.output_dir, cache.cache_key(ds.fingerprint, s))
    table = blocks(s, ds.image_dir if ds.images else None, ds.video_dir if ds.videos else None, root)
    doc = {"datasets": list(table.values())}
    path = ctx.paths.dataset_toml
    atomic_write_text(path, "# musubi-tuner dataset config, written by train_local.py\n" + tomli_w.dumps(doc))
    with open(path, "rb") as f:
        back = tomllib.load(f)
    if back != doc:
        raise StageFailed(NAME, f"{path} does not read back as written; this is a bug, please report it")
    ctx.dataset_toml = path
    ctx.cache_root = root
    ctx.cache_dirs = {name: Path(b["cache_directory"]) for name, b in table.items()}
    log(f"{path}: {', '.join(f'{k} -> {v}' for k, v in ctx.cache_dirs.items())}")
    return {"dataset_config": str(path), "blocks": list(table), "cache_root": str(root)}
