"""File helpers: atomic writes (a reader sees the old file or the complete new one), links, sizes and byte units."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

GIB = 1024**3  # the unit of GPU and host memory figures (nvidia-smi's MiB and NVML's bytes convert to it)


@contextmanager
def atomic_writer(path: Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary file that becomes `path` only if the block completes: written to a temporary file beside it
    (permissions from the umask like any new file, or `mode`), flushed and fsynced, moved over `path` with
    os.replace, then the folder fsynced so the rename survives a power cut. On any error (or a kill) `path` keeps
    its old content; the temporary file is removed when the error is seen in-process."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` through `atomic_writer` (`mode`: permission bits, default from the umask)."""
    with atomic_writer(path, mode) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """UTF-8 text version of `atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Pretty-printed JSON, written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy `src` to `dst` through `atomic_writer`."""
    with atomic_writer(dst) as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 16 * 1024 * 1024)


def fsync_dir(folder: Path) -> None:
    """fsync a folder so that renames inside it survive a power cut (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (no extra disk), or copy when linking is not possible (another file system, e.g. a
    bind mount). dst's folder is created."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _unlink_quietly(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding `path`, or its nearest existing parent (a folder not yet created)."""
    for p in (path, *path.parents):
        if p.exists():
            return shutil.disk_usage(p).free
    return shutil.disk_usage(Path.cwd()).free


def human_bytes(n: float) -> str:
    """1234 -> '1.2 kB', 5e9 -> '5.0 GB' (powers of 1000, as disks are sold)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
