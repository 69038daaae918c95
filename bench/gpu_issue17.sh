#!/usr/bin/env bash
# Issue 17 on the GPU host (16 CPU cores): ingest throughput against worker count, local engine
# (bench/ingest_scaling.py), and CLIP embedding throughput on the GPU and its CPU
# (bench/clip_throughput.py). Needs, beside the image: PyAV, open_clip, scenedetect, tomli-w
# (wheels in .big2/), an ffmpeg program (WANDATA_FFMPEG; imageio-ffmpeg's static build, carried
# xz-compressed in .big/ by an earlier call: one call's 64 MiB cannot hold both) and, for
# --engines ray, Ray (bench/README.md: the procedure).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/log17.txt") 2>&1
ENGINES=${ENGINES:-local}      # "local ray" for both
THREADS=${THREADS:-1}          # ingest --threads of every run (1: linear means N x one worker)
SECS=${SECS:-12}               # length of each generated source
CLIP=${CLIP:-1}                # also the CLIP throughput
if ls .big2/*.whl >/dev/null 2>&1; then   # a later call on the same machine finds them installed
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .big2/*.whl \
    || { echo "wheel install failed"; exit 1; }
fi
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
if [ ! -x /tmp/bin/ffmpeg ]; then
  [ -f .big/ffmpeg.xz ] || { echo "no ffmpeg: carry .big/ffmpeg.xz"; exit 3; }
  mkdir -p /tmp/bin && xz -dc .big/ffmpeg.xz > /tmp/bin/ffmpeg && chmod +x /tmp/bin/ffmpeg
fi
export WANDATA_FFMPEG=/tmp/bin/ffmpeg PATH=/tmp/bin:$PATH
nproc; python3 -c "import av, wandata.cli; print('av', av.__version__)" || exit 4
for e in $ENGINES; do
  timeout 275 python3 bench/ingest_scaling.py --engines $e --workers 1 2 4 8 16 --threads $THREADS --seconds $SECS \
    --json "$OUT/scaling_${e}_t${THREADS}.json"
  echo "== scaling $e exit $? at ${SECONDS}s"
done
if [ "$CLIP" = 1 ]; then
  timeout 120 python3 bench/clip_throughput.py --json "$OUT/clip_throughput.json"
  echo "== clip exit $? at ${SECONDS}s"
fi
echo "done in ${SECONDS}s"
