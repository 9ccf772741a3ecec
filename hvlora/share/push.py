"""`--push_to_hub REPO_ID`: upload a finished run to a Hugging Face model repo with huggingface_hub (family-agnostic).

What is uploaded (and nothing else): `NAME.safetensors`, its conversion when the family has one
(`NAME_comfyui.safetensors` for HunyuanVideo 1.5), `README.md` (the model card,
card.py), `loss.png`, the newest comparison of this exact LoRA (`compare/sheet.png` and its side-by-side files) or
else the samples' contact sheet `samples.png`, and with `--hub_include_captions` the training captions
(`captions.txt`). Never: the data, file names of the data, captions (unless asked; a comparison whose prompts are
captions is then left out too), the token, absolute paths (every text and safetensors header uploaded is checked).

How: `create_repo(exist_ok=True, private=not --hub_public)` (an existing public repo is refused without
--hub_public: nothing private is made public by accident), then one `create_commit` with the files. huggingface_hub
sends large files through the hub's LFS batch API first, and the hub answers files it already holds with nothing to
upload, so running the same command after a failure or a kill sends only what is missing; transient failures are
retried with backoff. HF_ENDPOINT and HF_TOKEN (or a saved `hf auth login` token) are honoured. RUN/hub.json
records the repo, its URL, the commit and the state ("uploading" until done), never the token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..compare import family, locate
from ..compare.generate import RECORD as COMPARE_RECORD
from ..core import runs
from ..core.config import Settings
from ..core.errors import StageFailed, UserError
from ..core.fsutil import atomic_write_json, human_bytes
from ..training import lorameta, outputs
from ..weights import hub
from . import card

HUB_RECORD = "hub.json"
NAME = "push_to_hub"


def push(s: Settings, run_dir: Path) -> str:
    """Upload the finished run in `run_dir` to `s.push_to_hub`; returns the repo URL (also printed). Raises
    UserError (no token, an unfinished run, a public repo without --hub_public, a leak found) or StageFailed (the
    hub refused or could not be reached after retries; its message was printed)."""
    token = _token()
    trained = locate.from_run(run_dir)
    files = collect(trained, s.hub_include_captions)
    _check_no_leaks(files, token, _private_roots(s, run_dir))
    print(f"\n[push_to_hub] {s.push_to_hub}: {len(files)} files ({_size(files)})", flush=True)
    for path_in_repo in files:
        print(f"  {path_in_repo}", flush=True)
    mark(run_dir, s.push_to_hub, "uploading")
    try:
        url, commit = _upload(s, token, files)
    except StageFailed as e:
        mark(run_dir, s.push_to_hub, "failed", error=str(e))
        print(f"\npush_to_hub FAILED: {e}", file=sys.stderr, flush=True)
        raise
    mark(run_dir, url_repo(url), "done", url=url, commit=commit, private=not s.hub_public, files=sorted(files))
    print(f"\nUploaded to {url} (commit {commit[:12]})", flush=True)
    return url


def url_repo(url: str) -> str:
    """NAMESPACE/NAME from a repo URL (ENDPOINT/NAMESPACE/NAME)."""
    return "/".join(url.rstrip("/").split("/")[-2:])


def _token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise UserError(
            "--push_to_hub needs a Hugging Face token with write access: create one at "
            "https://huggingface.co/settings/tokens and set HF_TOKEN (docker compose passes it through)"
        )
    return token


def collect(trained: locate.Trained, include_captions: bool) -> dict[str, Path | bytes]:
    """Path in the repo -> local file (or bytes) for everything uploaded, README.md last. Raises UserError when
    the run lacks its family's converted file."""
    run_dir, name = trained.run_dir, trained.output_name
    assert run_dir is not None
    files: dict[str, Path | bytes] = {f"{name}.safetensors": trained.lora}
    converter = family.of(trained.metadata).converter  # a family without one publishes the musubi file only
    if converter is not None:
        converted = run_dir / "checkpoints" / f"{name}{converter.suffix}.safetensors"
        if not converted.is_file():
            raise UserError(
                f"{run_dir} has no {converted.name}: the run did not finish its {converter.label} conversion"
            )
        files[converted.name] = converted
    media = card.Media()
    if (run_dir / "loss.png").is_file():
        files["loss.png"] = run_dir / "loss.png"
        media = _with(media, loss="loss.png")
    comparison = newest_comparison(trained)
    if comparison is not None and (include_captions or not _shows_captions(comparison["record"])):
        media = _add_comparison(files, media, comparison, include_captions)
    else:
        if comparison is not None:
            print(
                "note: the newest comparison's prompts are captions of your data, so it is not uploaded "
                "(--hub_include_captions uploads it; or make one with --generate --prompt TEXT)",
                flush=True,
            )
        if (run_dir / "samples.png").is_file():
            files["samples.png"] = run_dir / "samples.png"
            media = _with(media, samples="samples.png")
    if include_captions:
        captions = [f["caption"] for f in locate.trained_files(run_dir) if f.get("caption")]
        files["captions.txt"] = ("\n".join(captions) + "\n").encode("utf-8")
        media = _with(media, captions="captions.txt")
    readme = card.build(trained, family.hub_facts(trained.metadata), media)
    files["README.md"] = readme.encode("utf-8")
    return files


