"""hvlora.training.presets with HunyuanVideo 1.5's numbers (families/hunyuan_video_1_5/memory.py): preset choice, plan resolution, musubi flags (checked against musubi's real parsers) and the
memory estimates' arithmetic and anchors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hvlora.families.hunyuan_video_1_5 import memory as presets
from hvlora.families.hunyuan_video_1_5.memory import (
    MAX_BLOCKS_TO_SWAP,
    MODEL,
    PRESET_TABLE,
    PRESETS,
    cache_estimates,
    estimate,
    fits,
    lora_params,
    musubi_flags,
    optimizer_state_bytes,
    preset_for_vram,
    preset_warning,
    resolve,
    tokens,
)
from hvlora.training.presets import CARD_MIB, GIB, KNOBS

FLAGS_JSON = Path(__file__).parent / "standin" / "musubi_flags.json"
MODULES = {
    "cache_latents": "musubi_tuner.hv_1_5_cache_latents",
    "cache_text_encoder_outputs": "musubi_tuner.hv_1_5_cache_text_encoder_outputs",
    "train": "musubi_tuner.hv_1_5_train_network",
}
DEFAULT_BUCKET = (960, 544, 25)
ROOT = Path(__file__).resolve().parent.parent
SHAPES = [(960, 544, 25), (848, 480, 61), (960, 544, 1)]


def musubi_actions() -> dict[str, dict[str, dict]]:
    """short module name -> option string -> the argparse action as dumped from musubi's parser."""
    modules = json.loads(FLAGS_JSON.read_text())["modules"]
    return {
        short: {opt: a for a in modules[full]["actions"] for opt in a["option_strings"]}
        for short, full in MODULES.items()
    }


ACTIONS = musubi_actions()


# --- tokens and model arithmetic -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("w", "h", "f", "n"),
    [(960, 544, 25, 14_280), (848, 480, 121, 49_290), (1280, 720, 121, 111_600), (960, 544, 1, 2_040)],
)
def test_tokens(w, h, f, n):
    assert tokens(w, h, f) == n


def test_tokens_rejects_empty_sizes():
    with pytest.raises(ValueError, match="must be >= 1"):
        tokens(960, 0, 25)


def test_lora_params_counted_module_by_module():
    # per stream: q, k, v, proj 2048->2048; fc1 2048->8192; fc2 8192->2048; modulation 2048->12288 (6 x hidden)
    per_stream = 4 * (2048 + 2048) + (2048 + 8192) + (8192 + 2048) + (2048 + 6 * 2048)
    assert presets.LORA_MODULES == 54 * 2 * 7 == 756
    assert lora_params(32) == 32 * per_stream * 2 * 54 == 176_947_200
    with pytest.raises(ValueError):
        lora_params(0)


def test_block_params_match_the_model_size():
    assert presets.BLOCK_LINEAR_WEIGHTS == 150_994_944
    assert 151e6 < presets.BLOCK_PARAMS < 151.1e6  # "about 151M per block"
    assert 0 < presets.NON_BLOCK_PARAMS < 0.25e9  # embedders, refiner, final layer
    bf16_block, bf16_rest = presets.dit_weight_bytes(fp8=False)
    assert 54 * bf16_block + bf16_rest == presets.DIT_PARAMS * 2  # every parameter in bf16
    fp8_block, fp8_rest = presets.dit_weight_bytes(fp8=True)
    assert fp8_rest == bf16_rest and fp8_block < 0.52 * bf16_block


def test_optimizer_states():
    n = lora_params(32)
    assert optimizer_state_bytes("adamw", 32) == 8 * n
    assert optimizer_state_bytes("AdamW8bit", 32) == 2 * n
    # factored: a row and a column vector per LoRA matrix (down: rank x in, up: out x rank)
    assert optimizer_state_bytes("AdaFactor", 32) == 4 * (5_529_600 + 2 * 32 * 756)
    assert optimizer_state_bytes("AdaFactor", 32) < optimizer_state_bytes("adamw8bit", 32) / 10
    with pytest.raises(ValueError, match="Muon"):
        optimizer_state_bytes("Muon", 32)


