"""Dataset preflight: before any weights load, know exactly what musubi will train on, and report every problem
with the file and the fix.

Steps: list the input safely (source.py) -> pair media with captions -> unpack a zip's media into the content-named
store -> probe every media file in parallel with the library musubi loads it with (media.py: Pillow for images,
PyAV for videos) -> read captions (captions.py) -> check media against what musubi does with them -> plan musubi's
items (frames.py): videos grouped into one dataset block per frame rate, clips per target length, buckets, dataset
file names that fit the file system and the exact cache file names musubi will write. The result, a DataReport,
drives the extract and dataset-TOML stages and is checked against musubi's latent cache afterwards.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..core.config import Settings
from ..core.errors import DataError
from . import captions, frames, media, source
from .problems import ERROR, NOTE, WARNING, Problem, strict

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # Pillow clips these to white in convert("RGB")
# Warn when the clips of a video cover less than this share of it and leave at least a second (24 frames) unused.
UNUSED_WARN_FRACTION = 0.5
UNUSED_WARN_MIN_FRAMES = 24
NAME_MAX = 255  # bytes per file name on Linux file systems (ext4, xfs, btrfs, overlayfs)
# musubi's longest cache suffix after a stem: _{start:05d}-{frames:03d}_{W:04d}x{H:04d}_{architecture}.safetensors is
# 33 bytes + the architecture's name (4 for hv15); keep stems short enough for it with room for 6-digit starts and sizes.
MAX_STEM_BYTES = NAME_MAX - 48
CROP_WARN_FRACTION = 0.25  # warn when musubi's center crop to the bucket discards more of the picture than this


@dataclass
class FileRecord:
    """One media file: what it is, what musubi will make of it, and what is wrong with it.

    `name` is its path in the input; `path` the readable file (unpacked or original); `caption` the final caption
    text; `block` the dataset block it trains in ('images', 'videos_24fps', ...) and `flat` its file name there;
    `bucket` (width, height); `clips` what musubi cuts from a video; `cache_files` the latent cache names musubi
    will write for it. `usable` False means it is left out of training."""

    name: str
    kind: str
    bytes: int
    identity: str  # changes when the file's bytes change (zip CRC-32 + size, or size + mtime)
    caption_file: str | None = None
    path: Path | None = None
    info: media.MediaInfo | None = None
    caption: str | None = None
    problems: list[Problem] = field(default_factory=list)
    usable: bool = True
    block: str | None = None
    flat: str | None = None
    bucket: tuple[int, int] | None = None
    clips: list[frames.Clip] = field(default_factory=list)
    cache_files: list[str] = field(default_factory=list)
    frames_total: int | None = None  # a video's frames as musubi reads them (after resampling to the family's fps)
    frames_trained: int | None = None  # of those, the frames inside at least one clip

    @property
    def status(self) -> str:
        """'error' (stops the run), 'left out', 'warning' or 'ok'."""
        severities = {p.severity for p in self.problems}
        if ERROR in severities:
            return "error"
        if not self.usable:
            return "left out"
        return "warning" if WARNING in severities else "ok"

    def add(self, severity: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(severity, self.name, message, fix))

    def leave_out(self, message: str, fix: str) -> None:
        self.usable = False
        self.add(WARNING, f"left out: {message}", fix)


@dataclass
class Block:
    """One musubi [[datasets]] block: `kind` 'image' or 'video', `source_fps` the measured rate of its videos."""

    name: str
    kind: str
    source_fps: float | None
    files: list[FileRecord] = field(default_factory=list)


@dataclass
class DataReport:
    """The preflight's result. `problems` are findings about the input as a whole (refused entries, orphan
    captions, ...); per-file findings live in each FileRecord."""

    input: Path
    input_kind: str
    settings: Settings
    files: list[FileRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped_junk: int = 0
    blocks: dict[str, Block] = field(default_factory=dict)

    def all_problems(self) -> list[Problem]:
        return self.problems + [p for f in self.files for p in f.problems]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.all_problems() if p.severity == ERROR]

    @property
    def usable(self) -> list[FileRecord]:
        return [f for f in self.files if f.usable and f.status != "error"]

    @property
    def planned(self) -> list[FileRecord]:
        """The files that train: usable, with a dataset block (so with a bucket and cache names)."""
        return [f for f in self.usable if f.block is not None]

    def buckets(self) -> dict[tuple[int, int, int], int]:
        """(width, height, frames) -> items musubi caches in that bucket (before num_repeats)."""
        counts: Counter = Counter()
        for f in self.planned:
            if f.kind == "image":
                counts[(*f.bucket, 1)] += 1
            for c in f.clips:
                counts[(*f.bucket, c.frames)] += 1
        return dict(sorted(counts.items()))


def run(s: Settings, store: Path) -> DataReport:
    """Check the input of `s`; a zip's media are unpacked into `store` (named by content, see
    source.materialize). Never raises for bad data (the report holds the errors); raises DataError only when the
    input cannot be found or read, UserError when the disk fills while unpacking."""
    listing = source.list_input(s, store)
    report = DataReport(
        listing.root, listing.kind, s, problems=list(listing.problems), skipped_junk=listing.skipped_junk
    )
    captions_by_key = _captions_by_key(listing.entries)
    media_entries = [e for e in listing.entries if media.kind_of(e.name)]
    report.files = [_record(e, captions_by_key.get(_key(e.name))) for e in media_entries]
    _pair_problems(report, captions_by_key)
    if not report.files and not report.errors:
        report.problems.append(
            Problem(
                ERROR,
                str(listing.root),
                "contains no images or videos",
                "Supported: " + ", ".join(media.IMAGE_EXTENSIONS + media.VIDEO_EXTENSIONS),
            )
        )
    if any(p.severity == ERROR for p in listing.problems):
        for f in report.files:  # refused input: unpack and plan nothing, but account for every file
            f.usable = False
            f.add(NOTE, "not checked: the input is refused (see the errors above)")
        return _finish(report)
    paths = source.materialize(listing, media_entries, store)
    for f in report.files:
        f.path = paths[f.name]
    _probe_all(report.files)
    for f in report.files:
        if f.usable and f.info is not None and f.info.pix_fmt in SIXTEEN_BIT_MODES:
            _train_from_8_bit(f, store)
    wanted = {f.caption_file for f in report.files if f.caption_file}
    texts = source.read_captions(listing, [e for e in listing.entries if e.name in wanted], CAPTION_MAX_BYTES)
    for f in report.files:
        _read_caption(f, texts, s)
        if f.usable and f.info is not None:
            _check_media(f, s)
    _plan(report)
    return _finish(report)


def _captions_by_key(entries: list[source.Entry]) -> dict[str, list[source.Entry]]:
    """Caption candidates per media key, the one used first: `a.txt` before `a.TXT`/`a.Txt` (musubi's
    caption_extension is the exact '.txt'), then by name."""
    out: dict[str, list[source.Entry]] = {}
    for e in entries:
        if media.kind_of(e.name) is None:
            out.setdefault(_key(e.name), []).append(e)
    for group in out.values():
        group.sort(key=lambda e: (not e.name.endswith(source.CAPTION_EXT), e.name))
    return out


def _finish(report: DataReport) -> DataReport:
    if not report.usable and not report.errors:
        report.problems.append(Problem(ERROR, str(report.input), "no usable media remain", "See the problems above"))
    if report.settings.strict:
        report.problems = strict(report.problems)
        for f in report.files:
            f.problems = strict(f.problems)
    return report


def _key(name: str) -> str:
    """A path without its extension, in Unicode NFC: media and caption pair on it. macOS keeps names in the form
    they were typed or made (NFD `café.jpg` beside NFC `café.txt`); both forms are the same name to the user."""
    p = PurePosixPath(name)
    return unicodedata.normalize("NFC", str(p.with_suffix("")) if p.suffix else name)


def _record(entry: source.Entry, caption: list[source.Entry] | None) -> FileRecord:
    if entry.zinfo is not None:
        identity = f"zip:{entry.size}:{entry.zinfo.CRC:08x}"
    else:
        st = entry.path.stat()
        identity = f"file:{st.st_size}:{st.st_mtime_ns}"
    f = FileRecord(entry.name, media.kind_of(entry.name), entry.size, identity, caption[0].name if caption else None)
    if caption and len(caption) > 1:
        others = ", ".join(c.name for c in caption[1:])
        f.add(WARNING, f"has several captions; {caption[0].name} is used, not {others}", f"Remove {others}")
    return f


def _pair_problems(report: DataReport, captions_by_key: dict[str, list[source.Entry]]) -> None:
    """Missing captions (by --missing_caption), media sharing one stem, captions without media."""
    s = report.settings
    by_key: dict[str, list[FileRecord]] = {}
    for f in report.files:
        by_key.setdefault(_key(f.name), []).append(f)
        if f.caption_file is not None:
            continue
        cap = PurePosixPath(_key(f.name)).name + source.CAPTION_EXT
        if s.missing_caption == "error":
            f.add(
                ERROR,
                f"has no caption ({cap} beside it)",
                f"Add {_key(f.name)}{source.CAPTION_EXT} with a "
                "description, pass --missing_caption trigger or skip, or remove the file",
            )
        elif s.missing_caption == "trigger":
            f.add(
                WARNING,
                f"has no caption; it is captioned with the trigger word '{s.trigger_word}'",
                f"Add {cap} to describe it",
            )
        else:
            f.leave_out("has no caption (--missing_caption skip)", f"Add {cap} to train on it")
    for key, group in by_key.items():
        if len(group) > 1:
            report.problems.append(
                Problem(
                    WARNING,
                    ", ".join(f.name for f in group),
                    f"share one stem and so one caption {key}{source.CAPTION_EXT}",
                    "Both train with that caption; rename one and give it its own caption if that is not intended",
                )
            )
    for key, group in captions_by_key.items():
        if key not in by_key:
            report.problems.append(
                Problem(
                    WARNING,
                    ", ".join(e.name for e in group),
                    "caption without a media file, ignored",
                    "Check that the media file's name matches the caption's",
                )
            )


def _probe_all(files: list[FileRecord]) -> None:
    """Probe every media file in parallel threads (PyAV releases the GIL while it reads and decodes)."""

    def one(f: FileRecord):
        try:
            return media.probe(f.path, f.kind)
        except media.MediaError as e:
            return e

    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 2)) as pool:
        for f, result in zip(files, pool.map(one, files)):
            if isinstance(result, media.MediaError):
                # Pillow and FFmpeg name the file they read: for a zip entry a temporary or content-named path the
                # user never saw, so the entry's name is shown instead.
                message = str(result).replace(str(f.path), f.name)
                f.leave_out(message, "Re-encode it (e.g. with ffmpeg) or remove it")
            else:
                f.info = result


def _train_from_8_bit(f: FileRecord, store: Path) -> None:
    """A 16-bit greyscale PNG trains from an 8-bit greyscale copy: musubi's Image.convert("RGB") clips 16-bit
    values to 255 (pure white; checked with Pillow 13, musubi's pin). The copy (values scaled 0-65535 -> 0-255,
    as a viewer shows the image) lands in `store`, named after the file's identity, and is made once."""
    digest = hashlib.sha1(f"{f.identity}\0{f.path}".encode()).hexdigest()[:16]
    target = store / f"8bit-{digest}.png"
    if not target.is_file():
        store.mkdir(parents=True, exist_ok=True)
        media.write_8_bit_grey(f.path, target)
    st = target.stat()
    f.path, f.identity = target, f"file:{st.st_size}:{st.st_mtime_ns}"
    f.add(
        NOTE,
        "is 16-bit greyscale, which musubi's conversion to RGB would clip to white: it trains from an 8-bit "
        "greyscale copy (0-65535 scaled to 0-255)",
    )


