"""The machinery of VRAM presets: a family's preset table resolved with the user's knobs into a memory plan, the
preset for a GPU's size, and what to lower when an estimate does not fit. The numbers (preset tables, the model's
sizes, the estimate's formulas, musubi's flags per entry point) are each family's (`MemoryModel`, filled in
hvlora/families/<name>/memory.py); nothing here does I/O.

Units: every memory figure here is in GiB (2**30 bytes), the unit nvidia-smi's MiB and NVML's bytes convert to and the
unit a "24 GB" card's capacity really is (RTX 4090: 24,564 MiB = 23.99 GiB). Fields and arguments are named ``..._gb``
and the console prints "GB", but they are GiB; model file sizes quoted in decimal GB (the DiT's "16.7 GB") are given
as bytes and converted. Presets are named by the card's nominal size (16, 24, 32, 48, 80).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..core.fsutil import GIB

# A card reports a little less than its nominal size: the driver and ECC keep some (A100 40GB: 39.4 GiB, H100 80GB:
# 79.6 GiB, a "24 GB" card 23.5-24.0 GiB). A preset is picked when the card has at least (1 - margin) x its size.
# 4% admits all of those and keeps an L40S (48 GB, 44.4 GiB with ECC on: 7.5% short) on 32, because a preset 48 is
# sized for what needs ~45 GiB (see a family's preset table).
PRESET_MARGIN = 0.04

# The memory settings (config options, musubi's flag names) a preset sets and a user may set one by one.
KNOBS = (
    "fp8",
    "blocks_to_swap",
    "block_swap_h2d_only",
    "gradient_checkpointing_cpu_offload",
    "fp8_vl",
    "vae_sample_size",
    "vae_enable_patch_conv",
    "text_encoder_cpu",
)


# The total memory (MiB, as nvidia-smi and NVML report it) of the cards a preset of that nominal size is made for:
# 16 = RTX 4060 Ti 16GB / 4080, 24 = RTX 3090 / 4090, 32 = RTX 5090, 48 = RTX A6000 / L40S, 80 = H100 80GB (an A100
# 80GB reports 81920). benchmarks/gpu_presets.py caps a bigger GPU to these.
CARD_MIB = {16: 16_380, 24: 24_564, 32: 32_607, 48: 49_140, 80: 81_559}


@dataclass(frozen=True)
class MemoryPlan:
    """The memory knobs of one run (never data settings) and where each came from.

    - preset: the preset (nominal GB) the plan started from, or None (no preset: musubi's defaults).
    - fp8: DiT in fp8, musubi train --fp8_base --fp8_scaled.
    - blocks_to_swap: DiT blocks kept in CPU RAM and streamed in (train --blocks_to_swap; the family's maximum).
    - block_swap_h2d_only: host-to-device-only streaming (train --block_swap_h2d_only; needs swap > 0).
    - gradient_checkpointing_cpu_offload: checkpointed block inputs in CPU RAM (train).
    - fp8_vl: the VL text encoder in fp8 (cache_text_encoder_outputs --fp8_vl; also train's sample-prompt encoding).
    - vae_sample_size: VAE tile size in pixels for the latent cache (cache_latents --vae_sample_size; None = no flag,
      musubi's default; 0 = no tiling).
    - vae_enable_patch_conv: VAE convolutions split in time (cache_latents --vae_enable_patch_conv).
    - text_encoder_cpu: the text-encoder cache stage runs on the CPU (its --device cpu): no VRAM, slower, the text
      encoder in host RAM (families whose script has no reduced-precision text encoder).
    - sources: knob -> "preset 24", "default" or the user's flag ("--fp8", or the origin the caller passed).
    """

    preset: int | None
    fp8: bool
    blocks_to_swap: int
    block_swap_h2d_only: bool
    gradient_checkpointing_cpu_offload: bool
    fp8_vl: bool
    vae_sample_size: int | None
    vae_enable_patch_conv: bool
    text_encoder_cpu: bool = False
    sources: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Estimate:
    """An ESTIMATE (not a measurement) of one stage's memory, in GiB.

    - stage: "train", "cache_latents" or "cache_text_encoder_outputs"; peak_at: the moment of the peak ("step",
      "sampling", "sample prompts", "encode").
    - peak_vram_gb: per GPU; parts: its breakdown (sums to it).
    - host_ram_gb: the whole machine (per-process peak x num_gpus); host_parts: one process's breakdown.
    - per_block_gb: VRAM one more swapped block frees (train; 0 elsewhere), for fits()' advice.
    """

    stage: str
    peak_at: str
    peak_vram_gb: float
    host_ram_gb: float
    parts: dict[str, float]
    host_parts: dict[str, float]
    plan: MemoryPlan
    num_gpus: int = 1
    per_block_gb: float = 0.0


def gib_parts(parts: Mapping[str, float]) -> dict[str, float]:
    """Bytes -> GiB, part by part."""
    return {k: v / GIB for k, v in parts.items()}


def train_estimate(
    moments: Mapping[str, Mapping[str, float]],
    host: Mapping[str, float],
    plan: MemoryPlan,
    num_gpus: int,
    per_block_bytes: float,
) -> Estimate:
    """The train stage's Estimate from a family's parts in bytes: moments ("step", and with sampling "sampling" and
    "sample prompts") -> VRAM parts per GPU, the peak being the moment with the largest sum; host: one process's
    parts (host RAM is that x num_gpus); per_block_bytes: what one more swapped block frees."""
    peak_at = max(moments, key=lambda k: sum(moments[k].values()))
    parts, host_parts = gib_parts(moments[peak_at]), gib_parts(host)
    return Estimate(
        "train", peak_at, sum(parts.values()), num_gpus * sum(host_parts.values()), parts, host_parts, plan,
        num_gpus, per_block_bytes / GIB,
    )  # fmt: skip


@dataclass(frozen=True)
class MemoryModel:
    """A family's memory facts, with the preset machinery that works on them.

    - title: the model's name in messages; table: preset (nominal GB) -> knob values (a knob a row leaves out keeps
      its default); defaults: the knob values without a preset (musubi's defaults).
    - num_blocks: the DiT's blocks; max_blocks_to_swap: the most musubi swaps; swap_ladder: the --blocks_to_swap
      steps failure advice walks (ascending, from 0).
    - vae_tile_step, vae_min_tile: --vae_sample_size must be a multiple of the step, at least the minimum;
      vae_default_tile: musubi's --vae_sample_size default.
    - musubi_flags(plan, sampling): {"cache_latents", "cache_text_encoder_outputs", "train"} -> the argv fragment of
      each entry point for the plan (sampling: the train script also encodes prompts and decodes samples).
    - tokens(width, height, frames): the DiT's image tokens of one clip.
    - estimate(plan, largest_bucket, rank, optimizer, num_gpus, sampling, *, task): the train stage's Estimate;
      cache_estimates(plan, largest_bucket, *, task): {"cache_latents", "cache_text_encoder_outputs"} -> Estimate.
    - knobs: the KNOBS its scripts take (a user's other knobs are refused).
    - exclusive: (knob, knob, why) pairs of boolean knobs musubi cannot run together (why: what happens); resolve()
      refuses the pair when the user sets both, and turns the preset's one off when the user sets the other.
    """

    title: str
    table: Mapping[int, Mapping[str, object]]
    defaults: Mapping[str, object]
    num_blocks: int
    max_blocks_to_swap: int
    swap_ladder: tuple[int, ...]
    vae_tile_step: int
    vae_min_tile: int
    vae_default_tile: int
    musubi_flags: Callable[..., dict[str, list[str]]]
    tokens: Callable[[int, int, int], int]
    estimate: Callable[..., Estimate]
    cache_estimates: Callable[..., dict[str, Estimate]]
    knobs: tuple[str, ...] = KNOBS
    exclusive: tuple[tuple[str, str, str], ...] = ()

    @property
    def presets(self) -> tuple[int, ...]:
        """The preset sizes (nominal GB of VRAM of the cards each is made for), ascending."""
        return tuple(sorted(self.table))

    def preset_for_vram(self, total_gib: float) -> int:
        """The largest preset made for a GPU with total_gib GiB of memory (e.g. GpuInfo.total_gib or the smallest of
        several GPUs). A preset fits when total_gib >= preset x (1 - PRESET_MARGIN): with presets 16..80, 23.5-24.0
        GiB -> 24, 39.4 (A100 40GB) -> 32, 44.4 (L40S) -> 32, 47.99 (A6000) -> 48, 79.6 (H100) -> 80, 139.8 (H200)
        -> 80. Below the smallest preset it still answers the smallest; preset_warning() then says so. Raises
        ValueError for a negative or NaN size."""
        if not total_gib >= 0:
            raise ValueError(f"GPU memory must be a size in GiB >= 0, got {total_gib!r}")
        fitting = [p for p in self.presets if total_gib >= p * (1 - PRESET_MARGIN)]
        return fitting[-1] if fitting else self.presets[0]

    def preset_warning(self, total_gib: float) -> str | None:
        """A warning when the GPU is smaller than the smallest preset is made for (preset_for_vram still answers
        it), else None. total_gib in GiB."""
        smallest = self.presets[0]
        if total_gib >= smallest * (1 - PRESET_MARGIN):
            return None
        return (
            f"the GPU has {total_gib:.1f} GB, less than the {smallest} GB the smallest preset is made for: training "
            f"will probably run out of memory; try --blocks_to_swap {self.max_blocks_to_swap}, a lower --resolution "
            "and 1-frame --target_frames"
        )

    def resolve(
        self, preset: int | None, user: Mapping[str, object], origin: Mapping[str, str] | None = None
    ) -> MemoryPlan:
        """Knobs from the preset's table row (None: all defaults), then every knob in `user` (the knobs the user
        set explicitly, keyed by knob name, see KNOBS) wins. origin optionally names where a user knob came from
        (default "--<knob>"). As README's --fp8 promises, a user fp8=True also turns fp8_vl on unless fp8_vl is
        given (when the family takes fp8_vl).

        musubi's rules: blocks_to_swap <= max_blocks_to_swap (enable_block_swap asserts it); block_swap_h2d_only
        only with blocks_to_swap > 0 (and --gradient_checkpointing, which hvlora always passes;
        BlockSwapConfig.from_args). A preset's h2d_only is dropped when the user sets blocks_to_swap 0.

        Knobs in `exclusive` pairs: both set by the user is an error; one set by the user turns the other (from the
        preset) off, and its source says why.

        Raises ValueError for an unknown preset or knob, a value of the wrong type or range, and impossible user
        combos (block_swap_h2d_only without any swapped blocks, both knobs of an exclusive pair)."""
        if preset is not None and preset not in self.table:
            raise ValueError(f"unknown VRAM preset {preset!r}; choose one of {', '.join(map(str, self.presets))}")
        unknown = sorted(set(user) - set(self.knobs))
        if unknown:
            raise ValueError(f"unknown memory setting(s) {', '.join(unknown)}; known: {', '.join(self.knobs)}")
        origin = origin or {}

        def label(knob: str) -> str:
            return origin.get(knob, f"--{knob}")

        values = dict(self.defaults)
        sources = dict.fromkeys(KNOBS, "default")
        if preset is not None:
            for knob, value in self.table[preset].items():
                values[knob] = value
                sources[knob] = f"preset {preset}"
        for knob, value in user.items():
            values[knob] = self._check_knob(knob, value, label(knob))
            sources[knob] = label(knob)
        if user.get("fp8") is True and "fp8_vl" not in user and "fp8_vl" in self.knobs:
            values["fp8_vl"] = True
            sources["fp8_vl"] = label("fp8")

        if values["block_swap_h2d_only"] and values["blocks_to_swap"] == 0:
            if "block_swap_h2d_only" in user:
                why = "is 0" if "blocks_to_swap" in user else f"is 0 ({sources['blocks_to_swap']})"
                raise ValueError(
                    f"{label('block_swap_h2d_only')} streams swapped blocks, but blocks_to_swap {why}: "
                    f"add --blocks_to_swap N (1-{self.max_blocks_to_swap}) or drop block_swap_h2d_only"
                )
            values["block_swap_h2d_only"] = False
            sources["block_swap_h2d_only"] = f"off: no blocks swapped ({sources['blocks_to_swap']})"
        for a, b, why in self.exclusive:
            if not (values[a] and values[b]):
                continue
            if (a in user) == (b in user):  # both the user's, or both a preset's (a table error)
                raise ValueError(f"{label(a)} and {label(b)} cannot be used together: {why}; drop one of them")
            mine, other = (a, b) if a in user else (b, a)
            values[other] = False
            sources[other] = f"off: {why} ({label(mine)})"
        return MemoryPlan(preset=preset, sources=sources, **values)  # type: ignore[arg-type]

    def _check_knob(self, knob: str, value: object, label: str) -> object:
        """One user knob value, type- and range-checked. Raises ValueError naming label."""
        if knob == "blocks_to_swap":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{label}: expected a whole number 0-{self.max_blocks_to_swap}, got {value!r}")
            if not 0 <= value <= self.max_blocks_to_swap:
                raise ValueError(
                    f"{label} {value}: {self.title} has {self.num_blocks} blocks and musubi swaps at most "
                    f"{self.max_blocks_to_swap} (0 = no swap)"
                )
            return value
        if knob == "vae_sample_size":
            if value is None:
                return None
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{label}: expected a tile size in pixels (0 = no tiling), got {value!r}")
            step, least = self.vae_tile_step, self.vae_min_tile
            if value and (value < least or value % step):
                raise ValueError(
                    f"{label} {value}: use 0 (no tiling) or a multiple of {step} from {least} up (musubi uses "
                    f"{self.vae_default_tile}, {2 * self.vae_default_tile})"
                )
            return value
        if not isinstance(value, bool):
            raise ValueError(f"{label}: expected true or false, got {value!r}")
        return value

    def fits(self, est: Estimate, gpu_total_gb: float, host_ram_gb: float) -> list[str]:
        """Warnings (empty when it fits) when est's peak exceeds gpu_total_gb (the GPU's total memory in GiB, e.g.
        the smallest GpuInfo.total_gib) or its host RAM exceeds host_ram_gb (GiB, e.g. gpu.host_available_bytes() /
        2**30), each naming what to lower. Also warns when the peak is within 5% of the GPU (a desktop or other
        processes may push it over). Never raises."""
        out: list[str] = []
        what = _STAGE_WORDS.get(est.stage, est.stage)
        if est.peak_vram_gb > gpu_total_gb:
            advice = self._vram_advice(est, gpu_total_gb, est.peak_vram_gb - 0.95 * gpu_total_gb)
            out.append(f"{what}: estimated peak {est.peak_vram_gb:.1f} GB > {gpu_total_gb:.1f} GB GPU: {advice}")
        elif est.peak_vram_gb > 0.95 * gpu_total_gb:
            advice = self._vram_advice(est, gpu_total_gb, est.peak_vram_gb - 0.9 * gpu_total_gb)
            out.append(
                f"{what}: estimated peak {est.peak_vram_gb:.1f} GB is within 5% of the {gpu_total_gb:.1f} GB GPU, so "
                f"other processes on it may push it over: {advice}"
            )
        if est.host_ram_gb > host_ram_gb:
            plan, tips = est.plan, []
            if est.stage == "train" and plan.blocks_to_swap:
                tips.append(f"a lower --blocks_to_swap (each block holds {est.per_block_gb:.2f} GB per GPU process)")
            if est.stage == "train" and plan.gradient_checkpointing_cpu_offload:
                tips.append("no --gradient_checkpointing_cpu_offload")
            if est.num_gpus > 1:
                tips.append(f"fewer GPUs (each of the {est.num_gpus} processes keeps its own copy)")
            tips.append("more RAM or swap space (musubi recommends 64 GB)")
            out.append(
                f"{what}: estimated host RAM {est.host_ram_gb:.1f} GB > {host_ram_gb:.1f} GB available: "
                + ", or ".join(tips)
            )
        return out

    def _vram_advice(self, est: Estimate, gpu_total_gb: float, excess_gb: float) -> str:
        """What to lower to free excess_gb GiB in est's stage on a gpu_total_gb GiB GPU."""
        plan = est.plan
        tips: list[str] = []
        if est.stage == "cache_text_encoder_outputs":
            if not plan.fp8_vl and "fp8_vl" in self.knobs:
                tips.append("--fp8_vl")
            if not plan.text_encoder_cpu and "text_encoder_cpu" in self.knobs:
                tips.append("--text_encoder_cpu (encodes on the CPU)")
            tips.append("a smaller text-encoder batch size or shorter captions")
            return ", or ".join(tips)
        if est.stage == "cache_latents":
            default = self.vae_default_tile
            size = default if plan.vae_sample_size is None else plan.vae_sample_size
            if "vae_sample_size" in self.knobs and (size == 0 or size > self.vae_min_tile):
                tips.append(f"--vae_sample_size {default if size == 0 or size > default else self.vae_min_tile}")
            if not plan.vae_enable_patch_conv and "vae_enable_patch_conv" in self.knobs:
                tips.append("--vae_enable_patch_conv")
            tips.append("a lower --resolution or shorter --target_frames")
            return ", or ".join(tips)
        target = self.preset_for_vram(gpu_total_gb)
        if plan.preset is None or target < plan.preset:
            tips.append(f"use --vram {target}")
        elif plan.preset > self.presets[0]:
            tips.append(f"use --vram {max(p for p in self.presets if p < plan.preset)}")
        if not plan.fp8:
            tips.append("--fp8")
        if plan.blocks_to_swap < self.max_blocks_to_swap and est.per_block_gb > 0:
            need = plan.blocks_to_swap + max(1, math.ceil(excess_gb / est.per_block_gb))
            tips.append(f"--blocks_to_swap {min(need, self.max_blocks_to_swap)}")
        if est.peak_at == "sample prompts" and not plan.fp8_vl and "fp8_vl" in self.knobs:
            tips.append("--fp8_vl")
        tips.append("a lower --resolution or shorter --target_frames")
        return ", or ".join(tips)


_STAGE_WORDS = {"train": "training", "cache_latents": "latent caching", "cache_text_encoder_outputs": "text encoding"}