# --- preset choice ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total_gib", "preset"),
    [
        (23.99, 24),  # RTX 4090 (24,564 MiB)
        (24.0, 24),  # RTX 3090
        (23.5, 24),  # a "24 GB" card with some reserved
        (15.6, 16),  # RTX 4060 Ti 16GB
        (31.4, 32),  # RTX 5090
        (39.4, 32),  # A100 40GB
        (44.4, 32),  # L40S, ECC on: 7.5% short of 48, and preset 48 is sized for ~45 GiB of bf16 work
        (47.99, 48),  # RTX A6000
        (79.6, 80),  # H100 80GB
        (139.8, 80),  # H200
        (12.0, 16),  # too small: still 16, with a warning
        (0.0, 16),
    ],
)
def test_preset_for_vram(total_gib, preset):
    assert preset_for_vram(total_gib) == preset


def test_preset_warning_only_below_the_smallest_preset():
    assert "12.0 GB" in preset_warning(12.0)
    assert preset_warning(15.6) is None and preset_warning(80) is None
    with pytest.raises(ValueError):
        preset_for_vram(float("nan"))


def test_preset_table_has_every_preset_and_only_knobs():
    assert set(PRESET_TABLE) == set(PRESETS)
    for row in PRESET_TABLE.values():
        assert set(row) <= set(KNOBS)


# --- resolve ---------------------------------------------------------------------------------------------------------


def test_no_preset_means_musubi_defaults():
    plan = resolve(None, {})
    assert (plan.fp8, plan.blocks_to_swap, plan.block_swap_h2d_only, plan.fp8_vl) == (False, 0, False, False)
    assert plan.vae_sample_size is None and not plan.vae_enable_patch_conv
    assert not plan.gradient_checkpointing_cpu_offload
    assert plan.sources == dict.fromkeys(KNOBS, "default")
    assert musubi_flags(plan) == {"cache_latents": [], "cache_text_encoder_outputs": [], "train": []}


def test_preset_values_and_sources():
    plan = resolve(16, {})
    assert plan.preset == 16 and plan.fp8 and plan.blocks_to_swap == 36 and plan.block_swap_h2d_only
    assert not plan.gradient_checkpointing_cpu_offload and plan.fp8_vl and plan.vae_enable_patch_conv
    assert {plan.sources[k] for k in MODEL.knobs if k != "gradient_checkpointing_cpu_offload"} == {"preset 16"}
    assert resolve(80, {}).sources["block_swap_h2d_only"] == "default"


def test_user_knobs_win_and_are_labelled():
    plan = resolve(24, {"blocks_to_swap": 20, "fp8_vl": False}, origin={"fp8_vl": "train.toml"})
    assert plan.blocks_to_swap == 20 and plan.sources["blocks_to_swap"] == "--blocks_to_swap"
    assert plan.fp8_vl is False and plan.sources["fp8_vl"] == "train.toml"
    assert plan.fp8 and plan.sources["fp8"] == "preset 24"


def test_user_fp8_turns_fp8_vl_on_as_the_readme_says():
    plan = resolve(None, {"fp8": True})
    assert plan.fp8_vl and plan.sources["fp8_vl"] == "--fp8"
    assert not resolve(None, {"fp8": True, "fp8_vl": False}).fp8_vl


def test_swap_zero_drops_a_presets_h2d_only():
    plan = resolve(16, {"blocks_to_swap": 0})
    assert plan.blocks_to_swap == 0 and not plan.block_swap_h2d_only
    assert "--blocks_to_swap" in plan.sources["block_swap_h2d_only"]
    assert "--block_swap_h2d_only" not in musubi_flags(plan)["train"]


@pytest.mark.parametrize(
    ("preset", "user", "match"),
    [
        (None, {"block_swap_h2d_only": True}, "blocks_to_swap is 0 \\(default\\)"),
        (80, {"block_swap_h2d_only": True}, "add --blocks_to_swap N"),
        (24, {"block_swap_h2d_only": True, "blocks_to_swap": 0}, "blocks_to_swap is 0"),
        (None, {"blocks_to_swap": 52}, "at most 51"),
        (None, {"blocks_to_swap": -1}, "at most 51"),
        (None, {"blocks_to_swap": True}, "whole number"),
        (None, {"blocks_to_swap": "20"}, "whole number"),
        (None, {"fp8": "yes"}, "true or false"),
        (None, {"vae_sample_size": 100}, "multiple of 16"),
        (None, {"vae_sample_size": -128}, "tile size"),
        (None, {"resolution": "960x544"}, "unknown memory setting"),
        (20, {}, "unknown VRAM preset"),
    ],
)
def test_impossible_or_bad_settings_raise(preset, user, match):
    with pytest.raises(ValueError, match=match):
        resolve(preset, user)


