// The demo behind `npm run demo`: the paper's augmented layer (elu+1 linear attention + masked depthwise
// convolution on V, examples/paper/elu_dwconv.la) from source text to the GPU and back, checked at each step:
//
//   1. compile: DSL → IR → passes; the chunked lowering fuses prefix sum, convolution and normalisation
//      into one kernel (the plan says how many);
//   2. prefill: the fused chunk kernel on the default GPU vs the float64 oracle (relative error);
//   3. the same layer unfused, as a step-by-step recurrence (the decode form) and as the naive quadratic
//      form, each checked and timed (median GPU time, timestamp queries where the adapter has them);
//   4. a trained decoder LM (examples/models/tiny-kjv: the tiny model on elu_dwconv, trained by `linattn train` on
//      the shipped King James excerpt): its validation perplexity on the GPU and in float64 on the CPU, and its
//      greedy text on both, which must agree (demo-trained.ts);
//   5. speculative decoding with that model: Medusa heads trained on it (examples/models/tiny-kjv-medusa) and the
//      training-free adaptive draft, each checked against plain greedy decoding of the same prompt
//      (demo-speculative.ts);
//   6. a short live training of the same tiny model from random weights, its loss falling step by step.
//
//   npm run demo [-- --variant FILE.la] [--b B] [--t T] [--h H] [--d D] [--iters N] [--oracle-budget N] [--skip-model]
// Shapes default to something lavapipe finishes in seconds; a hardware GPU gets the paper's shape.
import { join, relative } from 'node:path';
import { evaluateRecurrent } from '../../backends/cpu/recurrent.ts';
import { axisSizes, makeInputs } from '../inputs.ts';
import { REPO_ROOT } from '../model/config.ts';
import { compileFile, planFor, runCompiled, timePlan, type Compiled, type PlanRequest } from '../runtime/compiler.ts';
import { getDevice, NO_ADAPTER_HELP } from '../runtime/dawn.ts';
import { choosePlan } from '../runtime/plan-choice.ts';
import type { Gpu } from '../runtime/device.ts';
import { relativeError, type Tensor } from '../tensor.ts';
import { median } from '../runtime/timing.ts';
import type { Plan } from '../../backends/wgsl/plan.ts';
import { int, str, type Values } from './args.ts';
import { type Command, type CommandIo } from './command.ts';
import { causalSlice, ORACLE_BUDGET, oracleExtent } from './demo-oracle.ts';
import { speculativePart } from './demo-speculative.ts';
import { liveTrainingPart, trainedModelPart } from './demo-trained.ts';

const TOLERANCE = 1e-4;

