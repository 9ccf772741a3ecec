"""The dataset config and datasets as musubi v0.3.4 reads them, for architecture hv15 (or k5: use_architecture).

Mirrors dataset/config_utils.py (load_user_config, ConfigSanitizer's voluptuous schema with its error texts,
BlueprintGenerator's value precedence dataset > general > argparse namespace > dataclass defaults,
generate_dataset_group_by_blueprint), dataset/datasources.py (which files and captions are read, and when) and
dataset/image_video_dataset.py (ImageDataset/VideoDataset: cache file names, clip extraction in
retrieve_latent_cache_batches, prepare_for_training's buckets). Work is done sequentially instead of in a thread
pool: the batches come out in another order, but the same files with the same names and shapes result.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from . import _media

logger = logging.getLogger("musubi_tuner.dataset.config_utils")
ds_logger = logging.getLogger("musubi_tuner.dataset.image_video_dataset")
src_logger = logging.getLogger("musubi_tuner.dataset.datasources")
bucket_logger = logging.getLogger("musubi_tuner.dataset.bucket")

ARCHITECTURE = "hv15"  # dataset/architectures.py ARCHITECTURE_HUNYUAN_VIDEO_1_5
ARCHITECTURE_FULL = "hunyuan_video_1_5"
TARGET_FPS = 24.0  # VideoDataset.TARGET_FPS_HUNYUAN_VIDEO_1_5
VAE_FRAME_STRIDE = 4


def use_architecture(short: str, full: str) -> None:
    """Read datasets as another architecture's scripts do (one per process): its cache-name suffix `short` and its
    full name `full`. Only architectures with HV1.5's 24 fps target and 16-pixel buckets are simulated (Kandinsky 5:
    "k5", VideoDataset.TARGET_FPS_HUNYUAN, BucketSelector.RESOLUTION_STEPS_KANDINSKY5 = 16)."""
    global ARCHITECTURE, ARCHITECTURE_FULL
    ARCHITECTURE, ARCHITECTURE_FULL = short, full


# ---------------------------------------------------------------------------------------------------------------
# config file and schema (config_utils.load_user_config, ConfigSanitizer)


class MultipleInvalid(Exception):
    """What voluptuous raises: str() is the first error; .errors holds (message, path) for all of them."""

    def __init__(self, errors: list[tuple[str, list]]):
        self.errors = errors
        super().__init__(errors[0][0])


def _where(path: list) -> str:
    return "data" + "".join(f"[{p!r}]" for p in path)


DEPRECATED_KEYS = {
    "flux_kontext_no_resize_control": "no_resize_control",
    "qwen_image_edit_no_resize_control": "no_resize_control",
    "qwen_image_edit_control_resolution": "control_resolution",
}


def load_user_config(file: str | os.PathLike) -> dict:
    """config_utils.load_user_config: .toml or .json by suffix (any case); deprecated keys renamed with a warning.
    (musubi parses TOML with the lenient `toml` package; tomllib is stricter on broken files.)"""
    file = Path(file)
    if not file.is_file():
        raise ValueError(f"file not found / ファイルが見つかりません: {file}")
    name = file.name.lower()
    if name.endswith(".json"):
        config = json.loads(file.read_text(encoding="utf-8"))
    elif name.endswith(".toml"):
        with open(file, "rb") as f:
            config = tomllib.load(f)
    else:
        raise ValueError(f"not supported config file format / 対応していない設定ファイルの形式です: {file}")
    datasets = config.get("datasets", [])
    sections = [("general", config.get("general"))]
    sections += [(f"datasets[{i}]", d) for i, d in enumerate(datasets)] if isinstance(datasets, list) else []
    for where, section in sections:
        if not isinstance(section, dict):
            continue
        for old, new in DEPRECATED_KEYS.items():
            if old in section:
                if new in section:
                    logger.warning(
                        f"Deprecated config key '{old}' is ignored because '{new}' is already set in {where}."
                    )
                else:
                    section[new] = section[old]
                    logger.warning(f"Deprecated config key '{old}' found in {where}; use '{new}' instead.")
                del section[old]
    return config


def _scalar_or_pair_of_int(value, path, errors) -> Any:
    """ConfigSanitizer.__validate_and_convert_scalar_or_twodim(int): N -> (N, N); [W, H] -> (W, H)."""
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return tuple(value)
    errors.append(("expected int for dictionary value @ " + _where(path), path))
    return value


def _typed(klass: type) -> Callable:
    """A voluptuous type check: isinstance (so a bool passes as an int, an int fails as a float)."""

    def check(value, path, errors):
        if not isinstance(value, klass):
            errors.append((f"expected {klass.__name__} for dictionary value @ {_where(path)}", path))
        return value

    return check


def _list_of(klass: type) -> Callable:
    """A voluptuous [klass] check: must be a list; each element is type-checked."""

    def check(value, path, errors):
        if not isinstance(value, list):
            errors.append((f"expected a list for dictionary value @ {_where(path)}", path))
            return value
        for i, v in enumerate(value):
            if not isinstance(v, klass):
                errors.append((f"expected {klass.__name__} @ {_where(path + [i])}", path + [i]))
        return value

    return check


ASCENDABLE = {
    "caption_extension": _typed(str),
    "batch_size": _typed(int),
    "num_repeats": _typed(int),
    "resolution": _scalar_or_pair_of_int,
    "enable_bucket": _typed(bool),
    "bucket_no_upscale": _typed(bool),
}
IMAGE_DISTINCT = {
    "image_directory": _typed(str),
    "image_jsonl_file": _typed(str),
    "cache_directory": _typed(str),
    "control_directory": _typed(str),
    "multiple_target": _typed(bool),
    "fp_latent_window_size": _typed(int),
    "fp_1f_clean_indices": _list_of(int),
    "fp_1f_target_index": _typed(int),
    "fp_1f_no_post": _typed(bool),
    "no_resize_control": _typed(bool),
    "control_resolution": _scalar_or_pair_of_int,
}
VIDEO_DISTINCT = {
    "video_directory": _typed(str),
    "video_jsonl_file": _typed(str),
    "control_directory": _typed(str),
    "target_frames": _list_of(int),
    "frame_extraction": _typed(str),
    "frame_stride": _typed(int),
    "frame_sample": _typed(int),
    "max_frames": _typed(int),
    "cache_directory": _typed(str),
    "source_fps": _typed(float),
    "fp_latent_window_size": _typed(int),
}
IMAGE_SCHEMA = {**ASCENDABLE, **IMAGE_DISTINCT}
VIDEO_SCHEMA = {**ASCENDABLE, **VIDEO_DISTINCT}


def _check_mapping(data: dict, schema: dict, path: list, errors: list) -> dict:
    out = {}
    for key, value in data.items():
        if key not in schema:
            errors.append((f"extra keys not allowed @ {_where(path + [key])}", path + [key]))
            continue
        out[key] = schema[key](value, path + [key], errors)
    return out


def _check_dataset(value, path, errors):
    # `in` on a non-dict entry raises TypeError, as musubi's validate_flex_dataset does
    schema = VIDEO_SCHEMA if ("video_directory" in value or "video_jsonl_file" in value) else IMAGE_SCHEMA
    if not isinstance(value, dict):
        errors.append((f"expected a dictionary @ {_where(path)}", path))
        return value
    return _check_mapping(value, schema, path, errors)


def sanitize_user_config(config: dict) -> dict:
    """ConfigSanitizer.sanitize_user_config: {"general": {...}, "datasets": [...]}, unknown keys rejected at every
    level, strict isinstance types; all problems are collected and raised as one MultipleInvalid."""
    errors: list = []
    out: dict = {}
    for key, value in config.items():
        if key == "general":
            if not isinstance(value, dict):
                errors.append((f"expected a dictionary for dictionary value @ {_where([key])}", [key]))
            else:
                out[key] = _check_mapping(value, ASCENDABLE, [key], errors)
        elif key == "datasets":
            if not isinstance(value, list):
                errors.append((f"expected a list for dictionary value @ {_where([key])}", [key]))
            else:
                out[key] = [_check_dataset(d, [key, i], errors) for i, d in enumerate(value)]
        else:
            errors.append((f"extra keys not allowed @ {_where([key])}", [key]))
    if errors:
        logger.error("Invalid user config / ユーザ設定の形式が正しくないようです")
        raise MultipleInvalid(errors)
    return out


# ---------------------------------------------------------------------------------------------------------------
# blueprint (config_utils dataclasses and BlueprintGenerator)


@dataclass
class BaseParams:
    resolution: tuple = (960, 544)
    enable_bucket: bool = False
    bucket_no_upscale: bool = False
    caption_extension: str | None = None
    batch_size: int = 1
    num_repeats: int = 1
    cache_directory: str | None = None


@dataclass
class ImageParams(BaseParams):
    image_directory: str | None = None
    image_jsonl_file: str | None = None
    control_directory: str | None = None


@dataclass
class VideoParams(BaseParams):
    video_directory: str | None = None
    video_jsonl_file: str | None = None
    control_directory: str | None = None
    target_frames: tuple = (1,)
    frame_extraction: str | None = "head"
    frame_stride: int | None = 1
    frame_sample: int | None = 1
    max_frames: int | None = 129
    source_fps: float | None = None


def _params(klass, fallbacks: list[dict]):
    """BlueprintGenerator.generate_params_by_fallbacks: the first non-None value wins, else the dataclass default."""
    values = {}
    for f in fields(klass):
        values[f.name] = next((d[f.name] for d in fallbacks if d.get(f.name) is not None), getattr(klass(), f.name))
    return klass(**values)


# ---------------------------------------------------------------------------------------------------------------
# items and datasets (image_video_dataset.py, datasources.py)


@dataclass
class Item:
    """image_video_dataset.ItemInfo, reduced to what the stand-in needs."""

    item_key: str
    caption: str
    original_size: tuple[int, int]
    bucket: tuple
    frame_count: int | None = None
    latent_cache_path: str | None = None
    text_encoder_output_cache_path: str | None = None


def _read_caption(media_path: str, caption_extension: str | None) -> str:
    """datasources.*DirectoryDatasource.get_caption: the whole file, stripped. Without a caption extension musubi
    opens "" (FileNotFoundError), as here."""
    caption_path = os.path.splitext(media_path)[0] + caption_extension if caption_extension else ""
    with open(caption_path, encoding="utf-8") as f:
        return f.read().strip()


def _read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _chunks(groups: dict[tuple, list[Item]], batch_size: int) -> Iterator[tuple[tuple, list[Item]]]:
    for key, items in groups.items():
        for i in range(0, len(items), batch_size):
            yield key, items[i : i + batch_size]


class BaseDataset:
    """image_video_dataset.BaseDataset: cache paths and globs."""

    is_image = True

    def __init__(self, p: BaseParams):
        self.resolution = tuple(p.resolution)
        self.enable_bucket = p.enable_bucket
        self.bucket_no_upscale = p.bucket_no_upscale if p.enable_bucket else False
        self.caption_extension = p.caption_extension
        self.batch_size = p.batch_size
        self.num_repeats = p.num_repeats
        self.cache_directory = p.cache_directory
        self.buckets: dict[tuple, list[Item]] = {}
        self.num_train_items = 0

    def latent_cache_path(self, item_key: str, size: tuple[int, int]) -> str:
        w, h = size
        stem = os.path.splitext(os.path.basename(item_key))[0]
        assert self.cache_directory is not None, "cache_directory is required / cache_directoryは必須です"
        return os.path.join(self.cache_directory, f"{stem}_{w:04d}x{h:04d}_{ARCHITECTURE}.safetensors")

    def text_encoder_cache_path(self, item_key: str) -> str:
        stem = os.path.splitext(os.path.basename(item_key))[0]
        assert self.cache_directory is not None, "cache_directory is required / cache_directoryは必須です"
        return os.path.join(self.cache_directory, f"{stem}_{ARCHITECTURE}_te.safetensors")

    def all_latent_cache_files(self) -> list[str]:
        # "*_hv15.safetensors" does not match "*_hv15_te.safetensors"
        return glob.glob(os.path.join(self.cache_directory, f"*_{ARCHITECTURE}.safetensors"))

    def all_text_encoder_cache_files(self) -> list[str]:
        return glob.glob(os.path.join(self.cache_directory, f"*_{ARCHITECTURE}_te.safetensors"))

    def captions(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def text_encoder_batches(self) -> Iterator[list[Item]]:
        """BaseDataset._default_retrieve_text_encoder_output_cache_batches: captions only, batch_size per batch."""
        items = []
        for key, caption in self.captions():
            item = Item(key, caption, (0, 0), (0, 0))
            item.text_encoder_output_cache_path = self.text_encoder_cache_path(key)
            items.append(item)
        for i in range(0, len(items), self.batch_size):
            yield items[i : i + self.batch_size]

    def _group(self, cache_file: str) -> tuple | None:
        raise NotImplementedError

    def prepare_for_training(self) -> None:
        """prepare_for_training: every latent cache file whose `_te` file exists becomes an item, num_repeats times,
        grouped into buckets; a latent without its `_te` file is skipped with a warning."""
        selector = _media.BucketSelector(self.resolution, self.enable_bucket, self.bucket_no_upscale)
        buckets: dict[tuple, list[Item]] = {}
        for cache_file in self.all_latent_cache_files():
            tokens = os.path.basename(cache_file).split("_")
            width, height = map(int, tokens[-2].split("x"))
            if self.is_image:
                item_key, frames = "_".join(tokens[:-2]), None
            else:
                _, frames = tokens[-3].split("-")[:2]  # "00000-005" (a malformed name raises, as in musubi)
                frames = int(frames)
                item_key = "_".join(tokens[:-3])
            te_file = os.path.join(self.cache_directory, f"{item_key}_{ARCHITECTURE}_te.safetensors")
            if not os.path.exists(te_file):
                ds_logger.warning(f"Text encoder output cache file not found: {te_file}")
                continue
            bucket = selector.get_bucket_resolution((width, height))
            if frames is not None:
                bucket = (*bucket, frames)
            item = Item(item_key, "", (width, height), bucket, frames, cache_file, te_file)
            buckets.setdefault(bucket, []).extend([item] * self.num_repeats)
        self.buckets = dict(sorted(buckets.items()))
        for bucket, items in self.buckets.items():
            bucket_logger.info(f"bucket: {bucket}, count: {len(items)}")
        bucket_logger.info(f"total batches: {self.num_batches()}")
        self.num_train_items = sum(len(v) for v in self.buckets.values())

    def num_batches(self) -> int:
        """BucketBatchManager's length: per bucket ceil(items / batch_size)."""
        return sum(math.ceil(len(v) / self.batch_size) for v in self.buckets.values())

    def batches(self) -> list[list[Item]]:
        return [items for _, items in _chunks(self.buckets, self.batch_size)]

    def describe(self, index: int) -> str:
        """The "[Dataset i]" block generate_dataset_group_by_blueprint logs (common part)."""
        return (
            f"[Dataset {index}]\n  is_image_dataset: {self.is_image}\n  resolution: {self.resolution}\n"
            f"  batch_size: {self.batch_size}\n  num_repeats: {self.num_repeats}\n"
            f'  caption_extension: "{self.caption_extension}"\n  enable_bucket: {self.enable_bucket}\n'
            f'  bucket_no_upscale: {self.bucket_no_upscale}\n  cache_directory: "{self.cache_directory}"\n'
            f"  debug_dataset: False\n" + "".join(f"    {k}: {v}\n" for k, v in self.describe_extra().items()) + "\n"
        )

    def describe_extra(self) -> dict:
        return {}

    def metadata(self) -> dict:
        """BaseDataset.get_metadata (for ss_datasets)."""
        return {
            "resolution": list(self.resolution),
            "caption_extension": self.caption_extension,
            "batch_size_per_device": self.batch_size,
            "num_repeats": self.num_repeats,
            "enable_bucket": bool(self.enable_bucket),
            "bucket_no_upscale": bool(self.bucket_no_upscale),
        }


