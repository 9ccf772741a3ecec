"""Kandinsky 5 video (kandinskylab, Lite 2B and Pro 19B): t2v (Lite and Pro) and i2v (Pro) LoRAs through
musubi-tuner v0.3.4's kandinsky5_* scripts (experimental there: docs/kandinsky5.md). Its weights and variants
(catalog.py), musubi argv (musubi.py), presets and memory estimate for Lite and Pro (memory.py), frame, text-encoder
and sample rules (rules.py), the LoRA key check (lorakeys.py: ComfyUI loads the musubi file as it is, so there is
no converter), generator (generate.py), model-card facts (card.py) and captioner (captioning.py: its Qwen2.5-VL)."""

from __future__ import annotations

from .. import CacheInputs, Family, HintAdvice, LoraCheck
from . import captioning, card, catalog, generate, lorakeys, musubi
from .memory import LITE_MODEL, PRO_MODEL, PRO_TABLE
from .rules import CACHE_TEMPLATE, CLIP_MAX_LENGTH, FRAMES, QWEN_MAX_LENGTH, SAMPLES


def _latent_inputs(s) -> dict[str, object]:
    """--nabla_resize (NABLA-attention variants) resizes the frames before the VAE: the latents differ."""
    return {"nabla_resize": catalog.check_variant(s.dit_variant, s.task).nabla}


def _text_inputs(_s) -> dict[str, object]:
    """The token limits the family passes and the template musubi's cache script picks (rules.py)."""
    return {"qwen_max_length": QWEN_MAX_LENGTH, "clip_max_length": CLIP_MAX_LENGTH, "template": CACHE_TEMPLATE}


FAMILY = Family(
    name="kandinsky5",
    title="Kandinsky 5",
    tasks=catalog.TASKS,
    variants=catalog.DIT_VARIANTS,
    # 768x512: the "sd" tasks' area (configs resolution 512; samples at 512 x 768)
    defaults={"dit_variant": catalog.DIT_VARIANTS[0], "resolution": (768, 512)},
    weights_for=catalog.weights_for,
    tokenizers=catalog.TOKENIZERS,
    scripts=musubi,
    memory=LITE_MODEL,
    variant_memory={v: PRO_MODEL for v, variant in catalog.VARIANTS.items() if variant.size == "pro"},
    frames=FRAMES,
    # What changes musubi's files: the latents are the VAE's (first and last frame latents always included, so the
    # task does not count), an image's file is named after its original size (the resolution counts), NABLA
    # variants resize; the text-encoder outputs are Qwen2.5-VL's and CLIP's (every file of both folders), their
    # token limits and the template (derived). text_encoder_cpu is not in the key: it only moves the same bf16 model
    # to the CPU to fit (no precision change), so captions encoded either way serve both.
    latent_cache=CacheInputs(settings=("resolution",), components=("vae",), knobs=(), derived=_latent_inputs),
    text_encoder_cache=CacheInputs(
        settings=(), components=("text_encoder", "text_encoder_clip"), knobs=(), derived=_text_inputs
    ),
    text_encoder_max_tokens=QWEN_MAX_LENGTH,
    samples=SAMPLES,
    hints=HintAdvice(
        text_encoder_fp8=(
            "`--text_encoder_cpu`: Qwen2.5-VL (15.4 GiB in bf16; musubi's Kandinsky 5 script has no fp8 for it) "
            "encodes the captions on the CPU: no VRAM, slower, ~17 GB of host RAM"
        ),
        text_encoder_fp8_on=(
            "`--text_encoder_cpu`: Qwen2.5-VL encodes the captions on the CPU (--fp8 does not apply to it here)"
        ),
        dit_fp8="`--fp8`: the DiT in fp8 (musubi --fp8_base --fp8_scaled), about 0.6x its memory, slower steps",
        latents_smallest_preset=(
            "close other programs that use the GPU (`nvidia-smi` lists them): musubi already tiles the VAE "
            "(192 px, 24 frames) for Kandinsky 5"
        ),
    ),
    converter=None,
    lora_check=LoraCheck(verify=lorakeys.verify, loads_in=lorakeys.LOADS_IN),
    help={
        "task": "t2v with every variant, i2v with pro-sft-5s (musubi: I2V is Pro's).",
        "dit_variant": (
            f"{', '.join(catalog.DIT_VARIANTS)} (Lite 2B / Pro 19B, SFT or pretrain, 5 or 10 s; SimpleTuner's "
            "model_flavour t2v-lite-sft-5s is --task t2v --dit_variant lite-sft-5s); the distilled, no-CFG and image "
            "models cannot be trained by musubi."
        ),
        "vram": (
            f"Lite presets {', '.join(map(str, LITE_MODEL.presets))}; Pro presets "
            f"{', '.join(map(str, sorted(PRO_TABLE)))}."
        ),
        "fp8": "the text encoders stay bf16/fp32 (no fp8 in its scripts).",
        "blocks_to_swap": (
            f"0 to {LITE_MODEL.max_blocks_to_swap} (Lite) or {PRO_MODEL.max_blocks_to_swap} (Pro); a quarter of them "
            "are text blocks."
        ),
        "fp8_vl": "not taken (its text-encoder script has no fp8): --text_encoder_cpu instead.",
        "text_encoder_cpu": (
            "Qwen2.5-VL 7B (15.4 GiB in bf16): the 12 and 16 GB presets set it; generated captions then load "
            "Qwen2.5-VL in fp8 on the GPU."
        ),
        "resolution": f"sides are multiples of {FRAMES.reso_step}.",
        "target_frames": "each must be 4n+1 (1, 5, 9, 13, ...); its 5 s models were trained on 121-frame clips.",
        "sample_every_n_epochs": f"on by default with a --vram preset above {SAMPLES.auto_above_preset}.",
    },
    generator=generate,
    card=card,
    captioner=captioning.CAPTIONER,
)
