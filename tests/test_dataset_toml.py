"""Stage 3: musubi dataset TOML for mixed, image-only, video-only and mixed-frame-rate data, read back."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from mediafactory import dataset_zip, make_video

from hvlora import pipeline
from hvlora.stages import dataset_toml, extract

COMMON = {
    "resolution",
    "enable_bucket",
    "bucket_no_upscale",
    "caption_extension",
    "batch_size",
    "num_repeats",
    "cache_directory",
}
VIDEO = {"video_directory", "target_frames", "frame_extraction", "source_fps"}


def run_stages(ctx):
    pipeline.check_data(ctx)
    extract.run(ctx)
    dataset_toml.run(ctx)
    with open(ctx.dataset_toml, "rb") as f:
        return tomllib.load(f)


def prepared(tmp_path, make_settings, make_ctx, images, videos, *flags):
    dataset_zip(tmp_path, tmp_path / "data" / "d.zip", images=images, videos=videos)
    ctx = make_ctx(make_settings("--resolution", "64x64", *flags))
    return ctx, run_stages(ctx)


def test_mixed_zip_gets_an_image_and_a_video_block(tmp_path, make_settings, make_ctx):
    ctx, doc = prepared(
        tmp_path,
        make_settings,
        make_ctx,
        {"i/a.png": "a"},
        {"v/b.mp4": ("b", 9)},
        "--resolution",
        "512x288",
        "--target_frames",
        "1,5",
        "--frame_extraction",
        "slide",
        "--frame_stride",
        "2",
        "--num_repeats",
        "3",
    )
    assert set(doc) == {"datasets"} and len(doc["datasets"]) == 2
    img, vid = doc["datasets"]
    assert set(img) == COMMON | {"image_directory"}
    assert set(vid) == COMMON | VIDEO | {"frame_stride"}
    assert img["image_directory"] == str(ctx.paths.block("images"))
    assert vid["video_directory"] == str(ctx.paths.block("videos_24fps"))
    for block in (img, vid):
        assert block["resolution"] == [512, 288] and block["enable_bucket"] is True
        assert block["caption_extension"] == ".txt" and block["batch_size"] == 1 and block["num_repeats"] == 3
    assert vid["target_frames"] == [1, 5] and vid["frame_extraction"] == "slide" and vid["frame_stride"] == 2
    assert vid["source_fps"] == 24.0 and isinstance(vid["source_fps"], float)  # musubi rejects an int
    # each block its own cache directory, outside the run folder (reusable with --skip_cache)
    caches = {Path(img["cache_directory"]), Path(vid["cache_directory"])}
    assert len(caches) == 2 and all(ctx.settings.output_dir / "cache" in c.parents for c in caches)
    assert ctx.cache_dirs == {"images": Path(img["cache_directory"]), "videos_24fps": Path(vid["cache_directory"])}
    assert "# musubi-tuner dataset config" in ctx.dataset_toml.read_text()


def test_images_only(tmp_path, make_settings, make_ctx):
    _, doc = prepared(tmp_path, make_settings, make_ctx, {"a.png": "a", "b.jpg": "b"}, None)
    assert [set(b) - COMMON for b in doc["datasets"]] == [{"image_directory"}]


def test_videos_only(tmp_path, make_settings, make_ctx):
    _, doc = prepared(tmp_path, make_settings, make_ctx, None, {"a.mp4": ("a", 5)}, "--target_frames", "1,5")
    assert [set(b) - COMMON for b in doc["datasets"]] == [VIDEO]


def test_24_and_30_fps_videos_get_two_blocks_with_their_source_fps(tmp_path, make_settings, make_ctx):
    src = tmp_path / "in"
    make_video(src / "a.mp4", frames=9, fps=24)
    make_video(src / "b.webm", frames=11, fps=30)
    make_video(src / "c.mkv", frames=11, fps=30)
    for n in "abc":
        (src / f"{n}.txt").write_text(n)
    ctx = make_ctx(make_settings("--input_dir", str(src), "--target_frames", "1,5", "--resolution", "64x64"))
    doc = run_stages(ctx)
    fps = {Path(b["video_directory"]).name: b["source_fps"] for b in doc["datasets"]}
    assert fps == {"videos_24fps": 24.0, "videos_30fps": 30.0}


@pytest.mark.parametrize(
    "flags",
    [
        (),
        ("--trigger_word", "ohwx"),
        ("--resolution", "128x128"),
        ("--target_frames", "1"),
        ("--task", "i2v"),
        ("--fp8",),
        ("--frame_extraction", "chunk"),
    ],
)
def test_cache_directory_changes_with_what_the_cache_depends_on(tmp_path, make_settings, make_ctx, flags):
    """Videos only, so that every variant trains the same files (with --task i2v images would be left out and the
    data fingerprint alone would change the key); the key folder itself is compared."""
    _, base = prepared(tmp_path, make_settings, make_ctx, None, {"b.mp4": ("b", 5)})
    _, doc = prepared(tmp_path, make_settings, make_ctx, None, {"b.mp4": ("b", 5)}, *flags)
    key_dirs = [Path(d["datasets"][0]["cache_directory"]).parent for d in (base, doc)]
    assert [Path(d["datasets"][0]["cache_directory"]).name for d in (base, doc)] == ["videos_24fps"] * 2
    assert (key_dirs[0] == key_dirs[1]) == (flags == ())


def test_settings_that_do_not_change_the_cache_keep_it(tmp_path, make_settings, make_ctx):
    _, a = prepared(tmp_path, make_settings, make_ctx, {"a.png": "a"}, None)
    _, b = prepared(
        tmp_path,
        make_settings,
        make_ctx,
        {"a.png": "a"},
        None,
        "--rank",
        "8",
        "--num_repeats",
        "2",
        "--learning_rate",
        "3e-4",
        "--output_name",
        "other",
    )
    assert a["datasets"][0]["cache_directory"] == b["datasets"][0]["cache_directory"]
