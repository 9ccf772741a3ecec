"""Small pieces shared by the stand-in entry points: logging, dtypes, weight files, deterministic tensors.

Mirrors: logging.basicConfig(level=INFO) at import time of every musubi script (stderr, `LEVEL:logger:message`);
utils/model_utils.str_to_dtype / dtype_to_str (the dtype names in cache keys); hunyuan_model/attention.py's
import-time sageattention probe (stdout) that the text-encoder and training scripts print.

Not musubi, for speed only: torch is set to one intra-op thread at import. The stand-in's tensors are small and its
work is noise, so OpenMP's thread start-up and contention (many stand-ins run at once in the tests) cost far more
than they give.
"""

from __future__ import annotations

import hashlib
import logging
import os

import safetensors.torch
import torch

logging.basicConfig(level=logging.INFO)
torch.set_num_threads(1)

DTYPES = {
    ("bf16", "bfloat16"): torch.bfloat16,
    ("fp16", "float16"): torch.float16,
    ("fp32", "float32", "float"): torch.float32,
    ("fp8_e4m3fn", "e4m3fn", "float8_e4m3fn", "fp8", "float8"): torch.float8_e4m3fn,
    ("fp8_e4m3fnuz", "e4m3fnuz", "float8_e4m3fnuz"): torch.float8_e4m3fnuz,
    ("fp8_e5m2", "e5m2", "float8_e5m2"): torch.float8_e5m2,
    ("fp8_e5m2fnuz", "e5m2fnuz", "float8_e5m2fnuz"): torch.float8_e5m2fnuz,
}


def str_to_dtype(s: str | None, default: torch.dtype | None = None) -> torch.dtype | None:
    """model_utils.str_to_dtype: the names musubi accepts for --vae_dtype, --save_precision, ..."""
    if s is None:
        return default
    for names, dtype in DTYPES.items():
        if s in names:
            return dtype
    raise ValueError(f"Unsupported dtype: {s}")


def dtype_to_str(dtype: torch.dtype) -> str:
    """model_utils.dtype_to_str: torch.bfloat16 -> "bfloat16" (the suffix of cache tensor keys)."""
    return str(dtype).split(".")[-1]


def sageattention_probe() -> None:
    """What hunyuan_model/attention.py prints when imported without sageattention installed."""
    print("Trying to import sageattention")
    print("Failed to import sageattention")


def require_weight_file(path: str) -> None:
    """A model file given by flag must exist: musubi fails opening it (safetensors' or open()'s
    FileNotFoundError). The stand-in reads nothing from it."""
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)


def noise(shape, dtype: torch.dtype, *seed_parts) -> torch.Tensor:
    """Deterministic N(0,1) values for a tensor: the same inputs give the same bytes (tests can compare runs)."""
    digest = hashlib.sha256("|".join(map(str, seed_parts)).encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32).to(dtype)


def device_from(arg: str | None) -> torch.device:
    """--device or cuda if available else cpu; an invalid name raises as torch.device does."""
    return torch.device(arg if arg is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def model_hashes(sd: dict[str, torch.Tensor], metadata: dict[str, str]) -> tuple[str, str]:
    """model_utils.precalculate_safetensors_hashes: sha256 of the tensor bytes of the file that holds `sd` and
    the ss_* metadata, and the legacy hash (sha256 of 64 KiB at offset 1 MiB, 8 hex digits)."""
    data = safetensors.torch.save(sd, {k: v for k, v in metadata.items() if k.startswith("ss_")})
    header_len = int.from_bytes(data[:8], "little")
    return (hashlib.sha256(data[8 + header_len :]).hexdigest(), hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8])
