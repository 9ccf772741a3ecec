"""The model card (README.md) of an uploaded LoRA, built with huggingface_hub's ModelCardData / ModelCard.

YAML: the family's base model, `base_model_relation: adapter`, license (name and link), pipeline tag and tags, and
`instance_prompt` (the trigger word, Hugging Face's field for a LoRA's trigger). Body: what it is, the trigger word
and how to use both files (the family's words), the example media (the comparison or the samples), the training
settings read from the LoRA's own metadata (rank, alpha, steps, epochs, learning rate and schedule, optimizer,
resolution, frames, items per bucket, data fingerprint), loss.png and the license. Never in it: absolute paths,
file names of the data, the token; captions only when the user asked for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import ModuleType

from .. import MUSUBI_COMMIT, __version__
from ..compare import family
from ..compare.locate import Trained

PROJECT = "hvlora"


@dataclass(frozen=True)
class Media:
    """What the card shows: `comparison` (repo paths of the contact sheet and the side-by-side files, with their
    prompt and seed; prompts None when they must not be shown), `samples` (samples.png or None), `loss` (loss.png or
    None), `captions` (captions.txt or None)."""

    sheet: str | None = None
    pairs: list[tuple[str, str | None, int]] = field(default_factory=list)  # (repo path, prompt or None, seed)
    settings: str = ""
    samples: str | None = None
    loss: str | None = None
    captions: str | None = None


def build(trained: Trained, facts: ModuleType, media: Media) -> str:
    """The README.md text: YAML front matter from huggingface_hub's ModelCardData, then the body; parsed once with
    ModelCard to be sure it loads. Raises ValueError if huggingface_hub cannot parse it."""
    from huggingface_hub import ModelCard, ModelCardData

    task = str(trained.value("task", "t2v"))
    trigger = str(trained.value("trigger_word", "")).strip()
    data = ModelCardData(
        **facts.card_data(task, str(trained.value("dit_variant", ""))), instance_prompt=trigger or None
    )
    text = f"---\n{data.to_yaml()}\n---\n\n{body(trained, facts, media, task, trigger)}"
    ModelCard(text)  # raises ValueError for bad front matter
    return text


def body(trained: Trained, facts: ModuleType, media: Media, task: str, trigger: str) -> str:
    name = trained.output_name
    kind = {"t2v": "text-to-video", "i2v": "image-to-video"}.get(task, task)
    parts = [
        f"# {name}",
        "",
        f"A {facts.MODEL_NAME} {kind} LoRA, trained with {PROJECT} {__version__} on "
        f"[musubi-tuner](https://github.com/kohya-ss/musubi-tuner) v0.3.4 (commit `{MUSUBI_COMMIT[:7]}`).",
        "",
        "## Trigger word",
        "",
        f"Put `{trigger}` in your prompts." if trigger else "None: this LoRA was trained without a trigger word.",
        "",
        "## Files and how to use them",
        "",
        _files_line(trained, name),
        facts.usage(name, trigger, task, _base_file(trained)),
        "",
    ]
    parts += _examples(media)
    parts += ["## Training", "", *_settings_table(trained), ""]
    if media.loss:
        parts += [f"![training loss]({media.loss})", ""]
    if media.captions:
        parts += [f"The training captions (trigger word included) are in [{media.captions}]({media.captions}).", ""]
    parts += ["## License", "", facts.license_note(), ""]
    return "\n".join(parts)


def _files_line(trained: Trained, name: str) -> str:
    """The uploaded LoRA files: the musubi file, and the family's conversion when it has one."""
    converter = family.of(trained.metadata).converter
    if converter is None:
        return f"- `{name}.safetensors`: musubi-tuner's format."
    return (
        f"- `{name}.safetensors`: musubi-tuner's format; `{name}{converter.suffix}.safetensors`: "
        f"{converter.label}'s format."
    )


def _base_file(trained: Trained) -> str:
    base = str(trained.value("base_model", ""))
    return f"`{base}`" if base else "the base DiT"


def _examples(media: Media) -> list[str]:
    if media.sheet:
        out = [
            "## Base model vs this LoRA",
            "",
            f"Same prompt, seed and settings ({media.settings}; the same initial noise), the base model on the left, "
            "with this LoRA on the right. Middle frames:",
            "",
            f"![base model | LoRA]({media.sheet})",
            "",
        ]
        for path, prompt, seed in media.pairs:
            label = f'"{prompt}", seed {seed}' if prompt is not None else f"seed {seed}"
            out.append(f"- [{label}]({path})")
        return out + [""]
    if media.samples:
        return ["## Samples during training", "", f"![samples by training step]({media.samples})", ""]
    return []


def _settings_table(trained: Trained) -> list[str]:
    """The training settings as a Markdown table, from the LoRA's metadata (hvlora.* and musubi's ss_*)."""
    md = trained.metadata
    rows = [
        ("task", trained.value("task")),
        ("base model file", trained.value("base_model")),
        (
            "rank / alpha",
            f"{trained.value('rank', md.get('ss_network_dim'))} / {trained.value('alpha', md.get('ss_network_alpha'))}",
        ),
        ("steps", trained.value("steps", md.get("ss_steps"))),
        ("epochs", trained.value("epochs", md.get("ss_epoch"))),
        ("learning rate", trained.value("learning_rate", md.get("ss_learning_rate"))),
        ("LR schedule", trained.value("lr_scheduler", md.get("ss_lr_scheduler"))),
        ("optimizer", md.get("ss_optimizer")),
        ("resolution", trained.value("resolution")),
        ("frames per clip", trained.value("target_frames")),
        ("frame extraction", trained.value("frame_extraction")),
        ("items per bucket (WxHxframes)", _buckets(md.get("hvlora.items_per_bucket"))),
        ("seed", md.get("ss_seed")),
        ("data fingerprint", trained.value("data_fingerprint")),
    ]
    lines = ["| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in rows if v not in (None, "", "None / None")]
    return lines


def _buckets(raw: str | None) -> str | None:
    try:
        return ", ".join(f"{k}: {v}" for k, v in json.loads(raw or "").items()) or None
    except ValueError:
        return None


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
