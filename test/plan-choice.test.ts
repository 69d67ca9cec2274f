// Fused or unfused on a hardware adapter (src/runtime/plan-choice.ts), without one: the choice is a pure function
// of the adapter's name and limits, so a described H200 stands in for the device. Every choice must lower.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { axisSizes } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { choosePlan, choosePrefill } from '../src/runtime/plan-choice.ts';
import { tuningCandidates } from '../src/runtime/schedule.ts';
import { candidateSchedules } from '../backends/wgsl/chunk-schedules.ts';

process.env.LINATTN_CACHE_DIR = mkdtempSync(join(tmpdir(), 'linattn-plan-choice-')); // no autotuned winner
const H200 = {
  adapterName: 'NVIDIA H200 (nvidia, vulkan)',
  isSoftware: false,
  limits: { maxComputeWorkgroupStorageSize: 48 * 1024, maxComputeInvocationsPerWorkgroup: 1024 },
} as unknown as Gpu;
const shape = { b: 4, t: 4096 };
const variant = (name: string, d = 64) => {
  const c = compileFile(`examples/${name}.la`);
  return { p: c.program, sizes: axisSizes(c.source, { h: 16, d, e: d }) };
};

/** The H200 as Dawn describes it with the 'subgroups' feature: subgroups of 32 (Gpu.subgroupSize). */
const H200_SG = { ...H200, subgroupSize: 32 } as unknown as Gpu;

