#!/usr/bin/env bash
# On the H200, in one device call: the nano model trained on DATA (unless RUNS/nano holds one), 3 Medusa heads
# trained on it (linattn train-medusa, --target self), and bench/medusa.ts on held-out prompts of DATA: accepted
# length, tokens/s and speed-up over plain generate per tree shape, the oracle and the adaptive draft beside them,
# and what the heads cost per tree step, kernel by kernel. Each stage under its own time limit (570 s in all).
#
#   bash .gpu/remote.sh bash bench/medusa-h200.sh [DATA] [RUNS]          (DATA default data/kjv.txt, RUNS default $OUT/runs)
set -euo pipefail
DATA=${1:-data/kjv.txt}
OUT=${OUT:-out}
RUNS=${2:-$OUT/runs}
mkdir -p "$RUNS"
if [ ! -f "$RUNS/nano/model.safetensors" ]; then
  # linattn train runs the compiled variant once it has a GPU backward (issue 12); until then the reference attention.
  base=(--config examples/models/nano/config.json --data "$DATA" --out "$RUNS/nano" --steps "${BASE_STEPS:-1500}" --batch 32 --block 256 --lr 2e-3 --eval-every 500 --save-every 500)
  timeout "${T_BASE:-240}" tsx src/cli/linattn.ts train "${base[@]}" 2> "$OUT/train-base.err" || {
    if grep -q 'no GPU backward kernels yet' "$OUT/train-base.err"; then timeout "${T_BASE:-240}" tsx bench/train-reference.ts "${base[@]}"; else cat "$OUT/train-base.err"; exit 1; fi
  }
fi
timeout "${T_HEADS:-150}" tsx src/cli/linattn.ts train-medusa --model "$RUNS/nano" --data "$DATA" --heads 3 --out "$RUNS/nano-medusa" \
  --steps "${HEAD_STEPS:-1000}" --batch 32 --block 256 --lr 2e-3 --eval-every 250 --save-every 1000
timeout "${T_BENCH:-180}" tsx bench/medusa.ts --model "$RUNS/nano-medusa" --data "$DATA" --prompts 16 --tokens 256 --out "$OUT"
