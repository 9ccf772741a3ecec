"""The input, a zip or a folder: found, listed and made readable safely, on real zips and folders built here.

Every refusal must name the entry and say what to do; nothing of a refused zip is unpacked; a folder is read
where it is and never written to.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
import zlib
from collections import namedtuple
from pathlib import Path

import pytest
from conftest import tree
from mediafactory import (
    add_zip_entry,
    make_explorer_zip,
    make_flat_bmp,
    make_flat_jpeg,
    make_image,
    make_video,
    make_zip,
    rename_zip_entry_raw,
    set_declared_size,
    set_zip_flag,
    set_zip_method,
)

from hvlora.core.errors import ConfigError, DataError
from hvlora.data import source
from hvlora.data.problems import ERROR, NOTE, WARNING


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> bytes:
    """A real 80x48 PNG's bytes, shared by the zips of this module."""
    return make_image(tmp_path_factory.mktemp("media") / "x.png").read_bytes()


def list_zip(make_settings, tmp_path, files, *flags, symlinks=None):
    """Build data/in.zip from `files` and list it; returns (listing, zip path)."""
    z = make_zip(tmp_path / "data" / "in.zip", files, symlinks=symlinks)
    return source.list_input(make_settings(*flags), tmp_path / "work"), z


def names(listing) -> list[str]:
    return [e.name for e in listing.entries]


def problem(listing, file: str):
    """The one problem about `file`; fails listing all problems if there is none or several."""
    found = [p for p in listing.problems if p.file == file]
    assert len(found) == 1, f"{file}: {[str(p) for p in listing.problems]}"
    return found[0]


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file below root (links not followed)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(root).as_posix()] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


# --- zip: what is kept, skipped and reported -----------------------------------------------------------------


def test_zip_keeps_media_and_captions_and_skips_archive_junk(tmp_path, make_settings, png):
    listing, z = list_zip(
        make_settings,
        tmp_path,
        {
            "a.png": png,
            "a.txt": b"a",
            "clips/deep/v.MP4": b"v",
            "clips/deep/v.txt": b"v",
            "__MACOSX/clips/._v.MP4": b"\0",
            "clips/._a.png": b"\0",
            ".DS_Store": b"x",
            "clips/Thumbs.db": b"x",
            "desktop.ini": b"x",
            ".git/config": b"x",
        },
    )
    assert (listing.kind, listing.root) == ("zip", z)
    assert names(listing) == ["a.png", "a.txt", "clips/deep/v.MP4", "clips/deep/v.txt"]
    assert listing.entries[0].size == len(png) and listing.entries[0].zinfo.filename == "a.png"
    assert listing.skipped_junk == 6 and listing.problems == []  # junk is skipped silently


@pytest.mark.parametrize(
    "bad_name, reason",
    [
        ("../escape.png", "'..' in its path"),
        ("clips/../../escape.png", "'..' in its path"),
        ("/abs/escape.png", "absolute path"),
        ("C:/win/escape.png", "absolute path"),
        ("c:escape.png", "absolute path"),
        ("dir\\..\\escape.png", "backslashes"),
        ("win\\escape.png", "backslashes"),
    ],
)
def test_zip_entry_escaping_the_target_is_refused_by_name(tmp_path, make_settings, png, bad_name, reason):
    listing, _ = list_zip(make_settings, tmp_path, {"ok.png": png, "ok.txt": b"ok", bad_name: png})
    p = problem(listing, bad_name)
    assert p.severity == ERROR and reason in p.message
    assert bad_name in str(p) and "Re-create the zip" in p.fix and "nothing was unpacked" in p.fix
    assert names(listing) == ["ok.png", "ok.txt"]


