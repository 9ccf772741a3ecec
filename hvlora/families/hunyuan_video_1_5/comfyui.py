"""Check a musubi HV1.5 LoRA and its ComfyUI conversion key by key, so a LoRA that would load in ComfyUI with
"lora key not loaded" (or with modules silently missing) never reaches the user.

Oracle (contract §5, from musubi's networks/lora_hv_1_5.py and convert_hunyuan_video_1_5_lora_to_comfy.py):
- musubi file: 54 double blocks x {img, txt} x {attn_q, attn_k, attn_v, attn_proj, mlp_fc1, mlp_fc2, mod_linear}
  = 756 modules, each with `.lora_down.weight` [r, in], `.lora_up.weight` [out, r] and a scalar `.alpha`.
- ComfyUI file: q/k/v fused into `attn_qkv` (down [3r, 2048], up [6144, 3r]), mlp_fc1/2 -> mlp_0/2,
  mod_linear -> mod_lin: 540 modules, 1620 keys. `lora_unet_double_blocks_N_img_attn_qkv` is what ComfyUI's
  key map derives from its model weight `diffusion_model.double_blocks.N.img_attn.qkv.weight`.
Only the safetensors headers are read (no tensor data), so this takes milliseconds even for large ranks.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import LoraCheckError
from .dit import HIDDEN, NUM_BLOCKS

STREAMS = ("img", "txt")
# module -> (in_features, out_features) of the Linear it adapts, HV1.5 (hidden 2048, mlp 8192, modulation 6x).
MUSUBI_MODULES = {
    "attn_q": (HIDDEN, HIDDEN),
    "attn_k": (HIDDEN, HIDDEN),
    "attn_v": (HIDDEN, HIDDEN),
    "attn_proj": (HIDDEN, HIDDEN),
    "mlp_fc1": (HIDDEN, 4 * HIDDEN),
    "mlp_fc2": (4 * HIDDEN, HIDDEN),
    "mod_linear": (HIDDEN, 6 * HIDDEN),
}
COMFY_MODULES = {
    "attn_qkv": (HIDDEN, 3 * HIDDEN),
    "attn_proj": (HIDDEN, HIDDEN),
    "mlp_0": (HIDDEN, 4 * HIDDEN),
    "mlp_2": (4 * HIDDEN, HIDDEN),
    "mod_lin": (HIDDEN, 6 * HIDDEN),
}
SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")


def module_names(layout: dict[str, tuple[int, int]]) -> list[str]:
    """All module prefixes of a layout, e.g. 'lora_unet_double_blocks_0_img_attn_q'."""
    return [f"lora_unet_double_blocks_{b}_{s}_{m}" for b in range(NUM_BLOCKS) for s in STREAMS for m in layout]


def read_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, from the safetensors header alone (format: 8-byte little-endian header length, then
    a JSON object name -> {dtype, shape, data_offsets}). Raises LoraCheckError if the file is not safetensors."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 2 <= size <= 100_000_000:
                raise ValueError(f"header length {size}")
            header = json.loads(f.read(size))
        return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise LoraCheckError(f"{path} is not a readable safetensors file: {e}") from None


def check_layout(path: Path, layout: dict[str, tuple[int, int]], fused: int) -> int:
    """Check that `path` holds every module of `layout` with consistent shapes and nothing else; return the rank.

    `fused` is how many projections share one module in the fused case (3 for ComfyUI's qkv), else 1.
    Raises LoraCheckError with the counts and up to 10 missing and 10 unexpected keys, and misshapen ones.
    """
    shapes = read_shapes(path)
    expected = {m + s for m in module_names(layout) for s in SUFFIXES}
    missing = sorted(expected - shapes.keys())
    unexpected = sorted(shapes.keys() - expected)
    ranks = {shapes[k][0] for k in shapes if k.endswith(".lora_down.weight") and "qkv" not in k and shapes[k]}
    rank = min(ranks) if ranks else 0
    problems = [f"missing {k}" for k in missing[:10]] + [f"unexpected {k}" for k in unexpected[:10]]
    if len(ranks) > 1:
        problems.append(f"modules have different ranks {sorted(ranks)}")
    problems += _shape_problems(shapes, layout, rank, fused)
    if problems:
        more = f" (and {len(problems) - 30} more)" if len(problems) > 30 else ""
        raise LoraCheckError(
            f"{path}: {len(missing)} key(s) missing, {len(unexpected)} unexpected:\n  "
            + "\n  ".join(problems[:30])
            + more
        )
    return rank


def _shape_problems(
    shapes: dict[str, list[int]], layout: dict[str, tuple[int, int]], rank: int, fused: int
) -> list[str]:
    problems = []
    for m in module_names(layout):
        name = m.split("_", 6)[-1]
        fan_in, fan_out = layout[name]
        r = rank * (fused if name == "attn_qkv" else 1)
        want = {".lora_down.weight": [r, fan_in], ".lora_up.weight": [fan_out, r], ".alpha": []}
        for suffix, shape in want.items():
            got = shapes.get(m + suffix)
            if got is not None and got != shape:
                problems.append(f"{m}{suffix} has shape {got}, expected {shape}")
    return problems


def verify(musubi_lora: Path, comfy_lora: Path) -> dict:
    """Check both files; return counts for the summary. Raises LoraCheckError on any missing module."""
    rank = check_layout(musubi_lora, MUSUBI_MODULES, fused=1)
    comfy_rank = check_layout(comfy_lora, COMFY_MODULES, fused=3)
    if comfy_rank != rank:
        raise LoraCheckError(f"{comfy_lora} has rank {comfy_rank}, its source {musubi_lora} rank {rank}")
    n_musubi, n_comfy = len(module_names(MUSUBI_MODULES)), len(module_names(COMFY_MODULES))
    return {
        "rank": rank,
        "musubi_modules": n_musubi,
        "musubi_keys": 3 * n_musubi,
        "comfyui_modules": n_comfy,
        "comfyui_keys": 3 * n_comfy,
    }
