"""Stage 1 (download) against a local fake hub: the real huggingface_hub 0.34 code, in-process, on 127.0.0.1.

The fake hub (tests/hubserver.py) serves small files at exactly the catalog's repo ids and paths; the stage sees it
through ctx.env (HF_ENDPOINT, HF_HOME, HF_TOKEN), as in a real run.
"""
from __future__ import annotations

import json
import random
import socket
from pathlib import Path
from urllib.parse import unquote

import huggingface_hub
import pytest
import requests
from huggingface_hub import constants, try_to_load_from_cache
from hubserver import FakeHub

from hvlora import catalog, pipeline
from hvlora.cli import load_settings
from hvlora.context import RunContext, Summary, new_run_paths
from hvlora.errors import StageFailed, UserError
from hvlora.stages import download

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
    s = load_settings(["--config", str(cfg), "--models_dir", str(tmp_path / "models"),
                       "--output_dir", str(tmp_path / "out"), "--device", "cpu", *flags], cwd=tmp_path)
    paths = new_run_paths(s.output_dir, s.output_name)
    base = {"HF_ENDPOINT": hub_url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1"}
    return RunContext(s, paths, Summary(paths.summary, s), {**base, **env})


def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "hf" / "hub"


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
    assert download.presence("t2v", ctx.settings.models_dir, ctx.env).missing == []
    log = ctx.paths.log("download").read_text(encoding="utf-8")
    assert catalog.HV15_REPO in log and BYT5 in log


def test_second_run_fetches_nothing(tmp_path, hub):
    """A complete download is only re-checked (HEAD / model info), never downloaded again."""
    download.run(make_ctx(tmp_path, hub.url))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "models").rglob("*.safetensors")}
    hub.requests.clear()

    ctx = make_ctx(tmp_path, hub.url)
    download.run(ctx)
    assert resolved(hub, "GET") == []
    assert not [r for r in hub.requests if r.method == "GET" and "/resolve/" in r.path and r.sent]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "models").rglob("*.safetensors")} == before
    assert set(ctx.weights) == set(catalog.weights_for("t2v"))


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

def test_gated_repo_needs_hf_token_which_never_leaks(tmp_path):
    with FakeHub(make_repos(), gated={catalog.HV15_REPO: TOKEN}) as hub:
        ctx = make_ctx(tmp_path, hub.url)
        with pytest.raises(StageFailed) as e:
            pipeline._run_stage(ctx, 1, download)  # as the pipeline runs it: the failure goes into summary.json
        msg = str(e.value)
        assert "gated" in msg and "license" in msg and "HF_TOKEN" in msg and catalog.HV15_REPO in msg
        refused = [r for r in hub.requests if r.status == 403]
        assert refused and not any(r.auth for r in refused)
        assert not any(r.status == 200 and r.sent for r in hub.requests)

        ctx2 = make_ctx(tmp_path, hub.url, HF_TOKEN=TOKEN)
        pipeline._run_stage(ctx2, 1, download)
        wf = catalog.weights_for("t2v")["dit"]
        assert ctx2.weights["dit"].read_bytes() == hub.repos[wf.repo_id][wf.filename]
        assert all(r.auth for r in hub.requests if r.status == 200)

    for c in (ctx, ctx2):
        for f in (c.paths.log("download"), c.paths.summary):
            assert TOKEN not in f.read_text(encoding="utf-8"), f
    assert TOKEN not in msg
    stages = json.loads(ctx.paths.summary.read_text())["stages"]
    assert stages[-1]["status"] == "failed" and "HF_TOKEN" in stages[-1]["error"]


def test_private_repo_without_token_says_check_token(tmp_path):
    with FakeHub(make_repos(), private={BYT5: TOKEN}) as hub:
        with pytest.raises(StageFailed) as e:
            download.run(make_ctx(tmp_path, hub.url))
        assert BYT5 in str(e.value) and "HF_TOKEN" in str(e.value)
        assert any(r.status == 401 for r in hub.requests)
        download.run(make_ctx(tmp_path, hub.url, HF_TOKEN=TOKEN))
        assert isinstance(try_to_load_from_cache(BYT5, "config.json", cache_dir=cache_dir(tmp_path)), str)


def test_missing_file_on_the_hub_names_repo_and_file(tmp_path):
    repos = make_repos()
    wf = catalog.weights_for("t2v")["text_encoder"]
    del repos[wf.repo_id][wf.filename]
    with FakeHub(repos) as hub:
        with pytest.raises(StageFailed) as e:
            download.run(make_ctx(tmp_path, hub.url))
        assert any(r.status == 404 for r in hub.requests)
    assert wf.repo_id in str(e.value) and wf.filename in str(e.value) and "not found" in str(e.value)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_hub_unreachable_says_run_again_and_resume(tmp_path):
    with pytest.raises(StageFailed) as e:
        download.run(make_ctx(tmp_path, _closed_port_url()))
    msg = str(e.value)
    assert "again" in msg and "resume" in msg and catalog.HV15_REPO in msg


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
    assert download.presence("t2v", ctx.settings.models_dir, ctx.env).missing == []


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


