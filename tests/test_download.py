"""Stage 1 (download) against a local fake hub: the real huggingface_hub 0.34 code, in-process, on 127.0.0.1.

The fake hub (tests/hubserver.py) serves small files at exactly the catalog's repo ids and paths; the stage sees it
through ctx.env (HF_ENDPOINT, HF_HOME, HF_TOKEN), as in a real run. Tests that need a real process (killed mid-file,
the --download_only command line) run `train_local.py` as a subprocess against a fake hub served by the test.
Retries back off by hvlora.weights.hub.BACKOFF_S, set to 0 here (the subprocesses keep the real one; nothing retries there).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pty
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import huggingface_hub
import pytest
import requests
from hubserver import FakeHub
from huggingface_hub import constants, try_to_load_from_cache

from hvlora.core import pipeline
from hvlora.core.cli import load_settings
from hvlora.core.context import RunContext, Summary, new_run_paths
from hvlora.core.errors import ConfigError, StageFailed, UserError
from hvlora.families.hunyuan_video_1_5 import FAMILY, catalog
from hvlora.stages import download
from hvlora.weights import hub as hvhub

PROJECT = Path(__file__).resolve().parent.parent

T2V_ONLY = {w.filename for w in catalog.WEIGHTS if w.tasks == ("t2v",)}
I2V_ONLY = {w.filename for w in catalog.WEIGHTS if w.tasks == ("i2v",)}
BYT5 = "google/byt5-small"
TOKEN = "hf_TestSecretToken0123456789"


def blob(name: str, size: int = 4096) -> bytes:
    """Deterministic bytes that differ per file."""
    return random.Random(name).randbytes(size)


def make_repos(big: str | None = None, big_size: int = 1 << 20) -> dict[str, dict[str, bytes]]:
    """Every catalog weight at its repo/path (the file `big` with big_size bytes), the tokenizer repos with their
    required files plus extras, and files the stage must never fetch."""
    repos: dict[str, dict[str, bytes]] = {}
    for w in catalog.WEIGHTS:
        repos.setdefault(w.repo_id, {})[w.filename] = blob(w.filename, big_size if w.filename == big else 4096)
    repos[catalog.HV15_REPO]["transformer/480p_t2v/diffusion_pytorch_model.safetensors"] = blob("480p")
    for tok in catalog.TOKENIZERS:
        files = repos.setdefault(tok.repo_id, {})
        for f in tok.required_files:
            files[f] = json.dumps({"file": f}).encode() if f.endswith(".json") else blob(f, 512)
        files["README.md"] = b"# readme\n"
    repos["Qwen/Qwen-Image"]["tokenizer/special_tokens_map.json"] = b"{}"
    repos["Qwen/Qwen-Image"]["transformer/diffusion_pytorch_model.safetensors"] = blob("qwen-dit", 65536)
    repos[BYT5]["special_tokens_map.json"] = b"{}"
    repos[BYT5]["pytorch_model.bin"] = blob("byt5-bin", 200_000)
    return repos


def make_ctx(tmp_path: Path, hub_url: str, *flags: str, **env: str) -> RunContext:
    """A RunContext as the pipeline builds it, with the settings from `flags` and HF_* pointing at the fake hub."""
    cfg = tmp_path / "empty.toml"
    cfg.write_text("", encoding="utf-8")
    s = load_settings(
        [
            "--config",
            str(cfg),
            "--models_dir",
            str(tmp_path / "models"),
            "--output_dir",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            *flags,
        ],
        cwd=tmp_path,
    )
    paths = new_run_paths(s.output_dir, s.output_name)
    base = {
        "HF_ENDPOINT": hub_url,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
    }
    return RunContext(s, paths, Summary(paths.summary, s), {**base, **env})


def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "hf" / "hub"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(tmp_path: Path) -> dict[str, dict]:
    """models/manifest.json's records, by '<repo_id>/<path>'."""
    return json.loads((tmp_path / "models" / "manifest.json").read_text(encoding="utf-8"))["files"]


def weight(component: str, task: str = "t2v", variant: str = "720p") -> catalog.WeightFile:
    return catalog.weights_for(task, variant)[component]


def gets_of(hub: FakeHub, wf: catalog.WeightFile) -> list:
    """The GET /resolve/ requests for one weight file, in order."""
    return [r for r in hub.file_requests("GET") if unquote(r.path).endswith("/" + wf.filename)]


def run_files(tmp_path: Path) -> list[Path]:
    """Every file a run leaves for a user to read or share: run folders (logs, config.toml, summary.json) and the
    manifest."""
    out = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    m = tmp_path / "models" / "manifest.json"
    return out + ([m] if m.is_file() else [])


def wait_until(condition, timeout: float = 30.0) -> bool:
    """Poll `condition` until it holds (True) or `timeout` s pass (False): waits for a state, not for a time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def cli_env(tmp_path: Path, hub_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `train_local.py` subprocess: the fake hub, its own HF_HOME, no token from this
    machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update(
        HF_ENDPOINT=hub_url,
        HF_HOME=str(tmp_path / "hf"),
        HF_TOKEN_PATH=str(tmp_path / "no-token"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        **extra,
    )
    return env


def cli_argv(tmp_path: Path, *flags: str) -> list[str]:
    cfg = tmp_path / "empty.toml"
    cfg.write_text("", encoding="utf-8")
    return [
        sys.executable,
        str(PROJECT / "train_local.py"),
        "--download_only",
        "--config",
        str(cfg),
        "--models_dir",
        str(tmp_path / "models"),
        "--output_dir",
        str(tmp_path / "out"),
        "--data_dir",
        str(tmp_path / "data"),
        *flags,
    ]


def run_cli(tmp_path: Path, hub_url: str, *flags: str, tty: bool = False, **env: str) -> subprocess.CompletedProcess:
    """Run `train_local.py --download_only`. With tty=True its stderr is a terminal (a pty), as in an interactive
    run, so that progress bars are drawn (tqdm draws none into a pipe)."""
    argv, env = cli_argv(tmp_path, *flags), cli_env(tmp_path, hub_url, **env)
    if not tty:
        return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)
    err = []
    try:
        while data := os.read(master, 65536):  # until the child closes the terminal (EIO on Linux)
            err.append(data)
    except OSError:
        pass
    finally:
        os.close(master)
    out = proc.stdout.read()
    proc.stdout.close()
    proc.wait(120)
    return subprocess.CompletedProcess(argv, proc.returncode, out.decode(), b"".join(err).decode(errors="replace"))


def resolved(hub: FakeHub, method: str = "GET") -> list[str]:
    """repo/path of every /resolve/ request of `method`."""
    out = []
    for r in hub.file_requests(method):
        parts = unquote(r.path.split("?")[0]).strip("/").split("/")
        out.append("/".join(parts[:2] + parts[4:]))
    return out


@pytest.fixture(autouse=True)
def _isolated_hub_client(monkeypatch, tmp_path):
    """No token or offline mode from the developer's machine may leak into a test."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hvhub, "BACKOFF_S", 0)


