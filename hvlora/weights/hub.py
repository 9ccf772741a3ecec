"""Hugging Face hub access with huggingface_hub 0.34.3 (musubi-tuner's pin): file metadata, downloads that resume,
retries of transient failures, and errors that say what to do.

Resuming: `hf_hub_download(local_dir=...)` writes into `<local_dir>/.cache/huggingface/download/*.incomplete` and a
later call (even from a new process, after a kill) continues it with a `Range` request from the bytes on disk. A
connection cut mid-body is not retried by huggingface_hub 0.34 itself, so it is retried here; so are 5xx answers,
429 and network errors, with exponential backoff. HF_TOKEN is passed as a value and never put into any message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..core.errors import StageFailed

RETRIES = 4
BACKOFF_S = 1.0  # waits 1, 2, 4 s between tries
T = TypeVar("T")


@dataclass(frozen=True)
class RemoteFile:
    """What the hub says about a file: the commit its revision resolves to, its ETag (sha256 for LFS files, git
    blob sha1 otherwise) and its size in bytes."""

    commit: str
    etag: str
    size: int


def remote_file(
    repo_id: str, filename: str, revision: str, endpoint: str | None, token: str | None, log: Callable[[str], None]
) -> RemoteFile:
    """HEAD the file (retrying transient failures). Raises StageFailed with an actionable message."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    meta = retrying(lambda: get_hf_file_metadata(url, token=token), f"{repo_id}/{filename}", log, revision)
    return RemoteFile(meta.commit_hash, (meta.etag or "").strip('"'), meta.size or 0)


def download(
    repo_id: str,
    filename: str,
    local_dir: Path,
    revision: str,
    cache_dir: Path,
    endpoint: str | None,
    token: str | None,
    log: Callable[[str], None],
    force: bool = False,
) -> Path:
    """hf_hub_download into `local_dir` (resuming a partial file), retrying transient failures."""
    from huggingface_hub import hf_hub_download

    def call() -> str:
        return hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            local_dir=local_dir,
            cache_dir=cache_dir,
            endpoint=endpoint,
            token=token,
            force_download=force,
        )

    return Path(retrying(call, f"{repo_id}/{filename}", log, revision))


def snapshot(
    repo_id: str,
    allow_patterns: tuple[str, ...],
    revision: str,
    cache_dir: Path,
    endpoint: str | None,
    token: str | None,
    log: Callable[[str], None],
    force: bool = False,
) -> Path:
    """snapshot_download of the matching files into the HF cache (where transformers looks for them)."""
    from huggingface_hub import snapshot_download

    def call() -> str:
        return snapshot_download(
            repo_id,
            allow_patterns=list(allow_patterns),
            revision=revision,
            cache_dir=cache_dir,
            endpoint=endpoint,
            token=token,
            force_download=force,
        )

    return Path(retrying(call, f"{repo_id} ({' '.join(allow_patterns)})", log, revision))


def partial_bytes(local_dir: Path, filename: str, etag: str) -> int:
    """Bytes already on disk in the `.incomplete` file a resumed download will continue (0 if none)."""
    from huggingface_hub._local_folder import get_local_download_paths  # the layout hf_hub_download uses

    path = get_local_download_paths(local_dir, filename).incomplete_path(etag)
    return path.stat().st_size if path.exists() else 0


def forget_local(local_dir: Path, filename: str) -> None:
    """Delete a downloaded file and huggingface_hub's record of it, so the next download starts afresh."""
    from huggingface_hub._local_folder import get_local_download_paths

    paths = get_local_download_paths(local_dir, filename)
    paths.file_path.unlink(missing_ok=True)
    paths.metadata_path.unlink(missing_ok=True)


def retrying(
    call: Callable[[], T],
    what: str,
    log: Callable[[str], None],
    revision: str | None = None,
    explain_error: Callable[[Exception, str, str | None], Exception] | None = None,
    kept: str = "a partial file resumes",
) -> T:
    """Run `call`; retry transient failures with backoff (saying `kept`: what a retry does not redo); turn the final
    failure into StageFailed (with `explain_error(e, what, revision)` when given: an upload explains itself in its
    own words)."""
    for attempt in range(1, RETRIES + 1):
        try:
            return call()
        except Exception as e:  # noqa: BLE001 - classified below
            if attempt == RETRIES or not is_transient(e):
                raise (explain_error or explain)(e, what, revision) from e
            wait = BACKOFF_S * 2 ** (attempt - 1)
            log(f"{what}: {describe(e)}; retrying in {wait:g} s (try {attempt + 1} of {RETRIES}, {kept})")
            time.sleep(wait)
    raise AssertionError("unreachable")


def is_transient(e: Exception) -> bool:
    """Worth another try: a dropped or refused connection, a timeout, or a 5xx/429 answer."""
    from huggingface_hub import errors as hf
    from requests import exceptions as rq

    if isinstance(e, (hf.RepositoryNotFoundError, hf.EntryNotFoundError, hf.RevisionNotFoundError)) and not isinstance(
        e, hf.LocalEntryNotFoundError
    ):
        return False
    if isinstance(e, (rq.ChunkedEncodingError, rq.ConnectionError, rq.Timeout, hf.LocalEntryNotFoundError)):
        return True
    status = getattr(getattr(e, "response", None), "status_code", None)
    return isinstance(e, hf.HfHubHTTPError) and status is not None and (status >= 500 or status == 429)


def describe(e: Exception) -> str:
    status = getattr(getattr(e, "response", None), "status_code", None)
    return f"HTTP {status}" if status else type(e).__name__


def explain(e: Exception, what: str, revision: str | None = None) -> StageFailed:
    """An exception from huggingface_hub as a StageFailed that says what to do. Never includes HF_TOKEN."""
    from huggingface_hub import errors as hf
    from requests import exceptions as rq

    repo_id = "/".join(what.split("/")[:2]).split(" ")[0]
    if isinstance(e, hf.GatedRepoError):
        msg = (
            f"{repo_id} is gated: accept its license on https://huggingface.co/{repo_id} while logged in, then "
            "set HF_TOKEN to a token of that account and run again."
        )
    elif isinstance(e, hf.RepositoryNotFoundError):
        msg = (
            f"repository {repo_id} was not found, or it is private and HF_TOKEN is missing or has no access. "
            "Check the name, HF_ENDPOINT and HF_TOKEN, and run again."
        )
    elif isinstance(e, hf.RevisionNotFoundError):
        msg = f"{what}: revision {revision or '(requested)'} does not exist in {repo_id}. Check --revision."
    elif isinstance(e, (hf.LocalEntryNotFoundError, rq.ConnectionError, rq.Timeout)):
        # LocalEntryNotFoundError first: it is a subclass of EntryNotFoundError
        msg = (
            f"could not reach the Hugging Face hub for {what} (network down, or HF_ENDPOINT wrong?). Run the "
            "same command again when the network is back: finished files are kept and a partial one resumes. "
            "With every file already present, --offline needs no network."
        )
    elif isinstance(e, hf.EntryNotFoundError):
        msg = f"{what} was not found in {repo_id} at revision {revision or 'main'}. Check --revision."
    elif isinstance(e, OSError) and getattr(e, "errno", None) == 28:
        msg = f"the disk is full while downloading {what}: free space, then run again (it resumes)."
    else:
        msg = (
            f"downloading {what} failed: {describe(e)}: {e}. Run the same command again: finished files are "
            "kept and a partial one resumes."
        )
    return StageFailed("download", msg)
