"""Kandinsky 5's frame, bucket, text-encoder and sample rules, from musubi-tuner v0.3.4's code as cited (a module of
their own so that the generator can use them without importing the family's __init__)."""

from __future__ import annotations

import re

from ...data.frames import FrameRules
from .. import SampleDefaults

# dataset/architectures.py ARCHITECTURE_KANDINSKY5 ("k5": cache files *_k5.safetensors, *_k5_te.safetensors);
# VideoDataset: architecture k5 takes TARGET_FPS_HUNYUAN (24 fps); BucketSelector.RESOLUTION_STEPS_KANDINSKY5 = 16
# (the HunyuanVideo 1.0 VAE's 8x spatial compression x the DiT's 2x2 patch); the VAE packs 4 frames into one
# latent after the first (VideoDataset.vae_frame_stride: 4n+1 frames).
FRAMES = FrameRules(architecture="k5", target_fps=24.0, reso_step=16, frame_step=4)

# Text encoders, as the family runs kandinsky5_cache_text_encoder_outputs: Qwen2.5-VL keeps qwen_max_length tokens
# of the caption after its prompt template (the script's default is 512; the tasks' TextEmbedderConfig, which
# training samples and kandinsky5_generate_video use, says 256: passed explicitly so that the cache matches them),
# CLIP 77 (pooled). The template: encode_and_save_batch takes the "video" template when an item of the batch has
# frame_count > 1, else "image"; in the caption-only pass that caches text (BaseDataset.
# _default_retrieve_text_encoder_output_cache_batches) every item is ItemInfo(key, caption, (0, 0), (0, 0)) with
# frame_count None, so every caption, of a video or an image, is encoded with the "image" template (checked with
# musubi's dataset code: a video item there has frame_count None).
QWEN_MAX_LENGTH = 256
CLIP_MAX_LENGTH = 77
CACHE_TEMPLATE = "image"

# Samples in K5's own terms (kandinsky5_train_network.sample_images): --f counts LATENT frames (shape (1, f, H/8,
# W/8, 16); decoded to 4(f-1)+1 frames; musubi's default 5 = 17 frames), the guidance comes from --g (guidance_scale;
# --l is not read), no flow shift (the task's scheduler_scale); the keys it reads are prompt_keys. Steps 50 and guidance 5.0: the SFT tasks' num_steps
# and guidance_weight; the area 768x512 (its "sd" sampling area, 512 * 768). Each sample loads Qwen2.5-VL (15.4 GiB
# in bf16) on the GPU again, so samples are on by default only above the 24 GB preset.
# kandinsky5_train_network.sample_images names its files sample_{steps:06d}_{idx:02d}.mp4 and .png (the first frame)
# in OUTPUT_DIR/sample, whatever the trigger (steps is the global step) and the output name.
_SAMPLE_FILE = re.compile(r"sample_(?P<num>\d{6})_(?P<idx>\d{2})\.(?:mp4|png)")


def parse_sample_name(name: str, output_name: str | None) -> tuple[str, int, int] | None:
    """("step", step, prompt index) of a sample file Kandinsky 5's trainer wrote, else None."""
    m = _SAMPLE_FILE.fullmatch(name)
    return ("step", int(m["num"]), int(m["idx"])) if m else None


SAMPLES = SampleDefaults(
    steps=50,
    guidance=5.0,
    flow_shift=None,
    video_frames=17,
    area=768 * 512,
    image_tasks=("i2v",),
    auto_above_preset=24,
    prompt_keys=("negative_prompt", "seed", "image_path", "width", "height", "frame_count", "sample_steps")
    + ("guidance_scale",),
    latent_frames=True,
    guidance_key="guidance_scale",
    parse_name=parse_sample_name,
)
