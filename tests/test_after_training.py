"""After training, end to end: `--generate` (base vs LoRA with the stand-in's hv_1_5_generate_video, which uses musubi's
real parser) and `--push_to_hub` (the real huggingface_hub upload code against the local hub of hubupload.py).

One training run (train_local.py with the stand-in musubi, and --push_to_hub) is shared by the module; tests that
change a run work on a copy of its folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from e2e import SMOKE, Workspace, hub_repos, prefetch
from hubupload import UploadHub
from mediafactory import dataset_zip

from hvlora.compare import compose
from hvlora.compare import generate as compare
from hvlora.core.cli import load_settings
from hvlora.core.errors import StageFailed, UserError
from hvlora.share import push

TOKEN = "hf_test_write_token_7f3a9c"


@pytest.fixture(scope="module")
def ws(module_tmp):
    """A finished run trained with --push_to_hub alice/trained (so the fixture is also the train-then-push test)."""
    root = module_tmp
    with UploadHub(hub_repos(), users={TOKEN: "alice"}, multipart_chunk=16 * 1024 * 1024) as hub:
        w = Workspace(root, hub)
        dataset_zip(
            root / "src",
            w.data / "set.zip",
            images={"stills/cat.png": "[trigger] sits on a red chair"},
            videos={"clips/walk.mp4": ("[trigger] walks along a beach", 9)},
        )
        prefetch(w, "t2v")
        w.push_run = w.train(
            *SMOKE, "--trigger_word", "ohwx", "--push_to_hub", "alice/trained", env={"HF_TOKEN": TOKEN}
        )
        assert w.push_run.returncode == 0, w.push_run.stdout[-3000:] + w.push_run.stderr[-3000:]
        w.run = w.last_run
        yield w


def gen_calls(w: Workspace) -> list[list[str]]:
    return [c["argv"][1:] for c in w.calls_made() if c["module"] == "hv_1_5_generate_video"]


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def committed(hub: UploadHub, repo: str) -> dict[str, bytes]:
    return {p: d for p, d in hub.files(repo).items() if p != ".gitattributes"}


# --- train, then push -----------------------------------------------------------------------------------------------


def test_training_with_push_to_hub_uploads_the_run_privately(ws):
    files = committed(ws.hub, "alice/trained")
    assert set(files) == {"lora.safetensors", "lora_comfyui.safetensors", "loss.png", "README.md"}
    assert ws.hub.created["alice/trained"]["private"] is True  # private unless --hub_public
    assert files["lora.safetensors"] == (ws.run / "checkpoints" / "lora.safetensors").read_bytes()
    assert f"Uploaded to {ws.hub.url}/alice/trained" in ws.push_run.stdout
    record = json.loads((ws.run / "hub.json").read_text())
    assert record["status"] == "done" and record["url"] == f"{ws.hub.url}/alice/trained" and TOKEN not in str(record)
    assert ws.summary(ws.run)["status"] == "succeeded"
    # the LoRA files went through the LFS batch API (multipart: they are larger than the 16 MB chunk)
    assert hashlib.sha256(files["lora_comfyui.safetensors"]).hexdigest() in {
        p.oid for p in ws.hub.lfs_puts if p.part > 1
    }


def test_model_card_fields_and_no_private_data(ws, tmp_path):
    from huggingface_hub import ModelCard

    files = committed(ws.hub, "alice/trained")
    (tmp_path / "README.md").write_bytes(files["README.md"])
    card = ModelCard.load(tmp_path / "README.md")
    data = card.data.to_dict()
    assert data["base_model"] == "tencent/HunyuanVideo-1.5" and data["base_model_relation"] == "adapter"
    assert (data["license"], data["license_name"]) == ("other", "tencent-hunyuan-community")
    assert data["license_link"] == "https://huggingface.co/tencent/HunyuanVideo-1.5/blob/main/LICENSE"
    assert {"lora", "hunyuan-video", "text-to-video"} <= set(data["tags"]) and data["pipeline_tag"] == "text-to-video"
    assert data["instance_prompt"] == "ohwx" and "library_name" not in data
    text = card.text
    for expected in ("`ohwx`", "| rank / alpha | 4 / 4 |", "| steps | 2 |", "| learning rate | 0.0001 |",
                     "| LR schedule | constant |", "| resolution | 64x64 |", "| frames per clip | 1,5 |",
                     "| data fingerprint |", "items per bucket", "lora_comfyui.safetensors",
                     "--lora_weight lora.safetensors", "![training loss](loss.png)",
                     "Tencent Hunyuan Community License"):  # fmt: skip
        assert expected in text, expected
    for path, data in files.items():
        assert TOKEN.encode() not in data, path
        assert str(ws.root).encode() not in data, path  # no absolute path of this machine
        assert b"sits on a red chair" not in data and b"walks along a beach" not in data, path  # no caption


# --- generate -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compared(ws):
    """One comparison: two prompts x two seeds at 96x64, 5 frames, 2 steps."""
    before = len(gen_calls(ws))
    r = ws.train(
        "--device", "cpu", "--generate", "--prompt", "ohwx walks", "--prompt", "a red chair", "--seeds", "3,4",
        "--video_size", "96x64", "--video_length", "5", "--infer_steps", "2", "--lora_multiplier", "0.8",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    folder = max((ws.run / "compare").iterdir())
    return r, folder, gen_calls(ws)[before:]


def test_generate_runs_base_then_lora_with_the_same_settings(ws, compared):
    r, folder, calls = compared
    assert len(calls) == 2
    base, lora = calls
    assert flag(base, "--save_path") == str(folder / "base") and flag(lora, "--save_path") == str(folder / "lora")
    same = [str(folder / "base") if a == str(folder / "lora") else a for a in lora[: len(base)]]
    assert same == base  # the same command but for its output folder ...
    assert lora[len(base) :] == [
        "--lora_weight",
        str(ws.run / "checkpoints" / "lora.safetensors"),
        "--lora_multiplier",
        "0.8",
    ]
    assert "--lora_weight" not in base  # ... and the LoRA only in the second
    assert "--cpu_noise" in base and flag(base, "--from_file") == str(folder / "prompts.txt")
    i = base.index("--video_size")
    assert base[i + 1 : i + 3] == ["64", "96"]  # musubi's HEIGHT WIDTH
    assert (flag(base, "--video_length"), flag(base, "--infer_steps")) == ("5", "2")
    assert (flag(base, "--guidance_scale"), flag(base, "--flow_shift")) == ("6", "7")  # HV1.5's, not musubi's 50 steps
    lines = (folder / "prompts.txt").read_text().splitlines()[1:]
    assert lines == ["ohwx walks --d 3", "ohwx walks --d 4", "a red chair --d 3", "a red chair --d 4"]
    assert "[plan] generate" in r.stdout and "2 x seed(s) 3, 4 = 4 video(s) per run" in r.stdout


def test_generate_composes_labelled_side_by_side_videos_and_a_sheet(compared):
    r, folder, _ = compared
    record = json.loads((folder / "compare.json").read_text())
    names = [row["side_by_side"] for row in record["items"]]
    assert names == ["00_prompt0_seed3.mp4", "01_prompt0_seed4.mp4", "02_prompt1_seed3.mp4", "03_prompt1_seed4.mp4"]
    for row in record["items"]:
        assert row["side_by_side"] in r.stdout  # the console names every file
        frames, _ = compose.read_frames(folder / row["side_by_side"])
        base, _ = compose.read_frames(folder / row["base"])
        lora, _ = compose.read_frames(folder / row["lora"])
        assert len(frames) == len(base) == len(lora) == 5
        assert base[0].shape == (64, 96, 3) and frames[0].shape[1] == 2 * 96
        band = frames[0][: frames[0].shape[0] - 64]
        assert band.max() > 200 and not np.array_equal(band[:, :96], band[:, 96:])  # labels over each half
        assert row["difference"] > 10  # the LoRA changed the picture (the stand-in tints it)
    # same seed and settings, different prompts: different videos; same prompt, other seed: different videos
    a, b, c = (compose.read_frames(folder / record["items"][k]["base"])[0][2] for k in (0, 1, 2))
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    assert (folder / "sheet.png").is_file() and record["sheet"] == "sheet.png" and "sheet.png" in r.stdout
    assert json.loads((folder / "summary.json").read_text())["status"] == "succeeded"


def test_one_prompt_runs_as_a_single_musubi_prompt(ws):
    before = len(gen_calls(ws))
    r = ws.train("--device", "cpu", "--generate", "--prompt", "ohwx", "--video_size", "64x64", "--infer_steps", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    base, lora = gen_calls(ws)[before:]
    assert flag(base, "--prompt") == flag(lora, "--prompt") == "ohwx" and flag(base, "--seed") == "42"
    assert "--from_file" not in base  # one prompt: musubi frees the text encoder before the DiT loads
    assert flag(base, "--video_length") == "5"  # the run's longest clip (target_frames 1,5), as the samples
    folder = max(p.parent for p in ws.run.glob("compare/*/compare.json"))
    (row,) = json.loads((folder / "compare.json").read_text())["items"]
    assert row["base"].endswith("_42_.mp4")  # musubi's single-prompt file name (save_output's empty base name)


def test_the_comfyui_file_is_refused_before_any_model_loads(ws):
    before = len(gen_calls(ws))
    comfy = ws.run / "checkpoints" / "lora_comfyui.safetensors"
    r = ws.train("--device", "cpu", "--generate", "--lora", str(comfy))
    assert r.returncode == 2 and "ComfyUI-format LoRA" in r.stderr and "NAME_comfyui" in r.stderr
    assert len(gen_calls(ws)) == before


def test_not_all_lora_keys_used_fails_the_comparison(ws, monkeypatch, capsys):
    """Defence in depth: if a file ever passed our format check, musubi's own warning still fails the run."""
    from hvlora.families.hunyuan_video_1_5 import generate as hv_generate

    monkeypatch.setattr(hv_generate, "check_lora", lambda path: 540)
    for k, v in ws.env().items():
        monkeypatch.setenv(k, v)
    comfy = ws.run / "checkpoints" / "lora_comfyui.safetensors"
    s = load_settings(
        ["--config", str(ws.config), "--models_dir", str(ws.models), "--output_dir", str(ws.output), "--device", "cpu",
         "--generate", "--lora", str(comfy), "--prompt", "ohwx", "--video_size", "64x64", "--infer_steps", "1"]
    )  # fmt: skip
    with pytest.raises(StageFailed) as e:
        compare.run(s)
    assert e.value.stage == "generate_lora" and "not all LoRA keys are used" in str(e.value)
    assert "generate_lora FAILED" in capsys.readouterr().err
    folder = max((ws.run / "compare").iterdir(), key=lambda p: p.stat().st_mtime)
    assert json.loads((folder / "summary.json").read_text())["status"] == "failed"
    assert not (folder / "compare.json").exists()


