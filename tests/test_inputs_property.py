"""Property-based: whatever zip, folder or setting values a user gives, `train_local.py --check_data` answers with
exit 0 or 2, never a traceback or an internal error; it writes nothing outside its run folder; and every media file
of the input is either in the dataset or named in the report with a reason.

Inputs are generated with hypothesis from real parts: valid PNG/JPEG/MP4 files, flat-colour BMP (over 1 MiB, it
deflates several hundred times) and JPEG images, an HDR clip (HEVC 10-bit, BT.2020, HLG), damaged files, captions
in several encodings (UTF-16, Windows-1252, Shift-JIS, GBK); names with random Unicode (both normalisation forms,
a caption's form drawn apart from its media's), entries named as Windows Explorer names them (CP437, no UTF-8
flag), depths, duplicates, case twins, hidden folders, refused entries (`..`, absolute, backslashes, links) mixed
with good ones. Beyond exit 0/2: a media file whose caption is there (in either normalisation form) is never
reported without one. Bounded so the suite stays fast."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import unicodedata
import zipfile
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mediafactory import explorer_zipinfo, make_flat_bmp, make_flat_jpeg, make_hdr_video, make_image, make_video

from hvlora.core import cli
from hvlora.data import media

MEDIA_EXT = (".png", ".jpg", ".JPG", ".webp", ".bmp", ".mp4", ".MOV", ".mkv")
OTHER_EXT = (".txt", ".TXT", ".pdf", ".zip", "")


def _blobs() -> dict[str, bytes]:
    work = Path(tempfile.mkdtemp(prefix="blobs-"))
    try:
        png = make_image(work / "a.png").read_bytes()
        jpg = make_image(work / "a.jpg").read_bytes()
        webp = make_image(work / "a.webp").read_bytes()
        mp4 = make_video(work / "a.mp4", frames=9).read_bytes()
        mkv = make_video(work / "a.mkv", frames=5).read_bytes()
        flat_bmp = make_flat_bmp(work / "flat.bmp", 1024, 400).read_bytes()  # 1.2 MB, deflates ~500x
        flat_jpg = make_flat_jpeg(work / "flat.jpg", 800).read_bytes()
        hdr = make_hdr_video(work / "hdr.mov", "hlg", frames=5).read_bytes()
    finally:
        shutil.rmtree(work)
    return {
        "png": png,
        "jpg": jpg,
        "webp": webp,
        "mp4": mp4,
        "mkv": mkv,
        "flat_bmp": flat_bmp,
        "flat_jpg": flat_jpg,
        "hdr": hdr,
        "cut_png": png[: len(png) // 2],
        "cut_mp4": mp4[: len(mp4) // 3],
        "empty": b"",
        "noise": bytes(range(256)) * 3,
        "caption": b"a cat on a sofa",
        "caption_trigger": b"[trigger] in the rain",
        "caption_utf16": "a café".encode("utf-16"),
        "caption_latin1": "a café".encode("latin-1"),
        "caption_sjis": "ソファの上の猫".encode("shift_jis"),
        "caption_gbk": "一只猫在沙发上".encode("gbk"),
        "caption_nul": b"a\x00b",
        "caption_empty": b"  \n",
    }


BLOBS = _blobs()
SHAPES = {
    "flat BMP": ("flat_bmp", "flat_jpg"),
    "HDR clip": ("hdr",),
    "non-UTF-8 caption": ("caption_sjis", "caption_gbk"),
}
component = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))


@st.composite
def entry_name(draw) -> str:
    parts = draw(st.lists(component, min_size=0, max_size=3))
    stem = draw(component)
    ext = draw(st.sampled_from(MEDIA_EXT + OTHER_EXT))
    name = "/".join([*parts, stem + ext])
    form = draw(st.sampled_from(("NFC", "NFD")))
    name = unicodedata.normalize(form, name)
    refusal = draw(st.sampled_from((None,) * 8 + ("../", "/", "\\")))
    return name if refusal is None else (refusal + name if refusal != "\\" else name.replace("/", "\\") + "\\x.png")


class Entry(NamedTuple):
    """One generated input file: `cp437` names a zip entry as Windows Explorer does (no UTF-8 flag)."""

    name: str
    content: bytes
    link: bool = False
    cp437: bool = False


@st.composite
def dataset(draw) -> list[Entry]:
    """Entries: media with captions beside them most of the time."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        name = draw(entry_name())
        kind = media.kind_of(name)
        if kind == "image":
            blobs = ("png", "jpg", "webp", "flat_bmp", "flat_jpg", "cut_png", "noise", "empty")
        elif kind == "video":
            blobs = ("mp4", "mkv", "hdr", "cut_mp4", "noise")
        else:
            blobs = [k for k in BLOBS if k.startswith("caption")]
        link = draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())
        out.append(Entry(name, BLOBS[draw(st.sampled_from(blobs))], link, draw(st.integers(0, 3)) == 0))
        if kind and draw(st.integers(0, 3)):
            stem = unicodedata.normalize(
                draw(st.sampled_from(("NFC", "NFD"))), str(PurePosixPath(name).with_suffix(""))
            )
            cap = stem + draw(st.sampled_from((".txt", ".txt", ".TXT")))
            caption = BLOBS[draw(st.sampled_from([k for k in BLOBS if k.startswith("caption")]))]
            out.append(Entry(cap, caption, cp437=draw(st.integers(0, 3)) == 0))
    if draw(st.booleans()) and out:  # a duplicate path (same or other content)
        out.append(Entry(out[0].name, draw(st.sampled_from((out[0].content, BLOBS["png"])))))
    return out


