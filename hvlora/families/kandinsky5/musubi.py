"""Kandinsky 5's musubi-tuner v0.3.4 entry points and their model flags: the only module that knows the kandinsky5_*
scripts' own flags. The flags every architecture shares are hvlora/training/musubi.py's. Sources: docs/kandinsky5.md
(the training example: --timestep_sampling shift --discrete_flow_shift 5.0, networks.lora_kandinsky) and the scripts'
parsers (tests/standin/musubi_flags.json).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...training import musubi as trainer
from ...training.musubi import Command, TrainSegment
from . import catalog
from .memory import musubi_flags
from .rules import CLIP_MAX_LENGTH, QWEN_MAX_LENGTH

if TYPE_CHECKING:  # annotations only (config imports the family registry)
    from ...core.config import Settings
    from ...training.plan import Launch
    from ...training.presets import MemoryPlan

CACHE_LATENTS = "musubi_tuner.kandinsky5_cache_latents"
CACHE_TEXT_ENCODER = "musubi_tuner.kandinsky5_cache_text_encoder_outputs"
TRAIN = "musubi_tuner.kandinsky5_train_network"
NETWORK_MODULE = "networks.lora_kandinsky"
BASE_MODEL_VERSION = "kandinsky5"  # what musubi writes as ss_base_model_version (ARCHITECTURE_KANDINSKY5_FULL)
TIMESTEPS = ("--timestep_sampling", "shift", "--discrete_flow_shift", "5.0")  # docs/kandinsky5.md's training example
TEXT_ENCODER_BATCH_SIZE = 4  # the docs' --batch_size for kandinsky5_cache_text_encoder_outputs


def cache_latents(s: Settings, dataset_config: Path, weights: dict[str, Path], memory: MemoryPlan) -> Command:
    """kandinsky5_cache_latents: the HunyuanVideo 1.0 VAE (tiled by musubi itself); first and last frame latents of
    every video are always stored, so one cache serves t2v and i2v. `--nabla_resize` for a variant whose task uses
    NABLA attention (it needs latent sides divisible by 16: inputs are resized to the next multiple of 128 px).
    On the CPU the VAE runs in bfloat16 (its float16 default is far slower there); `--skip_existing --keep_cache` as
    for every family (a killed run's complete files are kept; musubi would delete files its config does not list)."""
    argv = ["--dataset_config", str(dataset_config), "--vae", str(weights["vae"]), "--device", s.device]
    if s.device == "cpu":
        argv += ["--vae_dtype", "bfloat16"]
    if catalog.check_variant(s.dit_variant, s.task).nabla:
        argv.append("--nabla_resize")
    argv += [*musubi_flags(memory)["cache_latents"], "--skip_existing", "--keep_cache"]
    return Command("cache_latents", CACHE_LATENTS, tuple(argv))


def cache_text_encoder_outputs(
    s: Settings, dataset_config: Path, weights: dict[str, Path], memory: MemoryPlan
) -> Command:
    """kandinsky5_cache_text_encoder_outputs with the Qwen2.5-VL and CLIP folders, the tasks' token limits (256 and
    77; the script's own Qwen default, 512, is not what training samples and the generator use), on the CPU when
    the memory plan says text_encoder_cpu (Qwen2.5-VL has no fp8 option here)."""
    device = "cpu" if memory.text_encoder_cpu else s.device
    argv = ["--dataset_config", str(dataset_config)]
    argv += [
        "--text_encoder_qwen",
        str(weights["text_encoder"]),
        "--text_encoder_clip",
        str(weights["text_encoder_clip"]),
    ]
    argv += ["--qwen_max_length", str(QWEN_MAX_LENGTH), "--clip_max_length", str(CLIP_MAX_LENGTH)]
    argv += ["--batch_size", str(TEXT_ENCODER_BATCH_SIZE), "--device", device]
    argv += [*musubi_flags(memory)["cache_text_encoder_outputs"], "--skip_existing", "--keep_cache"]
    return Command("cache_text_encoder_outputs", CACHE_TEXT_ENCODER, tuple(argv))


def train(
    s: Settings,
    dataset_config: Path,
    weights: dict[str, Path],
    seg: TrainSegment,
    memory: MemoryPlan,
    launch: Launch,
) -> Command:
    """kandinsky5_train_network: the DiT with musubi's --task for the variant and our task, the docs' timestep
    settings, networks.lora_kandinsky, the memory plan's flags, and the common trainer flags (training/musubi.py).
    musubi's trainer never loads the VAE for training (a stub); the VAE and text encoders are given with the sample
    prompts, which encode and decode every sample."""
    sampling = seg.sample_prompts is not None
    return trainer.train(
        s,
        dataset_config,
        seg,
        launch,
        module=TRAIN,
        model=["--dit", str(weights["dit"]), "--task", catalog.musubi_task(s.task, s.dit_variant), *TIMESTEPS],
        network_module=NETWORK_MODULE,
        memory=musubi_flags(memory, sampling=sampling)["train"],
        sample_models=_sample_models(weights) if sampling else [],
    )


def _sample_models(weights: dict[str, Path]) -> list[str]:
    """Samples need the VAE and both text encoders: musubi's K5 trainer loads them for every sample."""
    return [
        "--vae",
        str(weights["vae"]),
        "--text_encoder_qwen",
        str(weights["text_encoder"]),
        "--text_encoder_clip",
        str(weights["text_encoder_clip"]),
    ]


def minimum_metadata(s: Settings) -> dict[str, str]:
    """musubi's minimum ss_* keys for a LoRA made from a training state (training/musubi.minimum_metadata)."""
    return trainer.minimum_metadata(s, BASE_MODEL_VERSION, NETWORK_MODULE)


# the K5 model flags that name something a train command reads (a multi-node machine checks it sees them all)
MODEL_READ_FLAGS = ("--dit", "--vae", "--text_encoder_qwen", "--text_encoder_clip")


def read_paths(argv: tuple[str, ...] | list[str]) -> dict[str, Path]:
    """flag -> path for every file or folder a train command reads (training/musubi.read_paths)."""
    return trainer.read_paths(argv, MODEL_READ_FLAGS)
