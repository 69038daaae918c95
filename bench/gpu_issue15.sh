#!/usr/bin/env bash
# Issue 15 on one H200, in one device run (about 5-7 minutes): the Wan2.2-TI2V-5B DiT at its
# own clip shape, 121x704x1280 (48 latent channels, 16x VAE, the first frame fused in), levers
# none vs auto, 1 warm-up + 4 timed steps each. The A14B expert is the Wan2.1-T2V-14B DiT
# (same dims; bench/gpu_issue16.sh's "compare 14B" at 81x480x832 is one expert's figure).
# Run from the repo root with .whl carried (bench/README.md has the exact device call).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec > >(tee -a "$OUT/log.txt") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import torch, diffsynth; print('torch', torch.__version__, torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
timeout --signal=TERM --kill-after=10 450 python3 bench/train_step.py --compare --model 5B --modes off,auto \
  --frames 121 --height 704 --width 1280 --warmup 1 --steps 4 --deadline 300 --json-lines "$OUT/ti2v.jsonl"
echo "== exit $? at ${SECONDS}s"
