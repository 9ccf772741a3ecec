"""The stand-in's test hooks (STANDIN_* environment variables; documented in the package docstring).

Nothing here mirrors musubi: these are the knobs a test turns to make a stage record its argv, fail, block until a
signal (with a DataLoader-like worker in the same process group) or write a LoRA with a module missing.
"""

from __future__ import annotations

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
