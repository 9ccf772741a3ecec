"""Kandinsky 5's memory: the VRAM presets of Lite (2B) and Pro (19B), musubi's memory flags per entry point, and
memory ESTIMATES (pure arithmetic, no I/O; units GiB as in training/presets.py, which holds the generic machinery).

The estimates are ESTIMATES until measured: the formulas follow musubi-tuner v0.3.4's code (references per constant),
the constants marked "uncalibrated" are judgement. The one outside anchor: musubi PR #774 trained Pro (19B) LoRAs on
an RTX 3090 (24 GB) with 10 blocks swapped, 512p images and 256p/17-frame videos, at 5.5 s/it, on a 128 GB host.

Facts used (kandinsky5/configs.py TASK_CONFIGS, kandinsky5/models/dit.py and nn.py, kandinsky5_train_network.py):
- Lite: model_dim 1792, ff_dim 7168, time_dim 512, 2 text + 32 visual blocks, head_dim 64; Pro: 4096, 16384, 1024,
  4 + 60 blocks, head_dim 128. A visual block: a Modulation Linear(time_dim, 9 x dim), self- and cross-attention
  (to_query/key/value/out_layer, dim x dim with bias), a feed-forward in/out (dim x ff, no bias); a text block: a
  Modulation Linear(time_dim, 6 x dim), self-attention, feed-forward.
- The published files keep every `*modulation*` tensor in fp32, the rest bf16 (Lite 4.57 GB, Pro 43.4 GB);
  load_transformer loads the whole file into a CPU dict, then assigns it (the dtypes stay): host RAM holds the whole
  file while the DiT loads. --fp8_base/--fp8_scaled quantize every Linear weight of the blocks (modulation
  included) to fp8 with one scale per 16 inputs without block swap and per 64 with it, scales cast to fp32; each
  fp8 Linear's forward dequantizes its whole weight to fp32 (`_safe_forward`), which F.linear keeps for backward.
- LoRA (networks/lora_kandinsky.py): every Linear of the blocks but `*modulation*`: 10 per visual block, 6 per text
  block (Lite 332 modules, Pro 624), trained in fp32.
- Tokens: the VAE compresses 8x in space and 4x in time, the DiT patches 2x2: (W/16) x (H/16) x (1 + (F-1)/4)
  visual tokens; the caption's Qwen tokens are repeated once per latent frame (call_dit). Every block is
  checkpointed (dit.py: torch.utils.checkpoint), so each visual block's input stays between forward and backward.
  `--gradient_checkpointing_cpu_offload` is stored by the DiT but unused by its forward, so it is not a knob here.
- Block swap (dit.enable_block_swap): N swapped blocks are N // 4 text blocks (at most half of them) and the rest
  visual blocks, at most num_visual - 2: musubi swaps at most num_visual - 2 + num_text / 2.
- The text-encoder cache loads Qwen2.5-VL-7B in bf16 (no fp8 option in kandinsky5_cache_text_encoder_outputs;
  `--quantized_qwen` is 4-bit NF4 and would change the embeddings) and CLIP-L in fp32 on the stage's --device, and
  pads every caption to qwen_max_length + the template's 41 tokens; the full model runs (lm_head included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...training.presets import GIB, Estimate, MemoryModel, MemoryPlan, gib_parts, train_estimate
from .rules import QWEN_MAX_LENGTH

BF16, FP32 = 2, 4
FP8_NO_SWAP = 1 + FP32 / 16  # fp8 weight + an fp32 scale per 16 inputs (block_size 16 without block swap)
FP8_SWAP = 1 + FP32 / 64  # block_size 64 with block swap
OPTIMIZERS = ("adamw8bit", "adamw", "AdaFactor")
VAE_SPATIAL, VAE_TEMPORAL, PATCH = 8, 4, 2
TEXT_TOKENS = 64  # a typical caption's Qwen tokens after the template (at most QWEN_MAX_LENGTH); uncalibrated


@dataclass(frozen=True)
class Dit:
    """One DiT size of configs.py: `dim` (model_dim), `ff` (ff_dim), `time_dim`, `text_blocks`, `visual_blocks`,
    `head_dim` (sum of axes_dims)."""

    title: str
    dim: int
    ff: int
    time_dim: int
    text_blocks: int
    visual_blocks: int
    head_dim: int

    def linears(self, visual: bool) -> list[tuple[str, int, int, bool]]:
        """(name, in, out, LoRA-trained) of one block's Linears (attention 4 per attention, feed-forward 2,
        modulation 1)."""
        attn = ["self_attention", "cross_attention"] if visual else ["self_attention"]
        out = [("modulation", self.time_dim, (9 if visual else 6) * self.dim, False)]
        out += [
            (f"{a}_{p}", self.dim, self.dim, True)
            for a in attn
            for p in ("to_query", "to_key", "to_value", "out_layer")
        ]
        return out + [
            ("feed_forward_in_layer", self.dim, self.ff, True),
            ("feed_forward_out_layer", self.ff, self.dim, True),
        ]

    def block_weights(self, visual: bool) -> tuple[int, int]:
        """(Linear weight parameters, of which modulation) of one block."""
        ls = self.linears(visual)
        return sum(i * o for _, i, o, _ in ls), sum(i * o for n, i, o, _ in ls if n == "modulation")

    def block_bytes(self, visual: bool, fp8: float | None) -> float:
        """Bytes of one block's weights: bf16 with fp32 modulation as published, or `fp8` bytes per Linear weight;
        biases and norms in bf16 (modulation bias fp32)."""
        weights, mod = self.block_weights(visual)
        small = sum(o for _, _, o, _ in self.linears(visual)) * BF16 + 4 * self.head_dim * BF16
        if fp8 is not None:
            return weights * fp8 + small
        return (weights - mod) * BF16 + mod * FP32 + small

    @property
    def max_blocks_to_swap(self) -> int:
        return self.visual_blocks - 2 + self.text_blocks // 2

    def lora_in_out(self) -> int:
        """sum(in + out) over the LoRA's modules: its parameters are rank x this."""
        per = [sum(i + o for _, i, o, t in self.linears(v) if t) for v in (True, False)]
        return self.visual_blocks * per[0] + self.text_blocks * per[1]

    def lora_modules(self) -> int:
        return self.visual_blocks * 10 + self.text_blocks * 6


