"""musubi's sample-prompt files: read them as musubi-tuner v0.3.4 does, check a user's file before stage 1, and
write ours so that musubi reads exactly the prompts meant.

musubi's reader is `training/sampling_prompts.py` (`load_prompts`, `line_to_prompt_dict`; `hv_train_network` and
`hv_1_5_train_network` import it from there):
- `.txt`: one prompt per line. A line that is empty after strip() or whose first character is `#` is skipped; every
  other line is stripped and split at each " --": the first part is the prompt text, and EVERY part, the prompt
  text included, is matched (re.match: a prefix, case-insensitive) against the option patterns below, the first
  that matches wins; parts matching none are ignored without a word; a value that does not convert is logged and
  skipped. So a caption with a line break becomes two prompts, one containing " --" is cut there, and a prompt
  text beginning "n ..." is also read as a negative prompt.
- `.toml`: a `[prompt]` table whose `[[prompt.subset]]` entries are each merged over it; `.json`: a list of prompt
  dicts (used as they are) or lines (parsed as above). Any other extension fails in musubi.
Our own prompt file is JSON: a dict per prompt reaches musubi unparsed, so every caption (line breaks, " --" and
all) is exactly the prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomllib

from ..core.errors import UserError
from ..core.fsutil import atomic_write_text

if TYPE_CHECKING:
    from ..families import SampleDefaults

SEPARATOR = " --"
EXTENSIONS = (".txt", ".toml", ".json")


def _steps(v: str) -> int:
    return max(1, min(1000, int(v)))


# (option, value pattern, key, conversion) in line_to_prompt_dict's order
OPTIONS: tuple[tuple[str, str, str, Callable[[str], Any]], ...] = (
    ("w", r"(\d+)", "width", int),
    ("h", r"(\d+)", "height", int),
    ("f", r"(\d+)", "frame_count", int),
    ("d", r"(\d+)", "seed", int),
    ("s", r"(\d+)", "sample_steps", _steps),
    ("g", r"([\d\.]+)", "guidance_scale", float),
    ("fs", r"([\d\.]+)", "discrete_flow_shift", float),
    ("l", r"([\d\.]+)", "cfg_scale", float),
    ("n", r"(.+)", "negative_prompt", str),
    ("i", r"(.+)", "image_path", str.strip),
    ("ei", r"(.+)", "end_image_path", str.strip),
    ("cn", r"(.+)", "control_video_path", str.strip),
    ("ci", r"(.+)", "control_image_path", str.strip),  # may repeat: a list
    ("of", r"(.+)", "one_frame", str.strip),
)


def _match(part: str) -> tuple[str, str, Any] | None:
    """(option, key, value) of the first option pattern `part` starts with, as musubi matches it; value None when
    it does not convert (musubi logs and skips it)."""
    for option, value, key, convert in OPTIONS:
        m = re.match(f"{option} {value}", part, re.IGNORECASE)
        if m:
            try:
                return option, key, convert(m.group(1))
            except ValueError:
                return option, key, None
    return None


def parse_line(line: str) -> dict[str, Any]:
    """musubi's line_to_prompt_dict: {"prompt": text before the first " --", option keys...}."""
    parts = line.split(SEPARATOR)
    prompt: dict[str, Any] = {"prompt": parts[0]}
    for part in parts:
        found = _match(part)
        if found is None or found[2] is None:
            continue
        _, key, value = found
        if key == "control_image_path":
            prompt.setdefault(key, []).append(value)
        else:
            prompt[key] = value
    return prompt


def read(path: Path) -> list[dict[str, Any]]:
    """musubi's load_prompts: the prompt dicts of a .txt, .toml or .json file, each with "enum" (its index).
    Raises OSError, UnicodeDecodeError, ValueError (bad JSON/TOML, another extension) or KeyError/TypeError for a
    TOML or JSON file of another shape."""
    path = Path(path)
    if path.suffix == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        prompts: list = [line.strip() for line in lines if line.strip() and line[0] != "#"]
    elif path.suffix == ".toml":
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        prompts = [dict(**data["prompt"], **subset) for subset in data["prompt"]["subset"]]
    elif path.suffix == ".json":
        prompts = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(prompts, list):
            raise TypeError("a JSON prompt file holds a list")
    else:
        raise ValueError(f"musubi reads prompt files ending in {', '.join(EXTENSIONS)}, not {path.suffix or 'none'}")
    out = []
    for i, p in enumerate(prompts):
        p = parse_line(p) if isinstance(p, str) else p
        if not isinstance(p, dict):
            raise TypeError(f"prompt {i + 1} is neither a line nor a table")
        p = {k: v for k, v in p.items() if k != "subset"}
        out.append({**p, "enum": i})
    return out