@pytest.fixture
def hub():
    with FakeHub(make_repos()) as h:
        yield h


# -- (1)-(3): what lands where -----------------------------------------------------------------------------------


def test_t2v_downloads_every_file_to_its_place(tmp_path, hub):
    """Every t2v weight lands at models_dir/<repo_id>/<path> with the served bytes; i2v-only files are never
    requested; the tokenizers land in HF_HOME/hub (the required files, not the byT5 weights)."""
    ctx = make_ctx(tmp_path, hub.url)
    info = download.run(ctx)

    assert info["downloaded"] is True and Path(info["hub_cache"]) == cache_dir(tmp_path)
    expected = catalog.weights_for("t2v")
    assert set(ctx.weights) == set(expected) == {"dit", "vae", "text_encoder", "byt5"}
    for comp, wf in expected.items():
        path = tmp_path / "models" / wf.repo_id / wf.filename
        assert ctx.weights[comp] == path
        assert path.read_bytes() == hub.repos[wf.repo_id][wf.filename], comp
    fetched = resolved(hub)
    assert not [r for r in hub.requests if any(i in r.path for i in I2V_ONLY)], "i2v-only file requested"
    for tok in catalog.TOKENIZERS:
        for f in tok.required_files:
            found = try_to_load_from_cache(tok.repo_id, f, cache_dir=cache_dir(tmp_path))
            assert isinstance(found, str), f"{tok.repo_id}/{f} not in the HF cache"
            assert Path(found).read_bytes() == hub.repos[tok.repo_id][f]
    never = ("pytorch_model.bin", "README.md", "480p_t2v/diffusion_pytorch_model.safetensors")
    assert not [f for f in fetched if f.endswith(never)]
    assert not [f for f in fetched if f.startswith("Qwen/Qwen-Image/transformer/")]
    assert not (tmp_path / "models" / "google").exists(), "tokenizers belong in the HF cache, not models_dir"
    assert download.presence(FAMILY, "t2v", ctx.settings.models_dir, ctx.env).missing == []
    log = ctx.paths.log("download").read_text(encoding="utf-8")
    assert catalog.HV15_REPO in log and BYT5 in log


def test_second_run_fetches_nothing(tmp_path, hub):
    """A complete, recorded download passes the manifest's quick check (size + mtime): the next run sends no request
    at all (not even a HEAD) and hashes nothing."""
    download.run(make_ctx(tmp_path, hub.url))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "models").rglob("*.safetensors")}
    hub.requests.clear()

    ctx = make_ctx(tmp_path, hub.url)
    info = download.run(ctx)
    assert hub.requests == []
    assert info["bytes_fetched"] == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "models").rglob("*.safetensors")} == before
    assert set(ctx.weights) == set(catalog.weights_for("t2v"))
    log = ctx.paths.log("download").read_text(encoding="utf-8")
    assert "verified earlier" in log and "verifying sha256" not in log and "hashing" not in log


def test_i2v_fetches_the_i2v_dit_and_siglip(tmp_path, hub):
    ctx = make_ctx(tmp_path, hub.url, "--task", "i2v")
    download.run(ctx)
    fetched = resolved(hub)
    assert set(ctx.weights) == {"dit", "vae", "text_encoder", "byt5", "image_encoder"}
    for comp, wf in catalog.weights_for("i2v").items():
        assert f"{wf.repo_id}/{wf.filename}" in fetched
        assert ctx.weights[comp].read_bytes() == hub.repos[wf.repo_id][wf.filename]
    assert ctx.weights["dit"].parent.name == "720p_i2v"
    assert not [f for f in fetched if any(f.endswith(t) for t in T2V_ONLY)]


def test_manifest_records_repo_path_revision_commit_size_sha256_mtime(tmp_path, hub):
    """models/manifest.json records every verified weight with the commit the hub resolved `main` to (its
    X-Repo-Commit), the size and sha256 of the bytes on disk (= the LFS ETag the hub advertised) and their mtime;
    the stage's summary info repeats commit and sha256 per component."""
    ctx = make_ctx(tmp_path, hub.url)
    info = download.run(ctx)
    files = manifest(tmp_path)
    wanted = catalog.weights_for("t2v")
    assert set(files) == {wf.key for wf in wanted.values()}
    for comp, wf in wanted.items():
        content, path = hub.repos[wf.repo_id][wf.filename], ctx.weights[comp]
        rec = files[wf.key]
        assert rec["repo_id"] == wf.repo_id and rec["filename"] == wf.filename
        assert rec["revision"] == "main" and rec["commit"] == FakeHub.commit(wf.repo_id)
        assert rec["size"] == len(content) == path.stat().st_size
        assert rec["sha256"] == sha256(content) == FakeHub.etag(wf.filename, content)
        assert rec["mtime_ns"] == path.stat().st_mtime_ns
        assert info["files"][comp] == {
            "path": str(path),
            "commit": FakeHub.commit(wf.repo_id),
            "sha256": sha256(content),
        }
    assert info["bytes_fetched"] == sum(len(hub.repos[w.repo_id][w.filename]) for w in wanted.values())
    p = download.presence(FAMILY, "t2v", ctx.settings.models_dir, ctx.env)
    assert p.missing == [] and all("(verified)" in line for line in p.present if "tokenizer" not in line)


@pytest.mark.parametrize("task", ["t2v", "i2v"])
def test_dit_variant_480p_fetches_the_480p_dit(tmp_path, hub, task):
    ctx = make_ctx(tmp_path, hub.url, "--task", task, "--dit_variant", "480p")
    download.run(ctx)
    wf = weight("dit", task, "480p")
    assert wf.filename == f"transformer/480p_{task}/diffusion_pytorch_model.safetensors"
    assert ctx.weights["dit"] == tmp_path / "models" / catalog.HV15_REPO / wf.filename
    assert ctx.weights["dit"].read_bytes() == hub.repos[wf.repo_id][wf.filename]
    assert not [f for f in resolved(hub) + resolved(hub, "HEAD") if "720p" in f], "a 720p DiT was asked for"
    assert download.presence(FAMILY, task, ctx.settings.models_dir, ctx.env, "480p").missing == []
    assert [m for m in download.presence(FAMILY, task, ctx.settings.models_dir, ctx.env).missing if "720p" in m]


