"""Captions generated with the downloaded Qwen2.5-VL: which frames a video is captioned from, the model inputs, the
settings, and (end to end, `train_local.py` as a subprocess) the overlay, precedence, trigger word, resume after a
kill and --recaption, with a tiny real Qwen2.5-VL (tests/tinyqwen.py) loaded by the stand-in of musubi's loader and
run by the real transformers processor and generation code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import tinyqwen
from e2e import SMOKE, Workspace, hub_repos, k5_hub_repos
from hubserver import FakeHub
from mediafactory import make_image, make_video, make_zip
from safetensors import safe_open

from hvlora.captioning import overlay as caption_overlay
from hvlora.captioning import qwen_vl, requests
from hvlora.core.errors import ConfigError
from hvlora.data import frames
from hvlora.families.hunyuan_video_1_5 import FRAMES, catalog
from hvlora.families.hunyuan_video_1_5.captioning import CAPTIONER
from hvlora.families.kandinsky5 import captioning as k5_captioning
from hvlora.families.kandinsky5 import catalog as k5_catalog


def _video_frames(n, fps, target, mode, **kw):
    head = frames.effective_mode(mode, kw.get("frame_sample", 1)) == "head"
    clips = FRAMES.video_clips(n, fps, target, mode, **kw)
    return requests.video_frames(n, fps, clips, head, max(target), FRAMES.target_fps)


# --- which frames ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "kw", "expected", "fps"),
    [
        ("head", {}, tuple(range(9)), 24.0),
        # every frame trains (1-frame chunks): 60 > 32, so every second one, at half the rate
        ("chunk", {}, tuple(range(0, 60, 2)), 12.0),
        ("slide", {"frame_stride": 20}, (*range(0, 9), *range(20, 29), *range(40, 49)), 13.0),
        ("uniform", {"frame_sample": 2}, (*range(0, 9), *range(51, 60)), 6.915254),
        ("full", {}, tuple(range(0, 57, 2)), 12.0),  # 57 frames (4n+1 of 60), every second one
    ],
)
def test_video_is_captioned_from_the_frames_that_train(mode, kw, expected, fps):
    """A 60-frame 24 fps video, --target_frames 1,9: the frames of every clip musubi cuts, at most 32 of them at
    an even step, and the average rate they were taken at."""
    assert _video_frames(60, 24.0, (1, 9), mode, **kw) == (expected, fps)


def test_video_frames_follow_musubis_resampling():
    """A 30 fps video is read at 24 fps by musubi (decoded frames 1, 6, 11, ... dropped): the first 5 frames it
    trains on are decoded frames 0, 2, 3, 4, 5; their rate is 24 fps."""
    assert _video_frames(40, 30.0, (1, 5), "head") == ((0, 2, 3, 4, 5), 24.0)
    assert frames.kept_source_frames(10, 30.0, None, 24.0) == [0, 2, 3, 4, 5, 7, 8, 9]
    assert FRAMES.frames_read(10, 30.0, None) == 8


def test_request_key_covers_content_and_settings():
    common = {"model": "m@main", "processor": "p@main", "max_new_tokens": 64}
    a = requests.make("image", "zabc-1", "describe", common)
    assert a == requests.make("image", "zabc-1", "describe", dict(common))
    others = [
        requests.make("image", "zabd-1", "describe", common),
        requests.make("image", "zabc-1", "describe it", common),
        requests.make("image", "zabc-1", "describe", {**common, "max_new_tokens": 65}),
        requests.make("image", "zabc-1", "describe", {**common, "model": "m@other"}),
        requests.make("video", "zabc-1", "describe", common, ((0, 1), 24.0)),
    ]
    assert len({a.key, *(o.key for o in others)}) == 6
    assert (
        requests.make("video", "v", "d", common, ((0, 2), 12.0)).key
        != requests.make("video", "v", "d", common, ((0, 1), 24.0)).key
    )


# --- model inputs ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    return qwen_vl.Processor(tinyqwen.write_files(tmp_path_factory.mktemp("proc"), tinyqwen.processor_files()))


def test_video_inputs_carry_the_true_rate_and_bounded_pixels(processor):
    """The slow image processor's video path: 6 frames -> 3 temporal patches; second_per_grid_ts = 2 / fps (the
    processor's rule); one <|video_pad|> per merged patch; the frame area within the explicit bound."""
    import numpy as np

    bounds = qwen_vl.PixelBounds(16 * 784, 64 * 784)
    frames_ = [np.full((300, 500, 3), 40 * i, dtype=np.uint8) for i in range(6)]
    inputs = processor.video_inputs(frames_, 12.0, "Describe.", bounds)
    t, h, w = (int(x) for x in inputs["video_grid_thw"][0])
    assert t == 3 and h * w * 14 * 14 <= bounds.max and h * w * 14 * 14 >= bounds.min
    assert float(inputs["second_per_grid_ts"][0]) == pytest.approx(2 / 12)
    assert processor.vision_tokens(inputs) == t * h * w // 4
    assert inputs["pixel_values_videos"].shape[0] == t * h * w
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    assert text.startswith("<|im_start|>system\n") and text.endswith("Describe.<|im_end|>\n<|im_start|>assistant\n")


