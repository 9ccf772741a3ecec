"""After training: share a run on the Hugging Face Hub (`--push_to_hub`)."""