function fmtMs(ms: number): string {
  return ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`;
}

interface FormResult {
  readonly name: string;
  readonly kernels: number;
  /** Against the oracle (over its slice). */
  readonly err: number;
  readonly o: Tensor;
  readonly plan: Plan;
  readonly iters: number;
  ms: number;
}

async function runForm(gpu: Gpu, c: Compiled, tensors: Record<string, Tensor>, oracle: Tensor, name: string, req: PlanRequest, iters: number): Promise<FormResult> {
  const { o, plan } = await runCompiled(c, tensors, { ...req, device: 'gpu', gpu });
  const b = tensors[c.source.inputs[0].name].shape[0];
  const t = tensors[c.source.inputs[0].name].shape[1];
  const checked = oracle.shape[0] === b && oracle.shape[1] === t ? o : causalSlice(o, oracle.shape[0], oracle.shape[1]);
  return { name, kernels: plan!.kernels.length, err: relativeError(checked.data, oracle.data), o, plan: plan!, iters, ms: NaN };
}

/**
 * Each form's median GPU time. On a hardware GPU, as bench/h200-kernels.ts times plans: every form once untimed, then
 * ROUNDS rounds in turn, the median of the rounds (a GPU left idle — here by the oracle's seconds on the CPU — drops
 * its clocks, and a form timed first would pay for it); the naive form, minutes of work at the paper's shape, once.
 */
async function timeForms(gpu: Gpu, results: FormResult[], tensors: Record<string, Tensor>, b: number, t: number): Promise<void> {
  const ROUNDS = 3;
  const rounds = gpu.isSoftware ? 1 : ROUNDS;
  const alternated = results.filter((r) => r.plan.form !== 'naive');
  if (!gpu.isSoftware) for (const r of alternated) await timePlan(gpu, r.plan, tensors, b, t, 3);
  const ms = new Map<FormResult, number[]>(alternated.map((r) => [r, []]));
  for (let i = 0; i < rounds; i++) for (const r of alternated) ms.get(r)!.push((await timePlan(gpu, r.plan, tensors, b, t, r.iters)).ms);
  for (const r of alternated) r.ms = median(ms.get(r)!);
  for (const r of results) if (r.plan.form === 'naive') r.ms = (await timePlan(gpu, r.plan, tensors, b, t, r.iters)).ms;
}

export const demoCommand: Command = {
  name: 'demo',
  synopsis: 'linattn demo [--variant FILE.la] [--b B] [--t T] [--h H] [--d D] [--iters N] [--oracle-budget N] [--skip-model]',
  summary: 'Compile a variant, run every GPU form against the float64 oracle, then a trained tiny LM, speculative decoding with it, and a short live training.',
  help: [
    'What `npm run demo` runs. Prints the compiled plan, each form\'s relative error and median GPU time; then the',
    'trained model of examples/models/tiny-kjv: its validation perplexity on the GPU and the float64 CPU, and whether',
    'its greedy text on the GPU equals the CPU model\'s; then speculative decoding with it (trained Medusa heads of',
    'examples/models/tiny-kjv-medusa, and the adaptive draft), each output checked against plain greedy decoding; then',
    '25 live training steps. Exit 1 if a check fails.',
    '',
    '  --variant FILE.la   default examples/paper/elu_dwconv.la',
    '  --b --t --h --d     the shape (default on a software adapter b 2, t 1000, h 4, d = e = 32; else b 4, t 4096, h 16, d 64)',
    '  --iters N           timed runs per form (default 5 on a software adapter, else 20)',
    '  --oracle-budget N   state updates (b·t·h·d·e) the float64 oracle runs whole (default 34000000, about 3 s); past',
    '                      them it checks the first sequence\'s first tokens, and the forms each other over the rest',
    '  --skip-model        leave out the trained LM, speculative decoding and the live training',
  ].join('\n'),
  options: {
    variant: { type: 'string' }, b: { type: 'string' }, t: { type: 'string' }, h: { type: 'string' }, d: { type: 'string' },
    iters: { type: 'string' }, 'oracle-budget': { type: 'string' }, 'skip-model': { type: 'boolean' },
  },
  run: ({ values }, io) => demo(values, io),
};

async function demo(values: Values, io: CommandIo): Promise<number> {
  const line = (s = '') => io.stdout(`${s}\n`);
  const variant = str(values, 'variant') ?? join(REPO_ROOT, 'examples/paper/elu_dwconv.la');
  const started = performance.now();
  let gpu: Gpu;
  try {
    gpu = await getDevice();
  } catch (e) {
    io.stderr(`linattn demo: no GPU adapter: ${(e as Error).message}\n${NO_ADAPTER_HELP}\n`);
    return 1;
  }
  const soft = gpu.isSoftware;
  const b = int(values, 'b', soft ? 2 : 4);
  const t = int(values, 't', soft ? 1000 : 4096);
  const h = int(values, 'h', soft ? 4 : 16);
  const d = int(values, 'd', soft ? 32 : 64);
  const iters = int(values, 'iters', soft ? 5 : 20);
  line(`linattn demo on ${gpu.adapterName}${soft ? ' (software Vulkan: small shapes)' : ''}`);

  // 1. compile
  const c = compileFile(variant);
  const sizes = axisSizes(c.program, { h, d, e: d });
  // The demo shows the fused kernel (the central fusion) next to the unfused plan, whichever the cost model prefers.
  const fusedPlan = planFor(gpu, c, sizes, { form: 'chunked', fuse: true }, { b, t });
  line(`\n1. compile ${relative(process.cwd(), variant)}: variant ${c.program.name}, terms ${c.program.terms.map((x) => `${x.name} (${x.form.kind})`).join(', ')}`);
  line(`   fused chunked plan: ${fusedPlan.kernels.length} kernel${fusedPlan.kernels.length === 1 ? '' : 's'} (${fusedPlan.kernels.map((k) => k.label).join(', ')}), schedule ${JSON.stringify(fusedPlan.schedule)}`);

  // 2–3. run every form on the same inputs against the float64 oracle
  const tensors = makeInputs(c.source, { b, t, axes: { h, d, e: d }, seed: 1 });
  const shape = `b=${b} t=${t} h=${h} d=e=${d}`;
  // Within its budget the oracle runs the whole batch; past it (a hardware GPU's shape), the first sequence's first
  // tokens: a causal layer's outputs there depend on nothing later, so they are exactly the whole run's.
  const budget = int(values, 'oracle-budget', ORACLE_BUDGET);
  const { whole, b: ob, t: ot } = oracleExtent(b, t, h, d, d, budget);
  const inputs = new Set(c.source.inputs.map((x) => x.name));
  const sliced = whole ? tensors : Object.fromEntries(Object.entries(tensors).map(([k, x]) => [k, inputs.has(k) ? causalSlice(x, ob, ot) : x]));
  let clock = performance.now();
  const oracle = evaluateRecurrent(c.program, sliced);
  const cpuMs = performance.now() - clock;
  line(`\n2. float64 CPU oracle (recurrent form), ${shape}${whole ? '' : `, on its causal prefix b=${ob} t=${ot} (the outputs there depend on nothing later; the whole is over --oracle-budget ${budget} state updates)`}: ${fmtMs(cpuMs)}`);
  const forms: [string, PlanRequest][] = [
    ['fused chunked', { form: 'chunked', fuse: true }],
    ['unfused chunked', { form: 'chunked', fuse: false }],
    ['recurrent (decode form)', { form: 'recurrent' }],
  ];
  const naive = t * t * b * h <= (soft ? 2e6 : 2e9);
  if (naive) forms.push(['naive quadratic', { form: 'parallel' }]);
  const timing = soft ? `median GPU time of ${iters} runs` : `median GPU time of ${iters} runs, the median of 3 rounds in turn after a warm-up round`;
  line(`\n3. GPU forms vs the oracle (relative error ‖gpu − oracle‖/‖oracle‖${whole ? '' : ` over b=${ob} t=${ot}`}, ${timing}; 3 runs for the naive form):`);
  const results: FormResult[] = [];
  for (const [name, req] of forms) results.push(await runForm(gpu, c, tensors, oracle, name, req, req.form === 'parallel' ? Math.min(iters, 3) : iters));
  await timeForms(gpu, results, tensors, b, t);
  for (const r of results) {
    line(`   ${r.name.padEnd(26)} ${String(r.kernels).padStart(2)} kernel${r.kernels === 1 ? ' ' : 's'}  error ${r.err.toExponential(2)}  ${fmtMs(r.ms).padStart(10)}  ${r.err <= TOLERANCE ? 'ok' : `FAIL (> ${TOLERANCE})`}`);
  }
  if (!naive) line(`   (naive quadratic form skipped at t=${t} on this adapter: O(t²); pass --t 256 to include it)`);
  const fused = results[0];
  line(`   fused vs unfused: ${(results[1].ms / fused.ms).toFixed(2)}×; tokens/s in prefill: ${((b * t) / (fused.ms / 1e3)).toExponential(2)}`);
  // The cost model's pick between the two plans at this shape (plan-choice.ts), with its reason: the demo times both.
  const picked = choosePlan(gpu, c.program, sizes, {}, { b, t });
  line(`   the cost model's pick at this shape: ${picked.fuse ? 'fused' : 'unfused'} (${picked.reason})`);
  let ok = results.every((r) => r.err <= TOLERANCE);
  if (!whole) {
    // Past the oracle's slice, the forms against each other over the whole output.
    const apart = Math.max(...results.slice(1).map((r) => relativeError(r.o.data, fused.o.data)));
    line(`   over the whole output (${shape}) every form against the fused chunked one: relative difference ≤ ${apart.toExponential(2)}  ${apart <= TOLERANCE ? 'ok' : `FAIL (> ${TOLERANCE})`}`);
    ok = ok && apart <= TOLERANCE;
  }

  // 4–6. a trained tiny LM, speculative decoding with it, and a short live training
  if (!values['skip-model']) {
    ok = (await trainedModelPart(io, line)) && ok;
    ok = (await speculativePart(io, line, soft)) && ok;
    ok = (await liveTrainingPart(line)) && ok;
  }
  line(`\n${ok ? 'all checks passed' : 'SOME CHECKS FAILED'} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return ok ? 0 : 1;
}