@pytest.mark.parametrize("variant", sorted(catalog.REFUSED_VARIANTS))
def test_distilled_and_sr_variants_are_refused_with_the_reason(tmp_path, variant):
    cfg = tmp_path / "empty.toml"
    cfg.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_settings(["--config", str(cfg), "--dit_variant", variant], cwd=tmp_path)
    msg = str(e.value)
    assert variant in msg and catalog.REFUSED_VARIANTS[variant] in msg and "720p" in msg and "480p" in msg
    if "distilled" in variant and "sr" not in variant:
        assert "distilled" in msg.replace(variant, "")


def test_unknown_dit_variant_is_refused(tmp_path):
    cfg = tmp_path / "empty.toml"
    cfg.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="1080p.*720p, 480p"):
        load_settings(["--config", str(cfg), "--dit_variant", "1080p"], cwd=tmp_path)


def test_revision_pins_a_commit_and_records_it(tmp_path, hub):
    """--revision REPO=COMMIT downloads that repo at the commit (every HEAD/GET names it), the other repos at
    main; the manifest records the pin. The same pin again asks nothing; switching back to main re-asks the hub about
    that repo's files only and, the content being the same, downloads nothing."""
    commit = FakeHub.commit(catalog.HV15_REPO)
    pin = f"{catalog.HV15_REPO}={commit}"
    download.run(make_ctx(tmp_path, hub.url, "--revision", pin))
    asked = hub.file_requests("GET") + hub.file_requests("HEAD")
    hv = [r.path for r in asked if r.path.startswith(f"/{catalog.HV15_REPO}/")]
    other = [r.path for r in asked if r.path.startswith(f"/{catalog.COMFY_REPO}/")]
    assert hv and all(f"/resolve/{commit}/" in p for p in hv)
    assert other and all("/resolve/main/" in p for p in other)
    files = manifest(tmp_path)
    for wf in catalog.weights_for("t2v").values():
        expected = commit if wf.repo_id == catalog.HV15_REPO else "main"
        assert files[wf.key]["revision"] == expected and files[wf.key]["commit"] == FakeHub.commit(wf.repo_id)

    hub.requests.clear()
    download.run(make_ctx(tmp_path, hub.url, "--revision", pin))
    assert hub.requests == []

    download.run(make_ctx(tmp_path, hub.url))
    assert resolved(hub, "GET") == []
    assert resolved(hub, "HEAD") and all(f.startswith(catalog.HV15_REPO) for f in resolved(hub, "HEAD"))
    assert all(r["revision"] == "main" for r in manifest(tmp_path).values())


def test_unknown_revision_fails_naming_repo_and_revision(tmp_path, hub):
    with pytest.raises(StageFailed) as e:
        download.run(make_ctx(tmp_path, hub.url, "--revision", f"{catalog.HV15_REPO}=bogus"))
    msg = str(e.value)
    assert "revision" in msg and "--revision" in msg and catalog.HV15_REPO in msg
    assert [(r.method, r.status) for r in hub.requests] == [("HEAD", 404)], "a 404 is not retried"
    assert not (tmp_path / "models" / "manifest.json").exists()


# -- (4): --skip_download ------------------------------------------------------------------------------------------


def test_skip_download_checks_presence_without_network(tmp_path, hub):
    download.run(make_ctx(tmp_path, hub.url))
    n = len(hub.requests)

    ctx = make_ctx(tmp_path, hub.url, "--skip_download")
    info = download.run(ctx)
    assert info["downloaded"] is False
    assert len(hub.requests) == n, "--skip_download must not talk to the hub"
    assert ctx.weights["vae"] == tmp_path / "models" / catalog.HV15_REPO / "vae/diffusion_pytorch_model.safetensors"

    hub.stop()  # still passes with the network down
    download.run(make_ctx(tmp_path, hub.url, "--skip_download"))

    ctx.weights["vae"].unlink()
    with pytest.raises(UserError) as e:
        download.run(make_ctx(tmp_path, hub.url, "--skip_download"))
    assert str(ctx.weights["vae"]) in str(e.value)
    assert "without --skip_download" in str(e.value)
    assert len(hub.requests) == n


def test_skip_download_names_a_missing_tokenizer(tmp_path, hub):
    download.run(make_ctx(tmp_path, hub.url))
    found = try_to_load_from_cache(BYT5, "config.json", cache_dir=cache_dir(tmp_path))
    Path(found).unlink()
    with pytest.raises(UserError) as e:
        download.run(make_ctx(tmp_path, hub.url, "--skip_download"))
    assert BYT5 in str(e.value) and "config.json" in str(e.value)


# -- (5)-(8): failures and what they tell the user -------------------------------------------------------------------


def test_gated_repo_needs_hf_token_which_never_leaks(tmp_path, capsys):
    with FakeHub(make_repos(), gated={catalog.HV15_REPO: TOKEN}) as hub:
        ctx = make_ctx(tmp_path, hub.url)
        with pytest.raises(StageFailed) as e:
            pipeline._run_stage(ctx, 1, download)  # as the pipeline runs it: the failure goes into summary.json
        msg = str(e.value)
        assert "gated" in msg and "license" in msg and "HF_TOKEN" in msg and catalog.HV15_REPO in msg
        refused = [r for r in hub.requests if r.status == 403]
        assert refused and not any(r.auth for r in refused)
        assert len(refused) == 1, "a 403 is not retried"
        assert not any(r.status == 200 and r.sent for r in hub.requests)

        ctx2 = make_ctx(tmp_path, hub.url, HF_TOKEN=TOKEN)
        pipeline._run_stage(ctx2, 1, download)
        wf = catalog.weights_for("t2v")["dit"]
        assert ctx2.weights["dit"].read_bytes() == hub.repos[wf.repo_id][wf.filename]
        assert all(r.auth for r in hub.requests if r.status == 200)

    files = run_files(tmp_path)
    assert ctx.paths.summary in files and ctx2.paths.log("download") in files
    for f in files:
        assert TOKEN not in f.read_text(encoding="utf-8"), f
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    assert TOKEN not in msg
    stages = json.loads(ctx.paths.summary.read_text())["stages"]
    assert stages[-1]["status"] == "failed" and "HF_TOKEN" in stages[-1]["error"]


def test_a_failed_download_leaves_its_log(tmp_path):
    with FakeHub(make_repos(), gated={catalog.HV15_REPO: TOKEN}) as hub:
        ctx = make_ctx(tmp_path, hub.url)
        with pytest.raises(StageFailed) as e:
            pipeline._run_stage(ctx, 1, download)
    log = Path(json.loads(ctx.paths.summary.read_text())["stages"][-1]["log"])
    assert log.is_file() and str(e.value) in log.read_text(encoding="utf-8")