def _write_zip(path: Path, entries) -> None:
    import stat
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # duplicate names are the point
        for name, content, link, cp437 in entries:
            info = explorer_zipinfo(name) if cp437 else zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if link:
                info.create_system = 3
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                content = b"../../etc/passwd"
            zf.writestr(info, content)


def _write_folder(root: Path, entries) -> list[str]:
    """Entries a real file system can hold (refused names become plain files elsewhere); returns the names."""
    written = []
    for name, content, link, _ in entries:
        if name.startswith("/") or "\\" in name or ".." in name.split("/"):
            continue
        path = root / name
        if (
            any(len(p.encode()) > 255 for p in path.parts)
            or path.exists()
            or any(q.is_file() or q.is_symlink() for q in path.parents)
        ):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if link:
            os.symlink("/etc/passwd", path)
        else:
            path.write_bytes(content)
        written.append(name)
    return written


def _run(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return rc, out.getvalue() + err.getvalue()


def _snapshot(root: Path, skip: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if skip not in p.parents and p != skip}


def _expect_accounted(report: dict, text: str, names: list[str]) -> None:
    """Every media file of the input is in the report's files (in the dataset, or with a reason), or named in an
    input-level problem (a refused or hidden entry)."""
    files = {f["file"]: f for f in report["files"]}
    named = {p["file"] for p in report["problems"]} | {n for p in report["problems"] for n in p["file"].split(", ")}
    for name in names:
        base = PurePosixPath(name).name
        if not media.kind_of(name) or base.startswith("._") or name.startswith("__MACOSX/"):
            continue
        if name in files:
            f = files[name]
            assert f["status"] in ("ok", "warning") and f["block"] or f["problems"], f
        else:
            assert name in named or any(name in p["file"] for p in report["problems"]), (name, report["problems"])


def _as_listed(entry: Entry) -> str:
    """The name a zip entry is listed under: one written without the UTF-8 flag is read as UTF-8 when its CP437
    bytes are valid UTF-8 (Info-ZIP's rule), else as CP437, which gives back the name written."""
    if not entry.cp437:
        return entry.name
    try:
        return entry.name.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return entry.name


def _expect_captions_found(report: dict, names: list[str]) -> None:
    """A media file with a `.txt` of the same path beside it (in any normalisation form, any case of `.txt`) is
    never reported as having no caption."""
    stems = {unicodedata.normalize("NFC", n[:-4]) for n in names if n.lower().endswith(".txt")}
    for f in report["files"]:
        if unicodedata.normalize("NFC", str(PurePosixPath(f["file"]).with_suffix(""))) in stems:
            assert f["caption_file"] is not None, f


def _case(tmp: Path, entries, as_zip: bool, flags: list[str]) -> None:
    root = tmp / "case"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    (root / "empty.toml").write_text("")
    if as_zip:
        _write_zip(root / "data" / "in.zip", entries)
        names = [_as_listed(e) for e in entries if not e.link]
        source = ["--input_zip", str(root / "data" / "in.zip")]
    else:
        names = _write_folder(root / "in", entries)
        (root / "in").mkdir(exist_ok=True)
        source = ["--input_dir", str(root / "in")]
    before = _snapshot(root, root / "output")
    argv = ["--config", str(root / "empty.toml"), "--output_dir", str(root / "output"), "--check_data", *source, *flags]
    rc, text = _run(argv)
    event(f"exit {rc}" + (", report" if "musubi items per bucket" in text else ""))
    for shape, keys in SHAPES.items():  # how often the generated inputs hold the shapes issue 14 is about
        if any(e.content is BLOBS[k] for e in entries for k in keys):
            event(shape)
    if any(e.cp437 and not e.name.isascii() for e in entries):
        event("CP437 name")
    assert rc in (0, 2), text
    assert "Traceback" not in text and "internal error" not in text, text
    assert _snapshot(root, root / "output") == before  # the input and everything beside it untouched
    runs = sorted((root / "output" / "runs").glob("*")) if (root / "output" / "runs").exists() else []
    outside = {p.name for p in (root / "output").iterdir()} - {"runs"} if (root / "output").exists() else set()
    assert outside == set() and len(runs) <= 1, outside
    if runs and (runs[0] / "dataset_report.json").exists():
        report = json.loads((runs[0] / "dataset_report.json").read_text())
        _expect_accounted(report, text, names)
        _expect_captions_found(report, [n for n in names if n not in {e.name for e in entries if e.link}])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    entries=dataset(),
    as_zip=st.booleans(),
    trigger=st.sampled_from(("", "ohwx", "a\\b", "[x]", "猫")),
    missing=st.sampled_from(("error", "trigger", "skip")),
    strict=st.booleans(),
)
def test_any_input_gets_exit_0_or_2_and_a_full_account(tmp_path_factory, entries, as_zip, trigger, missing, strict):
    tmp = tmp_path_factory.mktemp("prop", numbered=True)
    flags = ["--resolution", "64x64", "--target_frames", "1,5", "--missing_caption", missing]
    flags += ["--trigger_word", trigger] if trigger else []
    flags += ["--strict"] if strict else []
    if missing == "trigger" and not trigger:
        flags += ["--trigger_word", "ohwx"]
    _case(tmp, entries, as_zip, flags)


