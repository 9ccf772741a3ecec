"""The run's settings as one typed object: built-in defaults < `train.toml` < command-line flags.

Every setting is declared once, in `OPTIONS`: its type, default, choices and help text. The CLI (`cli.py`), the
commented `train.toml` (`render_toml`) and the validation below all derive from that table, so a flag, its TOML key
and its documentation cannot drift apart. Names follow musubi-tuner's flags where one exists (`network_dim` is called
`rank` here, as in the system we replace; `network_alpha`, `target_frames`, `frame_extraction`, `blocks_to_swap`).
What differs between model families (their tasks, variants, limits and help sentences) is asked of the registry
(hvlora/families): `--model_family` picks one, `Settings.family` is it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from .. import families
from .errors import ConfigError

OPTIMIZERS = ("adamw8bit", "adamw", "AdaFactor")
FRAME_EXTRACTIONS = ("head", "chunk", "slide", "uniform", "full")
SAVE_PRECISIONS = ("bf16", "fp16", "fp32")
MISSING_CAPTION = ("error", "trigger", "skip", "generate")
DEVICES = ("cuda", "cpu")
RANK_RANGE = (4, 128)
LR_SCHEDULERS = ("constant", "constant_with_warmup", "cosine", "linear")


def parse_resolution(value: Any) -> tuple[int, int]:
    """'960x544' or [960, 544] -> (width, height) in pixels. Raises ValueError."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
        if not m:
            raise ValueError(f"{value!r} is not WIDTHxHEIGHT, e.g. 960x544")
        return int(m.group(1)), int(m.group(2))
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{value!r} is not WIDTHxHEIGHT, e.g. 960x544")


