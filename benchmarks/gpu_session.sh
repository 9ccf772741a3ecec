#!/usr/bin/env bash
# One measuring session on a CUDA machine with no network (the device lease: about 8 minutes of work), from the
# project root, with the bundle benchmarks/gpu_bundle.py made:
#
#   benchmarks/gpu_session.sh BUNDLE OUT [BUDGET_S] [PIPELINE_S]
#
# 1. installs the bundle's wheels with `pip install --target` ahead of the system's packages, musubi-tuner's source
#    on PYTHONPATH, and records the versions (OUT/env.json);
# 2. the whole pipeline on CUDA: the fake hub on 127.0.0.1 serves full-size random weights, and one train_local.py
#    run downloads them, caches latents and text-encoder outputs on the GPU, trains 20 steps with samples every 10
#    and converts to ComfyUI (at most PIPELINE_S seconds, then Ctrl-C as a user would); OUT/pipeline-summary.json;
# 3. benchmarks/gpu_presets.py per preset, capped to its card, with the DiT the pipeline downloaded, in priority
#    order until BUDGET_S (from the start) is nearly spent; OUT/presets.json and presets.md, the profile of one
#    unswapped bf16 step (OUT/profile.txt);
# 4. OUT/logs.tar.gz: every log (the pipeline's run folder without weights, the benchmark's logs).
# Every part writes its results as it goes: a session cut off at its limit still returns what it measured.
# Rehearsal on a CPU machine (tiny shapes, the environment as it is): HVGPU_DEVICE=cpu HVGPU_SKIP_INSTALL=1
# PYTHON=<musubi's venv python> with the CPU rig's shims on PYTHONPATH.
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BUNDLE OUT [BUDGET_S] [PIPELINE_S]" >&2; exit 2; }
B="$(cd "$1" && pwd)"; OUT="$2"; BUDGET="${3:-540}"; PIPELINE_S="${4:-270}"
T0=$(date +%s)
W="${HVGPU_WORKDIR:-/tmp/hvgpu}"
PY="${PYTHON:-python3}"
DEVICE="${HVGPU_DEVICE:-cuda}"
if [ "$DEVICE" = cuda ]; then
  SHAPES=(--resolution 480x272 --target_frames 1,17 --max_train_steps 20 --sample_every_n_steps 10
          --save_every_n_steps 10)
  RUNS="80:960x544x25,24:960x544x25,16:960x544x25,32:960x544x25,24:848x480x61,16:848x480x61,48:960x544x25"
  RUNS="$RUNS,32:848x480x61,80:848x480x61,80:960x544x1,24:960x544x1"
  BENCH=(--steps 6 --warmup 2 --profile_preset 80)
else
  SHAPES=(--resolution 64x64 --target_frames 1,5 --max_train_steps 2 --sample_every_n_steps 2 --save_every_n_steps 1)
  RUNS="none:64x64x1"
  BENCH=(--steps 3 --warmup 1 --profile_preset none --device cpu)
fi
mkdir -p "$W" "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
left() { echo $((BUDGET - ($(date +%s) - T0))); }
say() { echo "[gpu_session +$(($(date +%s) - T0))s] $*"; }

if [ -z "${HVGPU_SKIP_INSTALL:-}" ]; then
  say "installing the bundle"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$W/site" \
      "$B"/whl/*.whl || { say "pip install failed"; exit 3; }
fi
mkdir -p "$W/musubi" "$W/rig"
tar -xzf "$B/musubi.tar.gz" -C "$W/musubi" && tar -xzf "$B/fakehub.tar.gz" -C "$W/rig" || exit 3
export PYTHONPATH="$W/site:$W/musubi/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" - >"$OUT/env.json" <<'EOF'
import importlib.metadata as md, json, platform, torch
names = ["torch", "transformers", "accelerate", "diffusers", "huggingface-hub", "av", "safetensors", "tokenizers",
         "nvidia-ml-py", "numpy"]
v = {n: (md.version(n) if n != "torch" else torch.__version__) for n in names}
gpu = torch.cuda.is_available()
print(json.dumps({"python": platform.python_version(), "versions": v, "cuda": torch.version.cuda,
                  "gpu": torch.cuda.get_device_name(0) if gpu else None,
                  "total_bytes": torch.cuda.get_device_properties(0).total_memory if gpu else None}, indent=1))
EOF
cat "$OUT/env.json"
"$PY" -c "import musubi_tuner.hv_1_5_train_network, hvlora.core.pipeline" || say "IMPORT FAILED: see above"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true

# --- 2. the whole pipeline on CUDA ------------------------------------------------------------------------------------
say "pipeline: fake hub"
"$PY" "$W/rig/fakehub.py" --workdir "$W/rig" --port 0 --ready-file "$W/hub.json" --log "$W/fakehub.jsonl" \
    >"$W/hub.out" 2>&1 &
HUB=$!
for _ in $(seq 1 100); do [ -s "$W/hub.json" ] && break; sleep 0.2; done
URL=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$W/hub.json") || { cat "$W/hub.out"; exit 4; }
say "pipeline: train_local.py (at most ${PIPELINE_S}s)"
env HF_ENDPOINT="$URL" HF_HOME="$W/hf" HF_HUB_DISABLE_XET=1 HF_HUB_DISABLE_TELEMETRY=1 \
    timeout -s INT -k 30 "$PIPELINE_S" "$PY" train_local.py --input_zip "$B/data.zip" --models_dir "$W/models" \
    --output_dir "$W/out" --device "$DEVICE" "${SHAPES[@]}" --rank 32 --optimizer adamw --trigger_word ohwx \
    --sample_prompts "$B/prompts.txt" --sample_every_n_epochs 0
say "pipeline: exit status $?"
kill "$HUB" 2>/dev/null
RUN=$(ls -d "$W"/out/runs/*/ 2>/dev/null | tail -1)
[ -n "$RUN" ] && cp "$RUN/summary.json" "$OUT/pipeline-summary.json" 2>/dev/null
ls -la "$W/out" "$RUN" "$RUN/samples" 2>/dev/null

# --- 3. presets, capped to each card ----------------------------------------------------------------------------------
# huggingface_hub moves a download into place when it is complete
DIT="$W/models/tencent/HunyuanVideo-1.5/transformer/720p_t2v/diffusion_pytorch_model.safetensors"
[ -f "$DIT" ] || DIT=""
say "presets: $(left)s left, DiT ${DIT:-built here}"
"$PY" benchmarks/gpu_presets.py --workdir "$W/bench" ${DIT:+--dit "$DIT"} --runs "$RUNS" "${BENCH[@]}" \
    --optimizer adamw --time_budget_s "$(($(left) - 15))" --min_run_s 55 \
    --json "$OUT/presets.json" --out "$OUT/presets.md"
say "presets: exit status $?"
cp "$W"/bench/logs/*.profile.txt "$OUT/profile.txt" 2>/dev/null

# --- 4. logs ------------------------------------------------------------------------------------------------------------
# no weights, optimizer states or caches: OUT takes 16 MiB per file
tar -czf "$OUT/logs.tar.gz" -C "$W" --exclude='*.safetensors' --exclude='*-state' --exclude='*.bin' --exclude=cache \
    out bench/logs fakehub.jsonl hub.out 2>/dev/null
say "done"
