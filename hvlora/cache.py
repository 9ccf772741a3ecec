"""Where the latent and text-encoder caches live, and when an earlier cache may be reused.

Caches are stored under OUTPUT_DIR/cache/<key>/, where the key hashes everything that changes what musubi's cache
scripts write: the dataset fingerprint (media bytes and *final* captions, trigger word included), resolution, frame
settings, task, fp8 and device. A run with the same key may reuse the cache (`--skip_cache`); any change gives a new
key, so a stale text cache after a caption or trigger change (a defect of the system we replace) cannot happen.
`complete.json` is written only after both cache stages succeed, and removed before they run again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import catalog, musubi
from .config import Settings
from .errors import UserError
from .fsutil import atomic_write_json

COMPLETE = "complete.json"
FORMAT = 2  # bump when the layout or the cache commands change meaning


def cache_key(dataset_fingerprint: str, s: Settings) -> str:
    """A 16-hex-digit key for the cache of this dataset under these settings."""
    weights = catalog.weights_for(s.task, s.dit_variant)
    relevant = {
        "format": FORMAT,
        "dataset": dataset_fingerprint,
        "resolution": list(s.resolution),
        "target_frames": list(s.target_frames),
        "frame_extraction": s.frame_extraction,
        "frame_stride": s.frame_stride,
        "frame_sample": s.frame_sample,
        "max_frames": s.max_frames,
        "task": s.task,
        "fp8": s.fp8,
        "device": s.device,
        "weights": sorted(f"{w.repo_id}/{w.filename}" for c, w in weights.items() if c != "dit"),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def cache_root(output_dir: Path, key: str) -> Path:
    """OUTPUT_DIR/cache/<key>: one folder per dataset block below it."""
    return output_dir / "cache" / key


def is_complete(root: Path) -> bool:
    """True when both cache stages finished for this key."""
    return (root / COMPLETE).is_file()


def require_complete(root: Path) -> None:
    """--skip_cache: accept only a cache both cache stages completed for exactly this data and these settings.
    Raises UserError saying why there may be none."""
    if not is_complete(root):
        raise UserError(
            f"--skip_cache: no complete cache for this data and these settings in {root} (the data, a "
            "caption, the trigger word or a cache setting changed, or caching never finished). "
            "Run without --skip_cache."
        )


def mark_complete(root: Path, info: dict) -> None:
    atomic_write_json(root / COMPLETE, info)


def invalidate(root: Path) -> None:
    """Forget that this cache is complete (before the cache stages write into it again)."""
    (root / COMPLETE).unlink(missing_ok=True)


def count_files(dirs: dict[str, Path], suffix: str) -> dict[str, int]:
    """Number of files ending in `suffix` in each cache directory (block name -> count)."""
    return {name: sum(1 for p in d.glob(f"*{suffix}")) if d.is_dir() else 0 for name, d in dirs.items()}


def compare(dirs: dict[str, Path], expected: dict[str, set[str]], suffix: str) -> tuple[list[str], list[str]]:
    """(missing, extra) file names ending in `suffix` across the blocks' cache directories."""
    missing, extra = [], []
    for name, d in dirs.items():
        actual = {p.name for p in d.glob(f"*{suffix}")} if d.is_dir() else set()
        missing += sorted(expected.get(name, set()) - actual)
        extra += sorted(actual - expected.get(name, set()))
    return missing, extra


def latent_counts(dirs: dict[str, Path]) -> dict[str, int]:
    """Latent caches per block (`*_hv15.safetensors`)."""
    return count_files(dirs, musubi.LATENT_CACHE_SUFFIX)


def text_encoder_counts(dirs: dict[str, Path]) -> dict[str, int]:
    """Text-encoder caches per block (`*_hv15_te.safetensors`)."""
    return count_files(dirs, musubi.TEXT_ENCODER_CACHE_SUFFIX)
