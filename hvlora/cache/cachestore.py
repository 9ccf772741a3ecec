"""Latent and text-encoder caches that invalidate themselves item by item.

A cache belongs to the settings that change what musubi's cache scripts write (`settings_key` of what the family says
counts: task, resolution, VAE/encoder files, fp8, tiling, device), not to a dataset. Inside it each file is keyed by
the content it was made from (ARCH: the family's architecture name in musubi's cache file names, e.g. hv15):
  OUTPUT_DIR/cache/latents-<key>/<media key>/<musubi's suffix>   e.g. z1a2b3c4d-8120/00000-005_0064x0064_ARCH.safetensors
  OUTPUT_DIR/cache/te-<key>/<caption key>_ARCH_te.safetensors
so a changed caption re-encodes that one caption, an added video only that video, and two datasets with the same
settings share what they have in common and never delete each other's files. Only this module writes there: musubi
encodes the missing items into a staging folder (`.staging/`, with `--skip_existing --keep_cache`), and each file
enters the store only after its safetensors header checks out (a kill mid-cache leaves truncated files, which
musubi's `--skip_existing` would accept by name). A run then sees its caches through RUN/cache/<block>/: hard links
named as musubi's trainer expects them (contract §4: `{stem}_{WxH}_ARCH.safetensors`, `{stem}_ARCH_te.safetensors`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.fsutil import atomic_write_json, link_or_copy
from ..training import lorameta

FORMAT = 4  # bump when the layout or what the keys cover changes (4: no VAE tiling; TE precision)
TE_NAME_END = "_te.safetensors"  # musubi names every text-encoder cache file {stem}_{architecture}_te.safetensors


def settings_key(relevant: dict) -> str:
    """16 hex digits of sha256 over the JSON of what changes a cache's content."""
    return hashlib.sha256(json.dumps({"format": FORMAT, **relevant}, sort_keys=True).encode()).hexdigest()[:16]