LITE = Dit("Kandinsky 5 Lite", 1792, 7168, 512, 2, 32, 64)
PRO = Dit("Kandinsky 5 Pro", 4096, 16384, 1024, 4, 60, 128)
NON_BLOCK_PARAMS = {LITE: 11_000_000, PRO: 45_000_000}  # embeddings, out layer; uncalibrated (small either way)
FILE_BYTES = {LITE: 4_573_130_528, PRO: 43_385_935_392}  # the published SFT 5 s files

# activations of one training step (batch 1), as HunyuanVideo 1.5's model counts them (uncalibrated): a checkpointed
# block's recompute + backward keeps ~20 hidden-sized tensors and 4 feed-forward-sized ones; the allocator holds
# 20% more; CUDA context and workspaces 1.5 GiB.
RECOMPUTE_HIDDEN_COPIES, RECOMPUTE_FF_COPIES, INFER_HIDDEN_COPIES, INFER_FF_COPIES = 20, 4, 8, 2
ALLOCATOR_SLACK, OVERHEAD_GIB, DDP_NCCL_GIB, H2D_RING = 0.20, 1.5, 0.25, 2
HOST_PROCESS_BASE_GIB, HOST_CACHE_PROCESS_BASE_GIB = 5.0, 3.0
# cache stages
QWEN_BF16_BYTES, QWEN_LAYERS, QWEN_HIDDEN, QWEN_INTERMEDIATE, QWEN_VOCAB = 16.58e9, 28, 3584, 18944, 152_064
QWEN_TEMPLATE_TOKENS = 41  # the "image" template's crop_start (text_embedders.PROMPT_TEMPLATE)
CLIP_TEXT_BYTES = 123_060_480 * FP32  # CLIPTextModel of ViT-L/14 in fp32
TE_BATCH_SIZE = 4  # musubi docs' --batch_size for kandinsky5_cache_text_encoder_outputs
VAE_PARAMS, VAE_FILE_BYTES = 246_000_000, 0.99e9  # HunyuanVideo 1.0 VAE (fp32 file); cast to fp16 (bf16 on CPU)
VAE_TILE, VAE_TILE_FRAMES = 192, 24  # build_vae forces tiling at these sample sizes
VAE_BASE_CHANNELS, VAE_ACT_COPIES = 128, 6  # uncalibrated, as HunyuanVideo 1.5's

