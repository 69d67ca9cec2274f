// Where the host's time goes in chained Medusa speculation (gpu-chain.ts), next to plain decoding's decode steps
// (generateGpu, the yardstick): host µs per dispatch of each, and a chained run's host time split into its parts.
//
//   npx tsx bench/chain-host.ts [--model DIR | --small] [--tree SPEC] [--chain-steps R,R2…] [--tokens N] [--prompts N]
//
// Model: DIR's checkpoint (with Medusa heads), else examples/models/nano/config.json (6 layers, hidden 384, elu_aug)
// with 3 Medusa heads and random weights — the trained nano model's shapes, so the dispatches per step are the H200
// bench's (acceptance differs, which changes tokens per step, not a step's host work). Run with
// LINATTN_DAWN_FLAGS=enable-dawn-features=skip_validation to skip Dawn's host validation as hardware adapters do
// (src/runtime/dawn-flags.ts). On lavapipe the "GPU" shares the host's cores: queue.submit and the readback wait
// include its work, so the encode parts (JavaScript and Dawn's recording, before the submit) are the comparable ones.
//
// Each R runs twice: each run read back before the next is encoded (chainOverlap false, the old loop), and runs
// overlapped (the next submitted before the last is read: GpuChain.continue). Per row: tokens/s and wall µs per
// chained step, and per run (medians over runs, µs per chained step):
//   encode+submit   GpuChain.encoding: from the run's first command encoder to its last submit (bench/medusa.ts's figure);
//   first step      the run's first step encoded by JavaScript (ChainHost.encodeStep); a continued run replays it;
//   replays         RecordedStep.replay (the native setPipeline / setBindGroup / dispatch calls);
//   lookups         chainedStep: a step's recording looked up by key;
//   queue.submit    the pieces' (chainCuts) and the readback's;
// with the submits, writeBuffers and bind groups per run and the upload of a begun run's first tree. Writes
// chain-host.json to $OUT, else out/.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, parseConfig } from '../src/model/config.ts';
import { generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { RecordedStep } from '../src/model/step-recording.ts';
import { loadTokenizer } from '../src/model/tokenizer.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { loadWeights } from '../src/model/weights.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { ProfilingPass } from '../src/runtime/dispatch-profile.ts';
import { median } from '../src/runtime/timing.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';

const { values } = parseArgs({
  options: { model: { type: 'string' }, tree: { type: 'string' }, 'chain-steps': { type: 'string' }, tokens: { type: 'string' }, prompts: { type: 'string' }, small: { type: 'boolean' } },
});
const NANO = 'examples/models/nano/config.json';
const config = values.model
  ? loadConfig(join(resolve(values.model), 'config.json'))
  : parseConfig({
    ...(JSON.parse(readFileSync(NANO, 'utf8')) as Record<string, unknown>), medusa: { num_heads: 3 },
    // --small: nano's layers and kernels (the same dispatches per step) at hidden 64, so lavapipe's "GPU", which
    // shares the host's cores, takes little of the run.
    ...(values.small && { hidden_size: 64, intermediate_size: 128, num_attention_heads: 2, head_dim: 32 }),
  }, resolve(NANO));
const heads = config.medusa?.numHeads ?? 0;
if (heads < 1) throw new Error('chain-host: the model needs Medusa heads');
const variant = loadModelVariant(config);
const weights = values.model ? loadWeights(config, join(resolve(values.model), 'model.safetensors'), variant.params) : randomWeights(config, 1, variant.params);
const tokenizer = loadTokenizer(config);
const gpu = await getDevice();
const shape = parseTreeSpec(values.tree ?? '[[0],[1],[2],[0,0],[0,1],[1,0],[0,0,0],[0,0,1]]');
if (shape.kind !== 'static') throw new Error('chain-host: a static tree');
const nodes = shape.paths.length;
const chainSteps = (values['chain-steps'] ?? '4,8').split(',').map(Number);
const newTokens = Number(values.tokens ?? 48);
const nPrompts = Number(values.prompts ?? 2);
const prompts = Array.from({ length: nPrompts }, (_, p) => Array.from({ length: 24 }, (_, i) => 32 + ((7 * i + 13 * p) % 90)));

const model = await GpuModel.create(gpu, config, weights, await compiledAttentionFactory(gpu, variant.compiled, config.numHeads, config.headDim));
const verifier = await GpuTreeVerifier.create(model, variant.compiled, weights, { maxNodes: nodes + 1, ownsModel: true, sizes: [nodes + 1] });
await verifier.prepare({ medusaTopK: 4 });
const log = (s: string) => console.log(s);
log(`chain host on ${gpu.adapterName} (toggles ${gpu.toggles.join(', ')}): ${config.numLayers} layers, hidden ${config.hiddenSize}, ${heads} heads; ` +
  `tree ${shape.spec} (${nodes} nodes), ${nPrompts} prompts × ${newTokens} tokens`);

// Instruments: the chain's host (private to the verifier) and the device's queue, wrapped in place.
const parts = { firstStep: 0, replays: 0, replayed: 0, lookups: 0, upload: 0, uploads: 0, submit: 0, submits: 0, writes: 0, bindGroups: 0, runs: 0 };
const chain = (verifier as unknown as { chain: { host: Record<string, (...a: unknown[]) => unknown>; chainedStep: (...a: unknown[]) => unknown; encodeRun: (...a: unknown[]) => Promise<unknown> } }).chain;
const timed = <K extends keyof typeof parts>(obj: Record<string, (...a: unknown[]) => unknown>, name: string, part: K) => {
  const f = obj[name].bind(obj);
  obj[name] = (...a: unknown[]) => {
    const t0 = performance.now();
    const r = f(...a);
    if (r instanceof Promise) return r.finally(() => (parts[part] += performance.now() - t0));
    parts[part] += performance.now() - t0;
    return r;
  };
};
timed(chain.host, 'encodeStep', 'firstStep');
timed(chain.host, 'upload', 'upload');
const upload = chain.host.upload;
chain.host.upload = (...a: unknown[]) => (parts.uploads++, upload(...a));
timed(chain as unknown as Record<string, (...a: unknown[]) => unknown>, 'chainedStep', 'lookups');
// Per run (GpuChain's encodeRun: a begun or a continued run, from its first command encoder to its last submit):
// each part's µs per chained step (the medians are reported: this machine's cores are shared).
const perRunParts: Record<string, number>[] = [];
const encodeRun = chain.encodeRun.bind(chain);
chain.encodeRun = async (...a: unknown[]) => {
  const before = { ...parts };
  const enc = verifier.chainEncoding;
  const r = await encodeRun(...a);
  parts.runs++;
  const steps = verifier.chainEncoding.steps - enc.steps;
  const d = (k: keyof typeof parts) => (1000 * (parts[k] - before[k])) / steps;
  perRunParts.push({
    encodeSubmit: (1000 * (verifier.chainEncoding.ms - enc.ms)) / steps, firstStep: d('firstStep'), replays: d('replays'), lookups: d('lookups'), submit: d('submit'),
  });
  return r;
};
const replay = RecordedStep.prototype.replay;
RecordedStep.prototype.replay = function (this: RecordedStep, pass: GPUComputePassEncoder) {
  const t0 = performance.now();
  replay.call(this, pass);
  parts.replays += performance.now() - t0;
  parts.replayed++;
};
// Dispatches of a chained step: its recording's.
let lastRecordedDispatches = 0;
const recordAsync = RecordedStep.recordAsync.bind(RecordedStep);
RecordedStep.recordAsync = async (encode) => {
  const r = await recordAsync(encode);
  lastRecordedDispatches = r.dispatches;
  return r;
};
const { queue } = gpu.device;
const submit = queue.submit.bind(queue);
queue.submit = (b: Iterable<GPUCommandBuffer>) => {
  const t0 = performance.now();
  submit(b);
  parts.submit += performance.now() - t0;
  parts.submits++;
};
const write = queue.writeBuffer.bind(queue) as (...a: unknown[]) => void;
(queue as unknown as { writeBuffer: (...a: unknown[]) => void }).writeBuffer = (...a: unknown[]) => {
  parts.writes++;
  write(...a);
};
const createBindGroup = gpu.device.createBindGroup.bind(gpu.device);
gpu.device.createBindGroup = (d: GPUBindGroupDescriptor) => {
  parts.bindGroups++;
  return createBindGroup(d);
};

// Plain decoding: host ms per decode step (encode + submit, generateGpu's runs of 4) and dispatches per step.
const plainOnce = async () => {
  let ms = 0;
  let steps = 0;
  let wall = 0;
  let tokens = 0;
  const perStep: number[] = [];
  for (const p of prompts) {
    const r = await generateGpu(model, tokenizer, [p], { maxTokens: newTokens });
    for (const s of r.decodeSteps) {
      ms += s.encodeMs + s.submitMs;
      perStep.push(s.encodeMs + s.submitMs);
    }
    steps += r.decodeSteps.length;
    wall += r.decodeMs;
    tokens += r.tokens[0].length - 1;
  }
  // generateGpu submits runs of 4 steps: a run's submit lands on its last step, so the median is taken per run.
  const perRun = Array.from({ length: Math.floor(perStep.length / 4) }, (_, i) => perStep.slice(4 * i, 4 * i + 4).reduce((a, b) => a + b, 0) / 4);
  return { hostMsPerStep: ms / steps, medianHostMsPerStep: median(perRun), tokensPerS: (1000 * tokens) / wall };
};
await plainOnce();
const plain = await plainOnce();
await model.prefill([prompts[0]]).then((s) => s.tokens());
const probe = new ProfilingPass();
model.recordDecodeStep(probe.asPass());
const plainDispatches = probe.dispatches.length;
log(`plain generateGpu: ${plain.tokensPerS.toFixed(0)} tokens/s, host ${(1000 * plain.hostMsPerStep).toFixed(1)} µs per decode step ` +
  `(encode + submit; median over runs of 4 steps ${(1000 * plain.medianHostMsPerStep).toFixed(1)}), ${plainDispatches} dispatches: ` +
  `${((1000 * plain.hostMsPerStep) / plainDispatches).toFixed(2)} µs per dispatch (median ${((1000 * plain.medianHostMsPerStep) / plainDispatches).toFixed(2)})`);

const rows: Record<string, unknown>[] = [];
for (const R of chainSteps) for (const overlap of [false, true]) {
  const once = async () => {
    let wall = 0;
    let tokens = 0;
    let steps = 0;
    for (const p of prompts) {
      const r = await speculativeGenerate(verifier, new MedusaDraft(heads, 4), p, { maxTokens: newTokens, shape, maxNodes: nodes, chainSteps: R, chainOverlap: overlap });
      wall += r.decodeMs;
      tokens += r.tokens.length - 1;
      steps += r.steps;
    }
    return { wall, tokens, steps };
  };
  await once(); // recordings and pipelines
  for (const k of Object.keys(parts) as (keyof typeof parts)[]) parts[k] = 0;
  perRunParts.length = 0;
  const before = verifier.chainEncoding;
  const { wall, tokens, steps } = await once();
  const chained = verifier.chainEncoding.steps - before.steps;
  const stepDispatches = lastRecordedDispatches;
  const med = Object.fromEntries(['encodeSubmit', 'firstStep', 'replays', 'lookups', 'submit'].map((k) => [k, median(perRunParts.map((x) => x[k]))]));
  const row = {
    R, overlap, runs: parts.runs, begun: parts.uploads, chainedSteps: chained, steps, tokensPerS: (1000 * tokens) / wall, wallUsPerChainedStep: (1000 * wall) / chained,
    dispatchesPerStep: stepDispatches, usPerDispatch: med.encodeSubmit / stepDispatches,
    submitsPerRun: parts.submits / parts.runs, writesPerRun: parts.writes / parts.runs, bindGroupsPerRun: parts.bindGroups / parts.runs,
    uploadUsPerBegin: (1000 * parts.upload) / Math.max(1, parts.uploads), median: med,
  };
  rows.push(row);
  log(`chained ×${R}${overlap ? ', runs overlapped' : ', each run read before the next'}: ${row.tokensPerS.toFixed(0)} tokens/s, ${row.wallUsPerChainedStep.toFixed(0)} µs of wall per chained step; ` +
    `${chained} chained steps in ${parts.runs} runs (${parts.uploads} begun with an upload, ${row.uploadUsPerBegin.toFixed(0)} µs each); ` +
    `${row.submitsPerRun.toFixed(1)} submits, ${row.writesPerRun.toFixed(1)} writeBuffers and ${row.bindGroupsPerRun.toFixed(1)} bind groups per run\n` +
    `  medians over runs, µs per chained step: encode+submit ${med.encodeSubmit.toFixed(1)} (${stepDispatches} dispatches: ${row.usPerDispatch.toFixed(2)} µs each) = first step by JS ` +
    `${med.firstStep.toFixed(1)}, replays ${med.replays.toFixed(1)}, recordings looked up ${med.lookups.toFixed(1)}, queue.submit ${med.submit.toFixed(1)}`);
}
const out = process.env['OUT'] ?? 'out';
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'chain-host.json'), JSON.stringify({ adapter: gpu.adapterName, toggles: gpu.toggles, tree: shape.spec, newTokens, prompts: nPrompts, plain: { ...plain, dispatches: plainDispatches }, chained: rows }, null, 2) + '\n');
await verifier.destroy();
process.exit(0);
