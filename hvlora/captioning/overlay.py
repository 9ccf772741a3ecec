"""Where captions live. Nothing here writes into the user's data.

- The store, OUTPUT_DIR/cache/captions/<key>.json: every generated caption, kept by its request key (the media's
  content and the captioning settings, requests.py) with how it was made (seconds, tokens, settings, the run). Only
  the captioner child writes there, one complete file per item (temporary file + rename), so a kill keeps every
  finished caption. Shared by every dataset of OUTPUT_DIR.
- The overlay, OUTPUT_DIR/captions/<dataset>/: one `.txt` per captioned media file, mirroring the dataset's paths
  (`clips/walk.mp4` -> `clips/walk.txt`; media sharing a stem get `clips/walk.mp4.txt`), for the user to read and
  edit, and `captions.jsonl` (one line per media file: file, caption, source user|generated|edited, seconds,
  settings). A caption file whose text differs from what was last written there (`generated_sha256`) was edited by
  the user and is never overwritten; `--recaption` included.

Precedence (preflight.py): a caption in the user's data > an overlay file (edited, or generated for this very
media content) > generating one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..core.fsutil import atomic_write_json, atomic_write_text
from ..data import captions

INDEX = "captions.jsonl"


def store_dir(output_dir: Path) -> Path:
    """OUTPUT_DIR/cache/captions: generated captions by key."""
    return output_dir / "cache" / "captions"


def overlay_dir(output_dir: Path, input_path: Path) -> Path:
    """OUTPUT_DIR/captions/<dataset>: the zip's name without .zip, or the input folder's name."""
    name = input_path.stem if input_path.suffix.lower() == ".zip" else input_path.name
    return output_dir / "captions" / name


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Store:
    """The generated captions of OUTPUT_DIR, one JSON file per request key."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The stored record ({"caption", "seconds", "tokens", "truncated", "settings", "run", ...}) or None when
        absent or unreadable (a damaged file is generated again)."""
        try:
            record = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and isinstance(record.get("caption"), str) else None

    def put(self, key: str, record: dict) -> None:
        atomic_write_json(self.path(key), record)


@dataclass(frozen=True)
class Found:
    """A caption file in the overlay: its `text` (decoded like a user caption), `source` 'generated' (unchanged
    since written) or 'edited', and its index `record` (None when the index does not know the file)."""

    text: str
    source: str
    record: dict | None


class Overlay:
    """One dataset's overlay folder and its index, read once (preflight) and rewritten by the caption stage."""

    def __init__(self, root: Path):
        self.root = root
        self.records: dict[str, dict] = {}
        for line in self._lines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a damaged line: that file counts as edited (kept), never as ours to overwrite
            if isinstance(rec, dict) and isinstance(rec.get("caption_file"), str):
                self.records[rec["caption_file"]] = rec

    def _lines(self) -> list[str]:
        try:
            return (self.root / INDEX).read_text(encoding="utf-8").splitlines()
        except OSError:
            return []

    def path(self, caption_file: str) -> Path:
        return self.root / caption_file

    def find(self, caption_file: str) -> Found | None:
        """The overlay's caption `caption_file` (a path relative to the overlay), or None. A file that is not text
        (NUL bytes) is reported as edited with its text unusable: raises captions.CaptionError."""
        try:
            raw = self.path(caption_file).read_bytes()
        except OSError:
            return None
        text, _how = captions.decode(raw)
        record = self.records.get(caption_file)
        written = record.get("generated_sha256") if record else None
        return Found(text, "generated" if written == sha256(text) else "edited", record)

    def write_caption(self, caption_file: str, text: str) -> None:
        """Write a generated caption (atomically); the caller records its sha256 in the index."""
        path = self.path(caption_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text + "\n")

    def write_index(self, records: list[dict]) -> None:
        """captions.jsonl, one record per line, replaced as a whole."""
        self.root.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]
        atomic_write_text(self.root / INDEX, "".join(line + "\n" for line in lines))
        self.records = {r["caption_file"]: r for r in records}

    def index_lines(self) -> list[str]:
        return self._lines()


def caption_files(names: list[str]) -> dict[str, str]:
    """Media name -> its overlay caption file: `a/b.mp4` -> `a/b.txt`, or `a/b.mp4.txt` when another media file has
    the same path without extension (each media gets its own generated caption)."""
    stems: dict[str, int] = {}
    for n in names:
        stems[_stem(n)] = stems.get(_stem(n), 0) + 1
    return {n: (_stem(n) if stems[_stem(n)] == 1 else n) + ".txt" for n in names}


def _stem(name: str) -> str:
    head, dot, ext = name.rpartition(".")
    return head if dot and "/" not in ext else name
