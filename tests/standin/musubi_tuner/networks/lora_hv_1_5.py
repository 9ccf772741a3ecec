"""Stand-in for musubi_tuner.networks.lora_hv_1_5: the LoRA module layout it creates on the HV1.5 DiT.

The real module wraps every nn.Linear inside the 54 MMDoubleStreamBlocks (its default exclude pattern `.*(_in).*`
matches none of them): per block and stream (img, txt) attn_q, attn_k, attn_v, attn_proj, mlp_fc1, mlp_fc2 and
mod_linear, named `lora_unet_double_blocks_{b}_{stream}_{layer}` (module path with '.' -> '_'): 756 modules,
2268 keys. Shapes: hidden 2048, MLP 8192, modulation out 6 x 2048 = 12288 (contract §5, checked on the real
network built on the meta device). Only the layout is here; `create_arch_network` exists so that the trainer's
import of `--network_module` behaves as with the real module.
"""

from __future__ import annotations

NUM_DOUBLE_BLOCKS = 54
HIDDEN = 2048
MLP_HIDDEN = 8192
MOD_OUT = 6 * HIDDEN
STREAMS = ("img", "txt")
# layer -> (in_features, out_features)
LAYERS = {
    "attn_q": (HIDDEN, HIDDEN),
    "attn_k": (HIDDEN, HIDDEN),
    "attn_v": (HIDDEN, HIDDEN),
    "attn_proj": (HIDDEN, HIDDEN),
    "mlp_fc1": (HIDDEN, MLP_HIDDEN),
    "mlp_fc2": (MLP_HIDDEN, HIDDEN),
    "mod_linear": (HIDDEN, MOD_OUT),
}
DEFAULT_DIM, DEFAULT_ALPHA = 4, 1.0  # networks/lora.create_network when --network_dim/--network_alpha are None


def modules() -> list[tuple[str, int, int]]:
    """(lora_name, in_features, out_features) of every LoRA module, in block order."""
    return [
        (f"lora_unet_double_blocks_{b}_{s}_{layer}", fin, fout)
        for b in range(NUM_DOUBLE_BLOCKS)
        for s in STREAMS
        for layer, (fin, fout) in LAYERS.items()
    ]


def create_arch_network(multiplier, network_dim, network_alpha, *args, **kwargs):
    """(dim, alpha) the real network would use; the stand-in trainer builds the tensors itself."""
    dim = DEFAULT_DIM if network_dim is None else network_dim
    alpha = DEFAULT_ALPHA if network_alpha is None else network_alpha
    return dim, alpha
