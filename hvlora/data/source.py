"""The user's input, a ZIP or a folder: list it safely and make its files readable, never modifying it.

A zip is judged from its central directory before one byte is unpacked: entries that would land outside the target
(absolute paths, drive letters, `..`, backslashes), entries without a file name (`.`), links and special files,
encrypted entries and compression methods Python's zipfile cannot read (zstd, Deflate64, ...) are refused, each
named with the fix. Names are decoded as the zip format says (APPNOTE 4.4.4, Info-ZIP's rule): UTF-8 when the
entry's UTF-8 flag is set, else UTF-8 if the bytes are valid UTF-8, else CP437 (what Windows Explorer writes;
reported). A zip bomb is judged by what it costs: the declared total must fit --max_unpacked_gb and the free disk,
and zipfile never unpacks an entry past its declared size (a lying header fails its CRC-32 check). An entry that
expands more than MAX_RATIO times (flat BMP screenshots and flat art do) is unpacked only when its header parses as
the image or video its name says. A folder is walked without following links; a link or special file in it is
refused the same way. Archive junk (`__MACOSX/`, `._*`, `.DS_Store`) is skipped silently; media in hidden folders and
nested archives are reported and left out.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..core.config import Settings
from ..core.errors import DataError, UserError
from ..core.fsutil import free_bytes, human_bytes
from . import media
from .problems import ERROR, NOTE, WARNING, Problem

CAPTION_EXT = ".txt"
JUNK_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
ARCHIVE_EXTENSIONS = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
# Entries that expand more than this (and are over 1 MiB) must parse as media before they are unpacked: encoded
# media barely compress, but a BMP screenshot or a flat JPEG reaches 400-700x, and a bomb 1000x+.
MAX_RATIO = 100
RATIO_MIN_BYTES = 1 << 20
GB = 1000**3
# Compression methods zipfile reads (APPNOTE 4.4.5): stored, deflate, bzip2, lzma. Others by name, for the message.
READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
METHOD_NAMES = {
    1: "Shrink",
    6: "Implode",
    9: "Deflate64",
    10: "PKWARE DCL Implode",
    18: "IBM TERSE",
    19: "IBM LZ77",
    20: "Zstandard (zstd, old id)",
    93: "Zstandard (zstd)",
    94: "MP3",
    95: "XZ",
    96: "JPEG",
    97: "WavPack",
    98: "PPMd",
    99: "AES encryption",
}
RECREATE = "Re-create the zip with plain files, relative paths and UTF-8 names; nothing was unpacked"
RECREATE_DEFLATE = (
    "Re-create the zip with the Deflate method (every zip tool's default; 7-Zip: format zip, method Deflate, "
    "not Deflate64 or zstd); nothing was unpacked"
)


@dataclass(frozen=True)
class Entry:
    """One regular file of the input: `name` is its posix path inside the input (as the user knows it), `size`
    its (declared) size in bytes; `zinfo` for a zip entry, `path` for a file of an input folder."""

    name: str
    size: int
    zinfo: zipfile.ZipInfo | None = None
    path: Path | None = None


@dataclass
class Listing:
    """The input's usable entries (media, captions) and what was found on the way."""

    root: Path
    kind: str  # "zip" or "folder"
    entries: list[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped_junk: int = 0
    cp437_names: list[str] = field(default_factory=list)  # zip entry names decoded as CP437 (no UTF-8 flag)


def find_input(s: Settings) -> tuple[Path, str]:
    """(path, 'zip'|'folder'): --input_dir, --input_zip, or the only zip in data_dir. Raises DataError naming the
    path (or the candidates) and saying where to put one."""
    if s.input_dir is not None:  # both given is refused by config.validate
        if not s.input_dir.exists():
            raise DataError(f"input_dir {s.input_dir} does not exist: pass the folder that holds your media")
        if not s.input_dir.is_dir():
            hint = "pass it with --input_zip" if s.input_dir.suffix.lower() == ".zip" else "pass a folder"
            raise DataError(f"input_dir {s.input_dir} is a file, not a folder: {hint}")
        return s.input_dir, "folder"
    if s.input_zip is not None:  # a bare name was looked up in data_dir already (config.build_settings)
        if s.input_zip.is_file():
            return s.input_zip, "zip"
        if s.input_zip.is_dir():
            raise DataError(f"input_zip {s.input_zip} is a folder, not a zip: pass it with --input_dir instead.")
        raise DataError(
            f"input_zip {s.input_zip} does not exist. Pass the path of your zip, or put it into {s.data_dir} and "
            "pass its file name."
        )
    zips = (
        sorted(p for p in s.data_dir.glob("*") if p.suffix.lower() == ".zip" and p.is_file())
        if s.data_dir.is_dir()
        else []
    )
    if not zips:
        raise DataError(
            f"no .zip found in {s.data_dir}. Put your dataset zip (images/videos with same-named .txt "
            "captions) there, or pass --input_zip PATH or --input_dir FOLDER."
        )
    if len(zips) > 1:
        names = "\n  ".join(str(z) for z in zips)
        raise DataError(f"several zips in {s.data_dir}; choose one with --input_zip NAME:\n  {names}")
    return zips[0], "zip"


def list_input(s: Settings, store: Path) -> Listing:
    """List the input. Problems land in the listing; raises DataError only if the input cannot be read at all.
    `store` is where a zip's media are unpacked (see `materialize`): its free space bounds what may be unpacked,
    not counting entries an earlier run unpacked there already."""
    root, kind = find_input(s)
    if kind == "folder":
        return _list_folder(root)
    listing = _list_zip(root)
    present = sum(e.size for e in listing.entries if (store / store_name(e)).is_file())
    _check_sizes(listing, int(s.max_unpacked_gb * GB), free_bytes(store) + present)
    return listing


def _list_zip(root: Path) -> Listing:
    listing = Listing(root, "zip")
    try:
        zf = zipfile.ZipFile(root)
    except UnicodeDecodeError as e:  # a name flagged UTF-8 that is not: zipfile cannot list the zip at all
        shown = e.object.decode("utf-8", "backslashreplace") if isinstance(e.object, bytes) else "?"
        listing.problems.append(Problem(ERROR, shown, BAD_UTF8_FLAG, RECREATE))
        return listing
    except (zipfile.BadZipFile, OSError, NotImplementedError, ValueError) as e:
        raise DataError(f"{root} is not a readable zip file ({e}). Re-create it with a zip tool.") from None
    with zf:
        seen: dict[str, zipfile.ZipInfo] = {}
        named = sorted(((*_zip_name(i), i) for i in zf.infolist() if not i.is_dir()), key=lambda t: t[0])
        for name, cp437, info in named:  # the same order as a folder, whatever the zip's order
            if name in seen:  # zip allows one path twice; unpacking would let the second silently replace the first
                _duplicate(listing, name, seen[name], info)
                continue
            seen[name] = info
            refusal = _zip_refusal(info, name)
            if refusal:
                listing.problems.append(Problem(ERROR, name, *refusal))
                continue
            if cp437:
                listing.cp437_names.append(name)
            _classify(listing, Entry(name, info.file_size, zinfo=info))
        _check_dense(zf, listing)
    if listing.cp437_names:
        listing.problems.append(_cp437_note(root, listing.cp437_names))
    return listing


BAD_UTF8_FLAG = (
    "has a name marked as UTF-8 (zip flag bit 11) whose bytes are not UTF-8 (shown with the odd bytes escaped): "
    "the zip tool wrote it wrongly"
)


def _cp437_note(root: Path, names: list[str]) -> Problem:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return Problem(
        NOTE,
        str(root),
        f"{len(names)} entry name(s) have no UTF-8 flag and are not UTF-8, so they are read as CP437, as the zip "
        f"format says (Windows Explorer writes them so): {shown}",
        "If a name looks wrong, the zip was made in another code page: re-create it as a UTF-8 zip (7-Zip: "
        "-mcu=on; Windows 10+: tar -a -cf data.zip FOLDER)",
    )


def _duplicate(listing: Listing, name: str, first: zipfile.ZipInfo, again: zipfile.ZipInfo) -> None:
    if (first.CRC, first.file_size) == (again.CRC, again.file_size):
        listing.problems.append(
            Problem(WARNING, name, "appears twice in the zip (identical copies); it is used once", "")
        )
    else:
        listing.problems.append(
            Problem(
                ERROR,
                name,
                "appears twice in the zip with different content: which one is meant is unclear",
                "Re-create the zip with each path once",
            )
        )


def _zip_name(info: zipfile.ZipInfo) -> tuple[str, bool]:
    """(name, decoded as CP437?). The zip format (APPNOTE 4.4.4): a name with the UTF-8 flag is UTF-8 (zipfile
    decodes it, or refuses the zip); without it the name is CP437, which zipfile applies. Many tools write UTF-8
    without the flag, so, as Info-ZIP does, bytes that are valid UTF-8 are read as UTF-8."""
    name = info.filename
    if info.flag_bits & 0x800 or name.isascii():
        return name, False
    raw = name.encode("cp437")  # zipfile decoded these bytes as CP437, which maps every byte: this is lossless
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return name, True


def _zip_refusal(info: zipfile.ZipInfo, name: str) -> tuple[str, str] | None:
    """(message, fix) for an entry that is refused, else None."""
    if "\\" in name:
        return "uses backslashes in its path (a Windows-made path that could escape the folder)", RECREATE
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path", RECREATE
    if ".." in PurePosixPath(name).parts:
        return "has '..' in its path and would land outside the extraction folder", RECREATE
    if name.rsplit("/", 1)[-1] in ("", "."):
        return "has no file name (its path ends in '.')", RECREATE
    if info.create_system == 3:  # Unix: the upper 16 bits hold st_mode
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            return "is a symbolic link", RECREATE
        if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
            return "is a special file (device, pipe or socket)", RECREATE
    if info.flag_bits & 0x1:
        return "is encrypted (password-protected)", RECREATE
    if info.compress_type not in READABLE_METHODS:
        method = METHOD_NAMES.get(info.compress_type, "an unknown method")
        return (
            f"is compressed with {method} (zip method {info.compress_type}), which Python's zipfile cannot unpack",
            RECREATE_DEFLATE,
        )
    return None


def _check_dense(zf: zipfile.ZipFile, listing: Listing) -> None:
    """A media entry over RATIO_MIN_BYTES that expands more than MAX_RATIO times stays only if its header parses
    as the image (Pillow) or video (PyAV) its name says; only the first bytes are decompressed for that. Anything
    else is refused as a zip bomb: unpacking it would cost its declared size for nothing musubi could use."""
    for entry in list(listing.entries):
        info, kind = entry.zinfo, media.kind_of(entry.name)
        if not kind or info.file_size <= RATIO_MIN_BYTES or info.file_size <= MAX_RATIO * max(1, info.compress_size):
            continue
        if media.parses_as(lambda e=entry: open_entry(zf, e), kind):
            continue
        listing.entries.remove(entry)
        ratio = info.file_size // max(1, info.compress_size)
        listing.problems.append(
            Problem(
                ERROR,
                entry.name,
                f"expands {ratio}x ({info.compress_size} -> {info.file_size} bytes) and its content does not "
                f"parse as {'an image' if kind == 'image' else 'a video'}: a zip bomb, not media",
                "Remove it from the zip (it is not the file its name says); nothing was unpacked",
            )
        )


def open_entry(zf: zipfile.ZipFile, entry: Entry):
    """zf.open(entry) with every way a damaged entry fails as DataError naming the entry (a local header whose
    name is flagged UTF-8 but is not, or differs from the central directory's; a bad CRC; an unknown method)."""
    try:
        return zf.open(entry.zinfo)
    except UnicodeDecodeError:
        raise DataError(
            f"{entry.name}: {BAD_UTF8_FLAG.replace('has a name', 'its local header has a name')}. {RECREATE}"
        ) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, RuntimeError, EOFError, ValueError) as e:
        raise DataError(f"{entry.name}: cannot be read from the zip ({e}). Re-create the zip.") from None