CAPTION_MAX_BYTES = 1 << 20  # far above what any text encoder keeps; a larger ".txt" is not a caption


def _read_caption(f: FileRecord, texts: dict[str, bytes | DataError], s: Settings) -> None:
    """Decode the caption, apply the trigger word, and report what musubi will train with."""
    if f.caption_file is None:
        f.caption = s.trigger_word.strip() if s.missing_caption == "trigger" else None
        return

    def problem(severity: str, message: str, fix: str = "") -> None:
        f.problems.append(Problem(severity, f.caption_file, message, fix))

    try:
        raw = texts[f.caption_file]
        if isinstance(raw, DataError):
            raise raw
        text, how = captions.decode(raw)
    except captions.CaptionError as e:
        problem(ERROR, str(e), e.fix)
        return
    except DataError as e:  # its message says what to do
        problem(ERROR, str(e).removeprefix(f"{f.caption_file}: ").rstrip("."))
        return
    if how:
        problem(WARNING, f"is not UTF-8; {how}", "Save captions as UTF-8 so every character arrives as written")
    if captions.has_placeholder(text) and not s.trigger_word.strip():
        problem(
            WARNING, "uses [trigger] but no --trigger_word is set; the placeholder is removed", "Pass --trigger_word"
        )
    f.caption = captions.apply_trigger(text, s.trigger_word)
    if not f.caption:
        problem(
            WARNING,
            "is empty" + (" once [trigger] is removed" if text else ""),
            "Write a description of the media into it; it trains unconditioned",
        )
    elif not text:
        problem(
            WARNING,
            "is empty",
            f"Write a description of the media into it; it trains with the trigger word "
            f"'{s.trigger_word.strip()}' alone",
        )
    tokens, kept = captions.estimate_tokens(f.caption), s.family.text_encoder_max_tokens
    if tokens > kept - 24:  # the template's own tokens count too
        problem(
            WARNING,
            f"is about {tokens} tokens long (estimated); the text encoder keeps the first {kept}",
            "Shorten it",
        )