class ImageDataset(BaseDataset):
    """image_video_dataset.ImageDataset with ImageDirectoryDatasource / ImageJsonlDatasource."""

    is_image = True

    def __init__(self, p: ImageParams):
        super().__init__(p)
        self.image_directory, self.image_jsonl_file = p.image_directory, p.image_jsonl_file
        if p.image_directory is not None:
            src_logger.info(f"glob images in {p.image_directory}")
            self.paths = _media.glob_images(p.image_directory, p.caption_extension)
            src_logger.info(f"found {len(self.paths)} images")
            self.jsonl = None
        elif p.image_jsonl_file is not None:
            self.jsonl = _read_jsonl(p.image_jsonl_file)
            self.paths = [d.get("image_path", d.get("image_path_0")) for d in self.jsonl]
        else:
            raise ValueError("image_directory or image_jsonl_file must be specified")
        if self.cache_directory is None:
            self.cache_directory = self.image_directory

    def describe_extra(self) -> dict:
        return {"image_directory": f'"{self.image_directory}"', "image_jsonl_file": f'"{self.image_jsonl_file}"'}

    def captions(self) -> list[tuple[str, str]]:
        if self.jsonl is not None:
            return [(path, d["caption"]) for path, d in zip(self.paths, self.jsonl)]
        return [(path, _read_caption(path, self.caption_extension)) for path in self.paths]

    def latent_batches(self) -> Iterator[tuple[tuple, list[Item]]]:
        """retrieve_latent_cache_batches: the image is opened first, then the caption read; the cache name carries
        the ORIGINAL size, the batch key the bucket size."""
        selector = _media.BucketSelector(self.resolution, self.enable_bucket, self.bucket_no_upscale)
        groups: dict[tuple, list[Item]] = {}
        captions = None if self.jsonl is None else [d["caption"] for d in self.jsonl]
        for i, path in enumerate(self.paths):
            size = _media.image_size(path)
            caption = captions[i] if captions is not None else _read_caption(path, self.caption_extension)
            bucket = selector.get_bucket_resolution(size)
            item = Item(path, caption, size, bucket, None, self.latent_cache_path(path, size))
            groups.setdefault(bucket, []).append(item)
        yield from _chunks(groups, self.batch_size)

    def metadata(self) -> dict:
        m = super().metadata()
        if self.image_directory is not None:
            m["image_directory"] = os.path.basename(self.image_directory)
        if self.image_jsonl_file is not None:
            m["image_jsonl_file"] = os.path.basename(self.image_jsonl_file)
        m["has_control"] = False
        return m


