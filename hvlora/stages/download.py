"""Stage 1: make every model file the task and DiT variant need present and verified (the family's catalog lists
them).

- A file recorded in MODELS_DIR/manifest.json with the same size and mtime is taken as it is: no network, no hash.
- Any other file is asked about (HEAD: commit, ETag, size); the missing bytes are compared with the free disk
  before anything is fetched; then it is downloaded into MODELS_DIR/<repo_id>/<path> with huggingface_hub (resuming
  a partial file, even one left by a killed process), hashed, and checked against the hub's ETag (sha256 of an LFS
  file). A mismatch deletes the file and downloads it again once; a second mismatch fails, naming the file.
- A model folder (WeightFolder: files musubi loads with from_pretrained(path)) is its listed files, each fetched
  and verified as above; a catalog file that holds the folder's weights (its `shared` file, e.g. the Qwen2.5-VL file
  another family uses) is linked in as model.safetensors after its header is checked against the folder's index,
  else the folder's own shards are fetched (weights/folders.py).
- The tokenizers musubi loads by repo id go into the HF cache (HF_HOME), so later stages run offline; so do
  the captioner's processor files when captions are generated (--missing_caption generate, --caption_only).
- --caption_only fetches only the file the captioner loads (the family's Qwen2.5-VL), not the DiT or VAE.
- --offline / --skip_download: no network; every file must be present and pass the quick check (or a hash against
  what huggingface_hub recorded when it downloaded it). --verify_weights re-hashes every file.
HF_ENDPOINT, HF_TOKEN and HF_HOME are honoured (read from ctx.env when the stage runs); HF_TOKEN is never logged.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..core.config import Settings
from ..core.context import RunContext
from ..core.errors import StageFailed, UserError
from ..core.fsutil import human_bytes
from ..families import Family
from ..weights import folders, hub
from ..weights.files import SINGLE_WEIGHTS_NAME, TokenizerRepo, WeightFile, WeightFolder
from ..weights.manifest import Manifest, hashes, matches_etag, record_for

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


def weight_files(s: Settings) -> dict[str, WeightFile | WeightFolder]:
    """component -> file this run needs: the family's for the task and DiT variant, or with --caption_only the
    captioner's only."""
    files = s.family.weights_for(s.task, s.dit_variant)
    if s.caption_only and s.family.captioner is not None:
        return {c: w for c, w in files.items() if c == s.family.captioner.weight_component}
    return files


def tokenizer_repos(s: Settings) -> tuple[TokenizerRepo, ...]:
    """The repos fetched into the HF cache: the family's tokenizers, and when captions are generated the captioner's
    processor files and the tokenizer its loader builds (unless the family's tokenizers hold that repo already)."""
    captioner = s.family.captioner
    if not s.generates_captions or captioner is None:
        return s.family.tokenizers
    files = captioner.processor_files
    extra = [TokenizerRepo(captioner.processor_repo_id, files, files, "caption processor")]
    extra += [captioner.loader_tokenizer] if captioner.loader_tokenizer is not None else []
    have = {t.repo_id for t in s.family.tokenizers}
    return (*s.family.tokenizers, *(t for t in extra if t.repo_id not in have))


def presence(
    family: Family,
    task: str,
    models_dir: Path,
    env: dict[str, str],
    variant: str | None = None,
    tokenizers: tuple[TokenizerRepo, ...] | None = None,
) -> Presence:
    """Check, without network or hashing, which of the family's weight files for `task` and the DiT `variant`
    (None: the family's default), and which `tokenizers` (None: the family's), are on disk."""
    present, missing = [], []
    manifest = Manifest(models_dir)
    entries = family.weights_for(task, variant or family.defaults["dit_variant"])
    weights = {comp: w.local_path(models_dir) for comp, w in entries.items()}
    for label, wf in _parts(entries).items():
        path = wf.local_path(models_dir)
        state = "verified" if manifest.quick_ok(wf.key, path) else "not verified yet"
        (present if path.is_file() else missing).append(f"{label}: {path}" + (f" ({state})" if path.is_file() else ""))
    cache = hub_cache_dir(env)
    for tok in tokenizers if tokenizers is not None else family.tokenizers:
        absent = _missing_tokenizer_files(tok, cache)
        desc = f"{tok.component} {tok.repo_id} in {cache}"
        (missing if absent else present).append(desc + (f" (no {', '.join(absent)})" if absent else ""))
    return Presence(weights, present, missing)