def _check_sizes(listing: Listing, limit: int, free: int) -> None:
    total = sum(e.size for e in listing.entries)
    if total > limit:
        listing.problems.append(
            Problem(
                ERROR,
                str(listing.root),
                f"declares {human_bytes(total)} of files to unpack, more than the limit of {human_bytes(limit)}",
                "Raise --max_unpacked_gb if this is right",
            )
        )
    elif total > free:
        listing.problems.append(
            Problem(
                ERROR,
                str(listing.root),
                f"needs {human_bytes(total)} to unpack but only {human_bytes(free)} are free there",
                "Free disk space in --output_dir",
            )
        )


def _list_folder(root: Path) -> Listing:
    listing = Listing(root, "folder")
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            if (here / d).is_symlink():
                dirnames.remove(d)
                _refuse_link(listing, here / d)
        for fname in sorted(filenames):
            path = here / fname
            name = path.relative_to(root).as_posix()
            st = path.lstat()
            if not _is_utf8(name):
                shown = os.fsencode(name).decode("utf-8", "backslashreplace")
                listing.problems.append(
                    Problem(
                        ERROR,
                        shown,
                        "has a file name that is not valid UTF-8",
                        "Rename it (musubi's text files and our report are UTF-8)",
                    )
                )
            elif stat.S_ISLNK(st.st_mode):
                _refuse_link(listing, path)
            elif not stat.S_ISREG(st.st_mode):
                listing.problems.append(
                    Problem(ERROR, name, "is a special file (device, pipe or socket)", "Remove it from the folder")
                )
            else:
                _classify(listing, Entry(name, st.st_size, path=path))
    listing.entries.sort(key=lambda e: e.name)
    return listing


