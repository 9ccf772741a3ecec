"""Loaded by every Python process of a benchmark run (benchmarks/gpu_presets.py puts this folder first on PYTHONPATH),
it acts only where the benchmark's variables are set, and only in a process that uses CUDA:

- HVBENCH_CAP_BYTES: cap this process's CUDA caching allocator at that many bytes
  (torch.cuda.set_per_process_memory_fraction, set when CUDA initializes: the accelerate launcher, which never
  initializes CUDA, gets no context), so that a preset's "fits a 24 GB card" is measured on a bigger GPU. The CUDA
  context and cuBLAS workspaces are outside the allocator: the caller subtracts them from the card's size.
- HVBENCH_STATS: at exit, write JSON to that path: the time of every optimizer step (time.perf_counter after
  torch.cuda.synchronize, from a global optimizer step post-hook, so any optimizer musubi builds is seen),
  torch.cuda.max_memory_allocated / max_memory_reserved, this process's peak RSS, and whether it ran out of memory.
- HVBENCH_PROFILE_STEP=k and HVBENCH_PROFILE=path: profile optimizer step k (1-based; from the end of step k-1 to
  the end of step k) with torch.profiler and write its key_averages table (by CUDA time) to path.
Python imports one sitecustomize: the next one on sys.path (the system's, or the CPU rig's shims) is run after this.
"""

import os
import sys


def _chain() -> None:
    """Run the next sitecustomize.py on sys.path after this folder's."""
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        path = os.path.join(entry or ".", "sitecustomize.py")
        if os.path.abspath(entry or ".") != here and os.path.isfile(path):
            with open(path) as f:
                exec(compile(f.read(), path, "exec"), {"__name__": "sitecustomize", "__file__": path})
            return


if os.environ.get("HVBENCH_STATS") or os.environ.get("HVBENCH_CAP_BYTES"):
    import atexit
    import json
    import resource
    import time

    _state = {"steps": [], "oom": False, "cuda": False, "profiler": None}

    def _setup_torch():
        import torch
        from torch.optim.optimizer import register_optimizer_step_post_hook

        cap = int(os.environ.get("HVBENCH_CAP_BYTES") or 0)

        def on_cuda_init():
            _state["cuda"] = True
            if cap:
                total = torch.cuda.get_device_properties(0).total_memory
                torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), 0)

        torch.cuda._lazy_call(on_cuda_init)
        register_optimizer_step_post_hook(_after_step)

    def _after_step(optimizer, args, kwargs):
        import torch

        if _state["cuda"]:
            torch.cuda.synchronize()
        _state["steps"].append(time.perf_counter())
        _profile(len(_state["steps"]))

    def _profile(done: int):
        import torch

        k = int(os.environ.get("HVBENCH_PROFILE_STEP") or 0)
        if not k or not os.environ.get("HVBENCH_PROFILE"):
            return
        if done == k - 1:
            acts = [torch.profiler.ProfilerActivity.CPU]
            if _state["cuda"]:
                acts.append(torch.profiler.ProfilerActivity.CUDA)
            _state["profiler"] = torch.profiler.profile(activities=acts)
            _state["profiler"].__enter__()
        elif done == k and _state["profiler"] is not None:
            prof, _state["profiler"] = _state["profiler"], None
            prof.__exit__(None, None, None)
            key = "cuda_time_total" if _state["cuda"] else "cpu_time_total"
            with open(os.environ["HVBENCH_PROFILE"], "w") as f:
                f.write(prof.key_averages().table(sort_by=key, row_limit=40))

    def _excepthook(kind, value, tb):
        if "OutOfMemoryError" in kind.__name__ or "out of memory" in str(value):
            _state["oom"] = True
        _previous_hook(kind, value, tb)

    def _write_stats():
        path = os.environ.get("HVBENCH_STATS")
        if not path or not (_state["steps"] or _state["cuda"]):
            return  # a helper process (the launcher, a data-loader worker) that trained nothing
        out = {"step_times": _state["steps"], "oom": _state["oom"], "pid": os.getpid(), "argv": sys.argv[:3]}
        out["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        torch = sys.modules.get("torch")
        if torch is not None and _state["cuda"]:
            out["max_memory_allocated"] = torch.cuda.max_memory_allocated(0)
            out["max_memory_reserved"] = torch.cuda.max_memory_reserved(0)
        with open(path, "w") as f:
            json.dump(out, f)

    _previous_hook = sys.excepthook
    sys.excepthook = _excepthook
    atexit.register(_write_stats)
    _setup_torch()

_chain()
