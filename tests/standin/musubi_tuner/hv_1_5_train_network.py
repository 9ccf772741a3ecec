"""Stand-in for musubi_tuner.hv_1_5_train_network (v0.3.4): same flags, checks, console lines and output files;
no model is loaded and nothing is learned, but the optimizer, LR scheduler, data loader and accelerate state are
real.

Mirrors hv_1_5_train_network.main / HunyuanVideo15NetworkTrainer and training/trainer_base.NetworkTrainer.train,
in the same order, with the same exceptions and messages:
 1. _validate_args_and_init: --dataset_config and --dit required (ValueError), --fp8_scaled needs --fp8_base
    (AssertionError), --sage_attn rejected (ValueError); handle_model_specific_args opens the DiT file (must exist);
    --show_timesteps stops here.
 2. _init_session + _build_dataset: accelerate's set_seed(--seed, else a random one); latents whose `_te` file
    exists, times num_repeats, in buckets; none -> ValueError.
 3. prepare_accelerator (a real accelerate.Accelerator, so `accelerate launch` settings apply): TensorBoard run
    folder `{logging_dir}/{log_prefix}{YYYYmmddHHMMSS}/{log_tracker_name|network_train}/` (a fresh one per run).
 4. _prepare_sampling (--sample_prompts, see _sampling.py): prompt file, Qwen2.5-VL, byT5, for i2v SigLIP and
    every prompt's `--i` image, then the VAE file.
 5. _load_dit_and_swap: exactly one attention mode (else ValueError); block swap: --block_swap_h2d_only needs
    --gradient_checkpointing, --block_swap_ring_size >= 1, blocks_to_swap < 52 (AssertionError). The "DiT" is a
    frozen one-parameter module.
 6. _build_network: `--network_module` is imported (networks.lora_hv_1_5 is the stand-in's; a missing module raises
    ModuleNotFoundError); network_args must be key=value; the network is networks.lora_hv_1_5.LoRANetwork (tiny
    real parameters, real LoRA file layout).
 7. _build_optimizer_and_dataloader (_optim.py): a real torch optimizer as get_optimizer resolves --optimizer_type
    and a real LR scheduler as get_lr_scheduler builds it (--lr_scheduler_type wins; num_training_steps =
    max_train_steps x num_processes); a torch DataLoader (batch_size=1, shuffle=True) over the bucket batches
    (per-epoch bucket shuffle with the dataset seed + epoch, as BucketBatchManager; data is loaded in the main
    process, whatever --max_data_loader_n_workers says); --max_train_epochs E -> E * ceil(batches / processes /
    grad_accum) steps; epochs = ceil(steps / ceil(batches / grad_accum)).
 8. _prepare_with_accelerator + _register_hooks_and_resume: accelerator.prepare(DiT), then prepare(network,
    optimizer, dataloader, scheduler) (AcceleratedScheduler: num_processes scheduler steps per optimizer step);
    musubi's save/load pre-hooks keep only the network, so a state folder holds accelerate's own files
    (model.safetensors with the network's tensors, optimizer.bin, scheduler.bin, random_states_0.pkl with
    accelerate's per-epoch micro-batch `step`); `--resume DIR` is accelerator.load_state(DIR) (a missing folder or
    missing/truncated file fails exactly as there), and then the run starts at epoch 0, step 0 anyway, for the
    full --max_train_steps/--max_train_epochs, names its files with these local counters (overwriting same-named
    files of earlier runs) and samples again with --sample_at_first.
 9. _run_training_loop: musubi's header lines (stdout), a tqdm "steps" bar with avr_loss (stderr); per micro-batch
    the batch's latent and text-encoder caches are loaded (safetensors load_file: a truncated cache fails here)
    and with --task i2v a batch without `latents_image_*` raises musubi's AssertionError; a loss with real
    gradients (deterministic fake value, torch-RNG noise as gradients), accelerator.backward, clip_grad_norm_
    (--max_grad_norm), optimizer/scheduler steps; TensorBoard `loss/current`, `loss/average` and `lr/unet`
    (the scheduler's get_last_lr; `lr/unet plus` with loraplus_lr_ratio) per micro-batch at the global step,
    `loss/epoch` per epoch at epoch + 1.
10. order per optimizer step: sample (--sample_every_n_steps), then --save_every_n_steps: `{name}-step{N:08d}
    .safetensors` (ss_epoch = the 0-based epoch index, as musubi passes it), with --save_state
    `{name}-step{N:08d}-state` pruned by --save_last_n_steps_state (else --save_last_n_steps), then the step LoRA
    pruned by --save_last_n_steps (musubi's formulas); then the loss/log. Per epoch end: `loss/epoch`, the epoch
    LoRA `{name}-{epoch:06d}.safetensors` when epoch % save_every_n_epochs == 0 and not the last epoch (pruned by
    --save_last_n_epochs), its state `{name}-{epoch:06d}-state` (pruned by --save_last_n_epochs_state, else
    --save_last_n_epochs), then sampling (by epochs, or by steps again: the triggers are ORed). At the end
    `{name}-state` (--save_state/--save_state_on_train_end) and `{name}.safetensors`. LoRA keys/shapes as
    networks.lora_hv_1_5, in --save_precision (default fp32); ss_steps/ss_epoch are the run's local counters.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import tomllib
import torch
from accelerate import DistributedType
from safetensors.torch import load_file
from tqdm import tqdm

from . import _common, _dataset, _flags, _hooks, _optim, _sampling, _tfevents

MODULE = "musubi_tuner.hv_1_5_train_network"
logger = logging.getLogger(__name__)
base_logger = logging.getLogger("musubi_tuner.training.trainer_base")
utils_logger = logging.getLogger("musubi_tuner.utils.train_utils")

NUM_DOUBLE_BLOCKS = 54


@dataclass(frozen=True)
class Arch:
    """What differs between the architectures' train scripts the stand-in runs (the common trainer is the same):
    the module, its argument checks, block-swap limit and per-batch check, its sample preparation and sampling, the
    network's keyword arguments, and the names its metadata carries (ss_base_model_version, modelspec)."""

    module: str
    validate: Callable
    check_swap: Callable
    check_batch: Callable
    prepare_sampling: Callable
    sample_images: Callable
    network_kwargs: Callable  # args -> extra keyword arguments of create_arch_network
    base_model_version: str
    modelspec_arch: str
    modelspec_impl: str


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


