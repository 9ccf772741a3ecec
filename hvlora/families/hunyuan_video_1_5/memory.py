"""HunyuanVideo 1.5's memory: the VRAM presets, musubi's memory flags per entry point, and memory ESTIMATES (pure
arithmetic, no I/O). The machinery that resolves a preset with the user's knobs and judges an estimate is generic
(hvlora/training/presets.py, `MemoryModel`); `MODEL` is this family's instance of it. Units: GiB, as there.

The formulas follow musubi-tuner v0.3.4's code (references per constant). Calibrated on an NVIDIA H200 capped to each
preset's card (benchmarks/gpu_presets.py, results in benchmarks/results/h200-2026-12-04/: 960x544x25, rank 32, adamw):
the allocated memory the formulas give was within 3% of torch's max_memory_allocated for presets 80, 32, 24 and 16;
ALLOCATOR_SLACK and OVERHEAD_GIB are the measured differences to torch's reserved memory and to NVML's peak. The
constants still marked "uncalibrated" are judgement (other buckets, the cache stages, sampling, host RAM).
"""

from __future__ import annotations

from ...training.presets import GIB, KNOBS, Estimate, MemoryModel, MemoryPlan, gib_parts, train_estimate
from .dit import HIDDEN, MAX_BLOCKS_TO_SWAP, NUM_BLOCKS

# --- DiT facts (musubi hunyuan_video_1_5/hunyuan_video_1_5_models.py, hunyuan_video_1_5_modules.py) -----------------
DIT_PARAMS = 8_326_608_160
HEADS = 16
HEAD_DIM = HIDDEN // HEADS
MLP_HIDDEN = 4 * HIDDEN  # mlp_width_ratio 4
MOD_FACTOR = 6  # ModulateDiT(hidden, factor=6): shift/scale/gate x2 per stream
STREAMS = ("img", "txt")
# The 7 nn.Linear of one stream of a block: (name, in_features, out_features); all have a bias.
STREAM_LINEARS = (
    ("mod.linear", HIDDEN, MOD_FACTOR * HIDDEN),
    ("attn_q", HIDDEN, HIDDEN),
    ("attn_k", HIDDEN, HIDDEN),
    ("attn_v", HIDDEN, HIDDEN),
    ("attn_proj", HIDDEN, HIDDEN),
    ("mlp.fc1", HIDDEN, MLP_HIDDEN),
    ("mlp.fc2", MLP_HIDDEN, HIDDEN),
)
BLOCK_LINEAR_WEIGHTS = len(STREAMS) * sum(i * o for _, i, o in STREAM_LINEARS)  # 150,994,944
# + biases, + the RMSNorm weights of q and k (head_dim each) per stream; LayerNorms have no affine parameters.
BLOCK_PARAMS = BLOCK_LINEAR_WEIGHTS + len(STREAMS) * (sum(o for _, _, o in STREAM_LINEARS) + 2 * HEAD_DIM)
NON_BLOCK_PARAMS = DIT_PARAMS - NUM_BLOCKS * BLOCK_PARAMS  # embedders, token refiner, final layer (~170M)
BF16 = 2
FP32 = 4
# --fp8_scaled quantizes the ".weight" of every Linear in double_blocks (FP8_OPTIMIZATION_TARGET_KEYS, exclude "norm"
# and "_emb"; modulation included) to fp8 with one bf16 scale per 64 inputs ("block" mode, block_size 64,
# modules/fp8_optimization_utils.py); biases, norms and everything outside the blocks stay bf16.
FP8_WEIGHT_BYTES = 1 + BF16 / 64

# --- LoRA (musubi networks/lora_hv_1_5.py: every Linear inside MMDoubleStreamBlock; trained in fp32) ---------------
LORA_MODULES = NUM_BLOCKS * len(STREAMS) * len(STREAM_LINEARS)  # 756
LORA_IN_OUT_SUM = (
    NUM_BLOCKS * len(STREAMS) * sum(i + o for _, i, o in STREAM_LINEARS)
)  # 5,529,600: params = rank x this
OPTIMIZERS = ("adamw8bit", "adamw", "AdaFactor")

