// bench/results/h200-model.json (issue 15): the 12-layer model's prefill and decode on our runtime next to PyTorch's,
// from the two JSON files one device call writes — bench/decode.ts's decode.json (prefill, and decoding the way
// `linattn generate` runs it: steps in flight) and bench/torch_model_baseline.py's torch_model_baseline.json (the
// same shapes and weights' sizes, float32 without TF32; eager and CUDA-graph decoding).
//
//   npx tsx bench/h200-model.ts --decode DECODE.json --torch TORCH.json --out bench/results/h200-model.json
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { DecodeBenchReport } from './decode.ts';

interface TorchDecode { readonly batch: number; readonly eager_tokens_per_s?: number; readonly graph_tokens_per_s?: number; readonly graph_with_readback_tokens_per_s?: number }
interface TorchReport { readonly device: string; readonly torch: string; readonly model: Record<string, number>; readonly prefill: { readonly tokens: number; readonly tokens_per_s: number }; readonly decode: readonly TorchDecode[] }

export function modelResults(ours: DecodeBenchReport, torch: TorchReport) {
  const same = ['layers', 'hidden', 'heads', 'intermediate', 'vocab'] as const;
  for (const k of same) {
    if (ours.model[k] !== torch.model[k]) throw new Error(`the two runs measured different models: ${k} ${ours.model[k]} (ours) vs ${torch.model[k]} (PyTorch)`);
  }
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? a / b : null);
  return {
    device: ours.adapter,
    torch_device: torch.device,
    torch: torch.torch,
    date: ours.date,
    model: ours.model,
    attention: ours.attention,
    prefill: {
      tokens: ours.prefill.tokens,
      ours_tokens_per_s: ours.prefill.tokensPerS,
      torch_tokens_per_s: torch.prefill.tokens_per_s,
      ratio: ratio(ours.prefill.tokensPerS, torch.prefill.tokens_per_s),
    },
    decode: ours.decode.map((d) => {
      const t = torch.decode.find((x) => x.batch === d.batch);
      return {
        batch: d.batch,
        dispatches_per_step: d.dispatchesPerStep,
        ours_tokens_per_s: d.pipelinedTokensPerS,
        ours_sync_tokens_per_s: d.syncTokensPerS,
        gpu_ms_per_step: d.gpuMsPerStep ?? null,
        host_ms_per_step: d.hostOverheadMsPerStep ?? null,
        weight_bound_tokens_per_s: d.boundTokensPerS,
        torch_eager_tokens_per_s: t?.eager_tokens_per_s ?? null,
        torch_graph_tokens_per_s: t?.graph_tokens_per_s ?? null,
        ratio_vs_graph: ratio(d.pipelinedTokensPerS, t?.graph_tokens_per_s),
      };
    }),
  };
}

const { values } = parseArgs({ options: { decode: { type: 'string' }, torch: { type: 'string' }, out: { type: 'string', default: 'bench/results/h200-model.json' } } });
if (!values.decode || !values.torch) throw new Error('usage: npx tsx bench/h200-model.ts --decode DECODE.json --torch TORCH.json [--out FILE]');
const r = modelResults(JSON.parse(readFileSync(values.decode, 'utf8')), JSON.parse(readFileSync(values.torch, 'utf8')));
writeFileSync(values.out!, JSON.stringify(r, null, 2) + '\n');
console.log(`wrote ${values.out}: prefill ${r.prefill.ours_tokens_per_s.toFixed(0)} vs ${r.prefill.torch_tokens_per_s.toFixed(0)} tokens/s; decode ${r.decode.map((d) => `batch ${d.batch} ${d.ours_tokens_per_s.toFixed(0)} vs ${d.torch_graph_tokens_per_s?.toFixed(0)}`).join(', ')}`);