def test_image_inputs_and_tidy(processor, tmp_path):
    from PIL import Image

    inputs = processor.image_inputs(Image.new("RGB", (80, 48)), "Describe.", qwen_vl.PixelBounds(64 * 784, 128 * 784))
    t, h, w = (int(x) for x in inputs["image_grid_thw"][0])
    assert t == 1 and processor.vision_tokens(inputs) == h * w // 4 and 64 * 784 <= h * w * 196 <= 128 * 784
    assert qwen_vl.tidy(" A cat.\n\nIt sits.  Then it", truncated=True) == "A cat. It sits."
    assert qwen_vl.tidy("A cat. Then it jumps over the", truncated=True) == "A cat. Then it jumps over the"
    assert qwen_vl.tidy(" A cat\nsits ", truncated=False) == "A cat sits"


# --- settings and the overlay ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--caption_prompt", "a", "--caption_prompt_file", "p.txt"], "caption_prompt and caption_prompt_file"),
        (["--caption_prompt", "  "], "caption_prompt: is empty"),
        (["--caption_prompt_file", "missing.txt"], "missing.txt cannot be read"),
        (["--recaption"], "recaption needs --missing_caption generate or --caption_only"),
        (["--caption_only", "--missing_caption", "skip"], "drop --missing_caption skip"),
        (["--caption_only", "--dry_run"], "dry_run and caption_only together"),
        (["--caption_max_tokens", "4"], "caption_max_tokens: 4 is outside the valid range 16..1024"),
    ],
)
def test_caption_settings_are_checked(make_settings, tmp_path, flags, message):
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        make_settings(*flags)


def test_overlay_tells_edited_from_generated(tmp_path):
    ov = caption_overlay.Overlay(tmp_path / "captions" / "set")
    ov.write_caption("clips/walk.txt", "a walk")
    ov.write_index([{"caption_file": "clips/walk.txt", "generated_sha256": caption_overlay.sha256("a walk")}])
    ov = caption_overlay.Overlay(ov.root)  # read back
    assert ov.find("clips/walk.txt").source == "generated"
    ov.path("clips/walk.txt").write_text("a slow walk\n")
    assert ov.find("clips/walk.txt").source == "edited" and ov.find("clips/walk.txt").text == "a slow walk"
    ov.path("hand.txt").write_text("written by hand")  # not in the index: the user's own
    assert ov.find("hand.txt").source == "edited" and ov.find("nothing.txt") is None
    assert caption_overlay.caption_files(["a/b.mp4", "a/b.png", "c.jpg"]) == {
        "a/b.mp4": "a/b.mp4.txt",
        "a/b.png": "a/b.png.txt",
        "c.jpg": "c.txt",
    }


# --- end to end -----------------------------------------------------------------------------------------------


def caption_hub_repos(model: bytes) -> dict[str, dict[str, bytes]]:
    """The e2e hub with the tiny Qwen2.5-VL as the text encoder file and real (tiny) tokenizer/processor files."""
    repos = hub_repos()
    te = catalog.weights_for("t2v", "720p")["text_encoder"]
    repos[te.repo_id][te.filename] = model
    repos["Qwen/Qwen-Image"] = {f"tokenizer/{n}": b for n, b in tinyqwen.tokenizer_files().items()}
    repos[CAPTIONER.processor_repo_id] = tinyqwen.processor_files()
    return repos


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    return tinyqwen.write_model(tmp_path_factory.mktemp("tinyqwen") / "qwen.safetensors").read_bytes()


@pytest.fixture
def ws(tmp_path, model_bytes):
    with FakeHub(caption_hub_repos(model_bytes)) as hub:
        yield Workspace(tmp_path, hub)


CAPTION = ["--device", "cpu", "--resolution", "64x64", "--target_frames", "1,5", "--caption_max_tokens", "16"]