@pytest.mark.parametrize(
    "mode, reason",
    [
        (stat.S_IFLNK | 0o777, "is a symbolic link"),
        (stat.S_IFIFO | 0o644, "is a special file"),
        (stat.S_IFCHR | 0o644, "is a special file"),
        (stat.S_IFSOCK | 0o644, "is a special file"),
    ],
)
def test_zip_links_and_special_files_are_refused(tmp_path, make_settings, png, mode, reason):
    z = make_zip(tmp_path / "data" / "in.zip", {"ok.png": png, "ok.txt": b"ok"})
    add_zip_entry(z, "odd.png", b"/etc/passwd", mode=mode)
    listing = source.list_input(make_settings(), tmp_path / "work")
    p = problem(listing, "odd.png")
    assert p.severity == ERROR and reason in p.message and "plain files" in p.fix
    assert "odd.png" not in names(listing)


def test_zip_symlink_made_by_make_zip_is_refused(tmp_path, make_settings, png):
    listing, _ = list_zip(make_settings, tmp_path, {"ok.png": png}, symlinks={"link.png": "/etc/passwd"})
    assert str(problem(listing, "link.png")).startswith("error: link.png: is a symbolic link")


def test_zip_regular_unix_entry_is_kept(tmp_path, make_settings, png):
    z = make_zip(tmp_path / "data" / "in.zip", {"ok.txt": b"ok"})
    add_zip_entry(z, "ok.png", png, mode=stat.S_IFREG | 0o644)
    listing = source.list_input(make_settings(), tmp_path / "work")
    assert names(listing) == ["ok.png", "ok.txt"] and listing.problems == []  # sorted, as a folder


def test_zip_encrypted_entry_is_refused(tmp_path, make_settings, png):
    z = make_zip(tmp_path / "data" / "in.zip", {"secret.png": png, "secret.txt": b"s", "ok.png": png})
    set_zip_flag(z, "secret.png", 0x1)
    with zipfile.ZipFile(z) as zf:  # the hand-made entry really is flagged: zipfile wants a password for it
        with pytest.raises(RuntimeError, match="password required"):
            zf.read("secret.png")
    listing = source.list_input(make_settings(), tmp_path / "work")
    p = problem(listing, "secret.png")
    assert p.severity == ERROR and "encrypted (password-protected)" in p.message and "Re-create the zip" in p.fix
    assert names(listing) == ["ok.png", "secret.txt"]


def test_windows_explorer_zip_with_accented_names_is_read_as_cp437_and_said(tmp_path, make_settings, png):
    """Explorer writes names in CP437 with the UTF-8 flag unset, as the zip format specifies for that case; the
    names are decoded so (Info-ZIP's rule), media and caption pair up, and the report names what was decoded."""
    z = make_explorer_zip(
        tmp_path / "data" / "in.zip",
        {"café.png": png, "café.txt": "un café".encode("cp1252"), "Ärger/über.png": png, "Ärger/über.txt": b"u"},
    )
    with zipfile.ZipFile(z) as zf:  # as Explorer writes it: raw CP437 bytes, flag bit 11 clear
        assert all(i.flag_bits & 0x800 == 0 for i in zf.infolist())
    assert "caf\x82.png".encode("latin-1") in z.read_bytes()  # é is 0x82 in CP437
    listing = source.list_input(make_settings(), tmp_path / "work")
    assert names(listing) == ["café.png", "café.txt", "Ärger/über.png", "Ärger/über.txt"]
    note = problem(listing, str(z))
    assert note.severity == NOTE and "4 entry name(s)" in note.message and "read as CP437" in note.message
    assert "Windows Explorer" in note.message and "café.png" in note.message
    assert "-mcu=on" in note.fix and "tar -a -cf data.zip" in note.fix
    paths = source.materialize(listing, [e for e in listing.entries if e.name.endswith(".png")], tmp_path / "st")
    assert paths["café.png"].read_bytes() == png


def test_latin1_bytes_without_the_utf8_flag_are_cp437_as_the_format_says(tmp_path, make_settings, png):
    """Bytes that are not UTF-8 and carry no flag are CP437 by the zip format: read, not refused (the report
    shows the name so read; names never become paths here)."""
    z = make_zip(tmp_path / "data" / "in.zip", {"cafX.png": png, "ok.png": png})
    rename_zip_entry_raw(z, "cafX.png", "café.png".encode("latin-1"))  # raw b'caf\xe9.png', UTF-8 flag clear
    listing = source.list_input(make_settings(), tmp_path / "work")
    assert names(listing) == ["cafΘ.png", "ok.png"]  # 0xE9 is Θ in CP437
    assert problem(listing, str(z)).severity == NOTE