def _is_utf8(name: str) -> bool:
    """os.walk decodes undecodable bytes to surrogates; those names cannot be written to UTF-8 reports."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _refuse_link(listing: Listing, path: Path) -> None:
    listing.problems.append(
        Problem(
            ERROR,
            path.relative_to(listing.root).as_posix(),
            "is a symbolic link",
            "Replace the link by the file or folder it points to",
        )
    )


def _classify(listing: Listing, entry: Entry) -> None:
    """Keep media and captions; skip junk; report hidden media, nested archives and unsupported files."""
    parts = PurePosixPath(entry.name).parts
    base = parts[-1]
    kind = media.kind_of(base)
    if parts[0] == "__MACOSX" or base in JUNK_NAMES or base.startswith("._"):
        listing.skipped_junk += 1
    elif any(p.startswith(".") for p in parts):
        if kind:
            listing.problems.append(
                Problem(
                    WARNING,
                    entry.name,
                    "is hidden (its name or a folder starts with '.'), left out",
                    "Move it out of the hidden folder if it should train",
                )
            )
        else:
            listing.skipped_junk += 1
    elif kind or base.lower().endswith(CAPTION_EXT):
        listing.entries.append(entry)
    elif base.lower().endswith(ARCHIVE_EXTENSIONS):
        listing.problems.append(
            Problem(
                WARNING,
                entry.name,
                "is an archive inside the input, not unpacked",
                "Unpack it and put its files into the zip's folders",
            )
        )
    else:
        supported = ", ".join(media.IMAGE_EXTENSIONS + media.VIDEO_EXTENSIONS)
        listing.problems.append(
            Problem(
                WARNING, entry.name, "unsupported file type, ignored", f"Supported: {supported}, captions {CAPTION_EXT}"
            )
        )


def read_captions(listing: Listing, entries: list[Entry], limit: int) -> dict[str, bytes | DataError]:
    """The content of small entries (captions), read from the zip (opened once) or the folder without unpacking
    anything: name -> bytes, or the DataError for an entry that cannot be read or is larger than `limit` bytes."""
    out: dict[str, bytes | DataError] = {}
    zf = zipfile.ZipFile(listing.root) if listing.kind == "zip" else None
    try:
        for entry in entries:
            if entry.size > limit:
                out[entry.name] = DataError(
                    f"{entry.name}: {human_bytes(entry.size)} is too large for a caption (at most "
                    f"{human_bytes(limit)}): check that it is the description of its media, or shorten it"
                )
                continue
            try:
                if zf is None:
                    out[entry.name] = entry.path.read_bytes()
                else:
                    with open_entry(zf, entry) as f:
                        out[entry.name] = f.read()
            except DataError as e:
                out[entry.name] = e
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as e:
                out[entry.name] = DataError(f"{entry.name}: cannot be read ({e}). Re-create the zip or copy it again.")
    finally:
        if zf is not None:
            zf.close()
    return out


def store_name(entry: Entry) -> str:
    """The file name of a zip entry in the unpacked-media store: its content (CRC-32 and size) and its extension.
    Equal content gives one file, whatever its name or zip; a changed file gets a new name."""
    return f"{entry.zinfo.CRC:08x}-{entry.size}{PurePosixPath(entry.name).suffix.lower()}"


def materialize(listing: Listing, entries: list[Entry], store: Path) -> dict[str, Path]:
    """Make `entries` readable as files. A folder's are used where they are. A zip's are unpacked into `store`,
    named by content (`store_name`): nothing the user named becomes a file name (no name is too long, a file and
    a folder of the same name cannot collide), and an entry already unpacked by an earlier run is not unpacked
    again. Each file appears complete or not at all (temporary name, then rename). Returns name -> path. Raises
    DataError naming an entry that cannot be read or fails its CRC-32 check."""
    if listing.kind == "folder":
        return {e.name: e.path for e in entries}
    store.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    with zipfile.ZipFile(listing.root) as zf:
        for entry in entries:
            target = store / store_name(entry)
            if not (target.is_file() and target.stat().st_size == entry.size):
                _copy_entry(zf, entry, target)
            out[entry.name] = target
    return out


def _copy_entry(zf: zipfile.ZipFile, entry: Entry, target: Path) -> None:
    """Copy one entry. zipfile itself never returns more than the declared size (so a lying header cannot fill
    the disk) and fails the CRC-32 check of an entry whose data is longer, shorter or altered."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open_entry(zf, entry) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, target)
    except DataError:
        tmp.unlink(missing_ok=True)
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, RuntimeError, EOFError) as e:
        # RuntimeError: encrypted entry; BadZipFile: CRC mismatch or truncated archive.
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise UserError(
                f"the disk is full while unpacking {entry.name} into {target.parent} "
                f"({human_bytes(free_bytes(target.parent))} free): free space there, or pass --output_dir on a "
                "larger disk, then run again (what was unpacked is kept)"
            ) from None
        raise DataError(f"{entry.name}: cannot be read from the zip ({e}). Re-create the zip.") from None
