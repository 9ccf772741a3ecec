"""The run's settings as one typed object: built-in defaults < `train.toml` < command-line flags.

Every setting is declared once, in `OPTIONS`: its type, default, choices and help text. The CLI (`cli.py`), the
commented `train.toml` (`render_toml`) and the validation below all derive from that table, so a flag, its TOML key
and its documentation cannot drift apart. Names follow musubi-tuner's flags where one exists (`network_dim` is called
`rank` here, as in the system we replace; `network_alpha`, `target_frames`, `frame_extraction`, `blocks_to_swap`).
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

from ..families.hunyuan_video_1_5.catalog import check_variant
from ..families.hunyuan_video_1_5.dit import MAX_BLOCKS_TO_SWAP, NUM_BLOCKS
from .errors import ConfigError

TASKS = ("t2v", "i2v")
OPTIMIZERS = ("adamw8bit", "adamw", "AdaFactor")
FRAME_EXTRACTIONS = ("head", "chunk", "slide", "uniform", "full")
SAVE_PRECISIONS = ("bf16", "fp16", "fp32")
MISSING_CAPTION = ("error", "trigger", "skip")
DEVICES = ("cuda", "cpu")
RANK_RANGE = (4, 128)
# musubi asserts blocks_to_swap < 52 for HV1.5's 54 double blocks (hv_1_5_train_network.py); the docs give 51 as max.
VRAM_CHOICES = ("auto", "16", "24", "32", "48", "80")
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
    """'1,13,25' or [1, 13, 25] -> (1, 13, 25), sorted, without repeats. Raises ValueError."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or not all(re.fullmatch(r"\d+", p) for p in parts):
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
            raise ValueError(f"{part!r} is not REPO_ID=REVISION, e.g. tencent/HunyuanVideo-1.5=main")
        out[repo.strip()] = rev.strip()
    return out


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


def parse_vram(v: Any) -> str:
    """'auto' or one of the preset sizes in GB (musubi knobs for that much VRAM, see presets.py)."""
    text = str(v).strip().lower() if isinstance(v, (str, int)) and not isinstance(v, bool) else None
    if text not in VRAM_CHOICES:
        raise ValueError(f"{v!r} is not one of {', '.join(VRAM_CHOICES)}")
    return text


def _as_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    raise ValueError(f"{v!r} is not a string")