def overlay_of(ws: Workspace) -> Path:
    return ws.output / "captions" / "set"


def index_of(ws: Workspace) -> dict[str, dict]:
    lines = (overlay_of(ws) / "captions.jsonl").read_text().splitlines()
    return {r["file"]: r for r in map(json.loads, lines)}


def store_records(ws: Workspace) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (ws.output / "cache" / "captions").glob("*.json")}


def test_training_run_generates_what_is_missing(ws, tmp_path):
    """--missing_caption generate in a training run: the caption stage comes second ([2/8]), after the download of
    the processor files; the video is captioned from the frames that will train; a user's caption wins over an
    overlay file for the same media, an overlay file written by hand (edited) wins over generating; the trigger word
    is applied to generated captions as to the user's (never written into the overlay); text-encoder outputs are
    made from the final captions."""
    src = tmp_path / "src"
    make_zip(
        ws.data / "set.zip",
        {
            "stills/cat.png": make_image(src / "cat.png"),
            "stills/cat.txt": b"a cat by the user",
            "stills/dog.png": make_image(src / "dog.png", 64, 64),
            "clips/walk.mp4": make_video(src / "walk.mp4", frames=9, fps=24),
        },
    )
    for name, text in (("stills/cat.txt", "never used"), ("stills/dog.txt", "[trigger] a dog, by hand")):
        (overlay_of(ws) / name).parent.mkdir(parents=True, exist_ok=True)
        (overlay_of(ws) / name).write_text(text)
    r = ws.train(*SMOKE, *CAPTION[-2:], "--missing_caption", "generate", "--trigger_word", "ohwx")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "captions: 1 from the data, 1 edited in the overlay, 1 to generate; Qwen2.5-VL in bf16" in r.stdout
    assert "[2/8] caption media: done" in r.stdout and "[8/8] convert to ComfyUI: done" in r.stdout
    assert "caption: 1/1 items" in r.stdout
    run = ws.last_run
    assert [s["name"] for s in ws.summary(run)["stages"]][:3] == ["preflight", "download", "caption"]
    log = (run / "logs" / "caption.log").read_text()
    assert "torch.bfloat16" in log and "<All keys matched successfully>" in log and "hvlora caption 1/1" in log
    job = json.loads((run / "caption_job.json").read_text())
    assert [i["file"] for i in job["items"]] == ["clips/walk.mp4"]
    walk = job["items"][0]
    assert (walk["frames"], walk["fps"], walk["kind"]) == ([0, 1, 2, 3, 4], 24.0, "video")  # head: 5 frames train
    assert walk["prompt"] == CAPTIONER.prompts["video"] and walk["settings"]["max_new_tokens"] == 16
    generated = (overlay_of(ws) / "clips" / "walk.txt").read_text().strip()
    assert generated and "ohwx" not in generated
    dataset = run / "dataset"
    assert (dataset / "images" / "stills__cat.txt").read_text() == "ohwx, a cat by the user"
    assert (dataset / "images" / "stills__dog.txt").read_text() == "ohwx a dog, by hand"
    assert (dataset / "videos_24fps" / "clips__walk.txt").read_text() == f"ohwx, {generated}"
    index = index_of(ws)
    assert {n: r["source"] for n, r in index.items()} == {
        "clips/walk.mp4": "generated",
        "stills/cat.png": "user",
        "stills/dog.png": "edited",
    }
    assert index["clips/walk.mp4"]["caption"] == f"ohwx, {generated}" and index["clips/walk.mp4"]["seconds"] > 0
    report = json.loads((run / "dataset_report.json").read_text())
    assert {f["file"]: f["caption_source"] for f in report["files"]} == {n: r["source"] for n, r in index.items()}
    te_captions = {
        safe_open(str(p), "pt").metadata()["caption1"] for p in (run / "cache").rglob("*_hv15_te.safetensors")
    }
    assert f"ohwx, {generated}" in te_captions and len(te_captions) == 3
    assert (overlay_of(ws) / "stills" / "cat.txt").read_text() == "never used"
    assert sorted(p.name for p in ws.data.iterdir()) == ["set.zip"]


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before the awaited point"
        time.sleep(0.05)


