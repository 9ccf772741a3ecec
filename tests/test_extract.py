"""Stage 2: the checked data laid out as musubi reads it, from a real zip and from a real folder."""

from __future__ import annotations

import hashlib
import os

from conftest import tree
from mediafactory import dataset_zip, make_image, make_video

from hvlora.core import pipeline
from hvlora.stages import extract


def snapshot(root):
    return {
        p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def prepare(ctx):
    pipeline.check_data(ctx)
    extract.run(ctx)
    return ctx


def test_zip_layout_flat_unique_names_hard_links_and_captions(tmp_path, make_settings, make_ctx):
    dataset_zip(
        tmp_path,
        tmp_path / "data" / "set.zip",
        images={"a/cat.png": "a cat", "b/cat.PNG": "another cat", "top.jpg": "ohwx on top"},
        videos={"clips/deep/run.mp4": ("running", 9), "b/dog.webm": ("dog video", 5)},
    )
    before = snapshot(tmp_path / "data")
    ctx = prepare(make_ctx(make_settings("--trigger_word", "ohwx", "--target_frames", "1,5")))
    images, videos = ctx.paths.block("images"), ctx.paths.block("videos_24fps")
    # equal names in different folders both survive; extensions lower-case for musubi's globs
    assert tree(images) == {"a__cat.png", "a__cat.txt", "b__cat.png", "b__cat.txt", "top.jpg", "top.txt"}
    assert tree(videos) == {"b__dog.webm", "b__dog.txt", "clips__deep__run.mp4", "clips__deep__run.txt"}
    # the trigger word goes into our copy of the caption, once
    assert (images / "a__cat.txt").read_text() == "ohwx, a cat"
    assert (images / "top.txt").read_text() == "ohwx on top"
    # media are hard links to the unpacked files in the shared store: no second copy on disk
    unpacked = next(f.path for f in ctx.data.files if f.name == "a/cat.png")
    assert unpacked.parent == pipeline.media_store(ctx.settings)
    assert (images / "a__cat.png").stat().st_ino == unpacked.stat().st_ino
    assert snapshot(tmp_path / "data") == before  # the zip and data/ are untouched


def test_folder_input_is_linked_never_written(tmp_path, make_settings, make_ctx):
    src = tmp_path / "mydata"
    make_image(src / "p" / "a.png")
    (src / "p" / "a.txt").write_text("a portrait")
    make_video(src / "v.mkv", frames=5)
    (src / "v.txt").write_text("[trigger] walking")
    before = snapshot(src)
    ctx = prepare(make_ctx(make_settings("--input_dir", str(src), "--trigger_word", "ohwx", "--target_frames", "1,5")))
    link = ctx.paths.block("images") / "p__a.png"
    assert link.is_symlink() and os.readlink(link) == str(src / "p" / "a.png")
    assert (ctx.paths.block("videos_24fps") / "v.txt").read_text() == "ohwx walking"
    assert not pipeline.media_store(ctx.settings).exists()  # nothing is unpacked or copied for a folder
    assert snapshot(src) == before


def test_videos_of_different_frame_rates_get_their_own_folders(tmp_path, make_settings, make_ctx):
    src = tmp_path / "mixed"
    make_video(src / "a.mp4", frames=10, fps=24)
    make_video(src / "b.mp4", frames=12, fps=30)
    for n in ("a", "b"):
        (src / f"{n}.txt").write_text(n)
    ctx = prepare(make_ctx(make_settings("--input_dir", str(src), "--target_frames", "1,5")))
    assert tree(ctx.paths.block("videos_24fps")) == {"a.mp4", "a.txt"}
    assert tree(ctx.paths.block("videos_30fps")) == {"b.mp4", "b.txt"}
