// Decoding and prefill speed of the whole decoder LM on the GPU, next to the bound that reading every
// weight once per step at the adapter's measured copy bandwidth allows.
//
//   npm run bench:decode [-- --small] [--steps N] [--layers N] [--attention compiled|simple]   (default: the compiled variant)
//                        [--variant FILE.la] [--heads N]   (default elu_dwconv, 12 heads of 64; --heads 6: heads of 128)
//                        [--prefill-schedule model|segmented|unsegmented|unfused|CxRxT[sG]]   (the compiled prefill's:
//                        default the model's, segments allowed on hardware; or e.g. 16x64x512s4)
//                        [--one-submit]   (the prefill as one command buffer, not pieces submitted as encoded)
//                        [--prefill-tokens N]   (default 2048, 128 when small)
//                        [--batches 1,8] [--decode-split CxS]   (batch 1's decode step at C value columns × S slices a
//                        workgroup instead of recurrent-split.ts's choice)
//                        [--recurrent-loads-first on|off]   (off: the decode step as before RecurrentOptions.loadsFirst,
//                        its global loads spread over three barriers and a pairwise reduction; default on)
//
// Model (random weights): 12 layers, hidden 768, 12 heads of 64, intermediate 2048, vocab 32000,
// attention elu+1 linear attention + K = 4 depthwise conv on v (examples/paper/elu_dwconv.la); --small
// (and any software adapter) shrinks it so lavapipe finishes. The attention layer is pluggable
// (runDecodeBench's `attention`): by default the plain recurrent WGSL of test/helpers, which the compiled
// variant replaces. Prints a table; writes decode.json to $OUT if set, else out/.
//
// Figures: prefill of one 2048-token prompt (its first layers submitted while the rest are encoded:
// src/model/prefill-submits.ts; --one-submit: one command buffer); decode at batch 1 and 8, each step one submit,
// (a) synchronous — submit, read the tokens, repeat: per-step wall time split into GPU time (timestamp
// queries around the step's pass) and host overhead (wall − GPU: encode, submit, readback, scheduling);
// (b) pipelined: `linattn generate`'s own loop (generateGpu), runs of steps in flight, each run read back once:
// tokens/s, and its host time per step encoding and submitting; (c) a step encoded and finished but never
// submitted ('enc only': Dawn's frontend and our JavaScript, without the backend's recording at submit); and,
// with timestamps, the step's dispatches timed one by one. The prefill's host time is split the same way
// (prepare, encode, submit, the wait beyond the GPU's time) beside what one prefill asks of the device (buffers,
// bind groups, queue writes), and with timestamps its dispatches are timed one by one too: matmuls of M = b·t
// rows against the chunk kernel, whose grid (printed) does not grow with t.
import { join } from 'node:path';
import type { AttentionContext } from '../src/model/attention-context.ts';
import { parseConfig, REPO_ROOT, type ModelConfig } from '../src/model/config.ts';
import type { GpuAttentionFactory } from '../src/runtime/gpu-attention.ts';
import { generateGpu } from '../src/model/generate.ts';
import { GpuModel, type StepHandle } from '../src/model/gpu-model.ts';
import type { Tokenizer } from '../src/model/tokenizer.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import type { PrefillScheduleRequest } from '../src/runtime/plan-choice.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { median } from '../src/runtime/timing.ts';
import { ProfilingPass, summarizeDispatches, timeDispatchesOf } from '../src/runtime/dispatch-profile.ts';
import { countDeviceCalls, type DeviceCall } from './device-calls.ts';
import { simpleAttentionFactory } from '../test/helpers/simple-gpu-attention.ts';
import { measureCopyBandwidth, type CopyBandwidth } from './roofline.ts';
import { adapterHeader, type AdapterHeader, flagValue, runIfMain, writeReport } from './script.ts';

export interface ModelShape {
  readonly layers: number;
  readonly hidden: number;
  readonly heads: number;
  readonly intermediate: number;
  readonly vocab: number;
  readonly K: number;
}

