"""Two machines, for real on one: the same `train_local.py` command with `--num_machines 2 --machine_rank 0|1
--main_process_ip 127.0.0.1`, each starting real `accelerate launch` (torchrun; CPU processes talking over gloo) with
the stand-in trainer (whose frozen DiT is prepared as accelerate prepares it on GPUs: real musubi cannot train on
several CPU processes, see STANDIN_FROZEN_DIT_AS_ON_GPUS in tests/standin). Machine 1 runs in its own mount namespace where data/, models/ and output/ are read-only
bind mounts: any file it (or its trainer process) tried to write there would fail the run. It ends in one run
folder and one LoRA whose step counts are true for 2 processes; machine 1 takes no lock and writes nothing."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess

import pytest
from e2e import SMOKE, Workspace, hub_repos, prefetch
from hubserver import FakeHub
from test_resume_e2e import images_zip

from hvlora.training import lorameta, resume

CAPTIONS = {"a.png": "a cat", "b.png": "a dog", "c.png": "a bird"}  # 3 items over 2 processes: 2 steps an epoch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _can_mount_read_only(tmp_path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    script = f"mount --bind -o ro {probe} {probe} && ! touch {probe}/x"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True).returncode == 0


def test_two_machines_train_one_lora_and_machine_1_writes_nothing(tmp_path):
    if not _can_mount_read_only(tmp_path):
        pytest.skip("needs `unshare -m` with bind mounts (root in a namespace) to make machine 1's folders read-only")
    port = _free_port()
    with FakeHub(hub_repos()) as hub:
        ws = Workspace(tmp_path, hub)
        images_zip(ws.data / "set.zip", CAPTIONS)
        prefetch(ws, "t2v")
        flags = [*SMOKE, "--skip_download", "--max_train_steps", "4", "--save_every_n_steps", "2"]
        flags += ["--num_machines", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
        ws.output.mkdir()
        read_only = " && ".join(f"mount --bind -o ro {d} {d}" for d in (ws.data, ws.models, ws.output))
        machine1 = [
            "unshare",
            "-m",
            "sh",
            "-c",
            f"{read_only} && exec {shlex.join(ws.argv(*flags, '--machine_rank', '1'))}",
        ]
        # machine 1 first: it waits for machine 0's run, then joins its first segment
        env = {"STANDIN_FROZEN_DIT_AS_ON_GPUS": "1"}  # see tests/standin: real musubi cannot train on CPU processes
        m1 = subprocess.Popen(machine1, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ws.env(**env))
        m0 = ws.train(*flags, "--machine_rank", "0", env=env)
        out1 = m1.communicate(timeout=600)[0]
    assert m0.returncode == 0, m0.stdout[-3000:] + m0.stderr[-3000:]
    assert m1.returncode == 0, out1[-3000:]
    assert "joining segment 0" in out1 and "--machine_rank 1" in out1 and "writes no file" in out1
    runs = list((ws.output / "runs").iterdir())
    assert [r.name for r in runs if r.is_dir()] == [ws.last_run.name]  # one run folder: machine 0's
    run = ws.last_run
    # both machines' trainer processes ran (the stand-in records each start), rank 1 under machine 1's launcher
    trainers = [c for c in ws.calls_made() if c["module"] == "hv_1_5_train_network"]
    assert len(trainers) == 2, trainers
    # true steps for 2 processes: 4 optimizer steps, the scheduler stepped twice per step (accelerate, 2 processes)
    lora = ws.output / "lora.safetensors"
    md = lorameta.read_metadata(lora)
    assert (md["ss_steps"], md["hvlora.steps"], md["ss_num_batches_per_epoch"]) == ("4", "4", "2")
    state = resume.newest_state(run / "checkpoints", "lora", 2, 2)
    assert state is not None and state.true_step == 4 and resume.read_state(state.path, 1)[0] == 8
    segments = json.loads((run / "segments.json").read_text())["segments"]
    assert [(s["status"], s["num_processes"]) for s in segments] == [("ok", 2)]
    assert "--machine_rank" in segments[0]["command"]["launcher"]