# --- tokens ---------------------------------------------------------------------------------------------------------
VAE_SPATIAL = 16
VAE_TEMPORAL = 4
QWEN_TYPICAL_TOKENS = 256  # musubi keeps up to 1024 (TOKENIZER_MAX_LENGTH); typical captions are far shorter
BYT5_TOKENS = 128  # byT5 encodes quoted text only, at most 128 tokens; counted at its cap (small either way)
SIGLIP_TOKENS = 729  # i2v: 27x27 SigLIP patches (384 px / 14) join the text tokens
DEFAULT_TEXT_TOKENS = QWEN_TYPICAL_TOKENS + BYT5_TOKENS

# --- activations of one training step (batch 1: hvlora's dataset TOML sets batch_size 1) --------------------------
# musubi checkpoints every block (MMDoubleStreamBlock.forward: torch.utils.checkpoint, use_reentrant=False), so
# between forward and backward only each block's inputs stay: img and txt tokens x hidden, bf16.
# During one block's recompute + backward its intermediates live (uncalibrated count, from _forward): norm and
# modulate outputs, q/k before and after the RMSNorm, the q/k/v concatenations sdpa keeps, the attention output and
# its split, the projection, the residuals, the MLP input and output, plus the gradients flowing through
# (~20 hidden-sized tensors), and the MLP's fc1 output, its GELU and their two gradients (4 MLP-sized tensors).
# sdpa is O(tokens) here: batch 1 passes no mask (the model sets text_mask None for bs == 1) so the flash or
# memory-efficient kernel runs; it keeps a float32 logsumexp per head and token.
RECOMPUTE_HIDDEN_COPIES = 20
RECOMPUTE_MLP_COPIES = 4
# With --gradient_checkpointing_cpu_offload the block outputs go to the CPU (model_utils.create_cpu_offloading_wrapper)
# and one comes back per block during backward: ~2 block inputs stay on the GPU.
CPU_OFFLOAD_GPU_BLOCK_INPUTS = 2
# The PyTorch caching allocator holds freed blocks and fragments under the alloc/free churn of a step; nvidia-smi and
# NVML show that reserved memory. Measured (H200, 960x544x25): torch max_memory_reserved - max_memory_allocated =
# 1.97-2.22 GiB = 0.39-0.44 of the activations (saved + one block's), presets 80, 32, 24 and 16.
ALLOCATOR_SLACK = 0.40
# Sampling runs the DiT forward without grad (cond and uncond one after the other, hv_1_5_train_network.py)
INFER_HIDDEN_COPIES = 8
INFER_MLP_COPIES = 2
# CUDA context, cuBLAS/cuDNN workspaces: what NVML sees outside torch's allocator (per GPU process). Measured (H200,
# torch 2.11, CUDA 13): NVML peak - torch max_memory_reserved = 1.35-1.42 GiB in the training runs of presets 80/32/24.
OVERHEAD_GIB = 1.4
# With more than one GPU the LoRA is DDP-wrapped: a bucket copy of its fp32 grads plus NCCL buffers.
DDP_NCCL_GIB = 0.25
# Swapped blocks use a ring of this many GPU slots with --block_swap_h2d_only (--block_swap_ring_size default 2).
H2D_RING_SIZE = 2

# --- host RAM per GPU process ----------------------------------------------------------------------------------------
# Python + torch + CUDA libraries + 2 persistent data-loader workers (hvlora passes --max_data_loader_n_workers 2). The
# trainer process alone measured 3.0 GiB peak RSS (H200, preset 32, nothing swapped); the workers are not measured.
HOST_PROCESS_BASE_GIB = 5.0
HOST_CACHE_PROCESS_BASE_GIB = 3.0