export const FULL: ModelShape = { layers: 12, hidden: 768, heads: 12, intermediate: 2048, vocab: 32000, K: 4 };
export const SMALL: ModelShape = { layers: 2, hidden: 128, heads: 4, intermediate: 256, vocab: 1024, K: 4 };

export interface DecodeBenchOptions {
  readonly small?: boolean;
  /** Overrides the shape's layer count (`--layers`: the small shape with 12 layers records a full step's dispatches). */
  readonly layers?: number;
  /** Overrides the shape's head count (`--heads`: 6 heads of 128 at hidden 768, the LLaMA-2-7B checkpoints' head size). */
  readonly heads?: number;
  /** The attention variant (`--variant FILE.la`; default examples/paper/elu_dwconv.la). */
  readonly variant?: string;
  /** Decode steps timed per batch size (default 256, 16 when small): generate binds and records a session's step
   * once per position slot in its first 8 steps, which 64 steps would not amortise. */
  readonly steps?: number;
  /** Prompt length of the prefill figure (default 2048, 128 when small). */
  readonly prefillTokens?: number;
  readonly batches?: readonly number[];
  /** The attention layers; default: the simple recurrent WGSL reference. */
  readonly attention?: (ctx: AttentionContext) => GpuAttentionFactory | Promise<GpuAttentionFactory>;
  /** Names the attention in the report. */
  readonly attentionName?: string;
  /** The prefill as one command buffer (GpuModelOptions.splitPrefill false). */
  readonly onePrefillSubmit?: boolean;
  readonly log?: (line: string) => void;
}

export interface DecodeFigure {
  readonly batch: number;
  readonly steps: number;
  readonly dispatchesPerStep: number;
  /** Synchronous steps: medians per step, in ms. */
  readonly wallMsPerStep: number;
  readonly gpuMsPerStep: number | undefined;
  readonly hostOverheadMsPerStep: number | undefined;
  readonly encodeMsPerStep: number;
  readonly submitMsPerStep: number;
  readonly syncTokensPerS: number;
  /** generateGpu's loop (what `linattn generate` runs): several runs of steps in flight, no timestamps written. */
  readonly pipelinedTokensPerS: number;
  /** The same loop with each step's timestamps written (a model with timestamps). */
  readonly stampedTokensPerS: number;
  /** The same loop with each run's steps submitted one by one, and with a readback per step (runs of 1). */
  readonly unchainedTokensPerS: number;
  readonly readbackPerStepTokensPerS: number;
  /** In that loop, per step: host time encoding (replaying) and submitting it, median, in ms. */
  readonly pipelinedEncodeSubmitMsPerStep: number;
  /** Recording a step into a command buffer that is finished and never submitted (Dawn's frontend and the
   * JavaScript around it, without the backend's work at submit), median, in ms. */
  readonly encodeOnlyMsPerStep: number;
  /** b · copy bandwidth / bytes a step reads (weights once, plus the attention state). */
  readonly boundTokensPerS: number;
  readonly fractionOfBound: number;
  /** The step's dispatches timed one by one (timestamps only), summed per kernel, most expensive first. */
  readonly kernels?: readonly KernelTime[];
}

export interface KernelTime {
  readonly kernel: string;
  readonly dispatches: number;
  readonly ms: number;
  /** The grid of its first dispatch. */
  readonly workgroups?: readonly [number, number, number];
}

export interface PrefillFigure {
  readonly tokens: number;
  readonly wallMs: number;
  readonly gpuMs: number | undefined;
  readonly tokensPerS: number;
  readonly dispatches: number;
  /** Host time per prefill, medians in ms: before encoding, encoding, submitting, and waiting in tokens(). */
  readonly prepareMs: number;
  readonly encodeMs: number;
  readonly submitMs: number;
  readonly waitMs: number;
  /** Command buffers per prefill, and the host's ms from the start of encoding to the first submit's return. */
  readonly commandBuffers: number;
  readonly firstSubmitMs: number;
  /** What one prefill (after the first of its shape) asks of the device. */
  readonly deviceCalls: Record<DeviceCall, number>;
  /** Its dispatches timed one by one (timestamps only), summed per kernel, most expensive first. */
  readonly kernels?: readonly KernelTime[];
}

