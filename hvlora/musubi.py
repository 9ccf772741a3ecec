"""The argv of every musubi-tuner v0.3.4 entry point we run: the only module that knows musubi's flags.

Each builder returns a `Command`: the module to run with `python -m`, the argv after the module name, and for
training the `accelerate launch` flags. The same objects drive a real run and `--dry_run`'s plan.json, so what
is printed is what runs. Flags, defaults and traps are from the contract (shared/musubi-hv15.md §3).
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import Settings

CACHE_LATENTS = "musubi_tuner.hv_1_5_cache_latents"
CACHE_TEXT_ENCODER = "musubi_tuner.hv_1_5_cache_text_encoder_outputs"
TRAIN = "musubi_tuner.hv_1_5_train_network"
CONVERT = "musubi_tuner.networks.convert_hunyuan_video_1_5_lora_to_comfy"
ACCELERATE_LAUNCH = "accelerate.commands.launch"  # `accelerate launch` as a module of the running interpreter

# The caption files beside each dataset file (the dataset TOML's caption_extension).
CAPTION_EXTENSION = ".txt"
# Cache file names musubi writes into each dataset's cache_directory (architecture short name "hv15").
LATENT_CACHE_SUFFIX = "_hv15.safetensors"
TEXT_ENCODER_CACHE_SUFFIX = "_hv15_te.safetensors"

# Our --optimizer choices -> musubi --optimizer_type (trainer_base.get_optimizer, case-insensitive there).
OPTIMIZER_TYPES = {"adamw8bit": "AdamW8bit", "adamw": "AdamW", "AdaFactor": "Adafactor"}
# musubi's Adafactor defaults to relative_step=True, which ignores --learning_rate; fix the rate like kohya's docs.
ADAFACTOR_ARGS = ("scale_parameter=False", "relative_step=False", "warmup_init=False")
TEXT_ENCODER_BATCH_SIZE = 16  # musubi docs' value for hv_1_5_cache_text_encoder_outputs


@dataclass(frozen=True)
class Command:
    """One musubi invocation. `argv` is exactly what follows the module name; `launcher` (train only) is the
    `accelerate launch ...` part a person would type, e.g. ("accelerate", "launch", "--mixed_precision", "bf16")."""

    name: str
    module: str
    argv: tuple[str, ...]
    launcher: tuple[str, ...] | None = None

    def executable(self, python: str | None = None) -> list[str]:
        """The argv that runs it with this interpreter: python -m MODULE ... or python -m accelerate... -m MODULE."""
        python = python or sys.executable
        if self.launcher:
            return [python, "-m", ACCELERATE_LAUNCH, *self.launcher[2:], "-m", self.module, *self.argv]
        return [python, "-m", self.module, *self.argv]

    def display(self) -> str:
        """The command as a person would type it (shell-quoted)."""
        if self.launcher:
            return shlex.join([*self.launcher, "-m", self.module, *self.argv])
        return shlex.join(["python", "-m", self.module, *self.argv])

    def plan_entry(self) -> dict:
        """This command in plan.json's form."""
        entry: dict = {"name": self.name}
        if self.launcher:
            entry["launcher"] = list(self.launcher)
        entry["module"] = self.module
        entry["argv"] = list(self.argv)
        return entry


def cache_latents(s: Settings, dataset_config: Path, weights: dict[str, Path]) -> Command:
    """hv_1_5_cache_latents: `--i2v --image_encoder` for i2v, so i2v training never meets a cache without image
    latents (musubi-tuner#753). On CPU the VAE runs in bfloat16: musubi's float16 default is 15-80x slower there."""
    argv = ["--dataset_config", str(dataset_config), "--vae", str(weights["vae"]), "--device", s.device]
    if s.task == "i2v":
        argv += ["--i2v", "--image_encoder", str(weights["image_encoder"])]
    if s.device == "cpu":
        argv += ["--vae_dtype", "bfloat16"]
    return Command("cache_latents", CACHE_LATENTS, tuple(argv))


