"""HunyuanVideo 1.5 (tencent/HunyuanVideo-1.5, 8.3B): t2v and i2v LoRAs through musubi-tuner v0.3.4's hv_1_5_*
scripts. Its weights (catalog.py), musubi argv (musubi.py), presets and memory estimate (memory.py), ComfyUI
conversion check (comfyui.py), and musubi's dataset rules for its architecture (below, as cited)."""

from __future__ import annotations

from ...data.frames import FrameRules

# dataset/architectures.py ARCHITECTURE_HUNYUAN_VIDEO_1_5 ("hv15"); VideoDataset.TARGET_FPS_HUNYUAN_VIDEO_1_5;
# BucketSelector.RESOLUTION_STEPS_HUNYUAN_VIDEO_1_5; the VAE compresses 4 frames into one (4n+1 frames).
FRAMES = FrameRules(architecture="hv15", target_fps=24.0, reso_step=16, frame_step=4)
