"""Which GPUs a CUDA process would see, how much host RAM there is, and GPU memory peaks sampled with NVML.

NVML comes from the `pynvml` module of the nvidia-ml-py package, imported lazily; every function takes an `nvml`
module object so that tests pass a fake. Sizes are bytes; GpuInfo.total_gib gives GiB (2**30 bytes), the unit of
hvlora.presets and nvidia-smi. Nothing here raises because NVML or the driver is missing or fails: detect_gpus()
answers [] and PeakSampler records the error.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..core.fsutil import GIB

# cgroup v1 reports "no limit" as a huge page-aligned number (9223372036854771712); anything above this is no limit.
_CGROUP_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class GpuInfo:
    """One GPU: index = its NVML index (nvidia-smi's; -1 for a MIG instance, which NVML indexes under its parent),
    name, total_bytes (total memory in bytes, as NVML reports it), uuid ("GPU-..." or "MIG-...")."""

    index: int
    name: str
    total_bytes: int
    uuid: str

    @property
    def total_gib(self) -> float:
        """Total memory in GiB (what presets.preset_for_vram takes)."""
        return self.total_bytes / GIB


def _load_nvml(nvml: Any | None) -> Any | None:
    """The given module, else pynvml, else None when nvidia-ml-py is not installed."""
    if nvml is not None:
        return nvml
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _text(value: bytes | str) -> str:
    """pynvml answers str (>= 11.5) or bytes (older)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def detect_gpus(nvml: ModuleType | Any | None = None, env: Mapping[str, str] = os.environ) -> list[GpuInfo]:
    """The GPUs a CUDA process started with env would see, in CUDA's order, via NVML (nvmlInit ...
    nvmlShutdown).

    CUDA_VISIBLE_DEVICES as CUDA reads it: unset = all GPUs; a comma list of NVML indices, "GPU-" UUIDs (a unique
    prefix is enough) or one "MIG-" UUID; "" = none; the list ends at the first entry that names no GPU (so "-1"
    hides all) or repeats one. Unset, the order is NVML's (PCI bus) order: CUDA's own default (fastest first) can
    differ on a mix of GPU models, but the set is the same. A MIG entry needs nvmlDeviceGetHandleByUUID.
    No nvidia-ml-py, no driver or any NVML error -> [] (never raises)."""
    nvml = _load_nvml(nvml)
    if nvml is None:
        return []
    try:
        nvml.nvmlInit()
    except Exception:
        return []
    try:
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            gpus.append(
                GpuInfo(
                    index=i,
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    total_bytes=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
                    uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                )
            )
        visible = env.get("CUDA_VISIBLE_DEVICES")
        return gpus if visible is None else _visible(nvml, gpus, visible)
    except Exception:
        return []
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def _visible(nvml: Any, gpus: list[GpuInfo], spec: str) -> list[GpuInfo]:
    """gpus filtered and ordered by a CUDA_VISIBLE_DEVICES value (see detect_gpus)."""
    out: list[GpuInfo] = []
    for token in (t.strip() for t in spec.split(",")):
        if token.upper().startswith("MIG-"):
            mig = _mig(nvml, token)
            if mig is not None and not out:
                out.append(mig)
            break  # CUDA sees at most one MIG instance, and nothing after it
        if token.upper().startswith("GPU-"):
            match = [g for g in gpus if g.uuid.lower().startswith(token.lower())]
            gpu = match[0] if len(match) == 1 else None
        elif token.isdigit():
            gpu = gpus[int(token)] if int(token) < len(gpus) else None
        else:
            gpu = None
        if gpu is None or gpu in out:
            break
        out.append(gpu)
    return out


def _mig(nvml: Any, uuid: str) -> GpuInfo | None:
    """A MIG instance by UUID, or None when NVML cannot find it."""
    try:
        handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
        return GpuInfo(-1, _text(nvml.nvmlDeviceGetName(handle)), int(nvml.nvmlDeviceGetMemoryInfo(handle).total), uuid)
    except Exception:
        return None


def _meminfo(path: str | os.PathLike[str], key: str) -> int:
    """One /proc/meminfo field in bytes ("MemTotal:  24731184 kB"). Raises OSError, ValueError when absent."""
    for line in Path(path).read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == key:
            fields = rest.split()
            return int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    raise ValueError(f"{path} has no {key} line")


def _read_int(path: Path) -> int | None:
    """An integer file of a cgroup; None when absent, "max" or unreadable."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat(path: Path, key: str) -> int:
    """One field of a cgroup memory.stat file, 0 when absent."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _cgroup(root: str | os.PathLike[str]) -> tuple[int | None, int]:
    """(memory limit in bytes or None, usage in bytes without inactive page cache) of this container's cgroup: v2
    memory.max / memory.current / memory.stat at root, else v1 memory/memory.limit_in_bytes / usage_in_bytes / stat
    (usage counted as `docker stats` does)."""
    root = Path(root)
    for limit_file, usage_file, stat_file, inactive in (
        ("memory.max", "memory.current", "memory.stat", "inactive_file"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat", "total_inactive_file"),
    ):
        limit = _read_int(root / limit_file)
        if limit is not None and limit < _CGROUP_UNLIMITED:
            usage = _read_int(root / usage_file) or 0
            return limit, max(0, usage - _stat(root / stat_file, inactive))
    return None, 0


def host_ram_bytes(meminfo_path: str | os.PathLike[str] = "/proc/meminfo", cgroup_root: str = "/sys/fs/cgroup") -> int:
    """Host RAM in bytes: MemTotal of meminfo_path, or the cgroup memory limit when lower (a Docker container
    started with --memory; v2 memory.max or v1 memory.limit_in_bytes under cgroup_root). Raises OSError when
    meminfo_path cannot be read, ValueError when it has no MemTotal."""
    total = _meminfo(meminfo_path, "MemTotal")
    limit, _ = _cgroup(cgroup_root)
    return total if limit is None else min(total, limit)


def host_available_bytes(
    meminfo_path: str | os.PathLike[str] = "/proc/meminfo", cgroup_root: str = "/sys/fs/cgroup"
) -> int:
    """RAM in bytes a new process could still use: MemAvailable of meminfo_path, or, in a memory-limited cgroup,
    the limit minus the cgroup's usage (without inactive page cache) when that is lower. Raises OSError when
    meminfo_path cannot be read, ValueError when it has no MemAvailable."""
    available = _meminfo(meminfo_path, "MemAvailable")
    limit, usage = _cgroup(cgroup_root)
    return available if limit is None else min(available, max(0, limit - usage))


class PeakSampler:
    """Samples nvmlDeviceGetMemoryInfo(handle).used of each GPU (NVML indices) every interval_s seconds in a daemon
    thread, between start() and stop() or as a context manager; sample_once() takes one sample (tests call it
    directly, with a fake nvml, and never start the thread).

    Byte counts per NVML index: baseline_bytes (the first sample: start() takes it before returning, so take it
    before training starts to tell other processes' use), latest_bytes, peak_bytes, and peak_over_baseline().
    `used` is the whole GPU's use, every process included, as nvidia-smi shows it. samples counts the samples,
    last_sample_at is clock() at the latest one.

    Never raises into the caller: a failing NVML (at start or mid-run) is recorded in `error` ("NVMLError: ...")
    and sampling stops; what was measured so far stays. Without nvidia-ml-py, error says so."""

    def __init__(
        self,
        gpu_indices: Iterable[int],
        interval_s: float = 0.5,
        nvml: ModuleType | Any | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gpu_indices = tuple(gpu_indices)
        self.interval_s = interval_s
        self.clock = clock
        self.baseline_bytes: dict[int, int] = {}
        self.latest_bytes: dict[int, int] = {}
        self.peak_bytes: dict[int, int] = {}
        self.samples = 0
        self.last_sample_at: float | None = None
        self.error: str | None = None
        self._nvml_arg = nvml
        self._nvml: Any | None = None
        self._handles: dict[int, Any] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def _fail(self, exc: BaseException | str) -> None:
        self.error = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"

    def _open(self) -> bool:
        """nvmlInit and the handles, once. False (error recorded) when NVML is unusable."""
        if self._handles is not None:
            return True
        if self.error is not None:
            return False
        nvml = _load_nvml(self._nvml_arg)
        if nvml is None:
            self._fail("nvidia-ml-py (pynvml) is not installed")
            return False
        try:
            nvml.nvmlInit()
        except Exception as exc:
            self._fail(exc)
            return False
        self._nvml = nvml
        try:
            self._handles = {i: nvml.nvmlDeviceGetHandleByIndex(i) for i in self.gpu_indices}
        except Exception as exc:
            self._fail(exc)
            self._close()
            return False
        return True

    def _close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
        self._nvml = None

    def sample_once(self) -> bool:
        """Read every GPU's used bytes once and update latest/peak (and baseline on the first sample). True when
        sampled; False once NVML has failed (error is set) or after stop(). Never raises."""
        with self._lock:
            if self._closed or not self._open():
                return False
            try:
                used = {i: int(self._nvml.nvmlDeviceGetMemoryInfo(h).used) for i, h in self._handles.items()}
            except Exception as exc:
                self._fail(exc)
                self._handles = None
                self._close()
                return False
            if not self.samples:
                self.baseline_bytes = dict(used)
            self.latest_bytes = used
            for i, b in used.items():
                self.peak_bytes[i] = max(b, self.peak_bytes.get(i, b))
            self.samples += 1
            self.last_sample_at = self.clock()
            return True

    def peak_over_baseline(self) -> dict[int, int]:
        """peak_bytes - baseline_bytes per GPU: what the run added, if other processes' use stayed the same."""
        return {i: p - self.baseline_bytes.get(i, 0) for i, p in self.peak_bytes.items()}

    def start(self) -> PeakSampler:
        """Take the baseline sample now, then sample every interval_s in a daemon thread. Returns self; never
        raises (a failing NVML leaves error set and no thread)."""
        if self._thread is not None:
            return self
        self._stop.clear()
        self._closed = False
        if not self.sample_once():
            return self
        self._thread = threading.Thread(target=self._run, name="hvlora-gpu-peak", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self.sample_once():
                return

    def stop(self) -> dict[int, int]:
        """Stop the thread (after one last sample) and shut NVML down. Returns peak_bytes. Never raises."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout=self.interval_s + 5)
            self.sample_once()
        with self._lock:
            self._closed = True
            self._handles = None
            self._close()
        return dict(self.peak_bytes)

    def __enter__(self) -> PeakSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