def _check_media(f: FileRecord, s: Settings) -> None:
    """What musubi will do with this file that the user should know (contract §4: Pillow conversions for images,
    PyAV frames without rotation for videos, resize to cover the bucket and center crop)."""
    info = f.info
    f.bucket = s.family.frames.bucket_for((info.width, info.height), s.resolution)
    if frames.is_upscaled((info.width, info.height), f.bucket):
        f.add(
            WARNING,
            f"{info.width}x{info.height} is smaller than its {f.bucket[0]}x{f.bucket[1]} bucket at "
            f"--resolution {s.resolution[0]}x{s.resolution[1]}: it is upscaled (blurry)",
            "Use a larger file or a lower --resolution",
        )
    _check_crop(f, s)
    if f.kind == "image":
        _check_image_format(f)
    else:
        _check_video(f, s.family.frames.target_fps)


def _check_crop(f: FileRecord, s: Settings) -> None:
    """musubi resizes an item to cover its bucket, then center-crops: an image far more elongated than the most
    elongated bucket loses most of its picture (4000x50 keeps about 5% of its width at 960x544)."""
    size = (f.info.width, f.info.height)
    lost = frames.cropped_fraction(size, f.bucket)
    if lost > CROP_WARN_FRACTION:
        ratio = max(max(w / h, h / w) for w, h in s.family.frames.bucket_resolutions(s.resolution))
        f.add(
            WARNING,
            f"musubi's {f.bucket[0]}x{f.bucket[1]} bucket crops {lost:.0%} of its picture away ({size[0]}x{size[1]} is "
            f"more elongated than any bucket at --resolution {s.resolution[0]}x{s.resolution[1]})",
            f"Crop it yourself to an aspect ratio of at most {ratio:.1f}:1, or split it into parts",
        )


