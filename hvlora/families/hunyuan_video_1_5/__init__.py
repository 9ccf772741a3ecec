"""HunyuanVideo 1.5 (tencent/HunyuanVideo-1.5, 8.3B): t2v and i2v LoRAs through musubi-tuner v0.3.4's hv_1_5_*
scripts. Its weights (catalog.py), musubi argv (musubi.py), presets and memory estimate (memory.py), and ComfyUI
conversion check (comfyui.py); the rules and defaults below are from musubi's code as cited."""

from __future__ import annotations

from .. import CacheInputs, Converter, Family, HintAdvice
from . import captioning, card, catalog, comfyui, generate, musubi
from .memory import MODEL
from .rules import FRAMES, SAMPLES

FAMILY = Family(
    name="hunyuan_video_1_5",
    title=MODEL.title,
    tasks=catalog.TASKS,
    variants=catalog.DIT_VARIANTS,
    defaults={"dit_variant": catalog.DIT_VARIANTS[0], "resolution": (960, 544)},  # 544p: its 480p-720p range
    weights_for=catalog.weights_for,
    tokenizers=catalog.TOKENIZERS,
    scripts=musubi,
    memory=MODEL,
    frames=FRAMES,
    # What changes musubi's files (contract §4): i2v adds image latents and SigLIP features; an image's latent file
    # is named after its original size, not its bucket, so the resolution counts; the device picks bf16 (CPU) or
    # fp16; the VAE tiling only changes how the VAE fits in memory (not in the key). Text-encoder outputs: Qwen2.5-VL
    # (its precision: fp8 reuses bf16) and byT5.
    latent_cache=CacheInputs(settings=("task", "resolution"), components=("vae", "image_encoder"), knobs=()),
    text_encoder_cache=CacheInputs(settings=(), components=("text_encoder", "byt5"), knobs=(), precision_knob="fp8_vl"),
    text_encoder_max_tokens=1024,  # Qwen2.5-VL after its prompt template (TOKENIZER_MAX_LENGTH)
    # musubi v0.3.4's i2v latent cache takes content[0] as the first video frame; for a still image that is a pixel
    # row, and its SigLIP step asserts (seen with the real engine in the rig).
    still_images_refused={
        "i2v": (
            "--task i2v trains on videos; musubi cannot cache still images for i2v",
            "Train the images with --task t2v, or remove them",
        )
    },
    samples=SAMPLES,
    hints=HintAdvice(
        text_encoder_fp8=(
            "`--fp8_vl`: Qwen2.5-VL runs in fp8 while caching, about half the memory (the captions cached so far "
            "are kept and used)"
        ),
        text_encoder_fp8_on=(
            "close other programs that use the GPU (`nvidia-smi` lists them); Qwen2.5-VL already runs in fp8"
        ),
        dit_fp8="`--fp8`: the DiT in fp8 (musubi --fp8_base --fp8_scaled), about half its memory",
        latents_smallest_preset=(
            f"`--vram {MODEL.presets[0]}`: the VAE encodes with patch-wise convolution and smaller tiles while caching"
        ),
    ),
    converter=Converter(label="ComfyUI", suffix="_comfyui", command=musubi.convert, verify=comfyui.verify),
    help={
        "task": "i2v also caches the first frame with the SigLIP image encoder.",
        "dit_variant": (
            f"{' or '.join(catalog.DIT_VARIANTS)} of {catalog.HV15_REPO}; the distilled and super-resolution "
            "variants cannot be trained by musubi."
        ),
        "vram": f"presets {', '.join(map(str, MODEL.presets))}.",
        "fp8": "the text encoder is Qwen2.5-VL.",
        "blocks_to_swap": f"0 to {MODEL.max_blocks_to_swap} of its {MODEL.num_blocks} blocks.",
        "fp8_vl": "Qwen2.5-VL 7B.",
        "vae_sample_size": f"256 is better than musubi's {MODEL.vae_default_tile}.",
        "resolution": f"sides are multiples of {FRAMES.reso_step} (its buckets' step).",
        "target_frames": "each must be 4n+1 (1, 5, 9, 13, ...).",
        "sample_every_n_epochs": f"on by default with a --vram preset above {SAMPLES.auto_above_preset}.",
    },
    generator=generate,
    card=card,
    captioner=captioning.CAPTIONER,
)
