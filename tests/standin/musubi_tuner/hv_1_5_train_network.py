"""Stand-in for musubi_tuner.hv_1_5_train_network (v0.3.4): same flags, checks, console lines and output files;
no model is loaded and nothing is learned.

Mirrors hv_1_5_train_network.main / HunyuanVideo15NetworkTrainer and training/trainer_base.NetworkTrainer.train,
in the same order, with the same exceptions and messages:
 1. _validate_args_and_init: --dataset_config and --dit required (ValueError), --fp8_scaled needs --fp8_base
    (AssertionError), --sage_attn rejected (ValueError); handle_model_specific_args opens the DiT file (must exist);
    --show_timesteps stops here.
 2. _build_dataset: latents whose `_te` file exists, times num_repeats, in buckets; none -> ValueError.
 3. prepare_accelerator (a real accelerate.Accelerator, so `accelerate launch` settings apply): TensorBoard run
    folder `{logging_dir}/{log_prefix}{YYYYmmddHHMMSS}/{log_tracker_name|network_train}/`.
 4. sampling (--sample_prompts): the VAE/text encoder/byT5 (and for i2v SigLIP) files must exist; no samples are
    made.
 5. _load_dit_and_swap: exactly one attention mode (else ValueError); block swap: --block_swap_h2d_only needs
    --gradient_checkpointing, --block_swap_ring_size >= 1, blocks_to_swap < 52 (AssertionError).
 6. _build_network: `--network_module` is imported (networks.lora_hv_1_5 is the stand-in's; a missing module raises
    ModuleNotFoundError); network_args must be key=value.
 7. optimizer: as get_optimizer resolves --optimizer_type (AdamW, AdamW8bit, Adafactor case-insensitive, else an
    attribute of torch.optim or a dotted path: an empty or unknown name raises AttributeError/ImportError);
    optimizer_args key=value with Python literals. (bitsandbytes is not required for AdamW8bit here.)
 8. steps: --max_train_epochs E -> E * ceil(batches / processes / grad_accum); else --max_train_steps;
    epochs = ceil(steps / ceil(batches / grad_accum)); lr scheduler name and warmup checks.
 9. the loop prints musubi's lines (stdout) and a tqdm "steps" bar with avr_loss (stderr); with --task i2v a batch
    whose latent file lacks `latents_image_*` raises musubi's AssertionError at its step.
10. saving: `{name}-{epoch:06d}.safetensors` when epoch % save_every_n_epochs == 0 and not the last epoch, pruned by
    --save_last_n_epochs; state dirs `{name}-{epoch:06d}-state` alongside (pruned by --save_last_n_epochs_state,
    else --save_last_n_epochs); at the end `{name}-state` (--save_state/--save_state_on_train_end) and
    `{name}.safetensors`. LoRA keys/shapes as networks.lora_hv_1_5, in --save_precision (default fp32).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

import tomllib
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from . import _common, _dataset, _flags, _hooks, _tfevents

MODULE = "musubi_tuner.hv_1_5_train_network"
logger = logging.getLogger(__name__)
base_logger = logging.getLogger("musubi_tuner.training.trainer_base")
utils_logger = logging.getLogger("musubi_tuner.utils.train_utils")

NUM_DOUBLE_BLOCKS = 54
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
)  # transformers' SchedulerType values (musubi also has rex, piecewise_constant)


# ---------------------------------------------------------------------------------------------------------------
# arguments (training/parser_common.read_config_from_file, trainer_base._validate_args_and_init)


def read_config_from_file(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """--config_file: a TOML of CLI options (sections flattened); the command line overrides it."""
    if not args.config_file:
        return args
    path = args.config_file if args.config_file.endswith(".toml") else args.config_file + ".toml"
    if not os.path.exists(path):
        logger.info(f"{path} not found.")
        sys.exit(1)
    logger.info(f"Loading settings from {path}...")
    with open(path, "rb") as f:
        config = tomllib.load(f)
    flat = {}
    for name, section in config.items():
        flat.update(section if isinstance(section, dict) else {name: section})
    args = parser.parse_args(namespace=argparse.Namespace(**flat))
    args.config_file = os.path.splitext(args.config_file)[0]
    return args


def validate_args(args: argparse.Namespace) -> None:
    """_validate_args_and_init + handle_model_specific_args (which reads the DiT file's dtype)."""
    if args.dataset_config is None:
        raise ValueError("dataset_config is required / dataset_configが必要です")
    if args.dit is None:
        raise ValueError("path to DiT model is required / DiTモデルのパスが必要です")
    assert not args.fp8_scaled or args.fp8_base, "fp8_scaled requires fp8_base / fp8_scaledはfp8_baseが必要です"
    if args.sage_attn:
        raise ValueError(
            "SageAttention doesn't support training currently. Please use `--sdpa` or `--xformers` etc. instead."
            " / SageAttentionは現在学習をサポートしていないようです。`--sdpa`や`--xformers`などの他のオプションを使ってください"
        )
    _common.require_weight_file(args.dit)
    logging.getLogger("musubi_tuner.hunyuan_video_1_5.hunyuan_video_1_5_models").info(
        "Detected DiT dtype: torch.bfloat16"
    )
    if args.dit_dtype is None:
        args.dit_dtype = "bfloat16"  # what musubi picks for a bf16 checkpoint (the official weights)
    if args.vae_dtype is None:
        args.vae_dtype = "float16"


# ---------------------------------------------------------------------------------------------------------------
# setup (trainer_base._build_dataset, accelerator_setup.prepare_accelerator, _load_dit_and_swap, _build_network)


def build_datasets(args) -> list:
    datasets = _dataset.load_datasets(args.dataset_config, vars(args), training=True, log=base_logger)
    if sum(d.num_train_items for d in datasets) == 0:
        raise ValueError(
            "No training items found in the dataset. Please ensure that the latent/Text Encoder cache has been "
            "created beforehand. / データセットに学習データがありません。latent/Text Encoderキャッシュを事前に作成したか確認してください"
        )
    return datasets


def prepare_accelerator(args):
    """prepare_accelerator: the TensorBoard run folder name and log_with checks, then a real Accelerator (so that
    `accelerate launch --cpu/--mixed_precision` reach it as they reach musubi)."""
    import accelerate

    base_logger.info("preparing accelerator")
    run_dir = None
    if args.logging_dir is not None:
        run_dir = args.logging_dir + "/" + (args.log_prefix or "") + time.strftime("%Y%m%d%H%M%S", time.localtime())
    log_with = args.log_with if args.log_with is not None else ("tensorboard" if run_dir is not None else None)
    if log_with in ("tensorboard", "all") and run_dir is None:
        raise ValueError(
            "logging_dir is required when log_with is tensorboard / Tensorboardを使う場合、logging_dirを指定してください"
        )
    if log_with in ("wandb", "all"):
        import wandb  # noqa: F401  (musubi raises ImportError "No wandb" when it is missing)
    accelerator = accelerate.Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps, mixed_precision=args.mixed_precision or None
    )
    print("accelerator device:", accelerator.device)
    if args.mixed_precision is None:
        args.mixed_precision = accelerator.mixed_precision
        base_logger.info(
            f"mixed precision set to {args.mixed_precision} / mixed precisionを{args.mixed_precision}に設定"
        )
    return accelerator, run_dir if log_with in ("tensorboard", "all") else None


