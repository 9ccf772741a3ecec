"""End to end: `train_local.py` as a subprocess through all seven stages, with the real download code against a
local hub, real zips and media, real accelerate, and the stand-in musubi package (tests/standin) on PYTHONPATH."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest
from e2e import SMOKE, Workspace, hub_repos, prefetch, run_folder
from hubserver import FakeHub
from mediafactory import dataset_zip, make_video

from hvlora.families.hunyuan_video_1_5 import comfyui

STAGE_NAMES = ["preflight", "download", "extract", "dataset_toml", "cache_latents", "cache_text_encoder_outputs",
               "train", "convert"]  # fmt: skip


@pytest.fixture(scope="module")
def ws(module_tmp):
    """One workspace for the module, with every model file already fetched (as a first run would), so each test
    can run alone with --skip_download."""
    root = module_tmp
    with FakeHub(hub_repos()) as hub:
        w = Workspace(root, hub)
        dataset_zip(
            root / "src",
            w.data / "set.zip",
            images={"stills/cat.png": "a cat", "stills/dog.jpg": "a dog"},
            videos={"clips/walk.mp4": ('a walk, the sign says "HELLO"', 9), "clips/short.mp4": ("short", 3)},
        )
        for task in ("t2v", "i2v"):
            prefetch(w, task)
        yield w


def gets(hub: FakeHub) -> int:
    return len([r for r in hub.file_requests("GET") if r.sent])


def test_full_run_produces_both_loras(ws):
    r = ws.train(*SMOKE, "--trigger_word", "ohwx")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[preflight] check data" in r.stdout and "musubi items per bucket" in r.stdout
    for i, title in enumerate(
        [
            "download weights",
            "extract data",
            "write dataset TOML",
            "cache latents",
            "cache text-encoder outputs",
            "train LoRA",
            "convert to ComfyUI",
        ],
        1,
    ):
        assert f"[{i}/7] {title}" in r.stdout and f"[{i}/7] {title}: done in " in r.stdout
    lora, comfy = ws.output / "lora.safetensors", ws.output / "lora_comfyui.safetensors"
    assert comfyui.verify(lora, comfy)["comfyui_modules"] == 540
    run = ws.last_run
    summary = ws.summary(run)
    assert summary["status"] == "succeeded"
    assert [s["name"] for s in summary["stages"]] == STAGE_NAMES
    assert all(s["status"] == "ok" and s["wall_s"] >= 0 for s in summary["stages"])
    modules = ["hv_1_5_cache_latents", "hv_1_5_cache_text_encoder_outputs", "hv_1_5_train_network", "convert_"]
    for stage, module in zip(summary["stages"][4:], modules, strict=True):  # each musubi command is recorded
        assert stage["command"][0] == sys.executable and any(module in a for a in stage["command"]), stage
    assert summary["outputs"]["lora.safetensors"]["path"] == str(lora)
    # musubi's cache holds what it was asked for: 2 images; walk.mp4 (9 frames) gives clips of 1 and 5 frames,
    # short.mp4 (3 frames) only the 1-frame clip; exactly the files the preflight predicted
    assert (summary["items"]["latents_encoded"], summary["items"]["latents_reused"]) == (5, 0)
    assert (summary["items"]["captions_encoded"], summary["items"]["captions_reused"]) == (4, 0)
    assert summary["items"]["items"] == 5
    report = json.loads((run / "dataset_report.json").read_text())
    predicted = {c for f in report["files"] for c in f["latent_cache_files"]}
    assert {p.name for p in (run / "cache").rglob("*_hv15.safetensors")} == predicted  # the run's view
    assert len(list((run / "cache").rglob("*_hv15_te.safetensors"))) == 4
    # the run folder has everything the issue lists
    for rel in (
        "dataset.toml",
        "config.toml",
        "summary.json",
        "checkpoints/lora.safetensors",
        "checkpoints/lora_comfyui.safetensors",
        "checkpoints/lora-step00000002-state",  # the final state, under its true step
        "metrics.jsonl",
        "loss.png",
        "segments.json",
        "run.json",
    ):
        assert (run / rel).exists(), rel
    assert sorted(p.name for p in (run / "logs").glob("*.log")) == sorted(f"{n}.log" for n in STAGE_NAMES)
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    # the stand-in saw the captions with the trigger word, and musubi's progress reached the train log
    assert "ohwx, a cat" in (run / "dataset" / "images" / "stills__cat.txt").read_text()
    assert {"dataset_report.json", "dataset_report.txt"} <= {p.name for p in run.iterdir()}
    # musubi's own progress bar reached the log: its last state is step 2 of 2 with the moving-average loss
    assert re.search(r"^steps: 100%\|.*\| 2/2 \[.*avr_loss=\d", (run / "logs" / "train.log").read_text(), re.M)
    # each musubi module ran once, with this interpreter
    modules = [c["module"] for c in ws.calls_made()]
    assert modules == [
        "hv_1_5_cache_latents",
        "hv_1_5_cache_text_encoder_outputs",
        "hv_1_5_train_network",
        "networks.convert_hunyuan_video_1_5_lora_to_comfy",
    ]


@pytest.mark.parametrize(
    "mode",
    [["--frame_extraction", "slide", "--frame_stride", "2"], ["--frame_extraction", "uniform", "--frame_sample", "3"]],
)
def test_preflight_predicts_the_caches_of_mixed_frame_rates(tmp_path, ws, mode):
    """24 and 30 fps videos: two blocks with their source_fps; the latent stage checks that musubi (here the
    stand-in, whose clip logic was checked against musubi's own classes) wrote exactly the predicted files."""
    src = tmp_path / "in"
    make_video(src / "a24.mp4", frames=13, fps=24)
    make_video(src / "b30.mp4", frames=16, fps=30)
    for n in ("a24", "b30"):
        (src / f"{n}.txt").write_text(f"clip {n}")
    r = ws.train(*SMOKE, "--input_dir", str(src), "--skip_download", "--output_name", "fps", *mode)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = ws.summary()
    run = ws.last_run
    latents = {b.name: len(list(b.glob("*_hv15.safetensors"))) for b in (run / "cache").iterdir()}
    # counted by hand: b30's 16 frames at 30 fps keep 13 at 24 fps, like a24's 13. With target_frames 1,5:
    # slide stride 2 starts clips of 1 at 0,2,..,12 (7) and of 5 at 0,2,..,8 (5); uniform 3 takes 3 of each length
    expected = {"slide": 7 + 5, "uniform": 3 + 3}[mode[1]]
    assert latents == {"videos_24fps": expected, "videos_30fps": expected}
    assert summary["items"]["items"] == 2 * expected


def test_second_run_fetches_nothing_and_keeps_the_first_lora(ws):
    r = ws.train(*SMOKE, "--trigger_word", "ohwx", "--skip_download")  # this test's own first run
    assert r.returncode == 0, r.stderr[-3000:]
    first_run = ws.last_run
    first_bytes = (first_run / "checkpoints" / "lora.safetensors").read_bytes()
    before = gets(ws.hub)
    r = ws.train(*SMOKE, "--trigger_word", "ohwx", "--seed", "7")
    assert r.returncode == 0, r.stderr[-3000:]
    assert gets(ws.hub) == before  # complete files are not fetched again
    assert (first_run / "checkpoints" / "lora.safetensors").read_bytes() == first_bytes
    assert (ws.output / "lora.safetensors").read_bytes() != first_bytes
    assert not list((ws.output / "runs").glob("kept-*"))  # the first LoRA is safe in its run folder


def test_skip_cache_reuses_a_complete_cache_and_refuses_a_stale_one(ws):
    r = ws.train(*SMOKE, "--trigger_word", "skipc", "--skip_download")
    assert r.returncode == 0, r.stderr[-3000:]
    ws.calls.unlink(missing_ok=True)
    r = ws.train(*SMOKE, "--trigger_word", "skipc", "--skip_cache", "--skip_download")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[4/7] cache latents: skipped" in r.stdout and "[5/7] cache text-encoder outputs: skipped" in r.stdout
    assert [c["module"] for c in ws.calls_made()] == [
        "hv_1_5_train_network",
        "networks.convert_hunyuan_video_1_5_lora_to_comfy",
    ]
    stages = {s["name"]: s["status"] for s in ws.summary()["stages"]}
    assert stages["cache_latents"] == stages["cache_text_encoder_outputs"] == "skipped"
    # another trigger word changes every caption: their text-encoder outputs are missing (the latents are not)
    r = ws.train(*SMOKE, "--trigger_word", "zxcv", "--skip_cache", "--skip_download")
    assert r.returncode == 2 and "--skip_cache: 4 cache file(s) are missing" in r.stderr
    assert "_hv15_te.safetensors" in r.stderr and "_hv15.safetensors" not in r.stderr


def test_failing_stage_prints_stage_command_and_log_tail(ws):
    before = len(ws.hub.requests)
    r = ws.train(*SMOKE, "--offline", env={"STANDIN_FAIL": "hv_1_5_train_network"})
    assert len(ws.hub.requests) == before  # --offline: not one request
    assert r.returncode == 1
    assert "stage train FAILED: exited with code 1" in r.stderr
    assert "command: " in r.stderr and "-m accelerate.commands.launch" in r.stderr
    assert "musubi_tuner.hv_1_5_train_network" in r.stderr
    assert "last " in r.stderr and "| " in r.stderr and "logs/train.log" in r.stderr
    summary = ws.summary()
    assert summary["status"] == "failed"
    train = [s for s in summary["stages"] if s["name"] == "train"][0]
    assert train["status"] == "failed" and train["exit_code"] == 1 and train["command"]
    assert "convert" not in [s["name"] for s in summary["stages"]]


def test_incomplete_lora_fails_the_run_and_publishes_nothing(ws):
    before = {p.name: p.stat().st_mtime_ns for p in ws.output.glob("*.safetensors")}
    r = ws.train(
        *SMOKE, "--skip_download", "--output_name", "broken", env={"STANDIN_DROP_MODULE": "double_blocks_5_img_mlp_fc1"}
    )
    assert r.returncode == 1
    assert "stage convert FAILED" in r.stderr and "lora_unet_double_blocks_5_img_mlp_fc1" in r.stderr
    assert "Done in" not in r.stdout
    assert not (ws.output / "broken.safetensors").exists() and not (ws.output / "broken_comfyui.safetensors").exists()
    assert {p.name: p.stat().st_mtime_ns for p in ws.output.glob("*.safetensors")} == before


def test_i2v_trains_on_the_videos_and_leaves_the_images_out(ws):
    """The stand-in trainer, like musubi's, fails on latents cached without --i2v, and its latent cache, like
    musubi's, fails on still images with --i2v: passing means the images were left out and the videos cached
    with image latents."""
    ws.calls.unlink(missing_ok=True)
    r = ws.train(*SMOKE, "--task", "i2v", "--output_name", "i2v", "--skip_download")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "stills/cat.png" in r.stdout and "--task i2v trains on videos" in r.stdout
    assert comfyui.verify(ws.output / "i2v.safetensors", ws.output / "i2v_comfyui.safetensors")
    argv = {c["module"]: c["argv"] for c in ws.calls_made()}
    assert "--i2v" in argv["hv_1_5_cache_latents"]
    assert any("720p_i2v" in a for a in argv["hv_1_5_train_network"])
    summary = ws.summary()
    assert [b.name for b in (ws.last_run / "cache").iterdir()] == ["videos_24fps"] and summary["items"]["images"] == 0


def test_i2v_with_only_images_stops_before_any_work(tmp_path, ws):
    src = tmp_path / "stills"
    dataset_zip(tmp_path / "s", src / "only.zip", images={"a.png": "a", "b.png": "b"})
    r = ws.train(*SMOKE, "--task", "i2v", "--input_zip", str(src / "only.zip"), "--skip_download")
    assert r.returncode == 2 and "no usable media remain" in r.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_the_group_and_says_how_to_resume(ws, tmp_path, signum):
    pidfile = tmp_path / "pids"
    env = ws.env(STANDIN_BLOCK="hv_1_5_train_network", STANDIN_PIDFILE=str(pidfile))
    proc = subprocess.Popen(
        ws.argv(*SMOKE, "--skip_download"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    seen = []
    for line in proc.stdout:  # wait until musubi's stand-in is training (blocked), then press "Ctrl-C"
        seen.append(line)
        if "standin: waiting for a signal" in line:
            break
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    ws.last_run = run_folder("".join(seen) + out)
    assert proc.returncode == 128 + signum
    assert f"Stopped ({signal.Signals(signum).name}) during train" in err
    assert "run the same command again" in err
    for pid in map(int, pidfile.read_text().split()):
        assert not _alive(pid)
    summary = ws.summary()
    assert summary["status"] == "interrupted"
    assert summary["stages"][-1]["name"] == "train" and summary["stages"][-1]["status"] == "interrupted"


def test_dry_run_writes_plan_and_starts_nothing(ws):
    ws.calls.unlink(missing_ok=True)
    before = len(ws.hub.requests)
    r = ws.train("--dry_run", "--target_frames", "1,5")
    assert r.returncode == 0, r.stderr
    assert len(ws.hub.requests) == before and not ws.calls_made()
    plan = json.loads((ws.last_run / "plan.json").read_text())
    assert [s["name"] for s in plan["stages"]] == ["cache_latents", "cache_text_encoder_outputs", "train", "convert"]
    assert plan["stages"][2]["launcher"][:2] == ["accelerate", "launch"]
    assert "present  dit:" in r.stdout


def test_dry_run_checks_resume_as_the_real_run_does(ws, tmp_path):
    """--resume naming a missing path, a file or a folder that is no run: the dry run refuses it with the real
    run's message, in seconds (before the data check), and starts nothing."""
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    expected = {
        tmp_path / "nope": "does not exist; pass a run folder from",
        tmp_path / "notes.txt": "is a file, not a run folder; pass a run folder from",
        tmp_path / "empty": "not a run folder of this trainer (no run.json)",
    }
    before = len(ws.runs())
    for path, words in expected.items():
        said = []
        for mode in (("--dry_run",), ("--skip_download",)):
            r = ws.train(*SMOKE, *mode, "--resume", str(path))
            assert r.returncode == 2 and f"--resume {path}" in r.stderr and words in r.stderr, r.stderr
            assert "[preflight]" not in r.stdout  # refused before the data check
            said.append(r.stderr.strip().splitlines()[-1])
        assert said[0] == said[1]
    assert len(ws.runs()) == before


def test_no_gpu_fails_in_seconds_before_any_work(ws):
    before = (len(ws.hub.requests), len(ws.runs()))
    r = ws.train("--device", "cuda", env={"CUDA_VISIBLE_DEVICES": ""})  # no GPU even on a machine with one
    assert r.returncode == 2
    assert "no CUDA GPU is visible" in r.stderr and "--device cpu" in r.stderr
    assert (len(ws.hub.requests), len(ws.runs())) == before  # nothing downloaded, no run folder


def test_bad_data_fails_before_any_download(tmp_path):
    with FakeHub(hub_repos()) as hub:
        w = Workspace(tmp_path, hub)
        dataset_zip(tmp_path / "src", w.data / "bad.zip", images={"a.png": "a", "b.png": None})
        r = w.train(*SMOKE)
        assert r.returncode == 2 and "b.png: has no caption" in r.stderr and "nothing was downloaded" in r.stderr
        assert hub.requests == []
        report = json.loads((w.runs()[-1] / "dataset_report.json").read_text())
        assert report["usable"] is False and [f["status"] for f in report["files"]] == ["ok", "error"]
        assert w.summary()["status"] == "failed"


def test_check_data_reports_and_exits_by_usability(tmp_path):
    with FakeHub(hub_repos()) as hub:
        w = Workspace(tmp_path, hub)
        dataset_zip(tmp_path / "src", w.data / "d.zip", images={"a.png": "a"}, videos={"v.mp4": ("v", 9)})
        r = w.train("--check_data", "--target_frames", "1,5,13", "--resolution", "64x64")
        assert r.returncode == 0, r.stderr
        assert "The data is usable" in r.stdout and "v.mp4" in r.stdout and "80x48x5: 1" in r.stdout
        run = w.runs()[-1]
        report = json.loads((run / "dataset_report.json").read_text())
        assert report["totals"]["items"] == 3  # a.png; v.mp4 (9 frames): 1 and 5, not 13
        assert not (run / "extracted").exists()  # a check leaves no unpacked copy behind
        r = w.train("--check_data", "--target_frames", "13", "--strict")
        assert r.returncode == 2 and "v.mp4: left out: 9 frames" in r.stderr
        assert hub.requests == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
