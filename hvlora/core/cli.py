"""Command line of `train_local.py`: flags <-> settings, --help text, exit codes.

Exit codes: 0 done; 1 a stage failed (its log tail is printed); 2 bad settings or data (nothing was started);
130/143 stopped by Ctrl-C/SIGTERM (the running stage was stopped and waited for).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from .. import families
from ..training.presets import KNOBS as MEMORY_KNOBS
from . import config
from .errors import InternalError, Interrupted, StageFailed, UserError

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_DIR / "train.toml"

DESCRIPTION = """\
Train a LoRA of a video model with musubi-tuner, from a ZIP of images and videos with .txt captions.
Model families (--model_family): {families}.
Stages: [1/7] download weights, [2/7] extract the zip, [3/7] write the musubi dataset TOML, [4/7] cache latents,
[5/7] cache text-encoder outputs, [6/7] train the LoRA, [7/7] convert it to ComfyUI format (families with a checked
conversion). Results: OUTPUT_DIR/<output_name>.safetensors (musubi format) and OUTPUT_DIR/<output_name>_comfyui
.safetensors, plus a run folder OUTPUT_DIR/runs/<output_name>-<UTC time>/ with logs, checkpoints, state and
summary.json. With captions to generate (--missing_caption generate), a caption stage follows the
download.
After training: --generate renders the base model and the LoRA side by side (RUN/compare/); --push_to_hub REPO_ID
uploads the run with a model card to the Hugging Face Hub (private unless --hub_public; needs HF_TOKEN)."""

EPILOG = f"""\
Settings come from built-in defaults, then the --config file (default: train.toml beside train_local.py), then
these flags. Every flag above is also a key of that file, except --config and the actions of one command:
{", ".join("--" + n for n in config.COMMAND_LINE_ONLY)}. Boolean flags have a --no-... form to override the file."""


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser. Flags default to SUPPRESS so that only flags given on the command line override the file."""
    p = argparse.ArgumentParser(
        prog="train_local.py",
        description=DESCRIPTION.format(families=", ".join(f"{f.title} ({f.name})" for f in families.all_families())),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument(
        "--config",
        metavar="PATH",
        help=f"TOML settings file, keys as in train.toml (default: {DEFAULT_CONFIG.name} beside train_local.py).",
    )
    for opt in config.OPTIONS:
        default = _describe_default(opt)
        help_text = f"{config.help_text(opt)} (default: {default})"
        if opt.parse is config._as_bool:
            p.add_argument("--" + opt.name, action=argparse.BooleanOptionalAction, help=help_text)
        elif opt.repeat:
            p.add_argument("--" + opt.name, action="append", metavar=opt.metavar, help=help_text)
        else:
            choices = opt.allowed()
            p.add_argument(
                "--" + opt.name, choices=choices, metavar=None if choices else opt.shown_metavar(), help=help_text
            )
    return p


def _describe_default(opt: config.Option) -> str:
    d = opt.default
    if opt.family_default:
        values = (f"{f.name}: {config.format_value(opt, f.defaults[opt.name])}" for f in families.all_families())
        return "the family's (" + ", ".join(values) + ")"
    if d is None:
        return {
            "input_zip": "the only .zip in data_dir",
            "input_dir": "unset (use a zip)",
            "network_alpha": "= rank",
            "sample_prompts": "made from the data",
            "sample_every_n_epochs": "auto",
            "seeds": "--seed",
            "video_size": "from the run",
            "video_length": "from the run",
            "infer_steps": "the model's",
            "guidance_scale": "the model's",
            "flow_shift": "the model's",
            "lora": "the run's final LoRA",
            "caption_prompt": "written for the model family",
        }.get(opt.name, "set by --vram" if opt.name in MEMORY_KNOBS else "unset")
    if isinstance(d, bool):
        return "on" if d else "off"
    if opt.parse is config.parse_resolution:
        return f"{d[0]}x{d[1]}"
    if opt.parse is config.parse_revision:
        return config.format_revision(d)
    if isinstance(d, tuple):
        return ",".join(map(str, d)) or "none"
    return str(d) if d != "" else '""'


def load_settings(argv: list[str] | None = None, cwd: Path | None = None) -> config.Settings:
    """Parse argv and the config file into validated Settings. Raises ConfigError; argparse exits 2 on bad flags."""
    ns = vars(build_parser().parse_args(_negative_values_attached(sys.argv[1:] if argv is None else argv)))
    config_path = ns.pop("config", None)
    cwd = cwd or Path.cwd()
    if config_path is not None:
        path = Path(config_path)
        path = path if path.is_absolute() else cwd / path
        file_values = config.read_toml(path)
        file_dir = path.parent
    elif DEFAULT_CONFIG.is_file():
        file_values, file_dir = config.read_toml(DEFAULT_CONFIG), DEFAULT_CONFIG.parent
    else:
        file_values, file_dir = {}, PROJECT_DIR
    return config.build_settings(file_values, file_dir, ns, cwd=cwd)


NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|-inf(inity)?|-nan", re.IGNORECASE)


def _negative_values_attached(argv: list[str]) -> list[str]:
    """`--learning_rate -1e-4` -> `--learning_rate=-1e-4`: argparse takes a value starting with '-' for a flag
    unless it looks like a plain negative number ('-1e-4' does not), and would answer "expected one argument".
    Attached, the value reaches the setting's own check, which says what range is valid."""
    valued = {"--" + o.name for o in config.OPTIONS if o.parse is not config._as_bool} | {"--config"}
    out, i = [], 0
    while i < len(argv):
        if argv[i] in valued and i + 1 < len(argv) and NEGATIVE_NUMBER.fullmatch(argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of train_local.py; returns the process exit code."""
    # Plain HTTP downloads resume from the bytes on disk with a Range request; Xet transfers (huggingface_hub picks
    # them when the hub offers) do not keep a partial file that way. Read once at huggingface_hub's import, so set
    # before it; an explicit HF_HUB_DISABLE_XET=0 from the user wins.
    os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
    from . import pipeline  # imported here so that --help answers instantly

    try:
        settings = load_settings(argv)
        if settings.offline:  # huggingface_hub reads it once, at its (lazy) import: nothing has imported it yet
            os.environ["HF_HUB_OFFLINE"] = "1"
        for w in config.warnings_for(settings):
            print(f"warning: {w}", flush=True)
        pipeline.run(settings)
        return 0
    except UserError as e:
        print(f"\nerror: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except StageFailed as e:
        return e.exit_code  # pipeline already printed the stage, command and log tail
    except Interrupted as e:
        return e.exit_code
    except KeyboardInterrupt:  # Ctrl-C between stages (planning, choosing the run): nothing was running
        print("\nStopped (SIGINT) before any stage started; run the same command again.", file=sys.stderr, flush=True)
        return 130
    except InternalError as e:
        _print_internal(e)
        return e.exit_code
    except Exception as e:  # a bug before any run folder exists: the traceback goes to a temporary file
        log = Path(tempfile.gettempdir()) / f"hvlora-internal-error-{os.getpid()}.log"
        err = pipeline.internal_error(e, log)
        _print_internal(err)
        return err.exit_code


def _print_internal(e: InternalError) -> None:
    print(
        f"\nerror: {e}\nThis is a bug in train_local.py, not in your data or settings. The full traceback is in "
        f"{e.log_path}; please report it with that file.",
        file=sys.stderr,
        flush=True,
    )
