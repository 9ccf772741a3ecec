"""Every model file Kandinsky 5 video LoRA training uses, and the DiT variants (flavours) it offers: the single source
of truth for its downloads, checks and flags.

Sources: musubi-tuner v0.3.4 docs/kandinsky5.md (the task table, the VAE, the text encoders), kandinsky5/configs.py
(TASK_CONFIGS: each --task's DiT size, attention and defaults) and the loaders (followed in shared/realrig/README.md,
"Kandinsky 5 Lite extension"):
- the DiT: one safetensors file, `--dit` (kandinsky5_train_network.load_transformer), from kandinskylab's repos
  (`model/<checkpoint of the task table>`); the --task picks the architecture, the file the weights;
- the VAE: the HunyuanVideo **1.0** 3D VAE, `--vae` (kandinsky5/models/vae.build_vae -> hunyuan_model.vae.load_vae),
  diffusers layout, fp32;
- Qwen2.5-VL-7B-Instruct and CLIP ViT-L/14: transformers `from_pretrained(path)` folders (`--text_encoder_qwen`,
  `--text_encoder_clip`; kandinsky5/models/text_embedders.py). Only the files those calls read are fetched. The
  Qwen folder's weights are Comfy-Org's single bf16 file, the one HunyuanVideo 1.5 trains with (the same 729
  tensors under the same names as the Instruct repo's 5 shards), linked in as model.safetensors after the download
  stage checked its header against the repo's own index; else the 5 shards (16.6 GB) are fetched.

Variants (--dit_variant, SimpleTuner's model_flavour without the task: `t2v-lite-sft-5s` is `--task t2v
--dit_variant lite-sft-5s`): Lite (2B) and Pro (19B), SFT or pretrain, 5 s or 10 s, each mapped to musubi's --task
(the "sd", 512 px tasks of the table). I2V: Pro SFT 5 s only (musubi's docs: "I2V, Pro"). Distilled, no-CFG and image
models are refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...core.errors import ConfigError
from ...weights.files import TokenizerRepo, WeightFile, WeightFolder

TASKS = ("t2v", "i2v")
HV1_REPO = "hunyuanvideo-community/HunyuanVideo"
QWEN_REPO = "Qwen/Qwen2.5-VL-7B-Instruct"
CLIP_REPO = "openai/clip-vit-large-patch14"
COMFY_QWEN_REPO = "Comfy-Org/HunyuanVideo_1.5_repackaged"  # Qwen2.5-VL-7B as one bf16 file (HunyuanVideo 1.5's)
QWEN_SINGLE_FILE = "split_files/text_encoders/qwen_2.5_vl_7b.safetensors"


@dataclass(frozen=True)
class Variant:
    """A base DiT: `size` ("lite" 2B or "pro" 19B), `stage` ("sft" or "pretrain"), `seconds` (5 or 10: the clip
    length it was trained for), and per --task: (kandinskylab repo, file in it, musubi --task)."""

    size: str
    stage: str
    seconds: int
    tasks: dict[str, tuple[str, str, str]]

    @property
    def nabla(self) -> bool:
        """Whether its musubi task uses NABLA sparse attention (configs.py: the 10 s tasks), which needs latent
        sides divisible by 16 (128 px): its latents are cached with --nabla_resize."""
        return self.seconds == 10


def _t2v(size: str, stage: str, seconds: int) -> Variant:
    name = f"kandinsky5{size}_t2v_{stage}_{seconds}s.safetensors"
    repo = f"kandinskylab/Kandinsky-5.0-T2V-{size.capitalize()}-{stage}-{seconds}s"
    task = f"k5-{size}-t2v-{seconds}s-sd" if stage == "sft" else f"k5-{size}-t2v-{seconds}s-pretrain-sd"
    if size == "pro":  # configs.py has one Pro task per length, for the SFT and the pretrain checkpoint alike
        task = f"k5-pro-t2v-{seconds}s-sd"
    return Variant(size, stage, seconds, {"t2v": (repo, f"model/{name}", task)})


VARIANTS: dict[str, Variant] = {
    "lite-sft-5s": _t2v("lite", "sft", 5),  # the default: 2B, trains on 12-16 GB cards
    "lite-pretrain-5s": _t2v("lite", "pretrain", 5),
    "lite-sft-10s": _t2v("lite", "sft", 10),
    "lite-pretrain-10s": _t2v("lite", "pretrain", 10),
    "pro-sft-5s": Variant(
        "pro",
        "sft",
        5,
        {
            **_t2v("pro", "sft", 5).tasks,
            "i2v": (
                "kandinskylab/Kandinsky-5.0-I2V-Pro-sft-5s",
                "model/kandinsky5pro_i2v_sft_5s.safetensors",
                "k5-pro-i2v-5s-sd",
            ),
        },
    ),
    "pro-pretrain-5s": _t2v("pro", "pretrain", 5),
    "pro-sft-10s": _t2v("pro", "sft", 10),
    "pro-pretrain-10s": _t2v("pro", "pretrain", 10),
}
DIT_VARIANTS = tuple(VARIANTS)  # the first is the default
# Sizes where a published file's size is known (bytes); others are None (the hub says it while downloading).
DIT_BYTES = {
    "kandinskylab/Kandinsky-5.0-T2V-Lite-sft-5s": 4_573_130_528,
    "kandinskylab/Kandinsky-5.0-T2V-Pro-sft-5s": 43_385_935_392,
}
_DISTILLED = (
    "a {what} DiT: musubi-tuner v0.3.4 trains it with the plain flow-matching loss, which does not keep the "
    "distillation; its docs list the SFT and pretrain DiTs for training. Train {base} and apply the LoRA to the "
    "distilled DiT at inference"
)
REFUSED_VARIANTS = {
    "lite-nocfg-5s": _DISTILLED.format(what="CFG-distilled (guidance 1.0)", base="lite-sft-5s"),
    "lite-nocfg-10s": _DISTILLED.format(what="CFG-distilled (guidance 1.0)", base="lite-sft-10s"),
    "lite-distilled16steps-5s": _DISTILLED.format(what="step-distilled (16 steps, no CFG)", base="lite-sft-5s"),
    "lite-distilled16steps-10s": _DISTILLED.format(what="step-distilled (16 steps, no CFG)", base="lite-sft-10s"),
    "lite-t2i": "an image model (Kandinsky 5.0 Image Lite, Flux VAE): musubi-tuner v0.3.4's docs say Image Lite "
    "models are not supported",
    "lite-i2i": "an image-editing model (Kandinsky 5.0 Image Lite, Flux VAE): musubi-tuner v0.3.4's docs say Image "
    "Lite models are not supported",
}
I2V_ONLY = "pro-sft-5s"
# musubi --task names (configs.TASK_CONFIGS) of the refused models, for a user who gives one as the variant
MUSUBI_REFUSED_TASKS = {
    "k5-lite-t2v-5s-nocfg-sd": "lite-nocfg-5s",
    "k5-lite-t2v-10s-nocfg-sd": "lite-nocfg-10s",
    "k5-lite-t2v-5s-distil-sd": "lite-distilled16steps-5s",
    "k5-lite-t2v-10s-distil-sd": "lite-distilled16steps-10s",
    "k5-lite-t2i-hd": "lite-t2i",
    "k5-lite-i2i-hd": "lite-i2i",
}


def vae() -> WeightFile:
    """The HunyuanVideo 1.0 VAE (diffusers layout, fp32; about 0.99 GB)."""
    return WeightFile(
        "vae", HV1_REPO, "vae/diffusion_pytorch_model.safetensors", TASKS, "--vae", None, "fp32 safetensors"
    )


def qwen_folder() -> WeightFolder:
    """Qwen2.5-VL-7B-Instruct as a folder: what Qwen2_5_VLForConditionalGeneration.from_pretrained and
    AutoProcessor.from_pretrained read, the weights from the shared single file (or the repo's 5 shards)."""
    shared = WeightFile(
        "text_encoder",
        COMFY_QWEN_REPO,
        QWEN_SINGLE_FILE,
        TASKS,
        "--text_encoder_qwen",
        16_584_415_608,
        "Qwen2.5-VL 7B, bf16 safetensors (also HunyuanVideo 1.5's --text_encoder)",
    )
    return WeightFolder(
        "text_encoder",
        QWEN_REPO,
        (
            "config.json",
            "generation_config.json",
            "preprocessor_config.json",
            "chat_template.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
            "merges.txt",
            "model.safetensors.index.json",
        ),
        TASKS,
        "--text_encoder_qwen",
        16_584_415_608,
        "Qwen2.5-VL-7B-Instruct folder (transformers)",
        shards=tuple(f"model-{i:05d}-of-00005.safetensors" for i in range(1, 6)),
        shared=shared,
    )


def clip_folder() -> WeightFolder:
    """CLIP ViT-L/14 as a folder: CLIPTextModel.from_pretrained (config.json, the whole model's safetensors, of
    which it takes text_model.*) and CLIPTokenizer.from_pretrained (its vocabulary files)."""
    return WeightFolder(
        "text_encoder_clip",
        CLIP_REPO,
        (
            "config.json",
            "model.safetensors",
            "vocab.json",
            "merges.txt",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ),
        TASKS,
        "--text_encoder_clip",
        None,
        "CLIP ViT-L/14 folder (transformers), fp32",
    )


TOKENIZERS: tuple[TokenizerRepo, ...] = ()  # every tokenizer is in the folders above


def check_variant(variant: str, task: str) -> Variant:
    """The Variant, or ConfigError saying why musubi cannot train it (with this task) and what can."""
    allowed = ", ".join(DIT_VARIANTS)
    if variant in VARIANTS:
        v = VARIANTS[variant]
        if task not in v.tasks:
            raise ConfigError(
                f"dit_variant {variant} with --task {task}: Kandinsky 5 {task.upper()} is trained with the Pro I2V "
                f"DiT (musubi's task k5-pro-i2v-5s-sd, kandinskylab/Kandinsky-5.0-I2V-Pro-sft-5s): use --dit_variant "
                f"{I2V_ONLY}, or --task t2v (musubi v0.3.4's docs list I2V LoRA training for Pro only)"
            )
        return v
    if variant in REFUSED_VARIANTS:
        raise ConfigError(f"dit_variant {variant}: {REFUSED_VARIANTS[variant]}; trainable: {allowed}")
    musubi = _musubi_task_problem(variant)
    if musubi is not None:
        raise ConfigError(f"dit_variant {variant!r} is musubi's --task name: {musubi}")
    flavour = variant.split("-", 1)
    if len(flavour) == 2 and flavour[0] in TASKS and flavour[1] in VARIANTS:
        raise ConfigError(
            f"dit_variant {variant!r} is SimpleTuner's model_flavour: here the task is its own setting, "
            f"--task {flavour[0]} --dit_variant {flavour[1]}"
        )
    raise ConfigError(f"dit_variant {variant!r} is not a Kandinsky 5 DiT; use one of {allowed}")


def _musubi_task_problem(name: str) -> str | None:
    """What a musubi --task name means here (the --task and --dit_variant that train it, or why it is refused), or
    None for a name that is not one."""
    pairs = [(t, v) for v, var in VARIANTS.items() for t, (_, _, mt) in var.tasks.items() if mt == name]
    if pairs:
        return "here it is " + " or ".join(f"--task {t} --dit_variant {v}" for t, v in pairs)
    if name in MUSUBI_REFUSED_TASKS:
        return REFUSED_VARIANTS[MUSUBI_REFUSED_TASKS[name]]
    if name.startswith("k5-"):
        return (
            "not one this trainer offers (it trains the 512 px 'sd' tasks of the Lite and Pro T2V and the Pro I2V "
            f"DiTs); use --dit_variant {', '.join(DIT_VARIANTS)}"
        )
    return None


def musubi_task(task: str, variant: str) -> str:
    """musubi's --task (configs.TASK_CONFIGS key) for our task and variant."""
    return check_variant(variant, task).tasks[task][2]


def weights_for(task: str, variant: str = DIT_VARIANTS[0]) -> dict[str, WeightFile | WeightFolder]:
    """component -> WeightFile/WeightFolder for `task` ('t2v' or 'i2v') and DiT `variant`: dit, vae, text_encoder
    (Qwen2.5-VL folder), text_encoder_clip (CLIP folder). Raises KeyError for an unknown task and ConfigError for a
    variant (or task and variant) musubi cannot train."""
    if task not in TASKS:
        raise KeyError(task)
    repo, filename, _ = check_variant(variant, task).tasks[task]
    dit = WeightFile(
        "dit", repo, filename, (task,), "--dit", DIT_BYTES.get(repo), "bf16 safetensors (modulation in fp32)", variant
    )
    return {"dit": dit, "vae": vae(), "text_encoder": qwen_folder(), "text_encoder_clip": clip_folder()}
