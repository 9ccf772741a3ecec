"""hvlora.training.gpu with fake NVML modules (no GPU needed), meminfo/cgroup files in tmp_path, and the PeakSampler."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from hvlora.families.hunyuan_video_1_5.memory import preset_for_vram
from hvlora.training.gpu import GIB, GpuInfo, PeakSampler, detect_gpus, host_available_bytes, host_ram_bytes


class FakeNVML:
    """The part of pynvml hvlora uses. devices: (name, total_bytes, uuid); used[i] is what GetMemoryInfo reports;
    fail_on names a method that raises NVMLError (after `fail_after` successful calls)."""

    class NVMLError(Exception):
        pass

    def __init__(self, devices, used=None, fail_on=None, fail_after=0, as_bytes=False, migs=None):
        self.devices = devices
        self.used = list(used or [0] * len(devices))
        self.fail_on, self.fail_after = fail_on, fail_after
        self.as_bytes = as_bytes
        self.migs = migs or {}
        self.inits = self.shutdowns = 0
        self.calls: dict[str, int] = {}

    def _call(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1
        if name == self.fail_on and self.calls[name] > self.fail_after:
            raise self.NVMLError(f"{name} failed")

    def _s(self, text):
        return text.encode() if self.as_bytes else text

    def nvmlInit(self):
        self._call("nvmlInit")
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        self._call("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        self._call("nvmlDeviceGetHandleByIndex")
        if not 0 <= i < len(self.devices):
            raise self.NVMLError("invalid argument")
        return ("gpu", i)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid not in self.migs:
            raise self.NVMLError("not found")
        return ("mig", uuid)

    def nvmlDeviceGetName(self, h):
        self._call("nvmlDeviceGetName")
        return self._s(self.devices[h[1]][0] if h[0] == "gpu" else self.migs[h[1]][0])

    def nvmlDeviceGetUUID(self, h):
        return self._s(self.devices[h[1]][2])

    def nvmlDeviceGetMemoryInfo(self, h):
        self._call("nvmlDeviceGetMemoryInfo")
        if h[0] == "mig":
            return SimpleNamespace(total=self.migs[h[1]][1], used=0, free=self.migs[h[1]][1])
        total = self.devices[h[1]][1]
        return SimpleNamespace(total=total, used=self.used[h[1]], free=total - self.used[h[1]])


MIB = 1024**2
DEVICES = [
    ("NVIDIA GeForce RTX 4090", 24_564 * MIB, "GPU-aaaa1111-0000-0000-0000-000000000000"),
    ("NVIDIA A100-SXM4-40GB", 40_960 * MIB, "GPU-bbbb2222-0000-0000-0000-000000000000"),
    ("NVIDIA H100 80GB HBM3", 81_559 * MIB, "GPU-cccc3333-0000-0000-0000-000000000000"),
]


def names(gpus):
    return [g.name.split()[-1] for g in gpus]


# --- detect_gpus -------------------------------------------------------------------------------------------------------


def test_all_gpus_and_the_smallest_decides_auto():
    nvml = FakeNVML(DEVICES)
    gpus = detect_gpus(nvml, env={})
    assert [g.index for g in gpus] == [0, 1, 2]
    assert gpus[0] == GpuInfo(0, "NVIDIA GeForce RTX 4090", 24_564 * MIB, DEVICES[0][2])
    assert gpus[0].total_gib == pytest.approx(23.99, abs=0.01)
    assert preset_for_vram(min(g.total_gib for g in gpus)) == 24
    assert preset_for_vram(min(g.total_gib for g in gpus[1:])) == 32  # A100 40GB + H100
    assert nvml.inits == nvml.shutdowns == 1


def test_bytes_names_from_old_pynvml_are_decoded():
    gpus = detect_gpus(FakeNVML(DEVICES, as_bytes=True), env={})
    assert gpus[2].name == "NVIDIA H100 80GB HBM3" and gpus[2].uuid.startswith("GPU-cccc")


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        ("2,0", ["HBM3", "4090"]),  # CUDA's order is the list's
        ("1", ["A100-SXM4-40GB"]),
        (" 0 , 2 ", ["4090", "HBM3"]),
        ("GPU-cccc3333-0000-0000-0000-000000000000,GPU-aaaa1111", ["HBM3", "4090"]),  # full UUID, unique prefix
        ("gpu-BBBB2222", ["A100-SXM4-40GB"]),
        ("", []),  # none visible
        ("-1", []),
        ("0,7,1", ["4090"]),  # CUDA stops at the first entry that names no GPU
        ("1,1,0", ["A100-SXM4-40GB"]),  # and at a repeat
        ("GPU-", []),  # ambiguous prefix
        ("GPU-dddd", []),
        ("nonsense,0", []),
    ],
)
def test_cuda_visible_devices(visible, expected):
    assert names(detect_gpus(FakeNVML(DEVICES), env={"CUDA_VISIBLE_DEVICES": visible})) == expected


def test_a_mig_instance():
    mig = "MIG-1234abcd-0000-0000-0000-000000000000"
    nvml = FakeNVML(DEVICES, migs={mig: ("NVIDIA A100 MIG 3g.20gb", 19_968 * MIB)})
    (gpu,) = detect_gpus(nvml, env={"CUDA_VISIBLE_DEVICES": f"{mig},0"})
    assert gpu == GpuInfo(-1, "NVIDIA A100 MIG 3g.20gb", 19_968 * MIB, mig)
    assert preset_for_vram(gpu.total_gib) == 16
    assert detect_gpus(nvml, env={"CUDA_VISIBLE_DEVICES": "MIG-unknown"}) == []


@pytest.mark.parametrize("fail_on", ["nvmlInit", "nvmlDeviceGetCount", "nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo"])
def test_nvml_errors_give_no_gpus(fail_on):
    nvml = FakeNVML(DEVICES, fail_on=fail_on)
    assert detect_gpus(nvml, env={}) == []
    assert nvml.shutdowns == (0 if fail_on == "nvmlInit" else 1)  # shut down whenever it was initialised


def test_without_nvidia_ml_py(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert detect_gpus(env={}) == []
    sampler = PeakSampler([0])
    assert sampler.sample_once() is False and "not installed" in sampler.error


def test_the_real_pynvml_as_this_machine_has_it():
    """The real nvidia-ml-py against this machine's driver (or its absence): without a driver its nvmlInit raises
    and detection says no GPU; with one, detection lists what NVML counts, each with its memory and UUID."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        assert detect_gpus(env={}) == [] and detect_gpus(pynvml, env={}) == []
        sampler = PeakSampler([0])
        assert sampler.sample_once() is False and sampler.error
        return
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    gpus = detect_gpus(env={})
    assert [g.index for g in gpus] == list(range(count)) and all(g.total_bytes > 0 and g.uuid for g in gpus)