class VideoDataset(BaseDataset):
    """image_video_dataset.VideoDataset with VideoDirectoryDatasource / VideoJsonlDatasource."""

    is_image = False

    def __init__(self, p: VideoParams):
        super().__init__(p)
        self.video_directory, self.video_jsonl_file = p.video_directory, p.video_jsonl_file
        self.frame_extraction, self.frame_stride = p.frame_extraction, p.frame_stride
        self.frame_sample, self.max_frames, self.source_fps = p.frame_sample, p.max_frames, p.source_fps
        self.target_frames = self._round_target_frames(p.target_frames)
        if p.video_directory is not None:
            src_logger.info(f"glob videos in {p.video_directory}")
            self.paths = _media.glob_videos(p.video_directory)
            src_logger.info(f"found {len(self.paths)} videos")
            self.jsonl = None
        elif p.video_jsonl_file is not None:
            self.jsonl = _read_jsonl(p.video_jsonl_file)
            self.paths = [d["video_path"] for d in self.jsonl]
        else:  # musubi sets no datasource and fails on the next line that uses it
            raise AttributeError("'VideoDataset' object has no attribute 'datasource'")
        self.start_frame = self.end_frame = None
        if self.frame_extraction == "uniform" and self.frame_sample == 1:
            self.frame_extraction = "head"
            ds_logger.warning(
                "frame_sample is set to 1 for frame_extraction=uniform. frame_extraction is changed to head."
            )
        if self.frame_extraction == "head":  # only the first max(target_frames) frames are decoded
            self.start_frame, self.end_frame = 0, max(self.target_frames)
        if self.cache_directory is None:
            self.cache_directory = self.video_directory

    def describe_extra(self) -> dict:
        return {
            "video_directory": f'"{self.video_directory}"',
            "video_jsonl_file": f'"{self.video_jsonl_file}"',
            "target_frames": self.target_frames,
            "frame_extraction": self.frame_extraction,
            "frame_stride": self.frame_stride,
            "frame_sample": self.frame_sample,
            "max_frames": self.max_frames,
            "source_fps": self.source_fps,
        }

    @staticmethod
    def _round_target_frames(target_frames) -> tuple:
        """target_frames: deduplicated, sorted, each rounded down to 4n+1 (with a warning when changed)."""
        if target_frames is None:
            return None
        tf = sorted(set(target_frames))
        rounded = sorted({(f - 1) // VAE_FRAME_STRIDE * VAE_FRAME_STRIDE + 1 for f in tf})
        if tf != rounded:
            ds_logger.warning(f"target_frames are rounded to {rounded}")
        return tuple(rounded)

    def captions(self) -> list[tuple[str, str]]:
        if self.jsonl is not None:
            return [(path, d["caption"]) for path, d in zip(self.paths, self.jsonl)]
        return [(path, _read_caption(path, self.caption_extension)) for path in self.paths]

    def _decode(self, path: str) -> _media.DecodedVideo:
        """media_utils.load_video: a file is decoded with PyAV; a directory (JSONL only) is a sorted frame list."""
        fps = (self.source_fps, TARGET_FPS) if self.source_fps is not None else (None, None)
        if os.path.isfile(path):
            return _media.decode_video(path, self.start_frame, self.end_frame, *fps)
        frames = _media.glob_images(path)
        kept = _frame_indices(len(frames), self.start_frame, self.end_frame, *fps)
        return _media.DecodedVideo(len(kept), _media.image_size(frames[kept[0]]) if kept else None)

    def crop_positions(self, frame_count: int) -> list[tuple[int, int]]:
        """The (start, frames) clips of one video, per frame_extraction (retrieve_latent_cache_batches)."""
        out: list[tuple[int, int]] = []
        mode = self.frame_extraction
        if mode == "head":
            out = [(0, t) for t in self.target_frames if frame_count >= t]
        elif mode == "chunk":
            out = [(i, t) for t in self.target_frames for i in range(0, frame_count, t) if i + t <= frame_count]
        elif mode == "slide":
            out = [
                (i, t)
                for t in self.target_frames
                if frame_count >= t
                for i in range(0, frame_count - t + 1, self.frame_stride)
            ]
        elif mode == "uniform":
            out = [
                (int(i), t)
                for t in self.target_frames
                if frame_count >= t
                for i in np.linspace(0, frame_count - t, self.frame_sample, dtype=int)
            ]
        elif mode == "full":
            t = min(frame_count, self.max_frames)
            out = [(0, (t - 1) // VAE_FRAME_STRIDE * VAE_FRAME_STRIDE + 1)]
        else:
            raise ValueError(f"frame_extraction {mode} is not supported")
        return out

    def latent_batches(self) -> Iterator[tuple[tuple, list[Item]]]:
        """retrieve_latent_cache_batches: frames are decoded (bucket from the first frame, always aspect buckets,
        whatever enable_bucket says), then the caption is read (a missing one raises FileNotFoundError); the cache
        name carries the clip start, length and the bucket size."""
        selector = _media.BucketSelector(self.resolution)  # enable_bucket=True, no_upscale=False: as musubi
        groups: dict[tuple, list[Item]] = {}
        for i, path in enumerate(self.paths):
            video = self._decode(path)
            if self.jsonl is not None:
                caption = self.jsonl[i]["caption"]
            else:
                caption = _read_caption(path, self.caption_extension)
            if video.frame_count == 0:
                raise IndexError("list index out of range")  # musubi reads video[0]
            # load_video resizes every frame to the first frame's bucket; fetch_and_resize then buckets that size
            bucket = selector.get_bucket_resolution(selector.get_bucket_resolution(video.first_size))
            body, ext = os.path.splitext(path)
            for start, frames in self.crop_positions(video.frame_count):
                key = f"{body}_{start:05d}-{frames:03d}{ext}"
                item = Item(key, caption, bucket, (*bucket, frames), frames, self.latent_cache_path(key, bucket))
                groups.setdefault((*bucket, frames), []).append(item)
        yield from _chunks(groups, self.batch_size)

    def metadata(self) -> dict:
        m = super().metadata()
        if self.video_directory is not None:
            m["video_directory"] = os.path.basename(self.video_directory)
        if self.video_jsonl_file is not None:
            m["video_jsonl_file"] = os.path.basename(self.video_jsonl_file)
        m.update(
            frame_extraction=self.frame_extraction,
            frame_stride=self.frame_stride,
            frame_sample=self.frame_sample,
            target_frames=list(self.target_frames),
            max_frames=self.max_frames,
            source_fps=self.source_fps,
            has_control=False,
        )
        return m


def _frame_indices(n: int, start: int | None, end: int | None, source_fps, target_fps) -> list[int]:
    """load_video's frame selection for a directory of frame images (same rules as for a file)."""
    kept, position, previous = [], 0.0, -1
    for i in range(n):
        index = i
        if source_fps is not None and target_fps is not None:
            index = int(position)
            position += target_fps / source_fps
            if index == previous:
                continue
            previous = index
        if start is not None and index < start:
            continue
        if end is not None and index >= end:
            break
        kept.append(i)
    return kept


# ---------------------------------------------------------------------------------------------------------------
# dataset group (config_utils.generate_dataset_group_by_blueprint)


def load_datasets(
    config_path, argparse_values: dict | None = None, training: bool = False, log: logging.Logger = logger
) -> list[BaseDataset]:
    """Read, validate and instantiate every dataset of the config; with training=True also prepare_for_training.
    argparse_values: the script's parsed arguments (only non-None values are fallbacks, e.g. --batch_size).
    log: the calling script's logger, which logs "Load dataset config from ..." in musubi."""
    log.info(f"Load dataset config from {config_path}")
    config = sanitize_user_config(load_user_config(config_path))
    general = config.get("general", {})
    cli = {k: v for k, v in (argparse_values or {}).items() if v is not None}
    datasets: list[BaseDataset] = []
    for ds in config.get("datasets", []):
        is_image = "image_directory" in ds or "image_jsonl_file" in ds
        klass = ImageParams if is_image else VideoParams
        params = _params(klass, [ds, general, cli])
        datasets.append(ImageDataset(params) if is_image else VideoDataset(params))
    cache_dirs = [d.cache_directory for d in datasets]
    if len(set(cache_dirs)) != len(cache_dirs):
        raise ValueError(
            "cache directory should be unique for each dataset (note that cache directory is image/video directory if "
            "not specified) / cache directory は各データセットごとに異なる必要があります（指定されていない場合はimage/video "
            "directoryが使われるので注意）"
        )
    logger.info("".join(d.describe(i) for i, d in enumerate(datasets)))
    if training:
        for d in datasets:
            d.prepare_for_training()
    # DatasetGroup is a torch ConcatDataset, which refuses an empty list
    assert len(datasets) > 0, "datasets should not be an empty iterable"
    return datasets