def test_server_errors_fail_the_stage_and_a_rerun_recovers(tmp_path, hub):
    hub.fail_all = True
    with pytest.raises(StageFailed) as e:
        download.run(make_ctx(tmp_path, hub.url))
    assert "again" in str(e.value)
    hub.fail_all = False
    ctx = make_ctx(tmp_path, hub.url)
    download.run(ctx)
    assert download.presence("t2v", ctx.settings.models_dir, ctx.env).missing == []


def test_dropped_connection_resumes_to_an_identical_file(tmp_path, monkeypatch):
    """A connection cut mid-file ends with an identical file, resumed with a Range request rather than fetched
    again from byte 0. huggingface_hub 0.34 does not retry a cut body inside the call (requests raises
    ChunkedEncodingError, which http_get does not catch): the stage fails with the run-again message and the next
    run resumes from the `.incomplete` part. A stage that retries by itself passes this test in one run."""
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    wf = catalog.weights_for("t2v")["vae"]
    size, cut = 1 << 20, 300_000
    with FakeHub(make_repos(big=wf.filename, big_size=size), fail_after_bytes=cut) as hub:
        try:
            download.run(make_ctx(tmp_path, hub.url))
        except StageFailed as e:
            assert "again" in str(e) and "resume" in str(e) and wf.filename in str(e)
            partial = list((tmp_path / "models" / wf.repo_id / ".cache").rglob("*.incomplete"))
            assert len(partial) == 1 and 0 < partial[0].stat().st_size <= cut
            ctx = make_ctx(tmp_path, hub.url)
            download.run(ctx)
        gets = [r for r in hub.file_requests("GET") if r.path.endswith(wf.filename)]
    assert (tmp_path / "models" / wf.repo_id / wf.filename).read_bytes() == hub.repos[wf.repo_id][wf.filename]
    assert [r.status for r in gets] == [200, 206] and gets[0].sent == cut
    start = int(gets[1].range.split("=")[1].split("-")[0])
    assert 0 < start <= cut and gets[1].sent == size - start, "resumed, not fetched again from 0"


# -- presence() and hub_cache_dir() --------------------------------------------------------------------------------

def test_presence_lists_every_missing_file(tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf")}
    p = download.presence("t2v", tmp_path / "models", env)
    assert p.present == []
    assert len(p.missing) == len(catalog.weights_for("t2v")) + len(catalog.TOKENIZERS)
    assert set(p.weights) == set(catalog.weights_for("t2v"))
    for wf in catalog.weights_for("t2v").values():
        assert any(str(wf.local_path(tmp_path / "models")) in m for m in p.missing)
    for tok in catalog.TOKENIZERS:
        assert any(tok.repo_id in m and str(cache_dir(tmp_path)) in m for m in p.missing)
    assert len(download.presence("i2v", tmp_path / "models", env).weights) == len(catalog.weights_for("i2v"))


def test_presence_counts_weight_files_on_disk(tmp_path):
    wf = catalog.weights_for("t2v")["vae"]
    path = wf.local_path(tmp_path / "models")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    p = download.presence("t2v", tmp_path / "models", {"HF_HOME": str(tmp_path / "hf")})
    assert p.present == [f"vae: {path}"]
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
        assert h["X-Linked-Etag"] == h["ETag"] == '"%s"' % FakeHub.etag("a.safetensors", b"0123456789")
        assert len(FakeHub.etag("d/b.json", b"{}")) == 40
        r = requests.get(f"{hub.url}/o/r/resolve/{commit}/a.safetensors", headers={"Range": "bytes=2-4"})
        assert (r.status_code, r.content, r.headers["Content-Range"]) == (206, b"234", "bytes 2-4/10")
        r = requests.get(f"{hub.url}/o/r/resolve/main/a.safetensors", headers={"Range": "bytes=7-"})
        assert (r.status_code, r.content) == (206, b"789")
        r = requests.get(f"{hub.url}/o/r/resolve/main/a.safetensors", headers={"Range": "bytes=-2"})
        assert (r.status_code, r.content) == (206, b"89")
        assert requests.get(f"{hub.url}/o/r/resolve/main/a.safetensors",
                            headers={"Range": "bytes=10-"}).status_code == 416
        urls = ("/o/r/resolve/main/nope", "/o/r/resolve/v9/a.safetensors", "/o/x/resolve/main/a", "/o/g/resolve/main/x")
        codes = [(r.status_code, r.headers.get("X-Error-Code")) for r in (requests.get(hub.url + u) for u in urls)]
        assert codes == [(404, "EntryNotFound"), (404, "RevisionNotFound"), (404, "RepoNotFound"),
                                        (403, "GatedRepo")]
        assert requests.get(f"{hub.url}/o/g/resolve/main/x", headers={"Authorization": "Bearer tok"}).content == b"x"
        info = requests.get(f"{hub.url}/api/models/o/r/revision/main").json()
        assert info["sha"] == commit and [s["rfilename"] for s in info["siblings"]] == ["a.safetensors", "d/b.json"]
        tree = requests.get(f"{hub.url}/api/models/o/r/tree/main/d", params={"recursive": "true"}).json()
        assert tree == [{"type": "file", "path": "d/b.json", "size": 2, "oid": FakeHub.etag("d/b.json", b"{}")}]
        hub.fail_all = True
        assert requests.get(f"{hub.url}/api/models/o/r").status_code == 500
        assert [r.auth for r in hub.requests if r.path == "/o/g/resolve/main/x"] == [False, True]
