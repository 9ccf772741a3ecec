"""Every model file the trainer uses: the single source of truth for downloads, presence checks and musubi flags.

Sources: the contract with musubi-tuner v0.3.4 (shared/musubi-hv15.md §1-2). musubi loads the weights from single
files given by flag; it loads two tokenizers by repo id at run time (`Qwen/Qwen-Image` subfolder `tokenizer`, in
qwen_image/qwen_image_utils.py, and `google/byt5-small`, in hunyuan_video_1_5/hunyuan_video_1_5_text_encoder.py),
so those go into the Hugging Face cache (HF_HOME) where transformers finds them offline.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HV15_REPO = "tencent/HunyuanVideo-1.5"
COMFY_REPO = "Comfy-Org/HunyuanVideo_1.5_repackaged"


@dataclass(frozen=True)
class WeightFile:
    """One checkpoint file: `component` (dit, vae, text_encoder, byt5, image_encoder), where it lives on the hub,
    which tasks need it, the musubi flag that takes its path, and its approximate size in bytes (for messages)."""

    component: str
    repo_id: str
    filename: str
    tasks: tuple[str, ...]
    flag: str
    approx_bytes: int

    def local_path(self, models_dir: Path) -> Path:
        """Where it is stored: MODELS_DIR/<repo_id>/<filename> (huggingface_hub's local_dir layout)."""
        return models_dir / self.repo_id / self.filename


@dataclass(frozen=True)
class TokenizerRepo:
    """A tokenizer musubi loads with `from_pretrained(repo_id)`: `allow_patterns` are fetched into the HF cache;
    `required_files` are what must be there for an offline load."""

    repo_id: str
    allow_patterns: tuple[str, ...]
    required_files: tuple[str, ...]


WEIGHTS: tuple[WeightFile, ...] = (
    WeightFile("dit", HV15_REPO, "transformer/720p_t2v/diffusion_pytorch_model.safetensors", ("t2v",), "--dit",
               16_653_416_520),
    WeightFile("dit", HV15_REPO, "transformer/720p_i2v/diffusion_pytorch_model.safetensors", ("i2v",), "--dit",
               16_653_416_520),
    WeightFile("vae", HV15_REPO, "vae/diffusion_pytorch_model.safetensors", ("t2v", "i2v"), "--vae",
               5_042_560_980),
    WeightFile("text_encoder", COMFY_REPO, "split_files/text_encoders/qwen_2.5_vl_7b.safetensors", ("t2v", "i2v"),
               "--text_encoder", 16_584_415_608),
    WeightFile("byt5", COMFY_REPO, "split_files/text_encoders/byt5_small_glyphxl_fp16.safetensors", ("t2v", "i2v"),
               "--byt5", 438_643_216),
    WeightFile("image_encoder", COMFY_REPO, "split_files/clip_vision/sigclip_vision_patch14_384.safetensors",
               ("i2v",), "--image_encoder", 856_505_672),
)

TOKENIZERS: tuple[TokenizerRepo, ...] = (
    TokenizerRepo("Qwen/Qwen-Image", ("tokenizer/*",),
                  ("tokenizer/tokenizer_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt")),
    TokenizerRepo("google/byt5-small", ("*.json",), ("config.json", "tokenizer_config.json")),
)


def weights_for(task: str) -> dict[str, WeightFile]:
    """component -> WeightFile for `task` ('t2v' or 'i2v'). Raises KeyError for an unknown task."""
    if task not in ("t2v", "i2v"):
        raise KeyError(task)
    return {w.component: w for w in WEIGHTS if task in w.tasks}