# Preset -> knobs per DiT size; figures are estimate() at 768x512x25, rank 32, adamw8bit (GiB): see README "Memory".
LITE_TABLE: dict[int, dict[str, object]] = {
    # bf16 (no fp8 rounding; K5's fp8 path dequantizes every weight to fp32 per forward), nothing swapped: ~9 GiB.
    80: {"fp8": False, "blocks_to_swap": 0, "text_encoder_cpu": False},
    48: {"fp8": False, "blocks_to_swap": 0, "text_encoder_cpu": False},
    32: {"fp8": False, "blocks_to_swap": 0, "text_encoder_cpu": False},
    # Qwen2.5-VL in bf16 (15.4 GiB) + CLIP + a batch of 4 padded captions: ~18 GiB while caching: fits 24.
    24: {"fp8": False, "blocks_to_swap": 0, "text_encoder_cpu": False},
    # 16: training ~9 GiB fits; Qwen2.5-VL does not (no fp8 option in K5's script): captions are encoded on the CPU.
    16: {"fp8": False, "blocks_to_swap": 0, "text_encoder_cpu": True},
    # 12 (RTX 3060 12GB, 4070): 8 blocks streamed (H2D-only) for headroom: ~8.4 GiB; captions on the CPU.
    12: {"fp8": False, "blocks_to_swap": 8, "block_swap_h2d_only": True, "text_encoder_cpu": True},
}
PRO_TABLE: dict[int, dict[str, object]] = {
    # bf16 + fp32 modulation (40.4 GiB) and ~13 GiB of activations: ~53 GiB.
    80: {"fp8": False, "blocks_to_swap": 0, "text_encoder_cpu": False},
    # fp8 without swap (22.5 GiB of weights at 1.25 B each): ~37 GiB.
    48: {"fp8": True, "blocks_to_swap": 0, "text_encoder_cpu": False},
    # fp8 + 20 blocks streamed: ~28 GiB (88%).
    32: {"fp8": True, "blocks_to_swap": 20, "block_swap_h2d_only": True, "text_encoder_cpu": False},
    # fp8 + 40 of 60 visual blocks streamed: ~22 GiB at 768x512x25 (PR #774 trained 512p images and 256p/17-frame
    # videos with 10 swapped on a 3090); Qwen2.5-VL (~18 GiB with a batch of 4) fits.
    24: {"fp8": True, "blocks_to_swap": 40, "block_swap_h2d_only": True, "text_encoder_cpu": False},
}
DEFAULTS: dict[str, object] = {
    "fp8": False,
    "blocks_to_swap": 0,
    "block_swap_h2d_only": False,
    "gradient_checkpointing_cpu_offload": False,
    "fp8_vl": False,
    "vae_sample_size": None,
    "vae_enable_patch_conv": False,
    "text_encoder_cpu": False,
}
KNOBS = ("fp8", "blocks_to_swap", "block_swap_h2d_only", "text_encoder_cpu")


def musubi_flags(plan: MemoryPlan, sampling: bool = False) -> dict[str, list[str]]:
    """The argv fragment of each entry point for `plan`: train gets --fp8_base --fp8_scaled, --blocks_to_swap N
    (--block_swap_h2d_only); with sampling also --offload_dit_during_sampling (each sample loads Qwen2.5-VL on the
    GPU; the DiT waits on the CPU meanwhile). The cache stages take no memory flags (text_encoder_cpu changes the
    text-encoder stage's --device: musubi.py). Never raises."""
    train: list[str] = ["--fp8_base", "--fp8_scaled"] if plan.fp8 else []
    if plan.blocks_to_swap > 0:
        train += ["--blocks_to_swap", str(plan.blocks_to_swap)]
        if plan.block_swap_h2d_only:
            train.append("--block_swap_h2d_only")
    if sampling:
        train.append("--offload_dit_during_sampling")
    return {"cache_latents": [], "cache_text_encoder_outputs": [], "train": train}


