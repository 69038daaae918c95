# Sourced by the bench/gpu_*.sh scripts (device runs): the carried wheels installed, and `part`,
# which runs one measurement under its own time limit without passing the script's BUDGET.

# diffsynth 2.1.12 and what the GPU image lacks of its requirements (modelscope, ftfy, ...)
install_wheels() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  python3 -c "import torch, diffsynth; print('torch', torch.__version__, torch.cuda.get_device_name(), 'cudnn', torch.backends.cudnn.version())"
}

left() { echo $(( BUDGET - SECONDS )); }
part() {   # part NAME SECONDS CMD...: at most SECONDS, never past the budget
  local name=$1 want=$2; shift 2
  local have; have=$(( $(left) - 5 ))
  (( have < 20 )) && { echo "== $name: skipped, ${have}s left"; return; }
  (( want > have )) && want=$have
  echo "== $name (limit ${want}s, ${SECONDS}s elapsed)"
  timeout --signal=TERM --kill-after=10 "$want" "$@"
  echo "== $name: exit $? at ${SECONDS}s"
}
