"""Sample generation during training as musubi v0.3.4 does it for HV1.5, without a model.

Mirrors training/sampling_prompts.py (load_prompts, line_to_prompt_dict, should_sample_images: the step and epoch
triggers are ORed), hv_1_5_train_network.HunyuanVideo15NetworkTrainer.process_sample_prompts (prompt file read,
then the Qwen2.5-VL and byT5 files, for i2v the SigLIP file and every prompt's `--i` image, asserted and opened;
negative prompts default to ""), trainer_base._prepare_sampling (then the VAE file), trainer_base.sample_images /
sample_image_inference (log lines, torch RNG saved and restored, prompts split across processes, sizes rounded to
/8, frames to 4k+1, file names) and hv_1_5_train_network.do_inference (a tqdm bar without desc over the sampling
steps; the decoded size is the latent size x 16, so width and height end up rounded down to a multiple of 16) and
hv_generate_video.save_images_grid / save_videos_grid (`{name}_000.png` for one frame, else `{name}.mp4`, h264
yuv420p 4 Mbit/s at 24 fps, written with PyAV). The pixels are deterministic noise per (output name, prompt index,
seed, epoch, steps); black when the network's weights are not finite (a NaN latent decodes to 0 after clamp).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from fractions import Fraction

import numpy as np
import torch
from tqdm import tqdm

from . import _common

logger = logging.getLogger("musubi_tuner.training.trainer_base")
prompt_logger = logging.getLogger("musubi_tuner.training.sampling_prompts")
hv_logger = logging.getLogger("__main__")  # hv_1_5_train_network's logger: it runs as `python -m`

DEFAULT_GUIDANCE_SCALE = 6.0  # HunyuanVideo15NetworkTrainer.default_guidance_scale
DEFAULT_FLOW_SHIFT = 14.5  # NetworkTrainer.default_discrete_flow_shift
VAE_FRAME_STRIDE = 4

# line_to_prompt_dict: option regexes in musubi's order; the first that matches a " --" part wins
_OPTIONS = [
    (r"w (\d+)", "width", int),
    (r"h (\d+)", "height", int),
    (r"f (\d+)", "frame_count", int),
    (r"d (\d+)", "seed", int),
    (r"s (\d+)", "sample_steps", lambda v: max(1, min(1000, int(v)))),
    (r"g ([\d\.]+)", "guidance_scale", float),
    (r"fs ([\d\.]+)", "discrete_flow_shift", float),
    (r"l ([\d\.]+)", "cfg_scale", float),
    (r"n (.+)", "negative_prompt", str),
    (r"i (.+)", "image_path", str.strip),
    (r"ei (.+)", "end_image_path", str.strip),
    (r"cn (.+)", "control_video_path", str.strip),
    (r"ci (.+)", "control_image_path", str.strip),  # may repeat: a list
    (r"of (.+)", "one_frame", str.strip),
]


def line_to_prompt_dict(line: str) -> dict:
    """One prompt line: the text before the first " --", then options. Every part (the prompt text too) is tried
    against the option patterns, case-insensitively; a value that does not convert is logged and skipped."""
    parts = line.split(" --")
    prompt = {"prompt": parts[0]}
    for part in parts:
        for pattern, key, convert in _OPTIONS:
            m = re.match(pattern, part, re.IGNORECASE)
            if not m:
                continue
            try:
                value = convert(m.group(1))
            except ValueError as ex:
                prompt_logger.error(f"Exception in parsing / 解析エラー: {part}")
                prompt_logger.error(ex)
                break
            if key == "control_image_path":
                prompt.setdefault(key, []).append(value)
            else:
                prompt[key] = value
            break
    return prompt


def load_prompts(prompt_file: str) -> list[dict]:
    """sampling_prompts.load_prompts: .txt (one prompt per non-empty line; a line whose first character is '#' is a
    comment), .toml ([prompt] defaults + [[prompt.subset]]) or .json (a list of dicts or lines); each gets "enum"
    (its index, used in file names). Any other extension fails as musubi does (no `prompts` assigned)."""
    if prompt_file.endswith(".txt"):
        with open(prompt_file, encoding="utf-8") as f:
            lines = f.readlines()
        prompts = [line.strip() for line in lines if len(line.strip()) > 0 and line[0] != "#"]
    elif prompt_file.endswith(".toml"):
        import tomllib

        with open(prompt_file, "rb") as f:
            data = tomllib.load(f)
        prompts = [dict(**data["prompt"], **subset) for subset in data["prompt"]["subset"]]
    elif prompt_file.endswith(".json"):
        with open(prompt_file, encoding="utf-8") as f:
            prompts = json.load(f)
    for i, prompt in enumerate(prompts):  # UnboundLocalError for any other extension, as in musubi
        if isinstance(prompt, str):
            prompt = prompts[i] = line_to_prompt_dict(prompt)
        assert isinstance(prompt, dict)
        prompt["enum"] = i
        prompt.pop("subset", None)
    return prompts


def should_sample_images(args, steps: int, epoch: int | None = None) -> bool:
    """Step 0: only with --sample_at_first. Otherwise by steps OR by epochs (epoch None: in-loop call)."""
    if steps == 0:
        return bool(args.sample_at_first)
    by_steps = args.sample_every_n_steps is not None and steps % args.sample_every_n_steps == 0
    by_epochs = args.sample_every_n_epochs is not None and epoch is not None and epoch % args.sample_every_n_epochs == 0
    return by_steps or by_epochs


def prepare_sampling(args) -> list[dict] | None:
    """_prepare_sampling: the prompts (with text encoders "loaded" and, for i2v, images checked), then the VAE.
    None without --sample_prompts."""
    if not args.sample_prompts:
        return None
    hv_logger.info("cache Text Encoder outputs for sample prompt: %s", args.sample_prompts)
    prompts = load_prompts(args.sample_prompts)
    _common.require_weight_file(args.text_encoder)
    _common.require_weight_file(args.byt5)
    for prompt in prompts:
        prompt.setdefault("negative_prompt", "")
    if args.task == "i2v":
        _common.require_weight_file(args.image_encoder)
        for prompt in prompts:
            image_path = prompt.get("image_path", None)
            assert image_path is not None, "image_path should be set for I2V training"
            hv_logger.info(f"Encoding image to image encoder context: {image_path}")
            with open(image_path, "rb"):  # PIL's Image.open: FileNotFoundError for a missing file
                pass
    hv_logger.info(f"Loading VAE model from {args.vae}")
    _common.require_weight_file(args.vae)
    return prompts


def sample_images(accelerator, args, epoch, steps: int, network, sample_parameters) -> None:
    """trainer_base.sample_images: check the trigger, then one sample per prompt (this process's share)."""
    if not should_sample_images(args, steps, epoch):
        return
    logger.info("")
    logger.info(f"generating sample images at step / サンプル画像生成 ステップ: {steps}")
    if sample_parameters is None:
        logger.error(f"No prompt file / プロンプトファイルがありません: {args.sample_prompts}")
        return
    save_dir = os.path.join(args.output_dir, "sample")
    os.makedirs(save_dir, exist_ok=True)
    rng_state = torch.get_rng_state()
    n = accelerator.num_processes
    share = sample_parameters if n <= 1 else sample_parameters[accelerator.process_index :: n]
    for sample_parameter in share:
        sample_image_inference(args, network, save_dir, sample_parameter, epoch, steps)
    torch.set_rng_state(rng_state)


def sample_image_inference(args, network, save_dir: str, sample_parameter: dict, epoch, steps: int) -> None:
    sample_steps = sample_parameter.get("sample_steps", 20)
    width = sample_parameter.get("width", 256)
    height = sample_parameter.get("height", 256)
    frame_count = sample_parameter.get("frame_count", 1)
    guidance_scale = sample_parameter.get("guidance_scale", DEFAULT_GUIDANCE_SCALE)
    discrete_flow_shift = sample_parameter.get("discrete_flow_shift", DEFAULT_FLOW_SHIFT)
    seed = sample_parameter.get("seed")
    prompt = sample_parameter.get("prompt", "")
    cfg_scale = sample_parameter.get("cfg_scale", None)
    negative_prompt = sample_parameter.get("negative_prompt", None)

    width, height = (width // 8) * 8, (height // 8) * 8
    frame_count = (frame_count - 1) // VAE_FRAME_STRIDE * VAE_FRAME_STRIDE + 1
    image_path = None
    if args.task == "i2v":
        image_path = sample_parameter.get("image_path", None)
        if image_path is None:
            logger.error("No image_path for i2v model / i2vモデルのサンプル画像生成にはimage_pathが必要です")
            return
    if seed is not None:
        torch.manual_seed(seed)
    else:
        torch.seed()

    logger.info(f"prompt: {prompt}")
    logger.info(f"height: {height}")
    logger.info(f"width: {width}")
    logger.info(f"frame count: {frame_count}")
    logger.info(f"sample steps: {sample_steps}")
    logger.info(f"guidance scale: {guidance_scale}")
    logger.info(f"discrete flow shift: {discrete_flow_shift}")
    if seed is not None:
        logger.info(f"seed: {seed}")
    do_classifier_free_guidance = negative_prompt is not None
    if do_classifier_free_guidance:
        logger.info(f"negative prompt: {negative_prompt}")
        logger.info(f"cfg scale: {cfg_scale}")
    if image_path is not None:
        logger.info(f"image path: {image_path}")

    # do_inference: latent [32, 1 + (F-1)//4, H//16, W//16], the denoising loop, VAE decode (x16, x4 frames)
    if do_classifier_free_guidance and cfg_scale is None:
        hv_logger.info(f"Using default guidance scale: {DEFAULT_GUIDANCE_SCALE}")
    lat_f, lat_h, lat_w = 1 + (frame_count - 1) // 4, height // 16, width // 16
    for _ in tqdm(range(sample_steps)):
        pass
    frames = torch.zeros((1 + (lat_f - 1) * 4, lat_h * 16, lat_w * 16, 3), dtype=torch.uint8)
    if network.is_finite():
        values = _common.noise(frames.shape, torch.float32, args.output_name, sample_parameter.get("enum", 0), seed)
        frames = ((values + (steps % 7) / 7.0).sigmoid() * 255).to(torch.uint8)

    ts_str = time.strftime("%Y%m%d%H%M%S", time.localtime())
    num_suffix = f"e{epoch:06d}" if epoch is not None else f"{steps:06d}"
    seed_suffix = "" if seed is None else f"_{seed}"
    prompt_idx = sample_parameter.get("enum", 0)
    save_path = f"{'' if args.output_name is None else args.output_name + '_'}{num_suffix}_{prompt_idx:02d}_{ts_str}{seed_suffix}"
    if frames.shape[0] == 1:
        write_png(os.path.join(save_dir, f"{save_path}_000.png"), frames[0].numpy())
    else:
        write_mp4(os.path.join(save_dir, save_path) + ".mp4", frames.numpy())


def write_png(path: str, rgb: np.ndarray) -> None:
    import av

    with av.open(path, "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_mp4(path: str, frames: np.ndarray, fps: int = 24) -> None:
    import av

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.bit_rate = 4000000
        stream.time_base = Fraction(1, fps)
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
