"""Kandinsky 5 (families/kandinsky5): choosing it and its variants, its weights (a model folder whose Qwen2.5-VL
weights are HunyuanVideo 1.5's single file, linked after a header check), cache keys, frame and sample rules, memory
presets and estimates, the LoRA key check, the generator's commands and the model card, checked against musubi's own
parsers (captured) and real files. The end-to-end run with the stand-in is in test_kandinsky5_e2e.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from e2e import QWEN_TENSORS, k5_hub_repos
from hubserver import FakeHub

from hvlora import families
from hvlora.cache import caches
from hvlora.compare.job import GenerateJob, Inference
from hvlora.core.errors import ConfigError, UserError
from hvlora.families import LoraCheckError
from hvlora.families.hunyuan_video_1_5 import catalog as hv_catalog
from hvlora.families.kandinsky5 import card, catalog, generate, lorakeys, memory, musubi
from hvlora.stages import download
from hvlora.training import plan as run_plan
from hvlora.training import prompts
from hvlora.training.musubi import TrainSegment
from hvlora.training.plan import Launch
from hvlora.weights.files import WeightFolder

sys.path.insert(0, str(Path(__file__).resolve().parent / "standin"))
from musubi_tuner import _flags  # noqa: E402

K5 = families.get("kandinsky5")


def parse(cmd):
    return _flags.build_parser(cmd.module).parse_args(list(cmd.argv))


def k5(make_settings, *flags):
    return make_settings("--model_family", "kandinsky5", *flags)


# --- choosing it ------------------------------------------------------------------------------------------------------


def test_every_variant_maps_to_a_task_of_musubis_table(make_settings):
    table = next(
        a["choices"] for a in _flags.module_spec("kandinsky5_generate_video")["actions"] if a["dest"] == "task"
    )
    mapped = {(t, v): catalog.musubi_task(t, v) for v in catalog.DIT_VARIANTS for t in catalog.VARIANTS[v].tasks}
    assert set(mapped.values()) <= set(table)
    assert mapped[("t2v", "lite-sft-5s")] == "k5-lite-t2v-5s-sd" and mapped[("i2v", "pro-sft-5s")] == "k5-pro-i2v-5s-sd"
    assert mapped[("t2v", "lite-pretrain-10s")] == "k5-lite-t2v-10s-pretrain-sd"
    assert mapped[("t2v", "pro-pretrain-5s")] == "k5-pro-t2v-5s-sd"  # Pro: one task per length, any checkpoint
    s = k5(make_settings)
    assert (s.dit_variant, s.resolution, s.task) == ("lite-sft-5s", (768, 512), "t2v")  # the family's defaults
    dit = K5.weights_for("t2v", s.dit_variant)["dit"]
    assert (dit.repo_id, dit.filename) == (
        "kandinskylab/Kandinsky-5.0-T2V-Lite-sft-5s",
        "model/kandinsky5lite_t2v_sft_5s.safetensors",
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--dit_variant", "lite-distilled16steps-5s"), "step-distilled .* Train lite-sft-5s"),
        (("--dit_variant", "lite-nocfg-10s"), "CFG-distilled .* Train lite-sft-10s"),
        (("--dit_variant", "lite-t2i"), "image model .*Image Lite models are not supported"),
        (("--task", "i2v"), "I2V is trained with the Pro I2V DiT .*use --dit_variant pro-sft-5s"),
        (("--task", "i2v", "--dit_variant", "pro-pretrain-5s"), "use --dit_variant pro-sft-5s"),
        (("--dit_variant", "t2v-lite-sft-5s"), "SimpleTuner's model_flavour.*--task t2v --dit_variant lite-sft-5s"),
        (("--dit_variant", "720p"), "'720p' is not a Kandinsky 5 DiT; use one of lite-sft-5s"),
        # musubi's --task names, in our terms
        (
            ("--dit_variant", "k5-pro-t2v-5s-sd"),
            "musubi's --task name: here it is --task t2v --dit_variant pro-sft-5s or "
            "--task t2v --dit_variant pro-pretrain-5s",
        ),
        (("--dit_variant", "k5-lite-t2v-5s-distil-sd"), "musubi's --task name: a step-distilled .* Train lite-sft-5s"),
        (("--dit_variant", "k5-pro-t2v-5s-hd"), "musubi's --task name: not one this trainer offers"),
        (("--vram", "16", "--dit_variant", "pro-sft-5s"), "vram: Kandinsky 5 Pro has presets 24, 32, 48, 80, not 16"),
        (("--blocks_to_swap", "32"), "blocks_to_swap: 32 is outside 0..31"),
        (("--fp8_vl",), "unknown memory setting"),
        (("--resolution", "770x512"), "multiples of 16"),
    ],
)
def test_what_musubi_cannot_train_is_refused_with_the_reason(make_settings, flags, message):
    with pytest.raises(ConfigError, match=message):
        s = k5(make_settings, *flags)
        run_plan.make(s, {(768, 512, 25): 1}, gpus=[])  # knobs are resolved with the plan


def test_hunyuan_video_refuses_the_kandinsky_knob(make_settings):
    with pytest.raises(ConfigError, match="unknown memory setting.*text_encoder_cpu"):
        run_plan.make(make_settings("--text_encoder_cpu"), {(960, 544, 25): 1}, gpus=[])


# --- weights: a folder, its files, Qwen2.5-VL stored once -------------------------------------------------------------


def test_the_qwen_folder_stands_on_hunyuan_video_1_5s_single_file():
    entries = K5.weights_for("t2v", "lite-sft-5s")
    qwen, clip = entries["text_encoder"], entries["text_encoder_clip"]
    assert isinstance(qwen, WeightFolder) and isinstance(clip, WeightFolder)
    hv_qwen = hv_catalog.weights_for("t2v", "720p")["text_encoder"]
    assert qwen.shared.key == hv_qwen.key  # one file on disk for both families
    assert "model.safetensors.index.json" in qwen.files and not any(f.startswith("model-") for f in qwen.files)
    assert len(qwen.shards) == 5 and {p.filename for p in qwen.parts()} >= {"config.json", hv_qwen.filename}
    assert "model.safetensors" in clip.files and "pytorch_model.bin" not in clip.files
    assert entries["vae"].repo_id == "hunyuanvideo-community/HunyuanVideo"


def fetch(tmp_path, make_settings, make_ctx, hub, *flags):
    s = k5(make_settings, *flags)
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1"}
    ctx = make_ctx(s, env)
    return s, ctx, download.run(ctx)


def test_download_links_the_shared_file_into_the_folder_and_fetches_no_shard(tmp_path, make_settings, make_ctx):
    with FakeHub(k5_hub_repos()) as hub:
        s, ctx, info = fetch(tmp_path, make_settings, make_ctx, hub)
        folder = ctx.weights["text_encoder"]
        shared = s.models_dir / catalog.COMFY_QWEN_REPO / catalog.QWEN_SINGLE_FILE
        link = folder / "model.safetensors"
        assert link.is_symlink() and os.path.samefile(link, shared)
        assert not os.path.isabs(os.readlink(link))  # relative: MODELS_DIR may be mounted elsewhere
        assert not list(folder.glob("model-0000*"))
        gets = [r.path for r in hub.requests if r.method == "GET" and r.sent]
        assert not [p for p in gets if "model-0000" in p]
        assert "symbolic link" in info["shared"]["text_encoder"]
        assert info["files"]["text_encoder/qwen_2.5_vl_7b.safetensors"]["path"] == str(shared)
        assert (ctx.weights["text_encoder_clip"] / "model.safetensors").is_file()
        assert catalog.qwen_folder().state_dict_file(s.models_dir) == link  # what the captioner loads
        # again: every file is verified from the manifest, the link stays, nothing is fetched
        before = len(hub.requests)
        fetch(tmp_path, make_settings, make_ctx, hub)
        assert not [r for r in hub.requests[before:] if r.method == "GET" and r.sent]
        # offline: the folder and its link pass the check
        fetch(tmp_path, make_settings, make_ctx, hub, "--offline")
        link.unlink()
        with pytest.raises(UserError, match="model-00001-of-00005.safetensors"):
            fetch(tmp_path, make_settings, make_ctx, hub, "--offline")  # no link: the shards would be needed


@pytest.mark.parametrize(
    ("metadata", "names", "why"),
    [
        ({"format": "tf"}, QWEN_TENSORS, "format 'tf', which transformers refuses"),
        ({"format": "pt"}, QWEN_TENSORS[:-1], "holds 2 tensors, model.safetensors.index.json lists 3"),
    ],
)
def test_a_shared_file_that_cannot_stand_in_brings_the_repos_own_shards(
    tmp_path, make_settings, make_ctx, metadata, names, why
):
    with FakeHub(k5_hub_repos(metadata, names)) as hub:
        s, ctx, info = fetch(tmp_path, make_settings, make_ctx, hub)
    folder = ctx.weights["text_encoder"]
    assert not (folder / "model.safetensors").exists() and len(list(folder.glob("model-0000*"))) == 5
    # the captioner's loader (load_split_weights) reads every shard from the first one's name
    assert catalog.qwen_folder().state_dict_file(s.models_dir) == folder / "model-00001-of-00005.safetensors"
    assert why in info["shared"]["text_encoder"]
    assert why in ctx.paths.log("download").read_text()


# --- caches -----------------------------------------------------------------------------------------------------------


def keys(s, **knobs):
    m = run_plan.make(s, {(768, 512, 25): 1}, gpus=[]).memory
    return caches.key_settings(s, m, K5.latent_cache), caches.key_settings(s, m, K5.text_encoder_cache)


def test_cache_keys_count_what_changes_musubis_files(make_settings):
    lat, te = keys(k5(make_settings))
    assert te["derived"] == {"qwen_max_length": 256, "clip_max_length": 77, "template": "image"}
    assert {w.split("@")[0].rsplit("/", 1)[-1] for w in te["weights"]} >= {"config.json", "qwen_2.5_vl_7b.safetensors"}
    assert "text_encoder_cpu" not in te and lat["derived"] == {"nabla_resize": False}
    # the text-encoder cache does not depend on the task or the DiT: Pro i2v and Lite t2v share it
    assert keys(k5(make_settings, "--task", "i2v", "--dit_variant", "pro-sft-5s"))[1] == te
    # the same bf16 Qwen2.5-VL moved to the CPU to fit: its outputs serve a run that encodes on the GPU and back
    assert keys(k5(make_settings, "--text_encoder_cpu"))[1] == te
    lat10, _ = keys(k5(make_settings, "--dit_variant", "lite-sft-10s"))
    assert lat10["derived"] == {"nabla_resize": True} and lat10 != lat
    assert keys(k5(make_settings, "--dit_variant", "lite-pretrain-5s"))[0] == lat  # same VAE, same latents


# --- musubi argv ------------------------------------------------------------------------------------------------------


def commands(s, preset=None, sampling=False):
    weights = {c: w.local_path(s.models_dir) for c, w in K5.weights_for(s.task, s.dit_variant).items()}
    mem = K5.memory_for(s.dit_variant).resolve(preset, {})
    seg = TrainSegment(Path("/r"), Path("/t"), 5, 5, sample_prompts=Path("/p.txt") if sampling else None)
    cfg = Path("/d.toml")
    return (
        musubi.cache_latents(s, cfg, weights, mem),
        musubi.cache_text_encoder_outputs(s, cfg, weights, mem),
        musubi.train(s, cfg, weights, seg, mem, Launch(1, 1)),
    )


def test_commands_say_what_musubis_k5_scripts_need(make_settings):
    s = k5(make_settings, "--device", "cuda")
    lat, te, train = (parse(c) for c in commands(s, 16, sampling=True))
    assert te.text_encoder_qwen == str(s.models_dir / "Qwen/Qwen2.5-VL-7B-Instruct") and te.device == "cpu"
    assert te.qwen_max_length == 256 and te.clip_max_length == 77 and not lat.nabla_resize
    assert train.task == "k5-lite-t2v-5s-sd" and train.network_module == "networks.lora_kandinsky"
    assert (train.timestep_sampling, train.discrete_flow_shift) == ("shift", 5.0)
    assert train.offload_dit_during_sampling and train.text_encoder_clip and train.vae  # samples load them
    assert parse(commands(s, 24)[1]).device == "cuda"  # 24 GB: Qwen2.5-VL fits on the GPU
    pro = parse(commands(k5(make_settings, "--task", "i2v", "--dit_variant", "pro-sft-5s"), 24)[2])
    assert pro.task == "k5-pro-i2v-5s-sd" and pro.fp8_base and pro.fp8_scaled and pro.blocks_to_swap == 40
    assert parse(commands(k5(make_settings, "--dit_variant", "pro-sft-10s"))[0]).nabla_resize


# --- frames, buckets, samples -----------------------------------------------------------------------------------------


def test_samples_use_latent_frames_and_the_guidance_key_k5_reads(make_settings, make_ctx, tmp_path):
    from mediafactory import dataset_zip

    from hvlora.core import pipeline

    zip_path = tmp_path / "data" / "d.zip"
    dataset_zip(tmp_path / "src", zip_path, images={"a.png": "a cat"}, videos={"v.mp4": ("a walk", 30)})
    s = k5(
        make_settings, "--dry_run", "--resolution", "128x128", "--target_frames", "1,17", "--sample_every_n_steps", "5"
    )
    ctx = pipeline.run(s)
    (first, *_) = prompts.read(ctx.paths.root / "sample_prompts.json")
    assert (first["frame_count"], first["sample_steps"], first["guidance_scale"]) == (5, 50, 5.0)
    assert "cfg_scale" not in first and "discrete_flow_shift" not in first
    assert all(n.endswith("_k5.safetensors") for f in ctx.data.planned for n in f.cache_files)
    assert all(e.view_name.endswith("_k5_te.safetensors") for e in ctx.caches.te)
    plan = json.loads(ctx.paths.plan.read_text())
    assert [st["module"].rsplit(".", 1)[1] for st in plan["stages"]] == [
        "kandinsky5_cache_latents",
        "kandinsky5_cache_text_encoder_outputs",
        "kandinsky5_train_network",
    ]  # fmt: skip  (no converter: nothing planned for stage 7)


def test_k5_sample_files_are_read_by_their_own_names():
    parse_name = K5.samples.parse_name
    assert parse_name("sample_000010_01.mp4", "lora") == ("step", 10, 1)
    assert parse_name("sample_000010_01.png", None) == ("step", 10, 1)
    assert parse_name("lora_000010_01_20260101120000_42.mp4", "lora") is None


# --- memory -----------------------------------------------------------------------------------------------------------


def test_lite_fits_small_cards_and_pro_needs_fp8_and_swap():
    lite, pro = memory.LITE_MODEL, memory.PRO_MODEL
    assert lite.presets == (12, 16, 24, 32, 48, 80) and pro.presets == (24, 32, 48, 80)
    for model, presets in ((lite, lite.presets), (pro, pro.presets)):
        for p in presets:  # each preset's estimate at 768x512x25 stays under ~92% of its card
            est = model.estimate(model.resolve(p, {}), (768, 512, 25), 32, "adamw8bit")
            assert est.peak_vram_gb < 0.92 * p, (model.title, p, est.peak_vram_gb)
    assert lite.estimate(lite.resolve(None, {}), (768, 512, 25), 32, "adamw8bit").peak_vram_gb < 11
    bf16 = pro.estimate(pro.resolve(None, {}), (768, 512, 25), 32, "adamw8bit")
    assert bf16.parts["dit_weights"] > 40 and bf16.host_ram_gb > 43  # the whole 43.4 GB file in RAM while loading
    # musubi PR #774: Pro on a 24 GB 3090 with 10 blocks swapped, 256p/17-frame videos and 512p images
    anchor = pro.resolve(None, {"fp8": True, "blocks_to_swap": 10})
    for bucket in ((256, 256, 17), (512, 512, 1)):
        assert pro.estimate(anchor, bucket, 16, "adamw8bit").peak_vram_gb < 23.5
    assert memory.LITE.lora_modules() == 332 and memory.PRO.lora_modules() == 624
    # Qwen2.5-VL in bf16 does not fit 16 GB: the 16 GB preset encodes on the CPU
    te16 = lite.cache_estimates(lite.resolve(16, {}))["cache_text_encoder_outputs"]
    te24 = lite.cache_estimates(lite.resolve(24, {}))["cache_text_encoder_outputs"]
    assert te16.peak_vram_gb < 1 and te16.host_ram_gb > 15 and 16 < te24.peak_vram_gb < 22


# --- the LoRA key check -----------------------------------------------------------------------------------------------


def lora_file(path: Path, dit: memory.Dit, rank: int = 4, drop: int = 0) -> Path:
    sd = {}
    for name, (fan_in, fan_out) in list(lorakeys.layout(dit).items())[drop:]:
        sd[f"{name}.lora_down.weight"] = np.zeros((rank, fan_in), np.float16)
        sd[f"{name}.lora_up.weight"] = np.zeros((fan_out, rank), np.float16)
        sd[f"{name}.alpha"] = np.array(rank, np.float16)
    safetensors.numpy.save_file(sd, str(path))
    return path


def test_the_key_check_knows_lite_and_pro(tmp_path):
    lite = lora_file(tmp_path / "lite.safetensors", memory.LITE)
    assert lorakeys.verify(lite, "lite-sft-5s") == {"rank": 4, "musubi_modules": 332, "musubi_keys": 996}
    assert "lora_unet_visual_transformer_blocks_31_cross_attention_out_layer" in lorakeys.layout(memory.LITE)
    with pytest.raises(LoraCheckError, match="1872 key|missing lora_unet_text_transformer_blocks_2"):
        lorakeys.verify(lite, "pro-sft-5s")
    with pytest.raises(LoraCheckError, match="1 key\\(s\\) missing|3 key\\(s\\) missing"):
        lorakeys.verify(lora_file(tmp_path / "cut.safetensors", memory.LITE, drop=1), "lite-sft-5s")
    assert generate.check_lora(lite) == 332
    with pytest.raises(UserError, match="not a Kandinsky 5 LoRA"):
        generate.check_lora(lora_file(tmp_path / "cut2.safetensors", memory.LITE, drop=3))
    with pytest.raises(UserError, match="not a readable safetensors|missing"):
        generate.check_lora(tmp_path / "none.safetensors")


# --- the generator ----------------------------------------------------------------------------------------------------


def test_generator_runs_once_per_prompt_line_with_latent_frames(make_settings, tmp_path):
    s = k5(make_settings, "--dit_variant", "pro-sft-5s", "--task", "i2v", "--vram", "24")
    mem = generate.plan_memory(s, None, (768, 512, 17), "i2v")
    assert (mem.dit, mem.fp8, mem.blocks_to_swap) == ("pro", True, 40)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# header\nohwx walks --d 7 --i /img.png\nohwx sits --d 8 --w 256 --h 256 --f 1 --n blurry\n")
    files = {c: w.local_path(s.models_dir) for c, w in K5.weights_for("i2v", "pro-sft-5s").items()}
    job = GenerateJob("i2v", "cuda", prompts, tmp_path / "lora", Inference(768, 512, 17, 50, 5.0, 10.0, 0.8),
                      Path("/first.png"), mem, None, "pro-sft-5s")  # fmt: skip
    cmds = generate.commands(job, files, Path("/l.safetensors"))
    a, b = (parse(c) for c in cmds)
    assert a.task == "k5-pro-i2v-5s-sd" and a.frames == 5 and a.seed == 7 and a.image == "/img.png"
    assert a.output.endswith("00_seed7.mp4") and a.lora_multiplier == [0.8] and a.fp8_base and a.blocks_to_swap == 40
    assert (b.frames, b.width, b.negative_prompt, b.image) == (1, 256, "blurry", "/first.png")
    assert b.output.endswith("01_seed8.png")  # one frame: musubi saves an image
    base = generate.commands(job, files, None)
    assert all("--lora_weight" not in c.argv for c in base) and len(base) == 2
    log = "Saved video to /x/00_seed7.mp4 and first frame to /x/00_seed7.png\nSaved image to /x/01_seed8.png\n"
    assert generate.saved_videos(log) == [Path("/x/00_seed7.mp4"), Path("/x/01_seed8.png")]
    est = generate.estimate(generate.plan_memory(k5(make_settings, "--vram", "16"), None, (768, 512, 17), "t2v"),
                            (768, 512, 17), "t2v")  # fmt: skip
    assert est.peak_at == "encoding the prompts" and est.peak_vram_gb > 16  # Qwen2.5-VL stays on the GPU here


# --- the model card ---------------------------------------------------------------------------------------------------


def test_the_card_names_the_loras_own_base_model_and_mit():
    assert card.card_data("t2v", "pro-sft-10s")["base_model"] == "kandinskylab/Kandinsky-5.0-T2V-Pro-sft-10s"
    data = card.card_data("i2v", "pro-sft-5s")
    assert data["base_model"] == "kandinskylab/Kandinsky-5.0-I2V-Pro-sft-5s" and data["license"] == "mit"
    assert data["pipeline_tag"] == "image-to-video" and "kandinsky-5-pro" in data["tags"]
    assert "LoraLoaderModelOnly" in card.usage("ohwx", "ohwx", "t2v", "the DiT")
    # musubi's command on the card uses the --task of the LoRA's own DiT (was always Lite's)
    pro_i2v = "`kandinskylab/Kandinsky-5.0-I2V-Pro-sft-5s/model/kandinsky5pro_i2v_sft_5s.safetensors`"
    assert "--task k5-pro-i2v-5s-sd " in card.usage("ohwx", "ohwx", "i2v", pro_i2v)
    assert "--task k5-lite-t2v-5s-sd " in card.usage("ohwx", "ohwx", "t2v", "the DiT")