# --- musubi flags ------------------------------------------------------------------------------------------------------


def test_musubi_flags_of_preset_24():
    assert musubi_flags(resolve(24, {})) == {
        "cache_latents": ["--vae_sample_size", "256"],
        "cache_text_encoder_outputs": ["--fp8_vl"],
        "train": ["--fp8_base", "--fp8_scaled", "--blocks_to_swap", "16", "--block_swap_h2d_only"],
    }


def test_musubi_flags_with_sampling_give_train_the_encoder_and_vae_flags():
    flags = musubi_flags(resolve(16, {}), sampling=True)["train"]
    assert flags[-4:] == ["--fp8_vl", "--vae_sample_size", "128", "--vae_enable_patch_conv"]
    assert "--gradient_checkpointing_cpu_offload" not in flags


def test_cpu_offload_and_h2d_only_swap_never_reach_musubi_together():
    """musubi v0.3.4 stops at the first step with both (measured on an H200: benchmarks/results/h200-2026-12-04/
    preset16-crash.txt): the user's offload turns a preset's H2D-only streaming off, and saying so; both from the user
    is refused before anything loads; no preset row has both."""
    plan = resolve(24, {"gradient_checkpointing_cpu_offload": True})
    assert plan.gradient_checkpointing_cpu_offload and not plan.block_swap_h2d_only and plan.blocks_to_swap == 16
    assert plan.sources["block_swap_h2d_only"].startswith("off: musubi v0.3.4 stops at the first step")
    assert "--block_swap_h2d_only" not in musubi_flags(plan)["train"]
    with pytest.raises(ValueError, match="--gradient_checkpointing_cpu_offload and --block_swap_h2d_only cannot"):
        resolve(None, {"blocks_to_swap": 8, "block_swap_h2d_only": True, "gradient_checkpointing_cpu_offload": True})
    plan = resolve(16, {"block_swap_h2d_only": False, "gradient_checkpointing_cpu_offload": True})
    assert plan.gradient_checkpointing_cpu_offload and not plan.block_swap_h2d_only
    for preset in PRESETS:
        plan = resolve(preset, {})
        assert not (plan.gradient_checkpointing_cpu_offload and plan.block_swap_h2d_only), preset


def assert_parses(module: str, argv: list[str]) -> None:
    """Every option of argv exists in musubi's parser of module, with a value exactly when it takes one."""
    actions, i = ACTIONS[module], 0
    while i < len(argv):
        opt = argv[i]
        assert opt in actions, f"{opt} is not a flag of {MODULES[module]}"
        action = actions[opt]
        if action["action"] == "store_true":
            i += 1
        else:
            assert action["action"] == "store" and action["type"] == "int", (module, opt, action)
            int(argv[i + 1])
            i += 2


def all_plans():
    yield from (resolve(p, {}) for p in (None, *PRESETS))
    every = {k: True for k in MODEL.knobs if k not in ("blocks_to_swap", "vae_sample_size")} | {"blocks_to_swap": 51}
    yield resolve(None, every | {"gradient_checkpointing_cpu_offload": False})
    yield resolve(None, every | {"block_swap_h2d_only": False})
    yield resolve(None, {"vae_sample_size": 0})


@pytest.mark.parametrize("sampling", [False, True])
def test_every_flag_a_plan_emits_is_in_musubis_parser_for_that_module(sampling):
    seen = set()
    for plan in all_plans():
        flags = musubi_flags(plan, sampling=sampling)
        assert set(flags) == set(MODULES)
        for module, argv in flags.items():
            assert_parses(module, argv)
            seen |= {(module, a) for a in argv if a.startswith("--")}
    expected = {
        ("train", f)
        for f in (
            "--fp8_base",
            "--fp8_scaled",
            "--blocks_to_swap",
            "--block_swap_h2d_only",
            "--gradient_checkpointing_cpu_offload",
        )
    } | {("cache_text_encoder_outputs", "--fp8_vl"), ("cache_latents", "--vae_sample_size")}
    expected.add(("cache_latents", "--vae_enable_patch_conv"))
    assert expected <= seen  # every knob reaches its script