def test_a_failed_generator_run_reports_its_log_and_stops(ws):
    before = len(gen_calls(ws))
    r = ws.train(
        "--device", "cpu", "--generate", "--prompt", "ohwx", "--video_size", "64x64", "--infer_steps", "1",
        env={"STANDIN_FAIL": "hv_1_5_generate_video"},
    )  # fmt: skip
    assert r.returncode == 1
    assert "generate_base FAILED" in r.stderr and "logs/generate_base.log" in r.stderr
    assert "simulated failure of hv_1_5_generate_video" in r.stderr  # the log's tail
    assert len(gen_calls(ws)) == before + 1  # the LoRA run never started
    folder = max((ws.run / "compare").iterdir(), key=lambda p: p.stat().st_mtime)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["stages"][-1]["name"] == "generate_base"


def test_ctrl_c_stops_the_generator_and_leaves_the_run_as_it_was(ws, tmp_path):
    pidfile = tmp_path / "pids"
    env = ws.env(STANDIN_BLOCK="hv_1_5_generate_video", STANDIN_PIDFILE=str(pidfile))
    argv = ws.argv("--device", "cpu", "--generate", "--prompt", "ohwx", "--video_size", "64x64", "--infer_steps", "1")
    summary_before = (ws.run / "summary.json").read_bytes()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:  # wait until musubi's stand-in renders (blocked), then press "Ctrl-C"
        if "standin: waiting for a signal" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Stopped (SIGINT)" in err and "training run is unchanged" in err
    for pid in map(int, pidfile.read_text().split()):  # the generator and its worker are gone (or zombies)
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split(")")[-1].split()[0] == "Z"
    folder = max((ws.run / "compare").iterdir(), key=lambda p: p.stat().st_mtime)
    assert json.loads((folder / "summary.json").read_text())["status"] == "interrupted"
    assert (ws.run / "summary.json").read_bytes() == summary_before