export interface DecodeBenchReport extends AdapterHeader {
  readonly model: ModelShape & { readonly headDim: number; readonly params: number; readonly weightBytesPerStep: number };
  readonly attention: string;
  readonly timing: 'timestamp-query' | 'wall-clock only';
  readonly copy: CopyBandwidth;
  readonly prefill: PrefillFigure;
  readonly decode: readonly DecodeFigure[];
}

export function benchConfig(shape: ModelShape, variant = 'examples/paper/elu_dwconv.la'): ModelConfig {
  return parseConfig(
    {
      vocab_size: shape.vocab, hidden_size: shape.hidden, intermediate_size: shape.intermediate,
      num_hidden_layers: shape.layers, num_attention_heads: shape.heads, rms_norm_eps: 1e-5,
      tokenizer: 'bytes', attention: { variant, options: { K: shape.K } },
    },
    join(REPO_ROOT, 'bench', 'decode-bench-config.json'),
  );
}

/** Ids only: the benches never print text. */
export function silentTokenizer(vocab: number): Tokenizer {
  return { vocabSize: vocab, encode: () => [], decode: () => '' };
}

export function promptTokens(b: number, t: number, vocab: number, seed: number): number[][] {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % vocab;
  };
  return Array.from({ length: b }, () => Array.from({ length: t }, next));
}

async function timedStep(step: StepHandle): Promise<{ wallMs: number; gpuMs?: number }> {
  const t0 = performance.now();
  await step.tokens();
  return { wallMs: performance.now() - t0 + step.timing.encodeMs + step.timing.submitMs, gpuMs: step.timing.gpuMs };
}