def _check_image_format(f: FileRecord) -> None:
    """Pillow modes and metadata musubi handles in a way the user should know (it converts to RGB, ignores EXIF)."""
    info, mode = f.info, f.info.pix_fmt or ""
    if info.width * info.height > media.PILLOW_MAX_PIXELS:
        f.add(
            WARNING,
            f"has {info.width * info.height} pixels: Pillow warns of a decompression bomb and decoding is slow",
            "Downscale it; training uses at most the --resolution area anyway",
        )
    if info.orientation != 1:
        f.add(
            WARNING,
            f"has EXIF orientation {info.orientation} (rotated or mirrored when viewed) that musubi ignores: it "
            "trains on the pixels as stored (sideways or mirrored)",
            "Save it with the orientation applied (e.g. `mogrify -auto-orient`, or re-export it)",
        )
    if mode == "CMYK":
        f.add(
            WARNING,
            "is a CMYK image: musubi (Pillow) converts it to RGB with a simple formula, colours may shift",
            "Save it as an RGB (sRGB) image",
        )
    elif info.transparency:
        f.add(
            WARNING,
            "has an alpha channel: musubi drops it, so transparent areas train as their hidden colour",
            "Flatten it onto a background",
        )
    elif mode == "P":
        f.add(NOTE, "is a palette image: converted to RGB")
    elif mode in ("L", "1"):
        f.add(NOTE, "is greyscale: trained as grey RGB")
    if info.frames:
        f.add(NOTE, f"is animated ({info.frames} frames): musubi trains on its first frame as a still image")


