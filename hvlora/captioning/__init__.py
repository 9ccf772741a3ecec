"""Captions generated for media that have none, with the Qwen2.5-VL a model family already downloads.

- spec.py: what a family gives the captioner (which weight file holds the Qwen2.5-VL, its processor files, the
  default instructions) and the fixed bounds (pixels per frame, frames per video);
- requests.py: what is captioned from each file (an image, or the frames of a video that will train) and the key a
  generated caption is kept by (the media's content and the captioning settings);
- overlay.py: where captions live: the store of generated captions (OUTPUT_DIR/cache/captions/, by key) and the
  overlay the user reads and edits (OUTPUT_DIR/captions/<dataset>/, mirroring the dataset's paths, + captions.jsonl);
- worker.py + qwen_vl.py: the child process (musubi's interpreter and loader, transformers' Qwen2.5-VL processing)
  that loads the model once and captions every item;
- stages/caption.py runs it as a stage of the pipeline; data/preflight.py decides which caption each file gets.
"""