@pytest.mark.parametrize("where", ["central", "local"])
def test_utf8_flag_on_latin1_bytes_is_refused_naming_the_entry(tmp_path, make_settings, png, where):
    """A tool that sets the UTF-8 flag on Latin-1 bytes: zipfile cannot decode the name. In the central directory
    the zip is refused at listing; in a local header only (the central directory says cafX.png), when the entry is
    read: either way the entry is named."""
    z = make_zip(tmp_path / "data" / "in.zip", {"cafX.png": png, "cafX.txt": b"c", "ok.png": png, "ok.txt": b"o"})
    rename_zip_entry_raw(z, "cafX.png", b"caf\xe9.png", central=where == "central")
    set_zip_flag(z, b"caf\xe9.png" if where == "central" else b"cafX.png", 0x800, central=where == "central")
    if where == "central":
        listing = source.list_input(make_settings(), tmp_path / "work")
        [p] = listing.problems
        assert p.severity == ERROR and p.file == "caf\\xe9.png" and "marked as UTF-8" in p.message
        assert listing.entries == []
        return
    listing = source.list_input(make_settings(), tmp_path / "work")
    assert listing.problems == [] and "cafX.png" in names(listing)
    with pytest.raises(DataError) as e:
        source.materialize(listing, listing.entries, tmp_path / "work")
    assert str(e.value).startswith("cafX.png: its local header has a name marked as UTF-8")
    texts = source.read_captions(listing, [e for e in listing.entries if e.name == "cafX.png"], 1 << 20)
    assert str(texts["cafX.png"]).startswith("cafX.png: its local header")


@pytest.mark.parametrize("name", [".", "sub/.", "./."])
def test_entry_without_a_file_name_is_refused_naming_it(tmp_path, make_settings, png, name):
    z = make_zip(tmp_path / "data" / "in.zip", {"ok.png": png, "ok.txt": b"ok"})
    add_zip_entry(z, name, png)
    listing = source.list_input(make_settings(), tmp_path / "work")
    p = problem(listing, name)
    assert p.severity == ERROR and "has no file name" in p.message and names(listing) == ["ok.png", "ok.txt"]


@pytest.mark.parametrize("method, label", [(9, "Deflate64"), (93, "Zstandard (zstd)"), (98, "PPMd")])
def test_entry_in_a_method_zipfile_cannot_read_is_refused_with_the_method_and_fix(
    tmp_path, make_settings, png, method, label
):
    z = make_zip(tmp_path / "data" / "in.zip", {"a.png": png, "a.txt": b"cap", "b.png": png, "b.txt": b"b"})
    set_zip_method(z, "a.txt", method)
    with zipfile.ZipFile(z) as zf, pytest.raises(NotImplementedError):  # what zipfile itself says
        zf.read("a.txt")
    listing = source.list_input(make_settings(), tmp_path / "work")
    p = problem(listing, "a.txt")
    assert p.severity == ERROR and f"is compressed with {label} (zip method {method})" in p.message
    assert "Deflate method" in p.fix and ".." not in str(p) and "UTF-8 text file" not in str(p)


def test_zip_utf8_name_without_the_utf8_flag_is_read_as_utf8(tmp_path, make_settings, png):
    """Many zip tools write UTF-8 names without setting the flag; zipfile decodes them as CP437."""
    z = make_zip(tmp_path / "data" / "in.zip", {"cafXX.png": png})
    rename_zip_entry_raw(z, "cafXX.png", "café.png".encode())
    listing = source.list_input(make_settings(), tmp_path / "work")
    assert names(listing) == ["café.png"] and listing.problems == []
    paths = source.materialize(listing, listing.entries, tmp_path / "work" / "extracted")
    assert paths["café.png"].parent == tmp_path / "work" / "extracted"
    assert paths["café.png"].read_bytes() == png


