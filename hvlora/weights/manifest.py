"""MODELS_DIR/manifest.json: what was downloaded and verified, so later runs check seconds, not minutes.

Each verified file is recorded with its repo, path, requested revision, resolved commit, size, sha256 and mtime.
The quick check compares size and mtime with the record (a file changed or replaced since shows up); a full check
(--verify_weights) hashes the file again. Hashes follow the hub: an LFS file's ETag is its sha256, a small file's
ETag is its git blob sha1.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.fsutil import atomic_write_json
from ..core.timefmt import utc_now

NAME = "manifest.json"
CHUNK = 16 * 1024 * 1024


@dataclass(frozen=True)
class Record:
    """One verified file. `revision` is what was asked for (e.g. main), `commit` what it resolved to."""

    repo_id: str
    filename: str
    revision: str
    commit: str
    size: int
    sha256: str
    mtime_ns: int
    verified_at: str


class Manifest:
    """The records of one models folder, keyed by '<repo_id>/<filename>'. Saved atomically after every change."""

    def __init__(self, models_dir: Path):
        self.path = models_dir / NAME
        self.records: dict[str, Record] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.records = {k: Record(**v) for k, v in data.get("files", {}).items()}
        except FileNotFoundError:
            pass
        except (ValueError, TypeError):
            self.records = {}  # a damaged manifest only costs a re-verification

    def get(self, key: str) -> Record | None:
        return self.records.get(key)

    def put(self, key: str, record: Record) -> None:
        self.records[key] = record
        atomic_write_json(self.path, {"files": {k: asdict(v) for k, v in sorted(self.records.items())}})

    def forget(self, key: str) -> None:
        if self.records.pop(key, None) is not None:
            atomic_write_json(self.path, {"files": {k: asdict(v) for k, v in sorted(self.records.items())}})

    def quick_ok(self, key: str, path: Path, revision: str | None = None) -> bool:
        """True when `path` is the file recorded under `key` (same size and mtime) and, if `revision` is given,
        was downloaded for that revision (a request for another revision must ask the hub)."""
        rec = self.records.get(key)
        if rec is None or (revision is not None and revision not in (rec.revision, rec.commit)):
            return False
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        return st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns


def record_for(path: Path, repo_id: str, filename: str, revision: str, commit: str, sha256: str) -> Record:
    st = path.stat()
    return Record(repo_id, filename, revision, commit, st.st_size, sha256, st.st_mtime_ns, utc_now())


def hashes(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file, in one read."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    sha1.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def matches_etag(sha256: str, git_sha1: str, etag: str) -> bool:
    """Does a file with these hashes match the hub's ETag? LFS files: sha256; other files: git blob sha1. An ETag
    of neither form (some mirrors) cannot be checked and is accepted."""
    etag = etag.strip('"').lower().removeprefix("w/").strip('"')
    if re.fullmatch(r"[0-9a-f]{64}", etag):
        return etag == sha256
    if re.fullmatch(r"[0-9a-f]{40}", etag):
        return etag == git_sha1
    return True
