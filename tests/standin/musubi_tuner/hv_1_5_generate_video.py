"""Stand-in for musubi_tuner.hv_1_5_generate_video (v0.3.4): same flags, checks, log lines and output files; no
model runs.

Mirrors hv_1_5_generate_video.py:
- parse_args' post-parse checks: `--from_file` with `--interactive` and a command without any of `--prompt`,
  `--from_file`, `--interactive`, `--latent_path` raise ValueError (a traceback, exit 1);
- main: the device is `--device`, else cuda if available else cpu; `--from_file` lines are read, stripped, empty
  lines and lines starting with '#' skipped, each parsed by `parse_prompt_line` (the text before the first " --",
  then `--w --h --f --d --s --g/--l --fs --i --n`; unknown options are ignored) and applied over the command's
  flags with `apply_overrides` (`--w`/`--h` set video_size[1]/[0]: musubi's `--video_size` is HEIGHT WIDTH);
  an empty file logs "No valid prompts found" and writes nothing;
- process_batch_prompts: the DiT file is opened first (get_generation_settings), for i2v (`--image_path` on the
  command) the VAE and the image encoder, then both text encoders; every prompt is "encoded" (an i2v prompt's
  image is opened); then the DiT is loaded with the LoRA merged at load time: each `--lora_weight` file is read
  with safetensors, multipliers default to 1.0 per file, and a key whose module is not a Linear of the DiT's
  double blocks (`lora_unet_double_blocks_{b}_{img|txt}_{attn_q,...,mod_linear}`, musubi's names) is left over:
  utils/lora_utils logs `Warning: not all LoRA keys are used: k1, k2, ...` and generation goes on (a ComfyUI-format
  file, whose q/k/v are fused into `attn_qkv`, gives the base model);
- generate: the seed is the line's `--d`, else `--seed`, else random; the noise generator is on the CPU with
  `--cpu_noise`, else on the device; check_inputs raises ValueError when height or width is not a multiple of 16;
  `--video_length` has no default (None fails with TypeError, as in musubi); a tqdm bar "Denoising steps";
- then every latent is decoded in prompt order and saved by save_video as `{save_path}/{time_flag}_{seed}.mp4`
  (time_flag: `%Y%m%d-%H%M%S-%f` cut to milliseconds; 1 + 4 x ((F - 1) // 4) frames of HEIGHT x WIDTH, h264 yuv420p,
  `--fps`), logging `Video saved to: PATH`; finally "Done!". A single `--prompt` (no `--from_file`) goes through
  save_output, which hands save_video an empty base name: its file is `{time_flag}_{seed}_.mp4`.
`--latent_path` and `--interactive` are not imitated (the project never uses them).

The pixels: 8x8-pixel blocks of deterministic noise per (prompt, seed, size, frames, steps, guidance, flow shift,
negative prompt, image, noise device), so the same settings give the same video and any change another one. A LoRA
whose used tensors are not all zero adds a tint (its channel mix from the tensors' bytes, its strength 60 x the
multiplier, clamped to +-2): the base model's video and the LoRA's differ visibly, an all-zero LoRA (lora_up 0, as
at initialisation), a multiplier of 0 or a file with no usable key gives the base video exactly.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import logging
import os
import random
import time

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from . import _common, _flags, _hooks
from ._sampling import write_mp4
from .networks import lora_hv_1_5

MODULE = "musubi_tuner.hv_1_5_generate_video"
logger = logging.getLogger(__name__)  # "__main__" under python -m, as musubi's
lora_logger = logging.getLogger("musubi_tuner.utils.lora_utils")

BLOCK = 8  # pixels per noise block
TINT = 60.0  # pixel levels per unit of LoRA multiplier


def parse_args():
    args = _flags.build_parser(MODULE).parse_args()
    if args.from_file and args.interactive:
        raise ValueError("Cannot use both --from_file and --interactive at the same time")
    if args.prompt is None and not args.from_file and not args.interactive and args.latent_path is None:
        raise ValueError("Either --prompt, --from_file, --interactive, or --latent_path must be specified")
    return args


def parse_prompt_line(line: str) -> dict:
    """hv_1_5_generate_video.parse_prompt_line (not the training sampler's parser: no regexes, `--g` and `--l`
    both set guidance_scale, unknown options are dropped, a value that is not a number raises ValueError)."""
    parts = line.split(" --")
    overrides: dict = {"prompt": parts[0].strip()}
    for part in parts[1:]:
        if not part.strip():
            continue
        option, _, value = part.partition(" ")
        option, value = option.strip(), value.strip()
        if option == "w":
            overrides["video_size_width"] = int(value)
        elif option == "h":
            overrides["video_size_height"] = int(value)
        elif option == "f":
            overrides["video_length"] = int(value)
        elif option == "d":
            overrides["seed"] = int(value)
        elif option == "s":
            overrides["infer_steps"] = int(value)
        elif option in ("g", "l"):
            overrides["guidance_scale"] = float(value)
        elif option == "fs":
            overrides["flow_shift"] = float(value)
        elif option == "i":
            overrides["image_path"] = value
        elif option == "n":
            overrides["negative_prompt"] = value
    return overrides


def apply_overrides(args, overrides: dict):
    args = copy.deepcopy(args)
    for key, value in overrides.items():
        if key == "video_size_width":
            args.video_size[1] = value
        elif key == "video_size_height":
            args.video_size[0] = value
        else:
            setattr(args, key, value)
    return args


def check_inputs(args) -> tuple[int, int, int]:
    height, width = args.video_size
    if height % 16 != 0 or width % 16 != 0:
        raise ValueError(f"`height` and `width` have to be divisible by 16 but are {height} and {width}.")
    return height, width, args.video_length


def load_loras(args) -> list[tuple[dict, float]]:
    """The LoRA files with their multipliers (load_safetensors_with_lora_and_fp8's padding and cut to the files)."""
    files = args.lora_weight or []
    multipliers = list(args.lora_multiplier or [])
    multipliers = (multipliers + [1.0] * len(files))[: len(files)]
    loras = []
    for path in files:
        logger.info(f"Loading LoRA weight from: {path}")
        loras.append(load_file(path))
    if loras:
        lora_logger.info(f"Merging LoRA weights into state dict. multipliers: {multipliers}, network types: lora")
    return list(zip(loras, multipliers))


def merge(loras: list[tuple[dict, float]], modules: set[str] | None = None, report: bool = True) -> np.ndarray:
    """The merged LoRAs' tint (RGB levels): what the weight hook would add, reduced to a colour. `modules`: the
    DiT's LoRA module names (None: HV1.5's); keys of modules the DiT does not have are reported as musubi's HV1.5
    generator reports them (`report`; Kandinsky 5's says nothing)."""
    modules = {name for name, _, _ in lora_hv_1_5.modules()} if modules is None else modules
    tint = np.zeros(3, dtype=np.float32)
    for sd, multiplier in loras:
        used = {k for k in sd if k.split(".", 1)[0] in modules}
        left = sorted(set(sd) - used)
        if left and report:
            lora_logger.warning(f"Warning: not all LoRA keys are used: {', '.join(left)}")
        ups = [sd[k] for k in sorted(used) if k.endswith(".lora_up.weight")]
        if not ups or not any(bool(u.float().abs().sum()) for u in ups):
            continue
        digest = hashlib.sha256(b"".join(u.float().numpy().tobytes()[:64] for u in ups[:8])).digest()
        direction = np.array([digest[0], digest[1], digest[2]], dtype=np.float32) / 255.0 - 0.5
        direction /= max(1e-6, float(np.abs(direction).max()))
        tint += direction * TINT * max(-2.0, min(2.0, multiplier))
    return tint


def render(args, device: torch.device, tint: np.ndarray) -> np.ndarray:
    """The decoded video [frames, H, W, 3] uint8 for one prompt's settings."""
    height, width, video_length = check_inputs(args)
    lat_f = 1 + (video_length - 1) // 4  # TypeError for --video_length None, as musubi's noise shape
    noise_device = "cpu" if args.cpu_noise else device.type
    frames = 1 + (lat_f - 1) * 4
    blocks = (frames, -(-height // BLOCK), -(-width // BLOCK), 3)
    parts = (args.prompt, args.seed, height, width, frames, args.infer_steps, args.guidance_scale, args.flow_shift)
    image = _image_digest(args.image_path)
    values = _common.noise(blocks, torch.float32, *parts, args.negative_prompt, image, noise_device).numpy()
    pixels = np.repeat(np.repeat(values, BLOCK, axis=1), BLOCK, axis=2)[:, :height, :width]
    pixels = 128.0 + 50.0 * pixels + tint
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _image_digest(path: str | None) -> str | None:
    if path is None:
        return None
    with open(path, "rb") as f:  # PIL's Image.open: FileNotFoundError for a missing file
        return hashlib.sha256(f.read()).hexdigest()


def get_time_flag() -> str:
    return datetime.datetime.fromtimestamp(time.time()).strftime("%Y%m%d-%H%M%S-%f")[:-3]


def save_video(video: np.ndarray, args, original_base_name: str | None = None) -> str:
    os.makedirs(args.save_path, exist_ok=True)
    original_name = "" if original_base_name is None else f"_{original_base_name}"
    path = f"{args.save_path}/{get_time_flag()}_{args.seed}{original_name}.mp4"
    write_mp4(path, video, fps=args.fps)
    logger.info(f"Video saved to: {path}")
    return path


def process_batch_prompts(prompts: list[dict], args, device: torch.device, base_name: str | None = None) -> None:
    if not prompts:
        logger.warning("No valid prompts found")
        return
    _common.require_weight_file(args.dit)
    logger.info(f"Using device: {device}, DiT precision: torch.bfloat16")
    logger.info("Loading VAE, text encoders and image processors to encode all prompts/images")
    if args.image_path is not None:
        _common.require_weight_file(args.vae)
        _common.require_weight_file(args.image_encoder)
    _common.require_weight_file(args.text_encoder)
    _common.require_weight_file(args.byt5)
    per_prompt = [apply_overrides(args, p) for p in prompts]
    for prompt_args in per_prompt:
        _image_digest(prompt_args.image_path)
    logger.info("Loading DiT model(s)")
    tint = merge(load_loras(args))
    _hooks.work_starts(MODULE, logger)
    videos = []
    for i, prompt_args in enumerate(per_prompt):
        logger.info(f"Processing prompt {i + 1}/{len(per_prompt)}: {prompt_args.prompt[:50]}...")
        prompt_args.seed = prompt_args.seed if prompt_args.seed is not None else random.randint(0, 2**32 - 1)
        for _ in tqdm(range(prompt_args.infer_steps), desc="Denoising steps"):
            pass
        videos.append((render(prompt_args, device, tint), prompt_args))
    logger.info("Decoding latents to videos/images")
    _common.require_weight_file(args.vae)
    for i, (video, prompt_args) in enumerate(videos):
        logger.info(f"Decoding output {i + 1}/{len(videos)}")
        save_video(video, prompt_args, base_name)


def main() -> None:
    _hooks.record_call(MODULE)
    args = parse_args()
    if args.latent_path or args.interactive:
        raise NotImplementedError("standin: --latent_path and --interactive are not imitated")
    device = _common.device_from(args.device)
    logger.info(f"Using device: {device}")
    if args.from_file:
        with open(args.from_file, encoding="utf-8") as f:
            lines = [line.strip() for line in f.readlines()]
        prompts = []
        for line in lines:
            if not line or line.startswith("#"):
                continue
            data = parse_prompt_line(line)
            logger.info(f"Parsed prompt data: {data}")
            prompts.append(data)
        process_batch_prompts(prompts, args, device)
    else:
        process_batch_prompts([{"prompt": args.prompt}], args, device, base_name="")  # save_output's "" name
    logger.info("Done!")


if __name__ == "__main__":
    main()