def _check_video(f: FileRecord, target_fps: float) -> None:
    """What musubi does with this video's pixels and timing (resampled to the family's target_fps)."""
    info = f.info
    sar = info.sample_aspect_ratio
    if sar and abs(sar - 1) > 0.01:
        f.add(
            WARNING,
            f"has non-square pixels (sample aspect ratio {sar:.3g}): musubi uses the {info.width}x{info.height} "
            "pixels as stored, so it trains squeezed",
            "Re-encode it with square pixels (ffmpeg -vf scale=iw*sar:ih,setsar=1)",
        )
    if info.rotation:
        f.add(
            WARNING,
            f"has rotation metadata ({info.rotation} degrees clockwise, as exiftool and MediaInfo show it) that "
            "musubi ignores: it trains on the frames as stored (sideways)",
            "Re-encode it with the rotation applied (ffmpeg applies it when re-encoding: ffmpeg -i IN.mp4 OUT.mp4)",
        )
    _check_colour(f)
    if info.header_frames and info.header_frames != info.frames:
        f.add(NOTE, f"its header says {info.header_frames} frames but it holds {info.frames}; {info.frames} are used")
    elif info.cut_short():  # the timestamps at a cut are ragged, so no frame-rate verdict on top
        f.add(
            WARNING,
            f"is truncated: its frames end at {info.duration:.2f} s but its header says "
            f"{info.declared_duration:.2f} s; the {info.frames} frames present are used",
            "Copy or download the file again",
        )
    elif info.vfr:
        f.add(
            WARNING,
            "has a variable frame rate: musubi drops frames by position, so motion speed varies",
            "Re-encode it at a constant frame rate",
        )
    if info.fps is None:
        f.add(NOTE, f"has no frame rate: its frames are used as they are, without resampling to {target_fps:g} fps")
    elif info.fps < target_fps - 0.5:
        f.add(NOTE, f"{info.fps:g} fps is below {target_fps:g}: musubi adds no frames, so its motion plays faster")


# zscale (zimg) linearises HLG/PQ, tonemap maps it into SDR range, zscale converts to BT.709: FFmpeg's documented
# HDR-to-SDR recipe (https://ffmpeg.org/ffmpeg-filters.html#tonemap-1).
TONEMAP_COMMAND = (
    "ffmpeg -i IN.mov -vf zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=hable:desat=0,"
    "zscale=t=bt709:m=bt709:r=tv,format=yuv420p -c:v libx264 -crf 16 OUT.mp4"
)