def _parts(entries: dict[str, WeightFile | WeightFolder]) -> dict[str, WeightFile]:
    """Every file of a catalog selection, labelled by component ("text_encoder", or "text_encoder/config.json"
    for a file of a folder)."""
    out: dict[str, WeightFile] = {}
    for comp, w in entries.items():
        for part in w.parts():
            label = comp if isinstance(w, WeightFile) else f"{comp}/{part.filename.rsplit('/', 1)[-1]}"
            out[label] = part
    return out


def _missing_tokenizer_files(tok: TokenizerRepo, cache: Path) -> list[str]:
    return [f for f, path in _tokenizer_paths(tok, cache).items() if path is None]


def _tokenizer_paths(tok: TokenizerRepo, cache: Path) -> dict[str, Path | None]:
    """Each required tokenizer file's path in the HF cache (None when absent)."""
    from huggingface_hub import try_to_load_from_cache

    found = {f: try_to_load_from_cache(tok.repo_id, f, cache_dir=cache) for f in tok.required_files}
    return {f: Path(p) if isinstance(p, str) else None for f, p in found.items()}


def _corrupt_tokenizer_files(tok: TokenizerRepo, cache: Path) -> list[Path]:
    """Cached tokenizer files whose content does not match their ETag. The HF cache names every blob after its
    ETag (the snapshot entry is a link to blobs/<etag>), so the check needs no network; the files are small."""
    bad = []
    for path in _tokenizer_paths(tok, cache).values():
        if path is not None:
            blob = Path(os.path.realpath(path))
            if not matches_etag(*hashes(blob), blob.name):
                bad.append(path)
    return bad


def run(ctx: RunContext) -> dict:
    """Make the files present and verified; sets ctx.weights. Returns summary info (files, commits, bytes)."""
    s = ctx.settings
    entries = weight_files(s)
    ctx.weights = {comp: w.local_path(s.models_dir) for comp, w in entries.items()}
    fetcher = _Fetcher(ctx)
    if s.offline or s.skip_download:
        fetcher.check_offline(entries)
        downloaded = False
    else:
        fetcher.fetch(entries)
        downloaded = True
    return {
        "downloaded": downloaded,
        "hub_cache": str(fetcher.cache),
        "bytes_fetched": fetcher.bytes_fetched,
        "repaired": fetcher.repaired,
        "files": {
            label: {"path": str(wf.local_path(s.models_dir)), "commit": r.commit, "sha256": r.sha256}
            for label, wf in _parts(entries).items()
            if (r := fetcher.manifest.get(wf.key)) is not None
        },
        **({"shared": fetcher.shared} if fetcher.shared else {}),
    }


