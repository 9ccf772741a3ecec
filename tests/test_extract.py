"""Stage 2 on real zips with real PyAV-made media: safety, junk, folders, captions, trigger word, reports."""
from __future__ import annotations

import hashlib
import os
import zipfile

import pytest

from conftest import tree
from hvlora.errors import DataError
from hvlora.stages import extract
from mediafactory import dataset_zip, make_image, make_video, make_zip


def sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def run_extract(make_settings, make_ctx, *flags):
    s = make_settings(*flags)
    ctx = make_ctx(s)
    extract.run(ctx)
    return ctx


def test_nested_folders_equal_names_and_mixed_kinds(tmp_path, make_settings, make_ctx):
    z = dataset_zip(tmp_path, tmp_path / "data" / "set.zip",
                    images={"a/cat.png": "a cat", "b/cat.png": "another cat", "top.jpg": "top"},
                    videos={"clips/deep/run.mp4": ("running", 9), "a/cat.webm": ("cat video", 5)})
    before = (sha(z), os.stat(z).st_mtime_ns)
    ctx = run_extract(make_settings, make_ctx)
    ds = ctx.dataset
    assert sorted(i.source for i in ds.images) == ["a/cat.png", "b/cat.png", "top.jpg"]
    assert sorted(i.source for i in ds.videos) == ["a/cat.webm", "clips/deep/run.mp4"]
    # equal names in different folders both survive, flat and unique, each with its caption beside it
    assert tree(ds.image_dir) == {"a__cat.png", "a__cat.txt", "b__cat.png", "b__cat.txt", "top.jpg", "top.txt"}
    assert tree(ds.video_dir) == {"a__cat.webm", "a__cat.txt", "clips__deep__run.mp4", "clips__deep__run.txt"}
    assert (ds.image_dir / "b__cat.txt").read_text() == "another cat"
    # the zip's folder structure is kept in extracted/
    assert {"a/cat.png", "b/cat.png", "clips/deep/run.mp4", "a/cat.txt"} <= tree(ctx.paths.extracted)
    # the zip is untouched and nothing is written into data/
    assert (sha(z), os.stat(z).st_mtime_ns) == before
    assert tree(tmp_path / "data") == {"set.zip"}
    # probed sizes and frame counts are real
    run = next(v for v in ds.videos if v.source.endswith("run.mp4"))
    assert (run.info.width, run.info.height, run.info.frames, run.info.fps) == (96, 64, 9, 24.0)
    assert ctx.summary.data["items"]["images"] == 3 and ctx.summary.data["items"]["videos"] == 2


@pytest.mark.parametrize("bad_name, reason", [
    ("../escape.png", "'..'"),
    ("/abs/escape.png", "absolute path"),
    ("C:/win/escape.png", "absolute path"),
    ("dir\\..\\escape.png", "backslashes"),
])
def test_entries_escaping_the_folder_refuse_the_zip(tmp_path, make_settings, make_ctx, bad_name, reason):
    img = make_image(tmp_path / "src" / "x.png")
    make_zip(tmp_path / "data" / "evil.zip", {"ok.png": img, "ok.txt": b"fine", bad_name: img,
                                             bad_name.rsplit(".", 1)[0] + ".txt": b"bad"})
    s = make_settings()
    with pytest.raises(DataError) as e:
        extract.preflight(s)
    assert bad_name in str(e.value) and reason in str(e.value)
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "output").exists()


def test_symlink_entry_refuses_the_zip(tmp_path, make_settings):
    img = make_image(tmp_path / "src" / "x.png")
    make_zip(tmp_path / "data" / "link.zip", {"ok.png": img, "ok.txt": b"fine"},
             symlinks={"link.png": "/etc/passwd"})
    with pytest.raises(DataError, match="link.png: is a symbolic link"):
        extract.preflight(make_settings())


def test_junk_and_hidden_files_are_skipped(tmp_path, make_settings, make_ctx):
    dataset_zip(tmp_path, tmp_path / "data" / "mac.zip", images={"pics/a.png": "a"},
                extra={"__MACOSX/pics/._a.png": b"\0junk", "pics/._a.png": b"\0junk", ".DS_Store": b"x",
                       "pics/.hidden.png": b"x", ".git/config": b"x", "pics/.DS_Store": b"x"})
    ctx = run_extract(make_settings, make_ctx)
    assert [i.source for i in ctx.dataset.images] == ["pics/a.png"]
    assert not ctx.dataset.problems  # junk is skipped silently, not reported as unsupported
    assert tree(ctx.paths.extracted) == {"pics/a.png", "pics/a.txt"}