def test_nested_archives_are_reported_and_not_unpacked(tmp_path, make_settings, png):
    inner = make_zip(tmp_path / "src" / "inner.zip", {"hidden.png": png, "hidden.txt": b"h"}).read_bytes()
    listing, _ = list_zip(
        make_settings,
        tmp_path,
        {"a.png": png, "a.txt": b"a", "more/inner.zip": inner, "b.tar.gz": b"\x1f\x8b", "c.7z": b"7z", "d.RAR": b"R"},
    )
    for name in ("more/inner.zip", "b.tar.gz", "c.7z", "d.RAR"):
        p = problem(listing, name)
        assert p.severity == WARNING and "archive inside the input, not unpacked" in p.message
        assert "Unpack it" in p.fix
    assert names(listing) == ["a.png", "a.txt"]
    dest = tmp_path / "work" / "extracted"
    media = [e for e in listing.entries if e.name == "a.png"]
    paths = source.materialize(listing, media, dest)
    assert tree(dest) == {paths["a.png"].name}  # the inner zip is neither copied nor opened


def test_unsupported_extensions_are_listed_with_what_is_supported(tmp_path, make_settings, png):
    listing, _ = list_zip(
        make_settings,
        tmp_path,
        {"a.png": png, "a.txt": b"a", "notes.pdf": b"%PDF", "anim.gif": b"GIF89a", "clip.m4v": b"x"},
    )
    for name in ("notes.pdf", "anim.gif", "clip.m4v"):
        p = problem(listing, name)
        assert p.severity == WARNING and "unsupported file type, ignored" in p.message
        for ext in (".png", ".jpg", ".webp", ".bmp", ".mp4", ".mov", ".webm", ".mkv", ".avi", ".txt"):
            assert ext in p.fix
    assert names(listing) == ["a.png", "a.txt"]


def test_hidden_media_are_reported_and_left_out(tmp_path, make_settings, png):
    listing, _ = list_zip(
        make_settings,
        tmp_path,
        {"a.png": png, "a.txt": b"a", ".hidden/b.png": png, ".hidden/b.txt": b"b", "clips/.c.mp4": b"v"},
    )
    for name in (".hidden/b.png", "clips/.c.mp4"):
        p = problem(listing, name)
        assert p.severity == WARNING and "is hidden" in p.message and "left out" in p.message
        assert "Move it out of the hidden folder" in p.fix
    assert names(listing) == ["a.png", "a.txt"] and listing.skipped_junk == 1  # .hidden/b.txt


# --- zip bombs ----------------------------------------------------------------------------------------------


def test_declared_total_over_max_unpacked_gb_is_refused(tmp_path, make_settings, png):
    listing, z = list_zip(make_settings, tmp_path, {"a.png": png, "a.txt": b"a"}, "--max_unpacked_gb", "0.000001")
    p = problem(listing, str(z))
    assert p.severity == ERROR and "declares 8.0 kB of files to unpack, more than the limit of 1.0 kB" in p.message
    assert "--max_unpacked_gb" in p.fix


def test_declared_total_over_free_disk_is_refused(tmp_path, make_settings, png, monkeypatch):
    asked = []
    usage = namedtuple("usage", "total used free")

    def disk_usage(path):
        asked.append(Path(path))
        return usage(10**9, 10**9 - 100, 100)

    monkeypatch.setattr(source.shutil, "disk_usage", disk_usage)
    z = make_zip(tmp_path / "data" / "in.zip", {"a.png": png, "a.txt": b"a"})
    listing = source.list_input(make_settings(), tmp_path / "output" / "runs" / "r1")  # not created yet
    p = problem(listing, str(z))
    assert p.severity == ERROR and "to unpack but only" in p.message and "free there" in p.message
    assert "Free disk space" in p.fix
    assert asked == [tmp_path]  # free space is measured on the nearest existing folder of the target