# ---------------------------------------------------------------------------------------------------------------
# models, network, data (trainer_base._load_dit_and_swap, _build_network, _build_optimizer_and_dataloader)


class FrozenDiT(torch.nn.Module):
    """The DiT as far as accelerate sees it: a module without trainable parameters (not DDP-wrapped, dropped from
    saved states by musubi's hook)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1), requires_grad=False)


def build_network(args, accelerator, extra: dict | None = None):
    """_build_network: import --network_module the way musubi does (the package folder is on sys.path, so
    `networks.lora_hv_1_5` resolves), parse network_args, create the network (with the architecture's `extra`
    keyword arguments: what the real network reads from the DiT); returns (network, net_kwargs)."""
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    accelerator.print("import network module:", args.network_module)
    network_module = importlib.import_module(args.network_module)
    net_kwargs = {}
    for net_arg in args.network_args or []:
        key, value = net_arg.split("=")
        net_kwargs[key] = value
    if not hasattr(network_module, "create_arch_network"):
        raise NotImplementedError(f"standin: {args.network_module} is not simulated (use networks.lora_hv_1_5)")
    network = network_module.create_arch_network(
        1.0,
        args.network_dim,
        args.network_alpha,
        None,
        None,
        None,
        neuron_dropout=args.network_dropout,
        **net_kwargs,
        **(extra or {}),
    )
    return network, net_kwargs


class BatchDataset(torch.utils.data.Dataset):
    """DatasetGroup (a ConcatDataset of the datasets' BucketBatchManagers): item i is one bucket batch. When the
    shared epoch moves on, each dataset shuffles its buckets and batch order with random.seed(seed + epoch), as
    BaseDataset.__getitem__ / shuffle_buckets do. An item is the loaded caches of the batch's items."""

    def __init__(self, datasets, seed: int):
        self.seed, self.current_epoch, self.shared_epoch = seed, 0, 0
        self.managers = []
        for d in datasets:
            buckets = {reso: list(items) for reso, items in sorted(d.buckets.items())}
            indices = [
                (reso, i) for reso, items in buckets.items() for i in range(math.ceil(len(items) / d.batch_size))
            ]
            self.managers.append((buckets, indices, d.batch_size))

    def __len__(self) -> int:
        return sum(len(indices) for _, indices, _ in self.managers)

    def _shuffle(self) -> None:
        for buckets, indices, _ in self.managers:
            rng = random.Random(self.seed + self.current_epoch)  # each dataset reseeds (random.seed in musubi)
            for items in buckets.values():
                rng.shuffle(items)
            rng.shuffle(indices)

    def __getitem__(self, idx: int) -> dict:
        while self.shared_epoch > self.current_epoch:
            logging.getLogger("musubi_tuner.dataset.image_video_dataset").info(
                f"epoch is incremented. current_epoch: {self.current_epoch}, epoch: {self.shared_epoch}"
            )
            self.current_epoch += 1
            self._shuffle()
        for buckets, indices, batch_size in self.managers:
            if idx < len(indices):
                reso, i = indices[idx]
                items = buckets[reso][i * batch_size : (i + 1) * batch_size]
                loaded = [
                    {**load_file(it.latent_cache_path), **load_file(it.text_encoder_output_cache_path)} for it in items
                ]
                return {
                    "items": items,
                    "has_latents_image": any(k.startswith("latents_image_") for sd in loaded for k in sd),
                }
            idx -= len(indices)
        raise IndexError(idx)


def collate(examples: list[dict]) -> dict:
    """collator_class: batch size is always 1, so the single item is the batch."""
    return examples[0]


def build_dataloader(args, dataset: BatchDataset) -> torch.utils.data.DataLoader:
    n_workers = min(args.max_data_loader_n_workers, os.cpu_count())
    if args.persistent_data_loader_workers and n_workers == 0:
        raise ValueError("persistent_workers option needs num_workers > 0")  # torch's DataLoader check
    return torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=True, collate_fn=collate, num_workers=0)


