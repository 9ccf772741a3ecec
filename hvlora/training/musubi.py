"""The musubi-tuner v0.3.4 argv every architecture shares: a `Command` (module, argv, launcher), the `accelerate
launch` flags, and the flags of musubi's common NetworkTrainer (training/trainer_base.py: optimizer, LR schedule,
saving, sampling cadence, metadata). Each family adds its entry points and model flags (families/<name>/musubi.py);
the same objects drive a real run and `--dry_run`'s plan.json, so what is printed is what runs. Flags, defaults and
traps are from the contract (shared/musubi-hv15.md §3, musubi-training.md).
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: a family's modules import this one, and config imports the family registry
    from ..core.config import Settings
    from .plan import Launch

ACCELERATE_LAUNCH = "accelerate.commands.launch"  # `accelerate launch` as a module of the running interpreter

# Our --optimizer choices -> musubi --optimizer_type (trainer_base.get_optimizer, case-insensitive there).
OPTIMIZER_TYPES = {"adamw8bit": "AdamW8bit", "adamw": "AdamW", "AdaFactor": "Adafactor"}
# musubi's Adafactor defaults to relative_step=True, which ignores --learning_rate; fix the rate like kohya's docs.
ADAFACTOR_ARGS = ("scale_parameter=False", "relative_step=False", "warmup_init=False")


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
    seg: TrainSegment,
    launch: Launch,
    *,
    module: str,
    model: list[str],
    network_module: str,
    memory: list[str],
    sample_models: list[str],
) -> Command:
    """A family's `<arch>_train_network` with every common flag musubi needs in practice (contract §3c): the family's
    `model` flags first (--dit, --task, its timestep settings), an attention mode, an optimizer type (its empty
    default crashes), output_dir/output_name, a real learning rate and network_dim (defaults 2e-6 and 4) with the
    family's `network_module`; its `memory` flags; always `--seed` (each rank would otherwise shuffle its buckets
    differently); always `--max_train_steps` (musubi restarts its counters at 0 on --resume, so the segment gets the
    remaining steps) with the schedule of the whole run (lr_schedule). `sample_models` (the files the script needs to
    make samples) follow the sample prompts (the family gives them only when the segment has prompts)."""
    argv = [*model, "--dataset_config", str(dataset_config), "--sdpa", "--mixed_precision", "bf16"]
    argv += ["--optimizer_type", OPTIMIZER_TYPES[s.optimizer], "--learning_rate", cli_number(s.learning_rate)]
    if s.optimizer == "AdaFactor":
        argv += ["--optimizer_args", *ADAFACTOR_ARGS]
    argv += lr_schedule(s.lr_scheduler, s.lr_warmup_steps, seg.total_steps, launch.num_processes)
    argv += ["--gradient_checkpointing", "--network_module", network_module]
    argv += ["--network_dim", str(s.rank), "--network_alpha", cli_number(s.alpha)]
    argv += ["--max_train_steps", str(seg.max_train_steps), "--seed", str(s.seed)]
    argv += _saving(seg) + ["--save_precision", s.save_precision]
    argv += ["--output_dir", str(seg.output_dir), "--output_name", s.output_name, "--logging_dir", str(seg.logging_dir)]
    argv += ["--max_data_loader_n_workers", str(s.max_data_loader_n_workers)]
    if s.max_data_loader_n_workers > 0:
        argv.append("--persistent_data_loader_workers")
    if seg.resume is not None:
        argv += ["--resume", str(seg.resume)]
    argv += memory
    argv += _sampling(seg, sample_models)
    for key, value in (seg.metadata or {}).items():
        argv += [f"--metadata_{key}", value]
    return Command("train", module, tuple(argv), launcher(s, launch))


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


def _sampling(seg: TrainSegment, sample_models: list[str]) -> list[str]:
    """Samples need the family's models on the train command (the prompts are encoded at start-up, contract §3c)
    and the cadence."""
    if seg.sample_prompts is None:
        return []
    argv = ["--sample_prompts", str(seg.sample_prompts), *sample_models]
    if seg.sample_every_n_steps:
        argv += ["--sample_every_n_steps", str(seg.sample_every_n_steps)]
    if seg.sample_every_n_epochs:
        argv += ["--sample_every_n_epochs", str(seg.sample_every_n_epochs)]
    if seg.sample_at_first:
        argv.append("--sample_at_first")
    return argv


def minimum_metadata(s: Settings, base_model_version: str, network_module: str) -> dict[str, str]:
    """The metadata keys musubi writes even with --no_metadata (trainer_base SS_METADATA_MINIMUM_KEYS), for a LoRA
    file made without musubi (from a training state): the architecture's ss_base_model_version (its
    ARCHITECTURE_*_FULL), the --network_module, dim and alpha."""
    return {
        "ss_base_model_version": base_model_version,
        "ss_network_module": network_module,
        "ss_network_dim": str(s.rank),
        "ss_network_alpha": str(float(s.alpha)),  # musubi: str() of the float argparse gives
    }


# the flags of the common trainer that name something a train command reads
READ_FLAGS = ("--dataset_config", "--resume", "--sample_prompts")


def read_paths(argv: tuple[str, ...] | list[str], model_flags: tuple[str, ...]) -> dict[str, Path]:
    """flag -> path for every file or folder a musubi train command reads: the architecture's `model_flags` (e.g.
    --dit, --vae) and the common READ_FLAGS present in `argv`."""
    flags = (*model_flags, *READ_FLAGS)
    return {a: Path(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a in flags}


def trained_lora(output_dir: Path, output_name: str) -> Path:
    """The final LoRA musubi writes at the end of training: OUTPUT_DIR/OUTPUT_NAME.safetensors."""
    return output_dir / f"{output_name}.safetensors"


def cli_number(x: float) -> str:
    """A number as musubi's argparse reads it: 32.0 -> '32', 1e-4 -> '0.0001'."""
    return f"{x:g}" if float(x).is_integer() else repr(float(x))