# --- push after the fact ----------------------------------------------------------------------------------------------


def settings_for(ws, run: Path, *flags: str):
    return load_settings(
        ["--config", str(ws.config), "--output_dir", str(run.parent.parent), "--resume", str(run), *flags]
    )


@pytest.fixture
def run_copy(ws, compared, tmp_path, monkeypatch):
    """A copy of the trained run (with its comparison) in its own output folder, and the hub environment."""
    run = tmp_path / "output" / "runs" / ws.run.name
    shutil.copytree(ws.run, run, ignore=shutil.ignore_patterns("hub.json"))
    for record in run.glob("compare/*/compare.json"):  # the copy's comparisons are of the copy's LoRA
        record.write_text(record.read_text().replace(str(ws.run), str(run)))
    monkeypatch.setenv("HF_ENDPOINT", ws.hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    # huggingface_hub reads HF_ENDPOINT once, at import (a command sets it before); in this test process it was
    # imported long ago, and CommitInfo parses the commit URL with that endpoint
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", ws.hub.url)
    return run


def test_push_after_the_fact_uploads_the_comparison(ws, run_copy, capsys):
    url = push.push(settings_for(ws, run_copy, "--push_to_hub", "alice/later"), run_copy)
    assert url == f"{ws.hub.url}/alice/later" and url in capsys.readouterr().out
    files = committed(ws.hub, "alice/later")
    newest = max(p.parent for p in run_copy.glob("compare/*/compare.json"))  # the newest finished comparison
    record = json.loads((newest / "compare.json").read_text())
    sides = {f"compare/{item['side_by_side']}" for item in record["items"]}
    assert (
        set(files)
        == {"lora.safetensors", "lora_comfyui.safetensors", "loss.png", "README.md", "compare/sheet.png"} | sides
    )
    assert files["compare/sheet.png"] == (newest / "sheet.png").read_bytes()
    readme = files["README.md"].decode()
    first = record["items"][0]
    assert (
        "![base model | LoRA](compare/sheet.png)" in readme and f'["{first["prompt"]}", seed {first["seed"]}]' in readme
    )
    assert str(run_copy) not in readme and TOKEN not in readme


def test_a_comparison_of_captions_is_not_uploaded_unless_asked(ws, run_copy):
    newest = max(p.parent for p in run_copy.glob("compare/*/compare.json"))
    record = json.loads((newest / "compare.json").read_text())
    for item in record["items"]:
        item["source"] = "caption"  # as when the prompts were the run's own captions
    (newest / "compare.json").write_text(json.dumps(record))
    push.push(settings_for(ws, run_copy, "--push_to_hub", "alice/nocaps"), run_copy)
    assert not any(p.startswith("compare/") or p == "captions.txt" for p in committed(ws.hub, "alice/nocaps"))
    push.push(settings_for(ws, run_copy, "--push_to_hub", "alice/caps", "--hub_include_captions"), run_copy)
    files = committed(ws.hub, "alice/caps")
    assert "compare/sheet.png" in files
    assert sorted(files["captions.txt"].decode().splitlines()) == [
        "ohwx sits on a red chair",
        "ohwx walks along a beach",
    ]


def test_public_only_when_asked(ws, run_copy):
    push.push(settings_for(ws, run_copy, "--push_to_hub", "alice/open", "--hub_public"), run_copy)
    assert ws.hub.created["alice/open"]["private"] is False
    with pytest.raises(UserError, match="exists and is public"):  # an existing public repo is not used by default
        push.push(settings_for(ws, run_copy, "--push_to_hub", "alice/open"), run_copy)


def test_no_token_no_upload(ws, run_copy, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(run_copy / "empty-hf-home"))
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(run_copy / "no-token"))
    n = len(ws.hub.requests)
    with pytest.raises(UserError, match="HF_TOKEN"):
        push.push(settings_for(ws, run_copy, "--push_to_hub", "alice/none"), run_copy)
    assert len(ws.hub.requests) == n