def check_sampling(args) -> None:
    """_prepare_sampling / process_sample_prompts load the models for sample generation."""
    if args.sample_prompts is None:
        return
    for path in (args.vae, args.text_encoder, args.byt5) + ((args.image_encoder,) if args.task == "i2v" else ()):
        _common.require_weight_file(path)
    logger.info("standin: sample generation is not simulated")


def check_attention_and_swap(args) -> None:
    """_load_dit_and_swap: an attention mode, then the block swap config and the HV1.5 swap limit."""
    if not (args.sdpa or args.flash_attn or args.sage_attn or args.xformers or args.flash3):
        raise ValueError(
            "either --sdpa, --flash-attn, --flash3, --sage-attn or --xformers must be specified / --sdpa, --flash-attn, "
            "--flash3, --sage-attn, --xformersのいずれかを指定してください"
        )
    base_logger.info(f"Loading DiT model from {args.dit}")
    blocks = args.blocks_to_swap or 0
    if blocks > 0:
        if args.block_swap_h2d_only and not args.gradient_checkpointing:
            raise ValueError("--block_swap_h2d_only requires --gradient_checkpointing for training.")
        if args.block_swap_ring_size < 1:
            raise ValueError("--block_swap_ring_size must be >= 1")
        assert blocks < NUM_DOUBLE_BLOCKS - 2, (
            f"Cannot swap more than {NUM_DOUBLE_BLOCKS - 2} double blocks. Requested {blocks} double blocks."
        )