def _with(media: card.Media, **changes: Any) -> card.Media:
    return dataclasses.replace(media, **changes)


def newest_comparison(trained: locate.Trained) -> dict | None:
    """The newest finished comparison (RUN/compare/*/compare.json, status done) of exactly this LoRA (same
    sha256): {"folder", "record"}; None if there is none."""
    assert trained.run_dir is not None
    digest = None
    for record_path in sorted((trained.run_dir / "compare").glob(f"*/{COMPARE_RECORD}"), reverse=True):
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("status") != "done":
            continue
        digest = digest or outputs.sha256_file(trained.lora)
        if record.get("lora", {}).get("sha256") == digest:
            return {"folder": record_path.parent, "record": record}
    return None


def _shows_captions(record: dict) -> bool:
    return any(item.get("source") == "caption" for item in record.get("items", []))


def _add_comparison(files: dict, media: card.Media, comparison: dict, include_captions: bool) -> card.Media:
    folder, record = comparison["folder"], comparison["record"]
    files["compare/sheet.png"] = folder / record["sheet"]
    pairs = []
    for item in record["items"]:
        path = f"compare/{item['side_by_side']}"
        files[path] = folder / item["side_by_side"]
        shown = include_captions or item.get("source") != "caption"
        pairs.append((path, item["prompt"] if shown else None, item["seed"]))
    inf = record.get("inference", {})
    settings = (
        f"{inf.get('width')}x{inf.get('height')}, {inf.get('video_length')} frame(s), {inf.get('infer_steps')} steps, "
        f"guidance {inf.get('guidance_scale')}, flow shift {inf.get('flow_shift')}, LoRA x{inf.get('lora_multiplier')}"
    )
    return _with(media, sheet="compare/sheet.png", pairs=pairs, settings=settings)


def _private_roots(s: Settings, run_dir: Path) -> list[str]:
    """Absolute paths that must not appear in anything uploaded: the home, data, models, output and run folders."""
    roots = {str(Path.home()), str(s.data_dir), str(s.models_dir), str(s.output_dir), str(run_dir.resolve())}
    return sorted(r for r in roots if len(r) > 1)


def _check_no_leaks(files: dict[str, Path | bytes], token: str, roots: list[str]) -> None:
    """Refuse to upload text (README.md, captions) or a safetensors header that holds the token or an absolute
    path of this machine. Media pixels are ours and hold no text."""
    for path_in_repo, src in files.items():
        if isinstance(src, bytes):
            text = src.decode("utf-8", "replace")
        elif path_in_repo.endswith(".safetensors"):
            text = json.dumps(lorameta.read_metadata(src))
        else:
            continue
        leak = "the Hugging Face token" if token in text else next((r for r in roots if r in text), None)
        if leak:
            raise UserError(f"{path_in_repo} would upload {leak}: nothing was uploaded (please report this)")


def _size(files: dict[str, Path | bytes]) -> str:
    return human_bytes(sum(len(v) if isinstance(v, bytes) else v.stat().st_size for v in files.values()))