@pytest.mark.parametrize("preset", [p for p in PRESETS if resolve(p, {}).block_swap_h2d_only])
def test_h2d_only_comes_with_gradient_checkpointing_on_the_train_command(make_settings, preset):
    """musubi refuses --block_swap_h2d_only without --gradient_checkpointing (custom_offloading_utils): every preset
    that swaps host-to-device only gets both on the train command this project builds."""
    from hvlora.families.hunyuan_video_1_5 import catalog, musubi
    from hvlora.training.musubi import TrainSegment
    from hvlora.training.plan import Launch

    s = make_settings()
    weights = {c: w.local_path(s.models_dir) for c, w in catalog.weights_for(s.task, s.dit_variant).items()}
    seg = TrainSegment(Path("/run/s"), Path("/run/tb"), max_train_steps=10, total_steps=10)
    argv = musubi.train(s, Path("/run/d.toml"), weights, seg, resolve(preset, {}), Launch(1, 1)).argv
    assert "--block_swap_h2d_only" in argv and "--gradient_checkpointing" in argv


# --- property: resolve ---------------------------------------------------------------------------------------------------

knob_values = {
    "fp8": st.booleans(),
    "blocks_to_swap": st.integers(0, MAX_BLOCKS_TO_SWAP),
    "block_swap_h2d_only": st.booleans(),
    "gradient_checkpointing_cpu_offload": st.booleans(),
    "fp8_vl": st.booleans(),
    "vae_sample_size": st.sampled_from([None, 0, 64, 128, 256, 512]),
    "vae_enable_patch_conv": st.booleans(),
}


@st.composite
def user_knobs(draw):
    keys = draw(st.lists(st.sampled_from(MODEL.knobs), unique=True))
    return {k: draw(knob_values[k]) for k in keys}


@settings(max_examples=400, deadline=None)
@given(st.sampled_from((None, *PRESETS)), user_knobs())
def test_resolve_properties(preset, user):
    try:
        plan = resolve(preset, user)
    except ValueError as e:
        # the impossible valid-typed combos: an explicit h2d_only with no block swapped, or with the CPU offload
        assert user.get("block_swap_h2d_only") is True
        swap = user.get("blocks_to_swap", PRESET_TABLE.get(preset, {}).get("blocks_to_swap", 0))
        assert swap == 0 or user.get("gradient_checkpointing_cpu_offload") is True, e
        return
    assert not (plan.block_swap_h2d_only and plan.gradient_checkpointing_cpu_offload)
    assert 0 <= plan.blocks_to_swap <= MAX_BLOCKS_TO_SWAP
    assert not plan.block_swap_h2d_only or plan.blocks_to_swap > 0
    for knob, value in user.items():
        assert getattr(plan, knob) == value, knob
        assert plan.sources[knob] == f"--{knob}"
    for module, argv in musubi_flags(plan, sampling=True).items():
        assert_parses(module, argv)
    assert all(s == "default" or s.startswith(("preset ", "--", "off: ")) for s in plan.sources.values())


@given(st.integers(-100, 200))
def test_blocks_to_swap_range(n):
    if 0 <= n <= MAX_BLOCKS_TO_SWAP:
        assert resolve(None, {"blocks_to_swap": n}).blocks_to_swap == n
    else:
        with pytest.raises(ValueError):
            resolve(None, {"blocks_to_swap": n})


# --- estimates --------------------------------------------------------------------------------------------------------


def est(preset, bucket=DEFAULT_BUCKET, user=None, **kw):
    kw.setdefault("rank", 32)
    kw.setdefault("optimizer", "adamw8bit")
    return estimate(resolve(preset, user or {}), bucket, **kw)


def test_parts_sum_to_the_peak_and_host_parts_to_host():
    for preset in (None, *PRESETS):
        for shape in SHAPES:
            for sampling in (False, True):
                e = est(preset, shape, sampling=sampling, num_gpus=2)
                assert sum(e.parts.values()) == pytest.approx(e.peak_vram_gb)
                assert 2 * sum(e.host_parts.values()) == pytest.approx(e.host_ram_gb)
                assert all(v >= 0 for v in [*e.parts.values(), *e.host_parts.values()])