def _check_colour(f: FileRecord) -> None:
    """HDR (HLG/PQ) and wide-gamut (BT.2020) video: musubi's frame.to_image() converts to 8-bit RGB without tone
    mapping or gamut conversion (dataset/media_utils.py load_video), so such footage trains washed out."""
    info = f.info
    depth = f", {info.bit_depth}-bit" if info.bit_depth else ""
    if info.hdr_transfer:
        primaries = f", {info.primaries.upper().replace('BT', 'BT.')} primaries" if info.primaries else ""
        f.add(
            WARNING,
            f"is HDR video ({info.hdr_transfer} transfer, {info.transfer}{primaries}{depth}): musubi converts its "
            "frames to 8-bit RGB without tone mapping, so it trains washed out (flat, grey colours)",
            f"Tone-map it to SDR first, e.g. {TONEMAP_COMMAND} (or record in SDR: iPhone Settings > Camera > Record "
            "Video > HDR Video off)",
        )
    elif info.primaries == "bt2020":
        f.add(
            WARNING,
            f"has BT.2020 (wide-gamut) colour{depth}: musubi converts it to RGB as if it were BT.709, so its "
            "colours train desaturated",
            "Convert it to BT.709 first, e.g. ffmpeg -i IN.mov -vf zscale=p=bt709:t=bt709:m=bt709:r=tv,format=yuv420p "
            "-c:v libx264 -crf 16 OUT.mp4",
        )


def _plan(report: DataReport) -> None:
    """Blocks (images; videos by frame rate), clips, buckets, dataset file names and cache file names."""
    s = report.settings
    rules, refused = s.family.frames, s.family.still_images_refused.get(s.task)
    for f in report.usable:
        if f.info is None:
            continue
        if f.kind == "image" and refused:
            f.leave_out(*refused)
            continue
        if f.kind == "image":
            block = report.blocks.setdefault("images", Block("images", "image", None))
        else:
            fps = round(f.info.fps, 3) if f.info.fps else None
            bname = f"videos_{fps:g}fps".replace(".", "_") if fps else "videos"
            block = report.blocks.setdefault(bname, Block(bname, "video", fps))
            f.clips = rules.video_clips(
                f.info.frames,
                block.source_fps,
                s.target_frames,
                s.frame_extraction,
                s.frame_stride,
                s.frame_sample,
                s.max_frames,
            )
            if not f.clips:
                _leave_out_short(f, block.source_fps, s)
                continue
            _check_coverage(f, block.source_fps, s)
        f.block = block.name
        block.files.append(f)
    report.blocks = {k: b for k, b in sorted(report.blocks.items()) if b.files}
    for block in report.blocks.values():
        _name_files(block, rules)


def _name_files(block: Block, rules: frames.FrameRules) -> None:
    """Each file's name in the block's folder and the cache file names musubi will derive from it."""
    for f, flat in zip(block.files, flat_names([f.name for f in block.files]), strict=True):
        f.flat = flat
        stem = Path(flat).stem
        if f.kind == "image":
            f.cache_files = [rules.image_cache_name(stem, (f.info.width, f.info.height))]
        else:
            f.cache_files = [rules.video_cache_name(stem, c, f.bucket) for c in f.clips]
        if f.flat != _plain_flat(f.name):
            f.add(NOTE, f"is named {f.flat} in the dataset (names must be unique and fit musubi's cache file names)")
        too_long = [n for n in (*f.cache_files, f.flat) if len(n.encode()) > NAME_MAX]
        if too_long:  # only with absurd frame counts or sizes: the stem is already bounded
            f.add(
                ERROR,
                f"musubi's cache file name {too_long[0]} is longer than the file system allows ({NAME_MAX} bytes)",
                "Shorten the file name or cut the video",
            )


