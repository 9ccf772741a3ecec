"""Caption text: decoding, the trigger word, and a length estimate against what the text encoder keeps.

musubi reads a caption as the whole UTF-8 file, stripped (dataset/datasources.py); the family's text encoder keeps its
first tokens after its prompt template (Family.text_encoder_max_tokens).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

PLACEHOLDER = re.compile(r"\[trigger\]", re.IGNORECASE)  # ai-toolkit's convention


BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)


class CaptionError(ValueError):
    """The caption file cannot be used as it is: the message says why, `fix` what to do."""

    def __init__(self, message: str, fix: str = "Replace it by a UTF-8 text file"):
        super().__init__(message)
        self.fix = fix


STRAY_MAX_BYTES = 3  # "a few stray bytes": at most this many invalid bytes, and no more than valid non-ASCII chars
# Western text in Windows-1252 is mostly ASCII letters (Icelandic reaches ~0.4 non-ASCII); CJK bytes far more.
CP1252_MAX_SHARE = 0.5
CP1252_TEXT = set("ŒœŠšŽžŸƒ‘’‚“”„–—…€•«»°·´¡¿©®™²³¹½¼¾§¶£¥¢‰†‡ªºµ\xa0")


@dataclass(frozen=True)
class Candidate:
    """An encoding a non-UTF-8 caption may be in: Python's codec, iconv's name, and the characters its text uses."""

    label: str
    codec: str
    iconv: str
    ranges: tuple[tuple[int, int], ...]


CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x3000, 0x303F), (0xFF01, 0xFF5E), (0xFFE0, 0xFFEE))
# In order of preference when several decode equally well (Japanese first: its kana make it the most telling).
CANDIDATES = (
    Candidate("Shift-JIS (Japanese)", "cp932", "CP932", ((0x3040, 0x30FF), (0x31F0, 0x31FF), *CJK)),
    Candidate("EUC-KR (Korean)", "euc_kr", "EUC-KR", ((0xAC00, 0xD7A3), (0x3130, 0x318F), (0x3000, 0x303F))),
    Candidate("GBK (Simplified Chinese)", "gb18030", "GB18030", CJK),
    Candidate("Big5 (Traditional Chinese)", "cp950", "BIG5", CJK),
    Candidate("Windows-1251 (Cyrillic)", "cp1251", "CP1251", ((0x0400, 0x04FF), (0x2010, 0x2026), (0xAB, 0xBB))),
)
MIN_SCRIPT_SHARE = 0.8  # of the non-ASCII characters, at least this share must belong to the candidate's script


def decode(raw: bytes) -> tuple[str, str | None]:
    """Caption bytes -> (text, None) for clean UTF-8 with or without BOM; otherwise (text, how it was read), a
    phrase for a warning. In order: UTF-16/32 by their byte-order mark (Windows Notepad's "Unicode"); UTF-16 without
    a BOM, told by its NUL bytes at every other position; UTF-8 with a few stray invalid bytes (replaced by U+FFFD,
    the rest kept: one stray byte must not turn "naïve" into "naÃ¯ve"); Windows-1252 where the text it gives is
    plausible Western text. Raises CaptionError for anything else (Shift-JIS, GBK, ...: the message names the most
    likely encoding and the fix gives the conversion command) and for text with NUL characters (a binary file)."""
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
        first_bad = e.start
    lenient = raw.decode("utf-8-sig", errors="replace")
    bad = lenient.count("\ufffd") - raw.count("\ufffd".encode())
    valid = sum(ord(c) > 127 and c != "\ufffd" for c in lenient)
    if bad <= min(STRAY_MAX_BYTES, valid):  # real multi-byte UTF-8 around a few stray bytes: it is UTF-8
        return lenient, f"read as UTF-8 with {bad} invalid byte(s) replaced by \ufffd (first at byte {first_bad})"
    western = _plausible_cp1252(raw)
    if western is not None:
        return western, "read as Windows-1252"
    raise _not_utf8(raw, first_bad)


def _plausible_cp1252(raw: bytes) -> str | None:
    """The text as Windows-1252 when it reads like Western text: every byte defined, the non-ASCII characters
    Latin letters or common typography, and few of them (Shift-JIS or GBK bytes read this way are mostly
    non-ASCII)."""
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        return None
    non_ascii = [c for c in text if ord(c) > 127]
    letters = sum(1 for c in text if not c.isspace())
    if any(not (0xC0 <= ord(c) <= 0xFF and c not in "×÷") and c not in CP1252_TEXT for c in non_ascii):
        return None
    return text if len(non_ascii) <= CP1252_MAX_SHARE * max(1, letters) else None


def _not_utf8(raw: bytes, first_bad: int) -> CaptionError:
    guess = likely_encoding(raw)
    if guess is None:
        return CaptionError(
            f"is not UTF-8 text (invalid bytes from byte {first_bad}) and its encoding is not recognised",
            "Open it in a text editor and save it as UTF-8",
        )
    candidate, text = guess
    preview = " ".join(text.split())[:40]
    return CaptionError(
        f'is not UTF-8: it is most likely {candidate.label}, in which it reads "{preview}"',
        f"Convert it to UTF-8, e.g. `iconv -f {candidate.iconv} -t UTF-8 FILE.txt > FILE.utf8.txt`, then replace "
        "FILE.txt with it (or open it in a text editor and save it as UTF-8)",
    )


def likely_encoding(raw: bytes) -> tuple[Candidate, str] | None:
    """The candidate encoding (and the text in it) that decodes `raw` without error into the most characters of
    its own script; None when none reaches MIN_SCRIPT_SHARE of the non-ASCII characters."""
    best, best_share = None, MIN_SCRIPT_SHARE
    for candidate in CANDIDATES:
        try:
            text = raw.decode(candidate.codec)
        except UnicodeDecodeError:
            continue
        non_ascii = [ord(c) for c in text if ord(c) > 127]
        if not non_ascii or any(ord(c) < 32 and c not in "\t\r\n" for c in text):
            continue
        share = sum(any(lo <= c <= hi for lo, hi in candidate.ranges) for c in non_ascii) / len(non_ascii)
        if share > best_share or (best is None and share >= best_share):
            best, best_share = (candidate, text), share
    return best


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
