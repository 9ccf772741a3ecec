"""Qwen2.5-VL inputs and generation for the captioner child (worker.py): the chat template, the vision inputs, the
placeholder tokens, and the model's own generation settings.

Why not `AutoProcessor`: in transformers 4.57 (musubi-tuner v0.3.4's pin) `Qwen2_5_VLProcessor` always builds its
video processor, and every video processor needs torchvision. The Docker image has torchvision, but the CPU
machines that run this project's tests and the real-engine rig cannot import PyPI's torchvision (its operators are
built against CUDA torch: "operator torchvision::nms does not exist"), and no CPU build of it is on PyPI. So one
path that runs everywhere, tests and rig included: the slow `Qwen2VLImageProcessor` (no torchvision) for images AND
videos (it still accepts `videos=` in 4.57, with a deprecation warning, and returns `pixel_values_videos` and
`video_grid_thw` from the same smart_resize/normalize/patchify code), the chat template from the repo's
`chat_template.json`, and the two steps `Qwen2_5_VLProcessor.__call__` adds on top, mirrored here line for line:
each `<|image_pad|>`/`<|video_pad|>` expanded to grid_t*grid_h*grid_w / merge_size**2 tokens, and
`second_per_grid_ts = temporal_patch_size / fps` (the seconds one temporal patch spans; without it the model
assumes 2 fps). The model checks the first itself: a count that does not match its vision features raises. The
pixels are those of `Qwen2VLVideoProcessor` (the same smart_resize to the same bounds, rescale, normalize, last frame
repeated to an even count, the same patch order), resized by PIL instead of torchvision (bicubic both).

Everything here imports torch/transformers lazily: hvlora's own process never loads them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"


@dataclass(frozen=True)
class PixelBounds:
    """Pixels per image or video frame after the processor's smart_resize (multiples of 28 x 28): at least `min`,
    at most `max`. Explicit, because the processor's own default allows 12.8 MP per frame."""

    min: int
    max: int


class Processor:
    """Chat template + slow image processor + tokenizer of a Qwen2.5-VL processor folder (the small files of
    Qwen/Qwen2.5-VL-7B-Instruct: preprocessor_config.json, chat_template.json, tokenizer files)."""

    def __init__(self, folder: Path):
        from transformers import Qwen2TokenizerFast, Qwen2VLImageProcessor

        self.tokenizer = Qwen2TokenizerFast.from_pretrained(folder)
        self.vision = Qwen2VLImageProcessor.from_pretrained(folder)
        self.template = json.loads((folder / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]

    def prompt_text(self, kind: str, prompt: str) -> str:
        """The chat as the model reads it: the media placeholder, then the instruction, then the assistant's turn."""
        messages = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": prompt}]}]
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.template, tokenize=False, add_generation_prompt=True
        )

    def image_inputs(self, image, prompt: str, bounds: PixelBounds) -> dict:
        """Model inputs for one PIL image: input_ids, attention_mask, pixel_values, image_grid_thw."""
        feats = self.vision(images=[image], min_pixels=bounds.min, max_pixels=bounds.max, return_tensors="pt")
        return self._with_text(self.prompt_text("image", prompt), IMAGE_TOKEN, feats["image_grid_thw"][0], feats)

    def video_inputs(self, frames: list, fps: float, prompt: str, bounds: PixelBounds) -> dict:
        """Model inputs for one video given as frames (H x W x 3 uint8 arrays, in time order, sampled at `fps`):
        input_ids, attention_mask, pixel_values_videos, video_grid_thw and second_per_grid_ts."""
        import torch

        feats = self.vision(
            images=None, videos=[frames], min_pixels=bounds.min, max_pixels=bounds.max, return_tensors="pt"
        )
        feats = dict(feats)
        feats["second_per_grid_ts"] = torch.tensor([self.vision.temporal_patch_size / fps])
        return self._with_text(self.prompt_text("video", prompt), VIDEO_TOKEN, feats["video_grid_thw"][0], feats)

    def _with_text(self, text: str, token: str, grid, feats) -> dict:
        count = int(grid.prod()) // self.vision.merge_size**2
        text = text.replace(token, token * count, 1)
        ids = self.tokenizer([text], return_tensors="pt")
        return {**ids, **feats}

    def vision_tokens(self, inputs: dict) -> int:
        return int((inputs["input_ids"] == self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)).sum()) + int(
            (inputs["input_ids"] == self.tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)).sum()
        )


def generate(model, processor: Processor, inputs: dict, generation_config, max_new_tokens: int, fp8: bool):
    """(text, new token count, hit the limit) for one item. `generation_config` is the model's own
    generation_config.json (repetition penalty 1.05, top_k 1). With fp8 weights the model runs under bf16 autocast,
    as musubi's caption_images_by_qwen_vl.py does."""
    import torch

    device = model.device
    inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=fp8)
    with torch.no_grad(), autocast:
        out = model.generate(**inputs, generation_config=generation_config, max_new_tokens=max_new_tokens)
    new = out[0, inputs["input_ids"].shape[1] :]
    text = processor.tokenizer.decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    ended = any(int(t) in _eos_ids(generation_config) for t in new[-1:])
    return text, int(new.shape[0]), not ended and int(new.shape[0]) >= max_new_tokens


def _eos_ids(generation_config) -> set[int]:
    eos = generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


def tidy(text: str, truncated: bool) -> str:
    """One paragraph: whitespace runs (newlines included) become one space. A caption cut by the token limit ends
    at its last complete sentence when one ends in its second half (a half sentence trains as noise)."""
    text = re.sub(r"\s+", " ", text).strip()
    if truncated:
        ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text)]
        if ends and ends[-1] >= len(text) / 2:
            text = text[: ends[-1]]
    return text
