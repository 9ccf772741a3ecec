"""Publish a run's LoRA files to OUTPUT_DIR without ever losing an earlier one.

Every run keeps its own files in its run folder and records their sha256 in its summary.json. Before OUTPUT_DIR/X
is replaced, its sha256 is looked up among the runs' recorded outputs; if no run folder still holds that exact
file (it was made by hand, or its run folder was deleted), it is moved to OUTPUT_DIR/runs/kept-<UTC time>/ first.
The new file arrives by copy to a temporary name and a rename, so OUTPUT_DIR/X is never half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from ..core.fsutil import atomic_copy
from ..core.timefmt import utc_stamp


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def publish(files: dict[str, Path], output_dir: Path, log: Callable[[str], None]) -> dict:
    """Copy each source to OUTPUT_DIR/<name> atomically. Returns {name: {"path", "source", "sha256", "bytes"}}
    for summary.json's "outputs"; earlier files no run folder holds are moved aside first (and logged)."""
    result = {}
    for name, src in files.items():
        digest = sha256_file(src)
        dst = output_dir / name
        if dst.exists() and not _held_by_a_run(dst, output_dir):
            kept = _keep_aside(dst, output_dir)
            log(f"kept the earlier {dst.name} (made outside a run folder) as {kept}")
        atomic_copy(src, dst)
        result[name] = {"path": str(dst), "source": str(src), "sha256": digest, "bytes": src.stat().st_size}
        log(f"wrote {dst}")
    return result


def _held_by_a_run(dst: Path, output_dir: Path) -> bool:
    """True if a run folder still has a file with dst's exact content (per the runs' recorded sha256)."""
    size = dst.stat().st_size
    digest = None
    for summary in (output_dir / "runs").glob("*/summary.json"):
        try:
            outputs = json.loads(summary.read_text(encoding="utf-8")).get("outputs", {})
        except (OSError, ValueError):
            continue
        for rec in outputs.values():
            src = Path(rec.get("source", ""))
            if rec.get("bytes") != size or not src.is_file() or src.stat().st_size != size:
                continue
            digest = digest or sha256_file(dst)
            if rec.get("sha256") == digest and sha256_file(src) == digest:
                return True
    return False


def _keep_aside(dst: Path, output_dir: Path) -> Path:
    folder = output_dir / "runs" / f"kept-{utc_stamp()}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / dst.name
    os.replace(dst, target)  # same filesystem: a rename, nothing copied or lost
    return target
