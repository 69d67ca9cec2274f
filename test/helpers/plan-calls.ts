// Calls of a compiled plan on slices of one sequence of inputs, the way decoding continues a prefill: the inputs'
// rows of a call, one call encoded and submitted on given buffers (state buffers shared between calls), and the
// check that decoding from a prefill's exported state follows the oracle; a training forward's kept parts read back.
import { evaluateParallel } from '../../backends/cpu/parallel.ts';
import { keptBuffer, normalisedItems } from '../../backends/wgsl/lower.ts';
import { makeInputs } from '../../src/inputs.ts';
import type { Compiled } from '../../src/runtime/compiler.ts';
import type { Gpu } from '../../src/runtime/device.ts';
import type { PlanRunner } from '../../src/runtime/executor.ts';
import { downloadTensor, releaseTensor } from '../../src/runtime/gpu-tensor.ts';
import type { Tensor } from '../../src/tensor.ts';
import { expectRelClose } from './gpu.ts';

/** Rows [from, to) along time of every input of a batch of B sequences of T positions (batch axis first); parameters as they are. */
export function inputRows(x: Record<string, Tensor>, inputs: readonly string[], B: number, T: number, from: number, to: number): Record<string, Tensor> {
  return Object.fromEntries(
    Object.entries(x).map(([k, v]) => {
      if (!inputs.includes(k)) return [k, v];
      const per = v.data.length / (B * T);
      const data = new Float32Array(B * (to - from) * per);
      for (let b = 0; b < B; b++) data.set(v.data.subarray((b * T + from) * per, (b * T + to) * per), b * (to - from) * per);
      return [k, { shape: [B, to - from, ...v.shape.slice(2)], data }];
    }),
  );
}

/** Binds `bufs` at batch b, t tokens from position pos, runs the plan in a pass of its own; the caller destroys the binding's dims. */
export function submitPlan(g: Gpu, r: PlanRunner, bufs: Record<string, GPUBuffer>, b: number, t: number, pos = 0): ReturnType<PlanRunner['bind']> {
  const enc = g.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  const bound = r.bind(bufs, b, t, pos);
  r.encode(pass, bound);
  pass.end();
  g.device.queue.submit([enc.finish()]);
  return bound;
}

/**
 * Runs a training forward (a plan lowered with keepNormalisers) on inputs `x` at `shape` and reads back its output and
 * every normalised item's kept numerator and denominator (lower.ts keptBuffer), by buffer name.
 */
export async function keptParts(g: Gpu, r: PlanRunner, c: Compiled, x: Record<string, Tensor>, shape: { b: number; t: number }): Promise<Record<string, Float32Array>> {
  const bufs = r.allocate(x, shape.b, shape.t);
  const bound = submitPlan(g, r, Object.fromEntries(Object.entries(bufs).map(([k, v]) => [k, v.buffer])), shape.b, shape.t);
  const names = ['out:o', ...normalisedItems(c.program).flatMap(({ k }) => [keptBuffer('n', k), keptBuffer('z', k)])];
  const out = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await downloadTensor(g, bufs[n])] as const)));
  bound.dims.destroy();
  r.release(bufs);
  return out;
}

/**
 * Prefills t0 tokens of one seeded sequence with `prefill` (a fused chunked plan that exports its state), then decodes
 * `steps` more with `step` (the recurrent plan) on that state, one call a token: the prefill's outputs and every
 * step's must equal the float64 parallel oracle over the whole sequence. `what` names the case in a failure.
 */
export async function expectDecodesFromPrefill(
  g: Gpu,
  source: Compiled['source'],
  prefill: PlanRunner,
  step: PlanRunner,
  o: { readonly axes: Record<string, number>; readonly t0: number; readonly steps: number; readonly seed: number; readonly what: string },
): Promise<void> {
  const { t0, seed, what } = o;
  const T = t0 + o.steps;
  const inputs = source.inputs.map((d) => d.name);
  const x = makeInputs(source, { b: 1, t: T, axes: o.axes, seed });
  const ref = evaluateParallel(source, x);
  const per = ref.data.length / T;
  const pre = prefill.allocate(inputRows(x, inputs, 1, T, 0, t0), 1, t0);
  const state = Object.fromEntries(Object.entries(pre).map(([k, v]) => [k, v.buffer]));
  submitPlan(g, prefill, state, 1, t0, 0).dims.destroy();
  expectRelClose(await downloadTensor(g, pre['out:o']), ref.data.subarray(0, t0 * per), 1e-4, `${what}, the prefill's outputs, seed ${seed}`);
  for (let at = t0; at < T; at++) {
    const one = step.allocate(inputRows(x, inputs, 1, T, at, at + 1), 1, 1);
    const bufs = Object.fromEntries(Object.entries(one).map(([k, v]) => [k, k.startsWith('state:') ? state[k] : v.buffer]));
    const bound = submitPlan(g, step, bufs, 1, 1, at);
    const out = await downloadTensor(g, one['out:o']);
    bound.dims.destroy();
    expectRelClose(out, ref.data.subarray(at * per, (at + 1) * per), 1e-4, `${what}, step at ${at}, seed ${seed}`);
    step.release(one);
  }
  for (const t of Object.values(pre)) releaseTensor(g, t);
}