def test_private_repo_without_token_says_check_token(tmp_path):
    with FakeHub(make_repos(), private={BYT5: TOKEN}) as hub:
        with pytest.raises(StageFailed) as e:
            download.run(make_ctx(tmp_path, hub.url))
        assert BYT5 in str(e.value) and "HF_TOKEN" in str(e.value)
        assert any(r.status == 401 for r in hub.requests)
        download.run(make_ctx(tmp_path, hub.url, HF_TOKEN=TOKEN))
        assert isinstance(try_to_load_from_cache(BYT5, "config.json", cache_dir=cache_dir(tmp_path)), str)


def test_missing_repo_names_the_repo(tmp_path):
    repos = make_repos()
    del repos[catalog.COMFY_REPO]
    with FakeHub(repos) as hub:
        with pytest.raises(StageFailed) as e:
            download.run(make_ctx(tmp_path, hub.url))
        assert [r.status for r in hub.requests if catalog.COMFY_REPO in r.path] == [404], "a 404 is not retried"
    assert catalog.COMFY_REPO in str(e.value) and "not found" in str(e.value)
    assert not gets_of(hub, weight("dit")), "nothing is downloaded before every file is known to exist"


def test_missing_file_on_the_hub_names_repo_and_file(tmp_path):
    repos = make_repos()
    wf = catalog.weights_for("t2v")["text_encoder"]
    del repos[wf.repo_id][wf.filename]
    with FakeHub(repos) as hub:
        with pytest.raises(StageFailed) as e:
            download.run(make_ctx(tmp_path, hub.url))
        assert [r.status for r in hub.requests if r.status == 404] == [404], "a 404 is not retried"
    assert wf.repo_id in str(e.value) and wf.filename in str(e.value) and "not found" in str(e.value)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_hub_unreachable_says_run_again_and_resume(tmp_path):
    """Connection refused is transient: retried RETRIES times, then the run-again message naming the file."""
    ctx = make_ctx(tmp_path, _closed_port_url())
    with pytest.raises(StageFailed) as e:
        download.run(ctx)
    msg = str(e.value)
    assert "again" in msg and "resume" in msg and catalog.HV15_REPO in msg
    assert ctx.paths.log("download").read_text(encoding="utf-8").count("retrying in") == hvhub.RETRIES - 1


def test_hub_unreachable_says_network_down_and_offline(tmp_path):
    with pytest.raises(StageFailed) as e:
        download.run(make_ctx(tmp_path, _closed_port_url()))
    msg = str(e.value)
    assert "--offline" in msg and "network" in msg and "HTTPConnectionPool" not in msg


def _drop_tokenizer_cache(tmp_path: Path, repo_id: str, only: str | None = None) -> None:
    """Delete a tokenizer repo's files from the HF cache (all of them, refs included, or only the file `only`)."""
    for p in (cache_dir(tmp_path) / f"models--{repo_id.replace('/', '--')}").rglob("*"):
        if (p.is_file() or p.is_symlink()) and (only is None or p.name == only):
            p.unlink()


def test_hub_going_down_mid_stage_then_coming_back(tmp_path, hub):
    """Network down after the weights are in place: the weights are kept, the missing tokenizers fail the stage with
    the run-again message; the next run against a working hub fetches only the tokenizers."""
    download.run(make_ctx(tmp_path, hub.url))
    for tok in catalog.TOKENIZERS:
        _drop_tokenizer_cache(tmp_path, tok.repo_id)
    hub.stop()
    with pytest.raises(StageFailed) as e:
        download.run(make_ctx(tmp_path, hub.url))
    assert "again" in str(e.value) and "Qwen/Qwen-Image" in str(e.value)

    with FakeHub(hub.repos) as back:
        ctx = make_ctx(tmp_path, back.url)
        download.run(ctx)
        assert all(f.startswith(tuple(t.repo_id for t in catalog.TOKENIZERS)) for f in resolved(back))
    assert download.presence(FAMILY, "t2v", ctx.settings.models_dir, ctx.env).missing == []


def test_network_down_with_a_tokenizer_file_missing_fails_the_stage(tmp_path, hub):
    """Offline, snapshot_download returns the cached snapshot folder without checking its files; the stage must
    still notice that a required tokenizer file is missing instead of reporting success (musubi would then fail
    under HF_HUB_OFFLINE=1, much later)."""
    download.run(make_ctx(tmp_path, hub.url))
    _drop_tokenizer_cache(tmp_path, BYT5, only="tokenizer_config.json")
    hub.stop()
    with pytest.raises(StageFailed) as e:
        download.run(make_ctx(tmp_path, hub.url))
    assert BYT5 in str(e.value) and "again" in str(e.value)


def test_transient_server_errors_are_retried_with_backoff(tmp_path, hub, monkeypatch):
    """5xx answers are retried with exponential backoff (BACKOFF_S, 2x, 4x ...) and the stage succeeds."""
    monkeypatch.setattr(hvhub, "BACKOFF_S", 0.001)
    hub.fail_first = hvhub.RETRIES - 1
    ctx = make_ctx(tmp_path, hub.url)
    download.run(ctx)
    assert [r.status for r in hub.requests[: hvhub.RETRIES]] == [500] * (hvhub.RETRIES - 1) + [200]
    assert download.presence(FAMILY, "t2v", ctx.settings.models_dir, ctx.env).missing == []
    log = ctx.paths.log("download").read_text(encoding="utf-8")
    assert "HTTP 500; retrying in 0.001 s" in log and "retrying in 0.002 s" in log and "retrying in 0.004 s" in log


def test_persistent_server_errors_fail_after_the_retries_and_a_rerun_recovers(tmp_path, hub):
    hub.fail_all = True
    with pytest.raises(StageFailed) as e:
        download.run(make_ctx(tmp_path, hub.url))
    assert "again" in str(e.value) and "500" in str(e.value)
    assert [(r.method, r.status) for r in hub.requests] == [("HEAD", 500)] * hvhub.RETRIES
    hub.fail_all = False
    ctx = make_ctx(tmp_path, hub.url)
    download.run(ctx)
    assert download.presence(FAMILY, "t2v", ctx.settings.models_dir, ctx.env).missing == []


