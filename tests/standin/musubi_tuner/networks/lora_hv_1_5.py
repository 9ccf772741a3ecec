"""Stand-in for musubi_tuner.networks.lora_hv_1_5: the LoRA module layout it creates on the HV1.5 DiT, and a tiny
trainable network that stands for it.

The real module wraps every nn.Linear inside the 54 MMDoubleStreamBlocks (its default exclude pattern `.*(_in).*`
matches none of them): per block and stream (img, txt) attn_q, attn_k, attn_v, attn_proj, mlp_fc1, mlp_fc2 and
mod_linear, named `lora_unet_double_blocks_{b}_{stream}_{layer}` (module path with '.' -> '_'): 756 modules,
2268 keys. Shapes: hidden 2048, MLP 8192, modulation out 6 x 2048 = 12288 (contract §5, checked on the real
network built on the meta device).

`create_arch_network` returns a `LoRANetwork`: a real torch module, but with only two [2, dim] parameters per
double block (`double_blocks.{b}.lora_down` / `.lora_up`, row 0 img, row 1 txt, zeros at start) and a `noise_seed`
buffer drawn from torch's RNG, so the optimizer,
the LR scheduler and accelerate's save_state/load_state work on real tensors at no cost. What it writes as a LoRA
file (`save_weights`, as networks/lora.LoRANetwork.save_weights: tensors in the save dtype, sshs_* hashes) has
the real layout; its values are deterministic noise per (noise_seed, block) scaled by the block's parameters
(lora_down x (1 + mean of its row), lora_up x mean of its row), so an untrained network has lora_up == 0, files
change as training moves the parameters, and NaN parameters give NaN files.
"""

from __future__ import annotations

import hashlib
import logging
import os

import torch
from safetensors.torch import save_file

from musubi_tuner import _common, _hooks  # absolute: musubi imports this module as `networks.lora_hv_1_5`

logger = logging.getLogger("musubi_tuner.networks.lora")

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
    return [m for block in layout() for row in block for m in row]


def layout() -> list[list[list[tuple[str, int, int]]]]:
    """The modules per double block and stream (the tiny network's blocks and rows)."""
    return [
        [
            [(f"lora_unet_double_blocks_{b}_{s}_{layer}", fin, fout) for layer, (fin, fout) in LAYERS.items()]
            for s in STREAMS
        ]
        for b in range(NUM_DOUBLE_BLOCKS)
    ]


class BlockLoRA(torch.nn.Module):
    """The trainable stand-in for one block's LoRA modules: one row per group of modules (HV1.5: per stream)."""

    def __init__(self, dim: int, rows: int):
        super().__init__()
        self.lora_down = torch.nn.Parameter(torch.zeros(rows, dim))
        self.lora_up = torch.nn.Parameter(torch.zeros(rows, dim))


class LoRANetwork(torch.nn.Module):
    """networks/lora.LoRANetwork, reduced to what the trainer calls."""

    def __init__(self, dim: int, alpha: float, loraplus_lr_ratio: float | None = None, blocks=None):
        super().__init__()
        self.dim, self.alpha, self.loraplus_lr_ratio = dim, alpha, loraplus_lr_ratio
        self.layout = layout() if blocks is None else blocks  # block -> row -> (lora_name, in, out)
        # the "initialisation" of the LoRA values: drawn from torch's RNG (set_seed(--seed) makes it repeatable), and
        # a buffer, so that it is part of the state dict and comes back with --resume like real weights
        self.register_buffer("noise_seed", torch.randint(0, 2**62, ()))
        self.double_blocks = torch.nn.ModuleList(BlockLoRA(dim, len(rows)) for rows in self.layout)
        n = sum(1 for rows in self.layout for row in rows for name, _, _ in row if not _hooks.dropped(name))
        logger.info(f"create LoRA network. base dim (rank): {dim}, alpha: {alpha}")
        logger.info(f"create LoRA for U-Net/DiT: {n} modules.")

    def prepare_optimizer_params(self, unet_lr: float | None = 1e-4):
        """(param groups, lr descriptions) as LoRANetwork.prepare_optimizer_params: one "unet" group, or with
        loraplus_lr_ratio a "unet" group (lora_down) and a "unet plus" group (lora_up, lr x ratio); a group whose lr
        is 0 or None is skipped ("NO LR skipping!"), so the optimizer then gets an empty parameter list."""
        self.requires_grad_(True)
        groups = {"lora": [], "plus": []}
        for block in self.double_blocks:
            groups["lora"].append(block.lora_down)
            groups["plus" if self.loraplus_lr_ratio is not None else "lora"].append(block.lora_up)
        params, descriptions = [], []
        for key, group in groups.items():
            if not group:
                continue
            lr = None if unet_lr is None else unet_lr * (self.loraplus_lr_ratio if key == "plus" else 1)
            if lr == 0 or lr is None:
                logger.info("NO LR skipping!")
                continue
            params.append({"params": group, "lr": lr})
            descriptions.append("unet plus" if key == "plus" else "unet")
        return params, descriptions

    def lora_state_dict(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The LoRA tensors musubi saves: lora_down [dim, in], lora_up [out, dim], alpha (0-dim), all in `dtype`."""
        sd = {}
        with torch.no_grad():
            for b, (block, rows) in enumerate(zip(self.double_blocks, self.layout)):
                digest = hashlib.sha256(f"{int(self.noise_seed)}|{b}".encode()).digest()
                g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
                for s, row in enumerate(rows):
                    down_scale = 1.0 + block.lora_down[s].mean()
                    up_scale = block.lora_up[s].mean()
                    for name, fin, fout in row:
                        down = torch.randn((self.dim, fin), generator=g) * (0.01 * down_scale)
                        up = torch.randn((fout, self.dim), generator=g) * up_scale
                        if _hooks.dropped(name):
                            continue
                        sd[f"{name}.lora_down.weight"] = down.to(dtype)
                        sd[f"{name}.lora_up.weight"] = up.to(dtype)
                        sd[f"{name}.alpha"] = torch.tensor(float(self.alpha)).to(dtype)
        return sd

    def save_weights(self, file: str, dtype: torch.dtype, metadata: dict[str, str] | None) -> None:
        """LoRANetwork.save_weights for .safetensors: precalculated sshs_* hashes in the metadata."""
        sd = self.lora_state_dict(dtype)
        metadata = dict(metadata or {})
        metadata["sshs_model_hash"], metadata["sshs_legacy_hash"] = _common.model_hashes(sd, metadata)
        if os.path.splitext(file)[1] != ".safetensors":
            raise NotImplementedError("standin: only .safetensors LoRA files are written")
        save_file(sd, file, metadata)

    def is_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.parameters())


def create_arch_network(multiplier, network_dim, network_alpha, vae=None, text_encoders=None, unet=None, **kwargs):
    """The network the real function would build (default dim 4, alpha 1), as the tiny LoRANetwork. kwargs are the
    --network_args strings (and neuron_dropout); only `loraplus_lr_ratio` has an effect."""
    dim = DEFAULT_DIM if network_dim is None else network_dim
    alpha = DEFAULT_ALPHA if network_alpha is None else network_alpha
    ratio = kwargs.get("loraplus_lr_ratio")
    return LoRANetwork(dim, alpha, float(ratio) if ratio is not None else None)
