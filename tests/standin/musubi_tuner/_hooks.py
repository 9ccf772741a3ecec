"""The stand-in's test hooks (STANDIN_* environment variables; documented in the package docstring).

Nothing here mirrors musubi: these are the knobs a test turns to make a stage record its argv, fail, block until a
signal (with a DataLoader-like worker in the same process group), write a LoRA with a module missing, die of
SIGKILL at a chosen point (leaving what a real kill there would leave) or produce NaN losses.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import multiprocessing
import os
import signal
import sys
from pathlib import Path

WORKER_JOIN_S = 5.0  # torch's DataLoader waits about this long (MP_STATUS_CHECK_INTERVAL) for workers at exit


def _names(var: str) -> list[str]:
    return [x.strip() for x in os.environ.get(var, "").split(",") if x.strip()]


def short_name(module: str) -> str:
    """musubi_tuner.networks.convert_... -> convert_..."""
    return module.rsplit(".", 1)[-1]


def record_call(module: str) -> None:
    """STANDIN_CALLS: append {"module", "argv", "pid"} as one JSON line (one write call, so lines stay whole).
    "module" is the name inside the package (hv_1_5_train_network, networks.convert_...), "argv" all of sys.argv."""
    path = os.environ.get("STANDIN_CALLS")
    if not path:
        return
    name = module.split(".", 1)[1] if module.startswith("musubi_tuner.") else module
    line = json.dumps({"module": name, "argv": list(sys.argv), "pid": os.getpid()}) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


def work_starts(module: str, logger: logging.Logger) -> None:
    """Called where the real script starts its long work (after parsing, checks and dataset loading):
    STANDIN_FAIL raises, STANDIN_BLOCK waits for a signal."""
    name = short_name(module)
    if name in _names("STANDIN_FAIL"):
        logger.info("standin: STANDIN_FAIL=%s set, failing now", name)
        logger.info("standin: this is the last line before the traceback")
        raise RuntimeError(f"standin: simulated failure of {name} (STANDIN_FAIL)")
    if name in _names("STANDIN_BLOCK"):
        _block()


def _worker_main() -> None:
    """A blocked DataLoader worker: ends quietly on SIGINT, like torch's _worker_loop (it catches
    KeyboardInterrupt)."""
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


def _write_pidfile(path: str, pids: list[int]) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text("".join(f"{pid}\n" for pid in pids))
    os.replace(tmp, path)  # readers never see a half-written file


def _block() -> None:
    """Start a worker (fork: same process group, like DataLoader workers), publish both pids, wait for a signal.
    On SIGINT the KeyboardInterrupt is re-raised after the worker ended, so the process dies as Python does."""
    ctx = multiprocessing.get_context("fork")
    worker = ctx.Process(target=_worker_main, name="standin-worker", daemon=True)
    worker.start()
    pidfile = os.environ.get("STANDIN_PIDFILE")
    if pidfile:
        _write_pidfile(pidfile, [os.getpid(), worker.pid])
    print("standin: waiting for a signal", flush=True)
    try:
        while True:
            signal.pause()
    finally:
        # Reached on KeyboardInterrupt (or any exception from a signal handler): wait for the worker like a
        # DataLoader's shutdown does, then make sure it is gone.
        worker.join(WORKER_JOIN_S)
        if worker.is_alive():
            worker.terminate()
            worker.join()


def dropped(lora_name: str) -> bool:
    """STANDIN_DROP_MODULE: is this LoRA module (e.g. lora_unet_double_blocks_0_img_attn_k) left out?"""
    for prefix in _names("STANDIN_DROP_MODULE"):
        if lora_name.startswith(prefix) or lora_name.startswith("lora_unet_" + prefix):
            return True
    return False


def int_env(var: str) -> int | None:
    """An integer hook value, or None when the variable is unset or empty."""
    value = os.environ.get(var, "").strip()
    return int(value) if value else None


def kill_group(reason: str) -> None:
    """SIGKILL this process's whole process group (the accelerate launcher included, as an OOM killer or `kill -9
    -PGID` would). One line naming the hook goes to stderr first, and stdout/stderr are flushed, so a test sees the
    log up to here; nothing else is cleaned up or flushed (open files keep what was written to them)."""
    sys.stdout.flush()
    sys.stderr.write(f"\nstandin: {reason}: SIGKILL to process group {os.getpgrp()}\n")
    sys.stderr.flush()
    os.killpg(os.getpgrp(), signal.SIGKILL)
    signal.pause()  # not reached


def kill_after_step_due(global_step: int) -> bool:
    """STANDIN_KILL_AT_STEP=N: is the trainer past the end of step N (so it must die before doing anything else)?"""
    n = int_env("STANDIN_KILL_AT_STEP")
    return n is not None and global_step == n


@contextlib.contextmanager
def kill_in_state_save(global_step: int):
    """STANDIN_KILL_IN_STATE_SAVE=N: around the accelerator.save_state call(s) made at global step N, the first
    write of `optimizer.bin` writes only the first half of its bytes (model.safetensors is complete by then) and the
    process group is killed. Outside step N: no effect."""
    n = int_env("STANDIN_KILL_IN_STATE_SAVE")
    if n is None or global_step != n:
        yield
        return
    import torch
    from accelerate import checkpointing

    original = checkpointing.save

    def save(obj, f, *args, **kwargs):
        if Path(f).name == "optimizer.bin":
            buffer = io.BytesIO()
            torch.save(obj, buffer)
            data = buffer.getvalue()
            with open(f, "wb") as out:
                out.write(data[: len(data) // 2])
            kill_group(f"STANDIN_KILL_IN_STATE_SAVE={n}, {f} half written")
        return original(obj, f, *args, **kwargs)

    checkpointing.save = save
    try:
        yield
    finally:
        checkpointing.save = original


_cache_files_written = 0


def save_cache_file(sd: dict, path: str, metadata: dict[str, str]) -> None:
    """safetensors save_file for the cache scripts, with STANDIN_KILL_AFTER_ITEMS=N: once N files were written by
    this process, the next one gets only the first half of its bytes and the process group is killed."""
    global _cache_files_written
    from safetensors.torch import save, save_file

    n = int_env("STANDIN_KILL_AFTER_ITEMS")
    if n is not None and _cache_files_written >= n:
        data = save(sd, metadata)
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        kill_group(f"STANDIN_KILL_AFTER_ITEMS={n}, {path} half written")
    save_file(sd, path, metadata=metadata)
    _cache_files_written += 1


def kill_before_final_lora(state_dir: str, network) -> None:
    """STANDIN_KILL_BEFORE_FINAL_LORA=1: die between the final state and the final LoRA. The stand-in's states hold
    its tiny network; this one then holds what a real musubi state's model.safetensors holds (the LoRA network's
    state dict: musubi's key names, float32), so the LoRA can be rebuilt from it as from a real one."""
    if not int_env("STANDIN_KILL_BEFORE_FINAL_LORA"):
        return
    import torch
    from safetensors.torch import save_file

    save_file(network.lora_state_dict(torch.float32), os.path.join(state_dir, "model.safetensors"))
    kill_group("STANDIN_KILL_BEFORE_FINAL_LORA=1, the final state saved, the final LoRA not")


def prepare_frozen(accelerator, module, **kwargs):
    """accelerator.prepare of the frozen DiT; with STANDIN_FROZEN_DIT_AS_ON_GPUS=1 on MULTI_CPU, as on GPUs: moved
    to the device, not DDP-wrapped (accelerate's prepare_model wraps only models with trainable parameters there)."""
    from accelerate.utils import DistributedType

    if int_env("STANDIN_FROZEN_DIT_AS_ON_GPUS") and accelerator.distributed_type == DistributedType.MULTI_CPU:
        return module.to(accelerator.device)
    return accelerator.prepare(module, **kwargs)


def nan_loss(step_no: int) -> bool:
    """STANDIN_NAN_FROM_STEP=N: is the loss of optimizer step `step_no` (1-based: the step that the micro-batch
    completes or accumulates into) NaN?"""
    n = int_env("STANDIN_NAN_FROM_STEP")
    return n is not None and step_no >= n
