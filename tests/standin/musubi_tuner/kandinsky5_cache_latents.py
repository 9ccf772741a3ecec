"""Stand-in for musubi_tuner.kandinsky5_cache_latents (v0.3.4): same flags, checks, files; no VAE runs.

Mirrors kandinsky5_cache_latents.main / encode_and_save_batch and dataset/cache_io.save_latent_cache_kandinsky5:
- the datasets are built as architecture k5 (cache files `*_k5.safetensors`); `--debug_mode` stops there;
- `--vae` is asserted ("VAE checkpoint is required"), the file must exist (build_vae -> hunyuan_model.vae.load_vae);
  the VAE runs in float16 unless `--vae_dtype`;
- one file per item: `latents_{F}x{H}x{W}_{dtype}` [16, F, H/8, W/8] (F = 1 + (frames-1)/4) and always
  `latents_image_2x{H}x{W}_{dtype}` (the first and the last latent frame; twice the first for an image), as the
  "universal" first+last cache; with `--nabla_resize` the frames are resized to the next multiple of 128 px first;
  metadata architecture kandinsky5, width, height, format_version, frame_count (video);
- `--skip_existing` / `--keep_cache` as cache_latents.encode_datasets (shared with the HV1.5 stand-in).
"""

from __future__ import annotations

import logging
import os

import torch

from . import _common, _dataset, _flags, _hooks, _k5
from .hv_1_5_cache_latents import encode_datasets, show_datasets

MODULE = "musubi_tuner.kandinsky5_cache_latents"
logger = logging.getLogger(__name__)
LATENT_CHANNELS = 16  # HunyuanVideo 1.0 VAE


def save_item(item: _dataset.Item, vae_dtype: torch.dtype, nabla_resize: bool) -> None:
    """save_latent_cache_kandinsky5 for one item (the bucket-sized content, optionally resized for NABLA)."""
    w, h = item.bucket[:2]
    if nabla_resize:
        w, h = -(-w // 128) * 128, -(-h // 128) * 128
    f = 1 + ((item.frame_count or 1) - 1) // 4
    key = os.path.basename(item.latent_cache_path)
    latent = _common.noise((LATENT_CHANNELS, f, h // 8, w // 8), vae_dtype, key, "latents")
    dtype = _common.dtype_to_str(vae_dtype)
    sd = {
        f"latents_{f}x{h // 8}x{w // 8}_{dtype}": latent,
        f"latents_image_2x{h // 8}x{w // 8}_{dtype}": torch.cat([latent[:, :1], latent[:, -1:]], dim=1).clone(),
    }
    metadata = {
        "architecture": _k5.ARCHITECTURE_FULL,
        "width": f"{item.original_size[0]}",
        "height": f"{item.original_size[1]}",
        "format_version": "1.0.1",
    }
    if item.frame_count is not None:
        metadata["frame_count"] = f"{item.frame_count}"
    os.makedirs(os.path.dirname(item.latent_cache_path), exist_ok=True)
    _hooks.save_cache_file(sd, item.latent_cache_path, metadata)


def main() -> None:
    _hooks.record_call(MODULE)
    args = _flags.build_parser(MODULE).parse_args()
    _common.device_from(args.device)
    _dataset.use_architecture(_k5.ARCHITECTURE, _k5.ARCHITECTURE_FULL)
    datasets = _dataset.load_datasets(args.dataset_config, vars(args), log=logger)
    if args.debug_mode is not None:
        show_datasets(datasets)
        return
    assert args.vae is not None, "VAE checkpoint is required"
    _common.require_weight_file(args.vae)
    vae_dtype = torch.float16 if args.vae_dtype is None else _common.str_to_dtype(args.vae_dtype)
    logger.info(f"Loaded VAE. dtype: {vae_dtype}, device: {args.device}")
    _hooks.work_starts(MODULE, logger)
    encode_datasets(datasets, args, lambda batch: [save_item(it, vae_dtype, args.nabla_resize) for it in batch])


if __name__ == "__main__":
    main()