class _Fetcher:
    """The download stage's work for one run."""

    def __init__(self, ctx: RunContext):
        self.ctx, self.s, self.log = ctx, ctx.settings, ctx.log(NAME)
        self.manifest = Manifest(self.s.models_dir)
        self.endpoint = ctx.env.get("HF_ENDPOINT") or None
        self.token = ctx.env.get("HF_TOKEN") or None
        self.cache = hub_cache_dir(ctx.env)
        self.bytes_fetched = 0
        self.repaired: list[dict] = []  # files that failed their check and were fetched again (summary.json)
        self.shared: dict[str, str] = {}  # folder -> how its weights are stored (summary.json)

    # -- online -------------------------------------------------------------------------------------------------

    def fetch(self, entries: dict[str, WeightFile | WeightFolder]) -> None:
        """Every file of the selection present and verified, folders assembled, tokenizers in the HF cache."""
        self._fetch_files(list(_parts(entries).values()))
        for w in entries.values():
            if isinstance(w, WeightFolder) and w.shared is not None:
                self._assemble(w)
        for tok in tokenizer_repos(self.s):
            self._fetch_tokenizer(tok)
        for r in self.repaired:
            self.log(f"repaired: {r['file']} failed its sha256 check and was fetched again")

    def _assemble(self, folder: WeightFolder) -> None:
        """Link the folder's shared file in as model.safetensors when it can stand in for the folder's shards (its
        header checked against the folder's index), else fetch the shards and say why."""
        md = self.s.models_dir
        here, shared = folder.local_path(md) / SINGLE_WEIGHTS_NAME, folder.shared.local_path(md)
        problem = folders.standin_problem(shared, folder.local_path(md) / folder.index)
        if problem is None:
            try:
                kind = "already linked" if folders.links_to(here, shared) else folders.link(here, shared) + " link"
                self.shared[folder.component] = f"{here} -> {shared} ({kind})"
                self.log(f"{folder.component}: {here} -> {folder.shared.key} ({kind}; the weights are stored once)")
                return
            except OSError as e:
                problem = f"no link can be made in {here.parent} ({e.strerror or e})"
        self.log(
            f"{folder.component}: {folder.shared.key} cannot stand in for {folder.repo_id}'s weights: {problem}; "
            "fetching its own files instead"
        )
        if here.is_symlink() or folders.links_to(here, shared):
            here.unlink()  # our link; the folder's own shards are loaded through the index instead
        self.shared[folder.component] = f"{folder.repo_id}'s own shards ({problem})"
        self._fetch_files(list(folder.shard_parts()))

    def _fetch_files(self, files: list[WeightFile]) -> None:
        files = list({wf.key: wf for wf in files}.values())  # a file two entries share is fetched once
        todo = [wf for wf in files if not self._trusted(wf)]
        remote = {
            wf.key: hub.remote_file(
                wf.repo_id, wf.filename, self.s.revision_for(wf.repo_id), self.endpoint, self.token, self.log
            )
            for wf in todo
        }
        todo = [wf for wf in todo if not self._on_disk_matches(wf, remote[wf.key])]
        missing = {wf.key: self._bytes_to_fetch(wf, remote[wf.key]) for wf in todo}
        self._check_disk(sum(missing.values()))
        remaining = sum(missing.values())
        for i, wf in enumerate(todo, 1):
            self.log(
                f"[{i}/{len(todo)}] {wf.component}: {wf.key} ({human_bytes(remote[wf.key].size)}); "
                f"{human_bytes(remaining)} still to fetch"
            )
            self._fetch_verified(wf, remote[wf.key])
            remaining -= missing[wf.key]
            self.bytes_fetched += missing[wf.key]
        for wf in files:
            if wf not in todo:
                self.log(f"{wf.component}: {wf.local_path(self.s.models_dir)} (verified earlier)")

    def _trusted(self, wf: WeightFile) -> bool:
        """Present and recorded (quick check), or with --verify_weights, present and re-hashed to its record."""
        path = wf.local_path(self.s.models_dir)
        if not self.manifest.quick_ok(wf.key, path, self.s.revision_for(wf.repo_id)):
            return False
        if self.s.verify_weights:
            return self._rehash_ok(wf, path)
        return True

    def _on_disk_matches(self, wf: WeightFile, remote: hub.RemoteFile) -> bool:
        """A file on disk that failed the quick check (never recorded, or its size or mtime changed) is hashed
        against the hub's ETag: a match is recorded without a download; a mismatch is said (which file, expected
        and found hash), recorded for summary.json, and the file deleted so that it is fetched again."""
        path = wf.local_path(self.s.models_dir)
        if not path.is_file():
            return False
        self.log(f"{wf.key}: on disk but not verified (new, or its size or mtime changed): verifying sha256")
        sha256, git_sha1 = hashes(path)
        size = path.stat().st_size
        if matches_etag(sha256, git_sha1, remote.etag) and (not remote.size or size == remote.size):
            revision = self.s.revision_for(wf.repo_id)
            self.manifest.put(wf.key, record_for(path, wf.repo_id, wf.filename, revision, remote.commit, sha256))
            self.log(f"{wf.key}: matches the hub; recorded, nothing to download")
            return True
        self._repair(wf, path, remote.etag, sha256, f"its content differs from the hub's ({size} bytes on disk)")
        return False

    def _repair(self, wf: WeightFile, path: Path, expected: str, found: str, why: str) -> None:
        """Say that `path` failed its check, record it for summary.json, and delete it so it is fetched again."""
        self.log(
            f"{wf.key}: sha256 check FAILED: expected {expected}, found {found} ({why}); {path} is deleted and "
            "fetched again",
            err=True,
        )
        self.repaired.append({"file": str(path), "expected_sha256": expected, "found_sha256": found})
        self.manifest.forget(wf.key)
        hub.forget_local(self.s.models_dir / wf.repo_id, wf.filename)

    def _rehash_ok(self, wf: WeightFile, path: Path) -> bool:
        self.log(f"{wf.key}: hashing (--verify_weights)")
        sha256, _ = hashes(path)
        expected = self.manifest.get(wf.key).sha256
        if sha256 == expected:
            return True
        self._repair(wf, path, expected, sha256, "the file changed on disk since it was downloaded")
        return False

    def _bytes_to_fetch(self, wf: WeightFile, remote: hub.RemoteFile) -> int:
        local_dir = self.s.models_dir / wf.repo_id
        return max(0, remote.size - hub.partial_bytes(local_dir, wf.filename, remote.etag))

    def _check_disk(self, needed: int) -> None:
        target = self.s.models_dir
        target.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(target).free
        if needed > free:
            raise UserError(
                f"the model files still to download need {human_bytes(needed)} but {target} has only "
                f"{human_bytes(free)} free. Free space there, or pass --models_dir on a larger disk."
            )

    def _fetch_verified(self, wf: WeightFile, remote: hub.RemoteFile) -> None:
        local_dir, revision = self.s.models_dir / wf.repo_id, self.s.revision_for(wf.repo_id)
        for attempt in (1, 2):
            # A retry after a mismatch starts clean (forget_local below) and may itself resume after a drop.
            path = hub.download(
                wf.repo_id, wf.filename, local_dir, revision, self.cache, self.endpoint, self.token, self.log
            )
            self.log(f"{wf.key}: verifying sha256")
            sha256, git_sha1 = hashes(path)
            if matches_etag(sha256, git_sha1, remote.etag) and (not remote.size or path.stat().st_size == remote.size):
                self.manifest.put(wf.key, record_for(path, wf.repo_id, wf.filename, revision, remote.commit, sha256))
                return
            self.log(
                f"{wf.key}: content does not match the hub: expected {remote.etag} ({remote.size} bytes), found "
                f"sha256 {sha256} ({path.stat().st_size} bytes); "
                + ("downloading it again" if attempt == 1 else "giving up")
            )
            self.repaired.append(
                {"file": str(path), "expected_sha256": remote.etag, "found_sha256": sha256, "attempt": attempt}
            )
            hub.forget_local(local_dir, wf.filename)
        raise StageFailed(
            NAME,
            f"{wf.key} was downloaded twice and both copies differ from what the hub says it "
            "holds (sha256/size). The connection or a proxy corrupts data; run again later or from "
            "another network.",
        )

    def _fetch_tokenizer(self, tok: TokenizerRepo) -> None:
        if not _missing_tokenizer_files(tok, self.cache) and not _corrupt_tokenizer_files(tok, self.cache):
            self.log(f"{tok.component} {tok.repo_id}: in {self.cache}")
            return
        for attempt in (1, 2):
            self.log(f"{tok.component} {tok.repo_id} -> {self.cache}")
            hub.snapshot(
                tok.repo_id,
                tok.allow_patterns,
                self.s.revision_for(tok.repo_id),
                self.cache,
                self.endpoint,
                self.token,
                self.log,
                force=attempt == 2,
            )
            absent = _missing_tokenizer_files(tok, self.cache)
            if absent:  # offline, snapshot_download returns a cached snapshot folder without checking its files
                raise StageFailed(
                    NAME,
                    f"{tok.repo_id}: {', '.join(absent)} missing from {self.cache} and the hub "
                    "could not be asked for it. Run the same command again when the network "
                    "is back.",
                )
            bad = _corrupt_tokenizer_files(tok, self.cache)
            if not bad:
                return
            for p in bad:  # the blob (named after its ETag) and the snapshot's link to it
                blob = Path(os.path.realpath(p))
                sha256, git_sha1 = hashes(blob)
                kind, found = ("git sha1", git_sha1) if len(blob.name) == 40 else ("sha256", sha256)
                self.log(
                    f"tokenizer {tok.repo_id}: {p} {kind} check FAILED: expected {blob.name}, found {found}; "
                    + ("it is deleted and fetched again" if attempt == 1 else "giving up"),
                    err=True,
                )
                self.repaired.append({"file": str(p), "expected_sha256": blob.name, "found_sha256": found})
                blob.unlink(missing_ok=True)
                p.unlink(missing_ok=True)
        raise StageFailed(
            NAME,
            f"tokenizer files of {tok.repo_id} in {self.cache} differ from the hub after two "
            "downloads. Run again later or from another network.",
        )

    # -- offline ------------------------------------------------------------------------------------------------

    def check_offline(self, entries: dict[str, WeightFile | WeightFolder]) -> None:
        """Every file present and matching: the manifest's quick check, or (never verified) a hash against what
        huggingface_hub recorded when it downloaded the file; a folder with its shared file linked in (or its own
        shards). Raises UserError listing what is missing."""
        flag = "--offline" if self.s.offline else "--skip_download"
        files = list(_parts(entries).values())
        for w in entries.values():
            md = self.s.models_dir
            if isinstance(w, WeightFolder) and w.shared is not None:
                if not folders.links_to(w.local_path(md) / SINGLE_WEIGHTS_NAME, w.shared.local_path(md)):
                    files += w.shard_parts()  # not linked: the folder's own shards must be there
        missing = []
        for wf in files:
            path = wf.local_path(self.s.models_dir)
            if not path.is_file():
                missing.append(f"{wf.component}: {path}")
            elif not self.manifest.quick_ok(wf.key, path) or self.s.verify_weights:
                problem = self._verify_offline(wf, path)
                if problem:
                    missing.append(f"{wf.component}: {path} ({problem})")
        repos = tokenizer_repos(self.s)
        for tok in repos:
            absent = _missing_tokenizer_files(tok, self.cache)
            if absent:
                missing.append(f"{tok.component} {tok.repo_id} in {self.cache} (no {', '.join(absent)})")
            bad = [] if absent else _corrupt_tokenizer_files(tok, self.cache)
            if bad:
                missing.append(
                    f"tokenizer {tok.repo_id}: {', '.join(str(p) for p in bad)} (content differs from the hub's)"
                )
        if missing:
            raise UserError(
                f"{flag}: these model files are missing or do not pass the check:\n  "
                + "\n  ".join(missing)
                + f"\nRun once without {flag} (with network) to fetch them."
            )
        self.log(f"{flag}: all {len(files) + len(repos)} model files present and checked; nothing downloaded")

    def _verify_offline(self, wf: WeightFile, path: Path) -> str | None:
        """Hash the file and compare with the manifest, or with the ETag huggingface_hub stored beside it."""
        from huggingface_hub._local_folder import read_download_metadata

        record = self.manifest.get(wf.key)
        meta = read_download_metadata(self.s.models_dir / wf.repo_id, wf.filename)
        if record is None and meta is None:
            return "not downloaded by this tool, cannot be checked offline"
        self.log(f"{wf.key}: hashing")
        sha256, git_sha1 = hashes(path)
        expected = record.sha256 if record is not None else meta.etag
        ok = sha256 == record.sha256 if record is not None else matches_etag(sha256, git_sha1, meta.etag)
        if not ok:
            return f"content differs from what was downloaded: expected sha256 {expected}, found {sha256}"
        revision = record.revision if record else self.s.revision_for(wf.repo_id)
        commit = record.commit if record else meta.commit_hash
        self.manifest.put(wf.key, record_for(path, wf.repo_id, wf.filename, revision, commit, sha256))
        return None
