"""The dataset preflight on real files: pairing, captions, PyAV-probed media (wrong headers, variable frame rate,
zero frames, rotation, truncation, odd pixel formats), frame planning and the report.

Each bad input is a real file made here (tests/mediafactory.py); each finding must name the file and say what to
do. Tests run at --resolution 64x64 so that the tiny test media are not flagged as upscaled (except where that is
the point).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import pytest
from mediafactory import (
    ROTATE_90,
    ROTATE_180,
    ROTATE_270,
    box_end,
    corrupt_first_packet,
    lie_avi_frames,
    make_audio_only,
    make_cmyk_jpeg,
    make_hdr_video,
    make_huge_png,
    make_image,
    make_png,
    make_vfr_video,
    make_video,
    make_zero_frame_video,
    make_zip,
    rotate_mp4,
    truncate,
)

from hvlora.data import frames, preflight
from hvlora.data import report as reporting
from hvlora.data.problems import NOTE, WARNING
from hvlora.families.hunyuan_video_1_5 import FRAMES

SMALL = ("--resolution", "64x64")


def build(tmp_path: Path, files: dict[str, bytes | str | Path], as_zip: bool = False) -> list[str]:
    """Write `files` (name -> bytes, text or a file to copy) as the input folder tmp_path/in, or as the zip
    data/in.zip; returns the flags that select it."""
    raw = {
        n: (c.read_bytes() if isinstance(c, Path) else c.encode() if isinstance(c, str) else c)
        for n, c in files.items()
    }
    if as_zip:
        return ["--input_zip", str(make_zip(tmp_path / "data" / "in.zip", raw))]
    root = tmp_path / "in"
    for name, data in raw.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    root.mkdir(exist_ok=True)
    return ["--input_dir", str(root)]


def check(make_settings, tmp_path, files, *flags, as_zip=False) -> preflight.DataReport:
    s = make_settings(*SMALL, *build(tmp_path, files, as_zip), *flags)
    return preflight.run(s, tmp_path / "work" / "extracted")


def rec(report, name: str) -> preflight.FileRecord:
    return next(f for f in report.files if f.name == name)


def find(problems, *words, severity=None):
    """The problems whose text holds every one of `words` (and has `severity`, when given)."""
    return [p for p in problems if all(w in str(p) for w in words) and severity in (None, p.severity)]


def only(problems, *words, severity=None):
    found = find(problems, *words, severity=severity)
    assert len(found) == 1, f"{words}: {[str(p) for p in problems]}"
    return found[0]


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def src(tmp_path):
    """Where test media are made before they go into an input."""
    return tmp_path / "src"


@pytest.fixture
def img(src) -> Path:
    """A plain 80x48 RGB PNG (fits the 80x48 bucket of 64x64 exactly)."""
    return make_image(src / "img.png")


# --- the input as a whole -----------------------------------------------------------------------------------


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_input_is_never_modified(tmp_path, make_settings, src, img, as_zip):
    files = {
        "a.png": img,
        "a.txt": "a cat",
        "v/clip.mp4": make_video(src / "clip.mp4", frames=13),
        "v/clip.txt": "a clip",
        "notes.pdf": b"%PDF",
        "orphan.txt": "alone",
        ".DS_Store": b"x",
        "bad.mp4": b"not a video",
        "bad.txt": "broken",
    }
    flags = build(tmp_path, files, as_zip)
    watched = tmp_path / ("data" if as_zip else "in")
    before = snapshot(watched)
    rep = preflight.run(make_settings(*SMALL, *flags, "--trigger_word", "ohwx"), tmp_path / "work" / "extracted")
    reporting.write(rep, tmp_path / "work")
    reporting.text(rep)
    assert snapshot(watched) == before  # same files, same bytes, same mtimes
    assert [f.name for f in rep.usable] == ["a.png", "v/clip.mp4"] and rep.errors == []
    extracted = tmp_path / "work" / "extracted"
    if as_zip:
        # only the media are unpacked, each named by its content (CRC-32, size); captions are read from the zip
        with zipfile.ZipFile(tmp_path / "data" / "in.zip") as zf:
            expected = {
                f"{zf.getinfo(n).CRC:08x}-{zf.getinfo(n).file_size}{Path(n).suffix}"
                for n in ("a.png", "v/clip.mp4", "bad.mp4")
            }
            assert rec(rep, "a.png").path.read_bytes() == zf.read("a.png")
        assert {p.name for p in extracted.iterdir()} == expected
        assert rec(rep, "a.png").identity.startswith("zip:")
    else:
        assert not extracted.exists() and rec(rep, "a.png").path == tmp_path / "in" / "a.png"
        assert rec(rep, "a.png").identity.startswith("file:")
    assert rec(rep, "a.png").caption == "ohwx, a cat"


def test_zip_and_folder_follow_the_same_rules(tmp_path, make_settings, src, img):
    files = {
        "a.png": img,
        "a.txt": "a",
        "dup.png": img,
        "dup.mp4": make_video(src / "d.mp4", frames=5),
        "dup.txt": "shared",
        ".hidden/h.png": img,
        "x/.h.mp4": b"v",
        "notes.pdf": b"%PDF",
        "orphan.txt": "o",
        "inner.zip": b"PK",
        "nocap.png": img,
    }
    folder = check(make_settings, tmp_path / "f", files)
    zipped = check(make_settings, tmp_path / "z", files, as_zip=True)

    def findings(r):  # a zip lists its entries in zip order, a folder sorted: compare as sets
        return sorted((p.severity, ", ".join(sorted(p.file.split(", "))), p.message) for p in r.all_problems())

    assert findings(folder) == findings(zipped) and len(findings(folder)) == 7
    assert sorted((f.name, f.status, f.caption) for f in folder.files) == sorted(
        (f.name, f.status, f.caption) for f in zipped.files
    )


def test_refused_zip_is_not_unpacked(tmp_path, make_settings, img):
    rep = check(make_settings, tmp_path, {"ok.png": img, "ok.txt": "ok", "../evil.png": img}, as_zip=True)
    p = only(rep.errors, "../evil.png", "'..'")
    assert p.fix.endswith("nothing was unpacked")
    assert not (tmp_path / "work" / "extracted").exists() and not (tmp_path / "evil.png").exists()
    assert all(f.info is None and f.path is None for f in rep.files) and rep.blocks == {}


def test_no_media_at_all(tmp_path, make_settings):
    rep = check(make_settings, tmp_path, {"readme.txt": "hi", "notes.pdf": b"%PDF"})
    p = only(rep.errors, "contains no images or videos")
    assert ".png" in p.fix and ".mp4" in p.fix and p.file == str(tmp_path / "in")


# --- pairing ------------------------------------------------------------------------------------------------


def test_media_sharing_a_stem_share_its_caption(tmp_path, make_settings, src, img):
    rep = check(
        make_settings,
        tmp_path,
        {
            "a.png": img,
            "a.mp4": make_video(src / "a.mp4", frames=5),
            "a.txt": "shared",
            "b/c.png": img,
            "b/c.jpg": make_image(src / "c.jpg"),
            "b/c.txt": "two images",
        },
    )
    p = only(rep.problems, "share one stem", "caption a.txt")
    assert p.severity == WARNING and set(p.file.split(", ")) == {"a.png", "a.mp4"}
    assert "rename one" in p.fix
    assert only(rep.problems, "share one stem", "caption b/c.txt")
    assert all(f.caption_file == f.name.rsplit(".", 1)[0] + ".txt" for f in rep.files)
    assert {f.name: f.caption for f in rep.files} == {
        "a.mp4": "shared",
        "a.png": "shared",
        "b/c.jpg": "two images",
        "b/c.png": "two images",
    }
    # both train, with unique names in their blocks and so distinct cache files
    assert {f.name: (f.block, f.flat) for f in rep.files} == {
        "a.mp4": ("videos_24fps", "a.mp4"),
        "a.png": ("images", "a.png"),
        "b/c.jpg": ("images", "b__c~" + hashlib.sha1(b"b/c.jpg").hexdigest()[:8] + ".jpg"),
        "b/c.png": ("images", "b__c~" + hashlib.sha1(b"b/c.png").hexdigest()[:8] + ".png"),
    }
    assert len({c for f in rep.files for c in f.cache_files}) == 4


def test_hidden_unsupported_and_orphan_files_are_reported(tmp_path, make_settings, src, img):
    rep = check(
        make_settings,
        tmp_path,
        {
            "a.png": img,
            "a.txt": "a",
            ".hidden/b.png": img,
            ".hidden/b.txt": "b",
            "clips/.c.mp4": make_video(src / "c.mp4", frames=3),
            "anim.gif": b"GIF89a",
            "notes.pdf": b"%PDF",
            "orphan.txt": "no media",
            "clips/lost.txt": "no media either",
        },
    )
    assert [f.name for f in rep.files] == ["a.png"] and rep.errors == []
    for name in (".hidden/b.png", "clips/.c.mp4"):
        assert only(rep.problems, name, "is hidden", "left out", "Move it out of the hidden folder")
    for name in ("anim.gif", "notes.pdf"):
        assert only(rep.problems, name, "unsupported file type, ignored", "Supported: .png", ".mp4", ".txt")
    for name in ("orphan.txt", "clips/lost.txt"):
        p = only(rep.problems, name, "caption without a media file, ignored")
        assert p.file == name and "matches the caption" in p.fix


# --- captions -----------------------------------------------------------------------------------------------


def test_captions_encodings_trigger_word_and_length(tmp_path, make_settings, img):
    captions = {
        "bom": "\ufeffa cat".encode("utf-8"),
        "plain": b"a dog on a sofa\n",
        "cp": "naïve café – “quoted”".encode("cp1252"),
        "empty": b"",
        "blank": b" \n\t \r\n",
        "placeholder": b"a photo of [trigger] riding a bike",
        "has": b"photo of OHWX man",
        "inside": b"ohwxman at the beach",
        "long": ("word " * 1000).encode(),
        "fits": ("a" * 3900).encode(),
    }
    files = {f"{k}.png": img for k in captions} | {f"{k}.txt": v for k, v in captions.items()}
    rep = check(make_settings, tmp_path, files, "--trigger_word", "ohwx")
    caption = {f.name[:-4]: f.caption for f in rep.files}
    assert caption == {
        "bom": "ohwx, a cat",
        "plain": "ohwx, a dog on a sofa",
        "cp": "ohwx, naïve café – “quoted”",
        "empty": "ohwx",
        "blank": "ohwx",
        "placeholder": "a photo of ohwx riding a bike",
        "has": "photo of OHWX man",
        "inside": "ohwx, ohwxman at the beach",
        "long": "ohwx, " + ("word " * 1000).strip(),
        "fits": "ohwx, " + "a" * 3900,
    }
    status = {f.name[:-4]: f.status for f in rep.files}
    assert {k for k, v in status.items() if v == "ok"} == {"bom", "plain", "placeholder", "has", "inside", "fits"}
    assert only(rep.all_problems(), "cp.txt", "is not UTF-8; read as Windows-1252", "Save captions as UTF-8")
    for name in ("empty.txt", "blank.txt"):
        p = only(rep.all_problems(), name, "is empty")
        assert p.file == name and "trigger word 'ohwx' alone" in p.fix
    p = only(rep.all_problems(), "long.txt", "tokens long (estimated)", "keeps the first 1024", "Shorten it")
    assert p.severity == WARNING and int(p.message.split("about ")[1].split()[0]) > 1024


def test_captions_without_a_trigger_word(tmp_path, make_settings, img):
    rep = check(
        make_settings,
        tmp_path,
        {"e.png": img, "e.txt": "", "p.png": img, "p.txt": "[Trigger], a cat", "c.png": img, "c.txt": "a cat"},
    )
    assert {f.name: f.caption for f in rep.files} == {"c.png": "a cat", "e.png": "", "p.png": "a cat"}
    assert "trains unconditioned" in only(rep.all_problems(), "e.txt", "is empty").fix
    p = only(rep.all_problems(), "p.txt", "uses [trigger] but no --trigger_word is set", "removed")
    assert "Pass --trigger_word" in p.fix
    assert rec(rep, "c.png").status == "ok"


def test_utf16_caption_is_decoded(tmp_path, make_settings, img):
    rep = check(make_settings, tmp_path, {"a.png": img, "a.txt": "a café".encode("utf-16")})
    assert rec(rep, "a.png").caption == "a café"
    assert only(rep.all_problems(), "a.txt", "is not UTF-8")


@pytest.mark.parametrize("mode", ["error", "trigger", "skip"])
def test_media_without_caption(tmp_path, make_settings, img, mode):
    rep = check(
        make_settings,
        tmp_path,
        {"a.png": img, "a.txt": "a", "sub/b.png": img},
        "--missing_caption",
        mode,
        "--trigger_word",
        "ohwx",
    )
    b = rec(rep, "sub/b.png")
    assert rec(rep, "a.png").status == "ok"
    if mode == "error":
        p = only(rep.errors, "sub/b.png", "has no caption (b.txt beside it)")
        assert (
            "Add sub/b.txt" in p.fix
            and "--missing_caption generate (caption it with Qwen2.5-VL), trigger or skip" in p.fix
        )
        assert b.status == "error" and b not in rep.usable
    elif mode == "trigger":
        only(
            b.problems,
            "sub/b.png",
            "has no caption; it is captioned with the trigger word 'ohwx'",
            "Add b.txt",
            severity=WARNING,
        )
        assert b.caption == "ohwx" and b.status == "warning" and b.block == "images" and rep.errors == []
    else:
        only(
            b.problems, "sub/b.png", "left out: has no caption (--missing_caption skip)", "Add b.txt", severity=WARNING
        )
        assert b.status == "left out" and b.block is None and b not in rep.usable and rep.errors == []


# --- images -------------------------------------------------------------------------------------------------


def test_image_modes(tmp_path, make_settings, src, img):
    media = {
        "rgb.png": img,
        "cmyk.jpg": make_cmyk_jpeg(src / "cmyk.jpg"),
        "g16.png": make_png(src / "g16.png", "gray16be"),
        "pal.png": make_png(src / "pal.png", "pal8"),
        "alpha.png": make_png(src / "a.png", "rgba"),
        "grey.png": make_png(src / "grey.png", "gray"),
        "wide.webp": make_image(src / "w.webp", 96, 48),
        "b.bmp": make_image(src / "b.bmp", 64, 64),
    }
    rep = check(make_settings, tmp_path, media | {n.rsplit(".", 1)[0] + ".txt": "x" for n in media})
    fmt = {f.name: (f.info.width, f.info.height, f.info.pix_fmt, f.status) for f in rep.files}
    assert fmt == {
        "rgb.png": (80, 48, "RGB", "ok"),  # Pillow's modes: what musubi's Image.open sees
        "cmyk.jpg": (80, 48, "CMYK", "warning"),
        "g16.png": (80, 48, "I;16", "ok"),
        "pal.png": (80, 48, "P", "ok"),
        "alpha.png": (80, 48, "RGBA", "warning"),
        "grey.png": (80, 48, "L", "ok"),
        "wide.webp": (96, 48, "RGB", "ok"),
        "b.bmp": (64, 64, "RGB", "ok"),
    }
    assert only(rec(rep, "cmyk.jpg").problems, "cmyk.jpg", "CMYK image", "Save it as an RGB")
    assert only(rec(rep, "g16.png").problems, "g16.png", "16-bit greyscale", "8-bit greyscale copy", severity=NOTE)
    assert only(rec(rep, "alpha.png").problems, "alpha.png", "alpha channel", "Flatten it onto a background")
    assert only(rec(rep, "pal.png").problems, "pal.png", "palette image", severity=NOTE)
    assert only(rec(rep, "grey.png").problems, "grey.png", "greyscale", severity=NOTE)
    assert rec(rep, "rgb.png").problems == [] and len(rep.blocks["images"].files) == 8
    assert rec(rep, "b.bmp").cache_files == ["b_0064x0064_hv15.safetensors"]


def test_media_smaller_than_the_training_resolution_are_upscaled(tmp_path, make_settings, src, img):
    rep = check(
        make_settings,
        tmp_path,
        {
            "small.png": img,
            "small.txt": "s",
            "big.png": make_image(src / "big.png", 1280, 720),
            "big.txt": "b",
            "v.mp4": make_video(src / "v.mp4", frames=5),
            "v.txt": "v",
        },
        "--resolution",
        "960x544",
    )
    p = only(
        rec(rep, "small.png").problems,
        "small.png",
        "80x48 is smaller than its",
        "bucket at --resolution 960x544: it is upscaled",
        "Use a larger file or a lower --resolution",
    )
    assert p.severity == WARNING and rec(rep, "small.png").bucket == FRAMES.bucket_for((80, 48), (960, 544))
    assert only(rec(rep, "v.mp4").problems, "v.mp4", "96x64 is smaller", "upscaled")
    assert rec(rep, "big.png").status == "ok" and rec(rep, "big.png").bucket == (960, 544)


@pytest.mark.parametrize(
    "name, spoil, words",
    [
        ("cut.png", lambda p: truncate(p, p.stat().st_size // 2), "Pillow (which musubi opens images with) cannot"),
        ("noise.png", lambda p: p.write_bytes(bytes(range(256)) * 8), "cannot identify image file"),
        ("empty.png", lambda p: p.write_bytes(b""), "damaged, truncated or not an image"),
    ],
)
def test_broken_images_are_left_out(tmp_path, make_settings, src, img, name, spoil, words):
    bad = make_image(src / name)
    spoil(bad)
    rep = check(make_settings, tmp_path, {"ok.png": img, "ok.txt": "ok", name: bad, Path(name).stem + ".txt": "x"})
    f = rec(rep, name)
    p = only(f.problems, name, "left out:", words, "Re-encode it")
    assert p.severity == WARNING and f.status == "left out" and f.block is None and rep.errors == []


def test_image_over_pillows_pixel_limit_is_left_out(tmp_path, make_settings, src, img):
    rep = check(
        make_settings,
        tmp_path,
        {"ok.png": img, "ok.txt": "ok", "huge.png": make_huge_png(src / "huge.png"), "huge.txt": "x"},
    )
    f = rec(rep, "huge.png")
    assert f.status == "left out" and only(f.problems, "huge.png", f"has {13400 * 13400} pixels", "decompression bomb")


def test_truncated_jpeg_is_left_out(tmp_path, make_settings, src, img):
    bad = make_image(src / "cut.jpg")
    truncate(bad, bad.stat().st_size // 2)
    rep = check(make_settings, tmp_path, {"ok.png": img, "ok.txt": "ok", "cut.jpg": bad, "cut.txt": "x"})
    assert rec(rep, "cut.jpg").status == "left out"
    assert only(rec(rep, "cut.jpg").problems, "cut.jpg", "truncated")


# --- videos -------------------------------------------------------------------------------------------------


def test_video_properties_from_packets(tmp_path, make_settings, src):
    """Frame count, rate and duration come from packets: webm and mkv declare no frame count."""
    files = {
        "a.mp4": make_video(src / "a.mp4", frames=12),
        "b.mkv": make_video(src / "b.mkv", frames=7),
        "c.webm": make_video(src / "c.webm", frames=7),
        "d.mov": make_video(src / "d.mov", frames=30, fps=30),
        "e.mp4": make_video(src / "e.mp4", frames=10, fps=Fraction(30000, 1001)),
        "f.avi": make_video(src / "f.avi", frames=6, fps=12),
    }
    rep = check(make_settings, tmp_path, files | {Path(n).stem + ".txt": "x" for n in files})
    got = {
        f.name: (
            f.info.frames,
            f.info.header_frames,
            round(f.info.fps, 3),
            round(f.info.duration, 3),
            f.info.vfr,
            f.info.codec,
        )
        for f in rep.files
    }
    assert got == {
        "a.mp4": (12, 12, 24.0, 0.5, False, "h264"),
        "b.mkv": (7, 0, 24.0, 0.292, False, "h264"),
        "c.webm": (7, 0, 24.0, 0.292, False, "vp9"),
        "d.mov": (30, 30, 30.0, 1.0, False, "h264"),
        "e.mp4": (10, 10, 29.97, 0.334, False, "h264"),
        "f.avi": (6, 6, 12.0, 0.5, False, "mpeg4"),
    }
    assert all(f.info.width == 96 and f.info.height == 64 for f in rep.files)
    assert {f.name: f.status for f in rep.files} == {n: "ok" for n in files}
    assert not find(rep.all_problems(), "header says")  # a missing frame count is not a lie
    assert only(rec(rep, "f.avi").problems, "f.avi", "12 fps is below 24", "plays faster", severity=NOTE)
    assert rec(rep, "e.mp4").block == "videos_29_97fps"


def test_header_that_lies_about_the_frame_count(tmp_path, make_settings, src):
    avi = lie_avi_frames(make_video(src / "lie.avi", frames=10), 99)
    with av.open(str(avi)) as c:  # PyAV believes the header...
        assert c.streams.video[0].frames == 99
        assert sum(1 for p in c.demux(c.streams.video[0]) if p.size) == 10
    rep = check(make_settings, tmp_path, {"lie.avi": avi, "lie.txt": "x"}, "--target_frames", "1,9,13")
    f = rec(rep, "lie.avi")
    assert (f.info.frames, f.info.header_frames) == (10, 99)  # ...the preflight counts packets
    assert only(f.problems, "lie.avi", "header says 99 frames but it holds 10; 10 are used", severity=NOTE)
    assert f.clips == [frames.Clip(0, 1), frames.Clip(0, 9)] and f.status == "ok"


def test_variable_frame_rate(tmp_path, make_settings, src):
    vfr = make_vfr_video(src / "vfr.mp4", [0, 40, 80, 160, 200, 240, 320, 360, 400, 480])
    rep = check(
        make_settings,
        tmp_path,
        {"vfr.mp4": vfr, "vfr.txt": "x", "cfr.mp4": make_video(src / "cfr.mp4", frames=10, fps=25), "cfr.txt": "x"},
    )
    f = rec(rep, "vfr.mp4")
    assert f.info.vfr and f.info.frames == 10 and f.info.fps == pytest.approx(9 / 0.48)
    p = only(f.problems, "vfr.mp4", "variable frame rate", "motion speed varies", "constant frame rate")
    assert p.severity == WARNING and f.status == "warning" and f.block == "videos_18_75fps"
    assert not rec(rep, "cfr.mp4").info.vfr and rec(rep, "cfr.mp4").status == "ok"


@pytest.mark.parametrize("matrix, degrees", [(ROTATE_90, 90), (ROTATE_180, 180), (ROTATE_270, 270)])
def test_rotation_metadata(tmp_path, make_settings, src, matrix, degrees):
    """Reported as exiftool and MediaInfo show it: the tkhd matrix a phone writes for portrait video (ROTATE_90,
    which FFmpeg's av_display_rotation_get reads as -90) is 90 degrees clockwise, not 270."""
    rot = rotate_mp4(make_video(src / "rot.mp4", frames=5), matrix)
    with av.open(str(rot)) as c:  # the patched matrix is what PyAV reports
        frame = next(c.decode(video=0))
        assert av.sidedata.sidedata.Type.DISPLAYMATRIX in [sd.type for sd in frame.side_data]
    rep = check(make_settings, tmp_path, {"rot.mp4": rot, "rot.txt": "x"})
    f = rec(rep, "rot.mp4")
    assert f.info.rotation == degrees and (f.info.width, f.info.height) == (96, 64)  # frames as stored
    p = only(
        f.problems,
        "rot.mp4",
        f"rotation metadata ({degrees} degrees clockwise, as exiftool and MediaInfo show it)",
        "sideways",
        "Re-encode it with the rotation applied",
    )
    assert p.severity == WARNING and f.bucket == (80, 48)


@pytest.mark.parametrize("fps", [60, 90, 120])
def test_high_constant_frame_rate_in_millisecond_containers(tmp_path, make_settings, src, fps):
    rep = check(make_settings, tmp_path, {"v.mkv": make_video(src / "v.mkv", frames=30, fps=fps), "v.txt": "x"})
    f = rec(rep, "v.mkv")
    assert (f.info.vfr, f.info.fps, f.block, f.status) == (False, fps, f"videos_{fps}fps", "ok")


def _faststart_cut_in_mdat(p: Path) -> None:
    """A faststart mp4 (moov first) cut halfway through its frames: the header is complete, the data is not."""
    make_video(p, frames=30, options={"movflags": "faststart"})
    truncate(p, (box_end(p, b"moov") + p.stat().st_size) // 2)


def _faststart_cut_after_moov(p: Path) -> None:
    make_video(p, frames=30, options={"movflags": "faststart"})
    truncate(p, box_end(p, b"moov") + 16)


@pytest.mark.parametrize(
    "name, make, words",
    [
        ("audio.mp4", make_audio_only, "has no video stream (audio only)"),
        ("zero.avi", make_zero_frame_video, "contains no decodable frame"),
        ("badstart.mp4", lambda p: corrupt_first_packet(make_video(p, frames=12)), "PyAV cannot decode it"),
        ("faststart_cut.mp4", _faststart_cut_in_mdat, "its last frames do not decode: truncated or corrupt"),
        ("moov_only.mp4", _faststart_cut_after_moov, "contains no decodable frame"),
        ("no_moov.mp4", lambda p: truncate(make_video(p, frames=30), 4000), "PyAV cannot decode it"),
        ("noise.mkv", lambda p: p.write_bytes(bytes(range(7, 256)) * 20), "PyAV cannot decode it"),
        ("empty.webm", lambda p: p.write_bytes(b""), "PyAV cannot decode it"),
    ],
)
def test_unusable_videos_are_left_out(tmp_path, make_settings, src, img, name, make, words):
    src.mkdir(exist_ok=True)
    bad = src / name
    make(bad)
    rep = check(make_settings, tmp_path, {"ok.png": img, "ok.txt": "ok", name: bad, Path(name).stem + ".txt": "x"})
    f = rec(rep, name)
    p = only(f.problems, name, "left out:", words, "Re-encode it (e.g. with ffmpeg) or remove it")
    assert p.severity == WARNING and f.status == "left out" and f.info is None and f.block is None
    assert rep.errors == [] and [u.name for u in rep.usable] == ["ok.png"]


def test_mkv_cut_in_the_middle_is_reported_as_truncated(tmp_path, make_settings, src):
    mkv = make_video(src / "cut.mkv", frames=30)
    truncate(mkv, mkv.stat().st_size // 2)
    rep = check(make_settings, tmp_path, {"cut.mkv": mkv, "cut.txt": "x"})
    assert only(rec(rep, "cut.mkv").problems, "cut.mkv", "truncated")


# --- frames and blocks --------------------------------------------------------------------------------------


def test_videos_too_short_for_every_target_are_left_out(tmp_path, make_settings, src, img):
    rep = check(
        make_settings,
        tmp_path,
        {
            "ok.png": img,
            "ok.txt": "ok",
            "a.mp4": make_video(src / "a.mp4", frames=41),
            "a.txt": "a",
            "b.mp4": make_video(src / "b.mp4", frames=50, fps=30),
            "b.txt": "b",
            "c.mp4": make_video(src / "c.mp4", frames=45),
            "c.txt": "c",
        },
        "--target_frames",
        "45,49",
    )
    a, b, c = rec(rep, "a.mp4"), rec(rep, "b.mp4"), rec(rep, "c.mp4")
    assert only(
        a.problems,
        "a.mp4",
        "left out: 41 frames; the shortest --target_frames needs 45",
        "Lower --target_frames or drop the file",
    )
    assert only(b.problems, "b.mp4", "left out: 50 frames (40 at 24 fps); the shortest --target_frames needs 45")
    assert a.status == b.status == "left out" and a.clips == b.clips == [] and a.block is b.block is None
    assert c.clips == [frames.Clip(0, 45)] and c.status == "ok"
    assert set(rep.blocks) == {"images", "videos_24fps"} and rep.blocks["videos_24fps"].files == [c]
    assert reporting.totals(rep)["left_out"] == 2 and rep.errors == []


def test_nothing_usable_left_is_an_error(tmp_path, make_settings, src):
    rep = check(
        make_settings, tmp_path, {"a.mp4": make_video(src / "a.mp4", frames=9), "a.txt": "a"}, "--target_frames", "13"
    )
    assert rec(rep, "a.mp4").status == "left out"
    assert only(rep.errors, "no usable media remain").file == str(tmp_path / "in")


def test_mixed_frame_rates_make_one_block_per_rate(tmp_path, make_settings, src, img):
    rep = check(
        make_settings,
        tmp_path,
        {
            "img.png": img,
            "img.txt": "i",
            "a24.mp4": make_video(src / "a24.mp4", frames=30),
            "a24.txt": "a",
            "b30.mp4": make_video(src / "b30.mp4", frames=30, fps=30),
            "b30.txt": "b",
            "clips/c30.mkv": make_video(src / "c30.mkv", frames=20, fps=30),
            "clips/c30.txt": "c",
        },
    )
    blocks = {n: (b.kind, b.source_fps, [f.name for f in b.files]) for n, b in rep.blocks.items()}
    assert blocks == {
        "images": ("image", None, ["img.png"]),
        "videos_24fps": ("video", 24.0, ["a24.mp4"]),
        "videos_30fps": ("video", 30.0, ["b30.mp4", "clips/c30.mkv"]),
    }
    # a 30 fps video is read at 24 fps: 30 frames -> 24, too few for a 25-frame clip
    assert rec(rep, "a24.mp4").clips == [frames.Clip(0, 1), frames.Clip(0, 13), frames.Clip(0, 25)]
    assert rec(rep, "b30.mp4").clips == [frames.Clip(0, 1), frames.Clip(0, 13)]
    assert rec(rep, "clips/c30.mkv").clips == [frames.Clip(0, 1), frames.Clip(0, 13)]
    c30 = rec(rep, "clips/c30.mkv")
    assert c30.flat == "clips__c30.mkv" and c30.cache_files == [
        "clips__c30_00000-001_0080x0048_hv15.safetensors",
        "clips__c30_00000-013_0080x0048_hv15.safetensors",
    ]
    assert reporting.totals(rep)["blocks"] == {
        "images": {"kind": "image", "source_fps": None, "files": 1},
        "videos_24fps": {"kind": "video", "source_fps": 24.0, "files": 1},
        "videos_30fps": {"kind": "video", "source_fps": 30.0, "files": 2},
    }


def test_i2v_leaves_still_images_out(tmp_path, make_settings, src, img):
    """musubi v0.3.4's i2v latent cache fails on still images (seen with the real engine): they are left out."""
    files = {"img.png": img, "img.txt": "i", "v.mp4": make_video(src / "v.mp4", frames=9), "v.txt": "v"}
    rep = check(make_settings, tmp_path, files, "--task", "i2v")
    f = rec(rep, "img.png")
    assert f.status == "left out" and only(f.problems, "img.png", "--task i2v trains on videos", "--task t2v")
    assert set(rep.blocks) == {"videos_24fps"} and rep.errors == []
    assert rec(check(make_settings, tmp_path / "t2v", files), "img.png").status == "ok"


def test_strict_turns_warnings_into_errors(tmp_path, make_settings, src, img):
    files = {
        "ok.png": img,
        "ok.txt": "ok",
        "alpha.png": make_png(src / "a.png", "rgba"),
        "alpha.txt": "a",
        "pal.png": make_png(src / "p.png", "pal8"),
        "pal.txt": "p",
        "orphan.txt": "o",
        "short.mp4": make_video(src / "s.mp4", frames=5),
        "short.txt": "s",
    }
    lenient = check(make_settings, tmp_path / "1", files, "--target_frames", "9")
    strict = check(make_settings, tmp_path / "2", files, "--target_frames", "9", "--strict")
    assert lenient.errors == [] and rec(lenient, "alpha.png").status == "warning"
    assert sorted(p.file for p in strict.errors) == ["alpha.png", "orphan.txt", "short.mp4"]
    assert [(p.file, p.message) for p in strict.errors] == [
        (p.file, p.message) for p in lenient.all_problems() if p.severity == WARNING
    ]
    assert rec(strict, "alpha.png").status == "error" and rec(strict, "ok.png").status == "ok"
    assert only(strict.all_problems(), "pal.png", "palette").severity == NOTE  # notes never stop a run


# --- the report ---------------------------------------------------------------------------------------------


def test_report_totals_text_and_files(tmp_path, make_settings, src, img):
    rep = check(
        make_settings,
        tmp_path,
        {
            "img.png": img,
            "img.txt": "i",
            "alpha.png": make_png(src / "a.png", "rgba"),
            "alpha.txt": "a",
            "a24.mp4": make_video(src / "a24.mp4", frames=13),
            "a24.txt": "a",
            "b30.mp4": make_video(src / "b30.mp4", frames=30, fps=30),
            "b30.txt": "b",
            "audio.mp4": make_audio_only(src / "audio.mp4"),
            "audio.txt": "x",
            "orphan.txt": "o",
            "__MACOSX/._img.png": b"\0",
        },
        "--num_repeats",
        "3",
        "--trigger_word",
        "ohwx",
    )
    t = reporting.totals(rep)
    assert {
        k: t[k]
        for k in (
            "images",
            "videos",
            "left_out",
            "errors",
            "warnings",
            "skipped_junk",
            "items",
            "training_items_per_epoch",
        )
    } == {
        "images": 2,
        "videos": 2,
        "left_out": 1,
        "errors": 0,
        "warnings": 3,
        "skipped_junk": 1,
        "items": 6,
        "training_items_per_epoch": 18,
    }
    assert t["items_per_bucket"] == {"80x48x1": 4, "80x48x13": 2}
    text = reporting.text(rep)
    assert f"data: {tmp_path / 'in'} (folder, 5 media files, 1 junk entries skipped)" in text
    assert "audio.mp4" in text and "left out" in text and "has no video stream (audio only)" in text
    assert "warning: orphan.txt: caption without a media file, ignored" in text
    assert "usable: 2 image(s), 2 video(s); left out: 1; 0 error(s), 3 warning(s)" in text
    assert "videos_24fps (source_fps 24.0), videos_30fps (source_fps 30.0)" in text
    assert "training items per epoch: 18 (6 x num_repeats 3)" in text
    run_dir = tmp_path / "run"
    path = reporting.write(rep, run_dir)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["usable"] is True and data["input_kind"] == "folder" and data["totals"] == json.loads(json.dumps(t))
    by_name = {f["file"]: f for f in data["files"]}
    assert by_name["a24.mp4"]["frames"] == 13 and by_name["a24.mp4"]["block"] == "videos_24fps"
    assert by_name["a24.mp4"]["caption"] == "ohwx, a" and by_name["a24.mp4"]["clips"] == [
        {"start": 0, "frames": 1},
        {"start": 0, "frames": 13},
    ]
    assert by_name["audio.mp4"]["status"] == "left out" and by_name["audio.mp4"]["latent_cache_files"] == []
    assert by_name["alpha.png"]["problems"][0]["severity"] == "warning"
    assert [p["file"] for p in data["problems"]] == ["orphan.txt"]
    table = (run_dir / "dataset_report.txt").read_text(encoding="utf-8")
    assert table.splitlines()[0].split() == list(reporting.COLUMNS)
    assert len([line for line in table.splitlines()[1:] if line and not line.startswith(" ")]) == 5


def test_report_of_a_large_dataset_shows_only_problem_rows(tmp_path, make_settings, img):
    files = {f"i{n:02d}.png": img for n in range(reporting.FULL_TABLE_MAX + 1)}
    files |= {f"i{n:02d}.txt": "x" for n in range(reporting.FULL_TABLE_MAX)}  # the last one has no caption
    rep = check(make_settings, tmp_path, files, "--missing_caption", "skip")
    text = reporting.text(rep)
    assert "i60.png" in text and "i00.png" not in text and "files without problems are in dataset_report.txt" in text


# --- issue 14: names, colour, encodings, bit depth, clip coverage ------------------------------------------


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_nfd_media_name_pairs_with_its_nfc_caption(tmp_path, make_settings, img, as_zip):
    """macOS keeps a name in the form it was made: `café.jpg` (NFD, from the camera app) beside `café.txt` (NFC,
    typed). They are one name to the user, so they pair."""
    nfd, nfc = unicodedata.normalize("NFD", "café"), unicodedata.normalize("NFC", "café")
    assert nfd != nfc
    files = {f"{nfd}.png": img, f"{nfc}.txt": "a café", f"sub/{nfc}.png": img, f"sub/{nfd}.txt": "another"}
    rep = check(make_settings, tmp_path, files, as_zip=as_zip)
    assert {f.name: (f.caption_file, f.caption, f.status) for f in rep.files} == {
        f"{nfd}.png": (f"{nfc}.txt", "a café", "ok"),
        f"sub/{nfc}.png": (f"sub/{nfd}.txt", "another", "ok"),
    }
    assert rep.all_problems() == []


@pytest.mark.parametrize("transfer, label, name", [("hlg", "HLG", "arib-std-b67"), ("pq", "PQ", "smpte2084")])
def test_hdr_phone_video_is_warned_with_the_transfer_and_a_tone_mapping_command(
    tmp_path, make_settings, src, transfer, label, name
):
    """HEVC 10-bit BT.2020 HLG/PQ (an iPhone's default) trains washed out: musubi converts it to 8-bit RGB without
    tone mapping. The clip is written with PyAV's libx265, tagged as a phone tags it."""
    files = {"hdr.mov": make_hdr_video(src / "hdr.mov", transfer), "hdr.txt": "x"}
    rep = check(make_settings, tmp_path, files | {"sdr.mp4": make_video(src / "sdr.mp4", 5), "sdr.txt": "x"})
    f = rec(rep, "hdr.mov")
    assert (f.info.codec, f.info.pix_fmt, f.info.transfer, f.info.primaries) == ("hevc", "yuv420p10le", name, "bt2020")
    p = only(f.problems, "hdr.mov", f"is HDR video ({label} transfer, {name}, BT.2020 primaries, 10-bit)")
    assert p.severity == WARNING and "without tone mapping" in p.message and "washed out" in p.message
    assert "ffmpeg -i IN.mov -vf zscale=t=linear" in p.fix and "tonemap=tonemap=hable" in p.fix
    assert f.status == "warning" and f.block is not None  # a warning: it still trains unless --strict
    assert rec(rep, "sdr.mp4").problems == [] and rec(rep, "sdr.mp4").info.transfer is None


def test_shift_jis_and_gbk_captions_are_errors_naming_the_encoding_and_the_conversion(tmp_path, make_settings, img):
    captions = {
        "sjis": "猫がソファで寝ている、夕方の光".encode("shift_jis"),  # as Japanese Windows Notepad saves it
        "gbk": "一只黑猫坐在窗台上，阳光明媚".encode("gbk"),  # as Chinese Windows saves it
        "cp": "crème brûlée on a café table".encode("cp1252"),  # plausible Western text: still read, with a warning
        "stray": "a naïve smile".encode() + b"\xff",  # one stray byte in UTF-8: still read, with a warning
    }
    rep = check(
        make_settings, tmp_path, {f"{k}.png": img for k in captions} | {f"{k}.txt": v for k, v in captions.items()}
    )
    sjis = only(rep.all_problems(), "sjis.txt", "is not UTF-8: it is most likely Shift-JIS (Japanese)")
    assert sjis.severity == "error" and "猫がソファで寝ている" in sjis.message
    assert "iconv -f CP932 -t UTF-8 FILE.txt > FILE.utf8.txt" in sjis.fix
    gbk = only(rep.all_problems(), "gbk.txt", "most likely GBK (Simplified Chinese)", "一只黑猫坐在窗台上")
    assert gbk.severity == "error" and "iconv -f GB18030 -t UTF-8" in gbk.fix
    assert rec(rep, "sjis.png").status == rec(rep, "gbk.png").status == "error"
    assert only(rep.all_problems(), "cp.txt", "read as Windows-1252").severity == WARNING
    assert rec(rep, "cp.png").caption == "crème brûlée on a café table"
    assert only(rep.all_problems(), "stray.txt", "1 invalid byte(s) replaced").severity == WARNING


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_16_bit_greyscale_png_trains_from_an_8_bit_copy(tmp_path, make_settings, src, as_zip):
    """musubi's Image.open(...).convert("RGB") turns a 16-bit greyscale PNG pure white (Pillow 13); the file
    musubi reads is an 8-bit copy with the same picture, and the user's file is untouched."""
    from PIL import Image

    g16 = make_png(src / "g16.png", "gray16be")
    with Image.open(g16) as img:
        assert img.mode == "I;16"
        white = img.convert("RGB").getcolors(1 << 16)
        expected = [v // 257 for v in img.get_flattened_data()]
    assert white is not None and len(white) <= 2, "Pillow's own conversion is (nearly) all white: the problem"
    before = snapshot(src)
    rep = check(make_settings, tmp_path, {"g16.png": g16, "g16.txt": "grey"}, as_zip=as_zip)
    f = rec(rep, "g16.png")
    assert f.status == "ok" and only(f.problems, "16-bit greyscale", "8-bit greyscale copy", severity=NOTE)
    assert f.path.parent == tmp_path / "work" / "extracted" and f.path.name.startswith("8bit-")
    with Image.open(f.path) as img:  # what musubi will open
        assert img.mode == "L" and img.size == (80, 48)
        got = list(img.get_flattened_data())
    assert max(abs(a - b) for a, b in zip(got, expected)) <= 1 and len(set(got)) > 50
    assert snapshot(src) == before


def test_clips_per_video_and_the_share_that_trains(tmp_path, make_settings, src):
    """A long clip with the default --frame_extraction head trains its first second: the report counts its clips
    and the share of its frames that train, and warns naming the modes that train more of it."""
    files = {"long.mp4": make_video(src / "long.mp4", frames=240, width=64, height=64), "long.txt": "x"}
    files |= {"short.mp4": make_video(src / "short.mp4", frames=25, width=64, height=64), "short.txt": "y"}
    rep = check(make_settings, tmp_path, files)
    f = rec(rep, "long.mp4")
    assert (len(f.clips), f.frames_total, f.frames_trained) == (3, 240, 25)
    p = only(f.problems, "long.mp4", "only 25 of its 240 frames (at 24 fps) train (10%, 3 clip(s)")
    assert p.severity == WARNING and "--frame_extraction head" in p.message
    assert all(mode in p.fix for mode in ("chunk", "slide", "uniform"))
    assert rec(rep, "short.mp4").problems == [] and rec(rep, "short.mp4").frames_trained == 25
    text = reporting.text(rep)
    assert "videos: 6 clip(s) from 2 video(s); 50 of their 265 frames (at 24 fps) train (19%" in text
    header, row = text.splitlines()[1], next(line for line in text.splitlines() if line.startswith("long.mp4"))
    assert header.split()[6:8] == ["clips", "trained"] and row.split()[7:10] == [
        "3",
        "10%",
        "warning",
    ]  # after "10.00 s"
    chunked = check(make_settings, tmp_path / "c", files, "--frame_extraction", "chunk", "--target_frames", "25")
    assert (rec(chunked, "long.mp4").frames_trained, rec(chunked, "long.mp4").problems) == (225, [])
    data = reporting.file_json(f)
    assert (data["frames_read"], data["frames_trained"]) == (240, 25)


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_a_media_error_names_the_file_as_the_user_knows_it(tmp_path, make_settings, as_zip):
    """Pillow's and FFmpeg's messages carry the path they opened: for a zip entry a content-named (or temporary)
    file the user never saw. The entry's name is shown instead."""
    rep = check(make_settings, tmp_path, {"pics/bad.jpg": b"not a jpeg at all", "pics/bad.txt": "x"}, as_zip=as_zip)
    p = only(rec(rep, "pics/bad.jpg").problems, "cannot read it")
    assert "pics/bad.jpg" in p.message and str(tmp_path) not in p.message, p.message