def _measured_runs() -> list[tuple[dict, dict]]:
    """(meta, run) of every run benchmarks/gpu_presets.py measured on a GPU (benchmarks/results/*/presets*.json)
    that trained (an out-of-memory or crashed run has no s/step)."""
    out = []
    for path in sorted((ROOT / "benchmarks" / "results").glob("*/presets*.json")):
        data = json.loads(path.read_text())
        out += [(data["meta"], r) for r in data["runs"] if r.get("s_per_step") and r.get("peak_gib")]
    return out


def _measured_estimate(meta: dict, run: dict):
    # the benchmark's synthetic text-encoder caches hold 256 tokens (benchmarks/gpu_presets.py TEXT_TOKENS)
    return estimate(resolve(run["preset"], {}), tuple(run["bucket"]), meta["rank"], meta["optimizer"], text_tokens=256)


def test_the_estimate_is_within_15_percent_of_every_measured_peak():
    """Against measurements: NVML's peak of each preset's training run on an H200 capped to the preset's card, and
    torch's max_memory_allocated against the estimate without the allocator's slack and the overhead."""
    runs = _measured_runs()
    assert {r["preset"] for _, r in runs} >= {80, 32, 24}
    for meta, run in runs:
        e = _measured_estimate(meta, run)
        assert e.peak_vram_gb == pytest.approx(run["peak_gib"], rel=0.15), (run["preset"], run["bucket"], e.parts)
        allocated = e.peak_vram_gb - e.parts["allocator_slack"] - e.parts["overhead"]
        assert allocated == pytest.approx(run["torch_max_allocated_gib"], rel=0.15), (run["preset"], e.parts)


def test_the_16_preset_as_measured_without_an_nvml_peak():
    """The 16 preset's run (its knobs today: no CPU offload) recorded torch's peaks but no NVML peak: the estimate's
    allocated memory against torch's, and its peak against torch's reserved + the measured overhead."""
    stats = json.loads((ROOT / "benchmarks/results/h200-2026-12-04/preset16-no-offload.stats.json").read_text())
    argv = (ROOT / "benchmarks/results/h200-2026-12-04/preset16-no-offload.cmd.txt").read_text().split()
    assert (
        "--gradient_checkpointing_cpu_offload" not in argv
        and musubi_flags(resolve(16, {}))["train"] == argv[argv.index("--fp8_base") :]
    )
    e = estimate(resolve(16, {}), (960, 544, 25), 32, "adamw", text_tokens=256)
    allocated = e.peak_vram_gb - e.parts["allocator_slack"] - e.parts["overhead"]
    assert allocated == pytest.approx(stats["max_memory_allocated"] / GIB, rel=0.15)
    nvml = stats["max_memory_reserved"] / GIB + presets.OVERHEAD_GIB
    assert e.peak_vram_gb == pytest.approx(nvml, rel=0.15) and nvml <= 0.9 * CARD_MIB[16] / 1024


def test_host_ram_estimate_against_the_trainers_measured_rss():
    """The trainer process's peak RSS (the benchmark's sitecustomize; the data-loader workers are separate processes,
    HOST_PROCESS_BASE_GIB counts them on top of the 3.0 GiB the trainer measured without swap): with H2D-only swap
    the DiT while it loads and the swapped blocks' pinned copies are both there."""
    worker_share = presets.HOST_PROCESS_BASE_GIB - 3.0
    results = ROOT / "benchmarks/results/h200-2026-12-04"
    stats16 = json.loads((results / "preset16-no-offload.stats.json").read_text())
    measured = {run["preset"]: run["host_rss_gib"] for _, run in _measured_runs()} | {
        16: stats16["max_rss_bytes"] / GIB
    }
    for preset in (24, 16):
        e = estimate(resolve(preset, {}), (960, 544, 25), 32, "adamw", text_tokens=256)
        assert e.host_ram_gb - worker_share == pytest.approx(measured[preset], rel=0.05), (preset, e.host_parts)
    for preset in (80, 32):
        assert est(preset).host_ram_gb >= measured[preset]


