#!/usr/bin/env bash
# Issue 16, what each lever is worth alone: the untuned path (levers none) with one lever
# forced at a time, 1.3B at 81x480x832 rank 32 on one H200. Run from the repo root with .whl
# carried (same wheels as gpu_issue16.sh). Output: $OUT/levers.jsonl, $OUT/log.txt.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec > >(tee -a "$OUT/log.txt") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
timeout --signal=TERM --kill-after=10 420 python3 bench/train_step.py --compare --model 1.3B \
  --modes "off,off+checkpointing=off,off+compile=on,off+attention=cudnn,off+fused_adamw=on+lazy_loss=on+prefetch=on+cudnn_benchmark=on" \
  --warmup 2 --steps 5 --deadline 360 --json-lines "$OUT/levers.jsonl"
echo "done in ${SECONDS}s"