@dataclass(frozen=True)
class Option:
    """One setting: its key (= flag name without `--`), parser, default, allowed values and help text."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    choices: tuple | None = None
    metavar: str | None = None
    is_path: bool = False
    toml: bool = True  # False: command line only (e.g. dry_run is an action, not a setting to keep in a file)


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
        "task",
        _as_str,
        "t2v",
        "t2v trains text-to-video; i2v trains image-to-video (caches the first "
        "frame with the SigLIP image encoder too).",
        choices=TASKS,
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
        "720p",
        "Which base DiT of tencent/HunyuanVideo-1.5 to train: 720p or 480p "
        "(the distilled and super-resolution variants cannot be trained by musubi).",
        metavar="VARIANT",
    ),
    Option(
        "vram",
        parse_vram,
        "auto",
        "Memory preset: auto reads the GPU's memory (the smallest GPU used) before anything is downloaded; a number "
        "picks the preset for that many GB. A preset sets only the memory settings below that you do not set.",
        metavar="auto|16|24|32|48|80",
    ),
    Option(
        "fp8",
        _as_bool,
        None,
        "Store the DiT in fp8 (musubi --fp8_base --fp8_scaled); also the Qwen2.5-VL text encoder while caching "
        "(--fp8_vl) unless fp8_vl is set. Unset: the --vram preset decides.",
    ),
    Option(
        "blocks_to_swap",
        _as_int,
        None,
        f"Offload this many of the DiT's {NUM_BLOCKS} blocks to CPU memory (musubi --blocks_to_swap), 0 to "
        f"{MAX_BLOCKS_TO_SWAP}: less VRAM, slower steps, host RAM per GPU. Unset: the --vram preset decides.",
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
        "Keep the checkpointed activations in host RAM (musubi --gradient_checkpointing_cpu_offload). Unset: preset.",
    ),
    Option(
        "fp8_vl",
        _as_bool,
        None,
        "Qwen2.5-VL text encoder in fp8 while caching captions (musubi --fp8_vl). Unset: preset (or --fp8).",
    ),
    Option(
        "vae_sample_size",
        _as_int,
        None,
        "VAE tile size for the latent cache (musubi --vae_sample_size; 0 = no tiling; 256 is better than musubi's "
        "128). Unset: preset.",
        metavar="N",
    ),
    Option(
        "vae_enable_patch_conv",
        _as_bool,
        None,
        "Patched VAE convolutions for the latent cache: less VRAM (musubi --vae_enable_patch_conv). Unset: preset.",
    ),
    Option(
        "resolution",
        parse_resolution,
        (960, 544),
        "Training resolution WIDTHxHEIGHT; media are bucketed by aspect ratio around this area.",
        metavar="WxH",
    ),
    Option(
        "target_frames",
        parse_frames,
        (1, 13, 25),
        "Clip lengths cut from each video, comma-separated; each must be 4n+1 (1, 5, 9, 13, ...).",
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
    Option("max_frames", _as_int, 129, "full: at most this many frames per video (musubi max_frames).", metavar="N"),
    Option(
        "missing_caption",
        _as_str,
        "error",
        "Media without a caption: error stops the run; trigger "
        "captions them with the trigger word; skip leaves them out. Either way they are reported.",
        choices=MISSING_CAPTION,
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
        "Make samples every N epochs (0: never). Unset: every save_every_n_epochs with a --vram preset above 24, "
        "else off (sampling needs VRAM and time).",
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
        "check_data",
        _as_bool,
        False,
        "Only check the data: print the report, write dataset_report.json, "
        "exit 0 when it is usable and 2 when not. Nothing is downloaded or trained.",
        toml=False,
    ),
    Option(
        "dry_run",
        _as_bool,
        False,
        "Extract the data and write the dataset TOML, then print the "
        "commands and write plan.json without downloading or starting musubi.",
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
)
OPTION_BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one run. Paths are absolute. See `OPTIONS` for each field's meaning."""

    input_zip: Path | None
    input_dir: Path | None
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
    resolution: tuple[int, int]
    target_frames: tuple[int, ...]
    frame_extraction: str
    frame_stride: int
    frame_sample: int
    max_frames: int
    missing_caption: str
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
    check_data: bool
    dry_run: bool
    new_run: bool
    resume: Path | None

    def revision_for(self, repo_id: str) -> str:
        """The revision to download from `repo_id` (per-repo value, else the general one, else main)."""
        return self.revision.get(repo_id, self.revision.get("*", "main"))

    @property
    def alpha(self) -> float:
        """network_alpha, or rank when unset."""
        return float(self.rank) if self.network_alpha is None else self.network_alpha

    def to_toml_dict(self) -> dict[str, Any]:
        """The settings as TOML-ready values (paths and tuples as strings/lists), loadable again with --config:
        unset values and command-line-only actions (check_data, dry_run, download_only) are left out."""
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
        with open(path, "rb") as f:
            data = tomllib.load(f)
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
        if opt.choices and v not in opt.choices:
            problems.append(f"{origin}: {v!r} is not one of {', '.join(opt.choices)}")
            continue
        if opt.is_path and v is not None:
            v = Path(os.path.expanduser(v))
            v = v if v.is_absolute() else (base / v)
            v = Path(os.path.abspath(v))
        values[opt.name] = v
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))
    settings = Settings(**values)
    validate(settings)
    return settings


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
}
MAX_TRAIN_STEPS = 100_000_000
MAX_RESOLUTION = 4096  # per side; HV1.5's largest base bucket is 1280x720, 4096 leaves room for any sane choice
MAX_TARGET_FRAMES = 1025  # 4n+1; about 43 s at 24 fps, far beyond what fits any GPU
MAX_UNPACKED_GB = 1_000_000.0  # 1 PB: a finite bound, so the byte limit stays an ordinary integer
MAX_LEARNING_RATE = 1.0