def test_every_measured_peak_is_within_90_percent_of_its_card():
    for _, run in _measured_runs():
        if run["card_gib"]:
            assert run["peak_gib"] <= 0.9 * run["card_gib"], run


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_keeps_960x544x25_under_90_percent_of_its_card(preset):
    """Estimated (calibrated above) at the design bucket, with samples on, on the preset's card (the benchmark's
    CARD_MIB: what those cards report); 848x480x61 fits every card but 16's, where the plan warns and names what to
    lower."""
    card = CARD_MIB[preset] / 1024
    e = est(preset, (960, 544, 25), sampling=True)
    assert e.peak_vram_gb <= 0.9 * card, e.parts
    assert not fits(e, card, 64.0)
    long = est(preset, (848, 480, 61))
    if preset == 16:
        assert "--blocks_to_swap" in fits(long, card, 64.0)[0]
    else:
        assert long.peak_vram_gb <= 0.95 * card, long.parts
    for stage in cache_estimates(resolve(preset, {})).values():
        assert stage.peak_vram_gb <= 0.9 * preset, stage


def test_preset_48_needs_fp8_for_121_frames():
    assert fits(est(48, (960, 544, 121)), 47.99, 64.0)
    assert est(48, (960, 544, 121), user={"fp8": True}).peak_vram_gb < 0.9 * 47.99


def test_swap_trades_vram_for_host_ram_per_gpu_process():
    base, swapped = est(None, user={"fp8": True}), est(None, user={"fp8": True, "blocks_to_swap": 20})
    freed = base.peak_vram_gb - swapped.peak_vram_gb
    assert freed == pytest.approx(20 * swapped.per_block_gb)
    assert swapped.host_parts["swapped_blocks"] == pytest.approx(20 * swapped.per_block_gb)
    two = est(None, user={"fp8": True, "blocks_to_swap": 20}, num_gpus=2)
    assert two.host_ram_gb == pytest.approx(2 * swapped.host_ram_gb)  # each process keeps its own copy
    assert two.parts["ddp"] > 0 and "ddp" not in swapped.parts
    # H2D-only keeps 2 ring slots on the GPU
    h2d = est(None, user={"fp8": True, "blocks_to_swap": 20, "block_swap_h2d_only": True})
    assert h2d.peak_vram_gb - swapped.peak_vram_gb == pytest.approx(2 * swapped.per_block_gb)


def test_loading_a_swapped_dit_puts_it_all_in_host_ram_first():
    e = est(None, user={"blocks_to_swap": 1})  # bf16: the whole 16.7 GB model is loaded on the CPU
    assert e.host_ram_gb >= presets.HOST_PROCESS_BASE_GIB + presets.DIT_PARAMS * 2 / GIB - 0.01
    assert est(None).host_parts["dit_loading_extra"] == 0


def test_checkpoint_offload_moves_block_inputs_to_the_host():
    on = est(None, user={"fp8": True, "gradient_checkpointing_cpu_offload": True})
    off = est(None, user={"fp8": True})
    assert on.parts["activations_saved"] < off.parts["activations_saved"] / 20
    assert on.host_parts["offloaded_activations"] == pytest.approx(off.parts["activations_saved"])
    seq = 14_280 + presets.DEFAULT_TEXT_TOKENS
    assert off.parts["activations_saved"] == pytest.approx(54 * seq * 2048 * 2 / GIB)


def test_bigger_clips_rank_and_optimizer_cost_more():
    assert est(None, (960, 544, 1)).peak_vram_gb < est(None).peak_vram_gb < est(None, (848, 480, 61)).peak_vram_gb
    assert est(None, rank=64).parts["lora"] > est(None).parts["lora"]
    lora = {o: est(None, optimizer=o).parts["lora"] for o in ("adamw", "adamw8bit", "AdaFactor")}
    assert lora["adamw"] > lora["adamw8bit"] > lora["AdaFactor"]
    assert est(None, task="i2v").peak_vram_gb > est(None).peak_vram_gb


def test_sampling_adds_prompt_encoding_and_decoding_moments():
    plain, sampled = est(32, (960, 544, 1)), est(32, (960, 544, 1), sampling=True)
    assert sampled.peak_vram_gb >= plain.peak_vram_gb
    assert sampled.peak_at == "sample prompts"  # bf16 Qwen on the GPU before the DiT loads
    assert sampled.host_parts["vae_for_samples"] > 0


