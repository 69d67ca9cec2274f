// Calls of a compiled plan on slices of one sequence of inputs, the way decoding continues a prefill: the inputs'
// rows of a call, and one call encoded and submitted on given buffers (state buffers shared between calls).
import type { Gpu } from '../../src/runtime/device.ts';
import type { PlanRunner } from '../../src/runtime/executor.ts';
import type { Tensor } from '../../src/tensor.ts';

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
