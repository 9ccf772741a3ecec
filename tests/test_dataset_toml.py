"""Stage 3: musubi dataset TOML for mixed, image-only and video-only data, read back with tomllib."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hvlora.stages import dataset_toml, extract
from mediafactory import dataset_zip

COMMON = {"resolution", "enable_bucket", "bucket_no_upscale", "caption_extension", "batch_size", "num_repeats",
          "cache_directory"}


def prepared(tmp_path, make_settings, make_ctx, images, videos, *flags):
    dataset_zip(tmp_path, tmp_path / "data" / "d.zip", images=images, videos=videos)
    ctx = make_ctx(make_settings(*flags))
    extract.run(ctx)
    dataset_toml.run(ctx)
    with open(ctx.dataset_toml, "rb") as f:
        return ctx, tomllib.load(f)


def test_mixed_zip_gets_an_image_and_a_video_block(tmp_path, make_settings, make_ctx):
    ctx, doc = prepared(tmp_path, make_settings, make_ctx, {"i/a.png": "a"}, {"v/b.mp4": ("b", 9)},
                        "--resolution", "512x288", "--target_frames", "1,5", "--frame_extraction", "slide",
                        "--num_repeats", "3")
    assert set(doc) == {"datasets"} and len(doc["datasets"]) == 2
    img, vid = doc["datasets"]
    assert set(img) == COMMON | {"image_directory"}
    assert set(vid) == COMMON | {"video_directory", "target_frames", "frame_extraction"}
    assert img["image_directory"] == str(ctx.dataset.image_dir)
    assert vid["video_directory"] == str(ctx.dataset.video_dir)
    for block in (img, vid):
        assert block["resolution"] == [512, 288] and block["enable_bucket"] is True
        assert block["caption_extension"] == ".txt" and block["batch_size"] == 1 and block["num_repeats"] == 3
    assert vid["target_frames"] == [1, 5] and vid["frame_extraction"] == "slide"
    # each block its own cache directory, outside the run folder (reusable with --skip_cache)
    caches = {Path(img["cache_directory"]), Path(vid["cache_directory"])}
    assert len(caches) == 2 and all(ctx.settings.output_dir / "cache" in c.parents for c in caches)
    assert ctx.cache_dirs == {"images": Path(img["cache_directory"]), "videos": Path(vid["cache_directory"])}


def test_images_only(tmp_path, make_settings, make_ctx):
    _, doc = prepared(tmp_path, make_settings, make_ctx, {"a.png": "a", "b.jpg": "b"}, None)
    assert [set(b) - COMMON for b in doc["datasets"]] == [{"image_directory"}]


def test_videos_only(tmp_path, make_settings, make_ctx):
    _, doc = prepared(tmp_path, make_settings, make_ctx, None, {"a.mp4": ("a", 5)})
    assert [set(b) - COMMON for b in doc["datasets"]] == [{"video_directory", "target_frames", "frame_extraction"}]


@pytest.mark.parametrize("flags", [(), ("--trigger_word", "ohwx"), ("--resolution", "512x512"),
                                   ("--target_frames", "1,5"), ("--task", "i2v"), ("--fp8",)])
def test_cache_directory_changes_with_what_the_cache_depends_on(tmp_path, make_settings, make_ctx, flags):
    base_ctx, base = prepared(tmp_path, make_settings, make_ctx, {"a.png": "a"}, {"b.mp4": ("b", 5)})
    ctx, doc = prepared(tmp_path, make_settings, make_ctx, {"a.png": "a"}, {"b.mp4": ("b", 5)}, *flags)
    same = doc["datasets"][0]["cache_directory"] == base["datasets"][0]["cache_directory"]
    assert same == (flags == ())


def test_settings_that_do_not_change_the_cache_keep_it(tmp_path, make_settings, make_ctx):
    _, a = prepared(tmp_path, make_settings, make_ctx, {"a.png": "a"}, None)
    _, b = prepared(tmp_path, make_settings, make_ctx, {"a.png": "a"}, None, "--rank", "8", "--num_repeats", "2",
                    "--learning_rate", "3e-4", "--output_name", "other")
    assert a["datasets"][0]["cache_directory"] == b["datasets"][0]["cache_directory"]