export async function runDecodeBench(opts: DecodeBenchOptions = {}): Promise<DecodeBenchReport> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const gpu: Gpu = await getDevice();
  const small = opts.small ?? gpu.isSoftware;
  const shape = { ...(small ? SMALL : FULL), ...(opts.layers !== undefined && { layers: opts.layers }), ...(opts.heads !== undefined && { heads: opts.heads }) };
  const steps = opts.steps ?? (small ? 16 : 256);
  const prefillT = opts.prefillTokens ?? (small ? 128 : 2048);
  const batches = opts.batches ?? [1, 8];
  const config = benchConfig(shape, opts.variant);
  const variant = loadModelVariant(config);

  log(`decode bench on ${gpu.adapterName} (Dawn toggles: ${gpu.toggles.join(', ') || 'none'}): ${shape.layers} layers, hidden ${shape.hidden}, ${shape.heads} heads, vocab ${shape.vocab}${small ? ' (small)' : ''}`);
  const copy = await measureCopyBandwidth(gpu, { bytes: small ? 16 << 20 : 256 << 20, iters: 20 });
  const weights = randomWeights(config, 1, variant.params);
  const factory = opts.attention
    ? await opts.attention({ gpu, config, program: variant.compiled, source: variant.program })
    : await simpleAttentionFactory(gpu, { heads: config.numHeads, headDim: config.headDim, K: shape.K });
  const attentionName = opts.attentionName ?? (opts.attention ? 'given factory' : 'simple recurrent WGSL (test/helpers/simple-gpu-attention.ts)');
  const model = await GpuModel.create(gpu, config, weights, factory, opts.onePrefillSubmit ? { splitPrefill: false } : {});
  const params = weights.layers.reduce(
    (s, l) => s + [l.inputNorm, l.qProj, l.kProj, l.vProj, l.oProj, l.postNorm, l.gateProj, l.upProj, l.downProj, ...Object.values(l.attention)].reduce((a, t) => a + t.data.length, 0),
    weights.embedTokens.data.length + weights.norm.data.length + weights.lmHead.data.length,
  );
  // The attention state each step reads and writes per sequence: S [h, d, d], z [h, d], K − 1 values.
  const stateBytes = 2 * 4 * config.numLayers * config.numHeads * config.headDim * (config.headDim + 1 + (shape.K - 1));

  try {
    // Prefill: one prompt, one submit. The first run compiles the shape's pipelines.
    const prompt = promptTokens(1, prefillT, shape.vocab, 7);
    await (await model.prefill(prompt)).tokens();
    // Sustained prefills until the clocks have ramped: call 10 timed five prefills from an idle GPU and read 65.6 ms
    // of GPU time for dispatches that, each timed warm, summed to 20.2 ms.
    if (!gpu.isSoftware) for (const t0 = performance.now(); performance.now() - t0 < PREFILL_WARMUP_MS; ) await (await model.prefill(prompt)).tokens();
    const runs: { wallMs: number; gpuMs?: number; dispatches: number; prepareMs: number; encodeMs: number; submitMs: number; waitMs: number; commandBuffers: number; firstSubmitMs: number }[] = [];
    let deviceCalls: Record<DeviceCall, number> | undefined;
    for (let i = 0; i < (small ? 3 : 9); i++) {
      const counted = await countDeviceCalls(gpu.device, async () => {
        const t0 = performance.now();
        const step = await model.prefill(prompt);
        await step.tokens();
        return { step, wallMs: performance.now() - t0 };
      });
      const { step, wallMs } = counted.result;
      deviceCalls ??= counted.calls;
      const { prepareMs = NaN, encodeMs, submitMs, waitMs = NaN, gpuMs, commandBuffers, firstSubmitMs } = step.timing;
      runs.push({ wallMs, gpuMs, dispatches: step.dispatches, prepareMs, encodeMs, submitMs, waitMs, commandBuffers, firstSubmitMs });
    }
    const prefillWall = median(runs.map((r) => r.wallMs));
    const prefillGpu = runs.every((r) => r.gpuMs !== undefined) ? median(runs.map((r) => r.gpuMs!)) : undefined;
    let prefillKernels: KernelTime[] | undefined;
    if (model.hasTimestamps) {
      // Recorded on states of its own; the batch's chosen token it overwrites is the next prefill's to set.
      const recorder = new ProfilingPass('profiled prefill');
      await model.recordPrefill(recorder.asPass(), prompt);
      prefillKernels = summarizeDispatches(await timeDispatchesOf(gpu, recorder.dispatches, small ? 2 : 5));
    }
    const prefill: PrefillFigure = {
      tokens: prefillT, wallMs: prefillWall, gpuMs: prefillGpu, tokensPerS: prefillT / (prefillWall / 1000), dispatches: runs[0].dispatches,
      prepareMs: median(runs.map((r) => r.prepareMs)), encodeMs: median(runs.map((r) => r.encodeMs)),
      submitMs: median(runs.map((r) => r.submitMs)), waitMs: median(runs.map((r) => r.waitMs)),
      commandBuffers: runs[0].commandBuffers, firstSubmitMs: median(runs.map((r) => r.firstSubmitMs)),
      deviceCalls: deviceCalls!,
      ...(prefillKernels && { kernels: prefillKernels }),
    };

    const decode: DecodeFigure[] = [];
    for (const b of batches) {
      const prompts = promptTokens(b, 16, shape.vocab, 11 + b);
      await (await model.prefill(prompts)).tokens();
      for (let i = 0; i < 4; i++) await model.decodeStep().tokens(); // warm-up
      const sync: { wallMs: number; gpuMs?: number; encodeMs: number; submitMs: number }[] = [];
      let dispatches = 0;
      for (let i = 0; i < steps; i++) {
        const step = model.decodeStep();
        dispatches = step.dispatches;
        sync.push({ ...(await timedStep(step)), encodeMs: step.timing.encodeMs, submitMs: step.timing.submitMs });
      }
      // Pipelined: exactly what `linattn generate` runs (generateGpu, its steps in flight, no timestamps written), on
      // the same prompts; its decode time starts once the prefill's token is on the host. 'stamped': the same loop
      // with each step's timestamps written, as the other benches run it.
      const generate = async (o: { chainSteps?: boolean; stepsPerReadback?: number; inFlight?: number } = {}, stamps = false) => {
        model.stampSteps = stamps;
        try {
          return await generateGpu(model, silentTokenizer(shape.vocab), prompts, { maxTokens: steps + 1, ...o });
        } finally {
          model.stampSteps = true;
        }
      };
      const run = await generate();
      const pipelinedTokensPerS = run.decodeTokensPerS ?? NaN;
      const pipelinedEncodeSubmitMsPerStep = median(run.decodeSteps.map((s) => s.encodeMs + s.submitMs));
      const tokensPerS = async (o: { chainSteps?: boolean; stepsPerReadback?: number; inFlight?: number }, stamps = false) => (await generate(o, stamps)).decodeTokensPerS ?? NaN;
      const stampedTokensPerS = await tokensPerS({}, true);
      const unchainedTokensPerS = await tokensPerS({ chainSteps: false });
      const readbackPerStepTokensPerS = await tokensPerS({ stepsPerReadback: 1, inFlight: 4 });
      const encodeOnly: number[] = [];
      for (let i = 0; i < 64; i++) {
        const t0 = performance.now();
        const encoder = gpu.device.createCommandEncoder({ label: 'decode step, encoded only' });
        const pass = encoder.beginComputePass({ label: 'decode step, encoded only' });
        model.recordDecodeStep(pass);
        pass.end();
        encoder.finish();
        encodeOnly.push(performance.now() - t0);
      }
      const encodeOnlyMsPerStep = median(encodeOnly);
      const wall = median(sync.map((s) => s.wallMs));
      const gpuMs = sync.every((s) => s.gpuMs !== undefined) ? median(sync.map((s) => s.gpuMs!)) : undefined;
      // Where the step's GPU time goes, once the GPU bounds the loop: each dispatch in a pass of its own
      // (replays run on the state, which no longer matters here).
      let kernels: DecodeFigure['kernels'];
      if (model.hasTimestamps) {
        const recorder = new ProfilingPass();
        model.recordDecodeStep(recorder.asPass());
        kernels = summarizeDispatches(await timeDispatchesOf(gpu, recorder.dispatches, 5));
      }
      const bytesPerStep = model.weightBytesPerToken + b * stateBytes;
      const boundTokensPerS = (b * copy.gbPerS * 1e9) / bytesPerStep;
      decode.push({
        batch: b, steps, dispatchesPerStep: dispatches,
        wallMsPerStep: wall, gpuMsPerStep: gpuMs, hostOverheadMsPerStep: gpuMs === undefined ? undefined : wall - gpuMs,
        encodeMsPerStep: median(sync.map((s) => s.encodeMs)), submitMsPerStep: median(sync.map((s) => s.submitMs)),
        syncTokensPerS: b / (wall / 1000), pipelinedTokensPerS, stampedTokensPerS, unchainedTokensPerS, readbackPerStepTokensPerS, pipelinedEncodeSubmitMsPerStep, encodeOnlyMsPerStep,
        boundTokensPerS, fractionOfBound: pipelinedTokensPerS / boundTokensPerS,
        ...(kernels && { kernels }),
      });
    }

    return {
      ...adapterHeader(gpu),
      model: { ...shape, headDim: config.headDim, params, weightBytesPerStep: model.weightBytesPerToken },
      attention: attentionName,
      timing: model.hasTimestamps ? 'timestamp-query' : 'wall-clock only',
      copy,
      prefill,
      decode,
    };
  } finally {
    await model.destroy();
  }
}