describe('plan choice on a hardware adapter', () => {
  it('keeps the state in subgroup lanes\' registers where the terms hold 4 features a lane, and lowers it so', () => {
    const picks = (name: string, d: number, gpu = H200_SG) => {
      const { p, sizes } = variant(name, d);
      const c = choosePlan(gpu, p, sizes, {}, shape);
      return { c, p, sizes };
    };
    // d 128: one term of 128 features (4 a lane), 4 columns a subgroup; d 64's cosformer: two terms of 64, 2 a lane
    // each, 2 columns a subgroup
    for (const [name, d, cols] of [['paper/elu_dwconv', 128, 64], ['variants/retnet', 128, 64], ['variants/gla', 128, 64], ['paper/cosformer', 64, 32]] as const) {
      const { c, p, sizes } = picks(name, d);
      expect(c.resident, `${name} d ${d}`).toBe(true);
      expect(c.fuse).toBe(true);
      expect(c.schedule).toEqual({ chunk: 16, cols, threads: 512 });
      expect(c.reason).toMatch(/state in subgroup lanes' registers \(rs: 32 lanes a subgroup/);
      const plan = lowerChunked(p, sizes, { fuse: true, schedule: c.schedule, resident: true, subgroupSize: 32 });
      expect(plan.kernels.at(-1)!.code).toContain('subgroupShuffleXor');
    }
    // two features a lane alone lose on the H200 (elu_dwconv d 64 0.841 against 0.755 ms); no fixed subgroup size;
    // the unfused plan asked for
    expect(picks('paper/elu_dwconv', 64).c.resident).toBeUndefined();
    expect(picks('paper/elu_dwconv', 128, H200).c.resident).toBeUndefined();
    const { p, sizes } = variant('paper/elu_dwconv', 128);
    expect(choosePlan(H200_SG, p, sizes, { fuse: false }, shape).resident).toBeUndefined();
    expect(choosePlan(H200_SG, p, sizes, { fuse: true }, shape).resident).toBe(true);
    // hedgehog's softmax features, which the model computes in a prologue, keep the plain kernel even inline
    const h = variant('variants/hedgehog');
    expect(choosePlan(H200_SG, h.p, h.sizes, { fuse: true, prologue: 'none' }, shape).resident).toBeUndefined();
    expect(choosePlan(H200_SG, h.p, h.sizes, {}, shape).resident).toBeUndefined();
  });

  // The resident kernel walks its 256 chunks in 1.30 ms whatever b is; at b 1 and 2 over spans of segments (call 172:
  // elu_dwconv d 128 0.460 and 0.820 ms against 1.296, bench/results/h200-resident-spans.json): 16 segments a head,
  // as many spans as one wave holds (32 and 64 workgroups on 132 units: 4 and 2); at b 4 (128 workgroups) or a short
  // sequence the one walk stays. A decayed state too since call 176 (retnet, mamba2, gla at b 1: 0.471, 0.473, 0.932 ms
  // against 1.220, 1.228, 2.879 in one walk and 0.933, 0.935, 3.160 unfused; bench/results/h200-resident-decayed-spans.json).
  it('takes the resident kernel over spans of segments where its workgroups leave units idle, and lowers it so', () => {
    const { p, sizes } = variant('paper/elu_dwconv', 128);
    const at = (b: number, t = 4096, name = 'paper/elu_dwconv') => {
      const v = name === 'paper/elu_dwconv' ? { p, sizes } : variant(name, 128);
      return choosePlan(H200_SG, v.p, v.sizes, {}, { b, t });
    };
    for (const [b, span] of [[1, 4], [2, 8]] as const) {
      const c = at(b);
      expect(c.resident, `b ${b}`).toBe(true);
      expect(c.schedule, `b ${b}`).toEqual({ chunk: 16, cols: 64, threads: 512, segment: 16, span });
      const plan = lowerChunked(p, sizes, { fuse: true, schedule: c.schedule, resident: true, subgroupSize: 32 });
      expect(plan.kernels.map((k) => k.label.split('.').at(-1))).toEqual(['segment-state', 'segment-scan', 'chunked']);
    }
    expect(at(4).schedule).toEqual({ chunk: 16, cols: 64, threads: 512 });
    expect(at(1, 1024).schedule).toEqual({ chunk: 16, cols: 64, threads: 512 });
    for (const name of ['variants/retnet', 'variants/mamba2', 'variants/gla']) {
      expect(at(1, 4096, name), name).toMatchObject({ resident: true, schedule: { chunk: 16, cols: 64, threads: 512, segment: 16, span: 4 } });
      expect(at(4, 4096, name).schedule, name).toEqual({ chunk: 16, cols: 64, threads: 512 });
    }
  });

  // A group open across chunks (flash's and llama_linearized's past_groups terms at d 64, 2 features a lane) in lanes'
  // registers frees S's workgroup memory: call 181/182, b 4, flash 1.333 ms against its unfused 1.454, llama with its
  // norms in a prologue 1.317 against 1.557 (bench/results/h200-open-group-resident.json). Taken where the workgroups
  // fill half the units (b 4, 8); at b 1 the plain fused plan over segments stays (0.60 ms).
  it('keeps a group open across chunks in lanes\' registers at b 4 and 8, with the model\'s prologue, and lowers it so', () => {
    for (const name of ['paper/flash', 'paper/llama_linearized']) {
      const { p, sizes } = variant(name);
      for (const b of [4, 8]) {
        const c = choosePlan(H200_SG, p, sizes, {}, { b, t: 4096 });
        expect(c.resident, `${name} b ${b}: ${c.reason}`).toBe(true);
        expect(c.fuse).toBe(true);
        expect(c.schedule).toEqual({ chunk: 16, cols: 32, threads: 512 });
        expect([...(c.prologue ?? [])].length, c.reason).toBe(name.includes('llama') ? 2 : 0);
        const plan = lowerChunked(p, sizes, { fuse: true, schedule: c.schedule, resident: true, subgroupSize: 32, ...(c.prologue && { prologue: c.prologue }) });
        expect(plan.kernels.at(-1)!.code).toMatch(/rSo0_0/);
      }
      const one = choosePlan(H200_SG, p, sizes, {}, { b: 1, t: 4096 });
      expect(one.resident, name).toBeUndefined();
      expect(one.schedule.segment, name).toBe(16);
      // asked for every feature inline, the resident pick takes none
      expect([...(choosePlan(H200_SG, p, sizes, { prologue: 'none' }, shape).prologue ?? [])]).toEqual([]);
    }
  });

  // The model's prefill exports the decoding state; since this session an unfused plan can (each kernel its part), so
  // where the plan choice at the model's shape is unfused — flash and llama_linearized at d 128, whose fused kernels fit
  // only chunks of 8 and 8 columns there (call 180, b 1: llama 11.3 ms with its prologue against 2.15 unfused) — the
  // prefill runs it; elsewhere the fused plan as before.
  it('prefills with the unfused plan where the plan choice at the model\'s shape is unfused', () => {
    for (const name of ['paper/flash', 'paper/llama_linearized']) {
      const { p, sizes } = variant(name, 128);
      const c = choosePrefill(H200_SG, p, sizes);
      expect(c.fuse, c.reason).toBe(false);
      // b 1, t 2048: 32 workgroups on 132 units, so the prefix kernel over segments of 8 chunks in spans of 4
      expect(c.residentSchedule, c.reason).toEqual({ chunk: 16, cols: 64, threads: 512, segment: 8, span: 4 });
      const plan = lowerChunked(p, sizes, { fuse: false, schedule: c.schedule, exportState: true, resident: true, subgroupSize: 32, residentSchedule: c.residentSchedule });
      expect(plan.kernels.map((k) => k.label.split('.').slice(1).join('.'))).toEqual(expect.arrayContaining(['term.local', 'term.global.segment-state', 'segment-scan', 'term.global', 'combine']));
    }
    for (const [name, d] of [['paper/elu_dwconv', 64], ['paper/llama_linearized', 64], ['paper/elu_dwconv', 128]] as const) {
      const { p, sizes } = variant(name, d);
      expect(choosePrefill(H200_SG, p, sizes).fuse, `${name} d ${d}`).toBe(true);
    }
  });

  it('takes the fused plan over spans of segments where whole heads leave units idle and the model estimates it cheaper', () => {
    for (const name of ['paper/elu_dwconv', 'paper/elu', 'paper/relu_aug']) {
      const { p, sizes } = variant(name);
      // b 4, h 16: 64 whole-head workgroups on 132 units, two spans a head; segments of 16 chunks, 8 a span
      const c = choosePlan(H200, p, sizes, {}, shape);
      expect(c.fuse, c.reason).toBe(true);
      expect(c.schedule, c.reason).toEqual({ chunk: 16, cols: 64, threads: 512, segment: 16, span: 8, block: 2 });
      expect(c.reason).toMatch(/over spans \(chunk 16, cols 64, threads 512, segments of 16 in spans of 8, blocks of 2 columns/);
      expect(lowerChunked(p, sizes, { fuse: true, schedule: c.schedule }).kernels.map((k) => k.label.split('.').at(-1))).toEqual(['segment-state', 'chunked']);
      // T 16384: segments of 64 chunks; b 2: four spans of 4 segments a head; b 1: eight of 2 — sixteen segments a head
      expect(choosePlan(H200, p, sizes, {}, { b: 4, t: 16384 }).schedule).toMatchObject({ segment: 64, span: 8 });
      expect(choosePlan(H200, p, sizes, {}, { b: 2, t: 4096 }).schedule).toMatchObject({ segment: 16, span: 4 });
      expect(choosePlan(H200, p, sizes, {}, { b: 1, t: 4096 }).schedule).toMatchObject({ segment: 16, span: 2 });
      // b 8: a head a workgroup fills the units; a software adapter keeps its own default
      expect(choosePlan(H200, p, sizes, {}, { b: 8, t: 4096 }).schedule.span).toBeUndefined();
      expect(choosePlan({ ...H200, isSoftware: true } as unknown as Gpu, p, sizes, {}, shape).schedule.span).toBeUndefined();
    }
    // a decayed prefix term too, since its segments combine through their Σ log decay (call 173: retnet at b 4 0.628 ms
    // over spans against 0.667 in one walk, gla 1.180 against 1.775, at b 1 0.210 and 0.356 against 0.664 and 1.771);
    // d 128 keeps the state in lanes' registers
    for (const name of ['variants/retnet', 'variants/mamba2', 'variants/gla']) {
      const r = variant(name);
      expect(choosePlan(H200, r.p, r.sizes, {}, shape).schedule, name).toMatchObject({ chunk: 16, cols: 64, segment: 16, span: 8 });
      expect(choosePlan(H200, r.p, r.sizes, {}, { b: 8, t: 4096 }).schedule.span, name).toBeUndefined();
    }
    const d128 = variant('paper/elu_dwconv', 128);
    expect(choosePlan(H200_SG, d128.p, d128.sizes, {}, shape).resident).toBe(true);
  });

  it('keeps the model\'s unfused pick against the resident kernel (cosformer at b 8: unfused 2.421 ms, resident 2.812, call 127)', () => {
    const b8 = { b: 8, t: 4096 };
    for (const name of ['paper/cosformer', 'paper/cosformer_aug']) {
      const { p, sizes } = variant(name);
      for (const g of [H200, H200_SG]) {
        const c = choosePlan(g, p, sizes, {}, b8);
        expect(c.fuse, c.reason).toBe(false);
        expect(c.resident, c.reason).toBeUndefined();
      }
    }
  });

  it('takes hedgehog fused with its softmax features in a prologue, shows the three estimates and each node\'s, and lowers what it chose', () => {
    const { p, sizes } = variant('variants/hedgehog');
    const c = choosePlan(H200, p, sizes, {}, shape);
    expect(c.fuse).toBe(true);
    expect(c.prologue?.size).toBe(2);
    expect(c.reason).toMatch(/fused with a prologue: est\. fused [\d.]+ ms, fused with a prologue of 2 feature kernel\(s\) [\d.]+ ms, unfused [\d.]+ ms/);
    for (const id of c.prologue!) expect(c.reason).toMatch(new RegExp(`%${id} at prologue \\(inline [\\d.]+ µs > prologue [\\d.]+ µs\\)`));
    const plan = lowerChunked(p, sizes, { fuse: c.fuse, schedule: c.schedule, prologue: c.prologue });
    // the feature kernels first, then the chunk kernel (its segment-state and scan launches before it when segmented)
    const labels = plan.kernels.map((k) => k.label);
    expect(labels.slice(0, 2)).toEqual([...c.prologue!].sort((a, b) => a - b).map((id) => `hedgehog.feature%${id}`));
    expect(labels.slice(2).every((l) => !l.includes('.feature%'))).toBe(true);
    expect(labels.at(-1)).toBe('hedgehog.chunked');
  });

  it('obeys --prologue none and all', () => {
    const { p, sizes } = variant('variants/hedgehog');
    const none = choosePlan(H200, p, sizes, { prologue: 'none' }, shape);
    expect(none.prologue?.size ?? 0).toBe(0);
    expect(none.fuse).toBe(false); // without its prologue, hedgehog's fused kernel loses to the unfused plan
    const all = choosePlan(H200, p, sizes, { fuse: true, prologue: 'all' }, shape);
    expect(all.fuse).toBe(true);
    expect(all.prologue?.size).toBe(2);
    expect(all.reason).toMatch(/every feature node \(2\) in a prologue, as asked/);
  });

  it('obeys --fuse and --no-fuse, each at a schedule its plan fits', () => {
    const { p, sizes } = variant('paper/elu_dwconv');
    for (const fuse of [true, false]) {
      const c = choosePlan(H200, p, sizes, { fuse }, shape);
      expect(c.fuse).toBe(fuse);
      expect(c.reason).toMatch(/fused [\d.]+ ms, unfused [\d.]+ ms/);
      expect(lowerChunked(p, sizes, { fuse, schedule: c.schedule }).kernels.length).toBeGreaterThan(0);
    }
  });

  it('each kind of variant (prefix, decayed, gated, grouped, window, noncausal) at d 16 gets a plan that lowers; based at d 64 fits neither plan and takes the feature-tiled one', () => {
    for (const name of ['paper/elu', 'paper/cosformer_aug', 'paper/flash', 'paper/llama_linearized', 'paper/performer', 'paper/leaky_dwconv', 'paper/elu_dwconv', 'variants/gla', 'variants/mamba2', 'variants/based']) {
      const { p, sizes } = variant(name, 16);
      const c = choosePlan(H200, p, sizes, {}, { b: 1, t: 1024 });
      expect(lowerChunked(p, sizes, { fuse: c.fuse, schedule: c.schedule, ...(c.prologue && { prologue: c.prologue }) }).kernels.length, name).toBeGreaterThan(0);
    }
    const { p, sizes } = variant('variants/based');
    const c = choosePlan(H200, p, sizes, {}, shape);
    expect(c.reason).toMatch(/neither the fused kernel nor every unfused term kernel fits in 49152 bytes/);
    expect(lowerChunked(p, sizes, { fuse: c.fuse, schedule: c.schedule, featureTile: c.featureTile }).schedule.featureTile).toBe(c.featureTile);
  });

  it('has the autotuner start from the model\'s fused default and try every candidate', () => {
    const { p, sizes } = variant('paper/elu_dwconv');
    const cands = candidateSchedules(H200.limits, p, sizes);
    const order = tuningCandidates(H200, p, sizes, cands, shape);
    // at b 4, t 4096 the model's cheapest is the candidate over spans (chunked/span-default.ts), which it adds
    expect(order[0]).toEqual(choosePlan(H200, p, sizes, { fuse: true }, shape).schedule);
    expect(order[0]).toMatchObject({ chunk: 16, cols: 64, threads: 512, segment: 16, span: 8, block: 2 });
    expect(new Set(order.slice(1))).toEqual(new Set(cands));
  });
});
