"""After training: render base vs LoRA side by side (`--generate`)."""