# --- host RAM ----------------------------------------------------------------------------------------------------------

MEMINFO = """MemTotal:       65772316 kB
MemFree:         1234567 kB
MemAvailable:   50331648 kB
Buffers:          123456 kB
HugePages_Total:       0
"""


@pytest.fixture
def meminfo(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO)
    return path


def cgroup(tmp_path: Path, files: dict[str, str]) -> str:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    return str(root)


def test_meminfo_without_a_cgroup_limit(tmp_path, meminfo):
    root = cgroup(tmp_path, {})
    assert host_ram_bytes(meminfo, root) == 65_772_316 * 1024
    assert host_available_bytes(meminfo, root) == 50_331_648 * 1024


def test_cgroup_v2_limit_lower_than_memtotal(tmp_path, meminfo):
    root = cgroup(
        tmp_path,
        {
            "memory.max": f"{32 * GIB}\n",
            "memory.current": f"{10 * GIB}\n",
            "memory.stat": f"anon 123\ninactive_file {2 * GIB}\nactive_file 5\n",
        },
    )
    assert host_ram_bytes(meminfo, root) == 32 * GIB
    assert host_available_bytes(meminfo, root) == 24 * GIB  # 32 - (10 - 2 of reclaimable page cache)


def test_cgroup_v2_max_and_a_limit_above_memtotal(tmp_path, meminfo):
    assert host_ram_bytes(meminfo, cgroup(tmp_path / "a", {"memory.max": "max\n"})) == 65_772_316 * 1024
    root = cgroup(tmp_path / "b", {"memory.max": f"{128 * GIB}\n", "memory.current": "0\n"})
    assert host_ram_bytes(meminfo, root) == 65_772_316 * 1024
    assert host_available_bytes(meminfo, root) == 50_331_648 * 1024


