"""Media discovery, decoding and bucketing as musubi does it: dataset/media_utils.py and dataset/bucket.py.

Only what decides file names and tensor shapes is reproduced: which files are found, each image's size, how many
frames a video yields (with musubi's start/end frame and source_fps frame dropping) and its first frame's size,
and the bucket resolution. Pixels are never resized: resize_image_to_bucket always ends at exactly the bucket size.
"""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass

import av

# media_utils.IMAGE_EXTENSIONS / VIDEO_EXTENSIONS: lower- and upper-case forms only (".Png" is not found).
# (.jxl is added there only when jxlpy/pillow_jxl is installed; it is not here.)
IMAGE_EXTENSIONS = [
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".bmp",
    ".PNG",
    ".JPG",
    ".JPEG",
    ".WEBP",
    ".BMP",
    ".avif",
    ".AVIF",
]
_VIDEO_LOWER = [".mp4", ".webm", ".avi", ".mkv", ".mov", ".flv", ".wmv", ".m4v", ".mpg", ".mpeg"]
VIDEO_EXTENSIONS = _VIDEO_LOWER + [e.upper() for e in _VIDEO_LOWER]

RESOLUTION_STEPS_HV15 = 16  # bucket.BucketSelector.RESOLUTION_STEPS_HUNYUAN_VIDEO_1_5


def glob_images(directory: str, caption_extension: str | None = None) -> list[str]:
    """media_utils.glob_images: non-recursive; with a caption extension, only images whose caption file (same stem)
    exists are kept, silently."""
    paths: set[str] = set()
    for ext in IMAGE_EXTENSIONS:
        paths.update(glob.glob(os.path.join(glob.escape(directory), "*" + ext)))
    if caption_extension is not None:
        captions = glob.glob(os.path.join(glob.escape(directory), "*" + caption_extension))
        stems = {os.path.splitext(os.path.basename(c))[0] for c in captions}
        paths = {p for p in paths if os.path.splitext(os.path.basename(p))[0] in stems}
    return sorted(paths)


def glob_videos(directory: str) -> list[str]:
    """media_utils.glob_videos: non-recursive, no caption filter (a missing caption fails later)."""
    paths: set[str] = set()
    for ext in VIDEO_EXTENSIONS:
        paths.update(glob.glob(os.path.join(glob.escape(directory), "*" + ext)))
    return sorted(paths)


def divisible_by(num: int, divisor: int) -> int:
    return num - num % divisor


class BucketSelector:
    """bucket.BucketSelector for HV1.5 (steps of 16): aspect-ratio buckets of about the resolution's area."""

    def __init__(self, resolution: tuple[int, int], enable_bucket: bool = True, no_upscale: bool = False):
        self.bucket_area = resolution[0] * resolution[1]
        self.reso_steps = RESOLUTION_STEPS_HV15
        if not enable_bucket:
            self.buckets = [tuple(resolution)]
            self.no_upscale = False
        else:
            self.no_upscale = no_upscale
            sqrt_size = int(math.sqrt(self.bucket_area))
            min_size = divisible_by(sqrt_size // 2, self.reso_steps)
            buckets = set()
            for w in range(min_size, sqrt_size + self.reso_steps, self.reso_steps):
                h = divisible_by(self.bucket_area // w, self.reso_steps)
                buckets.update({(w, h), (h, w)})
            self.buckets = sorted(buckets)
        self.aspect_ratios = [w / h for w, h in self.buckets]

    def get_bucket_resolution(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the bucket: the first bucket with the nearest aspect ratio (numpy argmin's tie rule),
        or with bucket_no_upscale and a smaller image, the image size floored to steps of 16."""
        w, h = image_size
        if self.no_upscale and w * h <= self.bucket_area:
            return divisible_by(w, self.reso_steps), divisible_by(h, self.reso_steps)
        ar = w / h
        errors = [abs(r - ar) for r in self.aspect_ratios]
        return self.buckets[errors.index(min(errors))]


def image_size(path: str) -> tuple[int, int]:
    """(width, height) of an image as stored (PIL's Image.size: no EXIF rotation), read with PyAV."""
    with av.open(path) as container:
        for frame in container.decode(video=0):
            return frame.width, frame.height
    raise ValueError(f"no image in {path}")


@dataclass
class DecodedVideo:
    frame_count: int
    first_size: tuple[int, int] | None  # (width, height) of the first kept frame


def decode_video(
    path: str, start_frame: int | None, end_frame: int | None, source_fps: float | None, target_fps: float | None
) -> DecodedVideo:
    """media_utils.load_video without the pixels: which frames are kept. Without source_fps every decoded frame i
    is kept when start_frame <= i < end_frame. With source_fps, frames are first mapped to target-fps indices
    (index advances by target_fps/source_fps per decoded frame; a repeated index drops the frame) and start/end
    apply to those indices."""
    count, first = 0, None
    with av.open(path) as container:
        if source_fps is None or target_fps is None:
            for i, frame in enumerate(container.decode(video=0)):
                if start_frame is not None and i < start_frame:
                    continue
                if end_frame is not None and i >= end_frame:
                    break
                first = first or (frame.width, frame.height)
                count += 1
        else:
            delta = target_fps / source_fps
            position, previous = 0.0, -1
            for frame in container.decode(video=0):
                index = int(position)
                position += delta
                if index == previous:
                    continue
                previous = index
                if start_frame is not None and index < start_frame:
                    continue
                if end_frame is not None and index >= end_frame:
                    break
                first = first or (frame.width, frame.height)
                count += 1
    return DecodedVideo(count, first)