def test_missing_captions_stop_the_run_listing_each_file(tmp_path, make_settings):
    dataset_zip(tmp_path, tmp_path / "data" / "nocap.zip", images={"a.png": "a", "b.png": None},
                videos={"v/c.mp4": (None, 5)})
    with pytest.raises(DataError) as e:
        extract.preflight(make_settings())
    msg = str(e.value)
    assert "b.png: has no caption" in msg and "v/c.mp4: has no caption" in msg and "Add v/c.txt" in msg
    assert "a.png" not in msg.replace("nocap.zip", "")


def test_reported_problems_do_not_stop_the_run(tmp_path, make_settings, make_ctx):
    dataset_zip(tmp_path, tmp_path / "data" / "warn.zip",
                images={"a.png": "a", "dup.png": "shared", "empty.png": "  \n"},
                videos={"dup.mp4": ("shared", 5)},
                extra={"orphan.txt": b"no media", "notes.pdf": b"%PDF", "broken.mp4": b"not a video at all",
                       "broken.txt": b"caption of a broken file"})
    ctx = run_extract(make_settings, make_ctx)
    report = "\n".join(str(p) for p in ctx.dataset.problems)
    assert "orphan.txt: caption without a media file" in report
    assert "notes.pdf: unsupported file type" in report
    assert "broken.mp4: left out: PyAV cannot decode it" in report
    assert "dup.png, dup.mp4: share one stem" in report or "dup.mp4, dup.png: share one stem" in report
    assert "empty.txt: is empty" in report
    assert sorted(i.source for i in ctx.dataset.images) == ["a.png", "dup.png", "empty.png"]
    assert [v.source for v in ctx.dataset.videos] == ["dup.mp4"]
    # the problems are in the stage log and in summary.json
    log = ctx.paths.log("extract").read_text()
    assert "broken.mp4" in log and "orphan.txt" in log
    assert any("broken.mp4" in w for w in ctx.summary.data["items"]["warnings"])


def test_two_images_sharing_a_stem_both_train(tmp_path, make_settings, make_ctx):
    dataset_zip(tmp_path, tmp_path / "data" / "dup.zip", images={"p/a.png": "shared"},
                extra={"p/a.jpg": make_image(tmp_path / "src2" / "a.jpg").read_bytes()})
    ctx = run_extract(make_settings, make_ctx)
    names = tree(ctx.dataset.image_dir)
    assert names == {"p__a.png", "p__a.txt", "p__a~2.jpg", "p__a~2.txt"}
    assert (ctx.dataset.image_dir / "p__a~2.txt").read_text() == "shared"


def test_nothing_usable_stops_the_run(tmp_path, make_settings, make_ctx):
    make_zip(tmp_path / "data" / "bad.zip", {"x.mp4": b"garbage", "x.txt": b"caption"})
    with pytest.raises(DataError, match="no usable media remain"):
        run_extract(make_settings, make_ctx)


def test_zip_without_media(tmp_path, make_settings):
    make_zip(tmp_path / "data" / "empty.zip", {"readme.txt": b"hi"})
    with pytest.raises(DataError, match="contains no images or videos"):
        extract.preflight(make_settings())


@pytest.mark.parametrize("caption, trigger, expected", [
    ("a man walking", "ohwx", "ohwx, a man walking"),
    ("photo of OHWX man", "ohwx", "photo of OHWX man"),
    ("ohwxman at the beach", "ohwx", "ohwx, ohwxman at the beach"),
    ("a dog", "", "a dog"),
    ("", "ohwx", "ohwx"),
])
def test_apply_trigger(caption, trigger, expected):
    assert extract.apply_trigger(caption, trigger) == expected


