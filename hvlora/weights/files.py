"""What a family's weight catalog is made of: single model files (downloaded, verified and passed to musubi by
flag) and tokenizer repos (fetched into the Hugging Face cache, where transformers finds them offline)."""

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


@dataclass(frozen=True)
class TokenizerRepo:
    """A tokenizer musubi loads with `from_pretrained(repo_id)`: `allow_patterns` are fetched into the HF cache;
    `required_files` are what must be there for an offline load."""

    repo_id: str
    allow_patterns: tuple[str, ...]
    required_files: tuple[str, ...]
    component: str = "tokenizer"