def test_dropped_connection_resumes_to_an_identical_file(tmp_path, monkeypatch):
    """A connection cut mid-file is retried by the stage within the same run, resumed with a Range request from the
    bytes already in the `.incomplete` file rather than fetched again from byte 0 (huggingface_hub 0.34 itself does
    not retry a cut body: requests raises ChunkedEncodingError, which http_get does not catch)."""
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    wf = weight("vae")
    size, cut = 1 << 20, 300_000
    with FakeHub(make_repos(big=wf.filename, big_size=size), fail_after_bytes=cut) as hub:
        ctx = make_ctx(tmp_path, hub.url)
        download.run(ctx)
        gets = gets_of(hub, wf)
    assert (tmp_path / "models" / wf.repo_id / wf.filename).read_bytes() == hub.repos[wf.repo_id][wf.filename]
    assert [r.status for r in gets] == [200, 206] and gets[0].sent == cut
    start = int(gets[1].range.split("=")[1].split("-")[0])
    assert 0 < start <= cut and gets[1].sent == size - start, "resumed, not fetched again from 0"
    assert "retrying" in ctx.paths.log("download").read_text(encoding="utf-8")
    assert manifest(tmp_path)[wf.key]["sha256"] == sha256(hub.repos[wf.repo_id][wf.filename])


def test_killed_process_resumes_from_the_bytes_on_disk(tmp_path):
    """`train_local.py --download_only` SIGKILLed mid-file leaves an `.incomplete` file; the next run asks for
    `Range: bytes=<its size>-`, counts only the rest as still to fetch, and ends with an identical, verified file.
    huggingface_hub writes in DOWNLOAD_CHUNK_SIZE (10 MiB) chunks: the server holds the body after 16 MiB of 24, so
    exactly one chunk is on disk when the process is killed."""
    wf = weight("dit")
    chunk, size, hold = constants.DOWNLOAD_CHUNK_SIZE, 24 << 20, 16 << 20
    assert chunk < hold < 2 * chunk < size
    partial_dir = tmp_path / "models" / wf.repo_id / ".cache" / "huggingface" / "download"

    def partial() -> list[Path]:
        return list(partial_dir.rglob("*.incomplete"))

    with FakeHub(make_repos(big=wf.filename, big_size=size), hold_after_bytes=hold) as hub:
        content = hub.repos[wf.repo_id][wf.filename]
        with open(tmp_path / "run1.out", "w") as out, open(tmp_path / "run1.err", "w") as err:
            proc = subprocess.Popen(
                cli_argv(tmp_path), cwd=tmp_path, env=cli_env(tmp_path, hub.url), stdout=out, stderr=err
            )
        try:
            held = hub.holding.wait(60)
            on_disk = held and wait_until(lambda: sum(p.stat().st_size for p in partial()) >= chunk)
        finally:
            proc.kill()
            proc.wait(30)
        assert held and on_disk, (tmp_path / "run1.err").read_text()
        files = partial()
        assert len(files) == 1 and files[0].stat().st_size == chunk
        resume_from = files[0].stat().st_size
        assert not (tmp_path / "models" / wf.repo_id / wf.filename).exists()
        hub.release.set()

        second = run_cli(tmp_path, hub.url)
        assert second.returncode == 0, second.stderr
        gets = gets_of(hub, wf)
    assert [(r.status, r.range) for r in gets] == [(200, None), (206, f"bytes={resume_from}-")]
    assert gets[1].sent == size - resume_from
    assert (tmp_path / "models" / wf.repo_id / wf.filename).read_bytes() == content
    assert partial() == []
    assert manifest(tmp_path)[wf.key]["sha256"] == sha256(content)
    others = sum(len(hub.repos[w.repo_id][w.filename]) for c, w in catalog.weights_for("t2v").items() if c != "dit")
    rest = size - resume_from + others
    assert f"{download.human_bytes(rest)} still to fetch" in second.stdout
    summary = json.loads(max((tmp_path / "out" / "runs").glob("*/summary.json"), key=os.path.getmtime).read_text())
    assert summary["status"] == "succeeded" and summary["stages"][-1]["bytes_fetched"] == rest


def test_corrupt_download_is_deleted_and_fetched_again(tmp_path, hub):
    """Bytes whose sha256 differs from the hub's ETag are caught right after the download: the file is deleted and
    downloaded once more (from byte 0), and the good copy is recorded."""
    wf = weight("vae")
    content = hub.repos[wf.repo_id][wf.filename]
    hub.corrupt(wf.repo_id, wf.filename)
    ctx = make_ctx(tmp_path, hub.url)
    download.run(ctx)
    assert [(r.status, r.range) for r in gets_of(hub, wf)] == [(200, None), (200, None)]
    assert ctx.weights["vae"].read_bytes() == content
    assert manifest(tmp_path)[wf.key]["sha256"] == sha256(content)
    log = ctx.paths.log("download").read_text(encoding="utf-8")
    assert f"{wf.key}: content does not match the hub" in log and "downloading it again" in log


def test_corrupt_twice_fails_naming_the_file(tmp_path, hub):
    wf = weight("vae")
    hub.corrupt(wf.repo_id, wf.filename, times=2)
    with pytest.raises(StageFailed) as e:
        download.run(make_ctx(tmp_path, hub.url))
    assert wf.key in str(e.value) and "sha256" in str(e.value)
    assert len(gets_of(hub, wf)) == 2, "one retry, not more"
    assert not wf.local_path(tmp_path / "models").exists(), "a corrupt file must not stay where musubi reads it"
    assert wf.key not in manifest(tmp_path)


def test_corrupt_tokenizer_file_is_detected(tmp_path, hub):
    hub.corrupt(BYT5, "tokenizer_config.json")
    try:
        download.run(make_ctx(tmp_path, hub.url))
    except StageFailed as e:
        assert "tokenizer_config.json" in str(e)
        return
    found = try_to_load_from_cache(BYT5, "tokenizer_config.json", cache_dir=cache_dir(tmp_path))
    assert Path(found).read_bytes() == hub.repos[BYT5]["tokenizer_config.json"]


