"""HunyuanVideo 1.5's frame, bucket and sample rules, from musubi's code as cited (the family's FRAMES and SAMPLES;
a module of their own so that the generator can use them without importing the family's __init__)."""

from __future__ import annotations

from ...data.frames import FrameRules
from .. import SampleDefaults

# dataset/architectures.py ARCHITECTURE_HUNYUAN_VIDEO_1_5 ("hv15"); VideoDataset.TARGET_FPS_HUNYUAN_VIDEO_1_5;
# BucketSelector.RESOLUTION_STEPS_HUNYUAN_VIDEO_1_5; the VAE compresses 4 frames into one (4n+1 frames).
FRAMES = FrameRules(architecture="hv15", target_fps=24.0, reso_step=16, frame_step=4)
# HV1.5's inference defaults rather than musubi's generic ones (256x256, 1 frame, flow shift 14.5); samples need the
# VAE and both text encoders in the trainer, so they are on by default only above the 24 GB preset. The prompt keys
# hv_1_5_train_network's sampling reads (trainer_base.sample_image_inference).
SAMPLES = SampleDefaults(
    steps=20,
    guidance=6.0,
    flow_shift=7.0,
    video_frames=25,
    area=848 * 480,
    image_tasks=("i2v",),
    auto_above_preset=24,
    prompt_keys=("width", "height", "frame_count", "seed", "sample_steps", "discrete_flow_shift", "cfg_scale")
    + ("negative_prompt", "image_path"),
)
