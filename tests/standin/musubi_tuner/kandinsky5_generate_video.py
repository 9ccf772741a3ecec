"""Stand-in for musubi_tuner.kandinsky5_generate_video (v0.3.4): same flags, checks, log lines and output files; no
model runs.

Mirrors kandinsky5_generate_video.main:
- `--task` is one of TASK_CONFIGS (argparse choices), `--prompt` and `--output` are required; width/height default
  to the task's resolution, `--frames` (LATENT frames) to 5 for video tasks, steps/guidance/scheduler scale to the
  task's;
- stage 1 loads the text encoders with from_pretrained (`--text_encoder_qwen`/`--text_encoder_clip`, else the
  task's ./weights paths): each a folder with config.json and weights; stage 2 opens the DiT file, merges each
  `--lora_weight` (networks.lora_kandinsky builds modules only for keys of the DiT's Linears and ignores the rest
  without a word; multipliers default to 1.0), with `--image` the VAE file and the image; stage 3 the VAE file;
- on the CPU it fails at the DiT's first Linear (autocast is enabled for CUDA only: float32 inputs meet bf16
  weights), with musubi's RuntimeError;
- the output: 4(frames-1)+1 frames of (width//8*8) x (height//8*8); more than one frame: an h264 `--output` and its
  first frame as `<output stem>.png`, printing "Saved video to OUT and first frame to PNG"; one frame: a PNG at
  `--output` ("Saved image to OUT"; an `--output` Pillow cannot name a format for fails there).
The pixels are the HV1.5 stand-in's: deterministic noise per settings, plus the LoRA's tint (same rules).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from safetensors.torch import load_file

from . import _common, _flags, _hooks, _k5
from ._sampling import write_mp4
from .hv_1_5_generate_video import BLOCK, _image_digest, merge
from .networks import lora_kandinsky

MODULE = "musubi_tuner.kandinsky5_generate_video"
logger = logging.getLogger(__name__)


def render(args, dit: _k5.DitSize, latent_frames: int, tint: np.ndarray) -> np.ndarray:
    width = ((args.width or dit.resolution) // 8) * 8
    height = ((args.height or dit.resolution) // 8) * 8
    frames = 1 + (latent_frames - 1) * 4
    blocks = (frames, -(-height // BLOCK), -(-width // BLOCK), 3)
    parts = (args.task, args.prompt, args.seed, height, width, frames, args.steps, args.guidance, args.scheduler_scale)
    values = _common.noise(blocks, torch.float32, *parts, args.negative_prompt, _image_digest(args.image)).numpy()
    pixels = np.repeat(np.repeat(values, BLOCK, axis=1), BLOCK, axis=2)[:, :height, :width]
    return np.clip(128.0 + 50.0 * pixels + tint, 0, 255).astype(np.uint8)


def main() -> None:
    _hooks.record_call(MODULE)
    args = _flags.build_parser(MODULE).parse_args()
    dit = _k5.dit_of(args.task)
    device = _common.device_from(args.device)
    latent_frames = args.frames if args.frames is not None else (1 if "t2i" in args.task or "i2i" in args.task else 5)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    _k5.require_pretrained(args.text_encoder_qwen or "./weights/text_encoder/", "Qwen2.5-VL")
    _k5.require_pretrained(args.text_encoder_clip or "./weights/text_encoder2/", "CLIP")
    logger.info(f"Loading DiT from {args.dit}")
    _common.require_weight_file(args.dit)
    files = args.lora_weight or []
    multipliers = (list(args.lora_multiplier or []) + [1.0] * len(files))[: len(files)]
    loras = [(load_file(path), m) for path, m in zip(files, multipliers)]
    tint = merge(loras, {name for name, _, _ in lora_kandinsky.modules(dit)}, report=False)
    if args.image:
        _common.require_weight_file(args.vae or "./weights/vae/")
    _hooks.work_starts(MODULE, logger)
    if device.type == "cpu":  # autocast only on CUDA: the first Linear of the DiT meets bf16 weights with float32
        raise RuntimeError("mat1 and mat2 must have the same dtype, but got Float and BFloat16")
    _common.require_weight_file(args.vae or "./weights/vae/")
    video = render(args, dit, latent_frames, tint)
    if video.shape[0] > 1:
        write_mp4(args.output, video)
        first = os.path.splitext(args.output)[0] + ".png"
        from PIL import Image

        Image.fromarray(video[0]).save(first)
        print(f"Saved video to {args.output} and first frame to {first}")
    else:
        from PIL import Image

        Image.fromarray(video[0]).save(args.output)
        print(f"Saved image to {args.output}")


if __name__ == "__main__":
    main()
