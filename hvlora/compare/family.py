"""The one place the compare and share machinery asks which model family it works for.

Today every LoRA this trainer makes is HunyuanVideo 1.5, so the answer is that family's modules: its generator
(`families/hunyuan_video_1_5/generate.py`: musubi entry point and argv, inference defaults and memory) and its hub
facts (`families/hunyuan_video_1_5/card.py`: base model, license, tags, how to use the files). When the family
registry arrives, these two functions look the family up from the LoRA's metadata instead.
"""

from __future__ import annotations

from types import ModuleType


def generator(metadata: dict[str, str]) -> ModuleType:
    """The generator module of the family that trained a LoRA with this metadata."""
    from ..families.hunyuan_video_1_5 import generate

    return generate


def hub_facts(metadata: dict[str, str]) -> ModuleType:
    """The model-card facts module of that family."""
    from ..families.hunyuan_video_1_5 import card

    return card
