"""Optimizer and LR scheduler construction as musubi v0.3.4 does it: training/trainer_base.NetworkTrainer.get_optimizer
and get_lr_scheduler, written anew with the same precedence, checks, messages and objects.

Real objects: a torch optimizer over the stand-in network's parameters and a torch LRScheduler, so that accelerate
wraps them (AcceleratedOptimizer / AcceleratedScheduler: the scheduler steps `num_processes` times per optimizer
step) and save_state writes their real state dicts. Differences, all for speed or missing packages:
- transformers is imported only when something from it is needed (musubi imports it at start-up, which costs
  seconds): `constant` and `constant_with_warmup` are built here as the same LambdaLR transformers builds (same
  lambdas, same state dict); every other --lr_scheduler name, Adafactor and the adafactor scheduler come from
  transformers itself, as do its error messages;
- bitsandbytes is not installed: `AdamW8bit` is torch's AdamW under bitsandbytes' class name (so ss_optimizer is
  `bitsandbytes.optim.adamw.AdamW8bit`); its 8-bit-only arguments are accepted and ignored;
- `rex` (musubi's RexLR) and `piecewise_constant` (diffusers) raise NotImplementedError.
"""

from __future__ import annotations

import ast
import functools
import importlib
import logging
from enum import Enum

import torch
from torch.optim.lr_scheduler import LambdaLR

logger = logging.getLogger("musubi_tuner.training.trainer_base")


def _literal_kwargs(pairs: list[str] | None) -> dict:
    """`k=v` strings with Python-literal values (ast.literal_eval), as musubi parses --optimizer_args and
    --lr_scheduler_args (a value with '=' in it fails the unpacking, as there)."""
    kwargs = {}
    for arg in pairs or []:
        key, value = arg.split("=")
        kwargs[key] = ast.literal_eval(value)
    return kwargs


class AdamW8bit(torch.optim.AdamW):
    """Stands for bitsandbytes.optim.AdamW8bit (not installed): torch's AdamW, same defaults as bnb's."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        optim_bits=32,
        args=None,
        min_8bit_size=4096,
        percentile_clipping=100,
        block_wise=True,
        is_paged=False,
    ):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


AdamW8bit.__module__ = "bitsandbytes.optim.adamw"


def get_optimizer(args, trainable_params) -> tuple[str, str, torch.optim.Optimizer]:
    """(optimizer class path, "k=v,..." args text, optimizer). May set args.learning_rate = None and
    args.lr_scheduler = "adafactor:<lr>" (Adafactor with relative_step), as musubi does."""
    optimizer_type = args.optimizer_type.lower()
    kwargs = _literal_kwargs(args.optimizer_args)
    lr = args.learning_rate
    optimizer = optimizer_class = None

    if optimizer_type.endswith("8bit"):
        if optimizer_type == "adamw8bit":
            logger.info(f"use 8-bit AdamW optimizer | {kwargs}")
            optimizer_class = AdamW8bit
            optimizer = optimizer_class(trainable_params, lr=lr, **kwargs)
    elif optimizer_type == "adafactor":
        kwargs.setdefault("relative_step", True)
        if not kwargs["relative_step"] and kwargs.get("warmup_init", False):
            logger.info(
                "set relative_step to True because warmup_init is True / warmup_initがTrueのためrelative_stepをTrueにします"
            )
            kwargs["relative_step"] = True
        logger.info(f"use Adafactor optimizer | {kwargs}")
        if kwargs["relative_step"]:
            logger.info("relative_step is true / relative_stepがtrueです")
            if lr != 0.0:
                logger.warning(
                    "learning rate is used as initial_lr / 指定したlearning rateはinitial_lrとして使用されます"
                )
            args.learning_rate = None
            if args.lr_scheduler != "adafactor":
                logger.info("use adafactor_scheduler / スケジューラにadafactor_schedulerを使用します")
            args.lr_scheduler = f"adafactor:{lr}"
            lr = None
        import transformers.optimization

        optimizer_class = transformers.optimization.Adafactor
        optimizer = optimizer_class(trainable_params, lr=lr, **kwargs)
    elif optimizer_type == "adamw":
        logger.info(f"use AdamW optimizer | {kwargs}")
        optimizer_class = torch.optim.AdamW
        optimizer = optimizer_class(trainable_params, lr=lr, **kwargs)

    if optimizer is None:  # any optimizer: torch.optim.<Name> or a dotted path
        type_name = args.optimizer_type
        logger.info(f"use {type_name} | {kwargs}")
        if "." not in type_name:
            module = torch.optim
        else:
            parts = type_name.split(".")
            module, type_name = importlib.import_module(".".join(parts[:-1])), parts[-1]
        optimizer_class = getattr(module, type_name)
        optimizer = optimizer_class(trainable_params, lr=lr, **kwargs)

    name = optimizer_class.__module__ + "." + optimizer_class.__name__
    return name, ",".join(f"{k}={v}" for k, v in kwargs.items()), optimizer


# --- schedulers ---------------------------------------------------------------------------------------------------


class SchedulerType(str, Enum):
    """The two members of transformers' SchedulerType (an ExplicitEnum) built here; formats as that enum does
    (f"{SchedulerType.CONSTANT}" is "SchedulerType.CONSTANT" on Python 3.11, as in musubi's warmup message)."""

    CONSTANT = "constant"
    CONSTANT_WITH_WARMUP = "constant_with_warmup"


def _constant_lambda(_=None):
    return 1


def _constant_with_warmup_lambda(current_step: int, *, num_warmup_steps: int):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1.0, num_warmup_steps))
    return 1.0


