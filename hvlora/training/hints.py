"""What a failed stage's log means and what to do next: a table of known failures, most specific first.

`classify(lines, returncode, ctx)` looks for the messages torch, musubi-tuner, accelerate, NCCL and bitsandbytes
print when a child process fails and returns a `Hint` (what happened, what to do, with exact flags) or None;
`format_hint` renders it for the pipeline to print after the log tail. The first kind whose patterns match wins,
so a kind whose message can appear as a side effect of another (an NCCL timeout after a rank ran out of memory, a
"No space left on device" that is really /dev/shm) comes after the kind it follows from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.fsutil import free_bytes as disk_free
from ..families import Family
from .progress import NAN_STOP_MARK  # the line the NaN guard (watch.py) writes into the log

# advice that changes what defines the LoRA (runs.py) says so: the same command with it trains a new run
NEW_RUN = " (this changes the LoRA: a new run starts)"
# accelerate's and torch elastic's report that the child failed: a wrapper, not a cause
_LAUNCHER_ERRORS = frozenset({"CalledProcessError", "ChildFailedError"})
_EXCEPTION_LINE = re.compile(r"^\s*(?:\[rank\d+\]:\s*)?(?:[A-Za-z_]\w*\.)*(?P<name>[A-Z]\w*)(?::|$)")
_EXCEPTION_SUFFIXES = ("Error", "Exception", "Invalid")  # voluptuous (musubi's dataset config) raises ...Invalid


@dataclass(frozen=True)
class HintContext:
    """The settings of the failed stage that decide which fix to suggest.

    stage: "cache_latents" | "cache_text_encoder_outputs" | "train" | "convert" | "download" ...; family: the run's
    model family (its presets, --blocks_to_swap ladder, bucket and frame steps, advice) and dit_variant its variant
    (None: the family's memory model); vram_preset: the --vram preset in use (16, 24, 32, 48, 80) or None; fp8,
    fp8_vl, blocks_to_swap, vae_sample_size (None: musubi's default; 0: no tiling), vae_enable_patch_conv: the memory
    knobs in use; samples_off: the flags that turn this run's samples off (sampling.off_flags; empty when it makes
    none); folders: name -> folder, the candidates for a full disk (names like "output_dir" are also the flags that
    move them); free_bytes: free space of a path (injectable for tests); checkpoint_bytes: size of one checkpoint +
    training state, when known.

    Every piece of advice is a change that alters what failed when followed (tests/test_hints_followed.py applies
    each to the settings); one that changes what the LoRA is says that it starts a new run.
    """

    stage: str
    family: Family
    dit_variant: str | None = None
    vram_preset: int | None = None
    fp8: bool = False
    fp8_vl: bool = False
    blocks_to_swap: int = 0
    vae_sample_size: int | None = None
    vae_enable_patch_conv: bool = False
    samples_off: tuple[str, ...] = ()
    resolution: tuple[int, int] = (960, 544)
    target_frames: tuple[int, ...] = (1, 13, 25)
    num_gpus: int = 1
    learning_rate: float = 1e-4
    optimizer: str = "adamw8bit"
    max_data_loader_n_workers: int = 2
    folders: dict[str, Path] = field(default_factory=dict)
    free_bytes: Callable[[Path], int] = disk_free
    checkpoint_bytes: int | None = None

    @property
    def memory(self):
        """The memory model (presets, swap ladder) of the run's family and variant."""
        return self.family.memory_for(self.dit_variant)


@dataclass(frozen=True)
class Hint:
    """A classified failure: `kind` (one of KINDS), `what` happened in one line, `todo`: fixes, most likely first."""

    kind: str
    what: str
    todo: tuple[str, ...]


Advice = tuple[str, tuple[str, ...]]


@dataclass(frozen=True)
class _Kind:
    """One failure kind: `patterns` identify it on their own; `weak` patterns (and `returncodes`) only when the log
    shows no Python exception of another kind, because they also appear as side effects of other failures."""

    name: str
    patterns: tuple[str, ...]
    advise: Callable[[list[str], HintContext], Advice]
    weak: tuple[str, ...] = ()
    returncodes: frozenset[int] = frozenset()

    def __post_init__(self):
        object.__setattr__(self, "_strong", _alternation(self.patterns))
        object.__setattr__(self, "_weak", _alternation(self.weak))

    def matches(self, lines: list[str], returncode: int | None, other_error: bool) -> bool:
        if _first(self._strong, lines):
            return True
        if other_error:
            return False
        return _first(self._weak, lines) is not None or returncode in self.returncodes


def _alternation(patterns: tuple[str, ...]) -> re.Pattern | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


def _first(rx: re.Pattern | None, lines: list[str]) -> re.Match | None:
    if rx is None:
        return None
    for line in lines:
        if m := rx.search(line):
            return m
    return None


def _has_other_error(lines: list[str]) -> bool:
    """True when some line is a Python exception other than the launcher's CalledProcessError/ChildFailedError."""
    for line in lines:
        m = _EXCEPTION_LINE.match(line)
        if m and m["name"].endswith(_EXCEPTION_SUFFIXES) and m["name"] not in _LAUNCHER_ERRORS:
            return True
    return False


# --- sizes and settings -------------------------------------------------------------------------------------------

_UNITS = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
_SIZE = r"[\d.]+ [KMG]iB"


def _gib(text: str | None) -> float | None:
    if not text:
        return None
    num, unit = text.split()
    return float(num) * _UNITS[unit] / 2**30


def _fmt_bytes(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _smaller_preset(ctx: HintContext, total_gib: float | None) -> int | None:
    """The preset to try: the next one below the current, or the one this GPU fits if that is lower still; with no
    preset in use, the one this GPU fits (when the OOM message says its size)."""
    memory = ctx.memory
    fits = memory.preset_for_vram(total_gib) if total_gib else None  # presets' rule for a GPU of this size
    if ctx.vram_preset is None:
        return fits
    now = _train_knobs(memory, ctx.vram_preset)
    below = [
        p for p in memory.presets if p < ctx.vram_preset and _train_knobs(memory, p) != now
    ]  # e.g. 48 trains as 80
    candidates = [p for p in (max(below, default=None), fits) if p is not None and p < ctx.vram_preset]
    return min(candidates, default=None)


def _more_swap(ctx: HintContext) -> int | None:
    """The next step of the family's --blocks_to_swap ladder (each step saves VRAM, costs speed)."""
    return next((s for s in ctx.memory.swap_ladder if s > ctx.blocks_to_swap), None)


def _train_knobs(memory, preset: int) -> tuple:
    m = memory.resolve(preset, {})
    return m.fp8, m.blocks_to_swap, m.block_swap_h2d_only, m.gradient_checkpointing_cpu_offload


def _less_swap(ctx: HintContext) -> int | None:
    return max((s for s in ctx.memory.swap_ladder if s < ctx.blocks_to_swap), default=None)


def _smaller_resolution(w: int, h: int, step: int, area: float = 0.7) -> tuple[int, int] | None:
    """About `area` times the pixels, same aspect, multiples of `step` (musubi's buckets); None below 256 px a side."""
    s = math.sqrt(area)
    nw, nh = (max(step, round(v * s / step) * step) for v in (w, h))
    return (nw, nh) if min(nw, nh) >= 256 and (nw, nh) != (w, h) else None


def _shorter_frames(frames: tuple[int, ...], k: int) -> tuple[int, ...] | None:
    """Drop the longest clip length; a single length > 1 becomes about half (kept k*n+1, k the VAE's frame step)."""
    if len(frames) > 1:
        return tuple(sorted(frames)[:-1])
    if frames and frames[0] > 1:
        return ((frames[0] - 1) // (2 * k) * k + 1,)
    return None


# --- advice per kind ----------------------------------------------------------------------------------------------

# torch >= 2.1: "Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.55 GiB of which 1.12 GiB is free.
# [Process N has ...] Including non-PyTorch memory, this process has 22.41 GiB memory in use."; older torch:
# "Tried to allocate 1024.00 MiB (GPU 0; 15.90 GiB total capacity; ...".
_OOM_NEW = re.compile(
    rf"Tried to allocate (?P<alloc>{_SIZE})\. GPU \d+ has a total capacity of (?P<total>{_SIZE}) "
    rf"of which (?P<free>{_SIZE}) is free\..*?this process has (?P<used>{_SIZE}) memory in use"
)
_OOM_OLD = re.compile(rf"Tried to allocate (?P<alloc>{_SIZE}) \(GPU \d+; (?P<total>{_SIZE}) total capacity")


def _cuda_oom(lines: list[str], ctx: HintContext) -> Advice:
    sizes = _first(_OOM_NEW, lines) or _first(_OOM_OLD, lines)
    total = _gib(sizes["total"]) if sizes else None
    what = f"the GPU ran out of memory during {ctx.stage}"
    if sizes and total:
        what += f" (it needed {sizes['alloc']} more on a {total:.2f} GiB GPU)"
    todo: list[str] = []
    others = _others_on_gpu(sizes, total)
    if others:
        todo.append(f"other programs hold about {others:.1f} GiB of this GPU: close them (`nvidia-smi` lists them)")
    if ctx.stage == "cache_latents":
        todo += _cache_latents_oom(ctx)
    elif ctx.stage == "cache_text_encoder_outputs":
        todo += _text_encoder_oom(ctx)
    elif ctx.stage == "train" and _while_sampling(lines):
        what += " while making samples (musubi stops the training there; the states saved so far are kept)"
        off = " ".join(ctx.samples_off) or "--sample_every_n_epochs 0"
        todo.append(
            f"`{off}`: no samples; the same command with it continues from the newest state. Or make smaller "
            "samples: lower --w/--h/--f in a --sample_prompts file"
        )
        todo += _train_oom(ctx, total)
    elif ctx.stage == "train":
        todo += _train_oom(ctx, total)
    elif not todo:
        todo.append("close other programs that use the GPU (`nvidia-smi` lists them) and run again")
    return what, tuple(todo)


SAMPLING_LINE = "generating sample images at step"  # musubi trainer_base.sample_images logs it before sampling


def _while_sampling(lines: list[str]) -> bool:
    """True when musubi's last activity before the error was sample generation (not a training step)."""
    for line in reversed(lines):
        if SAMPLING_LINE in line:
            return True
        if line.lstrip().startswith("steps:"):
            return False
    return False


def _others_on_gpu(sizes: re.Match | None, total: float | None) -> float | None:
    """GiB held by other processes: total - free - ours, when torch's message gives all three (torch >= 2.1)."""
    if not (sizes and total and "used" in sizes.groupdict()):
        return None
    others = total - _gib(sizes["free"]) - _gib(sizes["used"])
    return others if others >= 1.0 else None


def _cache_latents_oom(ctx: HintContext) -> list[str]:
    todo = []
    if "vae_sample_size" in ctx.memory.knobs:  # the family's VAE tiles: name the knobs themselves
        default = ctx.memory.vae_default_tile
        tile = default if ctx.vae_sample_size is None else ctx.vae_sample_size
        knobs = [f"--vae_sample_size {tile // 2 if tile else default}"] if tile == 0 or tile > 64 else []
        if not ctx.vae_enable_patch_conv and "vae_enable_patch_conv" in ctx.memory.knobs:
            knobs.append("--vae_enable_patch_conv")
        if knobs:
            todo.append(
                f"`{' '.join(knobs)}`: the VAE encodes in smaller tiles / with patch-wise convolution (the latents "
                "cached so far are kept and used)"
            )
    elif ctx.vram_preset is None or ctx.vram_preset > ctx.memory.presets[0]:
        todo.append(ctx.family.hints.latents_smallest_preset)
    todo += _size_knobs(ctx, "latent caching memory grows with frames x area")
    return todo


def _text_encoder_oom(ctx: HintContext) -> list[str]:
    advice = ctx.family.hints
    return [advice.text_encoder_fp8_on if ctx.fp8_vl else advice.text_encoder_fp8]


def _train_oom(ctx: HintContext, total: float | None) -> list[str]:
    todo = []
    preset = _smaller_preset(ctx, total)
    if preset is not None:
        todo.append(f"`--vram {preset}`: the settings tuned for a {preset} GB GPU")
    if not ctx.fp8:
        todo.append(ctx.family.hints.dit_fp8)
    swap = _more_swap(ctx)
    if swap is not None:
        todo.append(
            f"`--blocks_to_swap {swap}` (now {ctx.blocks_to_swap}): keeps that many DiT blocks in CPU RAM; slower"
        )
    todo += _size_knobs(ctx, "less activation memory per step")
    return todo


def _size_knobs(ctx: HintContext, why: str) -> list[str]:
    todo = []
    res = _smaller_resolution(*ctx.resolution, ctx.family.frames.reso_step)
    if res:
        w, h = ctx.resolution
        todo.append(f"`--resolution {res[0]}x{res[1]}` (now {w}x{h}, about 0.7x the pixels): {why}{NEW_RUN}")
    frames = _shorter_frames(ctx.target_frames, ctx.family.frames.frame_step)
    if frames:
        now = ",".join(map(str, ctx.target_frames))
        todo.append(f"`--target_frames {','.join(map(str, frames))}` (now {now}): shorter clips, {why}{NEW_RUN}")
    return todo


def _host_oom(_lines, ctx: HintContext) -> Advice:
    what = (
        "the process was killed (SIGKILL) without a Python error: most likely the machine ran out of RAM "
        "(the kernel's OOM killer)"
    )
    todo = []
    fewer = _less_swap(ctx)
    if fewer is not None:
        per = f", x{ctx.num_gpus} GPU processes" if ctx.num_gpus > 1 else ""
        todo.append(
            f"`--blocks_to_swap {fewer}` (now {ctx.blocks_to_swap}): swapped blocks live in pinned host RAM, "
            f"once per GPU process{per}; fewer need more VRAM"
        )
    if ctx.num_gpus > 1:
        todo.append(
            f"`--num_gpus {ctx.num_gpus // 2}` (now {ctx.num_gpus}): each GPU process holds its own model copy{NEW_RUN}"
        )
    todo.append("close other programs that use RAM; with Docker Desktop or WSL raise the VM's memory limit")
    todo.append("add swap space (e.g. a 32 GB swap file) so loading the models does not hit the limit")
    return what, tuple(todo)


def _shm(_lines, ctx: HintContext) -> Advice:
    what = "DataLoader workers ran out of shared memory (/dev/shm; Docker gives containers 64 MB by default)"
    todo = [
        'give the container more /dev/shm: docker-compose.yml sets `shm_size: "16gb"` for its services (keep or '
        "raise it); with plain docker: `docker run --shm-size 16g ...`; check with `df -h /dev/shm`"
    ]
    n = ctx.max_data_loader_n_workers
    if n > 0:
        todo.append(
            f"`--max_data_loader_n_workers {n // 2}` (now {n}): fewer worker processes; 0 loads data in the main "
            "process and needs no shared memory, but is slower"
        )
    return what, tuple(todo)


_WRITE_PATH = re.compile(r"No space left on device: '(?P<p>[^']+)'|saving checkpoint: (?P<c>\S+)")


def _disk_full(lines: list[str], ctx: HintContext) -> Advice:
    path = _written_path(lines)
    name, folder = _full_folder(ctx, path)
    what = "the disk ran out of space" + (f" while writing {path}" if path else "")
    if folder is None:
        return what, ("free disk space (`df -h` shows which file system is full) and run again",)
    free = _free(ctx, folder)
    label = f"{folder} ({name})" if name else str(folder)
    first = f"free space in {label}: {_fmt_bytes(free) if free is not None else 'unknown'} free now"
    if ctx.checkpoint_bytes:
        first += f"; one more checkpoint + training state needs about {_fmt_bytes(ctx.checkpoint_bytes)}"
        if free is not None and free < ctx.checkpoint_bytes:
            first += f" (free at least {_fmt_bytes(ctx.checkpoint_bytes - free)} more)"
    todo = [first]
    if name and name.endswith("_dir"):
        todo.append(f"or put it on a bigger disk: `--{name} /path/on/bigger/disk`")
    return what, tuple(todo)


def _written_path(lines: list[str]) -> str | None:
    """The file being written when the disk filled: the errno message's path, else musubi's last 'saving checkpoint'."""
    found = None
    for line in lines:
        if m := _WRITE_PATH.search(line):
            found = m["p"] or m["c"] or found
    return found


def _full_folder(ctx: HintContext, path: str | None) -> tuple[str | None, Path | None]:
    """The ctx folder holding `path` (the deepest), else the written file's folder, else the folder with least room."""
    if path:
        holders = [(n, f) for n, f in ctx.folders.items() if _inside(Path(path), f)]
        if holders:
            return max(holders, key=lambda nf: len(nf[1].parts))
        return None, Path(path).parent
    known = [(free, n, f) for n, f in ctx.folders.items() if (free := _free(ctx, f)) is not None]
    if not known:
        return None, None
    _, name, folder = min(known, key=lambda t: t[0])
    return name, folder


def _inside(path: Path, folder: Path) -> bool:
    return path.is_relative_to(folder) or path.resolve().is_relative_to(folder.resolve())


def _free(ctx: HintContext, folder: Path) -> int | None:
    try:
        return ctx.free_bytes(folder)
    except OSError:
        return None


def _bitsandbytes(_lines, ctx: HintContext) -> Advice:
    what = "bitsandbytes could not load its CUDA library, which the 8-bit AdamW optimizer needs"
    if ctx.optimizer == "adamw8bit":
        return what, (
            "`--optimizer adamw`: plain AdamW, no bitsandbytes (more GPU memory for the optimizer state)" + NEW_RUN,
        )
    return what, ("reinstall bitsandbytes for this CUDA version (`python -m bitsandbytes` says what it finds)",)


# torch's two warnings: "NVIDIA RTX A6000 with CUDA capability sm_86 is not compatible with the current PyTorch
# installation. / The current PyTorch install supports CUDA capabilities sm_37 sm_50 ..." and, for GPUs older than
# the build, "Found GPU0 NVIDIA GeForce GTX 1080 which is of cuda capability 6.1. / Minimum and Maximum cuda
# capability supported by this version of PyTorch is / (7.0) - (12.0)".
_ARCH = (
    re.compile(r"(?P<gpu>\S.*?) with CUDA capability sm_(?P<sm>\d+) is not compatible"),
    re.compile(
        r"Found GPU\d+ (?P<gpu>.+?) which is of (?:cuda|compute) capability (?:\(CC\) )?(?P<maj>\d+)\.(?P<min>\d)"
    ),
)
_SUPPORTED = (
    re.compile(r"supports CUDA capabilities (?P<list>(?:sm_\d+\s*)+)"),
    re.compile(r"^\s*\((?P<lo>\d+\.\d)\) - \((?P<hi>\d+\.\d)\)"),
)


def _gpu_arch(lines: list[str]) -> tuple[str, int] | None:
    """(GPU name, compute capability as in sm_86) from torch's warning, if it printed one."""
    if m := _first(_ARCH[0], lines):
        return m["gpu"], int(m["sm"])
    if m := _first(_ARCH[1], lines):
        return m["gpu"], int(m["maj"] + m["min"])
    return None


def _build_range(lines: list[str]) -> tuple[int, int] | None:
    """(oldest, newest) sm this PyTorch build has kernels for, from the same warning."""
    if m := _first(_SUPPORTED[0], lines):
        sms = [int(s) for s in re.findall(r"sm_(\d+)", m["list"])]
        return min(sms), max(sms)
    if m := _first(_SUPPORTED[1], lines):
        return int(m["lo"].replace(".", "")), int(m["hi"].replace(".", ""))
    return None


def _no_kernel(lines: list[str], _ctx) -> Advice:
    arch, built = _gpu_arch(lines), _build_range(lines)
    gpu = f" ({arch[0]}, sm_{arch[1]})" if arch else ""
    what = f"this GPU{gpu} is not supported by the container's PyTorch build (torch 2.9.1, CUDA 12.8 wheels)"
    newer = (
        "a newer PyTorch: `docker compose build --build-arg TORCH_VERSION=<version> "
        "--build-arg TORCHVISION_VERSION=<matching version>`"
    )
    older = "a PyTorch build from another CUDA index (e.g. cu126): change `--index-url` in the Dockerfile"
    # A newer GPU of the same major version runs the build's kernels (sm_121 runs sm_120's): not "too new".
    if arch and built and arch[1] > built[1] and arch[1] // 10 != built[1] // 10:
        first = f"this build stops at sm_{built[1]}; rebuild the image with {newer}"
    elif arch and built and arch[1] < built[0]:
        first = f"this build starts at sm_{built[0]}; rebuild the image with {older}"
    else:
        first = f"rebuild the image with a PyTorch build that has kernels for this GPU: {newer}; for older GPUs {older}"
    return what, (
        first,
        "check the GPU with `nvidia-smi --query-gpu=name,compute_cap --format=csv` and the build with "
        "`docker compose run shell -c \"python -c 'import torch; print(torch.cuda.get_arch_list())'\"`",
    )


_NAN_STEP = re.compile(r"\(step (?P<s>\d+)\)|\|\s*(?P<t>\d+)/\d+ \[")


def _loss_nan(lines: list[str], ctx: HintContext) -> Advice:
    marks = [line for line in lines if NAN_STOP_MARK in line]
    # The guard's line says where it stopped; else the first progress line with a NaN says where it began.
    nan_lines = marks or [line for line in lines if "avr_loss=nan" in line]
    step = next((m["s"] or m["t"] for m in map(_NAN_STEP.search, nan_lines) if m), None)
    stopped = bool(marks)
    at = f" at step {step}" if step else ""
    what = ("the loss became NaN and hvlora stopped the run" if stopped else "the training loss became NaN") + at
    todo = [
        f"`--learning_rate {ctx.learning_rate / 2:g}` (now {ctx.learning_rate:g}): a lower rate, the usual cause"
        + NEW_RUN,
        "check the data for broken files: `--check_data` reports media that do not decode and empty captions",
    ]
    if ctx.fp8:
        todo.append(
            "without `--fp8` if VRAM allows (fp8 base weights are less stable); `--blocks_to_swap` can make room"
        )
    return what, tuple(todo)


def _nccl(lines: list[str], _ctx) -> Advice:
    timeout = any("Watchdog caught collective operation timeout" in line for line in lines)
    what = "multi-GPU communication (NCCL) failed" + (
        ": a collective timed out, so one GPU process stalled or died (its error may be above)" if timeout else ""
    )
    return what, (
        f"`--num_gpus 1` to confirm that training works on one GPU{NEW_RUN}",
        "`NCCL_P2P_DISABLE=1` for consumer GPUs without peer-to-peer: "
        "`docker compose run -e NCCL_P2P_DISABLE=1 train ...`",
        "`NCCL_DEBUG=INFO` prints why: `docker compose run -e NCCL_DEBUG=INFO train ...`",
        "several machines: every node must reach --main_process_ip on --main_process_port (firewall, interface)",
    )


# Most specific first: the first kind that matches wins.
_TABLE = (
    _Kind(
        "cuda_oom",
        (
            r"\btorch(?:\.cuda)?\.OutOfMemoryError\b",
            r"CUDA out of memory",
            r"CUDA error: out of memory",
            r"CUBLAS_STATUS_ALLOC_FAILED",
            r"cuda runtime error \(2\) : out of memory",
        ),
        _cuda_oom,
    ),
    # Before disk_full: /dev/shm filling up also says "No space left on device".
    _Kind(
        "shm",
        (
            r"killed by signal: Bus error",
            r"Unexpected bus error encountered in worker",
            r"insufficient shared memory \(shm\)",
            r"unable to [^<]*</torch_",
            r"/dev/shm.*No space left on device|No space left on device.*/dev/shm",
        ),
        _shm,
    ),
    _Kind(
        "disk_full",
        (
            r"No space left on device",
            r"\[Errno 28\]",
            r"code: 28, kind: StorageFull",
            r"PytorchStreamWriter failed writing file",
            r"unexpected pos \d+ vs \d+",
            r"Disk quota exceeded",
        ),
        _disk_full,
    ),
    _Kind(
        "bitsandbytes",
        (
            r"CUDA Setup failed despite GPU being available",
            r"libbitsandbytes_cuda\w*\.so: cannot open shared object file",
            r"cadam32bit_grad_fp32",
            r"No bitsandbytes / ",
            r"^\s*(?:\[rank\d+\]:\s*)?[\w.]*(?:Error|Exception):.*\bbitsandbytes\b",
            r"File \".*[/\\]bitsandbytes[/\\]",
        ),
        _bitsandbytes,
        # Printed at import even when the 8-bit optimizer is never used (a CPU smoke run).
        weak=(r"compiled without GPU support", r"Could not find the bitsandbytes CUDA binary"),
    ),
    _Kind(
        "no_kernel",
        (r"no kernel image is available for execution on the device",),
        _no_kernel,
        # torch's capability warnings: also printed where the GPU works (a GB10, sm_121, on an sm_120 build).
        weak=(
            r"sm_\d+ is not compatible with the current PyTorch installation",
            r"Found GPU\d+ .+ which is of (?:cuda|compute) capability",
        ),
    ),
    # Before nccl and host_oom: stopping a run for NaN may end its other GPU processes or kill it.
    _Kind("loss_nan", (re.escape(NAN_STOP_MARK), r"\bavr_loss=nan\b"), _loss_nan),
    _Kind(
        "nccl",
        (
            r"DistBackendError",
            r"NCCL error in:",
            r"\bnccl(?:UnhandledCuda|System|Internal|InvalidArgument|InvalidUsage|Remote)Error\b",
            r"Watchdog caught collective operation timeout",
            r"NCCL communicator was aborted",
        ),
        _nccl,
        weak=(r"NCCL WARN",),  # NCCL also warns about harmless fallbacks (topology, plugins)
    ),
    # Last: a SIGKILL is also how other failures end (a stopped run, a rank whose peer failed).
    _Kind(
        "host_oom",
        (r"is killed by signal: Killed", r"Out of memory: Killed process"),
        _host_oom,
        weak=(
            r"died with <Signals\.SIGKILL: 9>",
            r"exitcode\s*:\s*-9\b",
            r"exit code:? -9\b",
            r"Signal 9 \(SIGKILL\) received",
            r"^\s*Killed\s*$",
            r"\[exit code 137\]",
            r"non-zero exit status 137\b",
        ),
        returncodes=frozenset({-9, 137}),
    ),
)

KINDS = tuple(k.name for k in _TABLE)


def classify(lines: list[str], returncode: int | None, ctx: HintContext) -> Hint | None:
    """Classify a failed stage from its log `lines` and exit status `returncode` (negative: killed by that signal).

    Returns the Hint of the first kind in KINDS whose messages occur in the log (torch's CUDA OOM, the kernel's
    SIGKILL, DataLoader bus errors, NaN loss, errno 28, bitsandbytes' CUDA setup, "no kernel image", NCCL errors),
    its todo built from `ctx`; None when nothing matches. Lines the runner echoes ("$ argv") are ignored. Raises
    nothing for odd input; a failing ctx.free_bytes reads as "unknown".
    """
    lines = [line for line in lines if not line.startswith("$ ")]  # our echo of the command, not the child's output
    other_error = _has_other_error(lines)
    for kind in _TABLE:
        if kind.matches(lines, returncode, other_error):
            what, todo = kind.advise(lines, ctx)
            return Hint(kind.name, what, todo)
    return None


def format_hint(h: Hint) -> str:
    """The text printed after the log tail: 'what happened: ...' and a numbered 'what to do:' list."""
    out = [f"what happened: {h.what}"]
    if h.todo:
        out.append("what to do:")
        out += [f"  {i}. {t}" for i, t in enumerate(h.todo, 1)]
    return "\n".join(out)
