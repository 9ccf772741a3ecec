"""Stand-in for musubi_tuner.qwen_image.qwen_image_utils (v0.3.4): only `load_qwen2_5_vl`, which hvlora's captioner
child imports (as musubi's caption_images_by_qwen_vl.py does).

Mirrors the real function's signature, return value and key handling: a `Qwen2_5_VLForConditionalGeneration` built
from a configuration under accelerate's init_empty_weights, the single file read with the given device and dtype,
`model.*` -> `model.language_model.*` and `visual.*` -> `model.visual.*`, `load_state_dict(strict=True,
assign=True)` (so a file without the vision tower or lm_head fails as with musubi), `.to(device)`, then fp8
(weights cast to the fp8 dtype, RMSNorms computed in fp32 as musubi's prepare_fp8 hooks do) or a plain dtype cast;
the tokenizer from the hub id `Qwen/Qwen-Image` subfolder `tokenizer` (from the HF cache, offline).

What differs: the configuration. The real loader has the 7B one built in; a test model is tiny, so its
configuration is read from the file's metadata (`hvlora_test_config`, written by tests/tinyqwen.py). A file
without it is refused, so a stand-in run can never pretend to load a real 7B file.
"""

from __future__ import annotations

import json
import logging

import torch
from accelerate import init_empty_weights
from safetensors import safe_open
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer

logger = logging.getLogger(__name__)
logging.basicConfig(level=logging.INFO)

QWEN_IMAGE_ID = "Qwen/Qwen-Image"
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def load_qwen2_5_vl(
    ckpt_path: str,
    dtype: torch.dtype | None,
    device: str | torch.device,
    disable_mmap: bool = False,
    state_dict: dict | None = None,
) -> tuple[Qwen2Tokenizer, Qwen2_5_VLForConditionalGeneration]:
    with safe_open(ckpt_path, framework="pt") as f:
        meta = f.metadata() or {}
        if "hvlora_test_config" not in meta:
            raise ValueError(f"{ckpt_path}: not a test model (the stand-in loads only tests/tinyqwen.py files)")
        config = Qwen2_5_VLConfig(**json.loads(meta["hvlora_test_config"]))
        sd = state_dict if state_dict is not None else {k: f.get_tensor(k) for k in f.keys()}
    with init_empty_weights():
        qwen2_5_vl = Qwen2_5_VLForConditionalGeneration._from_config(config)
    logger.info(f"Loading state dict from {ckpt_path}")
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}  # load_split_weights(dtype=...) casts while reading
    for key in list(sd.keys()):
        if key.startswith("model."):
            new_key = key.replace("model.", "model.language_model.", 1)
        elif key.startswith("visual."):
            new_key = key.replace("visual.", "model.visual.", 1)
        else:
            continue
        sd[new_key] = sd.pop(key)
    info = qwen2_5_vl.load_state_dict(sd, strict=True, assign=True)
    logger.info(f"Loaded Qwen2.5-VL: {info}")
    qwen2_5_vl.to(device)
    if dtype is not None:
        if dtype in FP8_DTYPES:
            logger.info(f"prepare Qwen2.5-VL for fp8: set to {dtype} from {torch.bfloat16}")
            qwen2_5_vl.to(dtype)
            _prepare_fp8(qwen2_5_vl)
        else:
            logger.info(f"Setting Qwen2.5-VL to dtype: {dtype}")
            qwen2_5_vl.to(dtype)
    logger.info(f"Loading tokenizer from {QWEN_IMAGE_ID}")
    tokenizer = Qwen2Tokenizer.from_pretrained(QWEN_IMAGE_ID, subfolder="tokenizer")
    return tokenizer, qwen2_5_vl


def _prepare_fp8(model) -> None:
    """musubi's prepare_fp8: embeddings and the vision rotary embedding in bf16, RMSNorm in fp32."""

    def rms_forward(module):
        def forward(hidden_states):
            input_dtype = hidden_states.dtype
            hidden_states = hidden_states.to(torch.float32)
            variance = hidden_states.pow(2).mean(-1, keepdim=True)
            hidden_states = hidden_states * torch.rsqrt(variance + module.variance_epsilon)
            return (module.weight.to(torch.float32) * hidden_states).to(input_dtype)

        return forward

    for module in model.modules():
        name = module.__class__.__name__
        if name in ("Embedding", "Qwen2_5_VisionRotaryEmbedding"):
            module.to(torch.bfloat16)
        if name == "Qwen2RMSNorm":
            module.forward = rms_forward(module)
