"""Stand-in for musubi_tuner.networks.convert_hunyuan_video_1_5_lora_to_comfy (v0.3.4): the real algorithm, written
anew from its description (contract §5), since it is small and the converted file is what the project checks.

Forward (musubi -> ComfyUI):
1. every key containing `double_blocks` gets plain substring renames: {img,txt}_mlp_fc1 -> _mlp_0,
   _mlp_fc2 -> _mlp_2, _mod_linear -> _mod_lin ("Direct key renames applied: N" counts renamed keys);
2. each `{...}_{img|txt}_attn` with q/k/v becomes `..._attn_qkv`: lora_down = the q, k, v downs stacked by rows
   [3r, in]; lora_up = block-diagonal [3*out, 3r] (up_i at rows i*out.., columns i*r..; zeros elsewhere; the dtype
   of the down); alpha = alpha_q * 3 (k/v alphas dropped), so (alpha/rank)*up@down is unchanged. A missing k or v
   raises KeyError, as in musubi ("QKV LoRA layers processed: M").
3. metadata is copied; when the source has metadata, sshs_model_hash/sshs_legacy_hash are recomputed.
Reverse (`--reverse`) undoes both steps (qkv split into three equal row chunks, alpha / 3 each).
"""

from __future__ import annotations

import logging

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import _common, _flags, _hooks

MODULE = "musubi_tuner.networks.convert_hunyuan_video_1_5_lora_to_comfy"
logging.basicConfig(level=logging.INFO)
logger = logging.getLogger(__name__)

RENAMES = [
    (f"{s}_{a}", f"{s}_{b}")
    for s in ("img", "txt")
    for a, b in (("mlp_fc1", "mlp_0"), ("mlp_fc2", "mlp_2"), ("mod_linear", "mod_lin"))
]
QKV = ("_q", "_k", "_v")


def rename_keys(sd: dict[str, torch.Tensor], reverse: bool) -> int:
    """Step 1 (or its inverse); returns how many keys changed name."""
    count = 0
    for key in list(sd):
        if "double_blocks" not in key:
            continue
        new = key
        for musubi_name, comfy_name in RENAMES:
            new = new.replace(comfy_name, musubi_name) if reverse else new.replace(musubi_name, comfy_name)
        if new != key:
            sd[new] = sd.pop(key)
            count += 1
    return count


def fuse_qkv(sd: dict[str, torch.Tensor]) -> int:
    """Step 2, once per q/k/v set (found by its q up weight); returns the number of fused layers."""
    fused = 0
    for key in list(sd):
        if not (("img_attn" in key or "txt_attn" in key) and "_q" in key and "lora_up" in key):
            continue
        lora_name = key.split(".", 1)[0]
        prefix = lora_name.replace("_q", "")
        downs, ups = [], []
        for s in QKV:  # down then up per projection: the first missing key is the one musubi reports
            downs.append(sd.pop(f"{prefix}{s}.lora_down.weight"))
            ups.append(sd.pop(f"{prefix}{s}.lora_up.weight"))
        alpha = sd.pop(f"{lora_name}.alpha")
        sd.pop(f"{prefix}_k.alpha")
        sd.pop(f"{prefix}_v.alpha")
        down = torch.cat(downs, dim=0)
        rank, out = ups[0].size(1), ups[0].size(0)
        up = torch.zeros((out * 3, down.size(0)), dtype=down.dtype, device=down.device)
        for i, u in enumerate(ups):
            up[i * out : (i + 1) * out, i * rank : (i + 1) * rank] = u
        sd[f"{prefix}_qkv.lora_down.weight"] = down
        sd[f"{prefix}_qkv.lora_up.weight"] = up
        sd[f"{prefix}_qkv.alpha"] = alpha * 3
        fused += 1
    return fused


def split_qkv(sd: dict[str, torch.Tensor]) -> int:
    """The inverse of fuse_qkv (equal thirds)."""
    split = 0
    for key in list(sd):
        if not (("img_attn" in key or "txt_attn" in key) and "_qkv" in key and "lora_down" in key):
            continue
        lora_name = key.split(".", 1)[0]
        down = sd.pop(f"{lora_name}.lora_down.weight")
        up = sd.pop(f"{lora_name}.lora_up.weight")
        alpha = sd.pop(f"{lora_name}.alpha")
        prefix = lora_name.replace("_qkv", "")
        rank, out = down.size(0) // 3, up.size(0) // 3
        for i, s in enumerate(QKV):
            sd[f"{prefix}{s}.lora_down.weight"] = down[i * rank : (i + 1) * rank].contiguous()
            sd[f"{prefix}{s}.lora_up.weight"] = up[i * out : (i + 1) * out, i * rank : (i + 1) * rank].contiguous()
            sd[f"{prefix}{s}.alpha"] = alpha / 3
        split += 1
    return split


def convert(src_path: str, dst_path: str, reverse: bool) -> None:
    logger.info(f"Loading source file {src_path}")
    with safe_open(src_path, framework="pt") as f:
        metadata = f.metadata()
        sd = {k: f.get_tensor(k) for k in f.keys()}
    _hooks.work_starts(MODULE, logger)
    logger.info("Converting...")
    renamed = rename_keys(sd, reverse)
    qkv = split_qkv(sd) if reverse else fuse_qkv(sd)
    logger.info(f"Direct key renames applied: {renamed}")
    logger.info(f"QKV LoRA layers processed: {qkv}")
    if metadata is not None:
        logger.info("Calculating hashes and creating metadata...")
        metadata["sshs_model_hash"], metadata["sshs_legacy_hash"] = _common.model_hashes(sd, metadata)
    logger.info(f"Saving destination file {dst_path}")
    save_file(sd, dst_path, metadata=metadata)


def main() -> None:
    _hooks.record_call(MODULE)
    args = _flags.build_parser(MODULE).parse_args()
    convert(args.src_path, args.dst_path, args.reverse)


if __name__ == "__main__":
    main()
