"""Test-only stand-in for musubi-tuner v0.3.4's HunyuanVideo 1.5 entry points, used at the subprocess boundary.

Put `tests/standin` first on PYTHONPATH and run the same argv the project builds:

    python -m musubi_tuner.hv_1_5_cache_latents ...
    python -m musubi_tuner.hv_1_5_cache_text_encoder_outputs ...
    python -m accelerate.commands.launch ... -m musubi_tuner.hv_1_5_train_network ...
    python -m musubi_tuner.networks.convert_hunyuan_video_1_5_lora_to_comfy SRC DST
    python -m musubi_tuner.hv_1_5_generate_video ...      (writes small real videos; see its docstring)

and one library function hvlora's captioner child imports: `musubi_tuner.qwen_image.qwen_image_utils.load_qwen2_5_vl`
(qwen_image/qwen_image_utils.py: musubi's key handling and dtype steps; the model is tests/tinyqwen.py's tiny one).

What is real here: the argparse parsers are rebuilt from `../musubi_flags.json`, captured from the real parsers by
`../dump_musubi_flags.py`, so unknown flags, bad types/choices and missing required arguments fail with exit 2 and
argparse's exact message; the post-parse checks, the dataset TOML schema, file discovery, video decoding (PyAV),
bucketing, clip extraction, cache/LoRA/checkpoint/state file names, tensor keys and shapes, metadata and console
lines follow musubi's code (each module says which musubi file it mirrors). The trainer runs the real engine
around an imitation of the model: a real accelerate.Accelerator, torch DataLoader, torch optimizer and LR
scheduler (as musubi builds them) over a tiny real network, with accelerator.save_state/load_state and musubi's
hooks, so `--resume`, LR curves, state folders, step/epoch saves with pruning and samples behave as in musubi
v0.3.4 (counters restart at 0 on resume, files are named with them and overwrite earlier ones). What is fake: no
model is loaded (a weight file given by flag only has to exist), cache and LoRA tensors and sample pixels are
deterministic noise, the loss value is made up and its gradients are random noise.

Test hooks (environment variables):

- ``STANDIN_CALLS=FILE``: every invocation appends one JSON line ``{"module", "argv", "pid"}`` to FILE, before
  argument parsing (so rejected invocations are recorded too). "module" is the name inside the package
  (``hv_1_5_cache_latents``, ``networks.convert_hunyuan_video_1_5_lora_to_comfy``), "argv" the full ``sys.argv``.
- ``STANDIN_FAIL=NAME[,NAME...]``: the module whose short name is NAME (``hv_1_5_cache_latents``,
  ``hv_1_5_cache_text_encoder_outputs``, ``hv_1_5_train_network``, ``convert_hunyuan_video_1_5_lora_to_comfy``,
  ``hv_1_5_generate_video``)
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

Kill and NaN hooks. A kill is ``os.killpg(own process group, SIGKILL)``: under ``accelerate launch`` the launcher
dies too (a caller sees returncode -9), so start the command in its own session/process group
(``start_new_session=True``) or the caller is killed with it. Before the kill one line
``standin: <VAR>=<N>...: SIGKILL to process group <pgid>`` goes to stderr and stdout/stderr are flushed; nothing
else is finished or cleaned up (files keep what was written; TensorBoard events are on disk up to the last log).

- ``STANDIN_KILL_AT_STEP=N`` (trainer, N >= 1): dies once optimizer step N (the run's local global_step, as
  logged and used in file names) is complete: its sampling, its --save_every_n_steps LoRA/state and pruning, its
  TensorBoard log, and, if step N ends an epoch (or the run), that epoch's end (loss/epoch, epoch LoRA/state,
  epoch sampling). It dies before the next micro-batch, or, when N is the last step, before the end-of-training
  `{name}-state` and `{name}.safetensors`. Never fires if the run has fewer than N steps.
- ``STANDIN_KILL_IN_STATE_SAVE=N`` (trainer): in the first accelerator.save_state made at global step N (a step,
  epoch or final state folder), after `model.safetensors` is complete, `optimizer.bin` gets the first half of its
  bytes and the process group is killed: the folder holds model.safetensors and a truncated optimizer.bin (no
  scheduler.bin, no random_states_0.pkl), so `--resume` from it fails in accelerate's load_state as it would after
  a real kill (torch.load raises). The step's LoRA file, written before the state, is complete.
- ``STANDIN_KILL_AFTER_ITEMS=N`` (both cache scripts): after N cache files were written by this process (skipped
  items do not count), the next one is written with only the first half of its bytes (for any real cache file the
  safetensors header survives and the tensor data is cut: safetensors' loaders raise MetadataIncompleteBuffer,
  while a TE re-run, which reads only the header, rewrites it) and the process group is killed. With N or fewer
  files to write, no kill.
- ``STANDIN_NAN_FROM_STEP=N`` (trainer): the loss of every micro-batch of optimizer step N and later is NaN, and so
  are its gradients: the bar shows ``avr_loss=nan`` from step N on, TensorBoard logs NaN ``loss/*``, and the
  weights become NaN with that optimizer step (LoRA files saved at step N or later are NaN, samples black).
- ``STANDIN_KILL_BEFORE_FINAL_LORA=1`` (trainer): dies right after the final state is saved, before the final LoRA
  (musubi writes them in that order: what a full disk or `docker stop` between the two leaves). That state's
  model.safetensors holds what a real one holds (the LoRA network's weights under musubi's key names, float32)
  instead of the stand-in's tiny network.
- ``STANDIN_FROZEN_DIT_AS_ON_GPUS=1`` (trainer): in a multi-process CPU run (accelerate MULTI_CPU, gloo) the frozen
  DiT is prepared as accelerate 1.6.0 prepares it on GPUs, not wrapped in DistributedDataParallel. Real musubi on
  several CPU processes fails there ("DistributedDataParallel is not needed when a module doesn't have any
  parameter that requires a gradient": accelerate wraps every model on MULTI_CPU), so without this hook no
  multi-process CPU run of musubi's trainer exists to test a multi-node launch with.
"""
