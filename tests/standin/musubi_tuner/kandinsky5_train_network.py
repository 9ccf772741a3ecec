"""Stand-in for musubi_tuner.kandinsky5_train_network (v0.3.4): the HV1.5 stand-in's common trainer (same flags
handling, data, optimizer, scheduler, accelerate state, saving, console lines; see hv_1_5_train_network.py) with
Kandinsky 5's own parts, mirroring kandinsky5_train_network.py:
- main: `--fp8_base` turns `--fp8_scaled` on; `--vae_dtype` defaults to bfloat16;
- handle_model_specific_args: an unknown `--task` raises ValueError (TASK_CONFIGS' keys); i2v when "i2v" is in it;
- _load_dit_and_swap: an attention mode (else ValueError), block swap (--block_swap_h2d_only needs
  --gradient_checkpointing, ring size >= 1; K5 caps the swapped blocks itself, no assertion), then load_transformer
  opens the DiT file (FileNotFoundError when missing);
- the datasets as architecture k5; the network networks.lora_kandinsky with the task's DiT size (ss_base_model_version
  kandinsky5, modelspec Kandinsky-5);
- samples (sample_images): prompts loaded as they are (no encoding at start); per sample the text encoders are
  loaded with from_pretrained(--text_encoder_qwen / --text_encoder_clip, else the task's ./weights paths) and the VAE
  file (--vae, else the task's); `--f` is LATENT frames (default 5 for video tasks), decoded to 4(f-1)+1 frames of
  (w//8*8) x (h//8*8) (defaults: the task's resolution); `--g` is the guidance (`--l` is not read); files
  `OUTPUT_DIR/sample/sample_{steps:06d}_{idx:02d}.mp4` and `.png` (the first frame), whatever the trigger.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from tqdm import tqdm

from . import _common, _dataset, _flags, _hooks, _k5, _sampling
from . import hv_1_5_train_network as trainer

MODULE = "musubi_tuner.kandinsky5_train_network"
logger = logging.getLogger(__name__)


def validate(args) -> None:
    """_validate_args_and_init + handle_model_specific_args."""
    if args.dataset_config is None:
        raise ValueError("dataset_config is required / dataset_configが必要です")
    if args.dit is None:
        raise ValueError("path to DiT model is required / DiTモデルのパスが必要です")
    assert not args.fp8_scaled or args.fp8_base, "fp8_scaled requires fp8_base / fp8_scaledはfp8_baseが必要です"
    if args.sage_attn:
        raise ValueError("SageAttention doesn't support training currently. Please use `--sdpa` or `--xformers` etc.")
    if args.task not in _k5.tasks():
        raise ValueError(f"Unknown task '{args.task}'. Available: {_k5.tasks()}")
    if "i2v" in args.task:
        logger.info("I2V training mode enabled")


def check_swap(args) -> None:
    """_load_dit_and_swap up to load_transformer's first read of the DiT file."""
    if not (args.sdpa or args.flash_attn or args.sage_attn or args.xformers or args.flash3):
        raise ValueError(
            "either --sdpa, --flash-attn, --flash3, --sage-attn or --xformers must be specified / --sdpa, --flash-attn, "
            "--flash3, --sage-attn, --xformersのいずれかを指定してください"
        )
    if (args.blocks_to_swap or 0) > 0:
        if args.block_swap_h2d_only and not args.gradient_checkpointing:
            raise ValueError("--block_swap_h2d_only requires --gradient_checkpointing for training.")
        if args.block_swap_ring_size < 1:
            raise ValueError("--block_swap_ring_size must be >= 1")
    logger.info(f"Loading DiT from {args.dit}")
    _common.require_weight_file(args.dit)


def check_batch(args, batch: dict) -> None:
    """call_dit: I2V needs the first+last frame latents (K5's cache always has them)."""
    if args.flash3:
        raise ValueError("Unsupported attention mode: flash3")
    if "i2v" in args.task:
        assert batch["has_latents_image"], (
            "latents_image not found in batch; run kandinsky5_cache_latents to populate I2V caches"
        )


def prepare_sampling(args) -> list[dict] | None:
    """process_sample_prompts: the prompt file only (the VAE is a stub until a sample is made)."""
    if not args.sample_prompts:
        return None
    logger.info(f"Loading Kandinsky5 sample prompts from {args.sample_prompts}")
    return _sampling.load_prompts(args.sample_prompts)


def sample_images(accelerator, args, epoch, steps: int, network, sample_parameters) -> None:
    """Kandinsky5NetworkTrainer.sample_images: every prompt (no split across processes)."""
    if not _sampling.should_sample_images(args, steps, epoch):
        return
    if not sample_parameters:
        logger.warning("No sample prompts provided; skipping sampling.")
        return
    dit = _k5.dit_of(args.task)
    save_dir = os.path.join(args.output_dir, "sample")
    os.makedirs(save_dir, exist_ok=True)
    for idx, sample in enumerate(sample_parameters):
        width = sample.get("width", dit.resolution)
        height = sample.get("height", dit.resolution)
        latent_frames = sample.get("frame_count", 5)
        sample_steps = sample.get("sample_steps", 50)
        guidance = sample.get("guidance_scale", 5.0)
        logger.info(
            f"[sampling {idx}] w={width}, h={height}, f={latent_frames}, steps={sample_steps}, guidance={guidance}"
        )
        _k5.require_pretrained(args.text_encoder_qwen or "./weights/text_encoder/", "Qwen2.5-VL")
        _k5.require_pretrained(args.text_encoder_clip or "./weights/text_encoder2/", "CLIP")
        if sample.get("image_path"):
            _common.require_weight_file(args.vae or "./weights/vae/")
        for _ in tqdm(range(sample_steps), disable=True):
            pass
        _common.require_weight_file(args.vae or "./weights/vae/")  # _load_vae_for_sampling before decoding
        frames = 1 + (latent_frames - 1) * 4
        shape = (frames, (height // 8) * 8, (width // 8) * 8, 3)
        pixels = np.zeros(shape, dtype=np.uint8)
        if network.is_finite():
            values = _common.noise(shape, torch.float32, sample.get("prompt", ""), sample.get("seed", 42), steps)
            pixels = ((values + (steps % 7) / 7.0).sigmoid() * 255).to(torch.uint8).numpy()
        video_out = os.path.join(save_dir, f"sample_{steps:06d}_{idx:02d}.mp4")
        _sampling.write_mp4(video_out, pixels)
        png = os.path.join(save_dir, f"sample_{steps:06d}_{idx:02d}.png")
        _sampling.write_png(png, pixels[0])
        logger.info(f"Saved sample to {png} and {video_out}")


K5 = trainer.Arch(
    MODULE,
    validate,
    check_swap,
    check_batch,
    prepare_sampling,
    sample_images,
    lambda args: {"dit": _k5.dit_of(args.task)},
    _k5.ARCHITECTURE_FULL,
    "Kandinsky-5",
    "https://github.com/kandinskylab/kandinsky-5",
)


def main() -> None:
    _hooks.record_call(MODULE)
    parser = _flags.build_parser(MODULE)
    args = parser.parse_args()
    args = trainer.read_config_from_file(args, parser)
    if args.fp8_base and not args.fp8_scaled:
        args.fp8_scaled = True
    if args.vae_dtype is None:
        args.vae_dtype = "bfloat16"
    _dataset.use_architecture(_k5.ARCHITECTURE, _k5.ARCHITECTURE_FULL)
    trainer.train(args, K5)


if __name__ == "__main__":
    main()
