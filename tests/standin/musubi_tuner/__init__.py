"""Test-only stand-in for musubi-tuner v0.3.4's HunyuanVideo 1.5 entry points, used at the subprocess boundary.

Put `tests/standin` first on PYTHONPATH and run the same argv the project builds:

    python -m musubi_tuner.hv_1_5_cache_latents ...
    python -m musubi_tuner.hv_1_5_cache_text_encoder_outputs ...
    python -m accelerate.commands.launch ... -m musubi_tuner.hv_1_5_train_network ...
    python -m musubi_tuner.networks.convert_hunyuan_video_1_5_lora_to_comfy SRC DST

What is real here: the argparse parsers are rebuilt from `../musubi_flags.json`, captured from the real parsers by
`../dump_musubi_flags.py`, so unknown flags, bad types/choices and missing required arguments fail with exit 2 and
argparse's exact message; the post-parse checks, the dataset TOML schema, file discovery, video decoding (PyAV),
bucketing, clip extraction, cache/LoRA/checkpoint/state file names, tensor keys and shapes, metadata and console
lines follow musubi's code (each module says which musubi file it mirrors). What is fake: no model is loaded
(a weight file given by flag only has to exist), tensor values are deterministic noise, and "training" computes
no gradients.

Test hooks (environment variables):

- ``STANDIN_CALLS=FILE``: every invocation appends one JSON line ``{"module", "argv", "pid"}`` to FILE, before
  argument parsing (so rejected invocations are recorded too). "module" is the name inside the package
  (``hv_1_5_cache_latents``, ``networks.convert_hunyuan_video_1_5_lora_to_comfy``), "argv" the full ``sys.argv``.
- ``STANDIN_FAIL=NAME[,NAME...]``: the module whose short name is NAME (``hv_1_5_cache_latents``,
  ``hv_1_5_cache_text_encoder_outputs``, ``hv_1_5_train_network``, ``convert_hunyuan_video_1_5_lora_to_comfy``)
  logs a few lines once its work starts, then raises RuntimeError: a Python traceback on stderr, exit status 1.
- ``STANDIN_BLOCK=NAME[,NAME...]``: once its work starts, the module starts one child process in the same process
  group (like a DataLoader worker) that blocks too, writes the two pids (main first, one per line) to the file
  named by ``STANDIN_PIDFILE`` (atomically, if set), prints ``standin: waiting for a signal`` (flushed; printed
  last, so the pids are there once the line is seen) and blocks in ``signal.pause()``. SIGINT behaves as in any
  Python program: KeyboardInterrupt in both processes; the main process waits for the worker (up to 5 s, then
  terminates it, as a DataLoader does at exit), then dies of the uncaught KeyboardInterrupt (killed by SIGINT:
  returncode -2, a shell shows 130). SIGTERM kills with Python's default behaviour.
- ``STANDIN_DROP_MODULE=PREFIX[,PREFIX...]``: the trainer leaves out of every LoRA file it writes the modules whose
  LoRA name (``lora_unet_double_blocks_0_img_attn_k``) starts with PREFIX; PREFIX may omit ``lora_unet_``.
"""
