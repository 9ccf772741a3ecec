"""Stand-in for musubi_tuner.hv_1_5_cache_latents (v0.3.4): same flags, checks, files; no VAE runs.

Mirrors hv_1_5_cache_latents.main / encode_and_save_batch, cache_latents.encode_datasets and
dataset/cache_io.save_latent_cache_hunyuan_video_1_5 + save_latent_cache_common:
- `--i2v` without `--image_encoder` -> AssertionError; `--image_encoder` alone turns i2v on;
- the dataset config is read and the datasets built before anything else is checked; `--debug_mode` stops there
  (the stand-in only prints the items: no previews are written);
- with `--i2v`, an image dataset fails with AssertionError, as in musubi v0.3.4 (its SigLIP step takes the first
  "frame" of an image's pixel array, which is a pixel row);
- `--vae` is asserted unless `--debug_mode`; the VAE and (i2v) image encoder files must exist;
- per dataset: a tqdm bar without total over the batches; a bucket smaller than 16 px raises ValueError; one
  safetensors file per item with `latents_{F}x{H}x{W}_{dtype}` [32, F, H/16, W/16] (dtype = --vae_dtype, default
  float16) and with i2v `latents_image_{F}x{H}x{W}_float32` [33, F, H, W] (first-frame latent + mask channel) and
  `siglip_float16` [729, 1152]; metadata architecture, width, height, format_version, frame_count (video);
- `--skip_existing` skips by file name; without `--keep_cache` every `*_hv15.safetensors` in the cache directory
  that this run did not list is deleted.
"""

from __future__ import annotations

import logging
import os

import torch
from tqdm import tqdm

from . import _common, _dataset, _flags, _hooks

MODULE = "musubi_tuner.hv_1_5_cache_latents"
logger = logging.getLogger(__name__)
encode_logger = logging.getLogger("musubi_tuner.cache_latents")

LATENT_CHANNELS = 32  # hunyuan_video_1_5_vae.VAE_LATENT_CHANNELS
SIGLIP_SHAPE = (729, 1152)  # SigLIP so400m patch14-384 last hidden state (27x27 patches)


def latent_shape(frames: int, width: int, height: int) -> tuple[int, int, int]:
    """(F, H, W) of the VAE latent: 4x temporal and 16x spatial compression."""
    return (frames - 1) // 4 + 1, height // 16, width // 16


def save_item(item: _dataset.Item, vae_dtype: torch.dtype, i2v: bool) -> None:
    """One cache file as save_latent_cache_hunyuan_video_1_5 writes it."""
    bw, bh = item.bucket[:2]
    f, h, w = latent_shape(item.frame_count or 1, bw, bh)
    key = os.path.basename(item.latent_cache_path)
    sd = {
        f"latents_{f}x{h}x{w}_{_common.dtype_to_str(vae_dtype)}": _common.noise(
            (LATENT_CHANNELS, f, h, w), vae_dtype, key, "latents"
        )
    }
    if i2v:
        # the i2v condition is built in float32: first-frame latent in frame 0, zeros after, plus a mask channel
        cond = torch.zeros(LATENT_CHANNELS + 1, f, h, w, dtype=torch.float32)
        cond[:LATENT_CHANNELS, 0:1] = _common.noise((LATENT_CHANNELS, 1, h, w), torch.float32, key, "first")
        cond[LATENT_CHANNELS, 0:1] = 1.0
        sd[f"latents_image_{f}x{h}x{w}_float32"] = cond
        sd["siglip_float16"] = _common.noise(SIGLIP_SHAPE, torch.float16, key, "siglip")
    metadata = {
        "architecture": _dataset.ARCHITECTURE_FULL,
        "width": f"{item.original_size[0]}",
        "height": f"{item.original_size[1]}",
        "format_version": "1.0.1",
    }
    if item.frame_count is not None:
        metadata["frame_count"] = f"{item.frame_count}"
    os.makedirs(os.path.dirname(item.latent_cache_path), exist_ok=True)
    _hooks.save_cache_file(sd, item.latent_cache_path, metadata)


