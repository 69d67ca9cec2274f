#!/usr/bin/env bash
# On the H200, in one device call: the nano model trained on DATA (unless RUNS/nano holds one), 3 Medusa heads
# trained on it (linattn train-medusa, --target self, self-distilled on DISTILL tokens the base generates: default
# 1,000,000; DISTILL=0 trains on the text), and bench/medusa.ts on held-out prompts of DATA: accepted
# length, tokens/s and speed-up over plain generate per tree shape, the oracle and the adaptive draft beside them,
# and what the heads cost per tree step, kernel by kernel. Each stage runs under its own time limit (570 s in all);
# a training stage that reaches its limit keeps its last checkpoint (every 250 steps) and the next stage uses it.
#
#   bash .gpu/remote.sh bash bench/medusa-h200.sh [DATA] [RUNS]          (DATA default data/kjv.txt, RUNS default $OUT/runs)
set -euo pipefail
DATA=${1:-data/kjv.txt}
OUT=${OUT:-out}
RUNS=${2:-$OUT/runs}
mkdir -p "$RUNS"

# timeout's 124 is not a failure when the run has saved a checkpoint.
limited() {
  local limit=$1 dir=$2
  shift 2
  timeout "$limit" "$@" && return 0
  local rc=$?
  if [ "$rc" -eq 124 ] && [ -f "$dir/model.safetensors" ]; then echo "$1: stopped at ${limit} s; its last checkpoint in $dir stands" >&2; return 0; fi
  return "$rc"
}

if [ ! -f "$RUNS/nano/model.safetensors" ]; then
  base=(--config examples/models/nano/config.json --data "$DATA" --out "$RUNS/nano" --steps "${BASE_STEPS:-1500}" --batch 32 --block 256 --lr 2e-3 --eval-every 250 --save-every 250)
  # linattn train runs the compiled variant once it has a GPU backward (issue 12); until then the reference attention.
  if ! limited "${T_BASE:-240}" "$RUNS/nano" tsx src/cli/linattn.ts train "${base[@]}" 2> "$OUT/train-base.err"; then
    grep -q 'no GPU backward kernels yet' "$OUT/train-base.err" || { cat "$OUT/train-base.err"; exit 1; }
    limited "${T_BASE:-240}" "$RUNS/nano" tsx bench/train-reference.ts "${base[@]}"
  fi
fi
limited "${T_HEADS:-150}" "$RUNS/nano-medusa" tsx src/cli/linattn.ts train-medusa --model "$RUNS/nano" --data "$DATA" --heads 3 --out "$RUNS/nano-medusa" \
  --steps "${HEAD_STEPS:-1000}" --batch 32 --block 256 --lr 2e-3 --eval-every 250 --save-every 250 \
  $([ "${DISTILL:-1000000}" != 0 ] && echo --distill "${DISTILL:-1000000}")
timeout "${T_BENCH:-180}" tsx bench/medusa.ts --model "$RUNS/nano-medusa" --data "$DATA" --prompts 16 --tokens 256 --chain-steps 4 --out "$OUT"
