"""HunyuanVideo 1.5's captioner: its text encoder file is a whole Qwen2.5-VL 7B Instruct (vision tower and LM head
included; musubi-tuner loads the same file with `load_qwen2_5_vl` for its own captioner), so captions cost no extra
weights, only the processor's small files of `Qwen/Qwen2.5-VL-7B-Instruct` (about 25 MB).

The default instructions ask for captions in the shape of HV1.5's own prompts. Drawn from: the aspects HV1.5's
text-encoder system prompt lists (musubi hunyuan_video_1_5_text_encoder.py PROMPT_TEMPLATE_VIDEO: content, objects
with colour/shape/texture/text, actions and their order, background, light, style, camera angles and movements),
the formula of Tencent's HunyuanVideo 1.5 Prompt Handbook (subject + motion + scene + shot type + camera movement +
lighting + style + atmosphere), and musubi's caption_images_by_qwen_vl.py (visible text quoted exactly). HV1.5's
byT5 encoder renders only quoted text, so nothing else may be quoted; 80-150 words stay far under the 1024 tokens
the text encoder keeps.
"""

from __future__ import annotations

from ...captioning.spec import CaptionModel
from .catalog import TOKENIZERS

PROCESSOR_REPO = "Qwen/Qwen2.5-VL-7B-Instruct"
PROCESSOR_FILES = (
    "preprocessor_config.json",
    "chat_template.json",
    "generation_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
)

_RULES = (
    "Any text visible in the {kind} is written exactly as it appears, inside double quotes; put nothing else in "
    "quotes. Describe only what can be seen: do not guess names, places, intentions or sounds, and do not mention "
    "the {kind} itself. Write plain sentences, no lists, headings or line breaks, about 80 to 150 words."
)

VIDEO_PROMPT = (
    "Write one paragraph in English that describes this video as a prompt for a text-to-video model. Begin "
    'directly with the shot, for example "A medium close-up shot of", never with "The video shows" or "In this '
    'video". Describe, in this order: the shot size and camera angle; the main subject and its appearance '
    "(clothing, colours, shapes, materials); what happens, action after action in the order it happens, joined "
    'with "then"; the background and setting; how the camera moves (it stays still, pans, tilts, tracks, zooms, '
    "orbits); the lighting; and the overall visual style (for example photorealistic, anime, 3D render, film "
    "grain). " + _RULES.format(kind="video")
)

IMAGE_PROMPT = (
    "Write one paragraph in English that describes this image as a prompt for a text-to-image model. Begin "
    'directly with the shot, for example "A close-up photo of", never with "The image shows" or "In this image". '
    "Describe, in this order: the shot size and camera angle; the main subject and its appearance (clothing, "
    "colours, shapes, materials); its pose or what it is doing; the background and setting; the lighting; and the "
    "overall visual style (for example photorealistic, anime, 3D render, film grain). " + _RULES.format(kind="image")
)

CAPTIONER = CaptionModel(
    weight_component="text_encoder",  # catalog.py: split_files/text_encoders/qwen_2.5_vl_7b.safetensors
    processor_repo_id=PROCESSOR_REPO,
    processor_files=PROCESSOR_FILES,
    prompts={"video": VIDEO_PROMPT, "image": IMAGE_PROMPT},
    # musubi's load_qwen2_5_vl builds Qwen/Qwen-Image's tokenizer, which HV1.5's text-encoder stage loads too
    loader_tokenizer=next(t for t in TOKENIZERS if t.repo_id == "Qwen/Qwen-Image"),
)