def build_network(args, accelerator) -> tuple[int, float, dict]:
    """_build_network: import --network_module the way musubi does (the package folder is on sys.path, so
    `networks.lora_hv_1_5` resolves), parse network_args; returns (dim, alpha, network kwargs)."""
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    accelerator.print("import network module:", args.network_module)
    network_module = importlib.import_module(args.network_module)
    net_kwargs = {}
    for net_arg in args.network_args or []:
        key, value = net_arg.split("=")
        net_kwargs[key] = value
    if not hasattr(network_module, "create_arch_network"):
        raise NotImplementedError(f"standin: {args.network_module} is not simulated (use networks.lora_hv_1_5)")
    dim, alpha = network_module.create_arch_network(1.0, args.network_dim, args.network_alpha)
    lora_logger = logging.getLogger("musubi_tuner.networks.lora")
    lora_logger.info(f"create LoRA network. base dim (rank): {dim}, alpha: {alpha}")
    n = sum(1 for name, _, _ in network_module.modules() if not _hooks.dropped(name))
    lora_logger.info(f"create LoRA for U-Net/DiT: {n} modules.")
    return dim, alpha, net_kwargs


def resolve_optimizer(args) -> str:
    """get_optimizer's name resolution; returns musubi's ss_optimizer text."""
    kwargs = {}
    for arg in args.optimizer_args or []:
        key, value = arg.split("=")
        kwargs[key] = ast.literal_eval(value)
    kind = args.optimizer_type.lower()
    if kind == "adamw8bit":
        name = "bitsandbytes.optim.adamw.AdamW8bit"
    elif kind == "adafactor":
        kwargs.setdefault("relative_step", True)
        if kwargs["relative_step"]:  # musubi then drives the lr with adafactor's own schedule
            args.lr_scheduler = f"adafactor:{args.learning_rate}"
        name = "transformers.optimization.Adafactor"
    elif kind == "adamw":
        name = "torch.optim.adamw.AdamW"
    else:
        type_name = args.optimizer_type
        if "." not in type_name:
            module = torch.optim
        else:
            parts = type_name.split(".")
            module, type_name = importlib.import_module(".".join(parts[:-1])), parts[-1]
        cls = getattr(module, type_name)
        name = f"{cls.__module__}.{cls.__name__}"
    opt_args = ",".join(f"{k}={v}" for k, v in kwargs.items())
    base_logger.info(f"use {args.optimizer_type} optimizer | {kwargs}")
    return name + (f"({opt_args})" if opt_args else "")


def check_lr_scheduler(args, steps: int) -> None:
    """get_lr_scheduler's checks that need no optimizer object."""
    for arg in args.lr_scheduler_args or []:
        key, value = arg.split("=")
        ast.literal_eval(value)
    if args.lr_scheduler_type:
        return
    name = args.lr_scheduler
    warmup = int(args.lr_warmup_steps * steps) if isinstance(args.lr_warmup_steps, float) else args.lr_warmup_steps
    if name.startswith("adafactor") or name == "constant":
        if warmup:
            raise ValueError(f"{name} does not require `num_warmup_steps`. Set None or 0.")
        return
    if name.lower() in ("rex", "piecewise_constant"):
        return
    if name not in SCHEDULERS:
        raise ValueError(f"'{name}' is not a valid SchedulerType, please select one of {list(SCHEDULERS)}")