def encode_batch(batch: list[_dataset.Item], vae_dtype: torch.dtype, i2v: bool) -> None:
    """encode_and_save_batch: the size check on the (bucket-sized) content, then one file per item."""
    w, h = batch[0].bucket[:2]
    if h < 16 or w < 16:
        item = batch[0]
        raise ValueError(
            f"Image or video size too small: {item.item_key} and {len(batch) - 1} more, size: {item.original_size}"
        )
    for item in batch:
        if i2v and item.frame_count is None:
            # encode_and_save_batch takes `item.content[0]` as the first video frame; for a still image that is
            # one pixel row, and frame_pack/clip_vision.hf_clip_vision_encode asserts a (H, W, 3) frame.
            raise AssertionError()
        save_item(item, vae_dtype, i2v)


def encode_datasets(datasets, args, encode) -> None:
    """cache_latents.encode_datasets, one dataset after another; `encode(batch)` is the script's
    encode_and_save_batch."""
    for i, dataset in enumerate(datasets):
        encode_logger.info(f"Encoding dataset [{i}]")
        listed: set[str] = set()
        for _, batch in tqdm(dataset.latent_batches()):
            listed.update(os.path.normpath(item.latent_cache_path) for item in batch)
            if args.skip_existing:
                batch = [item for item in batch if not os.path.exists(item.latent_cache_path)]
                if not batch:
                    continue
            bs = args.batch_size if args.batch_size is not None else len(batch)
            for j in range(0, len(batch), bs):
                encode(batch[j : j + bs])
        remove_stale(dataset, listed, args.keep_cache)


def remove_stale(dataset, listed: set[str], keep_cache: bool) -> None:
    """Cache files of this architecture that the current config does not produce are deleted (or kept and
    logged with --keep_cache)."""
    for cache_file in dataset.all_latent_cache_files():
        if os.path.normpath(cache_file) in listed:
            continue
        if keep_cache:
            encode_logger.info(f"Keep cache file not in the dataset: {cache_file}")
        else:
            os.remove(cache_file)
            encode_logger.info(f"Removed old cache file: {cache_file}")


def show_datasets(datasets) -> None:
    """--debug_mode: list what would be cached (musubi would also show or write previews)."""
    for i, dataset in enumerate(datasets):
        print(f"Dataset [{i}]")
        for batch_index, (key, batch) in enumerate(dataset.latent_batches()):
            print(f"bucket resolution: {key}, count: {len(batch)}")
            for j, item in enumerate(batch):
                print(
                    f"{batch_index}-{j}: item_key={item.item_key}, caption={item.caption}, "
                    f"original_size={item.original_size}, bucket_size={item.bucket}, "
                    f"frame_count={item.frame_count}, latent_cache_path={item.latent_cache_path}"
                )


def main() -> None:
    _hooks.record_call(MODULE)
    args = _flags.build_parser(MODULE).parse_args()

    if args.disable_cudnn_backend:
        logger.info("Disabling cuDNN PyTorch backend.")
    if args.i2v:
        assert args.image_encoder is not None, "--i2v requires --image_encoder to be set."
    elif args.image_encoder is not None:
        logger.info("--image_encoder is set but --i2v is not set. Enabling --i2v.")
        args.i2v = True
    _common.device_from(args.device)

    datasets = _dataset.load_datasets(args.dataset_config, vars(args), log=logger)
    if args.debug_mode is not None:
        show_datasets(datasets)
        return

    assert args.vae is not None, "vae checkpoint is required"
    logger.info(f"Loading VAE model from {args.vae}")
    vae_dtype = torch.float16 if args.vae_dtype is None else _common.str_to_dtype(args.vae_dtype)
    _common.require_weight_file(args.vae)
    if args.i2v:
        logger.info(f"Loading image encoder from {args.image_encoder}")
        _common.require_weight_file(args.image_encoder)

    _hooks.work_starts(MODULE, logger)
    encode_datasets(datasets, args, lambda batch: encode_batch(batch, vae_dtype, args.i2v))


if __name__ == "__main__":
    main()