def test_entry_with_absurd_compression_ratio_that_is_not_media_is_refused(tmp_path, make_settings, png):
    listing, _ = list_zip(
        make_settings,
        tmp_path,
        {"ok.png": png, "bomb.png": bytes(4 << 20), "bomb.mp4": bytes(3 << 20), "noise.png": os.urandom(2 << 20)},
    )
    for name, kind in (("bomb.png", "an image"), ("bomb.mp4", "a video")):
        p = problem(listing, name)
        assert p.severity == ERROR and "zip bomb" in p.message and f"does not parse as {kind}" in p.message
        assert int(p.message.split("x ")[0].split()[-1]) > source.MAX_RATIO
    assert "-> 4194304 bytes" in problem(listing, "bomb.png").message
    assert names(listing) == ["noise.png", "ok.png"]  # a large entry that does not compress is fine


def test_flat_bmp_and_flat_jpeg_that_expand_hundreds_of_times_are_media(tmp_path, make_settings):
    """A 1920x1080 BMP screenshot with one red rectangle and flat JPEG art deflate 600-800x: they are media (their
    headers parse as BMP and JPEG), not bombs; what bounds the cost is the declared total (see below)."""
    bmp, jpg = make_flat_bmp(tmp_path / "src" / "shot.bmp"), make_flat_jpeg(tmp_path / "src" / "art.jpg")
    z = make_zip(tmp_path / "data" / "in.zip", {"shot.bmp": bmp, "shot.txt": b"s", "art.jpg": jpg, "art.txt": b"a"})
    with zipfile.ZipFile(z) as zf:
        ratios = {i.filename: i.file_size / i.compress_size for i in zf.infolist() if i.file_size > (1 << 20)}
    assert ratios.keys() == {"shot.bmp", "art.jpg"} and min(ratios.values()) > 5 * source.MAX_RATIO, ratios
    listing = source.list_input(make_settings(), tmp_path / "work")
    assert listing.problems == [] and names(listing) == ["art.jpg", "art.txt", "shot.bmp", "shot.txt"]
    paths = source.materialize(listing, listing.entries[::2], tmp_path / "work" / "store")
    assert paths["shot.bmp"].read_bytes() == bmp.read_bytes()
    over = source.list_input(make_settings("--max_unpacked_gb", "0.005"), tmp_path / "work")
    assert "more than the limit of 5.0 MB" in problem(over, str(z)).message  # the cost rule still holds


def test_entry_larger_than_declared_stops_unpacking_naming_it(tmp_path, make_settings):
    video = make_video(tmp_path / "src" / "v.mp4", frames=5)
    z = make_zip(tmp_path / "data" / "in.zip", {"v.mp4": video, "v.txt": b"cap"})
    set_declared_size(z, "v.mp4", 10)
    listing = source.list_input(make_settings(), tmp_path / "work")
    assert listing.problems == [] and listing.entries[0].size == 10  # the lie passes the scan...
    dest = tmp_path / "work" / "extracted"
    with pytest.raises(DataError) as e:
        source.materialize(listing, listing.entries, dest)  # ...and is caught while unpacking
    assert str(e.value).startswith("v.mp4: ") and "Re-create the zip" in str(e.value)
    assert not (dest / "v.mp4").exists() or (dest / "v.mp4").stat().st_size <= 10


# --- materialize ------------------------------------------------------------------------------------------


def test_materialize_zip_names_files_by_content_and_leaves_the_zip_untouched(tmp_path, make_settings, png):
    z = make_zip(tmp_path / "data" / "in.zip", {"a/b/c.png": png, "a/b/c.txt": b"cap", "same.PNG": png})
    before = snapshot(tmp_path / "data")
    listing = source.list_input(make_settings(), tmp_path / "work")
    dest = tmp_path / "work" / "extracted"
    media = [e for e in listing.entries if not e.name.endswith(".txt")]
    paths = source.materialize(listing, media, dest)
    expected = f"{zlib.crc32(png):08x}-{len(png)}.png"
    # the same content under two names is one file; no folder of the zip is recreated
    assert paths == {"a/b/c.png": dest / expected, "same.PNG": dest / expected} and tree(dest) == {expected}
    assert paths["a/b/c.png"].read_bytes() == png
    assert snapshot(tmp_path / "data") == before and z.is_file()
    mtime = (dest / expected).stat().st_mtime_ns
    source.materialize(listing, media, dest)  # a second run unpacks nothing again
    assert (dest / expected).stat().st_mtime_ns == mtime
    # captions are read from the zip itself
    assert source.read_captions(listing, [listing.entries[1]], 1000) == {"a/b/c.txt": b"cap"}