def compute_steps(args, num_batches: int, num_processes: int) -> tuple[int, int]:
    """(max_train_steps, num_train_epochs) as _build_optimizer_and_dataloader and _run_training_loop compute them."""
    if args.max_train_epochs is not None:
        args.max_train_steps = args.max_train_epochs * math.ceil(
            num_batches / num_processes / args.gradient_accumulation_steps
        )
        print(
            f"override steps. steps for {args.max_train_epochs} epochs is / 指定エポックまでのステップ数: "
            f"{args.max_train_steps}"
        )
    per_epoch = math.ceil(num_batches / args.gradient_accumulation_steps)
    return args.max_train_steps, math.ceil(args.max_train_steps / per_epoch)


# ---------------------------------------------------------------------------------------------------------------
# LoRA files and state (networks/lora.py save_weights, utils/train_utils.py, utils/sai_model_spec.py)


def save_dtype(args) -> torch.dtype:
    """train_utils.resolve_save_dtype: --save_precision, else full_fp16/full_bf16, else fp32."""
    if args.save_precision is not None:
        return _common.str_to_dtype(args.save_precision)
    if getattr(args, "full_fp16", False):
        return torch.float16
    if getattr(args, "full_bf16", False):
        return torch.bfloat16
    return torch.float32


def lora_state_dict(dim: int, alpha: float, dtype: torch.dtype, seed: int, step: int) -> dict[str, torch.Tensor]:
    """The LoRA tensors musubi saves: lora_down [dim, in], lora_up [out, dim], alpha (0-dim), all in `dtype`.
    Values are deterministic per (seed, step) so checkpoints of one run differ and runs repeat bit for bit."""
    from .networks import lora_hv_1_5

    sd = {}
    for name, fin, fout in lora_hv_1_5.modules():
        if _hooks.dropped(name):
            continue
        sd[f"{name}.lora_down.weight"] = (_common.noise((dim, fin), torch.float32, seed, name, "down") * 0.01).to(dtype)
        up = _common.noise((fout, dim), torch.float32, seed, name, "up", step) * (1e-4 * step)
        sd[f"{name}.lora_up.weight"] = up.to(dtype)
        sd[f"{name}.alpha"] = torch.tensor(float(alpha)).to(dtype)
    return sd


def sai_metadata(args, title: str | None) -> dict[str, str]:
    """sai_model_spec.build_metadata for architecture hv15 (LoRA)."""
    now = time.time()
    reso = args.metadata_reso
    if reso is None:
        reso_text = "1280x720"
    else:
        parts = tuple(map(int, str(reso).split(",")))
        reso_text = f"{parts[0]}x{parts[-1]}"
    md = {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": (args.metadata_arch or "hunyuan-video-1.5") + "/lora",
        "modelspec.implementation": "https://github.com/Tencent-Hunyuan/HunyuanVideo-1.5",
        "modelspec.title": title if title is not None else f"LoRA@{now}",
        "modelspec.resolution": reso_text,
        "modelspec.date": datetime.fromtimestamp(int(now)).isoformat(),
    }
    for key in ("author", "description", "license", "tags"):
        value = getattr(args, f"metadata_{key}")
        if value is not None:
            md[f"modelspec.{key}"] = value
    return md


