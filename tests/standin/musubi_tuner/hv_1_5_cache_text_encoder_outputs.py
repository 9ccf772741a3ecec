"""Stand-in for musubi_tuner.hv_1_5_cache_text_encoder_outputs (v0.3.4): same flags, checks, files; no model runs.

Mirrors hv_1_5_cache_text_encoder_outputs.main / encode_and_save_batch, cache_text_encoder_outputs
(prepare_cache_files_and_paths, process_text_encoder_batches, post_process_cache_files) and
dataset/cache_io.save_text_encoder_output_cache_hunyuan_video_1_5:
- the datasets are built first (captions only: a video without its caption file raises FileNotFoundError here),
  the existing `*_hv15_te.safetensors` are listed, then the Qwen2.5-VL file and the byT5 file must exist
  (loaded in that order);
- one `{stem}_hv15_te.safetensors` per image/video: `varlen_vl_embed_bfloat16` [L, 3584] (fp8 outputs are cast to
  bf16 too) and `varlen_byt5_embed_*` [L2, 1472]: float16 with L2 > 0 when the caption has "quoted" or “quoted”
  text (byT5 encodes only that, at most 128 tokens), else float32 with L2 = 0 (musubi's zero fallback); metadata
  architecture, caption1, format_version; an existing file is merged (its other keys and metadata kept; its header
  is read as MemoryEfficientSafeOpen reads it, so a file truncated after its header is simply rewritten); for a
  new file its folder is created first;
- `--skip_existing` skips files that existed at the start; without `--keep_cache` the `_te` files of this
  architecture that no item produced are deleted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct

import torch
from safetensors import safe_open
from tqdm import tqdm

from . import _common, _dataset, _flags, _hooks

MODULE = "musubi_tuner.hv_1_5_cache_text_encoder_outputs"
logger = logging.getLogger(__name__)
te_logger = logging.getLogger("musubi_tuner.cache_text_encoder_outputs")

VL_DIM, BYT5_DIM = 3584, 1472
QWEN_MAX_TOKENS, BYT5_MAX_LENGTH = 1024, 128
QUOTES = (r"\"(.*?)\"", r"“(.*?)”")  # hunyuan_video_1_5_text_encoder.get_byt5_text_tokens


def vl_length(caption: str) -> int:
    """A plausible Qwen token count: about one token per word plus the end marker (the real count depends on the
    tokenizer; only "small and > 0" matters to the trainer)."""
    return max(1, min(QWEN_MAX_TOKENS, len(caption.split()) + 1))


def byt5_length(caption: str) -> int:
    """byT5 tokens: bytes of the glyph prompt built from the quoted texts (+ </s>), capped; 0 without quotes."""
    texts = [t for pattern in QUOTES for t in re.findall(pattern, caption)]
    if not caption or not texts:
        return 0
    glyph_prompt = ". ".join(f'Text "{t}"' for t in texts) + ". "
    return min(BYT5_MAX_LENGTH, len(glyph_prompt.encode("utf-8")) + 1)


def save_item(item: _dataset.Item) -> None:
    """save_text_encoder_output_cache_hunyuan_video_1_5 + save_text_encoder_output_cache_common (merge)."""
    path = item.text_encoder_output_cache_path
    n_byt5 = byt5_length(item.caption)
    byt5_dtype = torch.float16 if n_byt5 else torch.float32
    sd = {
        "varlen_vl_embed_bfloat16": _common.noise((vl_length(item.caption), VL_DIM), torch.bfloat16, item.caption),
        f"varlen_byt5_embed_{_common.dtype_to_str(byt5_dtype)}": _common.noise(
            (n_byt5, BYT5_DIM), byt5_dtype, item.caption, "byt5"
        ),
    }
    metadata = {"architecture": _dataset.ARCHITECTURE_FULL, "caption1": item.caption, "format_version": "1.0.1"}
    save_merged(path, sd, metadata)


def save_merged(path: str, sd: dict, metadata: dict[str, str]) -> None:
    """save_text_encoder_output_cache_common: an existing file is merged (its other keys and metadata kept; the
    architecture must match), else its folder is created; then written."""
    if os.path.exists(path):
        new_bases = {_strip_dtype(k) for k in sd}
        header = read_header(path)
        old_meta = header.pop("__metadata__", None) or {}
        kept = [key for key in header if _strip_dtype(key) not in new_bases]
        if kept:  # only then are tensor bytes read (a truncated file fails here, not above)
            with safe_open(path, framework="pt") as f:
                sd.update({key: f.get_tensor(key) for key in kept})
        assert old_meta.get("architecture") == metadata["architecture"], "architecture mismatch"
        if old_meta.get("caption1") != metadata["caption1"]:
            te_logger.warning(
                f"caption mismatch: existing={old_meta.get('caption1')}, new={metadata['caption1']}, overwrite"
            )
        old_meta.pop("caption1", None)
        old_meta.pop("format_version", None)
        metadata.update(old_meta)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    _hooks.save_cache_file(sd, path, metadata)


def read_header(path: str) -> dict:
    """The JSON header of a safetensors file, read as utils/safetensors_utils.MemoryEfficientSafeOpen does (length,
    then JSON; the tensor bytes are not checked, so a file cut after its header still opens)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n).decode("utf-8"))


def _strip_dtype(key: str) -> str:
    """model_utils.remove_dtype_suffix for the keys written here: drop the trailing _<dtype>."""
    return key.rsplit("_", 1)[0]


def process_batches(datasets, existing: list[set[str]], listed: list[set[str]], args) -> None:
    """process_text_encoder_batches: per dataset a tqdm bar over caption batches."""
    for i, dataset in enumerate(datasets):
        te_logger.info(f"Encoding dataset [{i}]")
        for batch in tqdm(dataset.text_encoder_batches()):
            listed[i].update(os.path.normpath(item.text_encoder_output_cache_path) for item in batch)
            if args.skip_existing:
                batch = [it for it in batch if os.path.normpath(it.text_encoder_output_cache_path) not in existing[i]]
                if not batch:
                    continue
            bs = args.batch_size if args.batch_size is not None else len(batch)
            for j in range(0, len(batch), bs):
                for item in batch[j : j + bs]:
                    save_item(item)


def remove_stale(datasets, existing: list[set[str]], listed: list[set[str]], keep_cache: bool) -> None:
    """post_process_cache_files: files that existed at the start and no item produced."""
    for i, _ in enumerate(datasets):
        for cache_file in existing[i]:
            if cache_file in listed[i]:
                continue
            if keep_cache:
                te_logger.info(f"Keep cache file not in the dataset: {cache_file}")
            else:
                os.remove(cache_file)
                te_logger.info(f"Removed old cache file: {cache_file}")


def main() -> None:
    _hooks.record_call(MODULE)
    args = _flags.build_parser(MODULE).parse_args()
    _common.device_from(args.device)

    datasets = _dataset.load_datasets(args.dataset_config, vars(args), log=logger)
    existing = [{os.path.normpath(f) for f in d.all_text_encoder_cache_files()} for d in datasets]
    listed: list[set[str]] = [set() for _ in datasets]

    logger.info(f"Loading Qwen2.5-VL: {args.text_encoder}")
    _common.require_weight_file(args.text_encoder)
    logger.info(f"Loading BYT5: {args.byt5}")
    _common.require_weight_file(args.byt5)

    logger.info("Encoding with Qwen2.5-VL and BYT5")
    _hooks.work_starts(MODULE, logger)
    process_batches(datasets, existing, listed, args)
    remove_stale(datasets, existing, listed, args.keep_cache)


if __name__ == "__main__":
    _common.sageattention_probe()
    main()
