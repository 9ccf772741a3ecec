"""What is captioned from one media file and the key its generated caption is kept by.

An image is captioned as an image. A video is captioned from the frames that will train: the frames of every clip
musubi cuts from it (frames.py mirrors musubi's load_video and frame_extraction: `head` 0..N-1 of the 24 fps
frames, `chunk`/`slide`/`uniform` their windows, `full` the whole video up to max_frames), at most
MAX_VIDEO_FRAMES of them taken at an even step, given to the model with their true sampling rate (the average
rate of the picked frames in the source video), so that it can tell motion.

The key: the media's content key (cachestore.media_key) and every setting that changes what the model is asked
(model file and revision, processor files' revision, instruction, token limit, pixel bounds, the frames and their
rate). The same file with the same settings is never captioned twice; a changed setting generates anew.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from ..data import frames
from .spec import IMAGE_PIXELS, MAX_VIDEO_FRAMES, VIDEO_PIXELS

FORMAT = 1  # bump when what a key covers changes


@dataclass(frozen=True)
class Request:
    """One caption to generate: `kind` 'image' or 'video'; `frames` the decoded frame numbers (0-based) given to the
    model and `fps` their sampling rate (videos only); `settings` what the model is asked, as stored with the
    caption; `key` the store key (media content + settings)."""

    kind: str
    media_key: str
    prompt: str
    frames: tuple[int, ...]
    fps: float | None
    settings: dict
    key: str


def video_frames(
    frame_count: int,
    source_fps: float | None,
    clips: list[frames.Clip],
    head: bool,
    longest: int,
    target_fps: float,
):
    """(decoded frame numbers, fps) for a video of `frame_count` decoded frames whose dataset block reads it at
    `source_fps` (None: as it is) and whose clips are `clips` (positions in musubi's frame list, resampled to the
    family's `target_fps`). `head`: musubi stops reading at the resampled index `longest` (head mode). Raises
    ValueError without clips."""
    if not clips:
        raise ValueError("a video without clips trains nothing and is not captioned")
    kept = frames.kept_source_frames(frame_count, source_fps, longest if head else None, target_fps)
    positions = sorted({c.start + i for c in clips for i in range(c.frames)})
    step = math.ceil(len(positions) / MAX_VIDEO_FRAMES)
    picked = tuple(kept[p] for p in positions[::step])
    rate = source_fps or target_fps  # no frame rate known: musubi uses the frames as they are
    if len(picked) > 1:
        fps = rate * (len(picked) - 1) / (picked[-1] - picked[0])
    else:
        fps = min(rate, target_fps)
    return picked, round(fps, 6)


def make(kind: str, media_key: str, prompt: str, common: dict, frames_fps=None) -> Request:
    """The request for one file. `common`: settings shared by every request of a run (model, processor, token
    limit); `frames_fps`: video_frames' result for a video."""
    picked, fps = frames_fps if kind == "video" else ((), None)
    bounds = VIDEO_PIXELS if kind == "video" else IMAGE_PIXELS
    settings = {**common, "prompt": prompt, "pixels": [bounds.min, bounds.max]}
    if kind == "video":
        settings.update(frames=list(picked), fps=fps)
    blob = json.dumps({"format": FORMAT, "media": media_key, "kind": kind, **settings}, sort_keys=True)
    key = "g" + hashlib.sha256(blob.encode()).hexdigest()[:32]
    return Request(kind, media_key, prompt, picked, fps, settings, key)