def _rot(path: Path) -> bytes:
    """Flip one byte in place and restore the mtime: what bit rot looks like to a size+mtime check."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return bytes(data)


def test_bit_rot_is_caught_only_by_verify_weights(tmp_path, hub):
    """A file corrupted on disk with size and mtime unchanged passes the quick check (that is its documented
    limit); --verify_weights re-hashes it, finds it, and replaces it with a good copy; offline it is reported."""
    download.run(make_ctx(tmp_path, hub.url))
    wf = weight("vae")
    path = wf.local_path(tmp_path / "models")
    rotten = _rot(path)
    hub.requests.clear()

    download.run(make_ctx(tmp_path, hub.url))
    assert hub.requests == [] and path.read_bytes() == rotten

    with pytest.raises(UserError) as e:
        download.run(make_ctx(tmp_path, hub.url, "--offline", "--verify_weights"))
    assert str(path) in str(e.value) and "differs" in str(e.value)
    assert hub.requests == []

    ctx = make_ctx(tmp_path, hub.url, "--verify_weights")
    info = download.run(ctx)  # what summary.json records for the stage
    assert path.read_bytes() == hub.repos[wf.repo_id][wf.filename]
    assert len(gets_of(hub, wf)) == 1 and resolved(hub) == [wf.key]
    rec = manifest(tmp_path)[wf.key]
    assert rec["sha256"] == sha256(path.read_bytes()) and rec["mtime_ns"] == path.stat().st_mtime_ns
    log = ctx.paths.log("download").read_text(encoding="utf-8")
    assert "file changed on disk" in log
    assert log.count("hashing (--verify_weights)") == len(catalog.weights_for("t2v"))
    # the repair is announced: which file, the expected and the found sha256, and that it is fetched again
    assert f"sha256 check FAILED: expected {sha256(hub.repos[wf.repo_id][wf.filename])}, found {sha256(rotten)}" in log
    assert "deleted and fetched again" in log
    good = sha256(hub.repos[wf.repo_id][wf.filename])
    assert info["repaired"] == [{"file": str(path), "expected_sha256": good, "found_sha256": sha256(rotten)}]
    assert download.run(make_ctx(tmp_path, hub.url))["repaired"] == []


def test_a_file_changed_on_disk_is_verified_again(tmp_path, hub, capsys):
    """A different mtime fails the quick check: a file only touched is re-hashed, matches the hub, and is recorded
    anew without a download; a file whose content changed is replaced, and that is said (which file, the expected
    and found sha256, fetched again) on the console and in the stage's summary."""
    download.run(make_ctx(tmp_path, hub.url))
    touched, changed = weight("dit").local_path(tmp_path / "models"), weight("vae").local_path(tmp_path / "models")
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    st = changed.stat()
    changed.write_bytes(b"not the vae")
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    hub.requests.clear()
    capsys.readouterr()

    info = download.run(make_ctx(tmp_path, hub.url))
    good = sha256(hub.repos[catalog.HV15_REPO][weight("vae").filename])
    said = capsys.readouterr()
    line = f"{weight('vae').key}: sha256 check FAILED: expected {good}, found {sha256(b'not the vae')}"
    assert line in said.err and f"{changed} is deleted and fetched again" in said.err
    assert f"repaired: {changed} failed its sha256 check and was fetched again" in said.out
    assert info["repaired"] == [{"file": str(changed), "expected_sha256": good, "found_sha256": sha256(b"not the vae")}]
    assert set(resolved(hub, "HEAD")) == {weight("dit").key, weight("vae").key}
    assert resolved(hub, "GET") == [weight("vae").key]
    assert touched.read_bytes() == hub.repos[catalog.HV15_REPO][weight("dit").filename]
    assert changed.read_bytes() == hub.repos[catalog.HV15_REPO][weight("vae").filename]
    files = manifest(tmp_path)
    for p, wf in ((touched, weight("dit")), (changed, weight("vae"))):
        assert files[wf.key]["mtime_ns"] == p.stat().st_mtime_ns and files[wf.key]["size"] == p.stat().st_size
    hub.requests.clear()
    download.run(make_ctx(tmp_path, hub.url))
    assert hub.requests == []


def test_not_enough_disk_space_fails_before_any_download(tmp_path, hub, monkeypatch):
    """The bytes still missing are compared with the free space of models_dir before the first GET; the error says
    how much is needed, how much is free and where. Only missing bytes count: with 3 of 4 files present, the space
    for the fourth is enough."""
    free = {"bytes": 10_000}
    asked = []

    def disk_usage(path):
        asked.append(Path(path))
        return shutil._ntuple_diskusage(10**12, 10**12 - free["bytes"], free["bytes"])

    monkeypatch.setattr(download.shutil, "disk_usage", disk_usage)
    with pytest.raises(UserError) as e:
        download.run(make_ctx(tmp_path, hub.url))
    needed = sum(len(hub.repos[w.repo_id][w.filename]) for w in catalog.weights_for("t2v").values())
    msg = str(e.value)
    assert download.human_bytes(needed) in msg and download.human_bytes(10_000) in msg
    assert str(tmp_path / "models") in msg and tmp_path / "models" in asked
    assert hub.file_requests("GET") == [] and not list((tmp_path / "models").rglob("*.safetensors"))

    free["bytes"] = 10**9
    download.run(make_ctx(tmp_path, hub.url))
    wf = weight("vae")
    wf.local_path(tmp_path / "models").unlink()
    free["bytes"] = len(hub.repos[wf.repo_id][wf.filename]) + 1
    download.run(make_ctx(tmp_path, hub.url))
    assert wf.local_path(tmp_path / "models").is_file()


def test_disk_full_while_writing_says_free_space(tmp_path, hub, monkeypatch):
    calls = []

    def full(*args, **kwargs):
        calls.append(args)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", full)
    with pytest.raises(StageFailed) as e:
        download.run(make_ctx(tmp_path, hub.url))
    assert "disk is full" in str(e.value) and weight("dit").key in str(e.value) and "again" in str(e.value)
    assert len(calls) == 1, "a full disk is not retried"


# -- --offline ---------------------------------------------------------------------------------------------------


def test_offline_with_every_file_verified_sends_nothing(tmp_path, hub):
    download.run(make_ctx(tmp_path, hub.url))
    n = len(hub.requests)
    ctx = make_ctx(tmp_path, hub.url, "--offline")
    info = download.run(ctx)
    assert info["downloaded"] is False and len(hub.requests) == n
    assert set(ctx.weights) == set(catalog.weights_for("t2v")) and all(p.is_file() for p in ctx.weights.values())
    assert set(info["files"]) == set(ctx.weights)
    assert "nothing downloaded" in ctx.paths.log("download").read_text(encoding="utf-8")
    hub.stop()
    download.run(make_ctx(tmp_path, hub.url, "--offline"))
    assert len(hub.requests) == n


def test_offline_lists_every_missing_file(tmp_path, hub):
    hub.stop()
    with pytest.raises(UserError) as e:
        download.run(make_ctx(tmp_path, hub.url, "--offline"))
    msg = str(e.value)
    for wf in catalog.weights_for("t2v").values():
        assert str(wf.local_path(tmp_path / "models")) in msg
    for tok in catalog.TOKENIZERS:
        assert tok.repo_id in msg
    assert "--offline" in msg and hub.requests == []


def test_offline_names_the_one_file_missing(tmp_path, hub):
    download.run(make_ctx(tmp_path, hub.url))
    gone = weight("vae").local_path(tmp_path / "models")
    gone.unlink()
    _drop_tokenizer_cache(tmp_path, BYT5, only="config.json")
    hub.stop()
    n = len(hub.requests)
    with pytest.raises(UserError) as e:
        download.run(make_ctx(tmp_path, hub.url, "--offline"))
    msg = str(e.value)
    assert str(gone) in msg and BYT5 in msg and "config.json" in msg
    assert str(weight("dit").local_path(tmp_path / "models")) not in msg
    assert len(hub.requests) == n


