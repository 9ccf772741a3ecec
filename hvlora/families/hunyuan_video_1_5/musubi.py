"""HunyuanVideo 1.5's musubi-tuner v0.3.4 entry points and their model flags: the only module that knows the hv_1_5_*
scripts' own flags. The flags every architecture shares (optimizer, schedule, saving, sampling cadence, accelerate)
are hvlora/training/musubi.py's. Flags, defaults and traps are from the contract (shared/musubi-hv15.md §3).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...training import musubi as trainer
from ...training.musubi import Command, TrainSegment
from .memory import musubi_flags

if TYPE_CHECKING:  # annotations only (config imports the family registry)
    from ...core.config import Settings
    from ...training.plan import Launch
    from ...training.presets import MemoryPlan

CACHE_LATENTS = "musubi_tuner.hv_1_5_cache_latents"
CACHE_TEXT_ENCODER = "musubi_tuner.hv_1_5_cache_text_encoder_outputs"
TRAIN = "musubi_tuner.hv_1_5_train_network"
CONVERT = "musubi_tuner.networks.convert_hunyuan_video_1_5_lora_to_comfy"
NETWORK_MODULE = "networks.lora_hv_1_5"  # musubi's LoRA network for HV1.5 (--network_module)
BASE_MODEL_VERSION = "hunyuan_video_1_5"  # what musubi writes as ss_base_model_version (ARCHITECTURE_..._FULL)
# The docs' HV1.5 timestep settings (musubi docs/hunyuan_video_1_5.md).
TIMESTEPS = ("--timestep_sampling", "shift", "--weighting_scheme", "none", "--discrete_flow_shift", "2.0")
TEXT_ENCODER_BATCH_SIZE = 16  # musubi docs' value for hv_1_5_cache_text_encoder_outputs


def cache_latents(s: Settings, dataset_config: Path, weights: dict[str, Path], memory: MemoryPlan) -> Command:
    """hv_1_5_cache_latents: `--i2v --image_encoder` for i2v, so i2v training never meets a cache without image
    latents (musubi-tuner#753); the memory plan's VAE tiling flags; `--skip_existing` (a killed run's complete files
    are kept) and `--keep_cache` (musubi would delete every cache file its config does not list). On CPU the VAE
    runs in bfloat16: musubi's float16 default is 15-80x slower there."""
    argv = ["--dataset_config", str(dataset_config), "--vae", str(weights["vae"]), "--device", s.device]
    if s.task == "i2v":
        argv += ["--i2v", "--image_encoder", str(weights["image_encoder"])]
    if s.device == "cpu":
        argv += ["--vae_dtype", "bfloat16"]
    argv += [*musubi_flags(memory)["cache_latents"], "--skip_existing", "--keep_cache"]
    return Command("cache_latents", CACHE_LATENTS, tuple(argv))


def cache_text_encoder_outputs(
    s: Settings, dataset_config: Path, weights: dict[str, Path], memory: MemoryPlan
) -> Command:
    """hv_1_5_cache_text_encoder_outputs with Qwen2.5-VL (fp8 when the memory plan says so) and byT5, with
    `--skip_existing --keep_cache` as for the latents."""
    argv = ["--dataset_config", str(dataset_config), "--text_encoder", str(weights["text_encoder"])]
    argv += ["--byt5", str(weights["byt5"]), "--batch_size", str(TEXT_ENCODER_BATCH_SIZE), "--device", s.device]
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
    """hv_1_5_train_network: the DiT, `--task t2v|i2v` and the docs' HV1.5 timestep settings, networks.lora_hv_1_5,
    the memory plan's flags, and the common trainer flags (training/musubi.py)."""
    sampling = seg.sample_prompts is not None
    return trainer.train(
        s,
        dataset_config,
        seg,
        launch,
        module=TRAIN,
        model=["--dit", str(weights["dit"]), "--task", s.task, *TIMESTEPS],
        network_module=NETWORK_MODULE,
        memory=musubi_flags(memory, sampling=sampling)["train"],
        sample_models=_sample_models(s, weights) if sampling else [],
    )


def _sample_models(s: Settings, weights: dict[str, Path]) -> list[str]:
    """Samples need the VAE and both text encoders on the train command (and SigLIP for i2v): the prompts are
    encoded at start-up (contract §3c)."""
    argv = [
        "--vae",
        str(weights["vae"]),
        "--text_encoder",
        str(weights["text_encoder"]),
        "--byt5",
        str(weights["byt5"]),
    ]
    if s.task == "i2v":
        argv += ["--image_encoder", str(weights["image_encoder"])]
    if s.device == "cpu":
        argv += ["--vae_dtype", "bfloat16"]
    return argv


def minimum_metadata(s: Settings) -> dict[str, str]:
    """musubi's minimum ss_* keys for a LoRA made from a training state (training/musubi.minimum_metadata)."""
    return trainer.minimum_metadata(s, BASE_MODEL_VERSION, NETWORK_MODULE)


# the HV1.5 model flags that name something a train command reads (a multi-node machine checks it sees them all)
MODEL_READ_FLAGS = ("--dit", "--vae", "--text_encoder", "--byt5", "--image_encoder")


def read_paths(argv: tuple[str, ...] | list[str]) -> dict[str, Path]:
    """flag -> path for every file or folder a train command reads (training/musubi.read_paths)."""
    return trainer.read_paths(argv, MODEL_READ_FLAGS)


def convert(src: Path, dst: Path) -> Command:
    """convert_hunyuan_video_1_5_lora_to_comfy SRC DST: musubi LoRA -> ComfyUI LoRA (q/k/v fused into qkv)."""
    return Command("convert", CONVERT, (str(src), str(dst)))