@pytest.mark.parametrize("bad", [{"num_gpus": 0}, {"task": "v2v"}, {"optimizer": "sgd"}, {"rank": 0}])
def test_estimate_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        est(None, **bad)


def test_cache_estimates():
    bf16, fp8 = (cache_estimates(resolve(p, {}))["cache_text_encoder_outputs"] for p in (80, 24))
    assert bf16.peak_vram_gb - fp8.peak_vram_gb == pytest.approx(8.3e9 / GIB)
    assert bf16.parts["text_encoder_weights"] > 16e9 / GIB
    long = cache_estimates(resolve(24, {}), text_tokens=1024)["cache_text_encoder_outputs"]
    assert long.peak_vram_gb > fp8.peak_vram_gb + 5  # logits and hidden states grow with caption length

    def latents(user, bucket=(960, 544, 121), **kw):
        return cache_estimates(resolve(None, user), bucket, **kw)["cache_latents"]

    assert latents({"vae_sample_size": 0}).peak_vram_gb > latents({"vae_sample_size": 256}).peak_vram_gb
    assert latents({"vae_sample_size": 256}).peak_vram_gb > latents({}).peak_vram_gb  # None = musubi's 128
    assert latents({"vae_enable_patch_conv": True}).peak_vram_gb < latents({}).peak_vram_gb
    assert latents({}).parts["vae_weights"] == pytest.approx(1_260_634_115 * 2 / GIB)
    assert "image_encoder" in latents({}, task="i2v").parts
    assert latents({}).host_ram_gb > 5.04e9 / GIB  # the fp32 VAE file is read whole


# --- fits ---------------------------------------------------------------------------------------------------------------


def test_fits_silent_when_it_fits():
    assert fits(est(24), 23.99, 64.0) == []


def test_fits_names_what_to_lower():
    (msg,) = fits(est(None), 24.0, 64.0)
    assert msg.startswith(
        f"training: estimated peak {est(None).peak_vram_gb:.1f} GB > 24.0 GB GPU: use --vram 24, or --fp8, or "
        "--blocks_to_swap "
    )
    assert msg.endswith("a lower --resolution or shorter --target_frames")
    (msg,) = fits(est(24, (960, 544, 121)), 23.99, 64.0)
    assert "use --vram 16" in msg and "--fp8," not in msg
    (msg,) = fits(est(16, (1280, 720, 121)), 15.6, 64.0)
    assert "--blocks_to_swap 51" in msg and "--vram" not in msg


def test_fits_blocks_to_swap_advice_is_enough_and_valid():
    e = est(None, user={"fp8": True})
    (msg,) = fits(e, 16.0, 64.0)
    n = int(msg.split("--blocks_to_swap ")[1].split(",")[0])
    assert 0 < n <= MAX_BLOCKS_TO_SWAP
    assert est(None, user={"fp8": True, "blocks_to_swap": n}).peak_vram_gb <= 0.95 * 16.0 + 1e-9


def test_fits_warns_close_to_the_limit_and_on_host_ram():
    e = est(24, (848, 480, 61))
    assert fits(e, e.peak_vram_gb * 1.02, 64.0)[0].startswith("training: estimated peak")
    assert "within 5%" in fits(e, e.peak_vram_gb * 1.02, 64.0)[0]
    two = est(16, num_gpus=2)
    (msg,) = fits(two, 16.0, 16.0)
    assert "host RAM" in msg and "--blocks_to_swap" in msg and "fewer GPUs" in msg


def test_fits_for_the_cache_stages():
    te = cache_estimates(resolve(80, {}))["cache_text_encoder_outputs"]
    (msg,) = fits(te, 16.0, 64.0)
    assert msg.startswith("text encoding: ") and "--fp8_vl" in msg
    lat = cache_estimates(resolve(None, {"vae_sample_size": 0}), (960, 544, 121))["cache_latents"]
    (msg,) = fits(lat, 24.0, 64.0)
    assert "--vae_sample_size 128" in msg and "--vae_enable_patch_conv" in msg


def test_swap_limit_is_musubis():
    from hvlora.core import config
    from hvlora.families import get

    # config validates --blocks_to_swap against the family's limit
    assert MAX_BLOCKS_TO_SWAP == get("hunyuan_video_1_5").memory.max_blocks_to_swap == 51
    assert set(presets.OPTIMIZERS) == set(config.OPTIMIZERS)