def _plain_flat(input_name: str) -> str:
    """'a/b/c.PNG' -> 'a__b__c.png': the folders joined into the stem, characters outside letters, digits, '.',
    '-', ' ' and '_' replaced, the extension lower-cased (musubi's globs match all-lower or all-upper extensions)."""
    p = PurePosixPath(input_name)
    return re.sub(r"[^\w.\- ]", "_", "__".join(p.parts[:-1] + (p.stem,))) + p.suffix.lower()


def flat_names(input_names: list[str]) -> list[str]:
    """Unique, bounded file names for one block's folder, each a function of its own input path (so removing or
    adding a file never renames another). musubi globs the folder non-recursively and names caches after stems,
    so stems must be unique (case-insensitively, as on a case-insensitive volume; `a.png` and `a.jpg` collide too):
    colliding stems, and stems over MAX_STEM_BYTES, get '~' and 8 hex digits of the input path's sha1, the latter
    cut at a character boundary first."""
    plain = [_plain_flat(n) for n in input_names]
    counts = Counter(PurePosixPath(p).stem.lower() for p in plain)
    out = []
    for name, flat in zip(input_names, plain, strict=True):
        p = PurePosixPath(flat)
        stem = p.stem
        if counts[stem.lower()] > 1 or len(stem.encode()) > MAX_STEM_BYTES:
            cut = stem.encode()[: MAX_STEM_BYTES - 9].decode("utf-8", "ignore")
            stem = f"{cut}~{hashlib.sha1(name.encode()).hexdigest()[:8]}"
        out.append(stem + p.suffix)
    return out


UNUSED_FIX = {
    "head": "To train more of it: --frame_extraction chunk (back-to-back clips), slide (--frame_stride N) or "
    "uniform (--frame_sample N), or cut it into shorter videos",
    "slide": "Lower --frame_stride, or use --frame_extraction chunk",
    "uniform": "Raise --frame_sample, or use --frame_extraction chunk or slide",
    "full": "Raise --max_frames (more VRAM per step), or use --frame_extraction chunk, slide or uniform",
    "chunk": "Add a longer --target_frames, or cut the video",
}


def _check_coverage(f: FileRecord, source_fps: float | None, s: Settings) -> None:
    """How much of a video trains: its frames as musubi reads them (resampled to the family's fps) against the frames inside
    at least one clip; a warning naming the other extraction modes when most of it (and at least a second) goes
    unused."""
    rules = s.family.frames
    f.frames_total = rules.frames_read(f.info.frames, source_fps, None)
    f.frames_trained, end = 0, 0
    for c in sorted(f.clips, key=lambda c: c.start):  # the union of the clips' frame ranges
        f.frames_trained += max(0, c.start + c.frames - max(c.start, end))
        end = max(end, c.start + c.frames)
    unused = f.frames_total - f.frames_trained
    if unused >= UNUSED_WARN_MIN_FRAMES and f.frames_trained < UNUSED_WARN_FRACTION * f.frames_total:
        mode = frames.effective_mode(s.frame_extraction, s.frame_sample)
        f.add(
            WARNING,
            f"only {f.frames_trained} of its {f.frames_total} frames (at {rules.target_fps:g} fps) train "
            f"({f.frames_trained / f.frames_total:.0%}, {len(f.clips)} clip(s) with --frame_extraction {mode})",
            UNUSED_FIX[mode],
        )


def _leave_out_short(f: FileRecord, source_fps: float | None, s: Settings) -> None:
    n = f.info.frames
    rules = s.family.frames
    head = frames.effective_mode(s.frame_extraction, s.frame_sample) == "head"
    kept = rules.frames_read(n, source_fps, max(s.target_frames) if head else None)
    resampled = f" ({kept} at {rules.target_fps:g} fps)" if source_fps and kept != n else ""
    f.leave_out(
        f"{n} frames{resampled}; the shortest --target_frames needs {min(s.target_frames)}",
        "Lower --target_frames or drop the file",
    )
