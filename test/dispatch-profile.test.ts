// The step profilers replay recorded dispatches: timeDispatchesOf once per dispatch and repetition, timeStepStream
// every dispatch of the step in one pass, a warm-up submit and then `repeats` passes. A counter kernel checks that
// each runs exactly the replays it claims (its effects, in order) and that the times it returns are real.
import { describe, expect, it } from 'vitest';
import { downloadTensor, allocTensor, releaseTensor } from '../src/runtime/gpu-tensor.ts';
import { ProfilingPass, timeDispatchesOf, timeLeavingOut, timeStepStream } from '../src/runtime/dispatch-profile.ts';
import { compileKernel } from '../src/runtime/pipeline-cache.ts';
import { gpu } from './helpers/gpu.ts';

// counter[0] = 2·counter[0] + 1 after every dispatch: after n replays from 0 it holds 2^n − 1, so the count and
// the order of the replays both show.
const COUNTER = `
@group(0) @binding(0) var<storage, read_write> counter: array<f32>;
@compute @workgroup_size(1)
fn main() { counter[0] = 2.0 * counter[0] + 1.0; }
`;

describe('dispatch profiles', () => {
  it('replay a recorded step the number of times they say, and time it', async () => {
    const g = await gpu();
    if (!g.hasTimestamps) return expect(timeStepStream(g, [])).rejects.toThrow(/no timestamp queries/);
    const pipeline = await compileKernel(g, { label: 'counter (test)', code: COUNTER, bindings: ['storage'] });
    const t = allocTensor(g, 'counter', [1]);
    try {
      const group = g.device.createBindGroup({ label: 'counter', layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: t.buffer } }] });
      const pass = new ProfilingPass();
      const p = pass.asPass();
      p.setPipeline(pipeline);
      p.setBindGroup(0, group);
      p.dispatchWorkgroups(1);
      p.dispatchWorkgroups(1);
      expect(pass.dispatches).toHaveLength(2);
      // A 2-dispatch step, 3 passes back to back after a warm-up of 3: 12 replays.
      const ms = await timeStepStream(g, pass.dispatches, 3);
      expect(ms).toBeGreaterThan(0);
      expect((await downloadTensor(g, t))[0]).toBe(2 ** 12 - 1);
      // Per dispatch, twice: 4 more.
      const each = await timeDispatchesOf(g, pass.dispatches, 2);
      expect(each.map((d) => d.kernel)).toEqual(['counter', 'counter']);
      expect((await downloadTensor(g, t))[0]).toBe(2 ** 16 - 1);
    } finally {
      releaseTensor(g, t);
    }
  });

  it('leave each kernel out of the stream once, between two timings of the whole step', async () => {
    const g = await gpu();
    if (!g.hasTimestamps) return expect(timeLeavingOut(g, [])).rejects.toThrow(/no timestamp queries/);
    const pipeline = await compileKernel(g, { label: 'counter (test)', code: COUNTER, bindings: ['storage'] });
    const a = allocTensor(g, 'a', [1]);
    const b = allocTensor(g, 'b', [1]);
    try {
      // Both from 0 (a released tensor's buffer may come back with its old contents).
      for (const t of [a, b]) g.device.queue.writeBuffer(t.buffer, 0, new Float32Array([0]));
      const group = (label: string, t: typeof a) => g.device.createBindGroup({ label, layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: t.buffer } }] });
      const pass = new ProfilingPass();
      const p = pass.asPass();
      p.setPipeline(pipeline);
      p.setBindGroup(0, group('layer 0 kernel a [M=1]', a));
      p.dispatchWorkgroups(1);
      p.setBindGroup(0, group('layer 0 kernel b [M=1]', b));
      p.dispatchWorkgroups(1);
      p.setBindGroup(0, group('layer 1 kernel b [M=1]', b));
      p.dispatchWorkgroups(1);
      // 2 repeats: each timeStepStream replays the step 4 times (warm-up and timed). The whole step twice, then
      // without a (b twice a replay), then without b (a once): a 4·2 + 4 = 12 times, b 4·2·2 + 4·2 = 24.
      const { fullMs, rows } = await timeLeavingOut(g, pass.dispatches, 2);
      expect(fullMs).toBeGreaterThan(0);
      expect(rows.map((r) => [r.kernel, r.dispatches]).sort()).toEqual([['kernel a', 1], ['kernel b', 2]]);
      for (const r of rows) expect(r.addsMs).toBeCloseTo(fullMs - r.withoutMs, 12);
      expect((await downloadTensor(g, a))[0]).toBe(2 ** 12 - 1);
      expect((await downloadTensor(g, b))[0]).toBe(2 ** 24 - 1);
    } finally {
      releaseTensor(g, a);
      releaseTensor(g, b);
    }
  });
});
