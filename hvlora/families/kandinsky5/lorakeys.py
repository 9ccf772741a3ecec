"""Check a musubi Kandinsky 5 LoRA key by key: every module networks.lora_kandinsky makes, with its shapes, and
nothing else. The same file loads in ComfyUI as it is, which is why Kandinsky 5 has no converter.

Oracle:
- musubi (networks/lora_kandinsky.py + networks/lora.py): every Linear of TransformerEncoderBlock (text) and
  TransformerDecoderBlock (visual) but `*modulation*`, named `lora_unet_` + its module path with dots as
  underscores: `lora_unet_visual_transformer_blocks_N_{self,cross}_attention_{to_query,to_key,to_value,out_layer}`,
  `..._feed_forward_{in,out}_layer`, and the text blocks' self-attention and feed-forward; each with
  `.lora_down.weight` [r, in], `.lora_up.weight` [out, r] and a scalar `.alpha`. Lite: 2 x 6 + 32 x 10 = 332
  modules, 996 keys (the rig's LoRA); Pro: 4 x 6 + 60 x 10 = 624 modules, 1872 keys.
- ComfyUI (comfy/ldm/kandinsky5/model.py, native Kandinsky 5 support since comfyanonymous/ComfyUI#10988, Dec 2025)
  names its modules exactly so (text_transformer_blocks.N.self_attention.to_query, ...), and comfy/lora.py's
  model_lora_keys_unet maps every `diffusion_model.<path>.weight` to `lora_unet_<path with _>`: each key above is
  one ComfyUI loads; its lora_up/lora_down/alpha format is the "regular" LoRA format of comfy/lora.load_lora.
Only the safetensors header is read (no tensor data).
"""

from __future__ import annotations

from pathlib import Path

from ...training.lorameta import SafetensorsError, read_header
from .. import LoraCheckError
from .catalog import VARIANTS
from .memory import LITE, PRO, Dit

SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")
LOADS_IN = (
    "ComfyUI loads this file as it is (its native Kandinsky 5 model has these module names, comfy/lora.py maps "
    "lora_unet_* to them); checked against that naming, not loaded in ComfyUI here"
)


def dit_of(variant: str) -> Dit:
    """The DiT size of a --dit_variant. Raises LoraCheckError for an unknown one."""
    if variant not in VARIANTS:
        raise LoraCheckError(f"{variant!r} is not a Kandinsky 5 DiT variant ({', '.join(VARIANTS)})")
    return PRO if VARIANTS[variant].size == "pro" else LITE


def layout(dit: Dit) -> dict[str, tuple[int, int]]:
    """Module name -> (in_features, out_features) of every module networks.lora_kandinsky makes for `dit`."""
    out = {}
    for visual, blocks in ((False, dit.text_blocks), (True, dit.visual_blocks)):
        kind = "visual" if visual else "text"
        for b in range(blocks):
            for name, fan_in, fan_out, trained in dit.linears(visual):
                if trained:
                    out[f"lora_unet_{kind}_transformer_blocks_{b}_{name}"] = (fan_in, fan_out)
    return out


def read_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from the safetensors header. Raises LoraCheckError for a file that is not safetensors."""
    try:
        _, header = read_header(path)
        return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (OSError, SafetensorsError, KeyError, TypeError, AttributeError) as e:
        raise LoraCheckError(f"{path} is not a readable safetensors file: {e}") from None


def verify(path: Path, dit_variant: str) -> dict:
    """Check that `path` holds every module of the variant's DiT size with consistent shapes and one rank, and
    nothing else; return {"rank", "musubi_modules", "musubi_keys"}. Raises LoraCheckError listing up to 10 missing,
    10 unexpected and the misshapen keys."""
    modules = layout(dit_of(dit_variant))
    shapes = read_shapes(path)
    expected = {m + s for m in modules for s in SUFFIXES}
    missing, unexpected = sorted(expected - shapes.keys()), sorted(shapes.keys() - expected)
    ranks = {shapes[k][0] for k in shapes if k.endswith(".lora_down.weight") and k in expected and shapes[k]}
    rank = min(ranks) if ranks else 0
    problems = [f"missing {k}" for k in missing[:10]] + [f"unexpected {k}" for k in unexpected[:10]]
    if len(ranks) > 1:
        problems.append(f"modules have different ranks {sorted(ranks)}")
    for m, (fan_in, fan_out) in modules.items():
        for suffix, want in (
            (".lora_down.weight", [rank, fan_in]),
            (".lora_up.weight", [fan_out, rank]),
            (".alpha", []),
        ):
            got = shapes.get(m + suffix)
            if got is not None and got != want:
                problems.append(f"{m}{suffix} has shape {got}, expected {want}")
    if problems:
        raise LoraCheckError(
            f"{path}: {len(missing)} key(s) missing, {len(unexpected)} unexpected (Kandinsky 5 "
            f"{dit_variant}):\n  "
            + "\n  ".join(problems[:30])
            + (f"\n  (and {len(problems) - 30} more)" if len(problems) > 30 else "")
        )
    return {"rank": rank, "musubi_modules": len(modules), "musubi_keys": len(expected)}