FLAG_VALUES = {
    "--seed": st.one_of(st.integers(-(2**70), 2**70).map(str), st.sampled_from(("x", "1.5", ""))),
    "--epochs": st.integers(-5, 10**30).map(str),
    "--rank": st.integers(-5, 10**6).map(str),
    "--learning_rate": st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.just("abc")),
    "--network_alpha": st.floats(allow_nan=True, allow_infinity=True).map(repr),
    "--max_unpacked_gb": st.floats(allow_nan=True, allow_infinity=True).map(repr),
    "--resolution": st.tuples(st.integers(-10, 10**6), st.integers(-10, 10**6)).map(lambda t: f"{t[0]}x{t[1]}"),
    "--target_frames": st.lists(st.integers(-3, 10**7), min_size=1, max_size=4).map(lambda v: ",".join(map(str, v))),
    "--frame_stride": st.integers(-3, 10**12).map(str),
    "--max_frames": st.integers(-3, 10**12).map(str),
    "--num_repeats": st.integers(-3, 10**12).map(str),
    "--trigger_word": st.text(max_size=8),
    "--output_name": st.text(max_size=12),
    "--revision": st.text(max_size=12),
    "--blocks_to_swap": st.integers(-3, 100).map(str),
    "--save_every_n_epochs": st.integers(-3, 10**9).map(str),
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.dictionaries(st.sampled_from(sorted(FLAG_VALUES)), st.none(), min_size=1, max_size=4).flatmap(
        lambda keys: st.fixed_dictionaries({k: FLAG_VALUES[k] for k in keys})
    )
)
def test_any_setting_value_gets_exit_0_or_2(tmp_path_factory, values):
    tmp = tmp_path_factory.mktemp("vals", numbered=True)
    entries = [Entry("a.png", BLOBS["png"]), Entry("a.txt", BLOBS["caption"])]
    flags = [a for k, v in values.items() for a in (f"{k}={v}",)]
    _case(tmp, entries, True, ["--resolution", "64x64", *flags])
