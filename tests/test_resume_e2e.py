"""Runs that survive, end to end: `train_local.py` killed (SIGKILL: mid-training, mid-state-save, mid-cache) and run
again with the same command; re-runs with nothing or one caption changed; changed settings; extending a finished
run; one run at a time per output folder; the NaN guard. The stand-in trainer behaves as musubi v0.3.4 where it
matters (tests/standin): `--resume` restarts its counters at 0 and names checkpoints by them, `--skip_existing`
checks names only, accelerate writes the states."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from e2e import SMOKE, Workspace, hub_repos, prefetch, run_folder
from hubserver import FakeHub
from mediafactory import make_image, make_zip

from hvlora.families.hunyuan_video_1_5 import comfyui
from hvlora.training import lorameta, progress

# 3 images: 3 steps per epoch; 6 steps = 2 epochs; a state every 2 steps; cosine with warm-up (a curve a resume
# would bend if the schedule were rebuilt from the remaining steps)
RUN = [*SMOKE, "--max_train_steps", "6", "--save_every_n_steps", "2", "--save_every_n_epochs", "0",
       "--lr_scheduler", "cosine", "--lr_warmup_steps", "1", "--trigger_word", "ohwx"]  # fmt: skip


def images_zip(path: Path, captions: dict[str, str], height: int = 48) -> Path:
    """Images of distinct sizes (so distinct content: the caches are shared by content across datasets)."""
    work = path.parent / "src"
    files: dict[str, bytes] = {}
    for i, (name, caption) in enumerate(sorted(captions.items())):
        files[name] = make_image(work / name, 80 + 16 * i, height).read_bytes()
        files[name.rsplit(".", 1)[0] + ".txt"] = caption.encode()
    return make_zip(path, files)


CAPTIONS = {"a.png": "a cat on a sofa", "b.png": "a dog in the snow", "c.png": "[trigger] on a bike"}


@pytest.fixture(scope="module")
def ws(module_tmp):
    root = module_tmp
    with FakeHub(hub_repos()) as hub:
        w = Workspace(root, hub)
        images_zip(w.data / "set.zip", CAPTIONS)
        prefetch(w, "t2v")
        yield w


def lrs(run: Path) -> dict[int, float]:
    return {r["step"]: r["lr"] for r in progress.MetricsLog.read(run / "metrics.jsonl") if r["lr"] is not None}


def killed_at(ws: Workspace, marker: str, *flags: str, env: dict) -> Path:
    """Run train_local.py until the stand-in prints `marker`, then SIGKILL it (a power cut: nothing of ours runs
    after). Returns the run folder it used."""
    proc = subprocess.Popen(
        ws.argv(*flags),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ws.env(**env),
        start_new_session=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    run = run_folder("".join(seen))
    assert run is not None and marker in "".join(seen), "".join(seen)[-3000:]
    return run


def test_a_run_killed_after_a_state_resumes_with_true_steps_and_the_same_lr_curve(ws):
    ref = ws.train(*RUN, "--skip_download", "--output_name", "ref")
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    reference = lrs(ws.last_run)
    assert sorted(reference) == [1, 2, 3, 4, 5, 6] and reference[6] < reference[2]  # cosine decays

    run = killed_at(ws, "STANDIN_KILL_AT_STEP=2", *RUN, "--skip_download", env={"STANDIN_KILL_AT_STEP": "2"})
    # the same command again, with the memory advice followed: another VAE tile size and fp8 Qwen2.5-VL
    r = ws.train(*RUN, "--skip_download", "--vae_sample_size", "64", "--fp8_vl")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"continuing {run}" in r.stdout and "taking over the stale lock" in r.stdout
    assert "resuming: state of step 2 of 6" in r.stdout and "4 steps to go" in r.stdout
    # the caches the run began with are kept: nothing encoded again, no cache process started
    assert r.stdout.count("0 of 3 items to encode: this run began training on the caches") == 2, r.stdout[-3000:]
    segments = json.loads((run / "segments.json").read_text())["segments"]
    assert [(s["from_step"], s["status"]) for s in segments] == [(0, "killed"), (2, "ok")]
    # true numbers: musubi's second segment counted 1..4 again, its files are steps 4 and 6 here
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert {
        "lora-step00000002.safetensors",
        "lora-step00000004.safetensors",
        "lora-step00000006.safetensors",
        "lora.safetensors",
        "lora_comfyui.safetensors",
    } <= set(names), names
    for name in ("lora-step00000002.safetensors", "lora-step00000004.safetensors"):
        assert lorameta.read_metadata(run / "checkpoints" / name)["ss_steps"] == str(int(name[9:17]))
    # the learning rate continues on the same curve as the uninterrupted run
    resumed = lrs(run)
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    assert all(math.isclose(resumed[k], reference[k], rel_tol=1e-9) for k in reference), (resumed, reference)
    # one loss history across the segments, and both LoRA files describe themselves with the true totals
    steps = [row["step"] for row in progress.MetricsLog.read(run / "metrics.jsonl")]
    assert steps == sorted(steps) and steps[-1] == 6
    for path in (ws.output / "lora.safetensors", ws.output / "lora_comfyui.safetensors"):
        md = lorameta.read_metadata(path)
        assert (md["ss_steps"], md["hvlora.steps"], md["hvlora.trigger_word"]) == ("6", "6", "ohwx"), path
        assert md["modelspec.trigger_phrase"] == "ohwx" and md["hvlora.task"] == "t2v"
        assert md["hvlora.base_model"].endswith("720p_t2v/diffusion_pytorch_model.safetensors")
    assert comfyui.verify(ws.output / "lora.safetensors", ws.output / "lora_comfyui.safetensors")
    assert (run / "loss.png").stat().st_size > 1000
    summary = ws.summary(run)
    assert summary["status"] == "succeeded" and [s["from_step"] for s in summary["segments"]] == [0, 2]


def test_a_kill_while_a_state_is_written_resumes_from_the_previous_one(ws):
    env = {"STANDIN_KILL_IN_STATE_SAVE": "4"}
    r = ws.train(*RUN, "--skip_download", "--output_name", "half", env=env)
    assert r.returncode == 1 and "STANDIN_KILL_IN_STATE_SAVE=4" in r.stdout + r.stderr
    run = ws.last_run
    r = ws.train(*RUN, "--skip_download", "--output_name", "half")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"continuing {run}" in r.stdout and "resuming: state of step 2 of 6" in r.stdout
    assert lorameta.read_metadata(run / "checkpoints" / "half.safetensors")["ss_steps"] == "6"
    assert not [p for p in (run / "checkpoints").iterdir() if p.name == "half-step00000004-state~1"]


def test_a_finished_run_is_not_resumed_and_caches_are_item_by_item(ws, tmp_path):
    # the same command after a finished run: a new run, nothing encoded, no cache process started
    ws.calls.unlink(missing_ok=True)
    r = ws.train(*RUN, "--skip_download", "--output_name", "ref")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "continuing" not in r.stdout and r.stdout.count("0 of 3 items to encode") == 2
    assert [c["module"] for c in ws.calls_made()] == [
        "hv_1_5_train_network",
        "networks.convert_hunyuan_video_1_5_lora_to_comfy",
    ]
    # one caption changed: exactly that caption is encoded again, no latent
    changed = images_zip(tmp_path / "changed.zip", CAPTIONS | {"b.png": "a dog in the rain"})
    ws.calls.unlink(missing_ok=True)
    r = ws.train(*RUN, "--skip_download", "--output_name", "ref", "--input_zip", str(changed))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "0 of 3 items to encode" in r.stdout and "1 of 3 items to encode" in r.stdout
    assert [c["module"] for c in ws.calls_made()][0] == "hv_1_5_cache_text_encoder_outputs"
    items = ws.summary()["items"]
    assert (items["latents_encoded"], items["captions_encoded"], items["captions_reused"]) == (0, 1, 2)


def test_a_kill_mid_cache_keeps_the_complete_items(ws, tmp_path):
    z = images_zip(tmp_path / "four.zip", {f"{n}.png": f"picture {n}" for n in "wxyz"}, height=64)
    flags = [*RUN, "--skip_download", "--output_name", "four", "--input_zip", str(z)]
    r = ws.train(*flags, env={"STANDIN_KILL_AFTER_ITEMS": "2"})
    assert r.returncode == 1 and "STANDIN_KILL_AFTER_ITEMS=2" in r.stdout + r.stderr
    r = ws.train(*flags)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "removed a half-written file of an interrupted run" in r.stdout
    assert "2 of them were finished by an interrupted run" in r.stdout
    assert ws.summary()["items"]["latents_encoded"] == 2


def test_changed_settings_start_a_new_run_and_an_explicit_resume_refuses(ws):
    r = ws.train(*RUN, "--skip_download", "--output_name", "chg", env={"STANDIN_FAIL": "hv_1_5_train_network"})
    assert r.returncode == 1
    failed = ws.last_run
    r = ws.train(*RUN, "--skip_download", "--output_name", "chg", "--rank", "8")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"not continuing the unfinished run {failed.name}: rank 4 -> 8 changed" in r.stdout
    assert ws.last_run != failed
    r = ws.train(*RUN, "--skip_download", "--output_name", "chg", "--rank", "8", "--resume", str(failed))
    assert r.returncode == 2 and "--resume" in r.stderr and "rank 4 -> 8" in r.stderr
    # --new_run never continues, even the same settings
    r = ws.train(*RUN, "--skip_download", "--output_name", "chg", "--new_run")
    assert r.returncode == 0 and "--new_run: starting a new run" in r.stdout and ws.last_run != failed


def test_extending_a_finished_run(ws):
    r = ws.train(*RUN, "--skip_download", "--output_name", "ext")
    assert r.returncode == 0, r.stderr[-3000:]
    run = ws.last_run
    r = ws.train(*RUN, "--skip_download", "--output_name", "ext", "--resume", str(run), "--max_train_steps", "8")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "max_train_steps 6 -> 8" in r.stdout and "resuming: state of step 6 of 8" in r.stdout
    assert lorameta.read_metadata(run / "checkpoints" / "ext.safetensors")["ss_steps"] == "8"
    assert [s["from_step"] for s in json.loads((run / "segments.json").read_text())["segments"]] == [0, 6]


def test_one_run_at_a_time_per_output_folder(ws, tmp_path):
    pidfile = tmp_path / "pids"
    env = ws.env(STANDIN_BLOCK="hv_1_5_train_network", STANDIN_PIDFILE=str(pidfile))
    flags = [*RUN, "--skip_download", "--output_name", "locked"]
    first = subprocess.Popen(
        ws.argv(*flags), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    for line in first.stdout:
        if "standin: waiting for a signal" in line:
            break
    try:
        r = ws.train(*flags)
        assert r.returncode == 2 and "another training run is using this output folder" in r.stderr
        assert f"pid {first.pid}" in r.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # a power cut: our process and (below) musubi's group
        for pid in map(int, pidfile.read_text().split()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        first.wait(30)
    r = ws.train(*flags)
    assert r.returncode == 0 and "taking over the stale lock" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]


def test_samples_land_by_true_step_across_a_resume_with_a_contact_sheet(ws, tmp_path):
    from PIL import Image

    from hvlora.training import plots

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# tiny\nohwx, a test card --w 64 --h 64 --f 1 --s 2 --d 7\n")
    flags = [
        *RUN,
        "--max_train_steps",
        "4",
        "--skip_download",
        "--output_name",
        "samp",
        "--sample_prompts",
        str(prompts),
        "--sample_every_n_steps",
        "2",
        "--sample_at_first",
    ]
    run = killed_at(ws, "STANDIN_KILL_AT_STEP=2", *flags, env={"STANDIN_KILL_AT_STEP": "2"})
    r = ws.train(*flags)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    names = sorted(p.name for p in (run / "samples").glob("*.png"))
    # the baseline before training, step 2 of the killed segment, step 4 (the resumed segment's local step 2, and
    # again as the end of its last, shortened epoch: musubi samples once per trigger; nothing is overwritten)
    assert names == [
        "samp_step00000000_00.png",
        "samp_step00000002_00.png",
        "samp_step00000004_00.png",
        "samp_step00000004_00~2.png",
    ], names
    with Image.open(run / "samples.png") as sheet:
        assert sheet.size == plots.sheet_size(3, 1, 256)
        assert len(sheet.convert("RGB").getcolors(1 << 20) or []) > 10  # not blank
    with Image.open(run / "loss.png") as plot:
        assert plot.size[0] > 400 and len(plot.convert("RGB").getcolors(1 << 20) or []) > 10
    assert "samples: every 2 steps, before training, prompts from" in r.stdout


def test_a_run_stopped_between_the_final_state_and_the_final_lora_finishes_from_the_state(ws):
    """musubi writes the final state, then the final LoRA; killed between the two (no step save at the last step),
    the same command builds the final file from the state's weights instead of failing for ever."""
    from safetensors.torch import load_file

    flags = [*RUN, "--skip_download", "--output_name", "fin", "--save_every_n_steps", "4"]
    r = ws.train(*flags, env={"STANDIN_KILL_BEFORE_FINAL_LORA": "1"})
    assert r.returncode == 1 and "STANDIN_KILL_BEFORE_FINAL_LORA" in r.stdout + r.stderr
    run = ws.last_run
    state = run / "checkpoints" / "fin-000002-state"  # step 6 ends epoch 2: the final state, adopted
    assert (state / "model.safetensors").is_file() and not (run / "checkpoints" / "fin.safetensors").exists()
    r = ws.train(*flags)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "the state of step 6 already holds all 6 steps: nothing to train" in r.stdout
    assert "built from the weights of the state of step 6 (fin-000002-state/model.safetensors) in bf16" in r.stdout
    lora = run / "checkpoints" / "fin.safetensors"
    built, weights = load_file(lora), load_file(state / "model.safetensors")
    sibling = load_file(run / "checkpoints" / "fin-step00000004.safetensors")  # what musubi itself wrote
    assert set(built) == set(weights) == set(sibling) and {t.dtype for t in sibling.values()} == {
        built["lora_unet_double_blocks_0_img_attn_q.alpha"].dtype
    }
    assert all(torch.equal(built[k], weights[k].to(built[k].dtype)) for k in built)
    md = lorameta.read_metadata(lora)
    assert (md["ss_steps"], md["ss_network_dim"], md["hvlora.steps"]) == ("6", "4", "6")
    assert md["sshs_model_hash"] == lorameta.musubi_hashes(built, md)[0]
    assert comfyui.verify(ws.output / "fin.safetensors", ws.output / "fin_comfyui.safetensors")


