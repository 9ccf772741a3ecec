"""musubi's clip extraction, frame-rate resampling and buckets, against hand-computed cases.

The same rules were cross-checked against musubi v0.3.4's own dataset classes on 156 dataset blocks (every mode,
with and without source_fps); these cases are small enough to verify by hand.
"""

from __future__ import annotations

import pytest

from hvlora.data.frames import Clip, is_upscaled
from hvlora.families.hunyuan_video_1_5 import FRAMES  # musubi's rules bound to architecture hv15

bucket_for, bucket_resolutions, clips = FRAMES.bucket_for, FRAMES.bucket_resolutions, FRAMES.clips
frames_read, video_clips = FRAMES.frames_read, FRAMES.video_clips
image_cache_name, video_cache_name = FRAMES.image_cache_name, FRAMES.video_cache_name


def starts(cs, frames):
    return [c.start for c in cs if c.frames == frames]


def test_head_takes_the_first_frames_of_each_target():
    assert clips(30, (1, 13, 25), "head") == [Clip(0, 1), Clip(0, 13), Clip(0, 25)]
    assert clips(20, (1, 13, 25), "head") == [Clip(0, 1), Clip(0, 13)]  # 20 < 25: no 25-frame clip


def test_chunk_cuts_back_to_back_pieces_that_fit():
    # 30 frames in 9-frame chunks: 0-8, 9-17, 18-26; 27-29 is too short
    assert starts(clips(30, (9,), "chunk"), 9) == [0, 9, 18]
    assert clips(8, (9,), "chunk") == []


def test_slide_moves_by_frame_stride():
    # windows of 5 in 12 frames, stride 3: starts 0, 3, 6 (9 + 5 > 12)
    assert starts(clips(12, (5,), "slide", frame_stride=3), 5) == [0, 3, 6]
    assert starts(clips(12, (5,), "slide"), 5) == list(range(8))


def test_uniform_spreads_frame_sample_windows():
    # linspace(0, 30 - 5 = 25, 4) = 0, 8.33, 16.67, 25 -> 0, 8, 16, 25
    assert starts(clips(30, (5,), "uniform", frame_sample=4), 5) == [0, 8, 16, 25]
    # more windows than positions: duplicates share one cache file, so they count once
    assert starts(clips(6, (5,), "uniform", frame_sample=4), 5) == [0, 1]


def test_uniform_with_one_sample_is_head():
    assert clips(30, (5, 9), "uniform", frame_sample=1) == clips(30, (5, 9), "head")


def test_full_takes_everything_up_to_max_frames_as_4n_plus_1():
    assert clips(30, (1,), "full") == [Clip(0, 29)]  # 30 -> 29 = 4*7+1
    assert clips(200, (1,), "full", max_frames=129) == [Clip(0, 129)]
    assert clips(200, (1,), "full", max_frames=100) == [Clip(0, 97)]


def test_unknown_mode():
    with pytest.raises(ValueError, match="frame_extraction random is not supported"):
        clips(10, (1,), "random")


def test_resampling_30_fps_to_24_keeps_4_of_5_frames():
    assert frames_read(30, 30.0, None) == 24
    assert frames_read(60, 30.0, None) == 48
    assert frames_read(10, 24.0, None) == 10
    # 60 -> 24 fps keeps 2 of 5 frames: 48 frames (0.8 s) give indices 0..18 at 24 fps
    assert frames_read(48, 60.0, None) == 19


def test_slow_sources_are_not_padded():
    # 12 fps: indices step by 2 (0, 2, 4, ...); head stops at index >= 25, so 13 frames remain of 48
    assert frames_read(48, 12.0, 25) == 13
    assert video_clips(48, 12.0, (1, 13, 25), "head") == [Clip(0, 1), Clip(0, 13)]


def test_head_reads_only_up_to_the_longest_target():
    assert frames_read(100, None, 25) == 25
    assert frames_read(100, 30.0, 25) == 25


def test_a_30fps_video_yields_fewer_long_clips():
    # 41 frames at 30 fps are 33 frames at 24 fps: 33 >= 25 (head) but < 45
    assert video_clips(41, 30.0, (25,), "head") == [Clip(0, 25)]
    assert video_clips(41, 30.0, (45,), "head") == []
    assert video_clips(41, None, (45,), "head") == []


def test_buckets_around_the_resolution_area():
    buckets = bucket_resolutions((64, 64))
    assert (64, 64) in buckets and (80, 48) in buckets and (48, 80) in buckets
    assert all(w % 16 == 0 and h % 16 == 0 for w, h in buckets)
    assert bucket_for((256, 160), (64, 64)) == (80, 48)  # aspect 1.6: 80x48 (1.67) beats 64x64 (1.0)
    assert bucket_for((200, 150), (64, 64)) == (64, 64)  # 1.33 sits between; 1.0 is a hair closer
    assert bucket_for((192, 192), (64, 64)) == (64, 64)
    assert bucket_for((1920, 1080), (960, 544)) == (960, 544)
    assert bucket_for((1080, 1920), (960, 544)) == (544, 960)


def test_upscaling():
    assert is_upscaled((80, 48), (928, 560)) and not is_upscaled((1920, 1080), (960, 544))


def test_cache_names():
    assert image_cache_name("stills__cat", (200, 150)) == "stills__cat_0200x0150_hv15.safetensors"
    assert video_cache_name("clip", Clip(9, 5), (80, 48)) == "clip_00009-005_0080x0048_hv15.safetensors"