def parse_frames(value: Any) -> tuple[int, ...]:
    """'1,13,25' or [1, 13, 25] -> (1, 13, 25): in any order, repeats counted once (documented in the help).
    Raises ValueError for an empty entry ('1,,5') or anything but whole numbers."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.strip().split(",")]
        if any(not p for p in parts):
            raise ValueError(
                f"{value!r} has an empty entry; give frame counts separated by single commas, e.g. 1,13,25"
            )
        if not all(re.fullmatch(r"\d+", p) for p in parts):
            raise ValueError(f"{value!r} is not a comma-separated list of frame counts, e.g. 1,13,25")
        nums = [int(p) for p in parts]
    elif isinstance(value, (list, tuple)) and value and all(_is_int(v) for v in value):
        nums = [int(v) for v in value]
    else:
        raise ValueError(f"{value!r} is not a list of frame counts, e.g. [1, 13, 25]")
    return tuple(sorted(set(nums)))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _as_int(v: Any) -> int:
    if _is_int(v):
        return v
    if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v):
        return int(v)
    raise ValueError(f"{v!r} is not a whole number")


def _as_float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is not a number")
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    raise ValueError(f"{v!r} is not a number")


def parse_revision(value: Any) -> dict[str, str]:
    """'main' (every repo) or 'org/repo=REV,org/repo2=REV2' -> {repo or '*': revision}. Raises ValueError."""
    text = _as_str(value).strip()
    if not text:
        raise ValueError("is empty; use a branch, tag or commit, e.g. main")
    if "=" not in text:
        return {"*": text}
    out = {}
    for part in text.split(","):
        repo, sep, rev = part.strip().partition("=")
        if not sep or not re.fullmatch(r"[\w.-]+/[\w.-]+", repo.strip()) or not rev.strip():
            raise ValueError(f"{part!r} is not REPO_ID=REVISION, e.g. org/model=main")
        out[repo.strip()] = rev.strip()
    return out


def parse_seeds(value: Any) -> tuple[int, ...]:
    """'42,7' or [42, 7] -> (42, 7): seeds in order, without repeats, each 0..2^32-1. Raises ValueError."""
    parts = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else None
    if not parts:
        raise ValueError(f"{value!r} is not a comma-separated list of seeds, e.g. 42,7")
    seeds = [_as_int(p) for p in parts]
    if not all(0 <= x < 2**32 for x in seeds):
        raise ValueError(f"{value!r}: each seed must be 0..{2**32 - 1}")
    return tuple(dict.fromkeys(seeds))


def _as_prompts(v: Any) -> tuple[str, ...]:
    """Repeated --prompt values (argparse's list) -> a tuple of prompts."""
    values = v if isinstance(v, (list, tuple)) else [v]
    return tuple(_as_str(x) for x in values)


def _as_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError(f"{v!r} is not true or false")


def parse_num_gpus(v: Any) -> int | str:
    """'all' or a whole number >= 1 (the GPUs to train on: one accelerate process each). Raises ValueError."""
    if isinstance(v, str) and v.strip().lower() == "all":
        return "all"
    n = _as_int(v)
    if n < 1:
        raise ValueError(f"{v!r} is not 'all' or a number of GPUs >= 1")
    return n


def task_choices() -> tuple[str, ...]:
    """Every registered family's --task values (each family checks its own in validate)."""
    return tuple(dict.fromkeys(t for f in families.all_families() for t in f.tasks))


def vram_choices() -> tuple[str, ...]:
    """'auto' and every registered family's preset sizes in GB (each family refuses a size it has no preset for)."""
    sizes = sorted({p for f in families.all_families() for m in f.memory_models() for p in m.presets})
    return ("auto", *map(str, sizes))


def parse_vram(v: Any) -> str:
    """'auto' or one of the preset sizes in GB (musubi knobs for that much VRAM, see presets.py)."""
    text = str(v).strip().lower() if isinstance(v, (str, int)) and not isinstance(v, bool) else None
    if text not in vram_choices():
        raise ValueError(f"{v!r} is not one of {', '.join(vram_choices())}")
    return text


def _as_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    raise ValueError(f"{v!r} is not a string")


@dataclass(frozen=True)
class Option:
    """One setting: its key (= flag name without `--`), parser, default, allowed values and help text.

    `choices` and `metavar` may be functions, asked when used (the registered families decide them);
    `family_default`: the default is the chosen family's (Family.defaults), so `default` is None."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    choices: tuple | Callable[[], tuple] | None = None
    metavar: str | Callable[[], str] | None = None
    is_path: bool = False
    toml: bool = True  # False: command line only (e.g. dry_run is an action, not a setting to keep in a file)
    family_default: bool = False
    repeat: bool = False  # the flag may be given several times (argparse "append"); parse gets the list

    def allowed(self) -> tuple | None:
        """The allowed values (None: any the parser accepts)."""
        return self.choices() if callable(self.choices) else self.choices

    def shown_metavar(self) -> str | None:
        return self.metavar() if callable(self.metavar) else self.metavar


OPTIONS: tuple[Option, ...] = (
    Option(
        "input_zip",
        _as_str,
        None,
        "The dataset ZIP (images and videos with same-named .txt captions). "
        "Unset: the only .zip in data_dir. A bare file name is also looked up in data_dir.",
        metavar="PATH",
        is_path=True,
    ),
    Option(
        "input_dir",
        _as_str,
        None,
        "A folder with the same layout as the zip, used instead of a zip (never modified).",
        metavar="DIR",
        is_path=True,
    ),
    Option(
        "model_family",
        _as_str,
        families.DEFAULT,
        "The model family to train (SimpleTuner's term): which model, its weights and musubi-tuner's scripts for it.",
        choices=families.names,
    ),
    Option(
        "task",
        _as_str,
        "t2v",
        "t2v trains text-to-video; i2v trains image-to-video.",
        choices=task_choices,
    ),
    Option(
        "trigger_word",
        _as_str,
        "",
        "Prepended to every caption as 'trigger, caption' unless the caption "
        "already contains it. Empty: captions are used as they are.",
        metavar="WORD",
    ),
    Option("epochs", _as_int, 10, "Number of training epochs (musubi --max_train_epochs).", metavar="N"),
    Option(
        "max_train_steps",
        _as_int,
        -1,
        "Train this many steps instead of epochs (musubi --max_train_steps). -1: use epochs.",
        metavar="N",
    ),
    Option("rank", _as_int, 32, f"LoRA rank (musubi --network_dim), {RANK_RANGE[0]} to {RANK_RANGE[1]}.", metavar="N"),
    Option(
        "network_alpha",
        _as_float,
        None,
        "LoRA alpha; the update is scaled by alpha/rank. Unset: equal to rank (scale 1).",
        metavar="ALPHA",
    ),
    Option("learning_rate", _as_float, 1e-4, "Learning rate (musubi --learning_rate).", metavar="LR"),
    Option(
        "lr_scheduler",
        _as_str,
        "constant",
        "Learning-rate schedule over the whole run. Resuming keeps it on the same curve (the schedule is given to "
        "musubi with the run's total steps, not the remaining ones).",
        choices=LR_SCHEDULERS,
    ),
    Option(
        "lr_warmup_steps",
        _as_int,
        0,
        "Steps of linear warm-up at the start (constant_with_warmup, cosine, linear).",
        metavar="N",
    ),
    Option(
        "optimizer",
        _as_str,
        "adamw8bit",
        "Optimizer: adamw8bit (bitsandbytes, least memory), adamw, or AdaFactor (with a fixed learning rate).",
        choices=OPTIMIZERS,
    ),
    Option(
        "dit_variant",
        _as_str,
        None,
        "Which base DiT of the model family to train. Unset: the family's default.",
        metavar="VARIANT",
        family_default=True,
    ),
    Option(
        "vram",
        parse_vram,
        "auto",
        "Memory preset: auto reads the GPU's memory (the smallest GPU used) before anything is downloaded; a number "
        "picks the preset for that many GB. A preset sets only the memory settings below that you do not set.",
        metavar=lambda: "|".join(vram_choices()),
    ),
    Option(
        "fp8",
        _as_bool,
        None,
        "Store the DiT in fp8 (musubi --fp8_base --fp8_scaled); also the text encoder while caching (--fp8_vl) "
        "unless fp8_vl is set. Unset: the --vram preset decides.",
    ),
    Option(
        "blocks_to_swap",
        _as_int,
        None,
        "Offload this many of the DiT's blocks to CPU memory (musubi --blocks_to_swap): less VRAM, slower steps, "
        "host RAM per GPU. Unset: the --vram preset decides.",
        metavar="N",
    ),
    Option(
        "block_swap_h2d_only",
        _as_bool,
        None,
        "Block swap copies host-to-device only (musubi --block_swap_h2d_only; LoRA training, faster). Unset: preset.",
    ),
    Option(
        "gradient_checkpointing_cpu_offload",
        _as_bool,
        None,
        "Keep the checkpointed activations in host RAM (musubi --gradient_checkpointing_cpu_offload); turns a "
        "preset's --block_swap_h2d_only off (musubi v0.3.4 stops at the first step with both). Unset: preset.",
    ),
    Option(
        "fp8_vl",
        _as_bool,
        None,
        "The vision-language text encoder in fp8 while caching captions (musubi --fp8_vl). Unset: preset (or --fp8).",
    ),
    Option(
        "vae_sample_size",
        _as_int,
        None,
        "VAE tile size for the latent cache (musubi --vae_sample_size; 0 = no tiling). Unset: preset.",
        metavar="N",
    ),
    Option(
        "vae_enable_patch_conv",
        _as_bool,
        None,
        "Patched VAE convolutions for the latent cache: less VRAM (musubi --vae_enable_patch_conv). Unset: preset.",
    ),
    Option(
        "text_encoder_cpu",
        _as_bool,
        None,
        "Encode the captions on the CPU while caching (the text-encoder cache stage's --device cpu): no VRAM for "
        "the text encoder, slower, and the text encoder in host RAM. Unset: preset.",
    ),
    Option(
        "resolution",
        parse_resolution,
        None,
        "Training resolution WIDTHxHEIGHT; media are bucketed by aspect ratio around this area. Unset: the "
        "family's (the area its base model was trained at).",
        metavar="WxH",
        family_default=True,
    ),
    Option(
        "target_frames",
        parse_frames,
        (1, 13, 25),
        "Clip lengths (frames) cut from each video, comma-separated. In any order; a length given twice counts once.",
        metavar="N,N,...",
    ),
    Option(
        "frame_extraction",
        _as_str,
        "head",
        "How clips are cut from videos (musubi frame_extraction): "
        "head = first frames, chunk = back-to-back, slide = sliding window, uniform = evenly spaced, "
        "full = whole video.",
        choices=FRAME_EXTRACTIONS,
    ),
    Option(
        "frame_stride", _as_int, 1, "slide: frames between the starts of two clips (musubi frame_stride).", metavar="N"
    ),
    Option(
        "frame_sample", _as_int, 1, "uniform: clips per video and target length (musubi frame_sample).", metavar="N"
    ),
    Option(
        "max_frames", _as_int, 129, "full: at most this many frames per video, 4n+1 (musubi max_frames).", metavar="N"
    ),
    Option(
        "missing_caption",
        _as_str,
        "error",
        "Media without a caption: error stops the run; trigger "
        "captions them with the trigger word; skip leaves them out; generate captions them with the Qwen2.5-VL "
        "text encoder (into output/captions/<dataset>/, where they can be reviewed and edited). Either way they are "
        "reported.",
        choices=MISSING_CAPTION,
    ),
    Option(
        "caption_prompt",
        _as_str,
        None,
        "The instruction Qwen2.5-VL gets for every generated caption (images and videos). Unset: the family's "
        "default, written in the shape of its own prompts.",
        metavar="TEXT",
    ),
    Option(
        "caption_prompt_file",
        _as_str,
        None,
        "A UTF-8 text file holding the caption instruction (instead of caption_prompt).",
        metavar="FILE",
        is_path=True,
    ),
    Option(
        "caption_max_tokens",
        _as_int,
        256,
        "Generated captions are at most this many tokens (a caption cut there ends at its last full sentence).",
        metavar="N",
    ),
    Option(
        "recaption",
        _as_bool,
        False,
        "Generate again every generated caption the user has not edited (with --missing_caption generate or "
        "--caption_only); edited ones are kept.",
        toml=False,
    ),
    Option("strict", _as_bool, False, "Treat every data warning as an error (the run stops before any weights load)."),
    Option(
        "max_unpacked_gb",
        _as_float,
        100.0,
        "Refuse a zip that would unpack to more than this many GB (zip-bomb guard).",
        metavar="GB",
    ),
    Option("num_repeats", _as_int, 1, "How often each item is repeated per epoch.", metavar="N"),
    Option("output_name", _as_str, "lora", "Base name of the LoRA files and of the run folder.", metavar="NAME"),
    Option("seed", _as_int, 42, "Random seed for training (the same on every GPU).", metavar="N"),
    Option(
        "num_gpus",
        parse_num_gpus,
        1,
        "GPUs to train on (accelerate launch --multi_gpu --num_processes N), or all. The cache stages run once.",
        metavar="N|all",
    ),
    Option("num_machines", _as_int, 1, "Machines of a multi-node run (accelerate --num_machines).", metavar="N"),
    Option("machine_rank", _as_int, 0, "This machine's rank in a multi-node run, 0 = main (accelerate).", metavar="N"),
    Option(
        "main_process_ip",
        _as_str,
        None,
        "Address of machine 0 in a multi-node run (accelerate --main_process_ip).",
        metavar="IP",
    ),
    Option("main_process_port", _as_int, 29500, "Port on machine 0 (accelerate --main_process_port).", metavar="PORT"),
    Option(
        "max_data_loader_n_workers",
        _as_int,
        2,
        "DataLoader worker processes per GPU (musubi --max_data_loader_n_workers); each needs shared memory.",
        metavar="N",
    ),
    Option(
        "save_every_n_epochs",
        _as_int,
        1,
        "Save a checkpoint and the training state every N epochs (0: never by epoch).",
        metavar="N",
    ),
    Option(
        "save_every_n_steps",
        _as_int,
        250,
        "Also save a checkpoint and the training state every N steps (0: never by step), so that an interruption "
        "costs at most N steps.",
        metavar="N",
    ),
    Option("keep_last_n_checkpoints", _as_int, 3, "Checkpoints kept (by true step; older ones deleted).", metavar="N"),
    Option("keep_last_n_states", _as_int, 2, "Training states kept (each is several GB).", metavar="N"),
    Option(
        "save_precision",
        _as_str,
        "bf16",
        "Precision of the saved LoRA (musubi --save_precision); bf16 is half the size of fp32.",
        choices=SAVE_PRECISIONS,
    ),
    Option(
        "sample_prompts",
        _as_str,
        None,
        "Prompts for samples during training, musubi's prompt-file format (one per line, --w --h --f --s --fs --l "
        "--d --n --i). Unset: the trigger word and two of the dataset's captions.",
        metavar="FILE",
        is_path=True,
    ),
    Option(
        "sample_every_n_epochs",
        _as_int,
        None,
        "Make samples every N epochs (0: never). Unset: every save_every_n_epochs with a --vram preset big enough "
        "for the family's samples, else off (sampling needs VRAM and time).",
        metavar="N",
    ),
    Option("sample_every_n_steps", _as_int, 0, "Also make samples every N steps (0: never).", metavar="N"),
    Option("sample_at_first", _as_bool, False, "Make samples before training starts: a baseline to compare with."),
    Option(
        "skip_download",
        _as_bool,
        False,
        "Download nothing; check that every model file is already in models_dir and the HF cache.",
    ),
    Option(
        "skip_cache",
        _as_bool,
        False,
        "Do not run the cache stages: every item must already be cached (fails naming the missing ones).",
    ),
    Option(
        "recache",
        _as_bool,
        False,
        "Encode every latent and caption again (normally only new or changed items are encoded).",
    ),
    Option(
        "revision",
        parse_revision,
        {"*": "main"},
        "Hub revision to download: a branch, tag or commit for "
        "every repo, or REPO_ID=REVISION[,REPO_ID=REVISION] per repo. The commit resolved is recorded in "
        "models/manifest.json.",
        metavar="REV",
    ),
    Option(
        "offline",
        _as_bool,
        False,
        "No network at all: every model file must already be in models_dir (and "
        "pass the quick check against models/manifest.json) and the tokenizers in the HF cache.",
    ),
    Option(
        "verify_weights",
        _as_bool,
        False,
        "Re-hash every model file against its recorded sha256 instead of "
        "the quick size-and-time check (minutes for ~40 GB).",
    ),
    Option("data_dir", _as_str, "data", "Where the dataset ZIP is found.", metavar="DIR", is_path=True),
    Option("models_dir", _as_str, "models", "Where model weights are downloaded to.", metavar="DIR", is_path=True),
    Option(
        "output_dir",
        _as_str,
        "output",
        "Where LoRA files, run folders and caches are written.",
        metavar="DIR",
        is_path=True,
    ),
    Option(
        "device",
        _as_str,
        "cuda",
        "cuda trains on the GPU. cpu is for smoke runs on machines without a GPU (very slow).",
        choices=DEVICES,
    ),
    Option(
        "download_only",
        _as_bool,
        False,
        "Only fetch and verify the model files the task and DiT variant "
        "need, then stop (to pre-fetch before a training session).",
        toml=False,
    ),
    Option(
        "caption_only",
        _as_bool,
        False,
        "Only caption the media without a caption (downloading just the family's Qwen2.5-VL), write the captions into "
        "output/captions/<dataset>/ for review, then stop.",
        toml=False,
    ),
    Option(
        "check_data",
        _as_bool,
        False,
        "Only check the data: print the report, write dataset_report.json into a new run folder "
        "(output_dir/runs/NAME-TIME/), exit 0 when it is usable and 2 when not. A zip's media are unpacked into a "
        "temporary folder in output_dir that is removed. Nothing is downloaded or trained.",
        toml=False,
    ),
    Option(
        "dry_run",
        _as_bool,
        False,
        "Check the data, lay it out and write the dataset TOML in a new run folder, then print the commands and "
        "write plan.json without downloading or starting musubi. A zip's media are unpacked into "
        "output_dir/cache/media/ (as large as the zip's media; a real run reuses them).",
        toml=False,
    ),
    Option(
        "new_run",
        _as_bool,
        False,
        "Start a new run even if an unfinished run of the same data and settings could be continued.",
        toml=False,
    ),
    Option(
        "resume",
        _as_str,
        None,
        "Continue this run folder (output/runs/NAME-TIME), also a finished one with a higher --max_train_steps "
        "or --epochs.",
        metavar="RUN_DIR",
        is_path=True,
        toml=False,
    ),
    # After training: see what the LoRA does (--generate) and share it (--push_to_hub). The inference settings use
    # musubi's hv_1_5_generate_video names; unset ones come from the run and the model family (README: Try your LoRA).
    Option(
        "generate",
        _as_bool,
        False,
        "Render every prompt with the base model and with the LoRA of a finished run (same seed and settings), "
        "side by side, into RUN/compare/. Trains nothing.",
        toml=False,
    ),
    Option(
        "lora",
        _as_str,
        None,
        "--generate: the musubi-format LoRA file to compare (a checkpoint, or a file from elsewhere) instead of a "
        "run's final LoRA.",
        metavar="FILE",
        is_path=True,
        toml=False,
    ),
    Option(
        "prompt",
        _as_prompts,
        (),
        "--generate: a prompt (repeat the flag for several). Unset: --sample_prompts, else the run's sample prompts "
        "(the trigger word and two captions of its data).",
        metavar="TEXT",
        toml=False,
        repeat=True,
    ),
    Option(
        "seeds",
        parse_seeds,
        None,
        "--generate: seeds, comma-separated; every prompt is rendered once per seed. Unset: --seed.",
        metavar="N,N",
    ),
    Option(
        "video_size",
        parse_resolution,
        None,
        "--generate: WIDTHxHEIGHT (multiples of 16). Unset: the run's most common bucket at about 480p.",
        metavar="WxH",
    ),
    Option(
        "video_length",
        _as_int,
        None,
        "--generate: frames per video, 4n+1. Unset: 1 for image-only data, else up to 25 (as the samples).",
        metavar="N",
    ),
    Option("infer_steps", _as_int, None, "--generate: denoising steps. Unset: the model's default.", metavar="N"),
    Option(
        "guidance_scale",
        _as_float,
        None,
        "--generate: classifier-free guidance. Unset: the model's default.",
        metavar="G",
    ),
    Option("flow_shift", _as_float, None, "--generate: flow-matching shift. Unset: the model's default.", metavar="S"),
    Option("lora_multiplier", _as_float, 1.0, "--generate: strength of the LoRA in its run.", metavar="M"),
    Option(
        "push_to_hub",
        _as_str,
        None,
        "Upload the LoRA files, loss.png, the comparison and a model card to this Hugging Face repo (created if "
        "missing; needs HF_TOKEN) after training, after --generate, or for the finished run given by --resume.",
        metavar="REPO_ID",
        toml=False,
    ),
    Option(
        "hub_public",
        _as_bool,
        False,
        "--push_to_hub: create the repo public (default: private).",
        toml=False,
    ),
    Option(
        "hub_include_captions",
        _as_bool,
        False,
        "--push_to_hub: also upload the training captions (and a comparison whose prompts are captions).",
        toml=False,
    ),
)
OPTION_BY_NAME = {o.name: o for o in OPTIONS}
COMMAND_LINE_ONLY = tuple(o.name for o in OPTIONS if not o.toml)  # actions of one command, not keys of train.toml


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one run. Paths are absolute. See `OPTIONS` for each field's meaning."""

    input_zip: Path | None
    input_dir: Path | None
    model_family: str
    task: str
    trigger_word: str
    epochs: int
    max_train_steps: int
    rank: int
    network_alpha: float | None
    learning_rate: float
    lr_scheduler: str
    lr_warmup_steps: int
    optimizer: str
    dit_variant: str
    vram: str
    fp8: bool | None
    blocks_to_swap: int | None
    block_swap_h2d_only: bool | None
    gradient_checkpointing_cpu_offload: bool | None
    fp8_vl: bool | None
    vae_sample_size: int | None
    vae_enable_patch_conv: bool | None
    text_encoder_cpu: bool | None
    resolution: tuple[int, int]
    target_frames: tuple[int, ...]
    frame_extraction: str
    frame_stride: int
    frame_sample: int
    max_frames: int
    missing_caption: str
    caption_prompt: str | None
    caption_prompt_file: Path | None
    caption_max_tokens: int
    recaption: bool
    strict: bool
    max_unpacked_gb: float
    num_repeats: int
    output_name: str
    seed: int
    num_gpus: int | str
    num_machines: int
    machine_rank: int
    main_process_ip: str | None
    main_process_port: int
    max_data_loader_n_workers: int
    save_every_n_epochs: int
    save_every_n_steps: int
    keep_last_n_checkpoints: int
    keep_last_n_states: int
    save_precision: str
    sample_prompts: Path | None
    sample_every_n_epochs: int | None
    sample_every_n_steps: int
    sample_at_first: bool
    skip_download: bool
    skip_cache: bool
    recache: bool
    revision: dict[str, str]
    offline: bool
    verify_weights: bool
    data_dir: Path
    models_dir: Path
    output_dir: Path
    device: str
    download_only: bool
    caption_only: bool
    check_data: bool
    dry_run: bool
    new_run: bool
    resume: Path | None
    generate: bool
    lora: Path | None
    prompt: tuple[str, ...]
    seeds: tuple[int, ...] | None
    video_size: tuple[int, int] | None
    video_length: int | None
    infer_steps: int | None
    guidance_scale: float | None
    flow_shift: float | None
    lora_multiplier: float
    push_to_hub: str | None
    hub_public: bool
    hub_include_captions: bool

    @property
    def family(self) -> families.Family:
        """The model family of this run (what its weights, scripts, rules and defaults are)."""
        return families.get(self.model_family)

    def revision_for(self, repo_id: str) -> str:
        """The revision to download from `repo_id` (per-repo value, else the general one, else main)."""
        return self.revision.get(repo_id, self.revision.get("*", "main"))

    @property
    def generates_captions(self) -> bool:
        """Captions are generated for media without one (--missing_caption generate or --caption_only)."""
        return self.missing_caption == "generate" or self.caption_only

    @property
    def alpha(self) -> float:
        """network_alpha, or rank when unset."""
        return float(self.rank) if self.network_alpha is None else self.network_alpha

    def to_toml_dict(self) -> dict[str, Any]:
        """The settings as TOML-ready values (paths and tuples as strings/lists), loadable again with --config:
        unset values and command-line-only actions (COMMAND_LINE_ONLY) are left out."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None or not OPTION_BY_NAME[f.name].toml:
                continue
            if isinstance(v, Path):
                v = str(v)
            elif isinstance(v, tuple):
                v = list(v)
            elif f.name == "revision":
                v = format_revision(v)
            out[f.name] = v
        return out


assert [f.name for f in dataclasses.fields(Settings)] == [o.name for o in OPTIONS], "Settings and OPTIONS differ"


def format_revision(rev: dict[str, str]) -> str:
    """The inverse of parse_revision."""
    return rev["*"] if list(rev) == ["*"] else ",".join(f"{k}={v}" for k, v in rev.items())


def read_toml(path: Path) -> dict[str, Any]:
    """Read a settings file. Raises ConfigError naming the file for bad TOML and for unknown keys."""
    try:
        # Windows Notepad (before 2019) saves UTF-8 with a byte-order mark, which TOML does not allow: accepted
        data = tomllib.loads(path.read_bytes().decode("utf-8").removeprefix("\ufeff"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: pass an existing file with --config") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder: pass a .toml file with --config") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): save it as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror or e}") from None
    unknown = [k for k in data if k not in OPTION_BY_NAME or not OPTION_BY_NAME[k].toml]
    if unknown:
        known = ", ".join(o.name for o in OPTIONS if o.toml)
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}. Known keys: {known}")
    return data


def build_settings(
    file_values: dict[str, Any], file_dir: Path, cli_values: dict[str, Any], cwd: Path | None = None
) -> Settings:
    """Merge built-in defaults < file values < CLI values, parse and validate them.

    Relative paths from the file are taken relative to `file_dir`, those from the command line relative to `cwd`.
    Raises ConfigError listing every problem found, each with the setting's name and what to do.
    """
    cwd = cwd or Path.cwd()
    values: dict[str, Any] = {}
    problems: list[str] = []
    for opt in OPTIONS:
        if opt.name in cli_values:
            raw, base, origin = cli_values[opt.name], cwd, "--" + opt.name
        elif opt.name in file_values:
            raw, base, origin = file_values[opt.name], file_dir, opt.name
        else:
            values[opt.name] = _default_value(opt, file_dir)
            continue
        try:
            v = opt.parse(raw)
        except ValueError as e:
            problems.append(f"{origin}: {e}")
            continue
        allowed = opt.allowed()
        if allowed and v not in allowed:
            problems.append(f"{origin}: {v!r} is not one of {', '.join(allowed)}")
            continue
        if opt.is_path and v is not None:
            v = Path(os.path.expanduser(v))
            v = v if v.is_absolute() else (base / v)
            v = Path(os.path.abspath(v))
        values[opt.name] = v
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))
    _look_up_bare_zip_name(values, cli_values.get("input_zip", file_values.get("input_zip")))
    family = families.get(values["model_family"])
    for opt in OPTIONS:
        if opt.family_default and values[opt.name] is None:
            values[opt.name] = family.defaults[opt.name]
    settings = Settings(**values)
    validate(settings)
    return settings


def _look_up_bare_zip_name(values: dict[str, Any], raw: Any) -> None:
    """A bare file name for input_zip (`--input_zip mydata.zip`) that is not in the current folder (or the config
    file's) is looked up in data_dir, where the zip is expected."""
    if not isinstance(raw, str) or "/" in raw or os.sep in raw or values["input_zip"].is_file():
        return
    in_data_dir = Path(os.path.abspath(values["data_dir"] / raw))
    if in_data_dir.is_file():
        values["input_zip"] = in_data_dir


def _default_value(opt: Option, base: Path) -> Any:
    if opt.is_path and opt.default is not None:
        return Path(os.path.abspath(base / opt.default))
    return opt.default


# Whole-number settings: (min, max). The maxima are far beyond any real run; they keep absurd values (which pass
# argparse and TOML) from failing hours later in musubi, numpy or the file system.
INT_RANGES = {
    "epochs": (1, 100_000),
    "num_repeats": (1, 10_000),
    "frame_stride": (1, 10_000),
    "frame_sample": (1, 10_000),
    "max_frames": (1, 10_000),
    "save_every_n_epochs": (0, 100_000),
    "save_every_n_steps": (0, 100_000_000),
    "keep_last_n_checkpoints": (1, 1000),
    "keep_last_n_states": (1, 100),
    "lr_warmup_steps": (0, 100_000_000),
    "sample_every_n_steps": (0, 100_000_000),
    "num_machines": (1, 1024),
    "main_process_port": (1, 65535),
    "max_data_loader_n_workers": (0, 64),
    # musubi's set_seed seeds numpy, which accepts 0 <= seed < 2**32 only (ValueError at training start otherwise)
    "seed": (0, 2**32 - 1),
    "caption_max_tokens": (16, 1024),  # the text encoder keeps 1024 tokens of a caption
}
MAX_TRAIN_STEPS = 100_000_000
MAX_RESOLUTION = 4096  # per side; video DiTs train at 1280x720 at most, 4096 leaves room for any sane choice
MAX_TARGET_FRAMES = 1025  # about 43 s at 24 fps, far beyond what fits any GPU
MAX_UNPACKED_GB = 1_000_000.0  # 1 PB: a finite bound, so the byte limit stays an ordinary integer
MAX_LEARNING_RATE = 1.0


def validate(s: Settings) -> None:
    """Check ranges and combinations, the family's limits among them. Raises ConfigError listing every problem with
    its valid range or fix."""
    family = s.family
    memory = family.memory_for(s.dit_variant)
    p: list[str] = []
    p += _range_problems(s)
    if not RANK_RANGE[0] <= s.rank <= RANK_RANGE[1]:
        p.append(f"rank: {s.rank} is outside {RANK_RANGE[0]}..{RANK_RANGE[1]}; 16 or 32 suit most LoRAs")
    if s.network_alpha is not None and not (math.isfinite(s.network_alpha) and s.network_alpha > 0):
        p.append(f"network_alpha: {s.network_alpha} must be a finite number > 0 (leave it unset for alpha = rank)")
    if s.max_train_steps == 0 or not -1 <= s.max_train_steps <= MAX_TRAIN_STEPS:
        p.append(f"max_train_steps: {s.max_train_steps} must be -1 (use epochs) or 1..{MAX_TRAIN_STEPS}")
    if not (math.isfinite(s.learning_rate) and 0 < s.learning_rate <= MAX_LEARNING_RATE):
        p.append(f"learning_rate: {s.learning_rate} must be a finite number in (0, {MAX_LEARNING_RATE:g}], e.g. 1e-4")
    most = memory.max_blocks_to_swap
    if s.blocks_to_swap is not None and not 0 <= s.blocks_to_swap <= most:
        p.append(f"blocks_to_swap: {s.blocks_to_swap} is outside 0..{most}")
    least = memory.vae_min_tile
    if s.vae_sample_size is not None and not (s.vae_sample_size == 0 or least <= s.vae_sample_size <= 2048):
        p.append(f"vae_sample_size: {s.vae_sample_size} must be 0 (no tiling) or {least}..2048, e.g. 256")
    if s.lr_warmup_steps and s.lr_scheduler == "constant":
        p.append("lr_warmup_steps: the constant schedule has no warm-up; use --lr_scheduler constant_with_warmup")
    if s.sample_every_n_epochs is not None and not 0 <= s.sample_every_n_epochs <= 100_000:
        p.append(f"sample_every_n_epochs: {s.sample_every_n_epochs} is outside the valid range 0..100000")
    p += _launch_problems(s)
    if s.new_run and s.resume is not None:
        p.append("new_run and resume together: choose one")
    p += _resolution_problems(s.resolution, family)
    p += _frames_problems(s.target_frames, family.frames.frame_step)
    k = family.frames.frame_step
    if s.max_frames >= 1 and (s.max_frames - 1) % k:
        cut = (s.max_frames - 1) // k * k + 1
        p.append(
            f"max_frames: {s.max_frames} is not of the form {k}n+1 (with --frame_extraction full musubi would cut "
            f"each video to {cut} frame{'' if cut == 1 else 's'}); pass {nearest_frames(s.max_frames, k)} (the "
            "default is 129)"
        )
    if not (math.isfinite(s.max_unpacked_gb) and 0 < s.max_unpacked_gb <= MAX_UNPACKED_GB):
        p.append(f"max_unpacked_gb: {s.max_unpacked_gb} must be a finite number in (0, {MAX_UNPACKED_GB:g}]")
    if s.input_zip is not None and s.input_dir is not None:
        p.append("input_zip and input_dir: give one of them, not both")
    p += _trigger_problems(s)
    p += _after_training_problems(s)
    p += _caption_problems(s)
    actions = [a for a in ("check_data", "dry_run", "download_only", "generate", "caption_only") if getattr(s, a)]
    if len(actions) > 1:
        p.append(f"{' and '.join(actions)} together: choose one")
    if s.offline and s.download_only:
        p.append("offline and download_only together: downloading needs the network")
    if s.vram != "auto" and int(s.vram) not in memory.presets:
        p.append(f"vram: {memory.title} has presets {', '.join(map(str, memory.presets))}, not {s.vram}")
    if s.task not in family.tasks:
        p.append(f"task: {family.title} trains {', '.join(family.tasks)}, not {s.task}")
    else:
        try:  # a variant, or a task and variant together, that musubi cannot train: the family says why
            family.weights_for(s.task, s.dit_variant)
        except ConfigError as e:
            p.append(str(e))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", s.output_name):
        p.append(f"output_name: {s.output_name!r} may use only letters, digits, '.', '_' and '-' (at most 100)")
    if s.skip_cache and s.dry_run:
        p.append("skip_cache and dry_run together: a dry run starts no stage that --skip_cache would skip")
    if p:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(p))


def _launch_problems(s: Settings) -> list[str]:
    out = []
    if isinstance(s.num_gpus, int) and s.num_gpus > 64:
        out.append(f"num_gpus: {s.num_gpus} is more than the 64 GPUs one machine can hold")
    if not 0 <= s.machine_rank < s.num_machines:
        out.append(f"machine_rank: {s.machine_rank} must be 0..{s.num_machines - 1} for num_machines {s.num_machines}")
    if s.num_machines > 1 and not s.main_process_ip:
        out.append("num_machines > 1 needs --main_process_ip (the address of machine 0, reachable from every machine)")
    if s.device == "cpu" and s.num_gpus != 1:
        out.append("device cpu trains in one process per machine: leave num_gpus at 1")
    return out


def _range_problems(s: Settings) -> list[str]:
    out = []
    for name, (lo, hi) in INT_RANGES.items():
        v = getattr(s, name)
        if not lo <= v <= hi:
            out.append(f"{name}: {v} is outside the valid range {lo}..{hi}")
    return out


def _resolution_problems(resolution: tuple[int, int], family: families.Family) -> list[str]:
    w, h = resolution
    step = family.frames.reso_step
    default = "x".join(map(str, family.defaults["resolution"]))
    if w < 64 or h < 64:
        return [f"resolution: {w}x{h} is too small; use at least 64x64 ({default} is {family.title}'s default)"]
    if w > MAX_RESOLUTION or h > MAX_RESOLUTION:
        return [
            f"resolution: {w}x{h} is too large; each side must be 64..{MAX_RESOLUTION} ({default} is "
            f"{family.title}'s default)"
        ]
    if w % step or h % step:
        return [
            f"resolution: {w}x{h} must be multiples of {step} ({family.title}'s buckets step by {step}), e.g. "
            f"{w // step * step}x{h // step * step}"
        ]
    return []


def nearest_frames(n: int, k: int) -> int:
    """The frame count of the form k*n+1 (the VAE packs k frames per latent after the first; HV1.5: k = 4) nearest
    to n; halfway goes up: with k = 4, 4 -> 5, 3 -> 5, 2 -> 1, 0 -> 1."""
    return max(1, (n + k // 2 - 1) // k * k + 1)


def _frames_problems(target_frames: tuple[int, ...], k: int) -> list[str]:
    """Clip lengths the VAE takes: k*n+1 frames (k: its temporal compression)."""
    out = []
    bad = [f for f in target_frames if f < 1 or (f - 1) % k]
    if bad:
        fixed = ",".join(map(str, sorted({nearest_frames(f, k) if f in bad else f for f in target_frames})))
        examples = ", ".join(str(k * n + 1) for n in range(7))
        out.append(
            f"target_frames: {', '.join(map(str, bad))} {'is' if len(bad) == 1 else 'are'} not of the form {k}n+1 "
            f"({examples}, ...); the nearest: --target_frames {fixed}"
        )
    too_long = [f for f in target_frames if f > MAX_TARGET_FRAMES]
    if too_long:
        out.append(f"target_frames: {', '.join(map(str, too_long))} is more than {MAX_TARGET_FRAMES} frames")
    return out


def _after_training_problems(s: Settings) -> list[str]:
    """--generate's inference settings and --push_to_hub's combinations."""
    out = []
    if s.video_size is not None:
        w, h = s.video_size
        if not (64 <= w <= MAX_RESOLUTION and 64 <= h <= MAX_RESOLUTION) or w % 16 or h % 16:
            out.append(f"video_size: {w}x{h} must be multiples of 16 from 64 to {MAX_RESOLUTION}, e.g. 848x480")
    if s.video_length is not None and not (1 <= s.video_length <= MAX_TARGET_FRAMES and s.video_length % 4 == 1):
        out.append(f"video_length: {s.video_length} must be 4n+1 frames, 1..{MAX_TARGET_FRAMES} (e.g. 25)")
    if s.infer_steps is not None and not 1 <= s.infer_steps <= 1000:
        out.append(f"infer_steps: {s.infer_steps} is outside 1..1000")
    for name, lo, hi in (("guidance_scale", 0.0, 100.0), ("flow_shift", 0.0, 100.0), ("lora_multiplier", -10, 10)):
        v = getattr(s, name)
        if v is not None and not (math.isfinite(v) and lo <= v <= hi):
            out.append(f"{name}: {v} must be a number in {lo:g}..{hi:g}")
    for name in ("lora", "prompt"):  # command-line only; the TOML keys (seeds, video_size, ...) may stay set
        if getattr(s, name) and not s.generate:
            out.append(f"{name} is a --generate setting: add --generate (samples during training use --sample_prompts)")
    if any("\n" in p or "\r" in p or not p.strip() for p in s.prompt):
        out.append("prompt: each --prompt must be one non-empty line")
    if s.push_to_hub is not None:
        if not re.fullmatch(r"(?:[\w.-]{1,96}/)?[\w.-]{1,96}", s.push_to_hub) or ".." in s.push_to_hub:
            out.append(f"push_to_hub: {s.push_to_hub!r} is not a repo id (NAME or NAMESPACE/NAME)")
        busy = [a for a in ("check_data", "dry_run", "download_only") if getattr(s, a)]
        if busy:
            out.append(f"push_to_hub and {busy[0]} together: a {busy[0]} run has no LoRA to upload")
        if s.lora is not None:
            out.append(
                "push_to_hub uploads a run's final LoRA: use --resume RUN_DIR (or the run's --output_name), not --lora"
            )
    return out


def _caption_problems(s: Settings) -> list[str]:
    out = []
    if s.caption_prompt is not None and s.caption_prompt_file is not None:
        out.append("caption_prompt and caption_prompt_file together: give one of them")
    elif s.caption_prompt is not None and not s.caption_prompt.strip():
        out.append("caption_prompt: is empty; give an instruction, or leave it unset for the default")
    elif s.caption_prompt_file is not None:
        try:
            read_caption_prompt(s.caption_prompt_file)
        except ConfigError as e:
            out.append(str(e))
    if s.generates_captions and s.family.captioner is None:
        what = "--caption_only" if s.caption_only else "--missing_caption generate"
        out.append(
            f"{what}: {s.family.title} has no captioner here; write the captions, or use --missing_caption trigger"
        )
    if s.recaption and not s.generates_captions:
        out.append("recaption needs --missing_caption generate or --caption_only (captions are generated there)")
    if s.caption_only and s.missing_caption not in ("error", "generate"):
        out.append(
            f"caption_only generates a caption for every media file without one; drop --missing_caption "
            f"{s.missing_caption}"
        )
    return out


def read_caption_prompt(path: Path) -> str:
    """The instruction in a caption prompt file (UTF-8, stripped). Raises ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8-sig").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"caption_prompt_file {path} is not UTF-8 text: save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(
            f"caption_prompt_file {path} cannot be read ({e.strerror or e}): pass an existing file"
        ) from None
    if not text:
        raise ConfigError(f"caption_prompt_file {path} is empty: write the instruction into it")
    return text


def _trigger_problems(s: Settings) -> list[str]:
    out = []
    if s.missing_caption == "trigger" and not s.trigger_word.strip():
        out.append("missing_caption trigger needs a --trigger_word to caption the media with")
    if "\n" in s.trigger_word or "\r" in s.trigger_word:
        out.append("trigger_word: must be on one line")
    elif s.trigger_word.strip() and not any(c.isalnum() for c in s.trigger_word):
        out.append(f"trigger_word: {s.trigger_word!r} has no letter or digit; use a rare word such as ohwx")
    return out


def warnings_for(s: Settings) -> list[str]:
    """Settings that are valid but probably not what the user meant; each line says what to change."""
    w: list[str] = []
    if s.frame_extraction == "chunk" and 1 in s.target_frames:
        w.append(
            "target_frames includes 1 with frame_extraction chunk: every single frame becomes an item; "
            "drop 1 from --target_frames unless that is intended"
        )
    if s.alpha > s.rank:
        w.append(
            f"network_alpha {s.alpha:g} is above rank {s.rank}: the LoRA's update is scaled by alpha/rank = "
            f"{s.alpha / s.rank:.3g}, which acts like a {s.alpha / s.rank:.3g}x higher learning rate and often "
            f"diverges; alpha = rank (scale 1, the default) or rank/2 are the usual choices"
        )
    w += [
        f"{name} only matters with --push_to_hub"
        for name in ("hub_public", "hub_include_captions")
        if getattr(s, name) and not s.push_to_hub
    ]
    if s.max_train_steps > 0 and s.epochs != OPTION_BY_NAME["epochs"].default:
        w.append(f"max_train_steps {s.max_train_steps} is set, so epochs {s.epochs} is ignored")
    if s.save_every_n_epochs == 0 and s.save_every_n_steps == 0:
        w.append(
            "save_every_n_epochs and save_every_n_steps are 0: no state is saved before the end, so an "
            "interruption loses the whole run"
        )
    return w


def help_text(opt: Option) -> str:
    """The option's help with what each registered family adds to it ("HunyuanVideo 1.5: ...")."""
    notes = [f"{f.title}: {f.help[opt.name]}" for f in families.all_families() if opt.name in f.help]
    return " ".join([opt.help, *notes])


def render_toml() -> str:
    """The commented `train.toml` that documents every key with its built-in default (the file in the repo)."""
    lines = [
        "# Defaults for `python train_local.py` / `docker compose run train`.",
        "# Precedence: command-line flags > this file > built-in defaults. Each key is also a flag: --KEY VALUE.",
        f"# Flags that are actions of one command are not keys: {', '.join('--' + n for n in COMMAND_LINE_ONLY)}.",
        "# Relative paths are relative to this file's folder. Edit values here or pass flags; unknown keys are errors.",
        "",
    ]
    for opt in OPTIONS:
        if not opt.toml:
            continue
        allowed = opt.allowed()
        lines += _wrap_comment(help_text(opt) + (f" One of: {', '.join(allowed)}." if allowed else ""))
        if opt.default is None:
            lines.append(f"# {opt.name} = {_toml_example(opt)}")
        else:
            lines.append(f"{opt.name} = {_toml_value(opt)}")
        lines.append("")
    return "\n".join(lines)


def _toml_example(opt: Option) -> str:
    if opt.family_default:  # the default family's value, as an example of the key's form
        return _toml_string(format_value(opt, families.get(families.DEFAULT).defaults[opt.name]))
    examples = {
        "input_zip": '"mydata.zip"',
        "input_dir": '"data/mydata"',
        "network_alpha": "16.0",
        "fp8": "true",
        "blocks_to_swap": "20",
        "block_swap_h2d_only": "true",
        "gradient_checkpointing_cpu_offload": "true",
        "fp8_vl": "true",
        "vae_sample_size": "256",
        "vae_enable_patch_conv": "true",
        "text_encoder_cpu": "true",
        "main_process_ip": '"10.0.0.1"',
        "sample_prompts": '"prompts.txt"',
        "sample_every_n_epochs": "1",
        "seeds": '"42,7"',
        "video_size": '"848x480"',
        "video_length": "25",
        "infer_steps": "20",
        "guidance_scale": "6.0",
        "flow_shift": "7.0",
        "caption_prompt": '"Describe the video in one paragraph."',
        "caption_prompt_file": '"caption_prompt.txt"',
    }
    return examples.get(opt.name, '""')


def format_value(opt: Option, v: Any) -> str:
    """A setting's value as a user writes it on the command line: (960, 544) -> '960x544', (1, 13) -> '1,13'."""
    if opt.parse is parse_resolution:
        return f"{v[0]}x{v[1]}"
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return str(v)


def _toml_value(opt: Option) -> str:
    v = opt.default
    if opt.parse is parse_resolution:
        return f'"{v[0]}x{v[1]}"'
    if opt.parse is parse_revision:
        return f'"{format_revision(v)}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return repr(v)


def _toml_string(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wrap_comment(text: str, width: int = 110) -> list[str]:
    out, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width:
            out.append(line)
            line = "#"
        line += " " + word
    out.append(line)
    return out