def test_materialize_never_uses_an_entry_name_as_a_path(tmp_path, png):
    """Even an entry that got past the scan ('../evil.png') lands inside the store under its content name."""
    z = make_zip(tmp_path / "in.zip", {"../evil.png": png})
    with zipfile.ZipFile(z) as zf:
        info = zf.infolist()[0]
    listing = source.Listing(z, "zip")
    dest = tmp_path / "work" / "extracted"
    paths = source.materialize(listing, [source.Entry("../evil.png", info.file_size, zinfo=info)], dest)
    assert paths["../evil.png"].parent == dest and not (tmp_path / "work" / "evil.png").exists()


def test_unreadable_zip_raises_naming_it(tmp_path, make_settings):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fake.zip").write_bytes(os.urandom(300))
    with pytest.raises(DataError, match=r"fake\.zip is not a readable zip file.*Re-create it"):
        source.list_input(make_settings(), tmp_path / "work")


# --- folder input -----------------------------------------------------------------------------------------


def test_folder_follows_the_zip_rules_and_is_read_in_place(tmp_path, make_settings, png):
    root = tmp_path / "in"
    for name, data in {
        "a.png": png,
        "a.txt": b"a",
        "sub/b.png": png,
        "sub/b.txt": b"b",
        ".DS_Store": b"x",
        "sub/._b.png": b"\0",
        ".hidden/c.png": png,
        "notes.pdf": b"%PDF",
        "more.zip": b"PK",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    before = snapshot(root)
    listing = source.list_input(make_settings("--input_dir", str(root)), tmp_path / "work")
    assert (listing.kind, listing.root) == ("folder", root)
    assert names(listing) == ["a.png", "a.txt", "sub/b.png", "sub/b.txt"]
    assert listing.entries[2].path == root / "sub/b.png" and listing.entries[2].size == len(png)
    assert "is hidden" in problem(listing, ".hidden/c.png").message
    assert "unsupported file type" in problem(listing, "notes.pdf").message
    assert "archive inside the input" in problem(listing, "more.zip").message
    assert listing.skipped_junk == 2
    dest = tmp_path / "work" / "extracted"
    paths = source.materialize(listing, listing.entries, dest)
    assert paths == {e.name: root / e.name for e in listing.entries}  # used where they are, not copied
    assert not dest.exists() and snapshot(root) == before


def test_folder_links_and_special_files_are_refused(tmp_path, make_settings, png):
    root, outside = tmp_path / "in", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "x.png").write_bytes(png)
    (root / "a.png").write_bytes(png)
    (root / "a.txt").write_text("a")
    (root / "link.png").symlink_to(outside / "x.png")
    (root / "sub" / "linkdir").symlink_to(outside, target_is_directory=True)
    os.mkfifo(root / "pipe.png")
    listing = source.list_input(make_settings("--input_dir", str(root)), tmp_path / "work")
    for name, reason in (
        ("link.png", "is a symbolic link"),
        ("sub/linkdir", "is a symbolic link"),
        ("pipe.png", "is a special file"),
    ):
        p = problem(listing, name)
        assert p.severity == ERROR and reason in p.message and p.fix
    assert "Replace the link" in problem(listing, "link.png").fix
    assert names(listing) == ["a.png", "a.txt"]  # nothing reached through the links


def test_folder_name_that_is_not_utf8_is_refused(tmp_path, make_settings, png):
    root = tmp_path / "in"
    root.mkdir()
    (root / "ok.png").write_bytes(png)
    with open(os.path.join(os.fsencode(root), b"caf\xe9.png"), "wb") as f:
        f.write(png)
    listing = source.list_input(make_settings("--input_dir", str(root)), tmp_path / "work")
    assert names(listing) == ["ok.png"]
    [p] = [p for p in listing.problems if p.file.startswith("caf")]
    assert p.severity == ERROR and "UTF-8" in p.message
    p.file.encode("utf-8")  # the report can print and save it