def caption_key(caption: str) -> str:
    """The store name of a caption's text-encoder output: 32 hex digits of sha256 of its final text."""
    return "c" + hashlib.sha256(caption.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Entry:
    """One cache file: `store_name` relative to the store's root, `view_name` the name musubi's trainer looks for
    in the run's cache folder, `staged_name` the name musubi writes in the staging folder (its dataset file is
    named after the item key), `caption` the text a text-encoder file must hold (its `caption1` metadata)."""

    block: str
    item_key: str
    store_name: str
    view_name: str
    staged_name: str
    caption: str | None = None


def latent_entries(block: str, item_key: str, stem: str, cache_names: Iterable[str]) -> list[Entry]:
    """Entries for the latent files the preflight predicted for one file (`cache_names`, named after its dataset
    stem `stem`). `item_key` is its content key (e.g. z<crc>-<size>)."""
    out = []
    for name in cache_names:
        suffix = name[len(stem) :]  # "_00000-005_0064x0064_ARCH.safetensors" or "_0080x0048_ARCH.safetensors"
        out.append(Entry(block, item_key, f"{item_key}/{suffix[1:]}", name, item_key + suffix))
    return out


def te_entry(block: str, stem: str, caption: str, suffix: str) -> Entry:
    """The entry of one file's text-encoder output: keyed by its caption, named `stem + suffix` in the run's view
    (suffix: the family's `_{architecture}_te.safetensors`)."""
    key = caption_key(caption)
    return Entry(block, key, key + suffix, stem + suffix, key + suffix, caption)


class Store:
    """One settings key's cache folder. `valid()` is the one test of a cache file; `missing()` is what musubi must
    encode; `take_staged()` moves what it encoded in; `link_view()` shows a run its files."""

    def __init__(self, root: Path, precision: str | None = None):
        self.root = root
        self.staging = root / ".staging"
        self.precision = precision  # what its items were made with, for the console (e.g. "bf16")

    def path(self, e: Entry) -> Path:
        return self.root / e.store_name

    def staged_path(self, e: Entry) -> Path:
        return self.staging / "cache" / e.block / e.staged_name

    def staged_data(self, block: str) -> Path:
        """The folder musubi reads for one block while encoding missing items: links named by item key."""
        return self.staging / "data" / block

    @staticmethod
    def problem(path: Path, e: Entry) -> str | None:
        """None when `path` is a complete cache file for `e`, else why not (a missing or truncated file, a
        text-encoder file made from another caption)."""
        problem = lorameta.safetensors_problem(path)
        if problem is None and e.caption is not None:
            try:
                made_from = lorameta.read_metadata(path).get("caption1")
            except (OSError, lorameta.SafetensorsError) as err:
                return f"{path.name}: {err}"
            if made_from != e.caption:
                return f"{path.name} was made from another caption"
        return problem

    def valid(self, e: Entry) -> bool:
        return self.problem(self.path(e), e) is None

    def missing(self, entries: list[Entry], recache: bool = False) -> tuple[list[Entry], list[str]]:
        """(entries to encode, files removed because they were damaged). With `recache`, every entry. Unique by
        store name (two files with one caption share one text-encoder output)."""
        todo, removed, seen = [], [], set()
        for e in entries:
            if e.store_name in seen:
                continue
            seen.add(e.store_name)
            path = self.path(e)
            problem = self.problem(path, e)
            if problem is not None and path.exists():
                path.unlink()
                removed.append(problem)
            if problem is not None or recache:
                todo.append(e)
        return todo, removed

    def reuse_from(self, others: list[Store], entries: list[Entry]) -> dict[Path, int]:
        """Entries this store lacks but another (of higher precision, the same files) holds whole: hard-linked in
        (no extra disk), so they count as cached here. Returns {other store's root: items taken}."""
        taken: dict[Path, int] = {}
        for e in {e.store_name: e for e in entries}.values():
            if self.valid(e):
                continue
            source = next((o for o in others if o.valid(e)), None)
            if source is not None:
                self.path(e).unlink(missing_ok=True)
                link_or_copy(source.path(e), self.path(e))
                taken[source.root] = taken.get(source.root, 0) + 1
        return taken

    def prepare_staging(self, todo: list[Entry], recache: bool = False) -> list[str]:
        """Keep the complete staged files of `todo` (left by a killed run: musubi's --skip_existing then skips
        them), delete everything else in the staging cache (truncated files, other items). Returns what was
        deleted as damaged."""
        wanted = {self.staged_path(e): e for e in todo}
        damaged = []
        cache = self.staging / "cache"
        for path in sorted(cache.rglob("*")) if cache.is_dir() else []:
            if not path.is_file():
                continue
            e = wanted.get(path)
            if e is not None and not recache and self.problem(path, e) is None:
                continue
            if e is not None:
                damaged.append(path.name)
            path.unlink()
        shutil.rmtree(self.staging / "data", ignore_errors=True)
        return damaged

    def take_staged(self, todo: list[Entry]) -> list[str]:
        """Move each complete staged file into the store; returns the problems of those musubi did not write or
        left damaged."""
        problems = []
        for e in todo:
            src = self.staged_path(e)
            problem = self.problem(src, e)
            if problem is not None:
                problems.append(problem)
                continue
            dst = self.path(e)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        return problems

    def link_view(self, entries: list[Entry], view: Path) -> None:
        """RUN/cache/<block>/<view name> -> the store file, as hard links (no extra disk). Links of this store's
        kind (latents or text-encoder outputs) that an earlier attempt left and that no longer belong are removed;
        the other kind's are left alone."""
        wanted = {view / e.block / e.view_name: e for e in entries}
        for block in {e.block for e in entries}:
            for old in (view / block).glob("*") if (view / block).is_dir() else []:
                if old not in wanted and _kind(old.name) == _kind(entries[0].view_name):
                    old.unlink()
        for target, e in wanted.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                if target.stat().st_ino == self.path(e).stat().st_ino:
                    continue
                target.unlink()
            link_or_copy(self.path(e), target)

    def size_bytes(self, entries: list[Entry]) -> int:
        return sum(
            self.path(e).stat().st_size for e in {e.store_name: e for e in entries}.values() if self.path(e).is_file()
        )


def _kind(name: str) -> str:
    return "te" if name.endswith(TE_NAME_END) else "latents" if name.endswith(".safetensors") else "other"


class DigestIndex:
    """sha256 of the files of a folder input, remembered by (path, size, mtime, inode) in
    OUTPUT_DIR/cache/digests.json: a file is read once, not on every run; an edited file (new mtime or size) is
    hashed again. Zip entries need none: their CRC-32 and size are the key."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data: dict[str, list] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.data = {}
        self.changed = False

    def digest(self, file: Path) -> str:
        st = file.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        known = self.data.get(str(file))
        if known and known[:3] == stamp:
            return known[3]
        h = hashlib.sha256()
        with open(file, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        self.data[str(file)] = [*stamp, h.hexdigest()]
        self.changed = True
        return h.hexdigest()

    def save(self) -> None:
        if self.changed:
            atomic_write_json(self.path, self.data)


def media_key(identity: str, path: Path, index: DigestIndex | None) -> str:
    """The content key of a media file: `z<crc32>-<size>` for a zip entry (preflight identity "zip:SIZE:CRC"),
    `s<sha256[:32]>` for a file of a folder input."""
    kind, *rest = identity.split(":")
    if kind == "zip":
        size, crc = rest
        return f"z{crc}-{size}"
    index = index or DigestIndex(Path(os.devnull))
    return "s" + index.digest(path)[:32]
