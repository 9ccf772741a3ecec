"""Kandinsky 5 end to end: `train_local.py --model_family kandinsky5` as a subprocess through all seven stages with
the stand-in musubi (its K5 scripts parse with musubi's real parsers), then `--generate` and `--push_to_hub` of that
run. One run per module."""

from __future__ import annotations

import json

import pytest
from e2e import SMOKE, Workspace, k5_hub_repos, prefetch
from hubupload import UploadHub
from mediafactory import dataset_zip

from hvlora.compare import generate as compare
from hvlora.families.kandinsky5 import lorakeys
from hvlora.training import lorameta

TOKEN = "hf_test_write_token_k5"
K5 = ("--model_family", "kandinsky5")


@pytest.fixture(scope="module")
def ws(module_tmp):
    root = module_tmp
    with UploadHub(k5_hub_repos(), users={TOKEN: "alice"}) as hub:
        w = Workspace(root, hub)
        dataset_zip(
            root / "src",
            w.data / "set.zip",
            images={"stills/cat.png": "[trigger] sits on a red chair"},
            videos={"clips/walk.mp4": ("[trigger] walks along a beach", 9)},
        )
        prefetch(w, "t2v", *K5)
        w.first = w.train(*K5, *SMOKE, "--trigger_word", "ohwx", "--push_to_hub", "alice/k5", env={"HF_TOKEN": TOKEN})
        assert w.first.returncode == 0, w.first.stdout[-3000:] + w.first.stderr[-3000:]
        w.run = w.last_run
        yield w


def calls(w: Workspace, module: str) -> list[list[str]]:
    return [c["argv"][1:] for c in w.calls_made() if c["module"] == module]


def test_kandinsky5_trains_through_every_stage_and_publishes_the_checked_musubi_file(ws):
    out = ws.first.stdout
    for i, title in ((1, "download weights"), (4, "cache latents"), (6, "train LoRA"), (7, "check the LoRA")):
        assert f"[{i}/7] {title}: done in" in out
    assert "[7/7] check the LoRA: done in" in out and "convert to ComfyUI" not in out
    assert "key check: 332 modules (996 keys), rank 4, none missing; ComfyUI loads this file as it is" in out
    assert (ws.output / "lora.safetensors").is_file() and not (ws.output / "lora_comfyui.safetensors").exists()
    lora = ws.run / "checkpoints" / "lora.safetensors"
    assert lorakeys.verify(lora, "lite-sft-5s")["musubi_keys"] == 996
    md = lorameta.read_metadata(lora)
    assert md["hvlora.model_family"] == "kandinsky5" and md["hvlora.dit_variant"] == "lite-sft-5s"
    assert md["ss_base_model_version"] == "kandinsky5" and md["modelspec.architecture"] == "Kandinsky-5/lora"
    assert (
        md["hvlora.base_model"]
        == "kandinskylab/Kandinsky-5.0-T2V-Lite-sft-5s/model/kandinsky5lite_t2v_sft_5s.safetensors"
    )
    stages = {s["name"]: s for s in ws.summary(ws.run)["stages"]}
    assert stages["convert"]["musubi_modules"] == 332 and stages["convert"]["status"] == "ok"
    # musubi got the folders, the task and K5's flags; the captions were cached with the image template
    (te,) = calls(ws, "kandinsky5_cache_text_encoder_outputs")
    assert te[te.index("--text_encoder_qwen") + 1].endswith("models/Qwen/Qwen2.5-VL-7B-Instruct")
    (train,) = calls(ws, "kandinsky5_train_network")
    assert train[train.index("--task") + 1] == "k5-lite-t2v-5s-sd"
    log = (ws.run / "logs" / "cache_text_encoder_outputs.log").read_text()
    assert "prompt template: image" in log and "prompt template: video" not in log
    assert list((ws.run / "cache").rglob("*_k5_te.safetensors")) and list((ws.run / "cache").rglob("*_k5.safetensors"))


def test_the_upload_has_no_comfyui_file_and_a_kandinsky_card(ws):
    files = {p for p in ws.hub.files("alice/k5") if p != ".gitattributes"}
    assert files == {"lora.safetensors", "loss.png", "README.md"}
    readme = ws.hub.files("alice/k5")["README.md"].decode()
    assert "base_model: kandinskylab/Kandinsky-5.0-T2V-Lite-sft-5s" in readme and "license: mit" in readme
    assert "_comfyui" not in readme and "LoraLoaderModelOnly" in readme


def test_generate_on_the_cpu_is_refused_before_anything_loads(ws):
    r = ws.train(*K5, "--generate", "--resume", str(ws.run), "--device", "cpu", "--prompt", "ohwx walks")
    assert r.returncode == 2 and "runs only on a CUDA GPU" in r.stderr and "mat1 and mat2" in r.stderr
    assert not calls(ws, "kandinsky5_generate_video")


def test_generate_runs_k5s_generator_once_per_prompt_for_base_and_lora(ws, make_settings, monkeypatch):
    """compare.run in-process with --device cuda (no GPU here: the stand-in needs none; pipeline's GPU check is
    what the CLI adds)."""
    for key, value in ws.env().items():
        monkeypatch.setenv(key, value)
    s = make_settings(*K5, "--generate", "--resume", str(ws.run), "--device", "cuda", "--prompt", "ohwx walks",
                      "--prompt", "ohwx sits", "--video_size", "64x64", "--video_length", "5", "--infer_steps", "2",
                      "--models_dir", str(ws.models))  # fmt: skip
    compare.run(s)
    gens = calls(ws, "kandinsky5_generate_video")
    assert len(gens) == 4 and sum("--lora_weight" in g for g in gens) == 2
    first = gens[0]
    assert first[first.index("--frames") + 1] == "2" and first[first.index("--task") + 1] == "k5-lite-t2v-5s-sd"
    folder = max((ws.run / "compare").iterdir())
    record = json.loads((folder / "compare.json").read_text())
    assert len(record["items"]) == 2 and all(row["difference"] > 0 for row in record["items"])
    assert (folder / "sheet.png").is_file()


def test_a_k5_generator_run_on_the_cpu_is_explained(tmp_path):
    from hvlora.compare.generate import _why
    from hvlora.families.kandinsky5 import generate as gen

    log = tmp_path / "generate_base.log"
    log.write_text("RuntimeError: mat1 and mat2 must have the same dtype, but got Float and BFloat16\n")
    assert "cannot start without a CUDA GPU" in _why(gen, log, "exit 1") and "autocast on CUDA only" in _why(
        gen, log, "x"
    )
