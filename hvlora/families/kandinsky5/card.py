"""What a Hugging Face model card says about a Kandinsky 5 LoRA: the base model (the DiT's kandinskylab repo, read
from the LoRA's own metadata: Lite or Pro, T2V or I2V), its license, tags, and how to use the file (ComfyUI as it
is, musubi-tuner's generator).

License: the Kandinsky 5.0 model cards declare `license: mit` (their YAML front matter; the code is MIT too), so the
card says `license: mit`; a LoRA of it is an adapter (`base_model_relation: adapter`). No `library_name:
diffusers`: diffusers cannot load musubi's files.
"""

from __future__ import annotations

from . import catalog
from .generate import GENERATE

LICENSE = "mit"
MODEL_NAME = "Kandinsky 5"
PIPELINE_TAGS = {"t2v": "text-to-video", "i2v": "image-to-video"}
FAMILY_TAG = "kandinsky-5"


def base_model(task: str, variant: str = catalog.DIT_VARIANTS[0]) -> str:
    """The kandinskylab repo of the DiT the LoRA was trained on (the default variant's when unknown)."""
    try:
        return catalog.check_variant(variant, task).tasks[task][0]
    except Exception:  # noqa: BLE001 - an unknown variant in old metadata: the family's default base
        return catalog.VARIANTS[catalog.DIT_VARIANTS[0]].tasks["t2v"][0]


def card_data(task: str, dit_variant: str = "") -> dict[str, object]:
    """The model card's YAML fields that come from the family (ModelCardData keywords): the base model is the
    LoRA's own DiT repo (Lite or Pro, T2V or I2V)."""
    variant = dit_variant if dit_variant in catalog.VARIANTS else catalog.DIT_VARIANTS[0]
    size = catalog.VARIANTS[variant].size
    return {
        "base_model": base_model(task, variant),
        "base_model_relation": "adapter",
        "license": LICENSE,
        "pipeline_tag": PIPELINE_TAGS[task],
        "tags": ["lora", FAMILY_TAG, f"kandinsky-5-{size}", PIPELINE_TAGS[task], "musubi-tuner"],
    }


def musubi_task_of(task: str, dit_file: str) -> str:
    """musubi's --task for the DiT named in `dit_file` (the LoRA's hvlora.base_model, repo/file), else the default
    variant's."""
    for variant in catalog.VARIANTS.values():
        if task in variant.tasks and "/".join(variant.tasks[task][:2]) in dit_file:
            return variant.tasks[task][2]
    return catalog.musubi_task("t2v", catalog.DIT_VARIANTS[0])


def usage(name: str, trigger: str, task: str, dit_file: str) -> str:
    """The card's "How to use" section (Markdown) for `name`.safetensors."""
    prompt = f"{trigger}, " if trigger else ""
    image = " --image first_frame.png" if task == "i2v" else ""
    return "\n".join(
        [
            f"- **ComfyUI**: put `{name}.safetensors` into `ComfyUI/models/loras/` and load it with a "
            f"*LoraLoaderModelOnly* node after the {MODEL_NAME} model ({dit_file}); ComfyUI's native Kandinsky 5 "
            "model (ComfyUI#10988 and later) takes musubi's `lora_unet_*` keys as they are.",
            f"- **musubi-tuner** (v0.3.4): `{name}.safetensors` is in musubi's own format:",
            "",
            "```bash",
            f"python -m {GENERATE} --task {musubi_task_of(task, dit_file)} --dit DIT.safetensors \\",
            "    --vae hunyuanvideo-community/HunyuanVideo/vae/diffusion_pytorch_model.safetensors \\",
            "    --text_encoder_qwen Qwen/Qwen2.5-VL-7B-Instruct --text_encoder_clip openai/clip-vit-large-patch14 \\",
            f"    --lora_weight {name}.safetensors --lora_multiplier 1.0{image} \\",
            f'    --prompt "{prompt}..." --width 768 --height 512 --frames 5 --output out.mp4',
            "```",
            "",
            "  (musubi's `--frames` counts latent frames: 5 are 17 video frames; `--task` is the one of the DiT "
            "this LoRA was trained on.)",
        ]
    )


def license_note() -> str:
    """One sentence on the base model's license for the card."""
    return (
        "This LoRA is an adapter of a Kandinsky 5.0 model by Kandinsky Lab, released under the MIT License "
        "(see the base model's card)."
    )
