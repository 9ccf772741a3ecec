"""Caption text: decoding, the trigger word, and a length estimate against what the text encoder keeps.

musubi reads a caption as the whole UTF-8 file, stripped (dataset/datasources.py); the family's text encoder keeps its
first tokens after its prompt template (Family.text_encoder_max_tokens).
"""

from __future__ import annotations

import codecs
import re

PLACEHOLDER = re.compile(r"\[trigger\]", re.IGNORECASE)  # ai-toolkit's convention


BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)


class CaptionError(ValueError):
    """The caption file is not text (binary content): the message says why."""


def decode(raw: bytes) -> tuple[str, str | None]:
    """Caption bytes -> (text, None) for clean UTF-8 with or without BOM; otherwise (text, how it was read), a
    phrase for a warning. In order: UTF-16/32 by their byte-order mark (Windows Notepad's "Unicode"); UTF-16 without
    a BOM, told by its NUL bytes at every other position; UTF-8 with a few invalid bytes (replaced by U+FFFD, the
    rest kept: one stray byte must not turn "naïve" into "naÃ¯ve"); else Windows-1252 (what most non-UTF-8
    caption tools write). Raises CaptionError for text that still holds NUL characters (a binary file)."""
    text, how = _decode(raw)
    if "\x00" in text:
        raise CaptionError("is not a text file (it contains NUL bytes)")
    return text.strip(), how


def _decode(raw: bytes) -> tuple[str, str | None]:
    for bom, codec, label in BOMS:  # UTF-32 LE starts like UTF-16 LE: test it first
        if raw.startswith(bom):
            try:
                return raw.decode(codec), f"read as {label}"
            except UnicodeDecodeError:
                break
    utf16 = _utf16_without_bom(raw)
    if utf16 is not None:
        return utf16
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        lenient = raw.decode("utf-8-sig", errors="replace")
        if any(ord(c) > 127 and c != "\ufffd" for c in lenient):  # real multi-byte UTF-8 elsewhere: it is UTF-8
            bad = lenient.count("\ufffd")
            return lenient, f"read as UTF-8 with {bad} invalid byte(s) replaced by \ufffd (first at byte {e.start})"
        return raw.decode("cp1252", errors="replace"), "read as Windows-1252"


def _utf16_without_bom(raw: bytes) -> tuple[str, str] | None:
    """UTF-16 text without a BOM: mostly-ASCII text then has a NUL in nearly every odd (LE) or even (BE) byte."""
    if b"\x00" not in raw or len(raw) < 2 or len(raw) % 2:
        return None
    for codec, zeros in (("utf-16-le", raw[1::2]), ("utf-16-be", raw[0::2])):
        if zeros.count(0) >= 0.3 * len(zeros):
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError:
                continue
            if "\x00" not in text:
                return text, f"read as {codec.upper()} (no byte-order mark)"
    return None


def apply_trigger(caption: str, trigger: str) -> str:
    """The final caption: a `[trigger]` placeholder is replaced by the trigger word; otherwise 'trigger, caption'
    unless the caption already contains the trigger as a whole word (case-insensitive). No trigger: unchanged
    (a placeholder is then removed)."""
    trigger = trigger.strip()
    if PLACEHOLDER.search(caption):
        text = PLACEHOLDER.sub(lambda _m: trigger, caption)  # a function: the trigger is inserted literally
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
