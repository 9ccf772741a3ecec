"""Kandinsky 5's captioner: its text encoder is the whole Qwen2.5-VL-7B-Instruct (the Qwen folder of catalog.py,
whose weights are the single bf16 file HunyuanVideo 1.5 also uses, or the Instruct repo's own shards), so captions
cost no extra weights, only the processor's small files (about 25 MB). musubi's `load_qwen2_5_vl` reads the folder's
state_dict_file: the linked single file, or the first shard (it then reads all five); the key names are the same.

The default instructions ask for captions in the shape of Kandinsky 5's own prompts: the aspects its text encoder's
video template asks for (musubi kandinsky5/models/text_embedders.py Qwen2_5_VLTextEmbedder.PROMPT_TEMPLATE "video":
camera movement, zoom and view angle; the location, the main characters or objects and their actions; the
dynamism; the visual style, named as professional footage, user-generated content, animation, video game or screen
content; visual effects and transitions; the order of the key actions) and its "image" template (colour, shape, size,
texture, quantity, text and spatial relations of the objects and the background). Its text encoder keeps 256 tokens
of a caption (rules.QWEN_MAX_LENGTH): 60 to 150 words stay under that.

Where Qwen2.5-VL does not fit the GPU in bf16 (the memory plan's text_encoder_cpu: the 12 and 16 GB presets), the
captioner loads it in fp8 on the GPU (about 8.5 GB) rather than generating on the CPU.
"""

from __future__ import annotations

from ...captioning.spec import CaptionModel
from ...weights.files import TokenizerRepo
from . import catalog

# The processor reads the Qwen folder's small files but its model config and shard index (fetched into the HF cache
# as for HunyuanVideo 1.5's captioner: the same 25 MB).
PROCESSOR_FILES = tuple(
    f for f in catalog.qwen_folder().files if f not in ("config.json", "model.safetensors.index.json")
)
# musubi's load_qwen2_5_vl builds the Qwen2 tokenizer of Qwen/Qwen-Image (qwen_image_utils.QWEN_IMAGE_ID, subfolder
# tokenizer) from the HF cache whatever it loads; Kandinsky 5's own scripts never need it.
LOADER_TOKENIZER = TokenizerRepo(
    "Qwen/Qwen-Image",
    ("tokenizer/*",),
    ("tokenizer/tokenizer_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt"),
    "caption loader's tokenizer",
)

_RULES = (
    "Describe only what can be seen: do not guess names, places, intentions or sounds, and do not mention the "
    "{kind} itself. Write any visible text exactly as it appears, in double quotes. Write plain sentences, no "
    "lists, headings or line breaks, about 60 to 150 words."
)

VIDEO_PROMPT = (
    "Write one paragraph in English that describes this video as a prompt for a text-to-video model. Begin "
    'directly with the scene, never with "The video shows" or "In this video". Describe, in this order: the '
    "location; the main characters or objects and their appearance (colours, shapes, materials); their actions, "
    'one after another in the order they happen, joined with "then", and how dynamic the scene is; how the camera '
    "moves or shakes, its zoom and view angle, and whether it follows the subject; the visual style (professional "
    "footage, user-generated content, a kind of animation, a video game or screen content); and any visual effects, "
    "post-processing or transitions. " + _RULES.format(kind="video")
)

IMAGE_PROMPT = (
    "Write one paragraph in English that describes this image as a prompt for a text-to-image model. Begin "
    'directly with the subject, never with "The image shows" or "In this image". Describe the objects and the '
    "background: their colour, shape, size, texture and number, any text, and where they are relative to each "
    "other; then the view angle, the lighting and the visual style (a photograph, a kind of animation, a video game "
    "or screen content). " + _RULES.format(kind="image")
)

CAPTIONER = CaptionModel(
    weight_component="text_encoder",  # catalog.qwen_folder(): Qwen/Qwen2.5-VL-7B-Instruct
    processor_repo_id=catalog.QWEN_REPO,
    processor_files=PROCESSOR_FILES,
    prompts={"video": VIDEO_PROMPT, "image": IMAGE_PROMPT},
    loader_tokenizer=LOADER_TOKENIZER,
    fp8_knob="text_encoder_cpu",
)
