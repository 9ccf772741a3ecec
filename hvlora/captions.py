"""Caption text: decoding, the trigger word, and a length estimate against what the text encoder keeps.

musubi reads a caption as the whole UTF-8 file, stripped (dataset/datasources.py), and Qwen2.5-VL keeps the first
1024 tokens after its prompt template (hunyuan_video_1_5_text_encoder.py, TOKENIZER_MAX_LENGTH).
"""

from __future__ import annotations

import codecs
import re

QWEN_MAX_TOKENS = 1024
PLACEHOLDER = re.compile(r"\[trigger\]", re.IGNORECASE)  # ai-toolkit's convention


BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)


def decode(raw: bytes) -> tuple[str, str | None]:
    """Caption bytes -> (text, None) for UTF-8 with or without BOM. Otherwise the second value names the encoding
    used: UTF-16/32 by their byte-order mark (Windows Notepad's "Unicode"), else Windows-1252 (what most
    non-UTF-8 caption tools write)."""
    for bom, codec, label in BOMS:  # UTF-32 LE starts like UTF-16 LE: test it first
        if raw.startswith(bom):
            try:
                return raw.decode(codec).strip(), label
            except UnicodeDecodeError:
                break
    try:
        return raw.decode("utf-8-sig").strip(), None
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace").strip(), "Windows-1252"


def apply_trigger(caption: str, trigger: str) -> str:
    """The final caption: a `[trigger]` placeholder is replaced by the trigger word; otherwise 'trigger, caption'
    unless the caption already contains the trigger as a whole word (case-insensitive). No trigger: unchanged
    (a placeholder is then removed)."""
    trigger = trigger.strip()
    if PLACEHOLDER.search(caption):
        text = PLACEHOLDER.sub(trigger, caption)
        return re.sub(r"\s{2,}", " ", text).strip(" ,") if not trigger else text
    if not trigger:
        return caption
    if re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", caption, flags=re.IGNORECASE):
        return caption
    return f"{trigger}, {caption}" if caption else trigger


def has_placeholder(caption: str) -> bool:
    return bool(PLACEHOLDER.search(caption))


def estimate_tokens(text: str) -> int:
    """A deliberately generous estimate of Qwen2.5's token count: ~4 characters per token for ASCII words, one
    token per digit (Qwen splits numbers into digits) and per non-ASCII character (CJK is about one each)."""
    digits = sum(c.isdigit() for c in text)
    non_ascii = sum(ord(c) > 127 for c in text)
    rest = len(text) - digits - non_ascii
    return digits + non_ascii + (rest + 3) // 4
