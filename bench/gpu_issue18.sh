#!/usr/bin/env bash
# Issue 18 on ONE H200 (the only kind lent): phase 2 through `accelerate launch` + DeepSpeed
# ZeRO-2 with the optimizer on the CPU (configs/zero2_offload.json), one process, the full-size
# random-weight Wan2.1-T2V-1.3B, one 81x480x832 clip a step, 10 steps, a checkpoint every 5.
#   1. killed:  the run is SIGKILLed (every process) once step 5's resume state is on disk;
#   2. resumed: the same run with --resume: steps 6-10 (s/step, peak GiB);
#   3. ref:     if time is left, the same 10 steps uninterrupted: its losses 6-10 vs the resumed.
# Run from the repo root with .whl carried (bench/README.md has the exact device call). DeepSpeed
# is carried as a pure-Python wheel (.whl/issue18/, built with DS_BUILD_OPS=0): any op it needs
# is JIT-built here with ninja + g++/nvcc, which the image has.
# TINY=1: the same logic on this CPU (tiny model, 2 processes, gloo, --deepspeed none: DeepSpeed
# cannot run without a GPU), to check the script; nothing installed.
set -uo pipefail
OUT=${OUT:-/tmp/out}
WORK=${WORK:-/tmp/issue18}
BUDGET=${BUDGET:-540}      # seconds for the whole script; the reference run starts only if it fits
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false NCCL_NVLS_ENABLE=0
exec > >(tee -a "$OUT/log.txt") 2>&1
if [ -n "${TINY:-}" ]; then
  B=(python3 bench/train_step.py --phase2 --tiny --device cpu --deepspeed none --gpus 2 --warmup 0 --steps 10
     --save-every 5 --work "$WORK")
  export OMP_NUM_THREADS=1
  REF_NEEDS=60
else
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl .whl/issue18/*.whl || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  python3 -c "import torch, deepspeed, diffsynth; print('torch', torch.__version__, 'deepspeed', deepspeed.__version__, torch.cuda.get_device_name())"
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
  B=(python3 bench/train_step.py --phase2 --model 1.3B --deepspeed zero2-offload --gpus 1 --warmup 0 --steps 10
     --save-every 5 --work "$WORK")
  REF_NEEDS=150
fi
LEVERS=auto
t_left() { local s=$((BUDGET - SECONDS)); echo $((s > 1 ? s : 1)); }   # timeout 0 would mean none

echo "== 1. killed at step 5 ($(t_left) s left)"
timeout --signal=KILL $(t_left) "${B[@]}" --levers $LEVERS --kill-at 5 --json "$OUT/killed.json"
rc=$?
if [ $rc -ne 0 ] && [ ! -e "$WORK/run/step-5.safetensors" ]; then
  # the levers (compile, fused AdamW, prefetch) were never run under DeepSpeed: once more without
  echo "== killed run failed (exit $rc) before step 5; again with --levers none"
  rm -rf "$WORK/run"
  LEVERS=none
  timeout --signal=KILL $(t_left) "${B[@]}" --levers $LEVERS --kill-at 5 --json "$OUT/killed.json"
  rc=$?
fi
cat "$OUT/killed.json"
[ $rc -eq 0 ] || { echo "== 1 failed (exit $rc) at ${SECONDS}s"; exit 1; }
ls -la "$WORK/run" "$WORK/run/step-5.state" 2>/dev/null

echo "== 2. resumed ($(t_left) s left)"
timeout --signal=KILL $(t_left) "${B[@]}" --levers $LEVERS --resume --json "$OUT/resumed.json"
echo "== 2 exit $? at ${SECONDS}s"
cp "$WORK/run/loss.csv" "$OUT/resumed_loss.csv" 2>/dev/null

if [ "$(t_left)" -gt "$REF_NEEDS" ]; then
  echo "== 3. uninterrupted reference ($(t_left) s left)"
  timeout --signal=KILL $(t_left) "${B[@]}" --levers $LEVERS --run ref --json "$OUT/ref.json"
  echo "== 3 exit $? at ${SECONDS}s"
else
  echo "== 3. skipped: $(t_left) s left, the reference needs about $REF_NEEDS"
fi

python3 - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
load = lambda n: json.loads((out / n).read_text()) if (out / n).exists() else None
k, r, ref = load("killed.json"), load("resumed.json"), load("ref.json")
print("\nkilled:", k)
if r:
    print(f"resumed: start_step {r['start_step']}, {r['gpu']}, DeepSpeed {r['deepspeed']}, levers "
          f"{(r.get('levers') or {}).get('compile')}/{(r.get('levers') or {}).get('fused_adamw')} (compile/fused), "
          f"s/step {r['s_per_step']:.3f} (median), step_s {[round(x, 3) for x in r['step_s']]}, "
          f"peak GiB {r['peak_gib_per_gpu']}, checkpoints {[Path(c).name for c in r['checkpoints']]}")
if ref:
    print(f"reference: s/step {ref['s_per_step']:.3f}, peak GiB {ref['peak_gib_per_gpu']}")
if r and ref:
    s = r["start_step"]
    print(f"\n{'step':>4} {'resumed':>12} {'uninterrupted':>14} {'diff':>10}")
    diffs = []
    for i, (a, b) in enumerate(zip(r["losses"], ref["losses"][s:])):
        diffs.append(abs(a - b))
        print(f"{s + i + 1:>4} {a:>12.6f} {b:>14.6f} {a - b:>10.2e}")
    print(f"max |diff| {max(diffs):.3e}; first steps 1-{s} of the reference: {[round(x, 6) for x in ref['losses'][:s]]}")
    (out / "issue18.json").write_text(json.dumps({"killed": k, "resumed": r, "ref": ref, "max_abs_diff": max(diffs)},
                                                 indent=2))
EOF
echo "done in ${SECONDS}s"
