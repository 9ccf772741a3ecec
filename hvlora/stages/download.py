"""Stage 1: download the model weights and tokenizers the task needs, with huggingface_hub.

Weights go to MODELS_DIR/<repo_id>/<path> (`hf_hub_download(local_dir=...)`: a complete file is kept and only
re-checked with a HEAD request; an interrupted one resumes from its `.incomplete` part). The two tokenizers musubi
loads by repo id go into the Hugging Face cache (HF_HOME), so every later stage runs with HF_HUB_OFFLINE=1.
HF_ENDPOINT, HF_TOKEN and HF_HOME are honoured; they are read when the stage runs, not at import.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .. import catalog
from ..context import RunContext
from ..errors import StageFailed, UserError

NAME = "download"
TITLE = "download weights"


@dataclass(frozen=True)
class Presence:
    """Whether each needed file is on disk: `present` and `missing` hold human-readable descriptions."""

    weights: dict[str, Path]
    present: list[str]
    missing: list[str]


def hub_cache_dir(env: dict[str, str]) -> Path:
    """The HF hub cache that transformers will read in musubi's processes: HF_HUB_CACHE, else HF_HOME/hub, else
    XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (huggingface_hub's own rules)."""
    if env.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(env["HF_HUB_CACHE"]))
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expanduser(home)) / "hub"


def presence(task: str, models_dir: Path, env: dict[str, str]) -> Presence:
    """Check, without any network access, that every weight file and tokenizer for `task` is on disk."""
    from huggingface_hub import try_to_load_from_cache

    weights, present, missing = {}, [], []
    for comp, wf in catalog.weights_for(task).items():
        path = wf.local_path(models_dir)
        weights[comp] = path
        (present if path.is_file() else missing).append(f"{comp}: {path}")
    cache = hub_cache_dir(env)
    for tok in catalog.TOKENIZERS:
        absent = [f for f in tok.required_files
                  if not isinstance(try_to_load_from_cache(tok.repo_id, f, cache_dir=cache), str)]
        desc = f"tokenizer {tok.repo_id} in {cache}"
        (missing if absent else present).append(desc + (f" (no {', '.join(absent)})" if absent else ""))
    return Presence(weights, present, missing)


def run(ctx: RunContext) -> dict:
    """Fetch what is missing (or, with skip_download, only check). Sets ctx.weights; returns summary info."""
    s, log = ctx.settings, ctx.log(NAME)
    if s.skip_download:
        found = presence(s.task, s.models_dir, ctx.env)
        if found.missing:
            raise UserError("--skip_download: these model files are missing:\n  " + "\n  ".join(found.missing)
                            + "\nRun once without --skip_download to fetch them (or copy them there).")
        log(f"all {len(found.present)} model files present; nothing downloaded (--skip_download)")
        ctx.weights = found.weights
        return {"downloaded": False, "files": {k: str(v) for k, v in found.weights.items()}}

    endpoint = ctx.env.get("HF_ENDPOINT") or None
    token = ctx.env.get("HF_TOKEN") or None
    cache = hub_cache_dir(ctx.env)
    for comp, wf in catalog.weights_for(s.task).items():
        log(f"{comp}: {wf.repo_id}/{wf.filename} -> {wf.local_path(s.models_dir)}")
        ctx.weights[comp] = _fetch_weight(wf, s.models_dir, cache, endpoint, token, log)
    for tok in catalog.TOKENIZERS:
        log(f"tokenizer: {tok.repo_id} -> {cache}")
        _fetch_tokenizer(tok, cache, endpoint, token)
    return {"downloaded": True, "files": {k: str(v) for k, v in ctx.weights.items()}, "hub_cache": str(cache)}


RESUME_ATTEMPTS = 4  # tries per file when the connection drops mid-body; each resumes from the .incomplete part


def _fetch_weight(wf: catalog.WeightFile, models_dir: Path, cache: Path, endpoint: str | None,
                  token: str | None, log) -> Path:
    from huggingface_hub import hf_hub_download
    from requests.exceptions import ChunkedEncodingError, ConnectionError as RequestsConnectionError

    for attempt in range(1, RESUME_ATTEMPTS + 1):
        try:
            return Path(hf_hub_download(wf.repo_id, wf.filename, local_dir=models_dir / wf.repo_id,
                                        cache_dir=cache, endpoint=endpoint, token=token))
        except (ChunkedEncodingError, RequestsConnectionError) as e:
            # huggingface_hub 0.34 does not retry a body cut short; a new call resumes with a Range request.
            if attempt == RESUME_ATTEMPTS:
                raise _explain(e, wf.repo_id, wf.filename) from e
            log(f"{wf.filename}: connection lost ({type(e).__name__}); resuming (attempt {attempt + 1} of "
                f"{RESUME_ATTEMPTS})")
            time.sleep(2 ** (attempt - 1) - 1)  # 0 s, then 1 s, 3 s: a reset is often transient
        except Exception as e:  # noqa: BLE001 - translated into an actionable message below
            raise _explain(e, wf.repo_id, wf.filename) from e
    raise AssertionError("unreachable")


def _fetch_tokenizer(tok: catalog.TokenizerRepo, cache: Path, endpoint: str | None, token: str | None) -> None:
    from huggingface_hub import snapshot_download, try_to_load_from_cache

    try:
        snapshot_download(tok.repo_id, allow_patterns=list(tok.allow_patterns), cache_dir=cache,
                          endpoint=endpoint, token=token)
    except Exception as e:  # noqa: BLE001
        raise _explain(e, tok.repo_id, " ".join(tok.allow_patterns)) from e
    absent = [f for f in tok.required_files
              if not isinstance(try_to_load_from_cache(tok.repo_id, f, cache_dir=cache), str)]
    if absent:  # offline, snapshot_download returns a cached snapshot folder without checking its files
        raise StageFailed(NAME, f"{tok.repo_id}: {', '.join(absent)} missing from {cache} and the hub could not "
                                "be asked for it. Run the same command again when the network is back.")


def _explain(e: Exception, repo_id: str, what: str) -> Exception:
    """Turn a huggingface_hub exception into an error that says what to do. HF_TOKEN never appears in it."""
    from huggingface_hub import errors as hf

    if isinstance(e, hf.GatedRepoError):
        msg = (f"{repo_id} is gated: accept its license on https://huggingface.co/{repo_id} while logged in, "
               "then set HF_TOKEN to a token of that account and run again.")
    elif isinstance(e, hf.RepositoryNotFoundError):
        msg = (f"repository {repo_id} was not found, or it is private and no valid HF_TOKEN was given. "
               "Check HF_ENDPOINT/HF_TOKEN and run again.")
    elif isinstance(e, hf.RevisionNotFoundError):
        msg = f"revision not found in {repo_id}."
    elif isinstance(e, hf.LocalEntryNotFoundError):  # before EntryNotFoundError: it is a subclass of it
        msg = (f"could not reach the Hugging Face hub to fetch {repo_id}/{what} (network down or HF_ENDPOINT wrong?). "
               "Run the same command again when the network is back: finished files are kept and a partial one "
               "resumes.")
    elif isinstance(e, hf.EntryNotFoundError):
        msg = f"{what} was not found in {repo_id}."
    elif isinstance(e, OSError) and getattr(e, "errno", None) == 28:
        msg = f"the disk is full while downloading {repo_id}/{what}: free space, then run again (it resumes)."
    else:
        msg = (f"downloading {repo_id}/{what} failed: {type(e).__name__}: {e}. "
               "Run the same command again: finished files are kept and a partial one resumes.")
    return StageFailed(NAME, msg)