def test_cgroup_v1(tmp_path, meminfo):
    unlimited = cgroup(tmp_path / "a", {"memory/memory.limit_in_bytes": "9223372036854771712\n"})
    assert host_ram_bytes(meminfo, unlimited) == 65_772_316 * 1024
    limited = cgroup(
        tmp_path / "b",
        {
            "memory/memory.limit_in_bytes": f"{16 * GIB}\n",
            "memory/memory.usage_in_bytes": f"{12 * GIB}\n",
            "memory/memory.stat": f"inactive_file 7\ntotal_inactive_file {4 * GIB}\n",
        },
    )
    assert host_ram_bytes(meminfo, limited) == 16 * GIB
    assert host_available_bytes(meminfo, limited) == 8 * GIB


def test_meminfo_errors(tmp_path):
    bad = tmp_path / "meminfo"
    bad.write_text("MemFree: 1 kB\n")
    with pytest.raises(ValueError, match="MemTotal"):
        host_ram_bytes(bad, str(tmp_path))
    with pytest.raises(OSError):
        host_ram_bytes(tmp_path / "missing", str(tmp_path))


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="Linux only")
def test_this_machine():
    total, available = host_ram_bytes(), host_available_bytes()
    assert 0 < available <= total


# --- PeakSampler -------------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        self.t += 1
        return self.t


def test_peak_tracking_with_sample_once():
    nvml = FakeNVML(DEVICES[:2], used=[1 * GIB, 3 * GIB])
    s = PeakSampler([0, 1], nvml=nvml, clock=Clock())
    assert s.sample_once()
    assert s.baseline_bytes == {0: GIB, 1: 3 * GIB}
    nvml.used = [9 * GIB, 4 * GIB]
    assert s.sample_once()
    nvml.used = [5 * GIB, 2 * GIB]
    assert s.sample_once()
    assert s.peak_bytes == {0: 9 * GIB, 1: 4 * GIB}
    assert s.latest_bytes == {0: 5 * GIB, 1: 2 * GIB}
    assert s.baseline_bytes == {0: GIB, 1: 3 * GIB}
    assert s.peak_over_baseline() == {0: 8 * GIB, 1: GIB}
    assert (s.samples, s.last_sample_at, s.error) == (3, 103.0, None)
    assert nvml.inits == 1  # initialised once
    assert s.stop() == {0: 9 * GIB, 1: 4 * GIB}
    assert nvml.shutdowns == 1 and s.sample_once() is False


def test_nvml_failing_mid_run_is_recorded_not_raised():
    nvml = FakeNVML(DEVICES[:1], used=[2 * GIB], fail_on="nvmlDeviceGetMemoryInfo", fail_after=2)
    s = PeakSampler([0], nvml=nvml)
    assert s.sample_once() and s.sample_once()
    assert s.sample_once() is False
    assert s.error == "NVMLError: nvmlDeviceGetMemoryInfo failed"
    assert s.sample_once() is False  # stopped: no retry
    assert s.peak_bytes == {0: 2 * GIB} and s.samples == 2  # what was measured stays
    assert nvml.shutdowns == 1
    s.stop()
    assert nvml.shutdowns == 1


@pytest.mark.parametrize("fail_on", ["nvmlInit", "nvmlDeviceGetHandleByIndex"])
def test_nvml_failing_at_start(fail_on):
    nvml = FakeNVML(DEVICES[:1], fail_on=fail_on)
    with PeakSampler([0], nvml=nvml) as s:
        assert s.error.startswith("NVMLError") and s._thread is None
    assert s.peak_bytes == {} and s.samples == 0


def test_a_gpu_index_nvml_does_not_have():
    s = PeakSampler([0, 5], nvml=FakeNVML(DEVICES[:1]))
    assert s.sample_once() is False and "invalid argument" in s.error


def test_start_takes_the_baseline_and_stop_a_last_sample():
    nvml = FakeNVML(DEVICES[:1], used=[GIB])
    with PeakSampler([0], interval_s=3600, nvml=nvml) as s:  # the thread waits; no sleeping here
        assert s.baseline_bytes == {0: GIB} and s._thread.is_alive()
        nvml.used = [6 * GIB]
    assert s.peak_bytes == {0: 6 * GIB} and s.samples == 2
    assert s._thread is None and nvml.shutdowns == 1
