"""The captioner child: `python -m hvlora.captioning.worker JOB.json`, started by the caption stage in the
interpreter musubi-tuner runs in (its own process group and log, like musubi's scripts).

It builds the model once with musubi's own loader, `musubi_tuner.qwen_image.qwen_image_utils.load_qwen2_5_vl` (the
loader of musubi's caption_images_by_qwen_vl.py and of HV1.5's text encoder: the single Comfy file, key remapping,
strict load, `--fp8_vl`-style fp8 weights), and the processor from the processor folder (qwen_vl.py), then captions
every item of the job in order: an image (EXIF orientation applied, first frame of an animation) or the listed
frames of a video (decoded with PyAV in decoding order, as musubi's load_video counts them). Each finished caption
is written at once to the store as `<key>.json` (temporary file + rename): a kill loses at most the item being
generated. One line per item, `hvlora caption 3/12: <file> (4.2 s, 187 tokens): <caption>`, is the progress the
stage reads. An item that fails is reported and skipped; the exit status is then 1.

JOB.json: {"model_file", "processor_dir", "device", "fp8", "store", "run", "items": [{"key", "file", "path", "kind",
"prompt", "pixels": [min, max], "frames": [...], "fps", "settings", "media"}]}.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
import traceback
from pathlib import Path

from ..core.fsutil import atomic_write_json
from . import qwen_vl

LINE_PREFIX = "hvlora caption "


def read_image(path: Path):
    """The image as the model should see it: EXIF orientation applied, RGB."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def read_frames(path: Path, wanted: list[int]) -> list:
    """Decoded frames number `wanted` (0-based, decoding order) as H x W x 3 uint8 arrays. Raises ValueError when
    the video holds fewer frames."""
    import av

    want, out = set(wanted), {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in want:
                out[i] = frame.to_ndarray(format="rgb24")
            if len(out) == len(want):
                break
    if len(out) < len(want):
        raise ValueError(f"{path} has no frame {min(want - out.keys())} (decoded {len(out)} of {len(want)} wanted)")
    return [out[i] for i in wanted]


def inputs_for(processor: qwen_vl.Processor, item: dict) -> dict:
    bounds = qwen_vl.PixelBounds(*item["pixels"])
    if item["kind"] == "image":
        return processor.image_inputs(read_image(Path(item["path"])), item["prompt"], bounds)
    frames = read_frames(Path(item["path"]), item["frames"])
    return processor.video_inputs(frames, item["fps"], item["prompt"], bounds)


def _quiet_video_deprecation() -> None:
    """The slow image processor warns on every video that videos belong to the video processor: this path is
    deliberate (qwen_vl.py says why), so the warning is dropped; every other message stays."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "doesn't process videos anymore" not in record.getMessage()

    logging.getLogger("transformers.models.qwen2_vl.image_processing_qwen2_vl").addFilter(_Drop())


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    _quiet_video_deprecation()
    import torch
    from musubi_tuner.qwen_image.qwen_image_utils import load_qwen2_5_vl
    from transformers import GenerationConfig

    device = torch.device(job["device"])
    dtype = torch.float8_e4m3fn if job["fp8"] else torch.bfloat16
    print(f"hvlora: loading Qwen2.5-VL from {job['model_file']} ({dtype}, {device})", flush=True)
    t0 = time.monotonic()
    _tokenizer, model = load_qwen2_5_vl(job["model_file"], dtype=dtype, device=device, disable_mmap=True)
    model.eval()
    processor = qwen_vl.Processor(Path(job["processor_dir"]))
    generation = GenerationConfig.from_pretrained(job["processor_dir"])
    print(f"hvlora: model ready in {time.monotonic() - t0:.1f} s; {len(job['items'])} item(s) to caption", flush=True)
    store, failed = Path(job["store"]), []
    for i, item in enumerate(job["items"], 1):
        start = time.monotonic()
        try:
            inputs = inputs_for(processor, item)
            text, tokens, cut = qwen_vl.generate(
                model, processor, inputs, generation, item["settings"]["max_new_tokens"], job["fp8"]
            )
        except Exception:  # noqa: BLE001 - one bad item must not cost the others
            failed.append(item["file"])
            print(f"hvlora: {item['file']} could not be captioned:\n{traceback.format_exc()}", flush=True)
            continue
        caption, seconds = qwen_vl.tidy(text, cut), time.monotonic() - start
        atomic_write_json(
            store / f"{item['key']}.json",
            {
                "caption": caption,
                "seconds": round(seconds, 3),
                "tokens": tokens,
                "truncated": cut,
                "vision_tokens": processor.vision_tokens(inputs),
                "file": item["file"],
                "media": item["media"],
                "settings": {**item["settings"], "fp8": job["fp8"], "device": job["device"]},
                "run": job["run"],
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            },
        )
        cut_note = ", cut at the token limit" if cut else ""
        print(
            f"{LINE_PREFIX}{i}/{len(job['items'])}: {item['file']} ({seconds:.1f} s, {tokens} tokens{cut_note}): "
            f"{caption}",
            flush=True,
        )
    if failed:
        print(f"hvlora: {len(failed)} item(s) failed: {', '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
