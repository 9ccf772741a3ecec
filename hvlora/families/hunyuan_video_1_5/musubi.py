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

from ...core.config import Settings
from ...training.plan import Launch
from ...training.presets import MemoryPlan, musubi_flags

CACHE_LATENTS = "musubi_tuner.hv_1_5_cache_latents"
CACHE_TEXT_ENCODER = "musubi_tuner.hv_1_5_cache_text_encoder_outputs"
TRAIN = "musubi_tuner.hv_1_5_train_network"
CONVERT = "musubi_tuner.networks.convert_hunyuan_video_1_5_lora_to_comfy"
ACCELERATE_LAUNCH = "accelerate.commands.launch"  # `accelerate launch` as a module of the running interpreter

NETWORK_MODULE = "networks.lora_hv_1_5"  # musubi's LoRA network for HV1.5 (--network_module)
BASE_MODEL_VERSION = "hunyuan_video_1_5"  # what musubi writes as ss_base_model_version (ARCHITECTURE_..._FULL)

# The caption files beside each dataset file (the dataset TOML's caption_extension).
CAPTION_EXTENSION = ".txt"

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


def launcher(s: Settings, launch: Launch) -> tuple[str, ...]:
    """`accelerate launch` flags, every value given so that no accelerate config file or GPU count changes the run
    behind the user's back: bf16, the process count (`--multi_gpu` for more than one), accelerate's multi-node
    flags when there are several machines. With --device cpu: forced CPU (`--cpu`; with several machines, where
    accelerate's --cpu launcher would start one lone process, `--multi_gpu`'s torchrun with ACCELERATE_USE_CPU in
    the environment: gloo), all cores."""
    threads = (os.cpu_count() or 1) if s.device == "cpu" else 1
    flags = ["accelerate", "launch", "--num_cpu_threads_per_process", str(threads)]
    if launch.multi:
        flags.append("--multi_gpu")
    flags += ["--num_processes", str(launch.num_processes), "--num_machines", str(launch.num_machines)]
    if launch.num_machines > 1:
        flags += ["--machine_rank", str(launch.machine_rank), "--main_process_ip", str(launch.main_process_ip)]
        flags += ["--main_process_port", str(launch.main_process_port)]
    flags += ["--mixed_precision", "bf16", "--dynamo_backend", "no"]
    if s.device == "cpu" and not launch.multi:
        flags.append("--cpu")
    return tuple(flags)


@dataclass(frozen=True)
class TrainSegment:
    """What one musubi training process does: `max_train_steps` of this segment (the remaining steps), resuming
    from `resume` (an accelerate state folder) with the LR schedule of the whole run (`total_steps`); its files go to
    `output_dir`. Saves every `save_every_n_steps` / `save_every_n_epochs` (0: never), each file kept by musubi's
    own pruning for the last `keep_models` / `keep_states` of this segment. Samples: `sample_prompts` (None: none).
    `metadata`: musubi's --metadata_title/author/description/tags."""

    output_dir: Path
    logging_dir: Path
    max_train_steps: int
    total_steps: int
    resume: Path | None = None
    save_every_n_steps: int = 0
    save_every_n_epochs: int = 0
    keep_models: int = 3
    keep_states: int = 2
    sample_prompts: Path | None = None
    sample_every_n_steps: int = 0
    sample_every_n_epochs: int = 0
    sample_at_first: bool = False
    metadata: dict[str, str] | None = None


def train(
    s: Settings,
    dataset_config: Path,
    weights: dict[str, Path],
    seg: TrainSegment,
    memory: MemoryPlan,
    launch: Launch,
) -> Command:
    """hv_1_5_train_network with every flag musubi needs in practice (contract §3c): an attention mode, an
    optimizer type (its empty default crashes), output_dir/output_name, a real learning rate and network_dim
    (defaults 2e-6 and 4), and the docs' HV1.5 timestep settings; the memory plan's flags; always `--seed` (each rank
    would otherwise shuffle its buckets differently); always `--max_train_steps` (musubi restarts its counters at
    0 on --resume, so the segment gets the remaining steps) with the schedule of the whole run (lr_schedule)."""
    argv = ["--dit", str(weights["dit"]), "--dataset_config", str(dataset_config), "--task", s.task]
    argv += ["--sdpa", "--mixed_precision", "bf16"]
    argv += ["--timestep_sampling", "shift", "--weighting_scheme", "none", "--discrete_flow_shift", "2.0"]
    argv += ["--optimizer_type", OPTIMIZER_TYPES[s.optimizer], "--learning_rate", _num(s.learning_rate)]
    if s.optimizer == "AdaFactor":
        argv += ["--optimizer_args", *ADAFACTOR_ARGS]
    argv += lr_schedule(s.lr_scheduler, s.lr_warmup_steps, seg.total_steps, launch.num_processes)
    argv += ["--gradient_checkpointing", "--network_module", NETWORK_MODULE]
    argv += ["--network_dim", str(s.rank), "--network_alpha", _num(s.alpha)]
    argv += ["--max_train_steps", str(seg.max_train_steps), "--seed", str(s.seed)]
    argv += _saving(seg) + ["--save_precision", s.save_precision]
    argv += ["--output_dir", str(seg.output_dir), "--output_name", s.output_name, "--logging_dir", str(seg.logging_dir)]
    argv += ["--max_data_loader_n_workers", str(s.max_data_loader_n_workers)]
    if s.max_data_loader_n_workers > 0:
        argv.append("--persistent_data_loader_workers")
    if seg.resume is not None:
        argv += ["--resume", str(seg.resume)]
    argv += musubi_flags(memory, sampling=seg.sample_prompts is not None)["train"]
    argv += _sampling(s, weights, seg)
    for key, value in (seg.metadata or {}).items():
        argv += [f"--metadata_{key}", value]
    return Command("train", TRAIN, tuple(argv), launcher(s, launch))


