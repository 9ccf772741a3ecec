"""HunyuanVideo 1.5 inference with musubi-tuner v0.3.4's `hv_1_5_generate_video`: its argv, HV1.5's inference
defaults, the inference memory presets with their ESTIMATE, and the generator's traps.

Facts (musubi v0.3.4, hv_1_5_generate_video.py and utils/lora_utils.py):
- `--video_size` is HEIGHT WIDTH (two ints; default 256 256); `--video_length` has no default (None crashes at the
  noise shape); `--infer_steps` defaults to 50 and `--flow_shift` to 7.0: HV1.5's own inference defaults (20 steps
  as the samples, guidance 6.0, flow shift 7.0) are passed explicitly.
- `--from_file`: one prompt per line, `PROMPT --d SEED [--i IMAGE]` (options after " --"; `#` starts a comment);
  the text encoders load once, the DiT once, every latent is decoded at the end in line order. In that mode the
  text encoders stay referenced (process_batch_prompts keeps them in `shared_models`) until every prompt is
  denoised: Qwen2.5-VL (15.4 GiB in bf16) stays on the GPU beside the DiT, or in host RAM with
  `--text_encoder_cpu`; on the CPU both models (33 GB) are in RAM at once. A single `--prompt` frees the text
  encoders before the DiT loads, so one prompt and seed is run that way.
- `--save_path` is a folder; each video is `{save_path}/{YYYYmmdd-HHMMSS-mmm}_{seed}.mp4` and the log says
  `Video saved to: PATH`: the order of those lines is the order of the prompts.
- The LoRA is merged into the DiT's weights while they load (`--lora_weight`, `--lora_multiplier`); keys that match
  no DiT Linear by musubi's names (`lora_unet_double_blocks_N_img_attn_q`) are only logged as
  "Warning: not all LoRA keys are used: ...", and a ComfyUI-format file (q/k/v fused) then renders the base model.
  The musubi-format file is required here and that warning fails the run.
- `--cpu_noise` draws the initial noise on the CPU, so both runs start from the same noise whatever the device.
- The text encoder (Qwen2.5-VL, bf16, no fp8 option in the generator) is read into host RAM first (disable_mmap),
  then moved to the GPU unless `--text_encoder_cpu`; the DiT loads straight to the GPU unless blocks are swapped.
- Importing the script imports wan/modules/t5.py, whose class body calls `torch.cuda.current_device()`: without a
  CUDA GPU visible (even with `--device cpu`) it fails at import.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ...compare.job import GenerateJob, Inference
from ...core.config import Settings
from ...core.errors import UserError
from ...training import presets, sampling
from ...training.musubi import Command, cli_number
from . import catalog, comfyui
from . import memory as sizes  # the model's sizes and memory constants
from .rules import FRAMES, SAMPLES

GENERATE = "musubi_tuner.hv_1_5_generate_video"
FPS = 24  # musubi's --fps default, HV1.5's frame rate
# HV1.5's inference defaults, as the samples during training use them (rules.SAMPLES).
INFER_STEPS, GUIDANCE_SCALE, FLOW_SHIFT = SAMPLES.steps, SAMPLES.guidance, SAMPLES.flow_shift
DEFAULT_SIZE = (848, 480)  # without a record of the training buckets: HV1.5's 480p
UNUSED_LORA_KEYS = "not all LoRA keys are used"
_SAVED = re.compile(r"Video saved to: (?P<path>.+?\.mp4)\s*$", re.M)
_NEEDS_CUDA = ("current_device", "Torch not compiled with CUDA enabled", "No CUDA GPUs are available")
NEEDS_CUDA_WHY = "it calls torch.cuda.current_device() while importing (wan/modules/t5.py)"

KNOBS = ("fp8", "blocks_to_swap", "text_encoder_cpu", "vae_sample_size", "vae_enable_patch_conv")
# Preset (nominal GB) -> knobs for inference. Figures from estimate() at 848x480x25 with several prompts (GiB):
# 80/48 keep the bf16 DiT and Qwen2.5-VL on the GPU (33.7 while denoising: musubi keeps the text encoder loaded);
# 32 keeps the bf16 DiT (no fp8 rounding in a comparison meant to show the LoRA) and encodes the prompts on the CPU
# (18.3; the generator has no fp8 text encoder, and Qwen beside the DiT would need 33.7); 24 adds an fp8 DiT
# (10.9); 16 also tiles the VAE at 128 with patch conv. Block swap is not in the table: plan_memory() adds the
# fewest blocks that bring denoising under 90% of the card when it does not fit (e.g. 1280x720x121 on 16).
PRESET_TABLE: dict[int, dict[str, object]] = {
    80: {"fp8": False, "text_encoder_cpu": False, "vae_sample_size": 256},
    48: {"fp8": False, "text_encoder_cpu": False, "vae_sample_size": 256},
    32: {"fp8": False, "text_encoder_cpu": True, "vae_sample_size": 256},
    24: {"fp8": True, "text_encoder_cpu": True, "vae_sample_size": 256},
    16: {"fp8": True, "text_encoder_cpu": True, "vae_sample_size": 128, "vae_enable_patch_conv": True},
}
_DEFAULTS: dict[str, object] = {
    "fp8": False,
    "blocks_to_swap": 0,
    "text_encoder_cpu": False,
    "vae_sample_size": None,
    "vae_enable_patch_conv": False,
}
FIT_FRACTION = 0.9  # block swap is sized so that denoising stays under this share of the card
SWAP_RING = 2  # swapped blocks in flight on the GPU (one computing, one arriving; custom_offloading_utils)


@dataclass(frozen=True)
class InferenceMemory:
    """The generator's memory knobs (musubi hv_1_5_generate_video flags) and where each came from.

    - preset: the PRESET_TABLE entry (GB) or None (no GPU planned: musubi's defaults);
    - fp8: `--fp8 --fp8_scaled` (DiT weights in fp8); blocks_to_swap: `--blocks_to_swap N` (0-51);
    - text_encoder_cpu: `--text_encoder_cpu` (Qwen2.5-VL encodes on the CPU);
    - vae_sample_size: `--vae_sample_size` (None: musubi's 128); vae_enable_patch_conv: `--vae_enable_patch_conv`;
    - sources: knob -> "preset 24", "default", "--fp8" or "auto: denoising needs it"."""

    preset: int | None
    fp8: bool
    blocks_to_swap: int
    text_encoder_cpu: bool
    vae_sample_size: int | None
    vae_enable_patch_conv: bool
    sources: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class InferenceEstimate:
    """An ESTIMATE (arithmetic, not measured) of one generator process in GiB: the peak VRAM and the moment it
    happens ("encoding the prompts", "denoising" or "decoding"), every moment's VRAM, and the host RAM peak."""

    peak_vram_gb: float
    peak_at: str
    moments: dict[str, float]
    host_ram_gb: float


def weights(task: str, variant: str) -> dict[str, catalog.WeightFile]:
    """The files the generator loads: the same set training uses (DiT of the task and variant, VAE, Qwen2.5-VL,
    byT5, and SigLIP for i2v)."""
    return catalog.weights_for(task, variant)


def default_shape(buckets: Mapping[tuple[int, int, int], int]) -> tuple[int, int, int]:
    """(width, height, video_length) from the training items per bucket ((w, h, frames) -> count), as the samples
    choose them: the most common bucket's aspect at about 480p in multiples of 16; 1 frame when every item is an
    image, else min(25, the longest clip). Without buckets: 848x480, 25 frames."""
    if not buckets:
        return (*DEFAULT_SIZE, SAMPLES.video_frames)
    width, height = sampling.size(dict(buckets), SAMPLES.area, FRAMES.reso_step)
    longest = max(f for _, _, f in buckets)
    return width, height, (1 if longest == 1 else min(SAMPLES.video_frames, longest))


def check_lora(path: Path) -> int:
    """Refuse (UserError, naming the file and the fix) a LoRA musubi's generator would not fully apply: a
    ComfyUI-format file, or keys of modules the HV1.5 DiT does not have. Returns the number of LoRA modules.
    Reads only the safetensors header."""
    try:
        keys = comfyui.read_shapes(path)
    except comfyui.LoraCheckError as e:
        raise UserError(f"--lora: {e}") from None
    modules = set(comfyui.module_names(comfyui.MUSUBI_MODULES))
    unused = sorted(k for k in keys if k.split(".", 1)[0] not in modules)
    if any("_attn_qkv." in k or "_mod_lin." in k for k in unused):
        raise UserError(
            f"{path} is a ComfyUI-format LoRA (q/k/v fused into qkv): musubi's generator would use none of its keys "
            "and render the base model. Use the musubi-format file beside it (NAME.safetensors, not "
            "NAME_comfyui.safetensors)."
        )
    if unused or not keys:
        shown = ", ".join(unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
        raise UserError(
            f"{path} is not a HunyuanVideo 1.5 LoRA in musubi's format"
            + (f" (keys the DiT has no module for: {shown})" if unused else " (no tensors)")
            + ": use the NAME.safetensors file a training run wrote."
        )
    return len({k.split(".", 1)[0] for k in keys})


def plan_memory(
    s: Settings, gpu_total_gib: float | None, shape: tuple[int, int, int], task: str, batch: bool = True
) -> InferenceMemory:
    """The inference knobs: the preset (`--vram N`, or the GPU's memory for auto; none on the CPU or without a GPU
    seen), then every knob the user set wins (`--fp8`, `--blocks_to_swap`, `--text_encoder_cpu`,
    `--vae_sample_size`, `--vae_enable_patch_conv`), then, unless the user set it, block swap for a denoising estimate above 90% of the
    preset's card. shape = (width, height, video_length); batch: several prompts in one process (`--from_file`)."""
    preset = None
    if s.device == "cuda":
        if s.vram != "auto":
            preset = int(s.vram)
        elif gpu_total_gib is not None:
            preset = sizes.MODEL.preset_for_vram(gpu_total_gib)
    values, sources = dict(_DEFAULTS), dict.fromkeys(KNOBS, "default")
    for knob, value in (PRESET_TABLE.get(preset) or {}).items():
        values[knob], sources[knob] = value, f"preset {preset}"
    for knob in ("fp8", "blocks_to_swap", "text_encoder_cpu", "vae_sample_size", "vae_enable_patch_conv"):
        if getattr(s, knob) is not None:
            values[knob], sources[knob] = getattr(s, knob), f"--{knob}"
    memory = InferenceMemory(preset=preset, sources=sources, **values)  # type: ignore[arg-type]
    if preset is None or s.blocks_to_swap is not None:
        return memory
    budget = FIT_FRACTION * preset * (1 - presets.PRESET_MARGIN)
    excess = estimate(memory, shape, task, batch).moments["denoising"] - budget
    if excess <= 0:
        return memory
    per_block = sizes.dit_weight_bytes(memory.fp8)[0] / presets.GIB
    swap = min(sizes.MAX_BLOCKS_TO_SWAP, math.ceil(excess / per_block) + SWAP_RING)
    return InferenceMemory(
        **{**_fields(memory), "blocks_to_swap": swap},
        sources={**sources, "blocks_to_swap": f"auto: denoising needs it on {preset} GB"},
    )


def _fields(m: InferenceMemory) -> dict:
    return {k: getattr(m, k) for k in ("preset", *KNOBS)}


def estimate(m: InferenceMemory, shape: tuple[int, int, int], task: str, batch: bool = True) -> InferenceEstimate:
    """ESTIMATED VRAM (GiB) of one generator process at each moment, for videos of shape (width, height,
    video_length), batch 1, CFG passes one after the other: "encoding the prompts" (Qwen2.5-VL bf16 + byT5 on the
    GPU, unless text_encoder_cpu; for i2v also the VAE and SigLIP), "denoising" (the DiT's resident weights + two
    in-flight blocks when swapping + one forward's activations + allocator slack; with `batch` (--from_file) also
    the text encoders musubi keeps loaded), "decoding" (the VAE and its tiled activations; presets.
    vae_activation_bytes reads the same two VAE knobs from this plan). Host RAM: host_ram() on a GPU. Constants from
    presets.py (musubi's model sizes). Raises ValueError for bad sizes."""
    width, height, frames = shape
    img = sizes.tokens(width, height, frames)
    seq = img + sizes.DEFAULT_TEXT_TOKENS + (sizes.SIGLIP_TOKENS if task == "i2v" else 0)
    overhead = sizes.OVERHEAD_GIB * presets.GIB
    qwen = 0 if m.text_encoder_cpu else sizes.QWEN_BF16_BYTES
    per_token = (sizes.QWEN_LAYERS + 1) * sizes.QWEN_HIDDEN + sizes.QWEN_VOCAB + sizes.QWEN_LAYER_TRANSIENT
    text = sizes.BYT5_BYTES + qwen + overhead
    if qwen:
        text += (sizes.QWEN_TEMPLATE_TOKENS + sizes.QWEN_TYPICAL_TOKENS) * per_token * sizes.BF16
    if task == "i2v":
        text += sizes.VAE_PARAMS * sizes.BF16 + sizes.SIGLIP_BYTES
    per_block, rest = sizes.dit_weight_bytes(m.fp8)
    act = seq * (sizes.INFER_HIDDEN_COPIES * sizes.HIDDEN + sizes.INFER_MLP_COPIES * sizes.MLP_HIDDEN)
    act = act * sizes.BF16 + seq * sizes.HEADS * sizes.FP32 + img * sizes.HEAD_DIM * 2 * sizes.FP32
    dit = (sizes.NUM_BLOCKS - m.blocks_to_swap + min(SWAP_RING, m.blocks_to_swap)) * per_block + rest
    kept = (qwen + sizes.BYT5_BYTES) if batch else 0
    denoise = dit + kept + (1 + sizes.ALLOCATOR_SLACK) * act + overhead
    decode = sizes.VAE_PARAMS * sizes.BF16 + sizes.vae_activation_bytes(m, width, height, frames) + overhead
    moments = {
        "encoding the prompts": text / presets.GIB,
        "denoising": denoise / presets.GIB,
        "decoding": decode / presets.GIB,
    }
    peak_at = max(moments, key=moments.__getitem__)
    return InferenceEstimate(moments[peak_at], peak_at, moments, host_ram(m, batch, on_gpu=True))


def host_ram(m: InferenceMemory, batch: bool, on_gpu: bool) -> float:
    """ESTIMATED host RAM (GiB) of one generator process: the base, plus the larger of Qwen2.5-VL (read into RAM
    first) and the fp32 VAE file, plus the DiT wherever it sits in RAM: on the CPU (`on_gpu` False) the whole DiT,
    on a GPU the whole DiT while it loads with block swap; in batch mode on the CPU, or with text_encoder_cpu,
    Qwen2.5-VL stays in RAM beside it."""
    per_block, rest = sizes.dit_weight_bytes(m.fp8)
    dit_host = (sizes.NUM_BLOCKS * per_block + rest) if (m.blocks_to_swap or not on_gpu) else 0
    qwen = sizes.QWEN_BF16_BYTES + sizes.BYT5_BYTES
    qwen_kept = qwen if batch and (m.text_encoder_cpu or not on_gpu) else 0
    base = sizes.HOST_CACHE_PROCESS_BASE_GIB * presets.GIB
    return (base + max(qwen, sizes.VAE_FILE_BYTES, qwen_kept + dit_host)) / presets.GIB


def describe(
    m: InferenceMemory,
    est: InferenceEstimate,
    gpu_total_gib: float | None,
    vram: str,
    device: str = "cuda",
    batch: bool = True,
    host_available_gib: float | None = None,
) -> list[str]:
    """The plan's lines for the generator: preset and knobs (with where each came from), the estimate (labelled as
    such), and warnings naming what to lower when it exceeds the card or the host RAM. On the CPU only the host
    RAM (the whole DiT and, for several prompts, Qwen2.5-VL beside it)."""
    if device == "cpu":
        host = host_ram(m, batch, on_gpu=False)
        lines = [f"device cpu: no memory preset; estimated host RAM {host:.1f} GB (arithmetic, not measured)"]
        return lines + _host_warning(host, host_available_gib, batch)
    preset = f"--vram {m.preset}" if m.preset else "no preset (musubi's defaults)"
    if vram == "auto" and m.preset and gpu_total_gib is not None:
        preset += f" (auto: {gpu_total_gib:.1f} GB GPU)"
    knobs = [
        f"DiT {'fp8' if m.fp8 else 'bf16'} ({m.sources['fp8']})",
        f"{m.blocks_to_swap} blocks swapped ({m.sources['blocks_to_swap']})",
        f"text encoder on the {'CPU' if m.text_encoder_cpu else 'GPU'} ({m.sources['text_encoder_cpu']})",
    ]
    if m.vae_sample_size is not None:
        knobs.append(f"VAE tile {m.vae_sample_size} ({m.sources['vae_sample_size']})")
    lines = [f"memory: {preset}; " + ", ".join(knobs)]
    others = ", ".join(f"{k} {v:.1f} GB" for k, v in est.moments.items() if k != est.peak_at)
    kept = " (musubi keeps the text encoder loaded while it renders several prompts)" if batch else ""
    lines.append(
        f"estimate (arithmetic, not measured): peak VRAM {est.peak_vram_gb:.1f} GB while {est.peak_at}{kept} "
        f"({others}); host RAM {est.host_ram_gb:.1f} GB"
    )
    card = gpu_total_gib if gpu_total_gib is not None else (float(m.preset) if m.preset else None)
    if card is not None and est.peak_vram_gb > card:
        tips = {
            "encoding the prompts": "--vram 24 (encodes the prompts on the CPU)",
            "denoising": f"--fp8 or --blocks_to_swap {min(sizes.MAX_BLOCKS_TO_SWAP, m.blocks_to_swap + 10)}",
            "decoding": "--vae_sample_size 128 --vae_enable_patch_conv",
        }
        lines.append(
            f"warning: estimated peak {est.peak_vram_gb:.1f} GB > {card:.1f} GB GPU while {est.peak_at}: try "
            f"{tips[est.peak_at]}, or a smaller --video_size / --video_length"
        )
    return lines + _host_warning(est.host_ram_gb, host_available_gib, batch)


def _host_warning(needed: float, available: float | None, batch: bool) -> list[str]:
    if available is None or needed <= available:
        return []
    tip = "one prompt and seed per command (the text encoder is then freed before the DiT loads), or " if batch else ""
    return [f"warning: estimated host RAM {needed:.1f} GB > {available:.1f} GB available: {tip}more RAM or swap"]


def command(job: GenerateJob, files: Mapping[str, Path], lora: Path | None) -> Command:
    """`python -m musubi_tuner.hv_1_5_generate_video ...` for one run: both runs get the same weights, prompts
    (`--from_file`, or `--prompt --seed` for a single plain prompt), size (`--video_size HEIGHT WIDTH`), length,
    steps, guidance, flow shift, `--cpu_noise` and memory flags; only the LoRA run gets `--lora_weight FILE
    --lora_multiplier M`. i2v: `--image_encoder` and `--image_path` (the first frame; every prompt line carries it
    too). On the CPU the VAE runs in bfloat16 (musubi's float16 default is 15-80x slower there)."""
    inf, m = job.inference, job.memory
    argv = ["--dit", str(files["dit"]), "--vae", str(files["vae"]), "--text_encoder", str(files["text_encoder"])]
    argv += ["--byt5", str(files["byt5"])]
    if job.task == "i2v":
        argv += ["--image_encoder", str(files["image_encoder"]), "--image_path", str(job.image)]
    if job.single is not None:  # one prompt: musubi frees the text encoders before the DiT loads
        argv += ["--prompt", job.single[0], "--seed", str(job.single[1])]
    else:
        argv += ["--from_file", str(job.prompt_file)]
    argv += ["--save_path", str(job.save_path)]
    argv += ["--video_size", str(inf.height), str(inf.width), "--video_length", str(inf.video_length)]
    argv += ["--infer_steps", str(inf.infer_steps), "--guidance_scale", cli_number(inf.guidance_scale)]
    argv += ["--flow_shift", cli_number(inf.flow_shift), "--fps", str(FPS), "--output_type", "video"]
    argv += ["--cpu_noise", "--device", job.device]
    if job.device == "cpu":
        argv += ["--vae_dtype", "bfloat16"]
    argv += memory_flags(m)
    if lora is not None:
        argv += ["--lora_weight", str(lora), "--lora_multiplier", cli_number(inf.lora_multiplier)]
    return Command("generate_lora" if lora is not None else "generate_base", GENERATE, tuple(argv))


def commands(job: GenerateJob, files: Mapping[str, Path], lora: Path | None) -> list[Command]:
    """The processes of one run: hv_1_5_generate_video reads every prompt line in one process (command)."""
    return [command(job, files, lora)]


def memory_flags(m: InferenceMemory) -> list[str]:
    """The generator's flags for the memory plan (--fp8 --fp8_scaled, --blocks_to_swap, --text_encoder_cpu, VAE)."""
    argv: list[str] = ["--fp8", "--fp8_scaled"] if m.fp8 else []
    if m.blocks_to_swap:
        argv += ["--blocks_to_swap", str(m.blocks_to_swap)]
    if m.text_encoder_cpu:
        argv.append("--text_encoder_cpu")
    if m.vae_sample_size is not None:
        argv += ["--vae_sample_size", str(m.vae_sample_size)]
    if m.vae_enable_patch_conv:
        argv.append("--vae_enable_patch_conv")
    return argv


def saved_videos(log_text: str) -> list[Path]:
    """The videos a generator run saved, in prompt order (its `Video saved to: PATH` lines)."""
    return [Path(m["path"]) for m in _SAVED.finditer(log_text)]


def unused_keys_line(log_text: str) -> str | None:
    """The "not all LoRA keys are used" warning (cut to 300 characters) if the log has it, else None."""
    for line in log_text.splitlines():
        if UNUSED_LORA_KEYS in line:
            return line.strip()[:300]
    return None


def needs_cuda(log_text: str) -> bool:
    """Whether a failed run died importing the generator without a CUDA GPU (wan/modules/t5.py)."""
    return "current_device" in log_text and any(marker in log_text for marker in _NEEDS_CUDA[1:])


def inference_defaults() -> Inference:
    """HV1.5's steps, guidance and flow shift (size and length come from the run: default_shape)."""
    return Inference(0, 0, 0, INFER_STEPS, GUIDANCE_SCALE, FLOW_SHIFT, 1.0)
