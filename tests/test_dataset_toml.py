"""Stage 3: musubi dataset TOML for mixed, image-only, video-only and mixed-frame-rate data, read back."""

from __future__ import annotations

from pathlib import Path

import tomllib
from mediafactory import dataset_zip, make_video

from hvlora.core import pipeline
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
    # each block reads its caches through the run's view of the shared stores (RUN/cache/<block>)
    assert img["cache_directory"] == str(ctx.paths.cache_view / "images")
    assert vid["cache_directory"] == str(ctx.paths.cache_view / "videos_24fps")
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
