"""The HunyuanVideo 1.5 DiT's shape, as musubi-tuner v0.3.4 builds it (hunyuan_video_1_5_models.py): the facts the
memory estimates, the swap limit and the ComfyUI key check share."""

from __future__ import annotations

NUM_BLOCKS = 54  # MMDoubleStreamBlock; no single-stream blocks
HIDDEN = 2048  # hidden size (16 heads of 128)
# musubi asserts blocks_to_swap < num_double_blocks - 2 (enable_block_swap), so 51 at most
MAX_BLOCKS_TO_SWAP = NUM_BLOCKS - 3
