"""A tiny Qwen2.5-VL for tests: the real transformers model class with small dimensions and random weights, saved
as one safetensors file in the layout and key names of the Comfy file the trainer downloads
(`Comfy-Org/HunyuanVideo_1.5_repackaged`, `split_files/text_encoders/qwen_2.5_vl_7b.safetensors`: `model.*` for
the language model, `visual.*` for the vision tower, `lm_head.weight`), and the small files of
`Qwen/Qwen2.5-VL-7B-Instruct` the captioner's processor reads.

The vocabulary is small (512: byte-level tokens without merges, so every byte is one token, filler words `w<N>`
that random weights generate, then the chat and vision special tokens), because generating over Qwen's 152,064
tokens costs seconds per item on a CPU; the token ids in the model's configuration and generation_config.json are
those of this tokenizer, so the chat template, the processor's placeholder expansion and the model's vision-token
lookup run as with the 7B model. Captions are meaningless but readable. The model's configuration is written into
the file's metadata (`hvlora_test_config`): the stand-in of musubi's `load_qwen2_5_vl` reads it there, where the
real loader has the 7B configuration built in.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

VOCAB = 512
FIRST_SPECIAL = 480  # the real model's first special token is 151643
SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen/Qwen2.5-VL-7B-Instruct's own small files (content as published)
PREPROCESSOR_CONFIG = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)


def _id(token: str) -> int:
    return FIRST_SPECIAL + SPECIALS.index(token)


# generation_config.json as published, with this tokenizer's ids (151643 -> <|endoftext|>, 151645 -> <|im_end|>)
GENERATION_CONFIG = {
    "bos_token_id": _id("<|endoftext|>"),
    "pad_token_id": _id("<|endoftext|>"),
    "do_sample": True,
    "eos_token_id": [_id("<|im_end|>"), _id("<|endoftext|>")],
    "repetition_penalty": 1.05,
    "temperature": 0.1,
    "top_p": 0.001,
    "top_k": 1,
    "transformers_version": "4.37.0",
}

TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
VISION = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "fullatt_block_indexes": [1]}


def config_dict() -> dict:
    """The tiny model's configuration: musubi's 7B configuration (qwen_image_utils.load_qwen2_5_vl) with small
    sizes and this tokenizer's ids; head_dim 16, so the multimodal RoPE sections sum to 8."""
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "bos_token_id": _id("<|endoftext|>"),
        "eos_token_id": _id("<|im_end|>"),
        "vision_start_token_id": _id("<|vision_start|>"),
        "vision_end_token_id": _id("<|vision_end|>"),
        "vision_token_id": _id("<|vision_pad|>"),
        "image_token_id": _id("<|image_pad|>"),
        "video_token_id": _id("<|video_pad|>"),
        "hidden_act": "silu",
        **TEXT,
        "num_key_value_heads": 1,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "default", "rope_type": "default", "mrope_section": [2, 3, 3]},
        "tie_word_embeddings": False,
        "vocab_size": VOCAB,
        "torch_dtype": "bfloat16",
        "vision_config": {
            **VISION,
            "hidden_act": "silu",
            "in_chans": 3,
            "out_hidden_size": TEXT["hidden_size"],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
            "window_size": 112,
        },
    }


def write_model(path: Path, seed: int = 0) -> Path:
    """The tiny model, random bf16 weights, in the Comfy file's key layout; the configuration in the metadata."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration._from_config(Qwen2_5_VLConfig(**config_dict()))
    sd = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("model.language_model."):
            key = "model." + key.removeprefix("model.language_model.")
        elif key.startswith("model.visual."):
            key = "visual." + key.removeprefix("model.visual.")
        sd[key] = tensor.detach().to(torch.bfloat16).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path), metadata={"format": "pt", "hvlora_test_config": json.dumps(config_dict())})
    return path


def _byte_symbols() -> list[str]:
    """GPT-2's byte-to-unicode table (what byte-level BPE vocabularies are written in), in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    out, n = {}, 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return [out[b] for b in range(256)]


@lru_cache(maxsize=1)
def tokenizer_files() -> dict[str, bytes]:
    """vocab.json, merges.txt, tokenizer.json and tokenizer_config.json of a Qwen2-style byte-level tokenizer with
    the real special-token ids (slow and fast Qwen2 tokenizers load them alike)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {s: i for i, s in enumerate(_byte_symbols())}
    space = _byte_symbols()[ord(" ")]
    for i in range(len(vocab), FIRST_SPECIAL):
        vocab[f"{space}w{i}"] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    added = {
        str(FIRST_SPECIAL + i): {
            "content": s,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, s in enumerate(SPECIALS)
    }
    config = {
        "added_tokens_decoder": added,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "model_max_length": 32768,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
    }
    return {
        "vocab.json": json.dumps(vocab, ensure_ascii=False).encode(),
        "merges.txt": b"#version: 0.2\n",
        "tokenizer.json": tok.to_str().encode(),
        "tokenizer_config.json": json.dumps(config).encode(),
    }


def processor_files() -> dict[str, bytes]:
    """The files of Qwen/Qwen2.5-VL-7B-Instruct the captioner reads (the tokenizer here is the tiny one)."""
    return {
        **tokenizer_files(),
        "preprocessor_config.json": json.dumps(PREPROCESSOR_CONFIG).encode(),
        "chat_template.json": json.dumps({"chat_template": CHAT_TEMPLATE}).encode(),
        "generation_config.json": json.dumps(GENERATION_CONFIG).encode(),
    }


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder
