"""Kandinsky 5 inference with musubi-tuner v0.3.4's `kandinsky5_generate_video`: its argv, K5's inference defaults,
the inference memory presets with their ESTIMATE, and the generator's traps.

Facts (musubi v0.3.4, kandinsky5_generate_video.py, kandinsky5/generation_utils.py, networks/lora.py):
- One prompt per process: `--prompt` (required) and `--output FILE` (.mp4, or .png for one frame); no prompt file.
  So a comparison runs it once per prompt line and seed; each process loads Qwen2.5-VL (encodes the prompt and
  the negative prompt, then frees it), the DiT (merging the LoRA while it loads), then the VAE. It prints
  `Saved video to PATH and first frame to PNG` (or `Saved image to PATH`).
- `--frames` counts LATENT frames (the noise is (1, frames, H/8, W/8, 16)): 4n+1 video frames are n+1 latents;
  `--width --height` in pixels; `--steps`, `--guidance`, `--scheduler_scale` (the flow-matching shift) default to the
  task's (50, 5.0, 10.0 for the sd tasks); the initial noise is drawn from a generator seeded with `--seed` on the
  device, so both runs of a comparison start from the same noise.
- The LoRA: `--lora_weight FILE --lora_multiplier M`; networks.lora_kandinsky builds modules only for keys that
  match the DiT and ignores the rest without a word, so the file is key-checked first (lorakeys.py).
- Qwen2.5-VL loads in bf16 on `--device` (no CPU or fp8 option in this script): 15.4 GiB of VRAM while the prompts
  encode. The DiT file is read whole into host RAM while it loads.
- It imports without CUDA but runs only on a CUDA GPU: it turns autocast on for CUDA only, and on the CPU the DiT's
  bf16 weights meet float32 inputs (`RuntimeError: mat1 and mat2 must have the same dtype, but got Float and
  BFloat16` in TimeEmbeddings, after Qwen2.5-VL has loaded: seen on the CPU rig). --generate --device cpu is
  refused before anything loads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ...compare.job import GenerateJob, Inference
from ...core.config import Settings
from ...core.errors import UserError
from ...training import presets, sampling
from ...training.musubi import Command, cli_number
from .. import LoraCheckError
from . import catalog, lorakeys
from . import memory as sizes
from .rules import FRAMES, SAMPLES

GENERATE = "musubi_tuner.kandinsky5_generate_video"
INFER_STEPS, GUIDANCE_SCALE = SAMPLES.steps, SAMPLES.guidance
FLOW_SHIFT = 10.0  # the sd tasks' scheduler_scale (configs.py), musubi's --scheduler_scale
DEFAULT_SHAPE = (768, 512, SAMPLES.video_frames)
NEEDS_CUDA_WHY = "it enables autocast on CUDA only, and on the CPU its bf16 DiT meets float32 inputs"
_CPU_DTYPE_ERROR = "mat1 and mat2 must have the same dtype"
_SAVED = re.compile(r"Saved (?:video|image) to (?P<path>.+?\.(?:mp4|png))(?: and first frame to .+)?\s*$", re.M)
KNOBS = ("fp8", "blocks_to_swap")
# Preset (nominal GB) -> knobs per DiT size; figures from estimate() at 768x512x17 (GiB). Lite: bf16 everywhere
# (4.3 GiB), the peak is Qwen2.5-VL encoding (~17 GiB: below that the generator cannot run on the GPU). Pro: bf16
# (40.4 GiB) on 80; fp8 (22.5) on 48; fp8 with blocks streamed from the CPU on 32 and 24.
LITE_TABLE = {p: {"fp8": False, "blocks_to_swap": 0} for p in sizes.LITE_TABLE}
PRO_TABLE = {
    80: {"fp8": False, "blocks_to_swap": 0},
    48: {"fp8": True, "blocks_to_swap": 0},
    32: {"fp8": True, "blocks_to_swap": 20},
    24: {"fp8": True, "blocks_to_swap": 40},
}


@dataclass(frozen=True)
class InferenceMemory:
    """The generator's memory knobs (kandinsky5_generate_video flags) and where each came from: `preset` (GB or None),
    `fp8` (`--fp8_base --fp8_scaled`), `blocks_to_swap` (`--blocks_to_swap N`), `dit` (the DiT size it is for)."""

    preset: int | None
    fp8: bool
    blocks_to_swap: int
    dit: str = "lite"
    sources: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class InferenceEstimate:
    """An ESTIMATE (arithmetic, not measured) of one generator process in GiB: the peak and when, every moment, and
    the host RAM peak."""

    peak_vram_gb: float
    peak_at: str
    moments: dict[str, float]
    host_ram_gb: float


def _dit(variant: str) -> sizes.Dit:
    return sizes.PRO if catalog.VARIANTS.get(variant, catalog.VARIANTS["lite-sft-5s"]).size == "pro" else sizes.LITE


def default_shape(buckets: Mapping[tuple[int, int, int], int]) -> tuple[int, int, int]:
    """(width, height, video frames) from the training items per bucket, as the samples choose them: the most
    common bucket's aspect at about 768x512 in multiples of 16; 1 frame for image-only data, else min(17, the
    longest clip). Without buckets: 768x512, 17 frames."""
    if not buckets:
        return DEFAULT_SHAPE
    width, height = sampling.size(dict(buckets), SAMPLES.area, FRAMES.reso_step)
    longest = max(f for _, _, f in buckets)
    return width, height, (1 if longest == 1 else min(SAMPLES.video_frames, longest))


def check_lora(path: Path) -> int:
    """Refuse (UserError, naming the file and the fix) a file that is not a whole Kandinsky 5 LoRA in musubi's
    format (Lite or Pro layout; musubi's generator would silently skip keys it cannot place). Returns the number
    of modules. Reads only the safetensors header."""
    errors = []
    for variant in ("lite-sft-5s", "pro-sft-5s"):
        try:
            return lorakeys.verify(path, variant)["musubi_modules"]
        except LoraCheckError as e:
            errors.append(str(e))
    raise UserError(f"--lora: not a Kandinsky 5 LoRA in musubi's format: {min(errors, key=len)}")


def plan_memory(
    s: Settings, gpu_total_gib: float | None, shape: tuple[int, int, int], task: str, batch: bool = True
) -> InferenceMemory:
    """The knobs: the preset of the DiT size (`--vram N`, or the GPU's memory for auto; none on the CPU), then
    `--fp8` and `--blocks_to_swap` set by the user win. `batch` is accepted for the interface (one process per
    prompt here). Raises UserError for --device cpu (the script cannot run there, see the module's notes)."""
    if s.device == "cpu":
        raise UserError(
            f"--generate --device cpu: musubi v0.3.4's {GENERATE.rsplit('.', 1)[1]} runs only on a CUDA GPU "
            f"({NEEDS_CUDA_WHY}: RuntimeError {_CPU_DTYPE_ERROR!r}). Run --generate on a machine with an NVIDIA GPU."
        )
    dit = _dit(s.dit_variant)
    model = sizes.PRO_MODEL if dit is sizes.PRO else sizes.LITE_MODEL
    table = PRO_TABLE if dit is sizes.PRO else LITE_TABLE
    preset = None
    if s.device == "cuda":
        if s.vram != "auto" and int(s.vram) in table:
            preset = int(s.vram)
        elif gpu_total_gib is not None:
            preset = model.preset_for_vram(gpu_total_gib)
    values: dict[str, object] = {"fp8": False, "blocks_to_swap": 0}
    sources = dict.fromkeys(KNOBS, "default")
    for knob, value in (table.get(preset) or {}).items():
        values[knob], sources[knob] = value, f"preset {preset}"
    for knob in KNOBS:
        if getattr(s, knob) is not None:
            values[knob], sources[knob] = getattr(s, knob), f"--{knob}"
    values["blocks_to_swap"] = min(int(values["blocks_to_swap"]), dit.max_blocks_to_swap)
    return InferenceMemory(preset, bool(values["fp8"]), int(values["blocks_to_swap"]), dit_name(dit), sources)


def dit_name(dit: sizes.Dit) -> str:
    return "pro" if dit is sizes.PRO else "lite"


def estimate(m: InferenceMemory, shape: tuple[int, int, int], task: str, batch: bool = True) -> InferenceEstimate:
    """ESTIMATED VRAM (GiB) of one generator process at each moment: "encoding the prompts" (Qwen2.5-VL bf16 +
    CLIP, the prompt and the negative prompt), "denoising" (the DiT's resident weights + one forward's activations;
    CFG passes run one after the other), "decoding" (the VAE tiled at 256 px, 17 frames). Host RAM: the DiT file
    read whole. Raises ValueError for bad sizes."""
    dit = sizes.PRO if m.dit == "pro" else sizes.LITE
    width, height, frames = shape
    img = sizes.tokens(width, height, frames)
    txt = sizes.TEXT_TOKENS * (1 + (frames - 1) // sizes.VAE_TEMPORAL)
    overhead = sizes.OVERHEAD_GIB * presets.GIB
    plan = presets.MemoryPlan(m.preset, m.fp8, m.blocks_to_swap, False, False, False, None, False)
    per_block, rest = sizes._dit_bytes(dit, plan)
    swap = min(m.blocks_to_swap, dit.visual_blocks - 2)
    act = (img + txt) * (sizes.INFER_HIDDEN_COPIES * dit.dim + sizes.INFER_FF_COPIES * dit.ff) * sizes.BF16
    dequant = dit.block_weights(True)[0] * sizes.FP32 if m.fp8 else 0
    moments = {
        "encoding the prompts": sum(sizes._qwen_bytes(2).values()) + overhead,
        "denoising": (dit.visual_blocks - swap + min(2, swap)) * per_block + rest + dequant + 1.2 * act + overhead,
        "decoding": sizes.VAE_PARAMS * sizes.BF16 + sizes.vae_activation_bytes(width, height, frames) + overhead,
    }
    moments = {k: v / presets.GIB for k, v in moments.items()}
    peak_at = max(moments, key=moments.__getitem__)
    host = (sizes.HOST_CACHE_PROCESS_BASE_GIB * presets.GIB + sizes.FILE_BYTES[dit]) / presets.GIB
    return InferenceEstimate(moments[peak_at], peak_at, moments, host)


def describe(
    m: InferenceMemory,
    est: InferenceEstimate,
    gpu_total_gib: float | None,
    vram: str,
    device: str = "cuda",
    batch: bool = True,
    host_available_gib: float | None = None,
) -> list[str]:
    """The plan's lines: preset and knobs (with their origin), the estimate (labelled as such), and warnings when it
    exceeds the card or the host RAM (`device` and `batch` are accepted for the interface: it runs on CUDA, one
    prompt per process)."""
    lines = [
        f"memory: {'--vram ' + str(m.preset) if m.preset else 'no preset'}; DiT {'fp8' if m.fp8 else 'bf16'} "
        f"({m.sources['fp8']}), {m.blocks_to_swap} blocks swapped ({m.sources['blocks_to_swap']})"
    ]
    others = ", ".join(f"{k} {v:.1f} GB" for k, v in est.moments.items() if k != est.peak_at)
    lines.append(
        f"estimate (arithmetic, not measured): peak VRAM {est.peak_vram_gb:.1f} GB while {est.peak_at} ({others}); "
        f"host RAM {est.host_ram_gb:.1f} GB; one generator process per prompt and seed, each loading the models"
    )
    card = gpu_total_gib if gpu_total_gib is not None else (float(m.preset) if m.preset else None)
    if card is not None and est.peak_vram_gb > card:
        tip = {
            "encoding the prompts": "musubi's Kandinsky 5 generator keeps Qwen2.5-VL on the GPU (no CPU option): "
            "use a larger GPU",
            "denoising": f"--fp8 or --blocks_to_swap {min(40, m.blocks_to_swap + 10)}",
            "decoding": "a smaller --video_size / --video_length",
        }[est.peak_at]
        lines.append(
            f"warning: estimated peak {est.peak_vram_gb:.1f} GB > {card:.1f} GB GPU while {est.peak_at}: {tip}"
        )
    if host_available_gib is not None and est.host_ram_gb > host_available_gib:
        lines.append(f"warning: estimated host RAM {est.host_ram_gb:.1f} GB > {host_available_gib:.1f} GB available")
    return lines


@dataclass(frozen=True)
class Line:
    """One prompt-file line as kandinsky5_generate_video's flags: the prompt, the seed and the per-line options."""

    prompt: str
    seed: int
    options: dict[str, str]


def read_lines(prompt_file: Path, default_seed: int) -> list[Line]:
    """The prompt file's lines (musubi's format: PROMPT then ` --x VALUE` options; '#' comments), in order."""
    out = []
    for raw in prompt_file.read_text(encoding="utf-8").splitlines():
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        text, *opts = raw.split(" --")
        options = dict((o.split(" ", 1) + [""])[:2] for o in opts)
        out.append(Line(text.strip(), int(options.pop("d", default_seed)), {k: v.strip() for k, v in options.items()}))
    return out


def commands(job: GenerateJob, files: Mapping[str, Path], lora: Path | None) -> list[Command]:
    """One kandinsky5_generate_video process per prompt line (the script takes one prompt), each saving
    `save_path/NN_seedS.mp4` (`.png` for one frame). Both runs get the same task, weights, size, latent frames,
    steps, guidance, scheduler scale (the flow shift), seed and memory flags; only the LoRA run gets `--lora_weight
    FILE --lora_multiplier M`. A line's own --w --h --f --s --g/--l --fs --n --i override the shared settings; i2v
    lines carry `--i` (the first frame)."""
    inf = job.inference
    base = [
        "--task",
        catalog.musubi_task(job.task, job.dit_variant),
        "--dit",
        str(files["dit"]),
        "--vae",
        str(files["vae"]),
    ]
    base += ["--text_encoder_qwen", str(files["text_encoder"]), "--text_encoder_clip", str(files["text_encoder_clip"])]
    base += ["--device", job.device, "--sdpa", *memory_flags(job.memory)]
    if lora is not None:
        base += ["--lora_weight", str(lora), "--lora_multiplier", cli_number(inf.lora_multiplier)]
    lines = [Line(job.single[0], job.single[1], {})] if job.single else read_lines(job.prompt_file, 42)
    out = []
    for n, line in enumerate(lines):
        o = line.options
        frames = int(o.get("f", inf.video_length))
        suffix = ".png" if frames == 1 else ".mp4"
        argv = [*base, "--prompt", line.prompt, "--seed", str(line.seed)]
        argv += ["--width", o.get("w", str(inf.width)), "--height", o.get("h", str(inf.height))]
        argv += ["--frames", str((frames - 1) // FRAMES.frame_step + 1), "--steps", o.get("s", str(inf.infer_steps))]
        argv += ["--guidance", o.get("g", o.get("l", cli_number(inf.guidance_scale)))]
        argv += ["--scheduler_scale", o.get("fs", cli_number(inf.flow_shift))]
        if o.get("n"):
            argv += ["--negative_prompt", o["n"]]
        image = o.get("i") or (str(job.image) if job.image is not None else None)
        if job.task == "i2v" and image:
            argv += ["--image", image]
        argv += ["--output", str(job.save_path / f"{n:02d}_seed{line.seed}{suffix}")]
        out.append(Command("generate_lora" if lora is not None else "generate_base", GENERATE, tuple(argv)))
    return out


def memory_flags(m: InferenceMemory) -> list[str]:
    """--fp8_base --fp8_scaled and --blocks_to_swap N for the plan."""
    argv = ["--fp8_base", "--fp8_scaled"] if m.fp8 else []
    return argv + (["--blocks_to_swap", str(m.blocks_to_swap)] if m.blocks_to_swap else [])


def saved_videos(log_text: str) -> list[Path]:
    """The files the processes saved, in order (their `Saved video to PATH ...` / `Saved image to PATH` lines)."""
    return [Path(m["path"]) for m in _SAVED.finditer(log_text)]


def unused_keys_line(log_text: str) -> str | None:
    """musubi's Kandinsky 5 generator says nothing about LoRA keys it cannot place (check_lora refuses such files
    before it runs): None."""
    return None


def needs_cuda(log_text: str) -> bool:
    """Whether a run failed the way kandinsky5_generate_video fails on the CPU (mixed bf16/float32 dtypes)."""
    return _CPU_DTYPE_ERROR in log_text


def inference_defaults() -> Inference:
    """K5's steps, guidance and scheduler scale (size and length come from the run: default_shape)."""
    return Inference(0, 0, 0, INFER_STEPS, GUIDANCE_SCALE, FLOW_SHIFT, 1.0)
