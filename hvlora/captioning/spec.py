"""What a model family gives the captioner, and the bounds every caption request keeps to.

A family whose text encoder is a whole Qwen2.5-VL (vision tower and LM head included: HunyuanVideo 1.5, Kandinsky 5)
describes it with a `CaptionModel` in its own folder; nothing here knows a family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .qwen_vl import PixelBounds

if TYPE_CHECKING:
    from ..weights.files import TokenizerRepo

PATCH_AREA = 28 * 28  # one merged Qwen2.5-VL vision token covers 28 x 28 pixels (patch 14, merge 2)
# Images: musubi's caption_images_by_qwen_vl.py bounds (256 to 1280 tokens, about 0.2 to 1.0 MP).
IMAGE_PIXELS = PixelBounds(256 * PATCH_AREA, 1280 * PATCH_AREA)
# Video frames: Qwen2.5-VL's own video defaults (qwen-vl-utils: VIDEO_MIN_PIXELS 128 x 28 x 28); at most 256 tokens
# per frame pair (about 448 x 448), so the largest video is 16 pairs x 256 = 4096 vision tokens.
VIDEO_PIXELS = PixelBounds(128 * PATCH_AREA, 256 * PATCH_AREA)
MAX_VIDEO_FRAMES = 32  # frames given per video at most, evenly taken from the frames that train (an even number:
# the vision tower pairs frames, temporal_patch_size 2)


@dataclass(frozen=True)
class CaptionModel:
    """A family's captioner. `weight_component`: the catalog component that holds the whole Qwen2.5-VL, loaded with
    musubi's `load_qwen2_5_vl` (a single file, or a model folder: its state_dict_file); `processor_repo_id` and
    `processor_files`: the small files the processor reads (tokenizer, chat template, preprocessor and generation
    configs), fetched with the weights when captioning is on; `prompts`: the default instruction per media kind
    ('image', 'video'); `loader_tokenizer`: the tokenizer repo musubi's `load_qwen2_5_vl` builds from the HF cache
    (it loads Qwen/Qwen-Image's), fetched when captions are generated unless the family's tokenizers hold that repo;
    `fp8_knob`: the MemoryPlan field under which the captioner loads its weights in fp8 (a GPU where the text
    encoder does not fit in bf16)."""

    weight_component: str
    processor_repo_id: str
    processor_files: tuple[str, ...]
    prompts: dict[str, str]
    loader_tokenizer: TokenizerRepo | None = None
    fp8_knob: str = "fp8_vl"
