"""Property-based: whatever zip, folder or setting values a user gives, `train_local.py --check_data` answers with
exit 0 or 2, never a traceback or an internal error; it writes nothing outside its run folder; and every media file
of the input is either in the dataset or named in the report with a reason.

Inputs are generated with hypothesis from real parts: valid PNG/JPEG/MP4 files, damaged ones, captions in several
encodings; names with random Unicode (both normalisation forms), depths, duplicates, case twins, hidden folders,
refused entries (`..`, absolute, backslashes, links) mixed with good ones. Bounded so the suite stays fast."""

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

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mediafactory import make_image, make_video

from hvlora.core import cli
from hvlora.data import media

MEDIA_EXT = (".png", ".jpg", ".JPG", ".webp", ".mp4", ".MOV", ".mkv")
OTHER_EXT = (".txt", ".TXT", ".pdf", ".zip", "")


def _blobs() -> dict[str, bytes]:
    work = Path(tempfile.mkdtemp(prefix="blobs-"))
    try:
        png = make_image(work / "a.png").read_bytes()
        jpg = make_image(work / "a.jpg").read_bytes()
        webp = make_image(work / "a.webp").read_bytes()
        mp4 = make_video(work / "a.mp4", frames=9).read_bytes()
        mkv = make_video(work / "a.mkv", frames=5).read_bytes()
    finally:
        shutil.rmtree(work)
    return {
        "png": png,
        "jpg": jpg,
        "webp": webp,
        "mp4": mp4,
        "mkv": mkv,
        "cut_png": png[: len(png) // 2],
        "cut_mp4": mp4[: len(mp4) // 3],
        "empty": b"",
        "noise": bytes(range(256)) * 3,
        "caption": b"a cat on a sofa",
        "caption_trigger": b"[trigger] in the rain",
        "caption_utf16": "a café".encode("utf-16"),
        "caption_latin1": "a café".encode("latin-1"),
        "caption_nul": b"a\x00b",
        "caption_empty": b"  \n",
    }


BLOBS = _blobs()
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


@st.composite
def dataset(draw) -> list[tuple[str, bytes, bool]]:
    """(name, content, is_symlink) entries: media with captions beside them most of the time."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        name = draw(entry_name())
        kind = media.kind_of(name)
        if kind == "image":
            content = BLOBS[draw(st.sampled_from(("png", "jpg", "webp", "cut_png", "noise", "empty")))]
        elif kind == "video":
            content = BLOBS[draw(st.sampled_from(("mp4", "mkv", "cut_mp4", "noise")))]
        else:
            content = BLOBS[draw(st.sampled_from([k for k in BLOBS if k.startswith("caption")]))]
        out.append((name, content, draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())))
        if kind and draw(st.integers(0, 3)):
            cap = str(PurePosixPath(name).with_suffix(draw(st.sampled_from((".txt", ".txt", ".TXT")))))
            out.append((cap, BLOBS[draw(st.sampled_from([k for k in BLOBS if k.startswith("caption")]))], False))
    if draw(st.booleans()) and out:  # a duplicate path (same or other content)
        name, content, _ = out[0]
        out.append((name, draw(st.sampled_from((content, BLOBS["png"]))), False))
    return out


def _write_zip(path: Path, entries) -> None:
    import stat
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # duplicate names are the point
        for name, content, link in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if link:
                info.create_system = 3
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                content = b"../../etc/passwd"
            zf.writestr(info, content)


def _write_folder(root: Path, entries) -> list[str]:
    """Entries a real file system can hold (refused names become plain files elsewhere); returns the names."""
    written = []
    for name, content, link in entries:
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


def _case(tmp: Path, entries, as_zip: bool, flags: list[str]) -> None:
    root = tmp / "case"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    (root / "empty.toml").write_text("")
    if as_zip:
        _write_zip(root / "data" / "in.zip", entries)
        names = [e[0] for e in entries if not e[2]]
        source = ["--input_zip", str(root / "data" / "in.zip")]
    else:
        names = _write_folder(root / "in", entries)
        (root / "in").mkdir(exist_ok=True)
        source = ["--input_dir", str(root / "in")]
    before = _snapshot(root, root / "output")
    argv = ["--config", str(root / "empty.toml"), "--output_dir", str(root / "output"), "--check_data", *source, *flags]
    rc, text = _run(argv)
    event(f"exit {rc}" + (", report" if "musubi items per bucket" in text else ""))
    assert rc in (0, 2), text
    assert "Traceback" not in text and "internal error" not in text, text
    assert _snapshot(root, root / "output") == before  # the input and everything beside it untouched
    runs = sorted((root / "output" / "runs").glob("*")) if (root / "output" / "runs").exists() else []
    outside = {p.name for p in (root / "output").iterdir()} - {"runs"} if (root / "output").exists() else set()
    assert outside == set() and len(runs) <= 1, outside
    if runs and (runs[0] / "dataset_report.json").exists():
        _expect_accounted(json.loads((runs[0] / "dataset_report.json").read_text()), text, names)


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
    entries = [("a.png", BLOBS["png"], False), ("a.txt", BLOBS["caption"], False)]
    flags = [a for k, v in values.items() for a in (f"{k}={v}",)]
    _case(tmp, entries, True, ["--resolution", "64x64", *flags])