def write(path: Path, prompts: list[dict[str, Any]]) -> Path:
    """Write `prompts` (dicts with musubi's keys: prompt, width, height, frame_count, seed, sample_steps, ...) as a
    JSON prompt file, atomically: musubi takes each dict as it is, so any prompt text arrives unchanged."""
    atomic_write_text(path, json.dumps(prompts, indent=2, ensure_ascii=False) + "\n")
    return path


def line_problems(line: str, read_keys: tuple[str, ...]) -> list[str]:
    """What musubi would read otherwise than written in one prompt line of a .txt file: an option part it ignores
    (unknown, or a value of the wrong form), a value it cannot convert, an option whose key the family's sampler
    does not read (`read_keys`, SampleDefaults.prompt_keys; e.g. --l for Kandinsky 5, which reads --g), or a prompt
    text that begins like an option it reads (it is taken as that option too, e.g. "n dogs" as the negative prompt
    "dogs") while no later option sets it. Empty when the line means what it says."""
    parts = line.strip().split(SEPARATOR)
    problems, later = [], set()
    for part in parts[1:]:
        found = _match(part.strip())
        option = part.strip().split(" ", 1)[0]
        if found is None:
            problems.append(f"`--{part.strip()}` is not an option musubi reads (it is ignored)")
            continue
        _, key, value = found
        later.add(key)
        full = re.fullmatch(f"{found[0]} {_pattern(found[0])}", part.strip(), re.IGNORECASE)
        if value is None or full is None:
            problems.append(f"`--{part.strip()}`: not a valid value for --{option}")
        elif key not in read_keys:
            problems.append(
                f"`--{part.strip()}`: this model's sampler does not read --{found[0]} ({key}; it is ignored)"
            )
    head = _match(parts[0])
    if head is not None and head[1] in read_keys and head[1] not in later:
        problems.append(
            f"the prompt text {parts[0][:40]!r} begins like the option --{head[0]}, and musubi reads it as one "
            f"({head[1]}); reword its beginning"
        )
    return problems


def _pattern(option: str) -> str:
    return next(value for o, value, _, _ in OPTIONS if o == option)


def check_file(path: Path | None, task: str, samples: SampleDefaults) -> None:
    """The user's --sample_prompts, checked before stage 1 as musubi will read it at the start of training: a
    file (not a folder) ending in .txt/.toml/.json, UTF-8, every prompt line meaning what it says to the family's
    sampler (`line_problems` with `samples.prompt_keys`), at least one prompt, and for a task of
    `samples.image_tasks` (i2v) an image (`--i`) on every prompt that exists (relative paths from the current
    folder, where the trainer runs). Raises UserError naming the file, the line and the fix."""
    if path is None:
        return
    path = Path(path)
    where = f"--sample_prompts {path}"
    if not path.exists():
        raise UserError(
            f"{where}: no such file. Pass the path of a prompt file, or leave it out to sample from the data"
        )
    if not path.is_file():
        raise UserError(f"{where} is a folder, not a prompt file: pass the file itself (one prompt per line)")
    if path.suffix not in EXTENSIONS:
        raise UserError(f"{where}: musubi reads only {', '.join(EXTENSIONS)} prompt files; rename it to .txt")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raise UserError(
            f"{where} starts with a UTF-8 byte order mark, which musubi keeps in the first prompt: save "
            "it as UTF-8 without BOM"
        )
    try:
        prompts = read(path)
    except UnicodeDecodeError as e:
        raise UserError(f"{where} is not UTF-8 text ({e.reason} at byte {e.start}): save it as UTF-8") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(
            f"{where}: musubi cannot read it ({type(e).__name__}: {e}); see its prompt-file format"
        ) from None
    problems = []
    if path.suffix == ".txt":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip() and line[0] != "#":
                problems += [f"line {n}: {p}" for p in line_problems(line, samples.prompt_keys)]
    if not prompts:
        problems.append("it holds no prompt (empty lines and lines starting with # are skipped)")
    if task in samples.image_tasks:
        for p in prompts:
            image = p.get("image_path")
            if image is None:
                problems.append(f"prompt {p['enum'] + 1}: i2v samples need an image: add `--i IMAGE` to it")
            elif not Path(image).is_file():
                problems.append(f"prompt {p['enum'] + 1}: its image {image} does not exist (relative to {Path.cwd()})")
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise UserError(f"{where} would not sample what it says:\n  {shown}")
