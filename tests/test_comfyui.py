"""The ComfyUI key check on synthetic LoRA files in musubi's and ComfyUI's key layouts (real safetensors)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from hvlora.families.hunyuan_video_1_5 import comfyui

# Written out independently of hvlora.families.hunyuan_video_1_5.comfyui: HV1.5 double block Linear shapes (in, out), contract §5.
MUSUBI = {
    "attn_q": (2048, 2048),
    "attn_k": (2048, 2048),
    "attn_v": (2048, 2048),
    "attn_proj": (2048, 2048),
    "mlp_fc1": (2048, 8192),
    "mlp_fc2": (8192, 2048),
    "mod_linear": (2048, 12288),
}
COMFY = {
    "attn_qkv": (2048, 6144),
    "attn_proj": (2048, 2048),
    "mlp_0": (2048, 8192),
    "mlp_2": (8192, 2048),
    "mod_lin": (2048, 12288),
}


def lora(path, layout, rank=2, qkv_factor=1, drop=(), extra=()):
    tensors = {}
    for b in range(54):
        for s in ("img", "txt"):
            for m, (fan_in, fan_out) in layout.items():
                prefix = f"lora_unet_double_blocks_{b}_{s}_{m}"
                if prefix in drop:
                    continue
                r = rank * (qkv_factor if m == "attn_qkv" else 1)
                # zero-sized storage would be cheaper, but real shapes are what the check reads
                tensors[prefix + ".lora_down.weight"] = torch.zeros(r, fan_in, dtype=torch.bfloat16)
                tensors[prefix + ".lora_up.weight"] = torch.zeros(fan_out, r, dtype=torch.bfloat16)
                tensors[prefix + ".alpha"] = torch.tensor(float(rank), dtype=torch.bfloat16)
    for k in extra:
        tensors[k] = torch.zeros(1)
    save_file(tensors, str(path))
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp("lora")
    return lora(d / "m.safetensors", MUSUBI), lora(d / "c.safetensors", COMFY, qkv_factor=3)


def test_complete_pair(good):
    report = comfyui.verify(*good)
    assert report == {
        "rank": 2,
        "musubi_modules": 756,
        "musubi_keys": 2268,
        "comfyui_modules": 540,
        "comfyui_keys": 1620,
    }


def test_missing_comfy_module_is_named(tmp_path, good):
    bad = lora(tmp_path / "c.safetensors", COMFY, qkv_factor=3, drop={"lora_unet_double_blocks_53_txt_attn_qkv"})
    with pytest.raises(comfyui.LoraCheckError) as e:
        comfyui.verify(good[0], bad)
    msg = str(e.value)
    assert "3 key(s) missing" in msg and "lora_unet_double_blocks_53_txt_attn_qkv.lora_up.weight" in msg


def test_unconverted_file_is_not_a_comfy_file(good):
    """Publishing the musubi file as the ComfyUI one (the classic 'no effect' LoRA) is caught."""
    with pytest.raises(comfyui.LoraCheckError, match="unexpected lora_unet_double_blocks_0_img_attn_q"):
        comfyui.verify(good[0], good[0])


def test_missing_musubi_module(tmp_path, good):
    bad = lora(tmp_path / "m.safetensors", MUSUBI, drop={"lora_unet_double_blocks_7_img_mod_linear"})
    with pytest.raises(comfyui.LoraCheckError, match="double_blocks_7_img_mod_linear"):
        comfyui.verify(bad, good[1])


def test_wrong_fusion_shape(tmp_path, good):
    bad = lora(tmp_path / "c.safetensors", COMFY, qkv_factor=1)  # q/k/v not fused into 3r
    with pytest.raises(comfyui.LoraCheckError, match=r"attn_qkv.lora_down.weight has shape \[2, 2048\]"):
        comfyui.verify(good[0], bad)


def test_extra_keys_and_garbage(tmp_path, good):
    with pytest.raises(comfyui.LoraCheckError, match="unexpected lora_te_something"):
        comfyui.verify(good[0], lora(tmp_path / "c.safetensors", COMFY, qkv_factor=3, extra=("lora_te_something",)))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(comfyui.LoraCheckError, match="not a readable safetensors"):
        comfyui.verify(junk, good[1])