def _upload(s: Settings, token: str, files: dict[str, Path | bytes]) -> tuple[str, str]:
    """create_repo + create_commit with retries; returns (repo URL, commit id). Raises UserError for a public repo
    without --hub_public, StageFailed for hub errors."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    repo_id = s.push_to_hub

    def log(message: str) -> None:
        print(message, flush=True)

    def attempt(call, what):
        return hub.retrying(call, what, log, explain_error=_explain, kept="files already uploaded are not sent again")

    url = attempt(lambda: api.create_repo(repo_id, private=not s.hub_public, exist_ok=True), f"create {repo_id}")
    repo_id = url.repo_id
    info = attempt(lambda: api.repo_info(repo_id), f"{repo_id} info")
    if not info.private and not s.hub_public:
        raise UserError(
            f"{repo_id} exists and is public; without --hub_public nothing is uploaded to a public repo. Pass "
            "--hub_public, or another (new, private) REPO_ID"
        )
    if info.private and s.hub_public:
        log(f"note: {repo_id} already exists and is private: it stays private (change it in its settings)")
    operations = [
        CommitOperationAdd(path_in_repo=p, path_or_fileobj=src if isinstance(src, bytes) else str(src))
        for p, src in files.items()
    ]
    message = f"Upload {next(iter(files)).removesuffix('.safetensors')} LoRA (hvlora)"
    commit = attempt(lambda: api.create_commit(repo_id, operations=operations, commit_message=message), repo_id)
    return str(url), commit.oid


def _explain(e: Exception, what: str, _revision: str | None) -> StageFailed:
    """A failed hub call in words that say what to do. Never includes the token."""
    from huggingface_hub import errors as hf
    from requests import exceptions as rq

    status = getattr(getattr(e, "response", None), "status_code", None)
    if status in (401, 403) or isinstance(e, hf.RepositoryNotFoundError):
        msg = (
            f"{what}: the hub refused the token (HTTP {status}): HF_TOKEN needs write access to the namespace "
            "(a 'write' or fine-grained token with repo write permission)"
        )
    elif isinstance(e, (rq.ConnectionError, rq.Timeout)):
        msg = (
            f"{what}: could not reach the Hugging Face hub (network down, or HF_ENDPOINT wrong?). Run the same "
            "command again: files already uploaded are not sent again"
        )
    else:
        msg = f"{what} failed: {hub.describe(e)}: {e}. Run the same command again: files already uploaded are kept"
    return StageFailed(NAME, msg)


def mark(run_dir: Path, repo_id: str, state: str, **extra: Any) -> dict:
    """RUN/hub.json: the upload's state ("pending" when a training run that will push starts, "uploading",
    "failed", "done"), the repo, and once done its URL and commit; never the token."""
    record = {
        "repo_id": repo_id,
        "status": state,
        "updated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    atomic_write_json(run_dir / HUB_RECORD, record)
    return record


def pending_run(s: Settings, identity: dict) -> Path | None:
    """The run the same training command with --push_to_hub made whose upload did not finish: the newest finished
    run of output_name, if its data and training settings equal `identity` (runs.py) and hub.json says its upload
    to this repo is not done. None otherwise (also with --resume or --new_run, which choose for themselves)."""
    if not s.push_to_hub or s.resume is not None or s.new_run:
        return None
    for run in sorted((s.output_dir / "runs").glob(f"{s.output_name}-*"), reverse=True):
        if locate.status(run) != "succeeded" or not (run / runs.RUN_RECORD).is_file():
            continue
        try:
            recorded = json.loads((run / runs.RUN_RECORD).read_text(encoding="utf-8")).get("identity", {})
        except (OSError, ValueError):
            return None
        same = not runs.differences(recorded, identity)
        return run if same and pending(run, s.push_to_hub) else None
    return None


def pending(run_dir: Path, repo_id: str) -> bool:
    """Whether the upload of `run_dir` to `repo_id` was asked for and has not finished (hub.json not "done")."""
    try:
        record = json.loads((run_dir / HUB_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return record.get("status") != "done" and repo_id in (record.get("repo_id"), url_repo(record.get("url", "")))