def test_offline_file_never_verified_is_checked_against_hf_metadata_or_listed(tmp_path, hub):
    """Offline, a file not in the manifest is hashed against the ETag huggingface_hub stored when it downloaded it
    (and then recorded); a file with neither (copied in by hand) cannot be checked and is listed as such. Online,
    such a file is hashed against the hub's ETag and kept, without a download."""
    download.run(make_ctx(tmp_path, hub.url))
    (tmp_path / "models" / "manifest.json").unlink()
    hand = weight("vae")
    hvhub.forget_local(tmp_path / "models" / hand.repo_id, hand.filename)  # deletes the file and its metadata
    path = hand.local_path(tmp_path / "models")
    path.write_bytes(hub.repos[hand.repo_id][hand.filename])
    n = len(hub.requests)

    with pytest.raises(UserError) as e:
        download.run(make_ctx(tmp_path, hub.url, "--offline"))
    msg = str(e.value)
    assert str(path) in msg and "cannot be checked offline" in msg
    assert msg.count(str(tmp_path / "models")) == 1, "only the unverifiable file is listed"
    assert set(manifest(tmp_path)) == {w.key for c, w in catalog.weights_for("t2v").items() if c != "vae"}
    assert len(hub.requests) == n

    download.run(make_ctx(tmp_path, hub.url))
    assert resolved(hub, "GET")[n:] == [] and hand.key in manifest(tmp_path)
    download.run(make_ctx(tmp_path, hub.url, "--offline"))


# -- the command line: --download_only, HF_TOKEN -----------------------------------------------------------------


def test_download_only_cli_fetches_verifies_stops_and_never_shows_the_token(tmp_path):
    """`train_local.py --download_only` on a gated repo: with a wrong token it fails (exit 1) with the gated
    message; with the right one it fetches and verifies the files, writes a run folder whose summary.json lists
    commit and sha256 per file, runs no other stage, and exits 0. Neither token appears in the console output, the
    logs, config.toml, summary.json or the manifest. The successful run has a terminal, so its progress bars are
    checked too."""
    wrong = "hf_WrongSecretToken9876543210"
    with FakeHub(make_repos(), gated={catalog.HV15_REPO: TOKEN}) as hub:
        bad = run_cli(tmp_path, hub.url, HF_TOKEN=wrong)
        bad_runs = sorted((tmp_path / "out" / "runs").iterdir())
        ok = run_cli(tmp_path, hub.url, HF_TOKEN=TOKEN, tty=True)
    assert bad.returncode == 1, bad.stderr
    assert "gated" in bad.stderr and "HF_TOKEN" in bad.stderr and catalog.HV15_REPO in bad.stderr
    assert ok.returncode == 0, ok.stderr
    assert "Model files ready" in ok.stdout

    # progress: a line with the total still to fetch before each file, and one bar per file (bytes, rate, ETA)
    wanted = catalog.weights_for("t2v")
    assert len(re.findall(r"still to fetch", ok.stdout)) == len(wanted)
    for wf in wanted.values():
        total = download.human_bytes(len(hub.repos[wf.repo_id][wf.filename]))
        assert f"{wf.key} ({total})" in ok.stdout
        bar = re.escape(wf.filename[-30:]) + r": 100%\S* (\S+)/\1 \[\d\d:\d\d<\d\d:\d\d, [\d.]+ ?[kMG]?B/s\]"
        assert re.search(bar, ok.stderr), f"no progress bar for {wf.key}"

    runs = sorted((tmp_path / "out" / "runs").iterdir())
    assert len(bad_runs) == 1 and len(runs) == 2
    good = next(r for r in runs if r not in bad_runs)
    failed = json.loads((bad_runs[0] / "summary.json").read_text())
    assert failed["status"] == "failed" and failed["stages"][-1]["name"] == "download"
    summary = json.loads((good / "summary.json").read_text())
    assert summary["status"] == "succeeded" and [st["name"] for st in summary["stages"]] == ["download"]
    assert not (good / "extracted").exists() and not (good / "dataset.toml").exists()
    files = summary["stages"][0]["files"]
    assert set(files) == set(catalog.weights_for("t2v"))
    for comp, wf in catalog.weights_for("t2v").items():
        content = hub.repos[wf.repo_id][wf.filename]
        assert Path(files[comp]["path"]).read_bytes() == content
        assert files[comp]["commit"] == FakeHub.commit(wf.repo_id) and files[comp]["sha256"] == sha256(content)
    assert (good / "config.toml").is_file() and (good / "logs" / "download.log").is_file()

    shown = [bad.stdout, bad.stderr, ok.stdout, ok.stderr]
    shown += [p.read_text(encoding="utf-8") for p in run_files(tmp_path)]
    assert len(shown) >= 4 + 5  # 2 summaries, 2 config.toml, >= 1 log, the manifest
    for token in (TOKEN, wrong):
        assert not [t for t in shown if token in t]


# -- presence() and hub_cache_dir() --------------------------------------------------------------------------------


