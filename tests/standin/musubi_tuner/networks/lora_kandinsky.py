"""Stand-in for musubi_tuner.networks.lora_kandinsky: the LoRA module layout it creates on the Kandinsky 5 DiT, and
the tiny trainable network of lora_hv_1_5 that stands for it.

The real module wraps every Linear of TransformerEncoderBlock (text) and TransformerDecoderBlock (visual) matching
its include patterns (self/cross attention to_query, to_key, to_value, out_layer; feed_forward in_layer, out_layer),
never `*modulation*`, named `lora_unet_{text|visual}_transformer_blocks_{b}_{path with _}`: Lite 2 x 6 + 32 x 10 =
332 modules (996 keys, as the rig's real LoRA), Pro 4 x 6 + 60 x 10 = 624. The DiT size comes from the trainer
(the real network reads it off the DiT; the stand-in's trainer passes `dit`).
"""

from __future__ import annotations

from musubi_tuner import _k5  # absolute: musubi imports this module as `networks.lora_kandinsky`
from musubi_tuner.networks.lora_hv_1_5 import DEFAULT_ALPHA, DEFAULT_DIM, LoRANetwork

ATTENTION = ("to_query", "to_key", "to_value", "out_layer")


def layout(dit: _k5.DitSize) -> list[list[list[tuple[str, int, int]]]]:
    """Per block (text blocks, then visual blocks) one row of (lora_name, in, out)."""
    out = []
    for kind, blocks in (("text", dit.text_blocks), ("visual", dit.visual_blocks)):
        attns = ("self_attention", "cross_attention") if kind == "visual" else ("self_attention",)
        for b in range(blocks):
            prefix = f"lora_unet_{kind}_transformer_blocks_{b}_"
            row = [(f"{prefix}{a}_{p}", dit.dim, dit.dim) for a in attns for p in ATTENTION]
            row += [
                (f"{prefix}feed_forward_in_layer", dit.dim, dit.ff),
                (f"{prefix}feed_forward_out_layer", dit.ff, dit.dim),
            ]
            out.append([row])
    return out


def modules(dit: _k5.DitSize) -> list[tuple[str, int, int]]:
    return [m for block in layout(dit) for row in block for m in row]


def create_arch_network(multiplier, network_dim, network_alpha, vae=None, text_encoders=None, unet=None, **kwargs):
    """The tiny network with the Kandinsky 5 layout of `dit` (default Lite)."""
    dim = DEFAULT_DIM if network_dim is None else network_dim
    alpha = DEFAULT_ALPHA if network_alpha is None else network_alpha
    ratio = kwargs.get("loraplus_lr_ratio")
    return LoRANetwork(dim, alpha, float(ratio) if ratio is not None else None, layout(kwargs.get("dit", _k5.LITE)))
