"""The model family of a LoRA, for the compare and share machinery: its generator (`Family.generator`: musubi
entry point and argv, inference defaults and memory) and its model-card facts (`Family.card`)."""

from __future__ import annotations

from .. import families
from ..core.errors import UserError

FAMILY_KEY = "hvlora.model_family"  # training/lorainfo.py writes it; LoRAs from before it was written are HV1.5's


def of(metadata: dict[str, str]) -> families.Family:
    """The registered family that trained a LoRA with this metadata. Raises UserError for a family this version
    does not know."""
    name = metadata.get(FAMILY_KEY) or families.DEFAULT
    if name not in families.REGISTRY:
        raise UserError(
            f"this LoRA was trained for model family {name!r}, which this version does not know "
            f"(known: {', '.join(families.names())})"
        )
    return families.get(name)


def generator(metadata: dict[str, str]) -> families.Generator:
    """The generator of the family that trained a LoRA with this metadata. Raises UserError when it has none."""
    family = of(metadata)
    if family.generator is None:
        raise UserError(f"--generate: no musubi generator is wired for {family.title} LoRAs yet")
    return family.generator


def hub_facts(metadata: dict[str, str]) -> families.HubCard:
    """The model-card facts of that family. Raises UserError when it has none."""
    family = of(metadata)
    if family.card is None:
        raise UserError(f"--push_to_hub: no model card is defined for {family.title} LoRAs yet")
    return family.card