def test_sigkill_of_our_process_alone_leaves_no_musubi_process(ws, tmp_path):
    """Not the group (a power cut does that): our process alone, as the OOM killer or `kill -9 PID` does. The
    trainer and its worker die with it; the same command then takes the lock over and finishes."""
    pidfile = tmp_path / "pids"
    flags = [*RUN, "--skip_download", "--output_name", "orphan"]
    env = ws.env(STANDIN_BLOCK="hv_1_5_train_network", STANDIN_PIDFILE=str(pidfile))
    ours = subprocess.Popen(ws.argv(*flags), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in ours.stdout:
        if "standin: waiting for a signal" in line:
            break
    trainer, worker = map(int, pidfile.read_text().split())
    os.kill(ours.pid, signal.SIGKILL)
    ours.wait(30)
    deadline = time.monotonic() + 20
    while (alive(trainer) or alive(worker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(trainer) and not alive(worker), "the trainer outlived the command that started it"
    r = ws.train(*flags)
    assert r.returncode == 0 and "taking over the stale lock" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    assert "process(es) the killed run left running" not in r.stdout  # nothing was left


def test_a_nan_loss_stops_the_run_and_the_next_one_never_resumes_after_it(ws):
    """NaN from step 3: the guard stops at step 5 (with what to do), after the state of step 4 was saved. The same
    command continues from the state of step 2, the newest before the NaN, and says so; the poisoned state is kept
    aside."""
    flags = [*RUN, "--skip_download", "--output_name", "nanres"]
    r = ws.train(*flags, env={"STANDIN_NAN_FROM_STEP": "3"})
    assert r.returncode == 1
    assert "loss is NaN for 3 consecutive steps" in r.stderr and "--learning_rate" in r.stderr
    failure = ws.summary()["failure"]
    assert failure["kind"] == "loss_nan" and failure["stage"] == "train"
    assert not (ws.output / "nanres.safetensors").exists()  # nothing published from a diverged run
    run = ws.last_run
    assert (run / "checkpoints" / "nanres-step00000004-state~nan").is_dir()
    r = ws.train(*flags)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "the loss became NaN at step 3 (segment 0): never resuming from a state saved at or after it" in r.stdout
    assert "using the state of step 2" in r.stdout and "resuming: state of step 2 of 6" in r.stdout
    md = lorameta.read_metadata(run / "checkpoints" / "nanres.safetensors")
    assert md["ss_steps"] == "6"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False