def test_caption_only_resumes_after_a_kill_and_recaption_spares_edits(ws, tmp_path):
    """--caption_only fetches only the Qwen2.5-VL file and the processor files, and the memory preset decides fp8.
    SIGKILL to the whole command once the first caption is stored: the same command generates only the other one.
    An unchanged command then starts no caption stage (no model load). --recaption with another instruction
    generates every unedited caption again (here the one not edited) and leaves the edited one as it is."""
    src = tmp_path / "src"
    make_zip(ws.data / "set.zip", {f"img{i}.png": make_image(src / f"img{i}.png", 64 + 16 * i, 64) for i in range(2)})
    stored = ws.output / "cache" / "captions"
    flags = [*CAPTION, "--caption_only", "--vram", "16", "--caption_prompt", "Describe."]
    proc = subprocess.Popen(ws.argv(*flags), env=ws.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        _wait_for(lambda: stored.is_dir() and len(store_records(ws)) >= 1, proc)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    first = store_records(ws)
    assert len(first) == 1 and all(r["settings"]["fp8"] is True for r in first.values())

    r = ws.train(*flags)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "captions: 1 generated, 1 to generate; Qwen2.5-VL in fp8 (--fp8_vl)" in r.stdout
    assert "[1/2] download weights" in r.stdout and "[2/2] caption media: done" in r.stdout
    log = (ws.last_run / "logs" / "caption.log").read_text()
    assert "1 of 1 captions to generate\n" in log and "prepare Qwen2.5-VL for fp8" in log
    fetched = {p.relative_to(ws.models).as_posix() for p in ws.models.rglob("*.safetensors")}
    assert fetched == {f"{catalog.COMFY_REPO}/split_files/text_encoders/qwen_2.5_vl_7b.safetensors"}  # no DiT, VAE
    records = store_records(ws)
    assert len(records) == 2 and all(records[k] == v for k, v in first.items())  # the finished one is kept
    assert {r["source"] for r in index_of(ws).values()} == {"generated"}
    assert sorted(p.name for p in overlay_of(ws).iterdir()) == ["captions.jsonl", "img0.txt", "img1.txt"]

    r = ws.train(*flags)
    assert r.returncode == 0 and "caption media" not in r.stdout and not (ws.last_run / "logs" / "caption.log").exists()

    edited = overlay_of(ws) / "img1.txt"
    edited.write_text("my own words")
    r = ws.train(*CAPTION, "--caption_only", "--recaption", "--caption_prompt", "Name the colours.")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "1 of 1 captions to generate" in (ws.last_run / "logs" / "caption.log").read_text()
    assert edited.read_text() == "my own words"
    index = index_of(ws)
    assert index["img1.png"]["source"] == "edited" and index["img1.png"]["caption"] == "my own words"
    regenerated = [rec for n, rec in index.items() if n != "img1.png"]
    assert all(rec["settings"]["prompt"] == "Name the colours." for rec in regenerated)
    assert all(store_records(ws)[rec["key"]]["run"] == ws.last_run.name for rec in regenerated)
    assert all(rec["settings"]["fp8"] is False for rec in regenerated)  # CPU without --vram: no preset, bf16

    # a run without --missing_caption generate lays the data out with the overlay's captions (a dry run: the
    # training run in test_training_run_generates_what_is_missing trains on what this layout holds)
    r = ws.train(*SMOKE, "--dry_run", "--trigger_word", "ohwx")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    laid_out = {p.name: p.read_text() for p in (ws.last_run / "dataset" / "images").glob("*.txt")}
    assert laid_out == {f"img{n}.txt": "ohwx, " + (overlay_of(ws) / f"img{n}.txt").read_text().strip() for n in (0, 1)}


def test_kandinsky5_captions_with_the_qwen_folder_it_shares_with_hv15(tmp_path, model_bytes):
    """Kandinsky 5's captioner is the Qwen2.5-VL of its text-encoder folder: --caption_only fetches that folder and the
    single file it shares with HunyuanVideo 1.5 (nothing else), links the file in, and the worker loads it from
    there; K5's own instructions; the 16 GB preset (Qwen2.5-VL does not fit in bf16: text_encoder_cpu) loads it in
    fp8."""
    folder = k5_catalog.qwen_folder()
    repos = k5_hub_repos()
    repos[folder.shared.repo_id][folder.shared.filename] = model_bytes
    with safe_open_bytes(model_bytes) as names:
        index = {"weight_map": {n: folder.shards[0] for n in names}}
    repos[folder.repo_id].update(tinyqwen.processor_files())
    repos[folder.repo_id][folder.index] = json.dumps(index).encode()
    repos["Qwen/Qwen-Image"] = {f"tokenizer/{n}": b for n, b in tinyqwen.tokenizer_files().items()}
    with FakeHub(repos) as hub:
        ws = Workspace(tmp_path, hub)
        make_zip(ws.data / "set.zip", {"clips/walk.mp4": make_video(tmp_path / "walk.mp4", frames=9, fps=24)})
        r = ws.train(*CAPTION, "--model_family", "kandinsky5", "--caption_only", "--vram", "16")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Qwen2.5-VL in fp8 (--text_encoder_cpu)" in r.stdout and "[2/2] caption media: done" in r.stdout
    job = json.loads((ws.last_run / "caption_job.json").read_text())
    linked = ws.models / folder.repo_id / "model.safetensors"
    assert job["model_file"] == str(linked) and linked.resolve() == folder.shared.local_path(ws.models).resolve()
    assert job["fp8"] is True and job["items"][0]["prompt"] == k5_captioning.VIDEO_PROMPT
    assert "<All keys matched successfully>" in (ws.last_run / "logs" / "caption.log").read_text()
    fetched = {p.relative_to(ws.models).as_posix() for p in ws.models.rglob("*.safetensors") if not p.is_symlink()}
    assert fetched == {f"{folder.shared.repo_id}/{folder.shared.filename}"}  # no DiT, VAE, CLIP or shard
    assert (overlay_of(ws) / "clips" / "walk.txt").read_text().strip()


class safe_open_bytes:
    """The tensor names of a safetensors file given as bytes."""

    def __init__(self, data: bytes):
        from safetensors.torch import load

        self.names = list(load(data))

    def __enter__(self):
        return self.names

    def __exit__(self, *exc):
        return False


def test_worker_reads_what_the_model_sees(tmp_path):
    """Images with their EXIF orientation applied (the preflight warns musubi ignores it); video frames by their
    number in decoding order, as musubi's load_video counts them."""
    import av
    from PIL import Image

    from hvlora.captioning import worker

    img = Image.new("RGB", (80, 48))
    exif = img.getexif()
    exif[0x0112] = 6  # rotated 90 degrees when viewed
    img.save(tmp_path / "r.jpg", exif=exif)
    assert worker.read_image(tmp_path / "r.jpg").size == (48, 80)
    video = make_video(tmp_path / "v.mp4", frames=9)
    with av.open(str(video)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    picked = worker.read_frames(video, [0, 3, 8])
    assert all((a == decoded[i]).all() for a, i in zip(picked, (0, 3, 8), strict=True))
    with pytest.raises(ValueError, match="has no frame 9"):
        worker.read_frames(video, [0, 9])


def test_dry_run_shows_the_captions_to_generate(ws, tmp_path):
    make_zip(
        ws.data / "set.zip", {"a.png": make_image(tmp_path / "a.png"), "b.png": make_image(tmp_path / "b.png", 64)}
    )
    r = ws.train(*CAPTION, "--dry_run", "--missing_caption", "generate")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "captions of the usable files: 2 to generate" in r.stdout  # the preflight's report
    assert "captions: 2 to generate; Qwen2.5-VL in bf16" in r.stdout  # the plan
    assert "[2/8] 2 caption(s) to generate" in r.stdout and "[5/8] python -m musubi_tuner.hv_1_5_cache_latents" in (
        r.stdout
    )
    assert f"missing  caption processor {CAPTIONER.processor_repo_id}" in r.stdout
    assert json.loads((ws.last_run / "plan.json").read_text())["captions_to_generate"] == 2
    assert not (ws.output / "captions").exists() and not (ws.output / "cache" / "captions").exists()


# --- precedence and the overlay sync, in process ----------------------------------------------------------------


def _preflight(make_settings, tmp_path, *flags):
    from hvlora.data import preflight

    s = make_settings("--resolution", "64x64", "--input_dir", str(tmp_path / "in"), *flags)
    return preflight.run(s, tmp_path / "work")


def _fake_generation(report, tmp_path):
    """What the child does, without a model: one stored caption per request, then the stage's overlay sync."""
    from hvlora.stages import caption

    store = caption_overlay.Store(caption_overlay.store_dir(report.settings.output_dir))
    for f in report.to_caption:
        r = f.caption_request
        store.put(r.key, {"caption": f"a picture of {f.name}", "seconds": 1.0, "media": r.media_key,
                          "settings": r.settings, "run": "r1"})  # fmt: skip
    caption._sync(report, store, lambda _msg: None)


def _identity(report) -> str:
    """The data fingerprint a run is continued by (runs.identity)."""
    from hvlora.cache import caches
    from hvlora.core import runs
    from hvlora.training import plan

    the_plan = plan.make(report.settings, report.buckets(), gpus=[], host_ram=64 * 2**30)
    return runs.identity(
        report.settings, report, caches.plan(report.settings, report, the_plan.memory, None), the_plan
    )["data"]


def test_a_run_stopped_while_captioning_is_the_same_run(make_settings, tmp_path):
    """A file's generated caption counts by its request key: the run identity is the same before the caption is
    generated and after (so the same command continues the same run folder), and differs once it is edited."""
    make_image(tmp_path / "in" / "a.png", 64, 64)
    flags = ("--missing_caption", "generate")
    report = _preflight(make_settings, tmp_path, *flags)
    assert [f.caption_source for f in report.files] == ["pending"]
    before = _identity(report)
    _fake_generation(report, tmp_path)
    after = _preflight(make_settings, tmp_path, *flags)
    assert [f.caption_source for f in after.files] == ["generated"] and _identity(after) == before
    (tmp_path / "output" / "captions" / "in" / "a.txt").write_text("edited")
    assert _identity(_preflight(make_settings, tmp_path, *flags)) != before


def test_caption_prompt_file(make_settings, tmp_path):
    from hvlora.captioning import plan

    (tmp_path / "p.txt").write_text("\ufeffDescribe only the colours.\n", encoding="utf-8")
    s = make_settings("--caption_prompt_file", str(tmp_path / "p.txt"))
    assert (
        plan.prompt_for(s, CAPTIONER, "video")
        == plan.prompt_for(s, CAPTIONER, "image")
        == ("Describe only the colours.")
    )
    assert plan.prompt_for(make_settings(), CAPTIONER, "image") == CAPTIONER.prompts["image"]


def test_precedence_and_what_changes_a_generated_caption(make_settings, tmp_path):
    """user > overlay (edited, or generated from this content) > generating; a replaced file or changed settings
    make a generated caption stale; an edited one is always used; a fully captioned dataset needs no stage."""
    from hvlora.stages import caption

    src = tmp_path / "in"
    for name, size in (("a.png", 64), ("b.png", 80), ("c.png", 96)):
        make_image(src / name, size, 64)
    (src / "a.txt").write_text("a by the user")
    flags = ("--missing_caption", "generate", "--trigger_word", "ohwx")
    report = _preflight(make_settings, tmp_path, *flags)
    assert {f.name: f.caption_source for f in report.files} == {"a.png": "user", "b.png": "pending", "c.png": "pending"}
    assert caption.needed(report)
    _fake_generation(report, tmp_path)
    assert {f.name: f.caption for f in report.files} == {
        "a.png": "ohwx, a by the user",
        "b.png": "ohwx, a picture of b.png",
        "c.png": "ohwx, a picture of c.png",
    }
    overlay = tmp_path / "output" / "captions" / "in"
    assert (overlay / "b.txt").read_text() == "a picture of b.png\n"

    (overlay / "c.txt").write_text("c, edited")
    report = _preflight(make_settings, tmp_path, *flags)
    assert {f.name: f.caption_source for f in report.files} == {
        "a.png": "user",
        "b.png": "generated",
        "c.png": "edited",
    }
    assert [f.caption for f in report.files] == ["ohwx, a by the user", "ohwx, a picture of b.png", "ohwx, c, edited"]
    assert caption.needed(report)  # captions.jsonl still says c.png is generated
    _fake_generation(report, tmp_path)
    assert not caption.needed(_preflight(make_settings, tmp_path, *flags))  # nothing to do: no stage

    report = _preflight(make_settings, tmp_path, *flags, "--caption_max_tokens", "17")  # another setting
    assert {f.name: f.caption_source for f in report.files} == {"a.png": "user", "b.png": "pending", "c.png": "edited"}
    assert any("generated again (the captioning settings changed)" in str(p) for p in report.files[1].problems)

    make_image(src / "b.png", 88, 64)  # b.png replaced: its generated caption describes another picture
    report = _preflight(make_settings, tmp_path)  # --missing_caption error
    b = report.files[1]
    assert b.caption_source is None and any("has no caption" in str(p) for p in report.errors)
    assert any("was made from an earlier version of it" in str(p) for p in b.problems)
    assert report.files[2].caption == "c, edited"  # an edited caption is used without --missing_caption generate

    (src / "b.txt").write_text("b by the user")
    (src / "c.txt").write_text("c by the user")
    report = _preflight(make_settings, tmp_path, *flags)
    assert {f.caption_source for f in report.files} == {"user"} and not caption.needed(report)
