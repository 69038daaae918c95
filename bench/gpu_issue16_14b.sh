#!/usr/bin/env bash
# Issue 16, second GPU run (one H200, under 9 minutes): the 14B with levers auto now that
# checkpointing can be selective (attention outputs kept), and the loss curves of levers none vs
# auto over 200 steps followed by a validation render with each LoRA (bench/train_step.py
# --render). Same install lines and $OUT layout as bench/gpu_issue16.sh.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
BUDGET=${BUDGET:-540}
exec > >(tee -a "$OUT/log16.txt") 2>&1
source bench/gpu_lib.sh
install_wheels
part "compare 14B auto" 220 python3 bench/train_step.py --compare --model 14B --modes auto \
  --warmup 1 --steps 4 --deadline 120 --json-lines "$OUT/compare14b.jsonl"
part "loss curve + renders" 300 python3 bench/train_step.py --loss-curve 200 --frames 17 --render \
  --deadline 200 --json "$OUT/loss200.json"
[ -f "$OUT/loss200.json" ] && python3 bench/plot_loss.py "$OUT/loss200.json" "$OUT/loss_levers.png"
echo "done in ${SECONDS}s"