def get_constant_schedule(optimizer, last_epoch: int = -1):
    """transformers.get_constant_schedule: LambdaLR with a plain function (state dict lr_lambdas [None])."""
    return LambdaLR(optimizer, _constant_lambda, last_epoch=last_epoch)


def get_constant_schedule_with_warmup(optimizer, num_warmup_steps: int, last_epoch: int = -1):
    """transformers.get_constant_schedule_with_warmup: LambdaLR with a partial (state dict lr_lambdas [{}])."""
    lr_lambda = functools.partial(_constant_with_warmup_lambda, num_warmup_steps=num_warmup_steps)
    return LambdaLR(optimizer, lr_lambda, last_epoch=last_epoch)


NATIVE = {
    SchedulerType.CONSTANT: get_constant_schedule,
    SchedulerType.CONSTANT_WITH_WARMUP: get_constant_schedule_with_warmup,
}


def _scheduler_type(name: str):
    """(SchedulerType(name), its schedule function): the two cheap ones here, the rest (and the ValueError for an
    unknown name) from transformers.optimization."""
    if name in {t.value for t in NATIVE}:
        t = SchedulerType(name)
        return t, NATIVE[t]
    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION
    from transformers.optimization import SchedulerType as TransformersSchedulerType

    t = TransformersSchedulerType(name)
    return t, TYPE_TO_SCHEDULER_FUNCTION[t]


def get_lr_scheduler(args, optimizer, num_processes: int):
    """get_lr_scheduler: --lr_scheduler_type (any callable, torch.optim.lr_scheduler.<Name> or a dotted path, called
    as fn(optimizer, **--lr_scheduler_args)) wins; else adafactor, else the named transformers schedules with
    num_training_steps = max_train_steps x num_processes and the warmup/decay steps (int, or a ratio of that)."""
    name = args.lr_scheduler
    num_training_steps = args.max_train_steps * num_processes
    warmup, decay = args.lr_warmup_steps, args.lr_decay_steps
    num_warmup_steps = int(warmup * num_training_steps) if isinstance(warmup, float) else warmup
    num_decay_steps = int(decay * num_training_steps) if isinstance(decay, float) else decay
    num_stable_steps = num_training_steps - num_warmup_steps - num_decay_steps
    num_cycles = args.lr_scheduler_num_cycles
    power = args.lr_scheduler_power
    timescale = args.lr_scheduler_timescale
    min_lr_ratio = args.lr_scheduler_min_lr_ratio
    kwargs = _literal_kwargs(args.lr_scheduler_args)

    def no_warmup(scheduler):
        # musubi's wrap_check_needless_num_warmup_steps: `name` is read when called (by then the SchedulerType)
        if num_warmup_steps is not None and num_warmup_steps != 0:
            raise ValueError(f"{name} does not require `num_warmup_steps`. Set None or 0.")
        return scheduler

    if args.lr_scheduler_type:
        type_name = args.lr_scheduler_type
        logger.info(f"use {type_name} | {kwargs} as lr_scheduler")
        if "." not in type_name:
            module = torch.optim.lr_scheduler
        else:
            parts = type_name.split(".")
            module, type_name = importlib.import_module(".".join(parts[:-1])), parts[-1]
        return getattr(module, type_name)(optimizer, **kwargs)

    if name.startswith("adafactor"):
        import transformers.optimization

        assert type(optimizer) is transformers.optimization.Adafactor, (
            "adafactor scheduler must be used with Adafactor optimizer / adafactor schedulerはAdafactorオプティマイザと同時に使ってください"
        )
        initial_lr = float(name.split(":")[1])
        return no_warmup(transformers.optimization.AdafactorSchedule(optimizer, initial_lr))

    if name.lower() == "rex" or name == "piecewise_constant":
        raise NotImplementedError(f"standin: --lr_scheduler {name} is not simulated")

    name, schedule_func = _scheduler_type(name)

    if name == "constant":
        return no_warmup(schedule_func(optimizer, **kwargs))
    if num_warmup_steps is None:
        raise ValueError(f"{name} requires `num_warmup_steps`, please provide that argument.")
    if name == "constant_with_warmup":
        return schedule_func(optimizer, num_warmup_steps=num_warmup_steps, **kwargs)
    if name == "inverse_sqrt":
        return schedule_func(optimizer, num_warmup_steps=num_warmup_steps, timescale=timescale, **kwargs)
    if num_training_steps is None:
        raise ValueError(f"{name} requires `num_training_steps`, please provide that argument.")
    steps = {"num_warmup_steps": num_warmup_steps, "num_training_steps": num_training_steps}
    if name == "cosine_with_restarts":
        return schedule_func(optimizer, **steps, num_cycles=num_cycles, **kwargs)
    if name == "polynomial":
        return schedule_func(optimizer, **steps, power=power, **kwargs)
    if name == "cosine_with_min_lr":
        return schedule_func(optimizer, **steps, num_cycles=num_cycles / 2, min_lr_rate=min_lr_ratio, **kwargs)
    if name in ("linear", "cosine"):
        return schedule_func(optimizer, **steps, **kwargs)
    if num_decay_steps is None:
        raise ValueError(f"{name} requires `num_decay_steps`, please provide that argument.")
    if name == "warmup_stable_decay":
        return schedule_func(
            optimizer,
            num_warmup_steps=num_warmup_steps,
            num_stable_steps=num_stable_steps,
            num_decay_steps=num_decay_steps,
            num_cycles=num_cycles / 2,
            min_lr_ratio=min_lr_ratio if min_lr_ratio is not None else 0.0,
            **kwargs,
        )
    return schedule_func(optimizer, **steps, num_decay_steps=num_decay_steps, **kwargs)