def lr_schedule(name: str, warmup_steps: int, total_steps: int, num_processes: int) -> list[str]:
    """The LR schedule as an absolute function of the global step. musubi builds its schedulers from the segment's
    --max_train_steps, so after a resume a decaying one restarts (linear sits at 0, cosine climbs back,
    musubi-tuner#497); a dotted callable in --lr_scheduler_type with the whole run's horizon in
    --lr_scheduler_args (read with ast.literal_eval) survives a resume exactly, because accelerate restores the
    scheduler's step count. Steps count x num_processes, as musubi's AcceleratedScheduler steps (contract
    musubi-training.md §1.3)."""
    warmup, total = warmup_steps * num_processes, total_steps * num_processes
    if name == "constant":
        return []  # musubi's default, unaffected by the horizon
    if name == "constant_with_warmup":
        return [
            "--lr_scheduler_type",
            "transformers.get_constant_schedule_with_warmup",
            "--lr_scheduler_args",
            f"num_warmup_steps={warmup}",
        ]
    fn = {"cosine": "get_cosine_schedule_with_warmup", "linear": "get_linear_schedule_with_warmup"}[name]
    return [
        "--lr_scheduler_type",
        f"transformers.{fn}",
        "--lr_scheduler_args",
        f"num_warmup_steps={warmup}",
        f"num_training_steps={total}",
    ]


def _saving(seg: TrainSegment) -> list[str]:
    """States with every save; musubi's pruning keeps the last files of this segment (its numbers are the
    segment's own, so it never reaches an earlier segment's files, which live elsewhere)."""
    argv = ["--save_state"]
    if seg.save_every_n_epochs:
        argv += ["--save_every_n_epochs", str(seg.save_every_n_epochs), "--save_last_n_epochs", str(seg.keep_models)]
        argv += ["--save_last_n_epochs_state", str(seg.keep_states)]
    if seg.save_every_n_steps:
        # musubi's step pruning counts steps, not files: last_n = (N - 1) x every keeps N (train_utils.py)
        every = seg.save_every_n_steps
        argv += ["--save_every_n_steps", str(every), "--save_last_n_steps", str((seg.keep_models - 1) * every)]
        argv += ["--save_last_n_steps_state", str(max(1, (seg.keep_states - 1) * every))]
    return argv


def _sampling(s: Settings, weights: dict[str, Path], seg: TrainSegment) -> list[str]:
    """Samples need the VAE and both text encoders on the train command (and SigLIP for i2v): the prompts are
    encoded at start-up (contract §3c)."""
    if seg.sample_prompts is None:
        return []
    argv = ["--sample_prompts", str(seg.sample_prompts), "--vae", str(weights["vae"])]
    argv += ["--text_encoder", str(weights["text_encoder"]), "--byt5", str(weights["byt5"])]
    if s.task == "i2v":
        argv += ["--image_encoder", str(weights["image_encoder"])]
    if s.device == "cpu":
        argv += ["--vae_dtype", "bfloat16"]
    if seg.sample_every_n_steps:
        argv += ["--sample_every_n_steps", str(seg.sample_every_n_steps)]
    if seg.sample_every_n_epochs:
        argv += ["--sample_every_n_epochs", str(seg.sample_every_n_epochs)]
    if seg.sample_at_first:
        argv.append("--sample_at_first")
    return argv


def minimum_metadata(s: Settings) -> dict[str, str]:
    """The metadata keys musubi writes even with --no_metadata (trainer_base SS_METADATA_MINIMUM_KEYS), for a LoRA
    file made without musubi (from a training state): base model version, network module, dim and alpha."""
    return {
        "ss_base_model_version": BASE_MODEL_VERSION,
        "ss_network_module": NETWORK_MODULE,
        "ss_network_dim": str(s.rank),
        "ss_network_alpha": str(float(s.alpha)),  # musubi: str() of the float argparse gives
    }


# the train command's flags that name something it reads (a multi-node machine checks it sees them all)
READ_FLAGS = ("--dit", "--vae", "--text_encoder", "--byt5", "--image_encoder", "--dataset_config", "--resume")
READ_FLAGS += ("--sample_prompts",)


def read_paths(argv: tuple[str, ...] | list[str]) -> dict[str, Path]:
    """flag -> path for every file or folder a musubi command reads (READ_FLAGS present in `argv`)."""
    return {a: Path(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a in READ_FLAGS}


def convert(src: Path, dst: Path) -> Command:
    """convert_hunyuan_video_1_5_lora_to_comfy SRC DST: musubi LoRA -> ComfyUI LoRA (q/k/v fused into qkv)."""
    return Command("convert", CONVERT, (str(src), str(dst)))


def trained_lora(output_dir: Path, output_name: str) -> Path:
    """The final LoRA musubi writes at the end of training: OUTPUT_DIR/OUTPUT_NAME.safetensors."""
    return output_dir / f"{output_name}.safetensors"


def _num(x: float) -> str:
    """A number as musubi's argparse reads it: 32.0 -> '32', 1e-4 -> '0.0001'."""
    return f"{x:g}" if float(x).is_integer() else repr(float(x))