# --- finding the input ------------------------------------------------------------------------------------


class TestFindInput:
    def test_only_zip_in_data_dir(self, tmp_path, make_settings):
        z = make_zip(tmp_path / "data" / "only.ZIP", {"a.txt": b"x"})
        (tmp_path / "data" / "notes.txt").write_text("not a zip")
        assert source.find_input(make_settings()) == (z, "zip")

    def test_several_zips_are_named(self, tmp_path, make_settings):
        for n in ("one.zip", "two.zip"):
            make_zip(tmp_path / "data" / n, {"a.txt": b"x"})
        with pytest.raises(DataError) as e:
            source.find_input(make_settings())
        msg = str(e.value)
        assert str(tmp_path / "data" / "one.zip") in msg and str(tmp_path / "data" / "two.zip") in msg
        assert "--input_zip" in msg

    @pytest.mark.parametrize("make_dir", [True, False])
    def test_none_says_where_to_put_one(self, tmp_path, make_settings, make_dir):
        if make_dir:
            (tmp_path / "data").mkdir()
        with pytest.raises(DataError) as e:
            source.find_input(make_settings())
        msg = str(e.value)
        assert f"no .zip found in {tmp_path / 'data'}" in msg and "--input_zip" in msg and "--input_dir" in msg

    def test_bare_name_is_looked_up_in_data_dir(self, tmp_path, make_settings):
        make_zip(tmp_path / "data" / "a.zip", {"a.txt": b"x"})
        b = make_zip(tmp_path / "data" / "b.zip", {"a.txt": b"x"})
        assert source.find_input(make_settings("--input_zip", "b.zip")) == (b, "zip")

    def test_path_outside_data_dir(self, tmp_path, make_settings):
        z = make_zip(tmp_path / "elsewhere" / "set.zip", {"a.txt": b"x"})
        make_zip(tmp_path / "data" / "other.zip", {"a.txt": b"x"})
        assert source.find_input(make_settings("--input_zip", str(z))) == (z, "zip")

    def test_missing_absolute_input_zip_is_named_without_claiming_a_data_dir_lookup(self, tmp_path, make_settings):
        with pytest.raises(DataError) as e:
            source.find_input(make_settings("--input_zip", str(tmp_path / "elsewhere" / "nope.zip")))
        msg = str(e.value)
        assert msg.startswith(f"input_zip {tmp_path / 'elsewhere' / 'nope.zip'} does not exist. Pass the path")
        assert "looked" not in msg and str(tmp_path / "data" / "nope.zip") not in msg

    def test_a_path_with_folders_is_not_looked_up_in_data_dir(self, tmp_path, make_settings):
        make_zip(tmp_path / "data" / "b.zip", {"a.txt": b"x"})
        with pytest.raises(DataError, match="sub/b.zip does not exist"):
            source.find_input(make_settings("--input_zip", "sub/b.zip"))

    def test_input_dir(self, tmp_path, make_settings):
        make_zip(tmp_path / "data" / "ignored.zip", {"a.txt": b"x"})
        (tmp_path / "mine").mkdir()
        assert source.find_input(make_settings("--input_dir", "mine")) == (tmp_path / "mine", "folder")

    def test_input_dir_that_is_missing_or_a_file(self, tmp_path, make_settings):
        (tmp_path / "file").write_text("x")
        make_zip(tmp_path / "set.zip", {"a.txt": b"x"})
        for arg, words in (
            ("missing", "does not exist: pass the folder that holds your media"),
            ("file", "is a file, not a folder: pass a folder"),
            ("set.zip", "is a file, not a folder: pass it with --input_zip"),
        ):
            with pytest.raises(DataError) as e:
                source.find_input(make_settings("--input_dir", arg))
            assert str(e.value) == f"input_dir {tmp_path / arg} {words}"

    def test_zip_and_folder_together_are_refused(self, tmp_path, make_settings):
        with pytest.raises(ConfigError, match="input_zip and input_dir"):
            make_settings("--input_dir", "x", "--input_zip", "y.zip")