def test_trigger_word_goes_into_the_copy_only(tmp_path, make_settings, make_ctx):
    z = dataset_zip(tmp_path, tmp_path / "data" / "t.zip", images={"a.png": "a cat", "b.png": "ohwx cat"})
    ctx = run_extract(make_settings, make_ctx, "--trigger_word", "ohwx")
    assert (ctx.dataset.image_dir / "a.txt").read_text() == "ohwx, a cat"
    assert (ctx.dataset.image_dir / "b.txt").read_text() == "ohwx cat"
    assert (ctx.paths.extracted / "a.txt").read_text() == "a cat"  # the extracted original stays as in the zip
    with zipfile.ZipFile(z) as zf:
        assert zf.read("a.txt") == b"a cat"


def test_caption_encodings(tmp_path, make_settings, make_ctx):
    dataset_zip(tmp_path, tmp_path / "data" / "enc.zip", images={"a.png": None, "b.png": None},
                extra={"a.txt": "\ufeffcafé au lait".encode("utf-8"), "b.txt": "naïve".encode("cp1252")})
    ctx = run_extract(make_settings, make_ctx)
    assert (ctx.dataset.image_dir / "a.txt").read_text(encoding="utf-8") == "café au lait"
    assert (ctx.dataset.image_dir / "b.txt").read_text(encoding="utf-8") == "naïve"
    assert any("b.txt: is not UTF-8" in str(p) for p in ctx.dataset.problems)


def test_fingerprint_follows_captions_and_media(tmp_path, make_settings, make_ctx):
    dataset_zip(tmp_path, tmp_path / "data" / "f.zip", images={"a.png": "a cat"})
    first = run_extract(make_settings, make_ctx).dataset.fingerprint
    again = run_extract(make_settings, make_ctx).dataset.fingerprint
    other_trigger = run_extract(make_settings, make_ctx, "--trigger_word", "ohwx").dataset.fingerprint
    assert first == again != other_trigger


class TestFindZip:
    def test_only_zip_in_data_dir(self, tmp_path, make_settings):
        make_zip(tmp_path / "data" / "only.ZIP", {"a.txt": b"x"})
        assert extract.find_zip(make_settings()).name == "only.ZIP"

    def test_none(self, tmp_path, make_settings):
        (tmp_path / "data").mkdir()
        with pytest.raises(DataError, match=f"no .zip found in {tmp_path / 'data'}. Put your dataset zip"):
            extract.find_zip(make_settings())

    def test_several_are_named(self, tmp_path, make_settings):
        for n in ("one.zip", "two.zip"):
            make_zip(tmp_path / "data" / n, {"a.txt": b"x"})
        with pytest.raises(DataError) as e:
            extract.find_zip(make_settings())
        assert "one.zip" in str(e.value) and "two.zip" in str(e.value) and "--input_zip" in str(e.value)

    def test_bare_name_is_looked_up_in_data_dir(self, tmp_path, make_settings):
        make_zip(tmp_path / "data" / "a.zip", {"a.txt": b"x"})
        make_zip(tmp_path / "data" / "b.zip", {"a.txt": b"x"})
        assert extract.find_zip(make_settings("--input_zip", "b.zip")) == tmp_path / "data" / "b.zip"

    def test_missing_input_zip(self, tmp_path, make_settings):
        with pytest.raises(DataError, match="does not exist"):
            extract.find_zip(make_settings("--input_zip", str(tmp_path / "nope.zip")))

    def test_not_a_zip(self, tmp_path, make_settings):
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "fake.zip").write_bytes(b"not a zip")
        with pytest.raises(DataError, match="not a readable zip"):
            extract.preflight(make_settings())


def test_entry_larger_than_declared_is_not_written_past_its_size(tmp_path, make_settings, make_ctx):
    """A zip whose central directory understates an entry's size: extraction stops, naming the entry."""
    video = make_video(tmp_path / "src" / "v.mp4", frames=5)
    z = make_zip(tmp_path / "data" / "lie.zip", {"v.mp4": video, "v.txt": b"cap"})
    data = bytearray(z.read_bytes())
    pos = data.find(b"PK\x01\x02")  # first central directory header: v.mp4's
    assert data[pos + 46:pos + 46 + len("v.mp4")] == b"v.mp4"
    data[pos + 24:pos + 28] = (10).to_bytes(4, "little")  # uncompressed size field
    z.write_bytes(bytes(data))
    with pytest.raises(DataError, match="v.mp4"):
        run_extract(make_settings, make_ctx)
    extracted = next((tmp_path / "output" / "runs").glob("*/extracted/v.mp4"), None)
    assert extracted is None or extracted.stat().st_size <= 10