def compute_steps(args, accelerator, num_batches: int) -> None:
    """--max_train_epochs overrides --max_train_steps (_build_optimizer_and_dataloader, before prepare: all
    batches)."""
    if args.max_train_epochs is not None:
        args.max_train_steps = args.max_train_epochs * math.ceil(
            num_batches / accelerator.num_processes / args.gradient_accumulation_steps
        )
        accelerator.print(
            f"override steps. steps for {args.max_train_epochs} epochs is / 指定エポックまでのステップ数: "
            f"{args.max_train_steps}"
        )


def compute_epochs(args, num_batches: int) -> int:
    """_run_training_loop's epoch count, from the prepared (per-process) data loader's length."""
    return math.ceil(args.max_train_steps / math.ceil(num_batches / args.gradient_accumulation_steps))


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


def sai_metadata(args, title: str | None, arch: Arch) -> dict[str, str]:
    """sai_model_spec.build_metadata for the architecture (LoRA)."""
    now = time.time()
    reso = args.metadata_reso
    if reso is None:
        reso_text = "1280x720"
    else:
        parts = tuple(map(int, str(reso).split(",")))
        reso_text = f"{parts[0]}x{parts[-1]}"
    md = {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": (args.metadata_arch or arch.modelspec_arch) + "/lora",
        "modelspec.implementation": arch.modelspec_impl,
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

    def __init__(self, args, accelerator, metadata: dict[str, str], network, arch: Arch):
        self.args, self.accelerator, self.metadata, self.network, self.arch = args, accelerator, metadata, network, arch
        self.dtype = save_dtype(args)
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
        title = args.metadata_title if args.metadata_title is not None else args.output_name
        md.update(sai_metadata(args, title, self.arch))
        self.accelerator.unwrap_model(self.network).save_weights(ckpt_file, self.dtype, md)

    def remove_model(self, ckpt_name: str) -> None:
        old = os.path.join(self.args.output_dir, ckpt_name)
        if os.path.exists(old):
            self.accelerator.print(f"removing old checkpoint: {old}")
            os.remove(old)

    def save_state(self, state_dir: str, global_step: int) -> None:
        """accelerator.save_state (musubi's pre-hook leaves only the network's weights in)."""
        with _hooks.kill_in_state_save(global_step):
            self.accelerator.save_state(state_dir)

    def step_end(self, global_step: int, epoch: int) -> None:
        """The --save_every_n_steps save at a step multiple (main process): LoRA, state (pruned), LoRA pruning."""
        args = self.args
        self.save_model(f"{args.output_name}-step{global_step:08d}.safetensors", global_step, epoch)
        if args.save_state:
            utils_logger.info("")
            utils_logger.info(f"saving state at step {global_step}")
            os.makedirs(args.output_dir, exist_ok=True)
            self.save_state(
                os.path.join(args.output_dir, f"{args.output_name}-step{global_step:08d}-state"), global_step
            )
            last_n = args.save_last_n_steps_state if args.save_last_n_steps_state else args.save_last_n_steps
            if last_n is not None:
                remove_no = global_step - last_n - 1
                remove_no -= remove_no % args.save_every_n_steps
                old = os.path.join(args.output_dir, f"{args.output_name}-step{remove_no:08d}-state")
                if remove_no > 0 and os.path.exists(old):
                    utils_logger.info(f"removing old state: {old}")
                    shutil.rmtree(old)
        if args.save_last_n_steps is not None:
            remove_no = global_step - args.save_last_n_steps - 1
            remove_no -= remove_no % args.save_every_n_steps
            if remove_no >= 0:
                self.remove_model(f"{args.output_name}-step{remove_no:08d}.safetensors")

    def epoch_end(self, epoch_no: int, global_step: int) -> None:
        """The end-of-epoch save and pruning (only when save_every_n_epochs divides it and it is not the last)."""
        args = self.args
        self.save_model(f"{args.output_name}-{epoch_no:06d}.safetensors", global_step, epoch_no)
        if args.save_last_n_epochs is not None:
            remove_no = epoch_no - args.save_every_n_epochs * args.save_last_n_epochs
            if remove_no >= 0:
                self.remove_model(f"{args.output_name}-{remove_no:06d}.safetensors")
        if args.save_state:
            utils_logger.info("")
            utils_logger.info(f"saving state at epoch {epoch_no}")
            os.makedirs(args.output_dir, exist_ok=True)
            self.save_state(os.path.join(args.output_dir, f"{args.output_name}-{epoch_no:06d}-state"), global_step)
            last_n = args.save_last_n_epochs_state if args.save_last_n_epochs_state else args.save_last_n_epochs
            if last_n is not None:
                old = os.path.join(
                    args.output_dir, f"{args.output_name}-{epoch_no - args.save_every_n_epochs * last_n:06d}-state"
                )
                if os.path.exists(old):
                    utils_logger.info(f"removing old state: {old}")
                    shutil.rmtree(old)

    def train_end(self, global_step: int, num_epochs: int) -> None:
        args = self.args
        if args.save_state or args.save_state_on_train_end:
            utils_logger.info("")
            utils_logger.info("saving last state.")
            os.makedirs(args.output_dir, exist_ok=True)
            self.save_state(os.path.join(args.output_dir, f"{args.output_name}-state"), global_step)
            _hooks.kill_before_final_lora(
                os.path.join(args.output_dir, f"{args.output_name}-state"), self.accelerator.unwrap_model(self.network)
            )
        # musubi builds the name as output_name + ".safetensors" (a TypeError when --output_name is missing)
        self.save_model(args.output_name + ".safetensors", global_step, num_epochs)


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
    arch: Arch,
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
        "ss_base_model_version": arch.base_model_version,
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


def check_batch(args, batch: dict) -> None:
    """What the first forward of a batch would reject: i2v without image latents (call_dit), flash3 (attention)."""
    if args.flash3:
        raise ValueError("Unsupported attention mode: flash3")
    assert args.task != "i2v" or batch["has_latents_image"], (
        "Expected latents_image for I2V training. Add `--i2v` and `--image_encoder` arguments for "
        "`hv_1_5_cache_latents` script. / I2V学習ではlatents_imageが必要です。`hv_1_5_cache_latents`スクリプトに"
        "`--i2v`と`--image_encoder`引数を追加してください。"
    )


def fake_loss(seed: int, step: int) -> float:
    """A plausible, slowly falling loss: deterministic for (seed, step)."""
    return 0.12 / (1.0 + 0.05 * step) + 0.01 * random.Random(seed * 100003 + step).random()


def compute_loss(network, args, global_step: int) -> torch.Tensor:
    """A loss whose value is fake_loss (NaN from STANDIN_NAN_FROM_STEP on) and whose gradient w.r.t. each network
    parameter is fresh torch-RNG noise (as musubi draws its noise), NaN when the loss is."""
    nan = _hooks.nan_loss(global_step + 1)
    surrogate = sum((p * torch.randn_like(p)).sum() for p in network.parameters())
    if nan:
        surrogate = surrogate * float("nan")
    return surrogate - surrogate.detach() + (float("nan") if nan else fake_loss(args.seed, global_step))


class Run:
    """What the loop works with (musubi passes these as arguments)."""

    def __init__(self, args, accelerator, network, optimizer, lr_scheduler, lr_descriptions, dataloader, dataset, arch):
        self.args, self.accelerator, self.network, self.arch = args, accelerator, network, arch
        self.optimizer, self.lr_scheduler, self.lr_descriptions = optimizer, lr_scheduler, lr_descriptions
        self.dataloader, self.dataset = dataloader, dataset
        self.events = None
        self.sample_parameters = None
        self.saver_metadata: dict[str, str] = {}
        self.saver: Saver | None = None
        self.kill_pending = False

    def log(self, values: dict, step: int) -> None:
        if self.events is not None:
            self.events.scalars(step, values)

    def step_logs(self, current_loss: float, avr_loss: float) -> dict:
        """generate_step_logs: the losses and one lr/<description> per param group."""
        logs = {"loss/current": current_loss, "loss/average": avr_loss}
        lrs = self.lr_scheduler.get_last_lr()
        for i, lr in enumerate(lrs):
            if self.lr_descriptions is not None:
                desc = self.lr_descriptions[i]
            else:
                desc = f"group{i}" if len(lrs) > 2 else "unet"
            logs[f"lr/{desc}"] = lr
        return logs

    def sample(self, epoch, steps: int) -> None:
        network = self.accelerator.unwrap_model(self.network)
        self.arch.sample_images(self.accelerator, self.args, epoch, steps, network, self.sample_parameters)

    def check_kill(self) -> None:
        """STANDIN_KILL_AT_STEP: die before anything after the step's own work (and its epoch end) happens."""
        if self.kill_pending:
            _hooks.kill_group(f"STANDIN_KILL_AT_STEP={os.environ['STANDIN_KILL_AT_STEP']}")


def train_loop(run: Run, num_epochs: int) -> int:
    """Epochs of batches; returns the (local) global step count. Samples and saves as _run_training_loop does."""
    args, accelerator, network = run.args, run.accelerator, run.network
    progress = tqdm(
        range(args.max_train_steps), smoothing=0, disable=not accelerator.is_local_main_process, desc="steps"
    )
    global_step = 0  # epoch_to_start = 0 as well: a resumed run starts over
    recorder = LossRecorder()
    run.saver = saver = Saver(args, accelerator, run.saver_metadata, network, run.arch)
    if _sampling.should_sample_images(args, global_step, epoch=0):  # --sample_at_first
        run.sample(0, global_step)
    _hooks.work_starts(run.arch.module, logger)
    for epoch in range(num_epochs):
        run.check_kill()
        accelerator.print(f"\nepoch {epoch + 1}/{num_epochs}")
        run.dataset.shared_epoch = epoch + 1
        run.saver_metadata["ss_epoch"] = str(epoch + 1)
        for step, batch in enumerate(run.dataloader):
            run.check_kill()
            with accelerator.accumulate(network):
                run.arch.check_batch(args, batch)
                loss = compute_loss(network, args, global_step)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    if accelerator.distributed_type != DistributedType.NO:  # musubi all-reduces LoRA grads itself
                        for param in network.parameters():
                            if param.grad is not None:
                                param.grad = accelerator.reduce(param.grad, reduction="mean")
                    if args.max_grad_norm != 0.0:
                        accelerator.clip_grad_norm_(network.parameters(), args.max_grad_norm)
                run.optimizer.step()
                run.lr_scheduler.step()
                run.optimizer.zero_grad(set_to_none=True)
            if accelerator.sync_gradients:
                if global_step == 0:
                    progress.reset()  # musubi excludes the first (slow) step from the bar's timing
                progress.update(1)
                global_step += 1
                if _sampling.should_sample_images(args, global_step, epoch=None):
                    run.sample(None, global_step)
                if args.save_every_n_steps is not None and global_step % args.save_every_n_steps == 0:
                    accelerator.wait_for_everyone()
                    if accelerator.is_main_process:
                        saver.step_end(global_step, epoch)
                run.kill_pending = _hooks.kill_after_step_due(global_step)
            current_loss = loss.detach().item()
            recorder.add(epoch, step, current_loss)
            progress.set_postfix(avr_loss=recorder.moving_average)
            run.log(run.step_logs(current_loss, recorder.moving_average), global_step)
            if global_step >= args.max_train_steps:
                break
        run.log({"loss/epoch": recorder.moving_average}, epoch + 1)
        accelerator.wait_for_everyone()
        if args.save_every_n_epochs is not None:
            if (epoch + 1) % args.save_every_n_epochs == 0 and (epoch + 1) < num_epochs and accelerator.is_main_process:
                saver.epoch_end(epoch + 1, global_step)
        run.sample(epoch + 1, global_step)
    run.check_kill()
    progress.close()
    return global_step


def train(args, arch: Arch | None = None) -> None:
    arch = arch or HV15
    arch.validate(args)
    if args.show_timesteps:
        logger.info("standin: --show_timesteps is not simulated")
        return
    from accelerate.utils import set_seed

    session_id, started_at = random.randint(0, 2**32), time.time()
    if args.seed is None:
        args.seed = random.randint(0, 2**32)
    set_seed(args.seed)
    datasets = build_datasets(args)
    dataset = BatchDataset(datasets, random.randint(0, 2**31))  # the datasets' seed, drawn after set_seed
    accelerator, run_dir = prepare_accelerator(args)
    sample_parameters = arch.prepare_sampling(args)
    arch.check_swap(args)
    transformer = FrozenDiT()
    network, net_kwargs = build_network(args, accelerator, arch.network_kwargs(args))

    accelerator.print("prepare optimizer, data loader etc.")
    trainable_params, lr_descriptions = network.prepare_optimizer_params(unet_lr=args.learning_rate)
    optimizer_name, optimizer_args, optimizer = _optim.get_optimizer(args, trainable_params)
    dataloader = build_dataloader(args, dataset)
    compute_steps(args, accelerator, len(dataloader))
    lr_scheduler = _optim.get_lr_scheduler(args, optimizer, accelerator.num_processes)

    args.full_fp16 = args.full_bf16 = False  # _prepare_with_accelerator: "temporary disabled" in v0.3.4
    swap = (args.blocks_to_swap or 0) > 0
    transformer = _hooks.prepare_frozen(accelerator, transformer, device_placement=[not swap])
    network, optimizer, dataloader, lr_scheduler = accelerator.prepare(network, optimizer, dataloader, lr_scheduler)
    register_hooks(accelerator, network)
    if args.resume:
        if args.resume_from_huggingface:
            raise NotImplementedError("standin: --resume_from_huggingface is not simulated")
        base_logger.info(f"resume training from local state: {args.resume}")
        accelerator.load_state(args.resume)

    num_epochs = compute_epochs(args, len(dataloader))
    num_items = sum(d.num_train_items for d in datasets)
    print_header(accelerator, args, datasets, num_items, len(dataloader), num_epochs)
    optimizer_text = optimizer_name + (f"({optimizer_args})" if optimizer_args else "")
    run = Run(args, accelerator, network, optimizer, lr_scheduler, lr_descriptions, dataloader, dataset, arch)
    run.saver_metadata = base_metadata(
        args, datasets, num_items, len(dataloader), num_epochs, optimizer_text, net_kwargs, session_id, started_at, arch
    )
    run.sample_parameters = sample_parameters
    if run_dir is not None and accelerator.is_main_process:
        run.events = _tfevents.EventWriter(Path(run_dir) / (args.log_tracker_name or "network_train"))
    global_step = train_loop(run, num_epochs)
    run.saver_metadata["ss_training_finished_at"] = str(time.time())
    accelerator.end_training()
    if run.events is not None:
        run.events.close()
    if accelerator.is_main_process:
        run.saver.train_end(global_step, num_epochs)
        base_logger.info("model saved.")


def register_hooks(accelerator, network) -> None:
    """_register_hooks_and_resume: states hold only the network (the DiT's weights are dropped on save, and the DiT
    is not loaded on resume)."""
    network_type = type(accelerator.unwrap_model(network))

    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for i in reversed([i for i, m in enumerate(models) if not isinstance(m, network_type)]):
                if len(weights) > i:
                    weights.pop(i)

    def load_model_hook(models, input_dir):
        for i in reversed([i for i, m in enumerate(models) if not isinstance(m, network_type)]):
            models.pop(i)

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)


HV15 = Arch(
    MODULE,
    validate_args,
    check_attention_and_swap,
    check_batch,
    _sampling.prepare_sampling,
    _sampling.sample_images,
    lambda args: {},
    _dataset.ARCHITECTURE_FULL,
    "hunyuan-video-1.5",
    "https://github.com/Tencent-Hunyuan/HunyuanVideo-1.5",
)


def main() -> None:
    _hooks.record_call(MODULE)
    parser = _flags.build_parser(MODULE)
    args = parser.parse_args()
    args = read_config_from_file(args, parser)
    train(args)


if __name__ == "__main__":
    _common.sageattention_probe()
    main()