# --- cache stages -----------------------------------------------------------------------------------------------------
QWEN_BF16_BYTES = 16.6e9  # qwen_2.5_vl_7b.safetensors (bf16)
QWEN_FP8_BYTES = QWEN_BF16_BYTES / 2  # --fp8_vl casts the whole model to float8_e4m3fn (qwen_image_utils)
QWEN_HIDDEN = 3584
QWEN_INTERMEDIATE = 18944
QWEN_LAYERS = 28
QWEN_VOCAB = 152_064  # the full model runs, lm_head included: bf16 logits for every token (transformers 4.57)
QWEN_TEMPLATE_TOKENS = 100  # the system prompt of PROMPT_TEMPLATE_VIDEO, cropped after encoding
QWEN_LAYER_TRANSIENT = 3 * QWEN_INTERMEDIATE + 4 * QWEN_HIDDEN  # gate, up, act + attention in/out (uncalibrated)
# musubi reads Qwen tensor by tensor straight to the GPU (load_safetensors, disable_mmap): the host holds about the
# largest tensor at a time, the embedding (vocab x hidden, bf16).
QWEN_LOADING_HOST_BYTES = QWEN_VOCAB * QWEN_HIDDEN * BF16
BYT5_BYTES = 0.44e9  # byt5_small_glyphxl_fp16.safetensors, always fp16
TE_BATCH_SIZE = 16  # musubi.py's TEXT_ENCODER_BATCH_SIZE
VAE_PARAMS = 1_260_634_115  # AutoencoderKLConv3D; cast to --vae_dtype (float16 by default)
VAE_FILE_BYTES = 5.04e9  # the fp32 file, read whole into RAM (load_file) before the cast
VAE_BASE_CHANNELS = 128  # block_out_channels[0]: the largest feature map is 128 channels at full tile resolution
VAE_DEFAULT_SAMPLE_SIZE = 128  # musubi --vae_sample_size default; 0 = no tiling (then the whole frame at once)
# Live copies of that feature map at the peak of a ResnetBlock (input kept for the residual, norm, SiLU, padded
# input, conv output, workspace); patch conv splits each conv along time (uncalibrated).
VAE_ACT_COPIES = 6
VAE_ACT_COPIES_PATCH_CONV = 4
SIGLIP_BYTES = 0.86e9  # i2v: sigclip_vision_patch14_384 in fp16

# Preset -> knob values; a knob a row leaves out keeps its default. Figures are estimate() at 960x544x25 / 848x480x61,
# rank 32, adamw8bit, one GPU, in GiB; "measured" ones are NVML peaks on an H200 capped to the card at 960x544x25 with
# adamw (2.6 GiB of LoRA + optimizer state, 0.8 GiB more than adamw8bit). Each row keeps 960x544x25 at <= 90% of its
# card; 848x480x61 (estimated) fits every row but 16 (see there), on 24 tightly (92%).
PRESET_TABLE: dict[int, dict[str, object]] = {
    # 80 (A100/H100 80GB, H200): bf16 DiT (no fp8 rounding of the frozen base), nothing swapped: measured 26.7 GiB, 2.46
    # s/step on an H200; ~31 GiB at 848x480x61, and even 960x544x121 (~50 GiB) fits. bf16 Qwen while caching (~21 GiB at
    # batch 16, ~28 GiB with 1024-token captions). VAE tile 256 (musubi: "256 if VRAM is sufficient for better quality";
    # ~16 GiB at 121 frames); no tiling (0) would need ~95 GiB for a 121-frame 960x544 clip, so no preset uses it.
    80: {"fp8": False, "blocks_to_swap": 0, "fp8_vl": False, "vae_sample_size": 256},
    # 48 (A6000, A40, L40S with ECC off): the same knobs as 80 (its measured 26.7 GiB is 56% of this card): the design
    # shapes train at full precision and speed; 960x544x121 (~50 GiB in bf16) needs --fp8 here (~42 GiB).
    48: {"fp8": False, "blocks_to_swap": 0, "fp8_vl": False, "vae_sample_size": 256},
    # 32 (RTX 5090, V100 32GB, A100 40GB, L40S with ECC on): bf16 would be ~26.7 (measured) / ~31 GiB of 31.4-31.8 GiB,
    # too close; fp8 without swap: measured 19.2 GiB (2.50 s/step: fp8 costs nothing here), ~24 GiB at 61 frames. bf16
    # Qwen (~21 GiB, ~28 GiB with long captions) fits.
    32: {"fp8": True, "blocks_to_swap": 0, "fp8_vl": False, "vae_sample_size": 256},
    # 24 (3090, 4090, A5000): fp8 alone is ~19 / ~24 GiB, too much at 61 frames; 16 blocks swapped (2.3 GiB) bring it to
    # measured 17.1 GiB (2.54 s/step: the swap hides behind compute) / ~22 GiB (--blocks_to_swap 20: ~21.4). H2D-only
    # swap: the LoRA base is frozen and hvlora always passes --gradient_checkpointing, which it needs; ~25% faster than
    # the classic exchange (musubi docs/block_swap.md) for 2 ring slots of VRAM. fp8 Qwen: bf16 is ~21 GiB at batch 16
    # and ~28 GiB with long captions; fp8 ~13 / ~21.
    24: {
        "fp8": True,
        "blocks_to_swap": 16,
        "block_swap_h2d_only": True,
        "fp8_vl": True,
        "vae_sample_size": 256,
    },
    # 16 (4060 Ti 16GB, 4080, A4000): fp8 + 36 of 54 blocks streamed (H2D-only): trains 960x544x25 under a 16 GB cap at
    # 2.7-3.2 s/step; torch reserved 12.9 GiB, so ~14.3 GiB in NVML (89% of the card; the NVML peak itself was not
    # sampled in that run). 848x480x61 (~19 GiB) does not fit: the plan's estimate says so and what to lower. The
    # checkpointed block inputs cannot go to the CPU with H2D-only swap (EXCLUSIVE). ~18 GiB of host RAM per GPU process
    # (the DiT while it loads and the swapped blocks' pinned copies; the trainer measured 16.1 GiB). fp8 Qwen (~13 GiB at batch 16 with typical captions). VAE tile 128 (musubi's default) with
    # patch conv, which musubi documents as lossless.
    16: {
        "fp8": True,
        "blocks_to_swap": 36,
        "block_swap_h2d_only": True,
        "fp8_vl": True,
        "vae_sample_size": 128,
        "vae_enable_patch_conv": True,
    },
}

