"""Stand-in for musubi_tuner.kandinsky5_cache_text_encoder_outputs (v0.3.4): same flags, checks, files; no model runs.

Mirrors kandinsky5_cache_text_encoder_outputs.main / encode_and_save_batch / _ensure_cache_architecture and
dataset/cache_io.save_text_encoder_output_cache_kandinsky5:
- the datasets are built as architecture k5 (captions only), the existing `*_k5_te.safetensors` listed, then the
  Qwen2.5-VL folder (`--text_encoder_qwen`) and the CLIP folder (`--text_encoder_clip`) are loaded with
  from_pretrained: each must be a folder with config.json and its weights (model.safetensors, or an index whose
  shards are all there; under HF_HUB_OFFLINE=1 a repo id that is not a folder fails);
- the prompt template per batch: "video" when an item of the batch has frame_count > 1, else "image"; the
  caption-only items have no frame count, so it is always "image" (logged, as the stand-in's only trace of it);
- one `{stem}_k5_te.safetensors` per caption: `text_embeds_bfloat16` [L, 3584] (L: the caption's tokens, at most
  `--qwen_max_length`), `pooled_embed_float32` [768] (CLIP), `attention_mask` [L] bool; a file of another
  architecture is removed first; metadata architecture kandinsky5, caption1, format_version (merged as the common
  saver does); `--skip_existing` / `--keep_cache` as cache_text_encoder_outputs.
"""

from __future__ import annotations

import logging
import os

import torch
from tqdm import tqdm

from . import _common, _dataset, _flags, _hooks, _k5
from .hv_1_5_cache_text_encoder_outputs import read_header, remove_stale, save_merged

MODULE = "musubi_tuner.kandinsky5_cache_text_encoder_outputs"
logger = logging.getLogger(__name__)
QWEN_DIM, CLIP_DIM = 3584, 768


def ensure_architecture(path: str) -> None:
    """_ensure_cache_architecture: an existing cache of another architecture (or unreadable) is removed."""
    if not os.path.exists(path):
        return
    try:
        arch = (read_header(path).get("__metadata__") or {}).get("architecture")
    except (OSError, ValueError):
        arch = None
    if arch != _k5.ARCHITECTURE_FULL:
        logger.warning(f"Removing text-encoder cache with mismatched architecture: {path}")
        os.remove(path)


def encode_batch(batch: list[_dataset.Item], qwen_max_length: int) -> None:
    template = "video" if any((it.frame_count or 1) > 1 for it in batch) else "image"
    logger.info(f"prompt template: {template} ({len(batch)} caption(s))")
    for item in batch:
        n = max(1, min(qwen_max_length, len(item.caption.split()) + 1))
        sd = {
            "text_embeds_bfloat16": _common.noise((n, QWEN_DIM), torch.bfloat16, item.caption, template),
            "pooled_embed_float32": _common.noise((CLIP_DIM,), torch.float32, item.caption, "clip"),
            "attention_mask": torch.ones(n, dtype=torch.bool),
        }
        ensure_architecture(item.text_encoder_output_cache_path)
        metadata = {"architecture": _k5.ARCHITECTURE_FULL, "caption1": item.caption, "format_version": "1.0.1"}
        save_merged(item.text_encoder_output_cache_path, sd, metadata)


def main() -> None:
    _hooks.record_call(MODULE)
    args = _flags.build_parser(MODULE).parse_args()
    _common.device_from(args.device)
    _dataset.use_architecture(_k5.ARCHITECTURE, _k5.ARCHITECTURE_FULL)
    datasets = _dataset.load_datasets(args.dataset_config, vars(args), log=logger)
    existing = [{os.path.normpath(f) for f in d.all_text_encoder_cache_files()} for d in datasets]
    listed: list[set[str]] = [set() for _ in datasets]
    _k5.require_pretrained(args.text_encoder_qwen, "Qwen2.5-VL")
    _k5.require_pretrained(args.text_encoder_clip, "CLIP")
    if args.quantized_qwen:
        import bitsandbytes  # noqa: F401  (transformers' 4-bit loading needs it)
    _hooks.work_starts(MODULE, logger)
    for i, dataset in enumerate(datasets):
        logging.getLogger("musubi_tuner.cache_text_encoder_outputs").info(f"Encoding dataset [{i}]")
        for batch in tqdm(dataset.text_encoder_batches()):
            listed[i].update(os.path.normpath(it.text_encoder_output_cache_path) for it in batch)
            if args.skip_existing:
                batch = [it for it in batch if os.path.normpath(it.text_encoder_output_cache_path) not in existing[i]]
            bs = args.batch_size if args.batch_size is not None else len(batch)
            for j in range(0, len(batch), bs):
                encode_batch(batch[j : j + bs], args.qwen_max_length)
    remove_stale(datasets, existing, listed, args.keep_cache)


if __name__ == "__main__":
    main()