def cache_text_encoder_outputs(s: Settings, dataset_config: Path, weights: dict[str, Path]) -> Command:
    """hv_1_5_cache_text_encoder_outputs with Qwen2.5-VL (fp8 with --fp8) and byT5."""
    argv = [
        "--dataset_config",
        str(dataset_config),
        "--text_encoder",
        str(weights["text_encoder"]),
        "--byt5",
        str(weights["byt5"]),
        "--batch_size",
        str(TEXT_ENCODER_BATCH_SIZE),
        "--device",
        s.device,
    ]
    if s.fp8:
        argv.append("--fp8_vl")
    return Command("cache_text_encoder_outputs", CACHE_TEXT_ENCODER, tuple(argv))


def launcher(s: Settings) -> tuple[str, ...]:
    """`accelerate launch` flags: one process, bf16. Every value is given so that no accelerate config file or
    GPU count changes the run behind the user's back. With --device cpu: forced CPU, all cores."""
    threads = (os.cpu_count() or 1) if s.device == "cpu" else 1
    flags = [
        "accelerate",
        "launch",
        "--num_cpu_threads_per_process",
        str(threads),
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "bf16",
        "--dynamo_backend",
        "no",
    ]
    if s.device == "cpu":
        flags.append("--cpu")
    return tuple(flags)


def train(s: Settings, dataset_config: Path, weights: dict[str, Path], output_dir: Path, logging_dir: Path) -> Command:
    """hv_1_5_train_network with every flag musubi needs in practice (contract §3c): an attention mode, an
    optimizer type (its empty default crashes), output_dir/output_name, a real learning rate and network_dim
    (defaults 2e-6 and 4), and the docs' HV1.5 timestep settings."""
    argv = [
        "--dit",
        str(weights["dit"]),
        "--dataset_config",
        str(dataset_config),
        "--task",
        s.task,
        "--sdpa",
        "--mixed_precision",
        "bf16",
        "--timestep_sampling",
        "shift",
        "--weighting_scheme",
        "none",
        "--discrete_flow_shift",
        "2.0",
        "--optimizer_type",
        OPTIMIZER_TYPES[s.optimizer],
        "--learning_rate",
        _num(s.learning_rate),
        "--gradient_checkpointing",
        "--network_module",
        "networks.lora_hv_1_5",
        "--network_dim",
        str(s.rank),
        "--network_alpha",
        _num(s.alpha),
    ]
    if s.optimizer == "AdaFactor":
        argv += ["--optimizer_args", *ADAFACTOR_ARGS]
    if s.max_train_steps > 0:
        argv += ["--max_train_steps", str(s.max_train_steps)]
    else:
        argv += ["--max_train_epochs", str(s.epochs)]
    argv += [
        "--save_every_n_epochs",
        str(s.save_every_n_epochs),
        "--save_last_n_epochs",
        "3",
        "--save_state",
        "--save_last_n_epochs_state",
        "1",
        "--save_precision",
        s.save_precision,
        "--seed",
        str(s.seed),
        "--output_dir",
        str(output_dir),
        "--output_name",
        s.output_name,
        "--logging_dir",
        str(logging_dir),
        "--max_data_loader_n_workers",
        "2",
        "--persistent_data_loader_workers",
    ]
    if s.fp8:
        argv += ["--fp8_base", "--fp8_scaled"]
    if s.blocks_to_swap > 0:
        argv += ["--blocks_to_swap", str(s.blocks_to_swap)]
    return Command("train", TRAIN, tuple(argv), launcher(s))


def convert(src: Path, dst: Path) -> Command:
    """convert_hunyuan_video_1_5_lora_to_comfy SRC DST: musubi LoRA -> ComfyUI LoRA (q/k/v fused into qkv)."""
    return Command("convert", CONVERT, (str(src), str(dst)))


def trained_lora(output_dir: Path, output_name: str) -> Path:
    """The final LoRA musubi writes at the end of training: OUTPUT_DIR/OUTPUT_NAME.safetensors."""
    return output_dir / f"{output_name}.safetensors"


def _num(x: float) -> str:
    """A number as musubi's argparse reads it: 32.0 -> '32', 1e-4 -> '0.0001'."""
    return f"{x:g}" if float(x).is_integer() else repr(float(x))