# musubi v0.3.4 with both stops at the first step: the HV1.5 block's offloading wrapper moves its inputs to the device
# of a weight that H2D-only streaming keeps on the CPU (hunyuan_video_1_5_modules.py create_cpu_offloading_wrapper(...,
# self.img_attn_q.weight.device); "Expected all tensors to be on the same device, cuda:0 and cpu"; H200, 2026-12-04).
EXCLUSIVE = (
    (
        "gradient_checkpointing_cpu_offload",
        "block_swap_h2d_only",
        "musubi v0.3.4 stops at the first step with both (the offloaded block inputs meet weights H2D-only streaming "
        "keeps on the CPU)",
    ),
)

DEFAULTS: dict[str, object] = {
    "fp8": False,
    "blocks_to_swap": 0,
    "block_swap_h2d_only": False,
    "gradient_checkpointing_cpu_offload": False,
    "fp8_vl": False,
    "vae_sample_size": None,  # None: no flag, musubi's default (128)
    "vae_enable_patch_conv": False,
}


def musubi_flags(plan: MemoryPlan, sampling: bool = False) -> dict[str, list[str]]:
    """The argv fragment of each musubi entry point for plan: keys "cache_latents" (hv_1_5_cache_latents),
    "cache_text_encoder_outputs" (hv_1_5_cache_text_encoder_outputs), "train" (hv_1_5_train_network). With
    sampling=True (--sample_prompts), train also gets --fp8_vl and the VAE flags, which musubi's train script uses
    for encoding the sample prompts and decoding the samples. --gradient_checkpointing is not here: musubi.py
    always passes it. Never raises."""
    vae: list[str] = []
    if plan.vae_sample_size is not None:
        vae += ["--vae_sample_size", str(plan.vae_sample_size)]
    if plan.vae_enable_patch_conv:
        vae.append("--vae_enable_patch_conv")
    te = ["--fp8_vl"] if plan.fp8_vl else []
    train: list[str] = []
    if plan.fp8:
        train += ["--fp8_base", "--fp8_scaled"]
    if plan.blocks_to_swap > 0:
        train += ["--blocks_to_swap", str(plan.blocks_to_swap)]
        if plan.block_swap_h2d_only:
            train.append("--block_swap_h2d_only")
    if plan.gradient_checkpointing_cpu_offload:
        train.append("--gradient_checkpointing_cpu_offload")
    if sampling:
        train += te + vae
    return {"cache_latents": vae, "cache_text_encoder_outputs": te, "train": train}