def tokens(width: int, height: int, frames: int) -> int:
    """Visual tokens of one clip: (W/16) x (H/16) x (1 + (F-1)/4). 768x512x25 -> 10,752. Raises ValueError for
    sizes < 1."""
    if min(width, height, frames) < 1:
        raise ValueError(f"width, height and frames must be >= 1, got {width}x{height}x{frames}")
    step = VAE_SPATIAL * PATCH
    return (width // step) * (height // step) * (1 + (frames - 1) // VAE_TEMPORAL)


def _dit_bytes(dit: Dit, plan: MemoryPlan) -> tuple[float, float]:
    """(bytes of one swappable visual block, bytes of everything resident besides the visual blocks)."""
    fp8 = (FP8_SWAP if plan.blocks_to_swap else FP8_NO_SWAP) if plan.fp8 else None
    text_swapped = min(dit.text_blocks // 2, plan.blocks_to_swap // 4)
    rest = (dit.text_blocks - text_swapped) * dit.block_bytes(False, fp8) + NON_BLOCK_PARAMS[dit] * BF16
    return dit.block_bytes(True, fp8), rest


def _optimizer_bytes(dit: Dit, optimizer: str, rank: int) -> int:
    n = rank * dit.lora_in_out()
    name = optimizer.lower()
    if name == "adamw":
        return 2 * FP32 * n
    if name == "adamw8bit":
        return 2 * n
    if name == "adafactor":
        return FP32 * (dit.lora_in_out() + 2 * rank * dit.lora_modules())
    raise ValueError(f"no memory model for optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")


def _qwen_bytes(batch: int) -> dict[str, float]:
    """Qwen2.5-VL + CLIP encoding `batch` captions padded to QWEN_MAX_LENGTH + the template: bf16 weights, every
    layer's hidden state, the bf16 logits and one layer's transients."""
    t = batch * (QWEN_MAX_LENGTH + QWEN_TEMPLATE_TOKENS)
    per_token = (QWEN_LAYERS + 1) * QWEN_HIDDEN + QWEN_VOCAB + 3 * QWEN_INTERMEDIATE + 4 * QWEN_HIDDEN
    return {"text_encoder_weights": QWEN_BF16_BYTES + CLIP_TEXT_BYTES, "text_encoder_activations": t * per_token * BF16}


def vae_activation_bytes(width: int, height: int, frames: int) -> int:
    """The HunyuanVideo 1.0 VAE on one clip, tiled as build_vae forces it (192 px, 24 frames): the largest feature
    map x VAE_ACT_COPIES, plus the clip."""
    th, tw, tf = min(height, VAE_TILE), min(width, VAE_TILE), min(frames, VAE_TILE_FRAMES)
    return VAE_BASE_CHANNELS * tf * th * tw * BF16 * VAE_ACT_COPIES + 3 * frames * height * width * BF16


def make_model(dit: Dit, table: dict[int, dict[str, object]]) -> MemoryModel:
    """The MemoryModel of one DiT size (its estimate functions close over `dit`)."""

    def estimate(
        plan: MemoryPlan,
        largest_bucket: tuple[int, int, int],
        rank: int,
        optimizer: str,
        num_gpus: int = 1,
        sampling: bool = False,
        *,
        task: str = "t2v",
        text_tokens: int = TEXT_TOKENS,
    ) -> Estimate:
        """ESTIMATED peak VRAM per GPU and host RAM of kandinsky5_train_network for the bucket with the most
        tokens, (width, height, frames), batch 1. Parts: dit_weights (resident blocks + ring slots + the rest),
        fp8_dequant (one block's weights in fp32, kept for its backward), lora (fp32 weights + grads + optimizer
        state), activations_saved (every visual block's input), activations_block (one block's recompute +
        backward), allocator_slack, ddp (num_gpus > 1), overhead. sampling=True adds the sampling moments: Qwen2.5-VL
        on the GPU with the DiT offloaded (--offload_dit_during_sampling), and denoising. Host RAM: the whole DiT
        file while it loads (a CPU dict) or the swapped blocks, whichever is more, + the process base; x num_gpus.
        `task` is accepted for the interface (I2V conditioning adds channels to the input only). Raises ValueError for
        bad sizes, optimizer or num_gpus."""
        if num_gpus < 1:
            raise ValueError(f"num_gpus must be >= 1, got {num_gpus}")
        width, height, frames = largest_bucket
        img = tokens(width, height, frames)
        latent_frames = 1 + (frames - 1) // VAE_TEMPORAL
        txt = min(text_tokens, QWEN_MAX_LENGTH) * latent_frames  # the caption repeats per latent frame
        per_block, rest = _dit_bytes(dit, plan)
        swap = min(plan.blocks_to_swap - min(dit.text_blocks // 2, plan.blocks_to_swap // 4), dit.visual_blocks - 2)
        ring = min(H2D_RING, swap) if plan.block_swap_h2d_only else 0
        n_lora = rank * dit.lora_in_out()
        step = {"dit_weights": (dit.visual_blocks - swap + ring) * per_block + rest}
        if plan.fp8:
            step["fp8_dequant"] = dit.block_weights(True)[0] * FP32
        step["lora"] = n_lora * (FP32 + FP32) + _optimizer_bytes(dit, optimizer, rank)
        saved = (dit.visual_blocks * img + dit.text_blocks * txt) * dit.dim * BF16
        block = (img + txt) * (RECOMPUTE_HIDDEN_COPIES * dit.dim + RECOMPUTE_FF_COPIES * dit.ff) * BF16
        block += img * dit.head_dim * 2 * FP32  # RoPE cos/sin
        step.update(activations_saved=saved, activations_block=block, allocator_slack=ALLOCATOR_SLACK * (saved + block))
        if num_gpus > 1:
            step["ddp"] = n_lora * FP32 + DDP_NCCL_GIB * GIB
        step["overhead"] = OVERHEAD_GIB * GIB
        moments = {"step": step}
        if sampling:
            infer = (img + txt) * (INFER_HIDDEN_COPIES * dit.dim + INFER_FF_COPIES * dit.ff) * BF16
            resident = {
                "dit_weights": step["dit_weights"],
                "lora": n_lora * FP32 + _optimizer_bytes(dit, optimizer, rank),
            }
            moments["sampling"] = {**resident, "sampling": infer, "overhead": OVERHEAD_GIB * GIB}
            moments["sample prompts"] = {**_qwen_bytes(1), "overhead": OVERHEAD_GIB * GIB}
        swapped = swap * per_block
        host = {
            "process_base": HOST_PROCESS_BASE_GIB * GIB,
            "swapped_blocks": swapped,
            "dit_loading_extra": max(0, FILE_BYTES[dit] - swapped),  # the whole file in a CPU dict while loading
        }
        return train_estimate(moments, host, plan, num_gpus, per_block)

    def cache_estimates(
        plan: MemoryPlan, largest_bucket: tuple[int, int, int] = (768, 512, 25), *, task: str = "t2v"
    ) -> dict[str, Estimate]:
        """ESTIMATED memory of the cache stages: the VAE in fp16 + its tiled activations (host: the fp32 file read
        whole); Qwen2.5-VL bf16 + CLIP fp32 + a batch of TE_BATCH_SIZE padded captions on the GPU, or nothing on the
        GPU with text_encoder_cpu (host: the text encoders and activations then)."""
        width, height, frames = largest_bucket
        tokens(width, height, frames)  # validates
        overhead, base = OVERHEAD_GIB * GIB, HOST_CACHE_PROCESS_BASE_GIB * GIB
        latents = {"vae_weights": VAE_PARAMS * BF16, "vae_activations": vae_activation_bytes(width, height, frames)}
        te = _qwen_bytes(TE_BATCH_SIZE)
        te_gpu = {"overhead": 0.0} if plan.text_encoder_cpu else {**te, "overhead": overhead}
        te_host = {"process_base": base, **(te if plan.text_encoder_cpu else {})}
        out = {}
        for stage, parts, host in (
            ("cache_latents", {**latents, "overhead": overhead}, {"process_base": base, "vae_file": VAE_FILE_BYTES}),
            ("cache_text_encoder_outputs", te_gpu, te_host),
        ):
            vram, host_gib = gib_parts(parts), gib_parts(host)
            out[stage] = Estimate(stage, "encode", sum(vram.values()), sum(host_gib.values()), vram, host_gib, plan)
        return out

    return MemoryModel(
        title=dit.title,
        table=table,
        defaults=DEFAULTS,
        num_blocks=dit.text_blocks + dit.visual_blocks,
        max_blocks_to_swap=dit.max_blocks_to_swap,
        swap_ladder=tuple(
            sorted({0, *(math.ceil(dit.max_blocks_to_swap * f) for f in (0.33, 0.66)), dit.max_blocks_to_swap})
        ),
        vae_tile_step=VAE_SPATIAL * PATCH,
        vae_min_tile=64,
        vae_default_tile=VAE_TILE,
        musubi_flags=musubi_flags,
        tokens=tokens,
        estimate=estimate,
        cache_estimates=cache_estimates,
        knobs=KNOBS,
    )


LITE_MODEL = make_model(LITE, LITE_TABLE)
PRO_MODEL = make_model(PRO, PRO_TABLE)
