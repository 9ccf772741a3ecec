"""Every input a user can give gets the right answer: `train_local.py` run as a subprocess on real files for each
class of bad (or unusual but valid) input. The contract: exit 0 (usable) or 2 (the report or message names the
file and the fix), never a Python traceback, and no valid file lost."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from mediafactory import (
    add_zip_entry,
    make_explorer_zip,
    make_flat_bmp,
    make_image,
    make_video,
    make_zip,
    rename_zip_entry_raw,
    set_zip_flag,
)
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


class Project:
    """A project layout in tmp_path and `train_local.py` run in it with no config file defaults."""

    def __init__(self, root: Path):
        self.root = root
        self.data, self.output, self.models = root / "data", root / "output", root / "models"
        self.config = root / "empty.toml"
        self.config.write_text("")

    def run(self, *flags: str, config: Path | None = None) -> subprocess.CompletedProcess:
        argv = [sys.executable, str(ROOT / "train_local.py"), "--config", str(config or self.config)]
        argv += ["--data_dir", str(self.data), "--models_dir", str(self.models), "--output_dir", str(self.output)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env["HF_HOME"] = str(self.root / "hf")
        r = subprocess.run([*argv, *flags], capture_output=True, text=True, env=env, cwd=self.root, timeout=300)
        assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
        return r

    def check(self, *flags: str) -> subprocess.CompletedProcess:
        return self.run("--check_data", "--resolution", "64x64", *flags)

    def runs(self) -> list[Path]:
        return sorted((self.output / "runs").glob("*-*")) if (self.output / "runs").is_dir() else []

    def report(self) -> dict:
        return json.loads((self.runs()[-1] / "dataset_report.json").read_text())

    def file(self, name: str) -> dict:
        return next(f for f in self.report()["files"] if f["file"] == name)


@pytest.fixture
def proj(tmp_path) -> Project:
    return Project(tmp_path)


def problems_text(record: dict) -> str:
    return " | ".join(f"{p['severity']}: {p['message']} {p['fix']}" for p in record["problems"])


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def gradient(width: int, height: int, mode: str = "RGB") -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 127 // (width + height)], -1)
    img = Image.fromarray(rgb.astype(np.uint8), "RGB")
    return img.convert(mode)


# --- 1. images are probed the way musubi loads them (Pillow) ---------------------------------------------------


def test_valid_jpegs_are_never_left_out_and_a_truncated_one_always_is(proj):
    """Pillow-made JPEGs at quality 75 (gradients, greyscale) make FFmpeg log "EOI missing"; they are valid and
    musubi loads them. A really truncated JPEG, probed after them, is caught."""
    files = {}
    for i in range(12):
        files[f"g{i:02d}.jpg"] = jpeg_bytes(gradient(64 + 8 * i, 48), quality=75)
        files[f"g{i:02d}.txt"] = b"a gradient"
    files["grey.jpg"] = jpeg_bytes(gradient(80, 48, "L"), quality=75)
    files["grey.txt"] = b"grey"
    good = jpeg_bytes(gradient(80, 48), quality=75)
    files["zz_cut.jpg"] = good[: len(good) // 2]
    files["zz_cut.txt"] = b"cut"
    make_zip(proj.data / "set.zip", files)
    r = proj.check()
    assert r.returncode == 0, r.stderr
    status = {f["file"]: f["status"] for f in proj.report()["files"]}
    assert status.pop("zz_cut.jpg") == "left out"
    assert "left out" not in status.values() and len(status) == 13
    assert "Pillow" in problems_text(proj.file("zz_cut.jpg"))


def test_a_zip_of_one_valid_jpeg_is_usable(proj):
    make_zip(proj.data / "one.zip", {"a.jpg": jpeg_bytes(gradient(80, 48), quality=75), "a.txt": b"a"})
    r = proj.check()
    assert r.returncode == 0 and "The data is usable" in r.stdout, r.stdout + r.stderr


def test_an_animated_webp_that_pillow_opens_trains(proj, tmp_path):
    frames = [gradient(80, 48).rotate(a) for a in (0, 10, 20)]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], duration=100)
    make_zip(proj.data / "w.zip", {"anim.webp": buf.getvalue(), "anim.txt": b"spinning"})
    r = proj.check()
    assert r.returncode == 0, r.stderr
    f = proj.file("anim.webp")
    assert f["status"] == "ok" and f["latent_cache_files"] and "first frame" in problems_text(f)


# --- 2. a refused entry among good ones: the refusal, never a crash ----------------------------------------------


def _good(proj_src: Path) -> dict[str, bytes | Path]:
    return {"ok.png": make_image(proj_src / "ok.png"), "ok.txt": b"fine"}


@pytest.mark.parametrize(
    "name, words",
    [("../x.png", "'..'"), ("/etc/x.png", "absolute path"), ("sub\\x.png", "backslashes")],
)
def test_one_refused_entry_among_good_ones_is_named(proj, tmp_path, name, words):
    z = make_zip(proj.data / "set.zip", _good(tmp_path / "src"))
    add_zip_entry(z, name, make_image(tmp_path / "src" / "x.png").read_bytes())
    r = proj.check()
    assert r.returncode == 2 and name in r.stderr and words in r.stderr, r.stderr
    summary = json.loads((proj.runs()[-1] / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert proj.file("ok.png")["status"] == "left out" and "input is refused" in problems_text(proj.file("ok.png"))


def test_symlink_encrypted_and_bomb_entries_are_named(proj, tmp_path):
    files = _good(tmp_path / "src") | {"secret.png": make_image(tmp_path / "src" / "s.png"), "secret.txt": b"s"}
    z = make_zip(proj.data / "set.zip", files, symlinks={"link.png": "/etc/passwd"})
    set_zip_flag(z, "secret.png", 0x1)
    add_zip_entry(z, "bomb.mp4", bytes(50 << 20))
    r = proj.check()
    assert r.returncode == 2, r.stderr
    for words in ("link.png: is a symbolic link", "secret.png: is encrypted", "bomb.mp4: expands"):
        assert words in r.stderr, r.stderr


def test_max_unpacked_gb_refusal_is_shown(proj, tmp_path):
    make_zip(proj.data / "set.zip", _good(tmp_path / "src"))
    r = proj.check("--max_unpacked_gb", "0.0000001")
    assert r.returncode == 2 and "more than the limit" in r.stderr and "--max_unpacked_gb" in r.stderr, r.stderr


@pytest.mark.parametrize("kind", ["file link", "folder link", "fifo"])
def test_input_dir_with_links_or_a_fifo_is_refused_by_name(proj, tmp_path, kind):
    src = tmp_path / "in"
    make_image(src / "ok.png")
    (src / "ok.txt").write_text("ok")
    if kind == "file link":
        os.symlink(src / "ok.png", src / "linked.png")
        name = "linked.png"
    elif kind == "folder link":
        os.symlink(src, src / "loop")
        name = "loop"
    else:
        os.mkfifo(src / "pipe.png")
        name = "pipe.png"
    r = proj.check("--input_dir", str(src))
    assert r.returncode == 2 and f"{name}: is a" in r.stderr, r.stderr


# --- 3. names that are too long for the file system --------------------------------------------------------------


def test_deeply_nested_long_names_pass_the_dry_run(proj, tmp_path):
    deep = "/".join(["a_rather_long_folder_name_" + "x" * 40] * 5) + "/clip.png"
    assert len(deep.replace("/", "__")) > 255
    make_zip(proj.data / "set.zip", {deep: make_image(tmp_path / "s" / "c.png"), deep[:-4] + ".txt": b"deep"})
    r = proj.run("--dry_run", "--resolution", "64x64")
    assert r.returncode == 0, r.stderr
    f = proj.file(deep)
    assert len(f["dataset_name"].encode()) <= 255 and all(len(c.encode()) <= 255 for c in f["latent_cache_files"])
    assert (proj.runs()[-1] / "dataset" / "images" / f["dataset_name"]).is_file()


def test_a_long_cjk_stem_gets_cache_names_that_fit(proj, tmp_path):
    stem = "猫" * 78  # 234 bytes in UTF-8: with musubi's cache suffix it would exceed 255
    make_zip(
        proj.data / "set.zip",
        {f"{stem}.mp4": make_video(tmp_path / "s" / "v.mp4", frames=9), f"{stem}.txt": b"a cat"},
    )
    r = proj.run("--dry_run", "--resolution", "64x64", "--target_frames", "1,5")
    assert r.returncode == 0, r.stderr
    f = proj.file(f"{stem}.mp4")
    names = [f["dataset_name"], *f["latent_cache_files"], Path(f["dataset_name"]).stem + "_hv15_te.safetensors"]
    assert all(len(n.encode()) <= 255 for n in names), names
    assert f["dataset_name"].startswith("猫" * 20)  # shortened, still recognisable


# --- 4. the trigger word is inserted literally --------------------------------------------------------------------


@pytest.mark.parametrize("trigger", ["a\\o", "x\\1y", "\\\\x", "$1 \\g<0>"])
def test_trigger_word_with_backslashes_is_inserted_literally(proj, tmp_path, trigger):
    make_zip(proj.data / "set.zip", {"a.png": make_image(tmp_path / "a.png"), "a.txt": b"[trigger] on a sofa"})
    r = proj.check("--trigger_word", trigger)
    assert r.returncode == 0, r.stderr
    assert proj.file("a.png")["caption"] == f"{trigger} on a sofa"


# --- 5. values that validate but would fail later ---------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--seed", "-5", "0..4294967295"),
        ("--seed", "4294967296", "0..4294967295"),
        ("--learning_rate", "inf", "finite"),
        ("--learning_rate", "nan", "finite"),
        ("--network_alpha", "nan", "finite"),
        ("--network_alpha", "inf", "finite"),
        ("--resolution", "100000x100000", "64..4096"),
        ("--max_unpacked_gb", "inf", "finite"),
        ("--max_unpacked_gb", "1e300", "finite number in"),
        ("--epochs", "99999999999999999999", "1..100000"),
        ("--target_frames", "100001", "more than 1025"),
        ("--trigger_word", ",", "no letter or digit"),
    ],
)
def test_values_that_would_fail_later_are_refused_with_the_range(proj, flag, value, words):
    r = proj.check(flag, value)
    assert r.returncode == 2 and flag.removeprefix("--") in r.stderr and words in r.stderr, r.stderr
    assert proj.runs() == []


# --- 6. paths ---------------------------------------------------------------------------------------------------


def test_output_dir_that_is_a_file_or_cannot_be_created(proj, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        r = proj.run("--check_data", "--output_dir", str(out))
        assert r.returncode == 2 and f"output_dir {out}" in r.stderr and "--output_dir" in r.stderr, r.stderr


def test_config_that_is_a_folder_or_not_utf8(proj, tmp_path):
    r = proj.run("--check_data", config=tmp_path)
    assert r.returncode == 2 and "is a folder" in r.stderr, r.stderr
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('trigger_word = "caf\xe9"\n'.encode("latin-1"))
    r = proj.run("--check_data", config=bad)
    assert r.returncode == 2 and "not UTF-8" in r.stderr and "latin1.toml" in r.stderr, r.stderr


def test_input_zip_naming_a_folder(proj, tmp_path):
    (tmp_path / "adir").mkdir()
    r = proj.check("--input_zip", str(tmp_path / "adir"))
    assert r.returncode == 2 and "is a folder, not a zip" in r.stderr and "--input_dir" in r.stderr, r.stderr


# --- 7. what musubi trains wrongly without a word ---------------------------------------------------------------


def _sar_video(path: Path, sar: Fraction) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.codec_context.sample_aspect_ratio = sar
        for i in range(9):
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), 20 * i, np.uint8), format="rgb24")
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def test_exif_orientation_squeezed_pixels_and_extreme_aspect_are_warned(proj, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    rotated = jpeg_bytes(gradient(80, 48), quality=90, exif=exif.tobytes())
    strip = io.BytesIO()
    gradient(4000, 50).save(strip, format="PNG")
    files = {
        "phone.jpg": rotated,
        "phone.txt": b"a phone photo",
        "anamorphic.mp4": _sar_video(tmp_path / "sar.mp4", Fraction(4, 3)),
        "anamorphic.txt": b"a wide shot",
        "strip.png": strip.getvalue(),
        "strip.txt": b"a panorama",
    }
    make_zip(proj.data / "set.zip", files)
    r = proj.run("--check_data", "--target_frames", "1,5")
    assert r.returncode == 0, r.stderr
    assert "EXIF orientation 6" in problems_text(proj.file("phone.jpg"))
    assert "non-square pixels" in problems_text(proj.file("anamorphic.mp4"))
    text = problems_text(proj.file("strip.png"))
    assert "crops 95% of its picture away" in text and "Crop it yourself" in text
    for name in ("phone.jpg", "anamorphic.mp4", "strip.png"):
        assert proj.file(name)["status"] == "warning" and name in r.stdout


# --- 8. data lost or mixed up ----------------------------------------------------------------------------------


def test_a_path_twice_in_the_zip_with_different_content_is_refused(proj, tmp_path):
    z = make_zip(proj.data / "set.zip", {"a.png": make_image(tmp_path / "a.png"), "a.txt": b"a"})
    with pytest.warns(UserWarning, match="Duplicate name"):
        add_zip_entry(z, "a.png", make_image(tmp_path / "b.png", 96, 48).read_bytes())
    r = proj.check()
    assert r.returncode == 2 and "a.png: appears twice in the zip with different content" in r.stderr, r.stderr


def test_a_path_twice_with_the_same_content_is_used_once(proj, tmp_path):
    png = make_image(tmp_path / "a.png").read_bytes()
    z = make_zip(proj.data / "set.zip", {"a.png": png, "a.txt": b"a"})
    with pytest.warns(UserWarning, match="Duplicate name"):
        add_zip_entry(z, "a.png", png)
    r = proj.check()
    assert r.returncode == 0 and "identical copies" in r.stdout, r.stdout + r.stderr
    assert [f["file"] for f in proj.report()["files"]] == ["a.png"]


def test_captions_differing_in_case_say_which_one_is_used(proj, tmp_path):
    make_zip(proj.data / "set.zip", {"a.png": make_image(tmp_path / "a.png"), "a.TXT": b"upper", "a.txt": b"lower"})
    r = proj.check()
    assert r.returncode == 0, r.stderr
    f = proj.file("a.png")
    assert f["caption"] == "lower" and "a.txt is used, not a.TXT" in problems_text(f)


def test_a_file_beside_a_folder_of_the_same_name(proj, tmp_path):
    png = make_image(tmp_path / "a.png")
    files = {"a.png": png, "a.txt": b"top", "a.png/x.png": make_image(tmp_path / "x.png", 96, 48), "a.png/x.txt": b"in"}
    make_zip(proj.data / "set.zip", files)
    r = proj.run("--dry_run", "--resolution", "64x64")
    assert r.returncode == 0, r.stderr
    assert {f["file"]: f["status"] for f in proj.report()["files"]} == {"a.png": "ok", "a.png/x.png": "ok"}
    images = proj.runs()[-1] / "dataset" / "images"
    assert (images / "a.txt").read_text() == "top" and (images / "a.png__x.txt").read_text() == "in"


# --- 9. captions ---------------------------------------------------------------------------------------------------


def test_caption_encodings(proj, tmp_path):
    png = make_image(tmp_path / "a.png")
    files = {
        "u16.png": png,
        "u16.txt": "a café at night".encode("utf-16-le"),  # no BOM
        "stray.png": png,
        "stray.txt": "a naïve smile".encode() + b"\xff",  # one stray byte in UTF-8
        "nul.png": png,
        "nul.txt": b"a cat\x00\x00\x01\x02",
        "ph.png": png,
        "ph.txt": b"[trigger]",
    }
    make_zip(proj.data / "set.zip", files)
    r = proj.check()
    assert r.returncode == 2, r.stderr  # the binary caption stops the run
    assert proj.file("u16.png")["caption"] == "a café at night"
    assert "UTF-16-LE (no byte-order mark)" in problems_text(proj.file("u16.png"))
    assert proj.file("stray.png")["caption"] == "a naïve smile\ufffd"
    assert "1 invalid byte(s) replaced" in problems_text(proj.file("stray.png"))
    assert "nul.txt: is not a text file (it contains NUL bytes)" in r.stderr
    assert "is empty once [trigger] is removed" in problems_text(proj.file("ph.png"))


# --- 11. the report --------------------------------------------------------------------------------------------------


def test_report_rows_lead_with_the_reason_and_survive_newlines(proj, tmp_path):
    short = make_video(tmp_path / "short.mp4", frames=3)  # an upscaled warning first, then left out: too short
    files = {
        "short.mp4": short,
        "short.txt": b"s",
        "new\nline.png": make_image(tmp_path / "n.png"),
        "new\nline.txt": b"n",
    }
    make_zip(proj.data / "set.zip", files)
    r = proj.run("--check_data", "--target_frames", "5")
    assert r.returncode == 0, r.stderr
    rows = (proj.runs()[-1] / "dataset_report.txt").read_text().splitlines()
    first = next(row for row in rows if row.startswith("short.mp4"))
    assert "left out" in first and first.split("left out", 1)[1].strip().startswith("3 frames")
    assert "upscaled" in rows[rows.index(first) + 1]
    assert len(rows) == 1 + 2 + 1  # header; short.mp4 on two rows; new\nline.png on one row, not two
    assert any(row.startswith("new\\nline.png") for row in rows)


def test_failed_checks_keep_a_run_folder_only_when_it_holds_the_report(proj, tmp_path):
    r = proj.check("--rank", "1000")
    assert r.returncode == 2 and proj.runs() == []  # bad settings: nothing to keep
    r = proj.check()  # no zip in data/
    assert r.returncode == 2 and "no .zip found" in r.stderr and proj.runs() == []
    make_zip(proj.data / "set.zip", {"a.png": make_image(tmp_path / "a.png")})  # no caption: an error
    r = proj.check()
    assert r.returncode == 2 and "kept in the run folder" in r.stderr
    assert [p.name for p in proj.runs()[0].iterdir() if p.name.startswith("dataset_report")]


# --- 15. a run's config.toml is a valid config --------------------------------------------------------------------


def test_a_runs_config_toml_loads_back(proj, tmp_path):
    make_zip(proj.data / "set.zip", {"a.png": make_image(tmp_path / "a.png"), "a.txt": b"a"})
    r = proj.check("--trigger_word", "ohwx", "--rank", "16")
    assert r.returncode == 0, r.stderr
    saved = proj.runs()[-1] / "config.toml"
    r = proj.run("--check_data", config=saved)
    assert r.returncode == 0, r.stderr
    first, second = (json.loads((p / "summary.json").read_text())["settings"] for p in proj.runs())
    assert first == second and first["rank"] == 16 and "check_data" not in first


# --- internal errors: one line, the traceback in the run folder --------------------------------------------------


def test_an_internal_error_is_one_line_and_its_traceback_is_kept(proj, tmp_path, monkeypatch, capsys):
    from hvlora.core import cli
    from hvlora.data import preflight

    make_zip(proj.data / "set.zip", {"a.png": make_image(tmp_path / "a.png"), "a.txt": b"a"})

    def broken(*_a, **_k):
        return 1 / 0

    monkeypatch.setattr(preflight, "_plan", broken)
    rc = cli.main(
        ["--config", str(proj.config), "--data_dir", str(proj.data), "--output_dir", str(proj.output), "--check_data"]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    # where: the innermost frame of the project's own code
    assert "internal error: ZeroDivisionError: division by zero (in run, preflight.py:" in err
    log = proj.runs()[-1] / "logs" / "internal_error.log"
    assert str(log) in err and "ZeroDivisionError" in log.read_text() and "Traceback" in log.read_text()
    assert json.loads((proj.runs()[-1] / "summary.json").read_text())["status"] == "failed"


def test_fifo_and_special_entries_in_a_zip(proj, tmp_path):
    z = make_zip(proj.data / "set.zip", _good(tmp_path / "src"))
    add_zip_entry(z, "dev.png", b"", mode=stat.S_IFIFO | 0o644)
    r = proj.check()
    assert r.returncode == 2 and "dev.png: is a special file" in r.stderr, r.stderr


# --- issue 14: real datasets from Windows, macOS and phones ------------------------------------------------------


def test_a_windows_explorer_zip_with_a_bmp_screenshot_is_usable(proj, tmp_path):
    """Explorer writes accented names in CP437 without the UTF-8 flag, and a BMP screenshot deflates about 770x:
    neither is a reason to refuse the zip. Errors about an entry name the entry, not the temporary unpack folder."""
    src = tmp_path / "src"
    make_explorer_zip(
        proj.data / "set.zip",
        {
            "Capture d'écran.bmp": make_flat_bmp(src / "shot.bmp"),
            "Capture d'écran.txt": b"a red box on white",
            "Ölbild/café.png": make_image(src / "c.png"),
            "Ölbild/café.txt": b"a cup",
            "bad.jpg": b"this is not a jpeg",
            "bad.txt": b"x",
        },
    )
    r = proj.check()
    assert r.returncode == 0, r.stdout + r.stderr
    assert proj.file("Capture d'écran.bmp")["status"] == "ok" and proj.file("Ölbild/café.png")["caption"] == "a cup"
    note = next(p for p in proj.report()["problems"] if "read as CP437" in p["message"])
    assert note["severity"] == "note" and "Capture d'écran.bmp" in note["message"] and "-mcu=on" in note["fix"]
    bad = problems_text(proj.file("bad.jpg"))
    assert "bad.jpg" in bad and ".check-" not in bad and "cache" not in bad, bad
    assert ".check-" not in r.stdout + r.stderr


@pytest.mark.parametrize("case", ["dot entry", "UTF-8 flag on Latin-1, central", "UTF-8 flag on Latin-1, local"])
def test_malformed_entry_names_are_refused_naming_the_entry_not_an_internal_error(proj, tmp_path, case):
    z = make_zip(proj.data / "set.zip", _good(tmp_path / "src") | {"cafX.png": make_image(tmp_path / "c.png")})
    if case == "dot entry":
        add_zip_entry(z, ".", b"x")
        shown = ".: has no file name"
    elif case.endswith("central"):
        rename_zip_entry_raw(z, "cafX.png", b"caf\xe9.png")
        set_zip_flag(z, b"caf\xe9.png", 0x800)
        shown = "caf\\xe9.png: has a name marked as UTF-8"
    else:  # the central directory is fine; the local header has the flag on Latin-1 bytes
        rename_zip_entry_raw(z, "cafX.png", b"caf\xe9.png", central=False)
        set_zip_flag(z, "cafX.png", 0x800, central=False)
        shown = "cafX.png: its local header has a name marked as UTF-8"
    r = proj.check()
    assert r.returncode == 2 and shown in r.stderr and "internal error" not in r.stderr, r.stderr


def test_output_dir_inside_input_dir_is_refused_before_anything_is_written(proj, tmp_path):
    src = tmp_path / "mine"
    make_image(src / "a.png")
    (src / "a.txt").write_text("a")
    for out in (src / "output", src):
        r = proj.run("--check_data", "--input_dir", str(src), "--output_dir", str(out))
        assert r.returncode == 2 and f"output_dir {out} is inside input_dir {src}" in r.stderr, r.stderr
    assert sorted(p.name for p in src.iterdir()) == ["a.png", "a.txt"]


BLOCKED = ("torch", "accelerate", "safetensors", "matplotlib", "tensorboard", "pynvml", "transformers", "numpy",
           "musubi_tuner", "bitsandbytes")  # fmt: skip
WITHOUT_TRAINING_STACK = f"""
import os, runpy, sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed with requirements-data.txt)")
sys.meta_path.insert(0, Blocked())
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))  # as `python train_local.py` does
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_check_data_and_dry_run_need_no_training_stack(proj, tmp_path):
    """README: `pip install -r requirements-data.txt` is enough for --check_data and --dry_run. With every
    training package made unimportable, both still finish."""
    make_zip(proj.data / "set.zip", {"a.png": make_image(tmp_path / "a.png"), "a.txt": b"a"})
    base = ["--config", str(proj.config), "--data_dir", str(proj.data), "--output_dir", str(proj.output)]
    for action in ("--check_data", "--dry_run"):
        argv = [sys.executable, "-c", WITHOUT_TRAINING_STACK, str(ROOT / "train_local.py"), *base, action]
        argv += ["--resolution", "64x64", "--models_dir", str(proj.models)]
        r = subprocess.run(argv, capture_output=True, text=True, cwd=proj.root, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    data = {ln.split("==")[0] for ln in (ROOT / "requirements-data.txt").read_text().splitlines() if "==" in ln}
    assert not data & {"accelerate", "torch", "safetensors", "matplotlib", "tensorboard", "nvidia-ml-py"}
