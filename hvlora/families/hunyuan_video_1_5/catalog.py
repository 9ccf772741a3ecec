"""Every model file HunyuanVideo 1.5 training uses: the single source of truth for its downloads, checks and flags.

Sources: the contract with musubi-tuner v0.3.4 (shared/musubi-hv15.md §1-2). musubi loads the weights from single
files given by flag; it loads two tokenizers by repo id at run time (`Qwen/Qwen-Image` subfolder `tokenizer`, in
qwen_image/qwen_image_utils.py, and `google/byt5-small`, in hunyuan_video_1_5/hunyuan_video_1_5_text_encoder.py),
so those go into the Hugging Face cache (HF_HOME) where transformers finds them offline.

DiT variants: the 720p (default) and 480p base T2V/I2V checkpoints of tencent/HunyuanVideo-1.5 share one
architecture, which musubi loads strictly. The distilled variants may carry embedder weights musubi does not build
(guidance_embed, meanflow), and the super-resolution models are another network: they are refused with a reason.
"""

from __future__ import annotations

from ...core.errors import ConfigError
from ...weights.files import TokenizerRepo, WeightFile

HV15_REPO = "tencent/HunyuanVideo-1.5"
COMFY_REPO = "Comfy-Org/HunyuanVideo_1.5_repackaged"
TASKS = ("t2v", "i2v")
DIT_VARIANTS = ("720p", "480p")  # the first is the default
DIT_BYTES = 16_653_416_520  # 8.33B parameters in bf16 (+ header); same for every base variant
# Subfolders of the official repo that musubi cannot train on, with the reason told to the user.
REFUSED_VARIANTS = {
    "480p_distilled": "a CFG-distilled DiT with weights musubi does not load (guidance embedder)",
    "720p_distilled": "a CFG-distilled DiT with weights musubi does not load (guidance embedder)",
    "480p_step_distilled": "a step-distilled DiT with weights musubi does not load (meanflow embedder)",
    "720p_distilled_sparse": "a distilled DiT with sparse attention, which musubi does not implement",
    "720p_sr_distilled": "a super-resolution model, a different network",
    "1080p_sr_distilled": "a super-resolution model, a different network",
}


def _dit(variant: str, task: str) -> WeightFile:
    return WeightFile(
        "dit",
        HV15_REPO,
        f"transformer/{variant}_{task}/diffusion_pytorch_model.safetensors",
        (task,),
        "--dit",
        DIT_BYTES,
        "bf16 safetensors, official key layout (q/k/v separate)",
        variant,
    )


WEIGHTS: tuple[WeightFile, ...] = (
    *(_dit(variant, task) for variant in DIT_VARIANTS for task in TASKS),
    WeightFile(
        "vae",
        HV15_REPO,
        "vae/diffusion_pytorch_model.safetensors",
        ("t2v", "i2v"),
        "--vae",
        5_042_560_980,
        "fp32 safetensors (cast to --vae_dtype on load)",
    ),
    WeightFile(
        "text_encoder",
        COMFY_REPO,
        "split_files/text_encoders/qwen_2.5_vl_7b.safetensors",
        ("t2v", "i2v"),
        "--text_encoder",
        16_584_415_608,
        "Qwen2.5-VL 7B, bf16 safetensors (not the fp8_scaled file)",
    ),
    WeightFile(
        "byt5",
        COMFY_REPO,
        "split_files/text_encoders/byt5_small_glyphxl_fp16.safetensors",
        ("t2v", "i2v"),
        "--byt5",
        438_643_216,
        "byT5-small (Glyph), fp16 safetensors",
    ),
    WeightFile(
        "image_encoder",
        COMFY_REPO,
        "split_files/clip_vision/sigclip_vision_patch14_384.safetensors",
        ("i2v",),
        "--image_encoder",
        856_505_672,
        "SigLIP vision, fp16 safetensors",
    ),
)

TOKENIZERS: tuple[TokenizerRepo, ...] = (
    TokenizerRepo(
        "Qwen/Qwen-Image",
        ("tokenizer/*",),
        ("tokenizer/tokenizer_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt"),
    ),
    TokenizerRepo("google/byt5-small", ("*.json",), ("config.json", "tokenizer_config.json")),
)


def check_variant(variant: str) -> None:
    """Raise ConfigError for a DiT variant musubi cannot train, saying why and what can be used."""
    if variant in DIT_VARIANTS:
        return
    reason = REFUSED_VARIANTS.get(variant)
    allowed = ", ".join(DIT_VARIANTS)
    if reason:
        raise ConfigError(f"dit_variant {variant}: {reason}; musubi-tuner v0.3.4 trains only the base DiTs: {allowed}")
    raise ConfigError(f"dit_variant {variant!r} is not a HunyuanVideo 1.5 DiT; use one of {allowed}")


def weights_for(task: str, variant: str = "720p") -> dict[str, WeightFile]:
    """component -> WeightFile for `task` ('t2v' or 'i2v') and DiT `variant`. Raises KeyError for an unknown task
    and ConfigError for a variant musubi cannot train."""
    if task not in TASKS:
        raise KeyError(task)
    check_variant(variant)
    return {w.component: w for w in WEIGHTS if task in w.tasks and w.variant in (None, variant)}
