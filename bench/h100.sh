#!/usr/bin/env bash
# One device call's worth of figures on the lent GPU (see DEVELOPERS.md): kernels (fused / unfused / naive,
# autotuned, with the roofline), the PyTorch baselines, decoding and speculative decoding. Each step has its own
# time limit so that one slow step cannot eat the call; logs go to $OUT.
#   bash .gpu/remote.sh bash bench/h100.sh [kernels] [torch] [decode] [torch-model] [speculative] [train] [backward]
#                                          [hf-fixtures] [hf-baseline] [hf-decode] [kernels-results] [model-results]
#                                          [experiments] [medusa-trained] [chain-host] [backward-sweep] [decode-segmented]
#                                          [chunk-switches] [demo] [suite] [continuous] [continuous-speculative]
# model-results: bench/results/h200-model.json (decode.ts + torch_model_baseline.py, merged by h200-model.ts).
# experiments (carry data/, after npm run data:kjv): docs/experiments.md's runs; medusa-trained: nano trained on KJV,
# Medusa heads on it, bench/medusa.ts on held-out and quoting prompts (Medusa, the oracle, the adaptive draft and
# prompt lookup; fixed trees, chained runs of 4, 8 and 16 steps, --tree auto) — docs/speculative.md's "On a trained
# model" and "Quoting prompts and chained lookup"; a call of its own (~400 s: 90 + 45 s of training, the bench
# under T_BENCH 240 s; medusa.json is rewritten after every row).
# One call of about 560 s: kernels-results model-results; a second: backward-sweep experiments hf-decode.
# kernels-results: bench/results/h200-kernels.json's figures (issue 15) into $OUT/h200-kernels.json: PyTorch's
# hand-chunked elu_dwconv, elu, elu_aug, retnet, then every variant fused and unfused at its default schedule.
set -uo pipefail
# Everything lands in $OUT/raw, packed at the end into $OUT/results.tgz (the device tool returns few files).
FINAL=${OUT:-out}; export OUT=$FINAL/raw; mkdir -p "$OUT"
steps=${*:-kernels torch decode torch-model speculative}
for s in $steps; do
  echo "=== $s"
  case $s in
    kernels) timeout ${T_KERNELS:-140} tsx bench/kernels.ts --variants elu_dwconv --t 4096,1024,16384 --d 64 --autotune --naive-max-t 4096 ;;
    kernels-d128) OUT=$OUT/d128 timeout ${T_KERNELS_D128:-60} tsx bench/kernels.ts --variants elu_dwconv --t 4096 --d 128 --autotune --naive-max-t 0 ;;
    kernels-results) timeout ${T_TORCH_RESULTS:-70} python3 bench/torch_baseline.py --variants elu_dwconv,elu,elu_aug,retnet --t 4096,16384 --d 64,128 --iters 10 --out "$OUT/torch-results"
      LINATTN_CACHE_DIR=$OUT/no-autotune-cache timeout ${T_KERNELS_RESULTS:-130} tsx bench/h200-kernels.ts --torch "$OUT/torch-results/torch_baseline.json" --out "$OUT/h200-kernels.json" ;;
    kernels-all) OUT=$OUT/all timeout 240 tsx bench/kernels.ts --t 4096 --d 64 --naive-max-t 0 --iters 10 ;;
    # The chunk kernel's switches, each beside the default in one run, rounds alternating: the state in subgroup lanes'
    # registers (rs) at d 128 and d 64, the score matrices as row quads (rq), the row denominators summed by the output
    # team (od) and the blocked schedules with the overlap. Call 92 timed them (bench/results/h200-chunk-switches.json);
    # rq, od (one prefix term) and rs (four features a lane) are defaults since, so `default` now includes them.
    chunk-switches) OUT=$OUT/rs timeout ${T_SWITCHES:-120} tsx bench/kernels.ts --variants elu_dwconv,retnet,gla --t 4096 --d 128 --rounds 3 --naive-max-t 0 \
        --schedules default,16x64x512rs,16x32x256rs,8x64x512b2
      OUT=$OUT/rq timeout ${T_SWITCHES:-120} tsx bench/kernels.ts --variants elu_dwconv,elu_aug,retnet,mamba2,cosformer --t 4096 --d 64 --rounds 3 --naive-max-t 0 \
        --schedules default,defaultrq,defaultod,defaultrqod,32x32x512b2,32x32x512b2od,16x32x512rs ;;
    demo) timeout ${T_DEMO:-120} tsx src/cli/linattn.ts demo ;;
    # Continuous batching against static batches of the same size, requests of different lengths (docs/speculative.md);
    # continuous-speculative: the same with continuous batch speculation (the oracle, chain:8) beside them, with no
    # waiting prompt prefilled ahead and with two (BatchOptions.refillAhead).
    continuous) timeout ${T_CONTINUOUS:-180} tsx bench/continuous.ts ;;
    continuous-speculative) timeout ${T_CONTINUOUS:-180} tsx bench/continuous.ts --speculate --tree chain:8 --refill-ahead 0,2 ;;
    # The whole test suite on this GPU (DEVELOPERS.md, "On a hardware GPU"; no Chromium here): about 3 minutes on the H200.
    suite) timeout ${T_SUITE:-330} vitest run --exclude 'test/browser-*' --maxWorkers 8 ;;
    torch) timeout 120 python3 bench/torch_baseline.py --out "$OUT" ;;
    decode) timeout ${T_DECODE:-90} tsx bench/decode.ts --attention compiled ;;
    # Issue 15: the same with the prefill's chunk plan in segments (the model's best; its dispatch profile beside decode's).
    decode-segmented) OUT=$OUT/segmented timeout ${T_DECODE:-90} tsx bench/decode.ts --attention compiled --prefill-schedule segmented ;;
    torch-model) timeout ${T_TORCH_MODEL:-100} python3 bench/torch_model_baseline.py ;;
    speculative) timeout ${T_SPECULATIVE:-180} tsx bench/speculative.ts ;;
    train) timeout ${T_TRAIN:-300} tsx bench/train.ts --torch ;;
    hf-fixtures) timeout ${T_HF_FIXTURES:-120} python3 tools/make-hf-fixtures.py &&
      for m in tiny-llama tiny-linearized; do cp test/fixtures/hf/$m/reference_logits.safetensors "$OUT/$m.reference_logits.safetensors"; done ;;
    hf-baseline) timeout ${T_HF_BASELINE:-240} python3 tools/hf_decode_baseline.py --out "$OUT/hf_decode_baseline.json" ;;
    hf-decode) timeout ${T_HF_DECODE:-240} tsx bench/hf_decode.ts --baseline "$OUT/hf_decode_baseline.json" &&
      timeout ${T_HF_DECODE:-240} tsx bench/hf_decode.ts --attention linearized-aug --tree 64 --profile ;;
    model-results) OUT=$OUT/decode timeout ${T_DECODE:-90} tsx bench/decode.ts --attention compiled
      OUT=$OUT/torchm timeout ${T_TORCH_MODEL:-70} python3 bench/torch_model_baseline.py
      tsx bench/h200-model.ts --decode "$OUT/decode/decode.json" --torch "$OUT/torchm/torch_model_baseline.json" --out "$OUT/h200-model.json" ;;
    experiments) timeout ${T_EXPERIMENTS:-420} tsx bench/experiments.ts --data data/kjv.txt --steps ${EXPERIMENT_STEPS:-160} --out "$OUT/experiments"
      rm -f "$OUT"/experiments/runs/*/*.safetensors ;;
    medusa-trained) mkdir -p "$OUT/runs" "$OUT/medusa"
      # 1200 base and 600 head steps. Call 34 tried 2400 and 2400 (BASE_STEPS, HEAD_STEPS, T_BASE 160, T_HEADS 60):
      # the base overfits KJV's 3.9 M training tokens (train 0.81 nats/token, validation 1.2057 against 1.2166 at
      # 1200) and the heads' held-out top-1 stayed 56.5 / 40.7 / 32.4 % (56.5 / 40.3 / 32.2 at 600): no gain.
      timeout ${T_BASE:-90} tsx src/cli/linattn.ts train --config examples/models/nano/config.json --data data/kjv.txt --out "$OUT/runs/nano" --steps ${BASE_STEPS:-1200} --batch 32 --block 256 --lr 2e-3 --eval-every 200 --save-every 200
      timeout ${T_HEADS:-45} tsx src/cli/linattn.ts train-medusa --model "$OUT/runs/nano" --data data/kjv.txt --heads 3 --out "$OUT/runs/nano-medusa" --steps ${HEAD_STEPS:-600} --batch 32 --block 256 --lr 2e-3 --eval-every 200 --save-every 200
      timeout ${T_BENCH:-240} tsx bench/medusa.ts --model "$OUT/runs/nano-medusa" --data data/kjv.txt --prompts 8 --tokens 128 --chain-steps 4,8,16 --chain-serial 8 \
        --prompt-kind both --sources medusa,oracle,adaptive,lookup --out "$OUT/medusa"
      rm -f "$OUT"/runs/*/*.safetensors ;;
    # Where a chained Medusa step's host time goes (random nano weights, the trained model's shapes), each run read
    # before the next and overlapped, beside plain decoding's host per dispatch: $OUT/chain-host.json.
    chain-host) timeout ${T_CHAIN_HOST:-90} tsx bench/chain-host.ts --chain-steps 4,8,16 --tokens 128 --prompts 4 ;;
    backward-sweep) timeout ${T_BACKWARD_SWEEP:-150} tsx bench/kernels.ts --backward --variants elu_dwconv,elu_aug,retnet,softmax --t 4096 --d 64 --iters 10 --rounds 2 \
      --grad-schedules 16x32x512,32x32x256,16x16x512,16x32x512s16,16x32x512s4 ;;
    backward) timeout ${T_BACKWARD:-400} tsx bench/kernels.ts --backward --variants ${BACKWARD_VARIANTS:-elu_dwconv} --t 4096 --d 64
              timeout 180 python3 bench/torch_baseline.py --backward --t 4096 --d 64 --out "$OUT" ;;
  esac 2>&1 | tee "$OUT/$s.log"
done
tar czf "$FINAL/results.tgz" -C "$OUT" . && cat "$OUT"/*.log > "$FINAL/all.log" && rm -rf "$OUT"
