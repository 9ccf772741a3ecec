"""Which media get a generated caption and from what (with --missing_caption generate or --caption_only), decided
in the data preflight once the files are probed and musubi's items planned (data/preflight.py calls `resolve`).

For every planned file without a caption of its own whose caption is generated (or to be): its request
(requests.py). An unedited overlay caption made with other settings, or any with --recaption, is generated again;
a caption the store already holds for the request is used without generating (a run stopped while captioning).
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.config import Settings, read_caption_prompt
from ..data import frames
from ..data.problems import NOTE
from . import overlay, requests
from .spec import CaptionModel


def resolve(report, model: CaptionModel, weight, take: Callable[[object, str], None]) -> None:
    """Set `caption_request` (and maybe `caption_source`) of the report's planned files. `weight`: the catalog
    entry (key, repo_id) of the file that holds the Qwen2.5-VL; `take(file, text)` makes a stored caption the
    file's caption (the preflight applies the trigger word and warns)."""
    s = report.settings
    store = overlay.Store(overlay.store_dir(s.output_dir))
    common = common_settings(s, model, weight)
    for f in report.planned:
        if f.caption_source not in ("generated", "pending"):
            continue
        f.caption_request = request_for(report, f, model, common)
        if f.caption_source == "generated":
            record = report.overlay.records.get(f.overlay_caption) or {}
            if s.recaption or record.get("key") != f.caption_request.key:
                why = "--recaption" if s.recaption else "the captioning settings changed"
                f.add(NOTE, f"its generated caption is generated again ({why})")
                f.caption_source, f.caption = "pending", None
        if f.caption_source == "pending" and not s.recaption:
            hit = store.get(f.caption_request.key)
            if hit is not None:
                f.caption_source, f.overlay_text = "generated", hit["caption"]
                take(f, hit["caption"])


def common_settings(s: Settings, model: CaptionModel, weight) -> dict:
    """What every caption request of a run shares: the Qwen2.5-VL file and the processor files (with their
    revisions) and the token limit."""
    return {
        "model": f"{weight.key}@{s.revision_for(weight.repo_id)}",
        "processor": f"{model.processor_repo_id}@{s.revision_for(model.processor_repo_id)}",
        "max_new_tokens": s.caption_max_tokens,
    }


def prompt_for(s: Settings, model: CaptionModel, kind: str) -> str:
    """The instruction for a media kind: --caption_prompt, --caption_prompt_file, or the family's default."""
    if s.caption_prompt is not None:
        return s.caption_prompt.strip()
    if s.caption_prompt_file is not None:
        return read_caption_prompt(s.caption_prompt_file)
    return model.prompts[kind]


def request_for(report, f, model: CaptionModel, common: dict) -> requests.Request:
    """The request of one planned file (a video from the frames of its clips, read as its block reads it)."""
    s = report.settings
    frames_fps = None
    if f.kind == "video":
        head = frames.effective_mode(s.frame_extraction, s.frame_sample) == "head"
        source_fps = report.blocks[f.block].source_fps
        longest, fps = max(s.target_frames), s.family.frames.target_fps
        frames_fps = requests.video_frames(f.info.frames, source_fps, f.clips, head, longest, fps)
    return requests.make(f.kind, f.media_key, prompt_for(s, model, f.kind), common, frames_fps)
