"""The run's plan, computed once right after the data preflight and before anything is downloaded: the memory knobs
(the family's presets, presets.py), the launch shape (GPUs, machines), the step counts, and the estimate of what it
needs. The dry run, the cache check, resume and the train stage all read this one object, so they cannot disagree.

Mirrors musubi's step arithmetic (training/trainer_base.py): the DataLoader yields one batch per dataset item
(batch_size 1 per block), `len(dataloader) / num_processes / gradient_accumulation_steps` optimizer steps per epoch,
rounded up.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..core.config import Settings
from ..core.errors import ConfigError
from . import gpu, presets


@dataclass(frozen=True)
class Launch:
    """How training is launched: `num_processes` GPU processes in all (accelerate's --num_processes, across
    machines), `gpus_here` on this machine; multi-node settings as accelerate names them."""

    num_processes: int
    gpus_here: int
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int = 29500

    @property
    def multi(self) -> bool:
        return self.num_processes > 1


@dataclass(frozen=True)
class Plan:
    """What a run will do. `items`: training items per epoch before num_repeats (musubi's cached items);
    `steps_per_epoch` and `total_steps` are optimizer steps (true global steps, whatever the resumes);
    `gpus`: the GPUs seen (empty without a driver: a plan needs none); `notes` are printed with the plan."""

    memory: presets.MemoryPlan
    launch: Launch
    items: int
    steps_per_epoch: int
    total_steps: int
    largest_bucket: tuple[int, int, int] | None
    gpus: list[gpu.GpuInfo] = field(default_factory=list)
    host_ram_gib: float | None = None
    estimate: presets.Estimate | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def total_epochs(self) -> float:
        return self.total_steps / self.steps_per_epoch if self.steps_per_epoch else 0.0


def make(
    s: Settings,
    buckets: dict[tuple[int, int, int], int],
    gpus: list[gpu.GpuInfo] | None = None,
    host_ram: int | None = None,
) -> Plan:
    """The plan for settings `s` and the preflight's items per bucket ((w, h, frames) -> count). `gpus` and
    `host_ram` (bytes) are detected when None (injectable for tests). Raises ConfigError for an impossible launch."""
    gpus = gpu.detect_gpus() if gpus is None else gpus
    used = _gpus_used(s, gpus)
    notes: list[str] = []
    memory = _memory(s, used, notes)
    launch = _launch(s, gpus, notes)
    items = sum(buckets.values())
    per_epoch = math.ceil(items * s.num_repeats / launch.num_processes) if items else 0
    total = s.max_train_steps if s.max_train_steps > 0 else s.epochs * per_epoch
    largest = max(buckets, key=lambda b: s.family.memory_for(s.dit_variant).tokens(*b)) if buckets else None
    host = (gpu.host_available_bytes() if host_ram is None else host_ram) / presets.GIB
    plan = Plan(memory, launch, items, per_epoch, total, largest, used, host, notes=notes)
    return _with_estimate(s, plan)


def _gpus_used(s: Settings, gpus: list[gpu.GpuInfo]) -> list[gpu.GpuInfo]:
    if s.device == "cpu":
        return []
    n = len(gpus) if s.num_gpus == "all" else s.num_gpus
    return gpus[:n]


def _memory(s: Settings, used: list[gpu.GpuInfo], notes: list[str]) -> presets.MemoryPlan:
    """The preset (--vram, or the smallest used GPU's memory for auto), then the knobs the user set win."""
    model = s.family.memory_for(s.dit_variant)
    preset = None
    if s.vram != "auto":
        preset = int(s.vram)
    elif used:
        smallest = min(g.total_gib for g in used)
        preset = model.preset_for_vram(smallest)
        warning = model.preset_warning(smallest)
        if warning:
            notes.append(warning)
    elif s.device == "cuda":
        notes.append("no GPU seen (no NVIDIA driver here): no memory preset; pass --vram N to plan for an N GB GPU")
    user = {k: getattr(s, k) for k in presets.KNOBS if getattr(s, k) is not None}
    try:
        return model.resolve(preset, user)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def launch_for(s: Settings, gpus: list[gpu.GpuInfo]) -> Launch:
    """The launch these settings make on a machine with `gpus` (machines 1.. of a multi-node run need no plan)."""
    return _launch(s, gpus, [])


def _launch(s: Settings, gpus: list[gpu.GpuInfo], notes: list[str]) -> Launch:
    if s.device == "cpu":  # one process per machine (a multi-node smoke run: gloo)
        return Launch(s.num_machines, 1, s.num_machines, s.machine_rank, s.main_process_ip, s.main_process_port)
    if s.num_gpus == "all":
        here = len(gpus) or 1
        if not gpus:
            notes.append("num_gpus all: no GPU seen here, so the plan assumes 1 per machine")
    else:
        here = s.num_gpus
    return Launch(here * s.num_machines, here, s.num_machines, s.machine_rank, s.main_process_ip, s.main_process_port)


def _with_estimate(s: Settings, plan: Plan) -> Plan:
    if plan.largest_bucket is None or s.device == "cpu":  # a CPU smoke run has no VRAM to plan
        return plan
    model = s.family.memory_for(s.dit_variant)
    est = model.estimate(
        plan.memory, plan.largest_bucket, s.rank, s.optimizer, plan.launch.gpus_here, sampling=False, task=s.task
    )
    warnings = []
    if plan.gpus:
        warnings = model.fits(est, min(g.total_gib for g in plan.gpus), plan.host_ram_gib or float("inf"))
    elif plan.memory.preset is not None and plan.host_ram_gib:
        warnings = model.fits(est, float(plan.memory.preset), plan.host_ram_gib)
    return dataclasses.replace(plan, estimate=est, warnings=warnings)


def describe(s: Settings, plan: Plan) -> list[str]:
    """The plan as the console shows it before stage 1: the preset and where each knob came from, the launch, the
    steps, and the estimate (labelled as such) with any warning."""
    m = plan.memory
    preset = f"--vram {m.preset}" if m.preset else "no preset"
    if s.vram == "auto" and m.preset:
        preset += f" (auto: {min(g.total_gib for g in plan.gpus):.1f} GB GPU)"
    knobs = ", ".join(f"{k}={getattr(m, k)} ({m.sources[k]})" for k in presets.KNOBS if m.sources[k] != "default")
    lines = [f"memory: {preset}" + (f"; {knobs}" if knobs else "; musubi's defaults")]
    la = plan.launch
    if la.multi:
        lines.append(
            f"launch: {la.num_processes} GPU processes ({la.gpus_here} per machine x {la.num_machines} machine(s)); "
            f"effective batch {la.num_processes} (GPUs x batch size 1)"
        )
    lines.append(
        f"steps: {plan.total_steps} ({plan.steps_per_epoch} per epoch = {plan.items} items x num_repeats "
        f"{s.num_repeats}" + (f" / {la.num_processes} GPUs" if la.multi else "") + f"; {plan.total_epochs:g} epochs)"
    )
    if plan.estimate is not None:
        e, (w, h, f) = plan.estimate, plan.largest_bucket
        lines.append(
            f"estimate (arithmetic, not measured): peak VRAM {e.peak_vram_gb:.1f} GB per GPU for the largest bucket "
            f"{w}x{h}x{f} ({s.family.memory_for(s.dit_variant).tokens(w, h, f):,} tokens); host RAM {e.host_ram_gb:.1f} GB"
            + (f" of {plan.host_ram_gib:.1f} GB available" if plan.host_ram_gib else "")
        )
    lines += [f"note: {n}" for n in plan.notes]
    lines += [f"warning: {w}" for w in plan.warnings]
    return lines