def test_presence_lists_every_missing_file(tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf")}
    p = download.presence(FAMILY, "t2v", tmp_path / "models", env)
    assert p.present == []
    assert len(p.missing) == len(catalog.weights_for("t2v")) + len(catalog.TOKENIZERS)
    assert set(p.weights) == set(catalog.weights_for("t2v"))
    for wf in catalog.weights_for("t2v").values():
        assert any(str(wf.local_path(tmp_path / "models")) in m for m in p.missing)
    for tok in catalog.TOKENIZERS:
        assert any(tok.repo_id in m and str(cache_dir(tmp_path)) in m for m in p.missing)
    assert len(download.presence(FAMILY, "i2v", tmp_path / "models", env).weights) == len(catalog.weights_for("i2v"))


def test_presence_counts_weight_files_on_disk(tmp_path):
    wf = catalog.weights_for("t2v")["vae"]
    path = wf.local_path(tmp_path / "models")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    p = download.presence(FAMILY, "t2v", tmp_path / "models", {"HF_HOME": str(tmp_path / "hf")})
    assert p.present == [f"vae: {path} (not verified yet)"]
    assert not any(str(path) in m for m in p.missing)


def test_hub_cache_dir_follows_huggingface_hub_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.hub_cache_dir({}) == tmp_path / "home/.cache/huggingface/hub"
    assert download.hub_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/huggingface/hub")
    assert download.hub_cache_dir({"XDG_CACHE_HOME": "/x", "HF_HOME": "/h"}) == Path("/h/hub")
    assert download.hub_cache_dir({"XDG_CACHE_HOME": "/x", "HF_HOME": "/h", "HF_HUB_CACHE": "/c"}) == Path("/c")
    assert download.hub_cache_dir({"HF_HOME": "~/hf"}) == tmp_path / "home/hf/hub"
    assert download.hub_cache_dir({"HF_HOME": "", "XDG_CACHE_HOME": "/x"}) == Path("/x/huggingface/hub")


def test_huggingface_hub_is_the_tested_version():
    """These tests pin the behaviour of the client musubi-tuner pins."""
    assert huggingface_hub.__version__ == "0.34.3"


def test_fake_hub_answers_like_the_hub():
    """The fixture itself: headers, ranges and errors huggingface_hub relies on."""
    repos = {"o/r": {"a.safetensors": b"0123456789", "d/b.json": b"{}"}}
    with FakeHub(repos, gated={"o/g": "tok"}) as hub:
        hub.repos["o/g"] = {"x": b"x"}
        commit = FakeHub.commit("o/r")
        h = requests.head(f"{hub.url}/o/r/resolve/main/a.safetensors").headers
        assert h["X-Repo-Commit"] == commit and h["Content-Length"] == "10" and h["Accept-Ranges"] == "bytes"
        assert h["X-Linked-Etag"] == h["ETag"] == '"{}"'.format(FakeHub.etag("a.safetensors", b"0123456789"))
        assert len(FakeHub.etag("d/b.json", b"{}")) == 40
        r = requests.get(f"{hub.url}/o/r/resolve/{commit}/a.safetensors", headers={"Range": "bytes=2-4"})
        assert (r.status_code, r.content, r.headers["Content-Range"]) == (206, b"234", "bytes 2-4/10")
        r = requests.get(f"{hub.url}/o/r/resolve/main/a.safetensors", headers={"Range": "bytes=7-"})
        assert (r.status_code, r.content) == (206, b"789")
        r = requests.get(f"{hub.url}/o/r/resolve/main/a.safetensors", headers={"Range": "bytes=-2"})
        assert (r.status_code, r.content) == (206, b"89")
        assert (
            requests.get(f"{hub.url}/o/r/resolve/main/a.safetensors", headers={"Range": "bytes=10-"}).status_code == 416
        )
        urls = ("/o/r/resolve/main/nope", "/o/r/resolve/v9/a.safetensors", "/o/x/resolve/main/a", "/o/g/resolve/main/x")
        codes = [(r.status_code, r.headers.get("X-Error-Code")) for r in (requests.get(hub.url + u) for u in urls)]
        assert codes == [(404, "EntryNotFound"), (404, "RevisionNotFound"), (404, "RepoNotFound"), (403, "GatedRepo")]
        assert requests.get(f"{hub.url}/o/g/resolve/main/x", headers={"Authorization": "Bearer tok"}).content == b"x"
        info = requests.get(f"{hub.url}/api/models/o/r/revision/main").json()
        assert info["sha"] == commit and [s["rfilename"] for s in info["siblings"]] == ["a.safetensors", "d/b.json"]
        tree = requests.get(f"{hub.url}/api/models/o/r/tree/main/d", params={"recursive": "true"}).json()
        assert tree == [{"type": "file", "path": "d/b.json", "size": 2, "oid": FakeHub.etag("d/b.json", b"{}")}]
        hub.fail_all = True
        assert requests.get(f"{hub.url}/api/models/o/r").status_code == 500
        assert [r.auth for r in hub.requests if r.path == "/o/g/resolve/main/x"] == [False, True]
        hub.fail_all = False
        hub.fail_first = 2
        assert [requests.head(f"{hub.url}/o/r/resolve/main/d/b.json").status_code for _ in range(3)] == [500, 500, 200]
        hub.corrupt("o/r", "a.safetensors")
        bad, good = (requests.get(f"{hub.url}/o/r/resolve/main/a.safetensors") for _ in range(2))
        assert len(bad.content) == 10 and bad.content != b"0123456789" and good.content == b"0123456789"
        assert bad.headers["ETag"] == good.headers["ETag"], "the advertised ETag stays that of the real content"


def test_fake_hub_holds_a_body_until_released():
    content = bytes(range(256)) * 64
    with FakeHub({"o/r": {"a.safetensors": content}}, hold_after_bytes=1000) as hub:
        with requests.get(f"{hub.url}/o/r/resolve/main/a.safetensors", stream=True) as r:
            first = r.raw.read(1000)
            assert hub.holding.wait(10) and first == content[:1000]
            hub.release.set()
            assert first + r.raw.read() == content
        assert requests.get(f"{hub.url}/o/r/resolve/main/a.safetensors").content == content, "held once per file"


def test_sigterm_during_a_download_is_a_stop_not_a_failure(tmp_path):
    """`docker stop` mid-file: the SIGTERM reaches the download inside huggingface_hub; hub.retrying must not catch
    it as a failure (it did: Interrupted derived from Exception). Exit 143, the resume message, summary
    "interrupted"; the partial file is kept for the next run."""
    wf = weight("dit")
    with FakeHub(make_repos(big=wf.filename, big_size=24 << 20), hold_after_bytes=16 << 20) as hub:
        proc = subprocess.Popen(
            cli_argv(tmp_path),
            cwd=tmp_path,
            env=cli_env(tmp_path, hub.url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert hub.holding.wait(60)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            hub.release.set()
            proc.kill()
    assert proc.returncode == 143, out + err
    assert "Stopped (SIGTERM) during download" in err and "run the same command again" in err
    assert "FAILED" not in err and "Traceback" not in err
    summary = json.loads(next((tmp_path / "out" / "runs").glob("*/summary.json")).read_text())
    assert summary["status"] == "interrupted" and summary["stages"][-1]["status"] == "interrupted"


def test_skip_cache_without_a_cache_is_refused_before_any_download(tmp_path, hub):
    """With an empty models folder, --skip_cache used to download 40 GB and only then refuse (the cache key was
    known in stage 3): now it is decided right after the data check, before one request."""
    from mediafactory import dataset_zip

    dataset_zip(tmp_path / "src", tmp_path / "data" / "d.zip", images={"a.png": "a"})
    argv = [a for a in cli_argv(tmp_path) if a != "--download_only"]
    argv += ["--data_dir", str(tmp_path / "data"), "--skip_cache", "--device", "cpu", "--resolution", "64x64"]
    env = cli_env(tmp_path, hub.url, PYTHONPATH=str(PROJECT / "tests" / "standin"))
    r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--skip_cache: 2 cache file(s) are missing" in r.stderr, r.stdout + r.stderr
    assert "images/a_0080x0048_hv15.safetensors" in r.stderr  # the missing items are named
    assert hub.requests == [] and not (tmp_path / "models").exists()
