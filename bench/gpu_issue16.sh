#!/usr/bin/env bash
# Issue 16 on one H200, in one device run (about 8-9 minutes): DiffSynth's example path vs
# wandata levers none vs levers auto (1.3B, 81x480x832, rank 32), the 14B with levers auto,
# and the loss curves levers none vs auto. Run from the repo root with .whl carried
# (bench/README.md has the exact device call). Everything lands in $OUT: compare.jsonl (one
# line per mode, written as each finishes), loss.json, loss_levers.png, log.txt.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
BUDGET=${BUDGET:-530}            # seconds for the whole script (the device call's limit is 600)
LOSS_STEPS=${LOSS_STEPS:-120}
LOSS_FRAMES=${LOSS_FRAMES:-17}
exec > >(tee -a "$OUT/log.txt") 2>&1

source bench/gpu_lib.sh
install_wheels
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv

# (a) DiffSynth's example path, (b) levers none, (c) levers auto; 2 warm-up + 5 timed steps each
part "compare 1.3B" 210 python3 bench/train_step.py --compare --model 1.3B --modes diffsynth,off,auto \
  --warmup 2 --steps 5 --deadline 140 --json-lines "$OUT/compare.jsonl"
# the 14B on one GPU, levers auto (checkpointing only on the blocks memory needs)
part "compare 14B" 170 python3 bench/train_step.py --compare --model 14B --modes auto \
  --warmup 1 --steps 4 --deadline 60 --json-lines "$OUT/compare.jsonl"
# loss curves: same 4 clips, seed, timesteps and noise; levers none then auto
part "loss curve" 200 python3 bench/train_step.py --loss-curve "$LOSS_STEPS" --frames "$LOSS_FRAMES" \
  --deadline 110 --json "$OUT/loss.json"
[ -f "$OUT/loss.json" ] && python3 bench/plot_loss.py "$OUT/loss.json" "$OUT/loss_levers.png"
echo "done in ${SECONDS}s"