const ms = (x: number | undefined) => (x === undefined ? '—' : `${x.toFixed(3)} ms`);

export function formatReport(r: DecodeBenchReport): string[] {
  const m = r.model;
  const lines = [
    `model: ${m.layers} layers, hidden ${m.hidden}, ${m.heads}×${m.headDim} heads, intermediate ${m.intermediate}, vocab ${m.vocab}, K ${m.K}; ${(m.params / 1e6).toFixed(1)} M params, ${(m.weightBytesPerStep / 2 ** 20).toFixed(1)} MiB read per decode step`,
    `attention: ${r.attention}; adapter: ${r.adapter}; GPU time by ${r.timing}`,
    `copy bandwidth: ${r.copy.gbPerS.toFixed(1)} GB/s (read+write, ${(r.copy.bytes / 2 ** 20).toFixed(0)} MiB)`,
    ...formatPrefill(r.prefill),
  ];
  const rows: string[][] = [['batch', 'tokens/s', 'stamped', 'unchained', '1/readback', 'sync tok/s', 'bound tok/s', 'of bound', 'wall/step', 'GPU/step', 'host/step', 'encode', 'submit', 'gen enc+sub', 'enc only', 'dispatches']];
  for (const d of r.decode) {
    rows.push([
      String(d.batch), d.pipelinedTokensPerS.toFixed(1), d.stampedTokensPerS.toFixed(1), d.unchainedTokensPerS.toFixed(1), d.readbackPerStepTokensPerS.toFixed(1), d.syncTokensPerS.toFixed(1), d.boundTokensPerS.toFixed(1),
      `${(100 * d.fractionOfBound).toFixed(1)}%`, ms(d.wallMsPerStep), ms(d.gpuMsPerStep), ms(d.hostOverheadMsPerStep),
      ms(d.encodeMsPerStep), ms(d.submitMsPerStep), ms(d.pipelinedEncodeSubmitMsPerStep), ms(d.encodeOnlyMsPerStep), String(d.dispatchesPerStep),
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  lines.push(
    'decode (tokens/s pipelined as generate runs: runs of steps, a greedy run one submit, no timestamps; stamped = with them; unchained = a submit per step; ' +
      '1/readback = a readback per step, 4 in flight; sync = submit-read-repeat):',
  );
  for (const row of rows) lines.push('  ' + row.map((c, i) => c.padStart(widths[i])).join('  '));
  for (const d of r.decode) {
    if (d.kernels) lines.push(...formatKernels(`decode step at batch ${d.batch}`, d.kernels));
  }
  return lines;
}

function formatPrefill(p: PrefillFigure): string[] {
  const c = p.deviceCalls;
  const lines = [
    `prefill ${p.tokens} tokens (b=1): ${p.tokensPerS.toFixed(1)} tokens/s, wall ${ms(p.wallMs)}, GPU ${ms(p.gpuMs)}, ${p.dispatches} dispatches`,
    `  host per prefill: prepare ${ms(p.prepareMs)}, encode ${ms(p.encodeMs)}, submit ${ms(p.submitMs)} in ${p.commandBuffers} command buffer${p.commandBuffers > 1 ? 's' : ''}` +
      ` (the first submitted ${ms(p.firstSubmitMs)} after encoding began), waiting for the tokens ${ms(p.waitMs)}` +
      (p.gpuMs === undefined ? '' : ` (wall − GPU ${ms(p.wallMs - p.gpuMs)}; GPU: its passes' time summed)`),
    `  asks the device per prefill: ${c.createBuffer} buffers, ${c.createBindGroup} bind groups, ${c.writeBuffer} queue writes, ${c.createCommandEncoder} encoders, ${c.submit} submits`,
  ];
  if (p.kernels) lines.push(...formatKernels(`prefill of ${p.tokens} tokens`, p.kernels));
  return lines;
}

/** The model's kernels by name: projections and the LM head are matmuls; anything not the model's is the attention's. */
function kernelFamily(kernel: string): 'matmul' | 'model elementwise' | 'attention' {
  if (/proj|lm head/.test(kernel)) return 'matmul';
  if (/norm|swiglu|embedding|argmax|sample/.test(kernel)) return 'model elementwise';
  return 'attention';
}

function formatKernels(what: string, kernels: readonly KernelTime[]): string[] {
  const total = kernels.reduce((a, k) => a + k.ms, 0);
  const families = new Map<string, number>();
  for (const k of kernels) families.set(kernelFamily(k.kernel), (families.get(kernelFamily(k.kernel)) ?? 0) + k.ms);
  const split = [...families].map(([f, t]) => `${f} ${((100 * t) / total).toFixed(1)}%`).join(', ');
  const lines = [`${what}, dispatch by dispatch (each in its own pass: ${ms(total)} in all; ${split}):`];
  for (const k of kernels) {
    const grid = k.workgroups ? `  ${k.workgroups.join('×')} = ${k.workgroups[0] * k.workgroups[1] * k.workgroups[2]} workgroups` : '';
    lines.push(`  ${k.kernel.padEnd(28)} ${String(k.dispatches).padStart(3)}×  ${ms(k.ms)}  ${((100 * k.ms) / total).toFixed(1)}%${grid}`);
  }
  return lines;
}

/** Back-to-back prefills before the timed ones on a hardware GPU (its clocks idle low between calls). */
const PREFILL_WARMUP_MS = 400;

/** 'model' (the default), 'segmented', 'unsegmented', or chunk × columns × threads with an optional segment: '16x64x512s4'. */
function parsePrefillSchedule(arg: string | undefined): PrefillScheduleRequest {
  if (arg === undefined || arg === 'model' || arg === 'unsegmented' || arg === 'segmented' || arg === 'unfused') return arg ?? 'model';
  const m = /^(\d+)x(\d+)x(\d+)(?:s(\d+))?$/.exec(arg);
  if (!m) throw new Error(`--prefill-schedule must be model, segmented, unsegmented, unfused or CxRxT[sG] (16x64x512s4), got ${arg}`);
  const [chunk, cols, threads] = [m[1], m[2], m[3]].map(Number);
  return { chunk, cols, threads, ...(m[4] !== undefined && { segment: Number(m[4]) }) };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const valueOf = (flag: string) => flagValue(args, flag);
  const steps = valueOf('--steps');
  const layers = valueOf('--layers');
  const prefillTokens = valueOf('--prefill-tokens');
  const attention = valueOf('--attention') ?? 'compiled';
  if (attention !== 'simple' && attention !== 'compiled') throw new Error(`--attention must be simple or compiled, got ${attention}`);
  const prefillSchedule = parsePrefillSchedule(valueOf('--prefill-schedule'));
  const split = valueOf('--decode-split');
  const m = split === undefined ? undefined : /^(\d+)x(\d+)$/.exec(split);
  if (split !== undefined && !m) throw new Error(`--decode-split must be COLUMNSxSLICES (batch 1's decode step: 2x64), got ${split}`);
  const decodeSplit = m ? (b: number) => (b === 1 ? { columns: Number(m[1]), slices: Number(m[2]) } : undefined) : undefined;
  const loadsFirst = valueOf('--recurrent-loads-first');
  if (loadsFirst !== undefined && loadsFirst !== 'on' && loadsFirst !== 'off') throw new Error(`--recurrent-loads-first must be on or off, got ${loadsFirst}`);
  const batches = valueOf('--batches');
  let prefillPlan: string | undefined;
  const report = await runDecodeBench({
    small: args.includes('--small') || undefined,
    onePrefillSubmit: args.includes('--one-submit') || undefined,
    ...(steps !== undefined && { steps: Number(steps) }),
    ...(layers !== undefined && { layers: Number(layers) }),
    ...(valueOf('--heads') !== undefined && { heads: Number(valueOf('--heads')) }),
    ...(valueOf('--variant') !== undefined && { variant: valueOf('--variant') }),
    ...(prefillTokens !== undefined && { prefillTokens: Number(prefillTokens) }),
    ...(batches !== undefined && { batches: batches.split(',').map(Number) }),
    ...(attention === 'compiled' && {
      attention: ({ gpu, config, program }: AttentionContext) =>
        compiledAttentionFactory(gpu, program, config.numHeads, config.headDim, { prefillSchedule, onChoice: (why) => void (prefillPlan = why), ...(decodeSplit && { decodeSplit }), ...(loadsFirst === 'off' && { recurrentLoadsFirst: false }) }),
      attentionName: 'compiled variant (src/runtime/compiled-attention.ts: fused chunked prefill, recurrent decode)',
    }),
  });
  for (const line of formatReport(report)) console.log(line);
  if (prefillPlan) console.log(`prefill plan of the attention layers: ${prefillPlan}`);
  if (loadsFirst === 'off') console.log('decode step built without RecurrentOptions.loadsFirst (--recurrent-loads-first off)');
  writeReport(process.env.OUT ?? 'out', 'decode.json', { ...report, ...(prefillPlan && { prefillPlan }), ...(loadsFirst === 'off' && { recurrentLoadsFirst: false }) });
}

runIfMain(import.meta.url, main, { stack: true });
