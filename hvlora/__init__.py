"""hvlora: train a video model's LoRA (a family of hvlora/families, HunyuanVideo 1.5 by default) from a ZIP with
musubi-tuner v0.3.4 (see README.md)."""

__version__ = "0.1.0"
MUSUBI_COMMIT = "30c658c4f4b0bf05038b3346eff9670259b10fc7"  # v0.3.4, the engine the Dockerfile installs
