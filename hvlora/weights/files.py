"""What a family's weight catalog is made of: single model files (downloaded, verified and passed to musubi by
flag), model folders (several files of one repo that musubi loads with transformers' `from_pretrained(path)`, passed
as one path) and tokenizer repos (fetched into the Hugging Face cache, where transformers finds them offline)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WeightFile:
    """One file: `component` (the role the family's scripts give it: dit, vae, text_encoder, ...), where it lives on
    the hub, the tasks that need it, the musubi flag that takes its path, its size in bytes when known, the format
    musubi expects, and for DiTs the --dit_variant it belongs to."""

    component: str
    repo_id: str
    filename: str
    tasks: tuple[str, ...]
    flag: str
    size: int | None
    format: str
    variant: str | None = None

    @property
    def key(self) -> str:
        """'<repo_id>/<filename>': how the manifest and messages name the file."""
        return f"{self.repo_id}/{self.filename}"

    def local_path(self, models_dir: Path) -> Path:
        """Where it is stored: MODELS_DIR/<repo_id>/<filename> (huggingface_hub's local_dir layout)."""
        return models_dir / self.repo_id / self.filename

    def parts(self) -> tuple[WeightFile, ...]:
        """The files that make it up (itself): what is downloaded, verified and keys a cache."""
        return (self,)

    def state_dict_file(self, models_dir: Path) -> Path:
        """The path a single-file state-dict loader reads (musubi's load_split_weights): the file itself."""
        return self.local_path(models_dir)


# transformers' from_pretrained reads a folder's weights from this one file when it is there, before any index.
SINGLE_WEIGHTS_NAME = "model.safetensors"


@dataclass(frozen=True)
class WeightFolder:
    """A model folder musubi loads with transformers' `from_pretrained(path)`: one path (MODELS_DIR/<repo_id>, the
    folder hf_hub_download's local_dir makes) for the files it reads, and nothing else of the repo.

    - `files`: fetched always (configs, tokenizer files, the shard index; small, or a single weights file);
    - `shards`: the repo's own weight files, fetched only when no `shared` file stands in for them;
    - `shared`: another catalog entry's single safetensors file holding the same tensors under the same names (e.g.
      a repackaged copy another family downloads anyway): it is linked into the folder as `model.safetensors`, which
      transformers loads before any index, so the weights are stored once. The download stage checks that the file
      holds exactly the tensors of the folder's `index` and that transformers accepts its header; else the shards
      are fetched (and the reason said).
    `tasks`, `flag`, `size` (bytes of the weights), `format` and `variant` as for WeightFile."""

    component: str
    repo_id: str
    files: tuple[str, ...]
    tasks: tuple[str, ...]
    flag: str
    size: int | None
    format: str
    shards: tuple[str, ...] = ()
    shared: WeightFile | None = None
    index: str = "model.safetensors.index.json"
    variant: str | None = None

    @property
    def filename(self) -> str:
        """The folder inside the repo ("": the repo's root), for messages and metadata."""
        return ""

    @property
    def key(self) -> str:
        """'<repo_id>/': how messages name the folder (its files are recorded one by one)."""
        return f"{self.repo_id}/"

    def local_path(self, models_dir: Path) -> Path:
        """The folder musubi gets: MODELS_DIR/<repo_id>."""
        return models_dir / self.repo_id

    def member(self, filename: str) -> WeightFile:
        """One file of the folder as a WeightFile (downloaded and verified like any other)."""
        return WeightFile(self.component, self.repo_id, filename, self.tasks, self.flag, None, f"{self.format}: file")

    def parts(self) -> tuple[WeightFile, ...]:
        """The files it is made of: `files` and the shared file (the shards when there is none). What is fetched
        first and what keys a cache (the shards hold the same tensors as the shared file)."""
        own = tuple(self.member(f) for f in self.files)
        return own + ((self.shared,) if self.shared else self.shard_parts())

    def state_dict_file(self, models_dir: Path) -> Path:
        """The one path a single-file state-dict loader reads for the folder's weights (musubi's load_split_weights,
        e.g. load_qwen2_5_vl, which reads every shard when given a name ending -00001-of-0000N.safetensors):
        model.safetensors when it is there (the shared file linked in) or the folder has no shards, else the first
        shard."""
        folder = self.local_path(models_dir)
        single = folder / SINGLE_WEIGHTS_NAME
        return single if single.exists() or not self.shards else folder / self.shards[0]

    def shard_parts(self) -> tuple[WeightFile, ...]:
        """The repo's own weight files (fetched when the shared file cannot stand in)."""
        return tuple(self.member(f) for f in self.shards)


@dataclass(frozen=True)
class TokenizerRepo:
    """A tokenizer musubi loads with `from_pretrained(repo_id)`: `allow_patterns` are fetched into the HF cache;
    `required_files` are what must be there for an offline load."""

    repo_id: str
    allow_patterns: tuple[str, ...]
    required_files: tuple[str, ...]
    component: str = "tokenizer"
