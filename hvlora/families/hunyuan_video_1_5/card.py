"""What a Hugging Face model card says about a HunyuanVideo 1.5 LoRA: the base model, its license, tags, and how
to use the two files (ComfyUI, musubi-tuner).

The base model is the repo the DiT was downloaded from (catalog.HV15_REPO). Its license is the Tencent Hunyuan
Community License (`license: other`, `license_name: tencent-hunyuan-community`, linked to the repo's LICENSE), as
the HunyuanVideo model cards declare it; a LoRA of it is an adapter (`base_model_relation: adapter`). No
`library_name: diffusers`: diffusers cannot load these files.
"""

from __future__ import annotations

from . import catalog
from .generate import GENERATE

BASE_MODEL = catalog.HV15_REPO
LICENSE = "other"
LICENSE_NAME = "tencent-hunyuan-community"
LICENSE_LINK = f"https://huggingface.co/{catalog.HV15_REPO}/blob/main/LICENSE"
MODEL_NAME = "HunyuanVideo 1.5"
PIPELINE_TAGS = {"t2v": "text-to-video", "i2v": "image-to-video"}
FAMILY_TAG = "hunyuan-video"


def card_data(task: str, dit_variant: str = "") -> dict[str, object]:
    """The model card's YAML fields that come from the family (ModelCardData keywords); every variant has the same
    base model repo."""
    return {
        "base_model": BASE_MODEL,
        "base_model_relation": "adapter",
        "license": LICENSE,
        "license_name": LICENSE_NAME,
        "license_link": LICENSE_LINK,
        "pipeline_tag": PIPELINE_TAGS[task],
        "tags": ["lora", FAMILY_TAG, "hunyuan-video-1.5", PIPELINE_TAGS[task], "musubi-tuner"],
    }


def usage(name: str, trigger: str, task: str, dit_file: str) -> str:
    """The card's "How to use" section (Markdown) for `name`.safetensors / `name`_comfyui.safetensors."""
    prompt = f"{trigger}, " if trigger else ""
    image = " --image_path first_frame.png" if task == "i2v" else ""
    return "\n".join(
        [
            f"- **ComfyUI**: put `{name}_comfyui.safetensors` into `ComfyUI/models/loras/` and load it with a "
            f"*LoraLoaderModelOnly* node after the {MODEL_NAME} model ({dit_file}); every key matches ComfyUI's "
            "names (q/k/v fused).",
            f"- **musubi-tuner** (v0.3.4): `{name}.safetensors` is in musubi's own format:",
            "",
            "```bash",
            f"python -m {GENERATE} --dit DIT.safetensors --vae VAE.safetensors \\",
            "    --text_encoder qwen_2.5_vl_7b.safetensors --byt5 byt5_small_glyphxl_fp16.safetensors \\",
            f"    --lora_weight {name}.safetensors --lora_multiplier 1.0{image} \\",
            f'    --prompt "{prompt}..." --video_size 480 848 --video_length 25 --infer_steps 20 --save_path out',
            "```",
            "",
            "  (musubi's `--video_size` is HEIGHT WIDTH.) Use this file, not the ComfyUI one: musubi's generator "
            'uses none of the ComfyUI file\'s keys and only logs "not all LoRA keys are used".',
        ]
    )


def license_note() -> str:
    """One sentence on the base model's license for the card."""
    return (
        f"This LoRA is an adapter of [{BASE_MODEL}](https://huggingface.co/{BASE_MODEL}); using it is subject to the "
        f"[Tencent Hunyuan Community License]({LICENSE_LINK}) of the base model."
    )