def validate(s: Settings) -> None:
    """Check ranges and combinations. Raises ConfigError listing every problem with its valid range or fix."""
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
    if s.blocks_to_swap is not None and not 0 <= s.blocks_to_swap <= MAX_BLOCKS_TO_SWAP:
        p.append(f"blocks_to_swap: {s.blocks_to_swap} is outside 0..{MAX_BLOCKS_TO_SWAP}")
    if s.vae_sample_size is not None and not (s.vae_sample_size == 0 or 64 <= s.vae_sample_size <= 2048):
        p.append(f"vae_sample_size: {s.vae_sample_size} must be 0 (no tiling) or 64..2048, e.g. 256")
    if s.lr_warmup_steps and s.lr_scheduler == "constant":
        p.append("lr_warmup_steps: the constant schedule has no warm-up; use --lr_scheduler constant_with_warmup")
    if s.sample_every_n_epochs is not None and not 0 <= s.sample_every_n_epochs <= 100_000:
        p.append(f"sample_every_n_epochs: {s.sample_every_n_epochs} is outside the valid range 0..100000")
    p += _launch_problems(s)
    if s.new_run and s.resume is not None:
        p.append("new_run and resume together: choose one")
    p += _resolution_problems(s.resolution)
    p += _frames_problems(s.target_frames)
    if not (math.isfinite(s.max_unpacked_gb) and 0 < s.max_unpacked_gb <= MAX_UNPACKED_GB):
        p.append(f"max_unpacked_gb: {s.max_unpacked_gb} must be a finite number in (0, {MAX_UNPACKED_GB:g}]")
    if s.input_zip is not None and s.input_dir is not None:
        p.append("input_zip and input_dir: give one of them, not both")
    p += _trigger_problems(s)
    actions = [a for a in ("check_data", "dry_run", "download_only") if getattr(s, a)]
    if len(actions) > 1:
        p.append(f"{' and '.join(actions)} together: choose one")
    if s.offline and s.download_only:
        p.append("offline and download_only together: downloading needs the network")
    try:
        check_variant(s.dit_variant)
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


def _resolution_problems(resolution: tuple[int, int]) -> list[str]:
    w, h = resolution
    if w < 64 or h < 64:
        return [f"resolution: {w}x{h} is too small; use at least 64x64 (960x544 is the default)"]
    if w > MAX_RESOLUTION or h > MAX_RESOLUTION:
        return [f"resolution: {w}x{h} is too large; each side must be 64..{MAX_RESOLUTION} (960x544 is the default)"]
    if w % 16 or h % 16:
        return [
            f"resolution: {w}x{h} must be multiples of 16 (HV1.5 buckets step by 16), e.g. {w // 16 * 16}x{h // 16 * 16}"
        ]
    return []


def _frames_problems(target_frames: tuple[int, ...]) -> list[str]:
    out = []
    bad = [f for f in target_frames if f < 1 or (f - 1) % 4]
    if bad:
        hint = ", ".join(f"{f}->{max(1, (f - 1) // 4 * 4 + 1)}" for f in bad)
        out.append(f"target_frames: {', '.join(map(str, bad))} not of the form 4n+1 ({hint})")
    too_long = [f for f in target_frames if f > MAX_TARGET_FRAMES]
    if too_long:
        out.append(f"target_frames: {', '.join(map(str, too_long))} is more than {MAX_TARGET_FRAMES} frames")
    return out


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
    if s.max_train_steps > 0 and s.epochs != OPTION_BY_NAME["epochs"].default:
        w.append(f"max_train_steps {s.max_train_steps} is set, so epochs {s.epochs} is ignored")
    if s.save_every_n_epochs == 0 and s.save_every_n_steps == 0:
        w.append(
            "save_every_n_epochs and save_every_n_steps are 0: no state is saved before the end, so an "
            "interruption loses the whole run"
        )
    return w


def render_toml() -> str:
    """The commented `train.toml` that documents every key with its built-in default (the file in the repo)."""
    lines = [
        "# Defaults for `python train_local.py` / `docker compose run train`.",
        "# Precedence: command-line flags > this file > built-in defaults. Each key is also a flag: --KEY VALUE.",
        "# Relative paths are relative to this file's folder. Edit values here or pass flags; unknown keys are errors.",
        "",
    ]
    for opt in OPTIONS:
        if not opt.toml:
            continue
        lines += _wrap_comment(opt.help + (f" One of: {', '.join(opt.choices)}." if opt.choices else ""))
        if opt.default is None:
            lines.append(f"# {opt.name} = {_toml_example(opt)}")
        else:
            lines.append(f"{opt.name} = {_toml_value(opt)}")
        lines.append("")
    return "\n".join(lines)


def _toml_example(opt: Option) -> str:
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
        "main_process_ip": '"10.0.0.1"',
        "sample_prompts": '"prompts.txt"',
        "sample_every_n_epochs": "1",
    }
    return examples.get(opt.name, '""')


def _toml_value(opt: Option) -> str:
    v = opt.default
    if opt.parse is parse_resolution:
        return f'"{v[0]}x{v[1]}"'
    if opt.parse is parse_revision:
        return f'"{format_revision(v)}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return repr(v)


def _wrap_comment(text: str, width: int = 110) -> list[str]:
    out, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width:
            out.append(line)
            line = "#"
        line += " " + word
    out.append(line)
    return out