def tokens(width: int, height: int, frames: int) -> int:
    """DiT image tokens of one clip: (W//16) x (H//16) x (1 + (F-1)//4) (16x spatial and 4x temporal VAE, patch
    1x1x1; musubi hunyuan_video_1_5_models.py). 960x544x25 -> 14,280. Raises ValueError for sizes < 1."""
    if min(width, height, frames) < 1:
        raise ValueError(f"width, height and frames must be >= 1, got {width}x{height}x{frames}")
    return (width // VAE_SPATIAL) * (height // VAE_SPATIAL) * (1 + (frames - 1) // VAE_TEMPORAL)


def lora_params(rank: int) -> int:
    """Trainable LoRA parameters of networks.lora_hv_1_5: rank x sum(in + out) over its 756 Linear modules
    (rank 32 -> 176,947,200). Raises ValueError for rank < 1."""
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    return rank * LORA_IN_OUT_SUM


def optimizer_state_bytes(optimizer: str, rank: int) -> int:
    """Bytes of optimizer state for the LoRA: adamw 2 fp32 moments, adamw8bit 2 one-byte moments (bitsandbytes),
    AdaFactor (transformers, beta1 None) a factored second moment: rows + columns of every LoRA matrix in fp32.
    optimizer is case-insensitive. Raises ValueError for another optimizer."""
    n = lora_params(rank)
    name = optimizer.lower()
    if name == "adamw":
        return 2 * FP32 * n
    if name == "adamw8bit":
        return 2 * n
    if name == "adafactor":
        return FP32 * (LORA_IN_OUT_SUM + 2 * rank * LORA_MODULES)
    raise ValueError(f"no memory model for optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")


def dit_weight_bytes(fp8: bool) -> tuple[int, int]:
    """(bytes of one block's swappable Linear weights, bytes of everything else) of the DiT: bf16, or fp8 with
    --fp8_scaled (Linear weights of the blocks at FP8_WEIGHT_BYTES, the rest bf16)."""
    per_block = BLOCK_LINEAR_WEIGHTS * (FP8_WEIGHT_BYTES if fp8 else BF16)
    rest = (NON_BLOCK_PARAMS + NUM_BLOCKS * (BLOCK_PARAMS - BLOCK_LINEAR_WEIGHTS)) * BF16
    return round(per_block), rest


def vae_activation_bytes(plan: MemoryPlan, width: int, height: int, frames: int) -> int:
    """Bytes of VAE activations for one clip (encode for the latent cache, decode for samples): the largest feature
    map (128 channels at full tile resolution, all frames, fp16) x VAE_ACT_COPIES (fewer with patch conv), plus the
    clip itself. Tiles are vae_sample_size pixels (None: 128; 0: the whole frame; musubi tiles only when the frame
    is larger)."""
    size = VAE_DEFAULT_SAMPLE_SIZE if plan.vae_sample_size is None else plan.vae_sample_size
    th, tw = (height, width) if size == 0 else (min(height, size), min(width, size))
    copies = VAE_ACT_COPIES_PATCH_CONV if plan.vae_enable_patch_conv else VAE_ACT_COPIES
    return VAE_BASE_CHANNELS * frames * th * tw * BF16 * copies + 3 * frames * height * width * BF16


def _text_encoder_bytes(fp8_vl: bool, batch: int, text_tokens: int) -> dict[str, float]:
    """Qwen2.5-VL + byT5 on the GPU encoding `batch` captions of text_tokens tokens (no grad): weights, every
    layer's hidden states (output_hidden_states=True), the bf16 logits and one layer's transients."""
    bt = batch * (QWEN_TEMPLATE_TOKENS + text_tokens)
    return {
        "text_encoder_weights": (QWEN_FP8_BYTES if fp8_vl else QWEN_BF16_BYTES) + BYT5_BYTES,
        "text_encoder_activations": bt * ((QWEN_LAYERS + 1) * QWEN_HIDDEN + QWEN_VOCAB + QWEN_LAYER_TRANSIENT) * BF16,
    }


def estimate(
    plan: MemoryPlan,
    largest_bucket: tuple[int, int, int],
    rank: int,
    optimizer: str,
    num_gpus: int = 1,
    sampling: bool = False,
    *,
    task: str = "t2v",
    text_tokens: int = DEFAULT_TEXT_TOKENS,
) -> Estimate:
    """ESTIMATED peak VRAM per GPU and host RAM of the training stage (hv_1_5_train_network) for the bucket with the
    most tokens, largest_bucket = (width, height, frames) in pixels/frames; batch 1.

    VRAM (GiB), the parts: dit_weights (resident blocks + ring slots + the rest; bf16 2 B, fp8 ~1.03 B per block
    weight), fp8_dequant (fp8: one block's weights dequantized to bf16, kept for its backward), lora (fp32 weights +
    fp32 grads + optimizer states), activations_saved (54 block inputs: tokens x 2048 x 2 B, on the host with
    gradient_checkpointing_cpu_offload), activations_block (one block's recompute + backward, see the constants),
    allocator_slack (ALLOCATOR_SLACK of the activations), ddp (num_gpus > 1), overhead (OVERHEAD_GIB).
    sampling=True adds the two other moments of --sample_prompts: encoding the prompts (Qwen on the GPU before the DiT
    loads) and generating (no-grad forward, then the VAE decode), and the peak is the largest of the three.

    Host RAM: per GPU process HOST_PROCESS_BASE_GIB + the swapped blocks' weights + the offloaded block inputs, and
    the whole DiT while it loads when blocks are swapped (musubi loads it on the CPU then): with H2D-only swap the
    pinned master copies of the swapped blocks are made beside it (measured: trainer RSS 3.0 + DiT + swapped blocks
    within 1.5% for presets 24 and 16), with the classic swap they are the loaded weights (the larger of the two
    counts); times num_gpus (each process keeps its own copy). Raises ValueError for bad sizes, rank, optimizer, task or num_gpus."""
    if num_gpus < 1:
        raise ValueError(f"num_gpus must be >= 1, got {num_gpus}")
    if task not in ("t2v", "i2v"):
        raise ValueError(f"task must be t2v or i2v, got {task!r}")
    if text_tokens < 0:
        raise ValueError(f"text_tokens must be >= 0, got {text_tokens}")
    width, height, frames = largest_bucket
    img = tokens(width, height, frames)
    txt = text_tokens + (SIGLIP_TOKENS if task == "i2v" else 0)
    seq = img + txt

    per_block, rest = dit_weight_bytes(plan.fp8)
    swap = plan.blocks_to_swap
    ring = min(H2D_RING_SIZE, swap) if plan.block_swap_h2d_only else 0
    dit = (NUM_BLOCKS - swap + ring) * per_block + rest
    n_lora = lora_params(rank)
    lora = n_lora * (FP32 + FP32) + optimizer_state_bytes(optimizer, rank)

    block_input = seq * HIDDEN * BF16
    saved_all = NUM_BLOCKS * block_input
    saved_gpu = CPU_OFFLOAD_GPU_BLOCK_INPUTS * block_input if plan.gradient_checkpointing_cpu_offload else saved_all
    rope = img * HEAD_DIM * 2 * FP32  # cos and sin, float32, built once per step
    head = img * (HIDDEN * BF16 + 3 * 32 * FP32)  # final layer output, prediction, target and loss
    block = seq * (RECOMPUTE_HIDDEN_COPIES * HIDDEN + RECOMPUTE_MLP_COPIES * MLP_HIDDEN) * BF16
    block += seq * HEADS * FP32 + rope + head
    step: dict[str, float] = {"dit_weights": dit}
    if plan.fp8:
        step["fp8_dequant"] = BLOCK_LINEAR_WEIGHTS * BF16
    step["lora"] = lora
    step["activations_saved"] = saved_gpu
    step["activations_block"] = block
    step["allocator_slack"] = ALLOCATOR_SLACK * (saved_gpu + block)
    if num_gpus > 1:
        step["ddp"] = n_lora * FP32 + DDP_NCCL_GIB * GIB
    step["overhead"] = OVERHEAD_GIB * GIB

    moments = {"step": step}
    if sampling:
        resident = {"dit_weights": dit, "lora": n_lora * FP32 + optimizer_state_bytes(optimizer, rank)}
        infer = seq * (INFER_HIDDEN_COPIES * HIDDEN + INFER_MLP_COPIES * MLP_HIDDEN) * BF16
        decode = VAE_PARAMS * BF16 + vae_activation_bytes(plan, width, height, frames)
        sample = {**resident, "sampling": max(infer, decode), "overhead": OVERHEAD_GIB * GIB}
        prompts = {**_text_encoder_bytes(plan.fp8_vl, 1, QWEN_TYPICAL_TOKENS), "overhead": OVERHEAD_GIB * GIB}
        moments.update({"sampling": sample, "sample prompts": prompts})
    host_swapped = swap * per_block
    host_offload = saved_all if plan.gradient_checkpointing_cpu_offload else 0
    host_vae = VAE_PARAMS * BF16 if sampling else 0  # the VAE waits on the CPU between samples
    steady = host_swapped + host_offload + host_vae
    loading = NUM_BLOCKS * per_block + rest if swap > 0 else 0
    if plan.block_swap_h2d_only:  # LoRAStreamOffloader pins a master copy of each streamed block beside the loaded DiT
        steady -= host_swapped
    host = {
        "process_base": HOST_PROCESS_BASE_GIB * GIB,
        "swapped_blocks": host_swapped,
        "offloaded_activations": host_offload,
        "vae_for_samples": host_vae,
        "dit_loading_extra": max(0, loading - steady),
    }
    return train_estimate(moments, host, plan, num_gpus, per_block)


def cache_estimates(
    plan: MemoryPlan,
    largest_bucket: tuple[int, int, int] = (960, 544, 25),
    *,
    task: str = "t2v",
    te_batch_size: int = TE_BATCH_SIZE,
    text_tokens: int = QWEN_TYPICAL_TOKENS,
) -> dict[str, Estimate]:
    """ESTIMATED memory of the two cache stages (single process), keyed "cache_latents" and
    "cache_text_encoder_outputs".

    cache_latents: the VAE in fp16 (1.26B params, 2.5 GB) + vae_activation_bytes() for largest_bucket (+ SigLIP for
    i2v); host: the fp32 VAE file read whole. cache_text_encoder_outputs: Qwen2.5-VL 7B (bf16 16.6 GB, fp8_vl 8.3 GB)
    + byT5 + te_batch_size captions of text_tokens Qwen tokens (musubi keeps up to 1024): all 29 hidden states, the
    logits over a 152k vocabulary, one layer's transients; host: one Qwen tensor at a time while loading. Raises ValueError for bad sizes."""
    if te_batch_size < 1 or text_tokens < 0:
        raise ValueError(f"te_batch_size must be >= 1 and text_tokens >= 0, got {te_batch_size}, {text_tokens}")
    width, height, frames = largest_bucket
    tokens(width, height, frames)  # validates
    overhead = OVERHEAD_GIB * GIB
    latents = {"vae_weights": VAE_PARAMS * BF16, "vae_activations": vae_activation_bytes(plan, width, height, frames)}
    if task == "i2v":
        latents["image_encoder"] = SIGLIP_BYTES
    latents["overhead"] = overhead
    te = {**_text_encoder_bytes(plan.fp8_vl, te_batch_size, text_tokens), "overhead": overhead}
    base = HOST_CACHE_PROCESS_BASE_GIB * GIB
    out = {}
    for stage, parts, host in (
        ("cache_latents", latents, {"process_base": base, "vae_file": VAE_FILE_BYTES}),
        ("cache_text_encoder_outputs", te, {"process_base": base, "text_encoder_loading": QWEN_LOADING_HOST_BYTES}),
    ):
        vram, host_gib = gib_parts(parts), gib_parts(host)
        out[stage] = Estimate(stage, "encode", sum(vram.values()), sum(host_gib.values()), vram, host_gib, plan)
    return out


MODEL = MemoryModel(
    title="HunyuanVideo 1.5",
    table=PRESET_TABLE,
    defaults=DEFAULTS,
    num_blocks=NUM_BLOCKS,
    max_blocks_to_swap=MAX_BLOCKS_TO_SWAP,
    swap_ladder=(0, 20, 30, 40, MAX_BLOCKS_TO_SWAP),  # each step saves VRAM, costs speed
    vae_tile_step=VAE_SPATIAL,
    vae_min_tile=64,
    vae_default_tile=VAE_DEFAULT_SAMPLE_SIZE,
    musubi_flags=musubi_flags,
    tokens=tokens,
    estimate=estimate,
    cache_estimates=cache_estimates,
    exclusive=EXCLUSIVE,
    # every knob but text_encoder_cpu: Qwen2.5-VL has --fp8_vl for small cards here
    knobs=tuple(k for k in KNOBS if k != "text_encoder_cpu"),
)
# The machinery bound to this family's numbers, under the names the estimate's users know.
PRESETS = MODEL.presets
resolve, fits = MODEL.resolve, MODEL.fits
preset_for_vram, preset_warning = MODEL.preset_for_vram, MODEL.preset_warning