class Saver:
    """save_model / remove_model and the state helpers of train_utils, bound to one run's settings."""

    MINIMUM_KEYS = (
        "ss_base_model_version",
        "ss_network_module",
        "ss_network_dim",
        "ss_network_alpha",
        "ss_network_args",
    )

    def __init__(self, args, accelerator, metadata: dict[str, str], dim: int, alpha: float):
        self.args, self.accelerator, self.metadata = args, accelerator, metadata
        self.dim, self.alpha, self.dtype = dim, alpha, save_dtype(args)
        base_logger.info(
            f"network weights will be saved as {self.dtype}"
            + (f" (--save_precision {args.save_precision})" if args.save_precision is not None else " (default)")
        )

    def save_model(self, ckpt_name: str, steps: int, epoch_no: int) -> None:
        args = self.args
        os.makedirs(args.output_dir, exist_ok=True)
        ckpt_file = os.path.join(args.output_dir, ckpt_name)
        self.accelerator.print(f"\nsaving checkpoint: {ckpt_file}")
        self.metadata.update(ss_training_finished_at=str(time.time()), ss_steps=str(steps), ss_epoch=str(epoch_no))
        md = (
            dict(self.metadata)
            if not args.no_metadata
            else {k: v for k, v in self.metadata.items() if k in self.MINIMUM_KEYS}
        )
        md.update(sai_metadata(args, args.metadata_title if args.metadata_title is not None else args.output_name))
        sd = lora_state_dict(self.dim, self.alpha, self.dtype, args.seed, steps)
        md["sshs_model_hash"], md["sshs_legacy_hash"] = _common.model_hashes(sd, md)
        save_file(sd, ckpt_file, md)

    def remove_model(self, ckpt_name: str) -> None:
        old = os.path.join(self.args.output_dir, ckpt_name)
        if os.path.exists(old):
            self.accelerator.print(f"removing old checkpoint: {old}")
            os.remove(old)

    def save_state(self, state_dir: str, steps: int) -> None:
        """accelerator.save_state with musubi's hook (only the network's weights): small files with accelerate's
        names."""
        os.makedirs(state_dir, exist_ok=True)
        sd = {
            k: v
            for k, v in lora_state_dict(min(self.dim, 2), self.alpha, torch.float32, self.args.seed, steps).items()
            if ".double_blocks_0_" in k
        }
        save_file(sd, os.path.join(state_dir, "model.safetensors"))
        torch.save(
            {"state": {}, "param_groups": [{"lr": self.args.learning_rate, "step": steps}]},
            os.path.join(state_dir, "optimizer.bin"),
        )
        torch.save({"last_epoch": steps}, os.path.join(state_dir, "scheduler.bin"))
        torch.save({"epoch": 0, "iteration": 0}, os.path.join(state_dir, "sampler.bin"))
        torch.save({"step": steps, "seed": self.args.seed}, os.path.join(state_dir, "random_states_0.pkl"))

    def epoch_end(self, epoch_no: int, steps: int) -> None:
        """The end-of-epoch save and pruning (only when save_every_n_epochs divides it and it is not the last)."""
        args = self.args
        self.save_model(f"{args.output_name}-{epoch_no:06d}.safetensors", steps, epoch_no)
        if args.save_last_n_epochs is not None:
            remove_no = epoch_no - args.save_every_n_epochs * args.save_last_n_epochs
            if remove_no >= 0:
                self.remove_model(f"{args.output_name}-{remove_no:06d}.safetensors")
        if args.save_state:
            utils_logger.info("")
            utils_logger.info(f"saving state at epoch {epoch_no}")
            self.save_state(os.path.join(args.output_dir, f"{args.output_name}-{epoch_no:06d}-state"), steps)
            last_n = args.save_last_n_epochs_state if args.save_last_n_epochs_state else args.save_last_n_epochs
            if last_n is not None:
                old = os.path.join(
                    args.output_dir, f"{args.output_name}-{epoch_no - args.save_every_n_epochs * last_n:06d}-state"
                )
                if os.path.exists(old):
                    utils_logger.info(f"removing old state: {old}")
                    shutil.rmtree(old)

    def train_end(self, steps: int, num_epochs: int) -> None:
        args = self.args
        if args.save_state or args.save_state_on_train_end:
            utils_logger.info("")
            utils_logger.info("saving last state.")
            os.makedirs(args.output_dir, exist_ok=True)
            self.save_state(os.path.join(args.output_dir, f"{args.output_name}-state"), steps)
        # musubi builds the name as output_name + ".safetensors" (a TypeError when --output_name is missing)
        self.save_model(args.output_name + ".safetensors", steps, num_epochs)


# ---------------------------------------------------------------------------------------------------------------
# the loop (trainer_base._run_training_loop)


