"""What musubi-tuner v0.3.4 will cut from each video and how it buckets every item, computed without musubi.

The rules are musubi's for every architecture; what differs (the resolution step, the target fps, the VAE's frame
step, the architecture's name in cache files) is a family's `FrameRules`. Mirrors:
- dataset/bucket.py BucketSelector: aspect-ratio buckets around the resolution's area;
- dataset/media_utils.py load_video: frame dropping to the target fps when source_fps is set, and the head mode's
  early stop;
- dataset/image_video_dataset.py VideoDataset.retrieve_latent_cache_batches: clips per frame_extraction mode, and
  the cache file names (BaseDataset.get_latent_cache_path);
- VideoDataset/ImageDataset.prepare_for_training: training buckets (width, height, frames) x num_repeats.
Item counts computed here are what musubi's latent cache writes; the pipeline checks that after caching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Clip:
    """One item musubi caches from a video: `start` frame (after resampling) and `frames` long."""

    start: int
    frames: int


def bucket_resolutions(resolution: tuple[int, int], step: int) -> list[tuple[int, int]]:
    """All (width, height) buckets for a training resolution, sorted (BucketSelector with enable_bucket; `step` is
    its architecture's RESOLUTION_STEPS)."""
    area = resolution[0] * resolution[1]
    sqrt_size = int(math.sqrt(area))
    min_size = _floor_to(sqrt_size // 2, step)
    buckets = set()
    for w in range(min_size, sqrt_size + step, step):
        h = _floor_to(area // w, step)
        buckets.add((w, h))
        buckets.add((h, w))
    return sorted(buckets)


def bucket_for(size: tuple[int, int], resolution: tuple[int, int], step: int) -> tuple[int, int]:
    """The bucket (width, height) an item of `size` is resized and center-cropped to: the nearest aspect ratio
    (BucketSelector.get_bucket_resolution; ties go to the first bucket, as numpy's argmin)."""
    buckets = bucket_resolutions(resolution, step)
    aspect = size[0] / size[1]
    errors = [abs(w / h - aspect) for w, h in buckets]
    return buckets[errors.index(min(errors))]


def is_upscaled(size: tuple[int, int], bucket: tuple[int, int]) -> bool:
    """True when musubi enlarges the item to cover its bucket (resize_image_to_bucket's scale > 1)."""
    return max(bucket[0] / size[0], bucket[1] / size[1]) > 1


def cropped_fraction(size: tuple[int, int], bucket: tuple[int, int]) -> float:
    """The share (0..1) of an item's picture that musubi's resize_image_to_bucket (dataset/media_utils.py) crops
    away: it scales the item to cover the bucket (rounding to whole pixels), then center-crops to it."""
    scale = max(bucket[0] / size[0], bucket[1] / size[1])
    width, height = int(size[0] * scale + 0.5), int(size[1] * scale + 0.5)
    return 1.0 - (bucket[0] * bucket[1]) / (width * height)


def frames_read(frame_count: int, source_fps: float | None, end_frame: int | None, target_fps: float) -> int:
    """How many frames musubi's load_video returns from a video of `frame_count` frames (see kept_source_frames)."""
    return len(kept_source_frames(frame_count, source_fps, end_frame, target_fps))


def kept_source_frames(
    frame_count: int, source_fps: float | None, end_frame: int | None, target_fps: float
) -> list[int]:
    """The decoded frames (0-based, in decoding order) that musubi's load_video keeps: position k of its frame list
    is decoded frame `result[k]`, and clips index that list.

    With source_fps, frames are dropped to target_fps (VideoDataset.TARGET_FPS_*) by a fractional index (at 24 fps a
    30 fps video keeps 4 of every 5); a slower source is not padded. With end_frame (head mode: the longest target),
    reading stops once the resampled index reaches it.
    """
    if source_fps is None:
        return list(range(frame_count if end_frame is None else min(frame_count, end_frame)))
    delta = target_fps / source_fps
    index_with_fraction, previous, kept = 0.0, -1, []
    for decoded in range(frame_count):
        index = int(index_with_fraction)
        index_with_fraction += delta
        if index == previous:
            continue
        previous = index
        if end_frame is not None and index >= end_frame:
            break
        kept.append(decoded)
    return kept


def effective_mode(mode: str, frame_sample: int) -> str:
    """musubi turns uniform with frame_sample 1 into head (with a warning)."""
    return "head" if mode == "uniform" and frame_sample == 1 else mode


def clips(
    frame_count: int,
    target_frames: tuple[int, ...],
    mode: str,
    frame_stride: int = 1,
    frame_sample: int = 1,
    max_frames: int = 129,
    *,
    frame_step: int,
) -> list[Clip]:
    """The clips musubi cuts from `frame_count` frames (already resampled and limited, see frames_read). `full` keeps
    the longest frame_step*n+1 frames (frame_step: the VAE's temporal compression).

    Duplicate clips (uniform sampling more windows than there are positions) share one cache file, so they are
    returned once. Raises ValueError for an unknown mode, as musubi does at cache time.
    """
    mode = effective_mode(mode, frame_sample)
    out: list[Clip] = []
    for t in sorted(set(target_frames)):
        if mode == "head":
            starts = [0] if frame_count >= t else []
        elif mode == "chunk":
            starts = [i for i in range(0, frame_count, t) if i + t <= frame_count]
        elif mode == "slide":
            starts = list(range(0, frame_count - t + 1, frame_stride)) if frame_count >= t else []
        elif mode == "uniform":
            starts = _linspace_int(frame_count - t, frame_sample) if frame_count >= t else []
        elif mode == "full":
            break
        else:
            raise ValueError(f"frame_extraction {mode} is not supported")
        out += [Clip(s, t) for s in starts]
    if mode == "full" and frame_count > 0:
        n = min(frame_count, max_frames)
        out.append(Clip(0, (n - 1) // frame_step * frame_step + 1))
    return list(dict.fromkeys(out))


def video_clips(
    frame_count: int,
    source_fps: float | None,
    target_frames: tuple[int, ...],
    mode: str,
    frame_stride: int = 1,
    frame_sample: int = 1,
    max_frames: int = 129,
    *,
    target_fps: float,
    frame_step: int,
) -> list[Clip]:
    """frames_read + clips: everything musubi will cache from one video."""
    head = effective_mode(mode, frame_sample) == "head"
    n = frames_read(frame_count, source_fps, max(target_frames) if head else None, target_fps)
    return clips(n, target_frames, mode, frame_stride, frame_sample, max_frames, frame_step=frame_step)


def _linspace_int(stop: int, num: int) -> list[int]:
    """np.linspace(0, stop, num, dtype=int) without numpy: i*step truncated, the last value exactly stop."""
    if num == 1:
        return [0]
    step = stop / (num - 1)
    values = [int(i * step) for i in range(num)]
    values[-1] = stop
    return values


def _floor_to(num: int, divisor: int) -> int:
    return num - num % divisor


@dataclass(frozen=True)
class FrameRules:
    """musubi's dataset rules for one architecture, and the functions above bound to them.

    `architecture`: musubi's short name, which ends every cache file name (dataset/architectures.py, e.g. hv15);
    `target_fps`: VideoDataset.TARGET_FPS_* (videos are resampled to it); `reso_step`: BucketSelector's
    RESOLUTION_STEPS_* (bucket sides are multiples of it); `frame_step`: the VAE's temporal compression (clip lengths
    are frame_step*n+1)."""

    architecture: str
    target_fps: float
    reso_step: int
    frame_step: int

    @property
    def latent_suffix(self) -> str:
        """The end of every latent cache file name (BaseDataset.get_latent_cache_path)."""
        return f"_{self.architecture}.safetensors"

    @property
    def te_suffix(self) -> str:
        """The end of every text-encoder cache file name (BaseDataset.get_text_encoder_output_cache_path)."""
        return f"_{self.architecture}_te.safetensors"

    def bucket_resolutions(self, resolution: tuple[int, int]) -> list[tuple[int, int]]:
        return bucket_resolutions(resolution, self.reso_step)

    def bucket_for(self, size: tuple[int, int], resolution: tuple[int, int]) -> tuple[int, int]:
        return bucket_for(size, resolution, self.reso_step)

    def frames_read(self, frame_count: int, source_fps: float | None, end_frame: int | None) -> int:
        return frames_read(frame_count, source_fps, end_frame, self.target_fps)

    def clips(
        self,
        frame_count: int,
        target_frames: tuple[int, ...],
        mode: str,
        frame_stride: int = 1,
        frame_sample: int = 1,
        max_frames: int = 129,
    ) -> list[Clip]:
        return clips(
            frame_count, target_frames, mode, frame_stride, frame_sample, max_frames, frame_step=self.frame_step
        )

    def video_clips(
        self,
        frame_count: int,
        source_fps: float | None,
        target_frames: tuple[int, ...],
        mode: str,
        frame_stride: int = 1,
        frame_sample: int = 1,
        max_frames: int = 129,
    ) -> list[Clip]:
        return video_clips(
            frame_count,
            source_fps,
            target_frames,
            mode,
            frame_stride,
            frame_sample,
            max_frames,
            target_fps=self.target_fps,
            frame_step=self.frame_step,
        )

    def image_cache_name(self, stem: str, size: tuple[int, int]) -> str:
        """Latent cache file of an image: named after its original size (BaseDataset.get_latent_cache_path)."""
        return f"{stem}_{size[0]:04d}x{size[1]:04d}{self.latent_suffix}"

    def video_cache_name(self, stem: str, clip: Clip, bucket: tuple[int, int]) -> str:
        """Latent cache file of a video clip: start, length and the bucket size its frames were resized to."""
        return f"{stem}_{clip.start:05d}-{clip.frames:03d}_{bucket[0]:04d}x{bucket[1]:04d}{self.latent_suffix}"

    def text_cache_name(self, stem: str) -> str:
        """Text-encoder cache file: one per media file, shared by all clips of a video."""
        return stem + self.te_suffix
