"""Model families: what differs between the video models this trainer drives through musubi-tuner, and the registry
that `--model_family` picks from (SimpleTuner's term).

A family is one folder, `hvlora/families/<name>/`, whose `__init__.py` defines `FAMILY = Family(...)`, plus one line
in `REGISTRY`. Everything outside the family folders is family-agnostic: config, pipeline, stages, caches and training
ask the run's family (`Settings.family`) for scripts, argv pieces, keys, suffixes and rules, and never compare a
family's name. Families are imported on first use, so this module imports no family (and config can import it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: config imports this registry, so it imports no other hvlora module at run time
    from ..captioning.spec import CaptionModel
    from ..core.config import Settings
    from ..data.frames import FrameRules
    from ..training.musubi import Command, TrainSegment
    from ..training.plan import Launch
    from ..training.presets import MemoryModel, MemoryPlan
    from ..weights.files import TokenizerRepo, WeightFile, WeightFolder

DEFAULT = "hunyuan_video_1_5"
# --model_family value -> the module whose FAMILY it is. Adding a family: its folder, its tests and one line here.
REGISTRY: dict[str, str] = {
    "hunyuan_video_1_5": f"{__name__}.hunyuan_video_1_5",
    "kandinsky5": f"{__name__}.kandinsky5",
}


class LoraCheckError(Exception):
    """A LoRA file is incomplete or malformed (a converter's key check); the message lists what is wrong."""


class Scripts(Protocol):
    """A family's musubi entry points, each returning the `Command` the stage runs (and `--dry_run` prints).

    `weights` maps a component of the family's catalog to its local path; `memory` is the run's memory plan."""

    def cache_latents(
        self, s: Settings, dataset_config: Path, weights: dict[str, Path], memory: MemoryPlan
    ) -> Command: ...

    def cache_text_encoder_outputs(
        self, s: Settings, dataset_config: Path, weights: dict[str, Path], memory: MemoryPlan
    ) -> Command: ...

    def train(
        self,
        s: Settings,
        dataset_config: Path,
        weights: dict[str, Path],
        seg: TrainSegment,
        memory: MemoryPlan,
        launch: Launch,
    ) -> Command: ...

    def minimum_metadata(self, s: Settings) -> dict[str, str]:
        """The ss_* keys musubi writes even with --no_metadata (base model version, network module, dim, alpha), for
        a LoRA file made from a training state."""
        ...

    def read_paths(self, argv: tuple[str, ...] | list[str]) -> dict[str, Path]:
        """flag -> path of every file or folder a training command reads (a joining machine checks it sees them)."""
        ...


@dataclass(frozen=True)
class CacheInputs:
    """What changes the files one cache stage writes besides the item itself (the cache's settings key):
    `settings` (names of Settings fields, e.g. task, resolution), `components` (weight files of the catalog, with
    their revisions; every file of a folder), `knobs` (MemoryPlan fields that change the values; never one that only
    changes how an encoder fits in memory, such as a VAE's tiling) and `derived(s)` (values the family's argv fixes
    or derives from the settings that change the output, e.g. a text encoder's token limit, the prompt template its
    script picks, a resize some variants need; None: nothing). `precision_knob`: a MemoryPlan field that lowers the
    encoder's precision (e.g. fp8_vl): the store is keyed by "fp8"/"bf16", and an fp8 run reuses bf16 outputs of the
    same files. The device always counts."""

    settings: tuple[str, ...]
    components: tuple[str, ...]
    knobs: tuple[str, ...]
    derived: Callable[[Settings], Mapping[str, object]] | None = None
    precision_knob: str | None = None


@dataclass(frozen=True)
class SampleDefaults:
    """Samples during training in the family's own terms (musubi's prompt dict keys; the prompt-file options in
    brackets): `steps` (sample_steps, --s), `guidance` (written under `guidance_key`), `flow_shift`
    (discrete_flow_shift, --fs; None: not written), `video_frames` (frame_count, --f, for video data), `area` (pixels:
    the most common bucket is scaled to about this), `image_tasks` (tasks whose prompts need an init image,
    image_path, --i), `auto_above_preset`: samples are on by default only with a --vram preset above this (GB), and
    `prompt_keys`: the prompt dict keys its sampler reads (a prompt text that begins like one of their options is
    read as that option too: training/prompts.line_problems).
    `latent_frames`: the family's sampler reads frame_count as latent frames (the VAE's frame_step packs frames
    after the first: 17 frames -> 5 with 4), not as video frames; `guidance_key`: the key its sampler reads the
    guidance from ("cfg_scale": --l, "guidance_scale": --g); `parse_name(filename, output_name)`: (kind
    "step"/"epoch", number, prompt index) of a sample file its trainer writes (None: musubi's common trainer names,
    training/plots.parse_sample_name)."""

    steps: int
    guidance: float
    flow_shift: float | None
    video_frames: int
    area: int
    image_tasks: tuple[str, ...]
    auto_above_preset: int
    prompt_keys: tuple[str, ...]
    latent_frames: bool = False
    guidance_key: str = "cfg_scale"
    parse_name: Callable[[str, str | None], tuple[str, int, int] | None] | None = None


@dataclass(frozen=True)
class HintAdvice:
    """Failure advice in the family's words (hints.py picks when each applies): what --fp8 does for the text encoder
    while caching (off, and already on), what --fp8 does for the DiT, and what the smallest --vram preset changes
    while caching latents."""

    text_encoder_fp8: str
    text_encoder_fp8_on: str
    dit_fp8: str
    latents_smallest_preset: str


@dataclass(frozen=True)
class Converter:
    """A conversion of the trained LoRA for another program (e.g. ComfyUI) and its key check.

    `command(src, dst)` is the musubi converter's Command; `verify(src, dst)` checks both files key by key and returns
    {"rank", "musubi_modules", "musubi_keys", "comfyui_modules", "comfyui_keys"}, or raises LoraCheckError. The
    converted file is published as <output_name><suffix>.safetensors."""

    label: str
    suffix: str
    command: Callable[[Path, Path], Command]
    verify: Callable[[Path, Path], dict]


@dataclass(frozen=True)
class LoraCheck:
    """A key check of the trained musubi LoRA alone, for a family without a converter (its file is published as
    musubi writes it). `verify(path, dit_variant)` checks every module the family's LoRA network makes, with its
    shapes, and returns {"rank", "musubi_modules", "musubi_keys"}, or raises LoraCheckError; `loads_in` says which
    programs load that file as it is, and how the check knows (one sentence for the log and summary; "" if none)."""

    verify: Callable[[Path, str], dict]
    loads_in: str = ""


class Generator(Protocol):
    """A family's musubi video generator, for `--generate` (compare/): a module such as
    `families/hunyuan_video_1_5/generate.py`. Inference defaults INFER_STEPS, GUIDANCE_SCALE, FLOW_SHIFT;
    `check_lora(path) -> modules` (raises UserError for a file the generator would not fully apply);
    `default_shape(buckets) -> (width, height, frames)`; `plan_memory(s, gpu_total, shape, task, several)` and
    `estimate(memory, shape, task, several)` and `describe(...) -> lines`; `commands(job, files, lora) ->
    [Command]`: the processes of one run (base or LoRA), in order: one for a generator that reads a prompt file,
    one per prompt line for a generator that takes a single prompt (the prompt file's lines, in order); and readers
    of its log: `saved_videos(text)` (in prompt order), `unused_keys_line(text)`, `needs_cuda(text)` (with
    NEEDS_CUDA_WHY: the sentence saying why it cannot run without a CUDA GPU)."""

    INFER_STEPS: int
    NEEDS_CUDA_WHY: str
    GUIDANCE_SCALE: float
    FLOW_SHIFT: float

    def check_lora(self, path: Path) -> int: ...

    def default_shape(self, buckets: Mapping[tuple[int, int, int], int]) -> tuple[int, int, int]: ...

    def plan_memory(
        self, s: Settings, gpu_total: float | None, shape: tuple[int, int, int], task: str, batch: bool
    ): ...

    def estimate(self, m: Any, shape: tuple[int, int, int], task: str, batch: bool = True): ...

    def describe(self, *args: Any) -> list[str]: ...

    def commands(self, job: Any, files: Mapping[str, Path], lora: Path | None) -> list[Command]: ...

    def saved_videos(self, log_text: str) -> list[Path]: ...

    def unused_keys_line(self, log_text: str) -> str | None: ...

    def needs_cuda(self, log_text: str) -> bool: ...


class HubCard(Protocol):
    """A family's facts for a Hugging Face model card (share/card.py), a module such as
    `families/hunyuan_video_1_5/card.py`: MODEL_NAME; `card_data(task, dit_variant)` (ModelCardData fields:
    base_model (the variant's repo), base_model_relation, license, license_name/link, pipeline_tag, tags);
    `usage(name, trigger, task, dit_file)` (markdown: how to use the files); `license_note()`."""

    MODEL_NAME: str

    def card_data(self, task: str, dit_variant: str) -> dict[str, object]: ...

    def usage(self, name: str, trigger: str, task: str, dit_file: str) -> str: ...

    def license_note(self) -> str: ...


@dataclass(frozen=True)
class Family:
    """Everything that differs between model families; each field is answered by the family's own folder.

    - name: the --model_family value, also the LoRA metadata's family and musubi's --metadata_tags entry;
      title: how messages name it ("HunyuanVideo 1.5").
    - tasks: its --task values; variants: its --dit_variant values; defaults: the values of settings whose default
      is the family's (Option.family_default, e.g. dit_variant).
    - weights_for(task, variant): component -> WeightFile, or WeightFolder (files musubi loads with
      from_pretrained(path)), always with a "dit" WeightFile (the base model the LoRA is for); raises ConfigError
      with the reason for a variant, or a task and variant together, that musubi cannot train (config asks it while
      validating); tokenizers: repos musubi loads by id from the Hugging Face cache.
    - scripts: the musubi entry points' argv (Scripts); memory: presets, knobs, flags and the estimate (MemoryModel),
      variant_memory: a variant's own where the variants differ in size (memory_for picks);
      frames: musubi's bucket, frame and cache-name rules for its architecture (FrameRules).
    - latent_cache, text_encoder_cache: what keys each cache store (CacheInputs).
    - text_encoder_max_tokens: caption tokens its text encoder keeps (longer captions are warned about).
    - still_images_refused: task -> (why, fix) when musubi cannot train still images with it (they are left out).
    - samples: sample defaults; hints: failure advice; converter: its LoRA conversion, or None (the musubi file only);
      lora_check: the key check of the musubi file when there is no converter (LoraCheck), or None.
    - help: option name -> the family's sentence added to that option's --help and train.toml comment.
    - generator: its musubi video generator for --generate (Generator), or None; card: its model-card facts for
      --push_to_hub (HubCard), or None; captioner: the Qwen2.5-VL among its weights that writes missing captions
      (--missing_caption generate, --caption_only; CaptionModel), or None.
    """

    name: str
    title: str
    tasks: tuple[str, ...]
    variants: tuple[str, ...]
    defaults: Mapping[str, Any]
    weights_for: Callable[[str, str], dict[str, WeightFile | WeightFolder]]
    tokenizers: tuple[TokenizerRepo, ...]
    scripts: Scripts
    memory: MemoryModel
    frames: FrameRules
    latent_cache: CacheInputs
    text_encoder_cache: CacheInputs
    text_encoder_max_tokens: int
    samples: SampleDefaults
    hints: HintAdvice
    converter: Converter | None
    still_images_refused: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    help: Mapping[str, str] = field(default_factory=dict)
    variant_memory: Mapping[str, MemoryModel] = field(default_factory=dict)
    generator: Generator | None = None
    card: HubCard | None = None
    lora_check: LoraCheck | None = None
    captioner: CaptionModel | None = None

    def memory_for(self, variant: str | None) -> MemoryModel:
        """The memory model of a DiT variant: its own in variant_memory (e.g. a 2B and a 19B model of one family),
        else the family's."""
        return self.variant_memory.get(variant, self.memory)

    def memory_models(self) -> list[MemoryModel]:
        """Every memory model of the family (for the --vram choices)."""
        return [self.memory, *self.variant_memory.values()]


_loaded: dict[str, Family] = {}


def names() -> tuple[str, ...]:
    """The registered --model_family values, the default first."""
    return tuple(REGISTRY)


def get(name: str) -> Family:
    """The registered family `name` (imported on first use). Raises KeyError for a name not in REGISTRY and
    RuntimeError when the module's FAMILY is registered under another name."""
    if name not in _loaded:
        family = importlib.import_module(REGISTRY[name]).FAMILY
        if family.name != name:
            raise RuntimeError(f"{REGISTRY[name]}.FAMILY is named {family.name!r}, registered as {name!r}")
        _loaded[name] = family
    return _loaded[name]


def all_families() -> list[Family]:
    """Every registered family, in registry order."""
    return [get(n) for n in names()]