def base_metadata(
    args,
    datasets,
    num_items: int,
    num_batches: int,
    num_epochs: int,
    optimizer: str,
    net_kwargs: dict,
    session_id: int,
    started_at: float,
) -> dict[str, str]:
    """The ss_* metadata musubi writes (all values as strings)."""
    md = {
        "ss_session_id": session_id,
        "ss_training_started_at": started_at,
        "ss_output_name": args.output_name,
        "ss_learning_rate": args.learning_rate,
        "ss_num_train_items": num_items,
        "ss_num_batches_per_epoch": num_batches,
        "ss_num_epochs": num_epochs,
        "ss_gradient_checkpointing": args.gradient_checkpointing,
        "ss_gradient_checkpointing_cpu_offload": args.gradient_checkpointing_cpu_offload,
        "ss_gradient_accumulation_steps": args.gradient_accumulation_steps,
        "ss_max_train_steps": args.max_train_steps,
        "ss_lr_warmup_steps": args.lr_warmup_steps,
        "ss_lr_scheduler": args.lr_scheduler,
        "ss_base_model_version": _dataset.ARCHITECTURE_FULL,
        "ss_network_module": args.network_module,
        "ss_network_dim": args.network_dim,
        "ss_network_alpha": args.network_alpha,
        "ss_network_dropout": args.network_dropout,
        "ss_mixed_precision": args.mixed_precision,
        "ss_seed": args.seed,
        "ss_training_comment": args.training_comment,
        "ss_optimizer": optimizer,
        "ss_max_grad_norm": args.max_grad_norm,
        "ss_fp8_base": bool(args.fp8_base),
        "ss_full_fp16": bool(args.full_fp16),
        "ss_full_bf16": bool(args.full_bf16),
        "ss_weighting_scheme": args.weighting_scheme,
        "ss_logit_mean": args.logit_mean,
        "ss_logit_std": args.logit_std,
        "ss_mode_scale": args.mode_scale,
        "ss_guidance_scale": args.guidance_scale,
        "ss_timestep_sampling": args.timestep_sampling,
        "ss_sigmoid_scale": args.sigmoid_scale,
        "ss_discrete_flow_shift": args.discrete_flow_shift,
        "ss_datasets": json.dumps([d.metadata() for d in datasets]),
    }
    if args.network_args:
        md["ss_network_args"] = json.dumps(net_kwargs)
    md["ss_sd_model_name"] = os.path.basename(args.dit) if os.path.exists(args.dit) else args.dit
    if args.vae is not None:
        md["ss_vae_name"] = os.path.basename(args.vae) if os.path.exists(args.vae) else args.vae
    return {k: str(v) for k, v in md.items()}


def print_header(accelerator, args, datasets, num_items: int, num_batches: int, num_epochs: int) -> None:
    accelerator.print("running training / 学習開始")
    accelerator.print(f"  num train items / 学習画像、動画数: {num_items}")
    accelerator.print(f"  num batches per epoch / 1epochのバッチ数: {num_batches}")
    accelerator.print(f"  num epochs / epoch数: {num_epochs}")
    accelerator.print(f"  batch size per device / バッチサイズ: {', '.join(str(d.batch_size) for d in datasets)}")
    accelerator.print(f"  gradient accumulation steps / 勾配を合計するステップ数 = {args.gradient_accumulation_steps}")
    accelerator.print(f"  total optimization steps / 学習ステップ数: {args.max_train_steps}")


def epoch_batches(datasets, seed: int, epoch: int) -> list[list[_dataset.Item]]:
    """All batches of all datasets, shuffled per epoch (the DataLoader shuffles the concatenated datasets)."""
    batches = [b for d in datasets for b in d.batches()]
    random.Random(seed + epoch).shuffle(batches)
    return batches


def check_batch(args, batch: list[_dataset.Item]) -> None:
    """What the first forward of a batch would reject: i2v without image latents (call_dit), flash3 (attention)."""
    if args.flash3:
        raise ValueError("Unsupported attention mode: flash3")
    if args.task != "i2v":
        return
    for item in batch:
        with safe_open(item.latent_cache_path, framework="pt") as f:
            has_image = any(k.startswith("latents_image_") for k in f.keys())
        assert has_image, (
            "Expected latents_image for I2V training. Add `--i2v` and `--image_encoder` arguments for "
            "`hv_1_5_cache_latents` script. / I2V学習ではlatents_imageが必要です。`hv_1_5_cache_latents`スクリプトに"
            "`--i2v`と`--image_encoder`引数を追加してください。"
        )


class LossRecorder:
    """train_utils.LossRecorder: the moving average over the last epoch's steps (the bar's avr_loss)."""

    def __init__(self):
        self.losses: list[float] = []
        self.total = 0.0

    def add(self, epoch: int, step: int, loss: float) -> None:
        if epoch == 0:
            self.losses.append(loss)
        else:
            while len(self.losses) <= step:
                self.losses.append(0.0)
            self.total -= self.losses[step]
            self.losses[step] = loss
        self.total += loss

    @property
    def moving_average(self) -> float:
        return self.total / len(self.losses)


