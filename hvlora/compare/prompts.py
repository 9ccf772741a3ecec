"""The prompts of a comparison and the prompt file both generator runs read (musubi's `--from_file` format).

Where prompts come from, first match: `--prompt` (repeatable), `--sample_prompts FILE`, the prompt file the run's
samples used (its config.toml `sample_prompts`), else the run's own sample prompts: the trigger word and the first
two distinct captions of its data (training/sampling.py's rule), else "a video". Each prompt is rendered once per
seed (`--seeds`, else `--seed`); a prompt file line with its own `--d SEED` keeps that seed only. A LoRA file
outside any run folder has no captions: its trigger word (from its metadata) is the prompt.

The file format (hv_1_5_generate_video.parse_prompt_line): the prompt, then options each after " --"
(`--d SEED`, `--i IMAGE`, `--w --h --f --s --g/--l --fs --n`); a line starting with '#' is a comment. A line of a
user's prompt file keeps its own options (both runs read the same file, so they stay equal). Captions are made safe
for that format (one line, no " --", no leading '#'); a `--prompt` that is not is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..core.config import Settings
from ..core.errors import UserError
from ..core.fsutil import atomic_write_text
from ..training import sampling
from . import locate

SOURCES = ("prompt", "file", "trigger", "caption", "fallback")  # where a prompt came from


@dataclass(frozen=True)
class Prompt:
    """One prompt: its `text`, the user's own options of its file line (" --w 64 --d 3"; "" if none), and its
    `source` (one of SOURCES: "caption" means it is a caption of the training data)."""

    text: str
    options: str = ""
    source: str = "prompt"

    @property
    def own_seed(self) -> int | None:
        """The line's `--d SEED`, if it has one."""
        m = re.search(r"(?:^| )--d (\d+)", self.options)
        return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Item:
    """One video pair of the comparison: prompt `index` (0-based), its `seed`, and the line both runs read."""

    index: int
    prompt: Prompt
    seed: int
    line: str


def gather(s: Settings, trained: locate.Trained) -> list[Prompt]:
    """The prompts, by the rules above. Raises UserError for a --prompt musubi would misread or an unreadable
    prompt file."""
    if s.prompt:
        for p in s.prompt:
            if " --" in p or p.lstrip().startswith("#"):
                raise UserError(
                    f"--prompt {p!r}: musubi's prompt format reads ' --' as the start of an option and a leading '#' "
                    "as a comment; rephrase it (or use --sample_prompts FILE with per-line options)"
                )
        return [Prompt(" ".join(p.split())) for p in s.prompt]
    user_file = s.sample_prompts or _run_prompt_file(trained)
    if user_file is not None:
        return read_prompt_file(user_file)
    trigger = str(trained.value("trigger_word", "")).strip()
    entries = locate.trained_files(trained.run_dir) if trained.run_dir else []  # a file alone: its trigger word
    captions = [_safe(f["caption"]) for f in entries if f.get("caption")]
    chosen = sampling.prompts_from(trigger, list(captions))
    return [Prompt(p, source=_source(p, trigger, set(captions))) for p in chosen]


def _source(prompt: str, trigger: str, captions: set[str]) -> str:
    if trigger and prompt == trigger:
        return "trigger"
    return "caption" if prompt in captions else "fallback"


def _run_prompt_file(trained: locate.Trained) -> Path | None:
    """The user's prompt file the run sampled with (config.toml sample_prompts), if it still exists."""
    path = trained.run_settings.get("sample_prompts")
    return Path(path) if path and Path(path).is_file() else None


def read_prompt_file(path: Path) -> list[Prompt]:
    """The prompts of a musubi prompt file: non-empty lines not starting with '#', split at the first " --".
    Raises UserError when the file cannot be read or has no prompt."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"prompt file {path} cannot be read ({e}): pass a UTF-8 text file") from None
    prompts = []
    for line in (ln.strip() for ln in lines):
        if not line or line.startswith("#"):
            continue
        text, sep, options = line.partition(" --")
        prompts.append(Prompt(text.strip(), (sep + options) if sep else "", "file"))
    if not prompts:
        raise UserError(f"prompt file {path} has no prompt (empty lines and '#' comments only)")
    return prompts


def _safe(caption: str) -> str:
    """A caption as one musubi prompt line: whitespace collapsed, " --" softened to " -", no leading '#'."""
    text = " ".join(caption.split()).replace(" --", " -")
    return text.lstrip("#").strip() or "a video"


def items(prompts: list[Prompt], seeds: tuple[int, ...], image: Path | None) -> list[Item]:
    """Every (prompt, seed) pair in order, with its prompt file line (`--d SEED`, and `--i IMAGE` for i2v unless the
    line has its own)."""
    out = []
    for index, p in enumerate(prompts):
        for seed in (p.own_seed,) if p.own_seed is not None else seeds:
            line = f"{p.text}{p.options}"
            if p.own_seed is None:
                line += f" --d {seed}"
            if image is not None and not re.search(r"(?:^| )--i ", p.options):
                line += f" --i {image}"
            out.append(Item(index, p, seed, line))
    return out


def write(path: Path, batch: list[Item]) -> Path:
    """The prompt file both runs read (atomically); returns its path."""
    header = "# made by train_local.py --generate: one video per line, read by both runs (base and LoRA)\n"
    atomic_write_text(path, header + "".join(item.line + "\n" for item in batch))
    return path
