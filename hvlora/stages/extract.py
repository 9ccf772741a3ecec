"""Stage 2: unpack the dataset ZIP into the run folder, pair media with captions, probe the media, and lay out the
flat per-kind folders that musubi reads.

Rules (and why):
- The zip and DATA_DIR are never written to. Entries are streamed one by one into RUN/extracted/ with the zip's
  folder structure; an entry that would land outside it (absolute path, `..`, a backslash separator) or is a
  symlink or special file makes the whole zip refused, naming the entries.
- `__MACOSX/`, `._*`, `.DS_Store` and hidden files/folders are skipped (archive tools' junk).
- A caption is the `.txt` with the media's path minus extension. The trigger word is prepended to our copy of the
  caption ("trigger, caption") unless the caption already contains it as a word.
- musubi globs each dataset folder non-recursively and names caches after file stems, so media are hard-linked into
  RUN/dataset/images|videos/ under unique flat names made from their zip path (`a/b/c.png` -> `a__b__c.png`):
  equal names in different folders both survive, and one caption file sits beside each.
- Reported, the run goes on: captions without media, empty captions, media PyAV cannot open (left out), media
  sharing one stem in one folder (both train, with the shared caption), unsupported files.
- The run stops here, before any weights load, when media lack captions or nothing usable remains.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .. import media
from ..config import Settings
from ..context import RunContext
from ..errors import DataError
from ..fsutil import link_or_copy

NAME = "extract"
TITLE = "extract zip"
CAPTION_EXT = ".txt"
JUNK_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class Problem:
    """One finding about the input: `severity` 'error' (the run stops) or 'warning'; `file` is the zip path."""

    severity: str
    file: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.file}: {self.message}. {self.fix}"


@dataclass(frozen=True)
class Entry:
    """A media file in the zip and its caption entry (None when missing)."""

    info: zipfile.ZipInfo
    kind: str
    caption: zipfile.ZipInfo | None

    @property
    def name(self) -> str:
        return self.info.filename


@dataclass
class ZipScan:
    """The zip's table of contents, classified. Built from the central directory only (no data read)."""

    zip_path: Path
    entries: list[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped_junk: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


@dataclass(frozen=True)
class Item:
    """One media file musubi will train on: `source` is its path in the zip, `path` its flat copy in the dataset
    folder, `caption` the final caption text (trigger word applied)."""

    kind: str
    source: str
    path: Path
    caption: str
    info: media.MediaInfo


@dataclass
class Dataset:
    """The result of this stage: usable items per kind, the folders musubi reads, the findings, and a fingerprint of
    exactly what was extracted (media bytes via the zip's CRC-32 and size, final captions)."""

    zip_path: Path
    images: list[Item]
    videos: list[Item]
    image_dir: Path
    video_dir: Path
    problems: list[Problem]
    fingerprint: str


def find_zip(s: Settings) -> Path:
    """The dataset ZIP: input_zip (also looked up in data_dir when a bare name), else the only *.zip in data_dir.
    Raises DataError naming the candidates or saying where to put one."""
    if s.input_zip is not None:
        candidates = [s.input_zip, s.data_dir / s.input_zip.name]
        for c in candidates:
            if c.is_file():
                return c
        raise DataError(f"input_zip {s.input_zip} does not exist (also looked for {candidates[1]}). "
                        f"Put the zip into {s.data_dir} or pass its path with --input_zip.")
    zips = sorted(p for p in s.data_dir.glob("*") if p.suffix.lower() == ".zip" and p.is_file()) \
        if s.data_dir.is_dir() else []
    if not zips:
        raise DataError(f"no .zip found in {s.data_dir}. Put your dataset zip (images/videos with same-named .txt "
                        "captions) there, or pass --input_zip PATH.")
    if len(zips) > 1:
        names = "\n  ".join(str(z) for z in zips)
        raise DataError(f"several zips in {s.data_dir}; choose one with --input_zip NAME:\n  {names}")
    return zips[0]


def scan_zip(zip_path: Path) -> ZipScan:
    """Classify every entry of the zip; errors and warnings land in `problems`. Raises DataError if it is no zip."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{zip_path} is not a readable zip file ({e}). Re-create it with a zip tool.") from None
    scan = ZipScan(zip_path)
    media_infos: list[tuple[zipfile.ZipInfo, str]] = []
    captions: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.is_dir():
            continue
        name = info.filename
        unsafe = _unsafe_reason(info)
        if unsafe:
            scan.problems.append(Problem("error", name, unsafe, "Re-create the zip with plain files and relative "
                                         "paths only; nothing was extracted"))
            continue
        if _is_junk(name):
            scan.skipped_junk += 1
            continue
        kind = media.kind_of(name)
        if kind:
            media_infos.append((info, kind))
        elif name.lower().endswith(CAPTION_EXT):
            captions[_key(name)] = info
        else:
            supported = ", ".join(media.IMAGE_EXTENSIONS + media.VIDEO_EXTENSIONS)
            scan.problems.append(Problem("warning", name, "unsupported file type, ignored",
                                         f"Supported: {supported}, captions {CAPTION_EXT}"))
    _pair(scan, media_infos, captions)
    return scan


def _pair(scan: ZipScan, media_infos: list[tuple[zipfile.ZipInfo, str]],
          captions: dict[str, zipfile.ZipInfo]) -> None:
    by_key: dict[str, list[str]] = {}
    for info, kind in media_infos:
        key = _key(info.filename)
        by_key.setdefault(key, []).append(info.filename)
        cap = captions.get(key)
        scan.entries.append(Entry(info, kind, cap))
        if cap is None:
            scan.problems.append(Problem("error", info.filename, f"has no caption ({PurePosixPath(key).name}"
                                         f"{CAPTION_EXT} beside it)", f"Add {key}{CAPTION_EXT} with a description "
                                         "of it, or remove it from the zip"))
    for key, names in by_key.items():
        if len(names) > 1:
            scan.problems.append(Problem("warning", ", ".join(names), f"share one stem and so one caption "
                                         f"{key}{CAPTION_EXT}", "Both train with that caption; rename one and give "
                                         "it its own caption if that is not intended"))
    used = set(by_key)
    for key, info in captions.items():
        if key not in used:
            scan.problems.append(Problem("warning", info.filename, "caption without a media file, ignored",
                                         "Check the media file's name matches the caption's"))
    if not scan.entries and not scan.errors:
        scan.problems.append(Problem("error", str(scan.zip_path), "contains no images or videos",
                                     "Supported: " + ", ".join(media.IMAGE_EXTENSIONS + media.VIDEO_EXTENSIONS)))


def _key(name: str) -> str:
    """A path without its extension: the pairing key of media and caption."""
    p = PurePosixPath(name)
    return str(p.with_suffix("")) if p.suffix else name


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\\" in name:
        return "uses backslashes in its path (a Windows-made zip path that could escape the folder)"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "has '..' in its path and would land outside the extraction folder"
    if info.create_system == 3:  # Unix: the upper 16 bits hold st_mode
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            return "is a symbolic link"
        if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
            return "is a special file (device, pipe or socket)"
    if info.flag_bits & 0x1:
        return "is encrypted"
    return None


def _is_junk(name: str) -> bool:
    parts = PurePosixPath(name).parts
    if parts and parts[0] == "__MACOSX":
        return True
    base = parts[-1] if parts else name
    return base in JUNK_NAMES or any(p.startswith(".") for p in parts)


def preflight(s: Settings) -> ZipScan:
    """Find and scan the zip (central directory only, milliseconds). Raises DataError listing every error."""
    scan = scan_zip(find_zip(s))
    _raise_on_errors(scan.problems, scan.zip_path)
    return scan


def _raise_on_errors(problems: list[Problem], zip_path: Path) -> None:
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        lines = "\n  ".join(str(p) for p in errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise DataError(f"{zip_path} cannot be trained on as it is ({len(errors)} problem(s)):\n  {lines}{more}")


def run(ctx: RunContext) -> dict:
    """Extract, probe and lay out the dataset; sets ctx.dataset. Raises DataError before anything loads weights."""
    s, log = ctx.settings, ctx.log(NAME)
    scan = preflight(s)
    log(f"{scan.zip_path}: {len(scan.entries)} media file(s), {scan.skipped_junk} junk entries skipped")
    problems = list(scan.problems)
    extracted = _extract(scan, ctx.paths.extracted)
    infos = _probe_all(extracted, scan.entries)
    items: list[Item] = []
    layout = _FlatNames()
    for entry in scan.entries:
        result = infos[entry.name]
        if isinstance(result, media.MediaError):
            problems.append(Problem("warning", entry.name, f"left out: {result}", "Re-encode or remove the file"))
            continue
        caption, problem = _caption(extracted, entry, s.trigger_word)
        if problem:
            problems.append(problem)
        folder = ctx.paths.dataset / ("images" if entry.kind == "image" else "videos")
        flat = layout.name(folder, entry.name)
        dst = folder / flat
        link_or_copy(extracted / entry.name, dst)
        (folder / (Path(flat).stem + CAPTION_EXT)).write_text(caption, encoding="utf-8")
        items.append(Item(entry.kind, entry.name, dst, caption, result))
    if not items:
        problems.append(Problem("error", str(scan.zip_path), "no usable media remain", "See the warnings above"))
    for p in problems:
        log(str(p), err=p.severity == "error")
    _raise_on_errors(problems, scan.zip_path)
    ds = Dataset(scan.zip_path, [i for i in items if i.kind == "image"], [i for i in items if i.kind == "video"],
                 ctx.paths.dataset / "images", ctx.paths.dataset / "videos", problems,
                 _fingerprint(scan, items))
    ctx.dataset = ds
    log(f"{len(ds.images)} image(s), {len(ds.videos)} video(s) ready in {ctx.paths.dataset}; "
        f"{sum(p.severity == 'warning' for p in problems)} warning(s)")
    items_info = {"images": len(ds.images), "videos": len(ds.videos), "warnings": [str(p) for p in problems],
                  "zip": str(scan.zip_path)}
    ctx.summary.update("items", items_info)
    return items_info


def _extract(scan: ZipScan, root: Path) -> Path:
    """Stream each media entry and its caption into `root`, keeping the zip's folders. Entries were checked by
    scan_zip; the resolved target is checked again so nothing can land outside `root`."""
    root.mkdir(parents=True, exist_ok=True)
    base = root.resolve()
    with zipfile.ZipFile(scan.zip_path) as zf:
        for entry in scan.entries:
            for info in (entry.info, entry.caption):
                if info is None:
                    continue
                target = (base / info.filename).resolve()
                if base not in target.parents:
                    raise DataError(f"{info.filename}: would be written outside {root}; refusing")
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_entry(zf, info, target)
    return root


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """Copy one entry, never writing more than its declared size (a lying header cannot fill the disk)."""
    written = 0
    try:
        with zf.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > info.file_size:
                    raise DataError(f"{info.filename}: holds more data than its header declares; the zip is "
                                    "corrupt or malicious. Re-create it.")
                dst.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, RuntimeError, EOFError) as e:
        # RuntimeError: encrypted entry; BadZipFile: CRC mismatch or truncated archive.
        raise DataError(f"{info.filename}: cannot be read from the zip ({e}). Re-create the zip.") from None


def _probe_all(root: Path, entries: list[Entry]) -> dict[str, media.MediaInfo | media.MediaError]:
    """Probe every media file in parallel threads (PyAV releases the GIL while decoding)."""
    def one(entry: Entry):
        try:
            return media.probe(root / entry.name, entry.kind)
        except media.MediaError as e:
            return e

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip((e.name for e in entries), pool.map(one, entries)))


def _caption(root: Path, entry: Entry, trigger: str) -> tuple[str, Problem | None]:
    """The final caption text for one entry (trigger applied) and a warning if the caption needed attention."""
    assert entry.caption is not None  # scan_zip made captionless media an error
    raw = (root / entry.caption.filename).read_bytes()
    problem = None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
        problem = Problem("warning", entry.caption.filename, "is not UTF-8; read as Windows-1252",
                          "Save captions as UTF-8 so every character arrives as written")
    text = text.strip()  # musubi strips too (dataset/datasources.py); the trigger then starts the caption
    if not text:
        problem = Problem("warning", entry.caption.filename, "is empty",
                          "Write a description of the media into it" + (
                              f"; it trains with the trigger word '{trigger}' alone" if trigger else
                              "; it trains unconditioned"))
    return apply_trigger(text, trigger), problem


def apply_trigger(caption: str, trigger: str) -> str:
    """'trigger, caption' unless the caption already contains the trigger as a whole word (case-insensitive)."""
    trigger = trigger.strip()
    if not trigger:
        return caption
    if re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", caption, flags=re.IGNORECASE):
        return caption
    return f"{trigger}, {caption}" if caption else trigger


class _FlatNames:
    """Unique flat file names per folder: 'a/b/c.PNG' -> 'a__b__c.png' (stems must be unique for musubi's cache
    names; extensions lower-case because musubi's globs match only lower- or upper-case)."""

    def __init__(self):
        self.used: dict[Path, set[str]] = {}

    def name(self, folder: Path, zip_name: str) -> str:
        p = PurePosixPath(zip_name)
        stem = "__".join(p.parts[:-1] + (p.stem,))
        stem = re.sub(r"[^\w.\- ]", "_", stem)
        used = self.used.setdefault(folder, set())
        candidate, n = stem, 1
        while candidate.lower() in used:
            n += 1
            candidate = f"{stem}~{n}"
        used.add(candidate.lower())
        return candidate + p.suffix.lower()


def _fingerprint(scan: ZipScan, items: list[Item]) -> str:
    """sha256 over each item's zip path, kind, size, CRC-32 and final caption: changes when any input to the
    caches changes (a different trigger word included)."""
    h = hashlib.sha256()
    infos = {e.name: e.info for e in scan.entries}
    for it in sorted(items, key=lambda i: i.source):
        zi = infos[it.source]
        h.update(f"{it.kind}\0{it.source}\0{it.path.name}\0{zi.file_size}\0{zi.CRC}\0{it.caption}\n".encode())
    return h.hexdigest()