def fake_loss(seed: int, step: int) -> float:
    """A plausible, slowly falling loss: deterministic for (seed, step)."""
    return 0.12 / (1.0 + 0.05 * step) + 0.01 * random.Random(seed * 100003 + step).random()


def train_loop(args, accelerator, datasets, num_epochs: int, saver: Saver, events) -> int:
    """Epochs of batches; returns the global step count. Saves as _run_training_loop does."""
    progress = tqdm(
        range(args.max_train_steps), smoothing=0, disable=not accelerator.is_local_main_process, desc="steps"
    )
    recorder, global_step = LossRecorder(), 0
    _hooks.work_starts(MODULE, logger)
    for epoch in range(num_epochs):
        accelerator.print(f"\nepoch {epoch + 1}/{num_epochs}")
        batches = epoch_batches(datasets, args.seed, epoch)
        for step, batch in enumerate(batches):
            check_batch(args, batch)
            sync = (step + 1) % args.gradient_accumulation_steps == 0 or step + 1 == len(batches)
            loss = fake_loss(args.seed, global_step)
            if sync:
                if global_step == 0:
                    progress.reset()  # musubi excludes the first (slow) step from the bar's timing
                progress.update(1)
                global_step += 1
            recorder.add(epoch, step, loss)
            progress.set_postfix(avr_loss=recorder.moving_average)
            if events is not None:
                events.scalars(
                    global_step,
                    {
                        "loss/current": loss,
                        "loss/average": recorder.moving_average,
                        "lr/unet": float(args.learning_rate or 0.0),
                    },
                )
            if global_step >= args.max_train_steps:
                break
        if events is not None:
            events.scalars(epoch + 1, {"loss/epoch": recorder.moving_average})
        if args.save_every_n_epochs is not None:
            if (epoch + 1) % args.save_every_n_epochs == 0 and (epoch + 1) < num_epochs:
                saver.epoch_end(epoch + 1, global_step)
    progress.close()
    return global_step


def train(args) -> None:
    validate_args(args)
    if args.show_timesteps:
        logger.info("standin: --show_timesteps is not simulated")
        return
    session_id, started_at = random.randint(0, 2**32), time.time()
    if args.seed is None:
        args.seed = random.randint(0, 2**32)
    datasets = build_datasets(args)
    accelerator, run_dir = prepare_accelerator(args)
    check_sampling(args)
    check_attention_and_swap(args)
    dim, alpha, net_kwargs = build_network(args, accelerator)
    accelerator.print("prepare optimizer, data loader etc.")
    optimizer = resolve_optimizer(args)
    num_batches = sum(d.num_batches() for d in datasets)
    args.full_fp16 = args.full_bf16 = False  # _prepare_with_accelerator: "temporary disabled" in v0.3.4
    _, num_epochs = compute_steps(args, num_batches, accelerator.num_processes)
    check_lr_scheduler(args, args.max_train_steps * accelerator.num_processes)
    num_items = sum(d.num_train_items for d in datasets)
    print_header(accelerator, args, datasets, num_items, num_batches, num_epochs)
    metadata = base_metadata(
        args, datasets, num_items, num_batches, num_epochs, optimizer, net_kwargs, session_id, started_at
    )
    events = None
    if run_dir is not None and accelerator.is_main_process:
        events = _tfevents.EventWriter(Path(run_dir) / (args.log_tracker_name or "network_train"))
    saver = Saver(args, accelerator, metadata, dim, alpha)
    global_step = train_loop(args, accelerator, datasets, num_epochs, saver, events)
    if events is not None:
        events.close()
    if accelerator.is_main_process:
        saver.train_end(global_step, num_epochs)
        base_logger.info("model saved.")


def main() -> None:
    _hooks.record_call(MODULE)
    parser = _flags.build_parser(MODULE)
    args = parser.parse_args()
    args = read_config_from_file(args, parser)
    train(args)


if __name__ == "__main__":
    _common.sageattention_probe()
    main()