def test_an_upload_cut_midway_is_resumed_by_the_same_command(ws, run_copy):
    """train_local.py --push_to_hub REPO --resume RUN is killed while the large files upload; the same command then
    sends only what the hub does not hold yet."""
    hub = ws.hub
    hub.hold_upload_after_bytes = 4 * 1024 * 1024  # the LoRA files stop after 4 MB until released
    hub.holding.clear()
    hub.release.clear()
    argv = ws.argv("--push_to_hub", "alice/cut", "--resume", str(run_copy), "--output_dir", str(run_copy.parent.parent))
    env = ws.env(HF_TOKEN=TOKEN)
    n0 = len(hub.lfs_puts)
    try:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        assert hub.holding.wait(60), "no upload reached the hub"
        with hub.progress:  # the small files arrive whole while the large ones are held
            assert hub.progress.wait_for(lambda: sum(p.complete for p in hub.lfs_puts[n0:]) >= 2, timeout=60)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        hub.release.set()
        hub.hold_upload_after_bytes = None
    assert "alice/cut" not in hub.commits  # nothing was committed
    done_before = {p.oid for p in hub.lfs_puts[n0:] if p.complete}
    assert done_before  # the small files (the comparison's media, loss.png) arrived whole
    assert json.loads((run_copy / "hub.json").read_text())["status"] == "uploading"
    n = len(hub.lfs_puts)
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    again = {p.oid for p in hub.lfs_puts[n:]}
    assert again and not (again & done_before)  # what had arrived whole was not sent again
    files = committed(hub, "alice/cut")
    assert files["lora.safetensors"] == (run_copy / "checkpoints" / "lora.safetensors").read_bytes()
    assert json.loads((run_copy / "hub.json").read_text())["status"] == "done"
    assert "has finished: uploading it as it is" in r.stdout


def test_the_training_command_resumes_an_unfinished_upload_instead_of_training(ws):
    record = json.loads((ws.run / "hub.json").read_text())
    (ws.run / "hub.json").write_text(json.dumps({**record, "repo_id": "alice/again", "status": "uploading"}))
    runs_before = sorted((ws.output / "runs").iterdir())
    calls_before = len(ws.calls_made())
    r = ws.train(*SMOKE, "--trigger_word", "ohwx", "--push_to_hub", "alice/again", env={"HF_TOKEN": TOKEN})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "has finished training but not its upload: resuming the upload" in r.stdout
    assert sorted((ws.output / "runs").iterdir()) == runs_before and len(ws.calls_made()) == calls_before
    assert "lora.safetensors" in committed(ws.hub, "alice/again")
    assert json.loads((ws.run / "hub.json").read_text())["status"] == "done"


def test_compare_and_share_are_family_agnostic():
    """The compare/share machinery imports no model family outside compare/family.py (the registry's seam)."""
    root = Path(__file__).resolve().parent.parent / "hvlora"
    for folder in ("compare", "share"):
        for path in (root / folder).glob("*.py"):
            if path.name != "family.py":
                assert "families" not in "".join(ln for ln in path.read_text().splitlines() if "import" in ln), path
