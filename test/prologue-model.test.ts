// The fused plan's prologue decision by the model (backends/wgsl/fusion-model.ts's decidePrologue), without a
// device: per feature node, its cost inline in the chunk kernel (every chunk, column tile and segmented pass)
// against a feature kernel that computes it once. At d 64 on an H200-class adapter the expensive maps — performer's
// random-feature exponentials, hedgehog's softmax over a projection — go to the prologue; llama's L2-normalised
// features stay inline since the chunk kernel stages their norms once per row (chunked/row-reductions.ts). The
// decision follows the op counts (element-ops.ts), not a list of variants.
import { describe, expect, it } from 'vitest';
import { candidateSchedules } from '../backends/wgsl/chunk-schedules.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { featureNodes } from '../backends/wgsl/feature-nodes.ts';
import { bestHybrid, decidePrologue, estimatePlan, PROLOGUE_MIN_OPS } from '../backends/wgsl/fusion-model.ts';
import { elementOps } from '../backends/wgsl/element-ops.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { hardwareModel } from '../backends/wgsl/schedule-model.ts';
import type { Program } from '../src/ir/types.ts';
import { axisSizes } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { choosePrefill } from '../src/runtime/plan-choice.ts';

const H200 = hardwareModel(132, 48 * 1024);
const LIMITS = { maxComputeWorkgroupStorageSize: 48 * 1024, maxComputeInvocationsPerWorkgroup: 1024 };
const B = 4;
const T = 4096;

const variant = (name: string, axes: Record<string, number> = { h: 16, d: 64, e: 64 }) => {
  const c = compileFile(`examples/${name}.la`);
  return { p: c.program, sizes: axisSizes(c.source, Object.fromEntries(Object.entries(axes).filter(([a]) => c.source.axes[a]?.kind === 'free'))) };
};
const features = (p: Program) => {
  const f = p.terms.find((t) => t.form.kind === 'prefix')!.form as { phi: number; psi: number };
  return [f.phi, f.psi];
};
/** A schedule every variant here fits in 48 KB at d 64 (llama's group-64 terms rule out chunk 16 with 32 columns): two column tiles. */
const S: ChunkSchedule = { chunk: 8, cols: 32, threads: 512 };

describe('the prologue decision', () => {
  it.each(['paper/performer', 'variants/hedgehog'])('%s at d 64 on an H200: φ and ψ computed in the prologue, inline many times dearer', (name) => {
    const { p, sizes } = variant(name);
    const d = decidePrologue(H200, p, sizes, S, B, T)!;
    for (const id of features(p)) {
      const x = d.decisions.find((y) => y.id === id)!;
      expect(x.prologue, `${name} %${id}`).toBe(true);
      // 3×: performer's φ inline is 3.5× its feature kernel since the occupancy refit (call 9) and the per-row norms
      expect(x.inlineUs, `${name} %${id}: inline vs prologue`).toBeGreaterThan(3 * x.prologueUs);
    }
  });

  // An order, not two, since the feature kernels' rate was fitted to hedgehog's on the H200 (48 operations a cycle
  // per SM, not 128): a prologue costs 2.7× what it did.
  it("weighs a map by its operations: elu's few barely pay for a prologue on op counts alone, the expensive maps' by an order", () => {
    const ratio = (name: string, m: typeof H200, s: ChunkSchedule) => {
      const { p, sizes } = variant(name);
      const d = decidePrologue(m, p, sizes, s, B, T)!;
      return Math.min(...features(p).map((id) => d.decisions.find((x) => x.id === id)!).map((x) => x.inlineUs / x.prologueUs));
    };
    // llama's group-64 terms fit 48 KB only with up to 32 columns; the others at one column tile (no recompute).
    const one = { ...S, cols: 64 };
    const elu = ratio('paper/elu', H200, one);
    expect(elu).toBeLessThan(5);
    for (const name of ['paper/performer', 'variants/hedgehog']) expect(ratio(name, H200, one), name).toBeGreaterThan(5 * elu);
    // even at two column tiles elu's maps are cheaper inline by the model itself (features computed at the
    // elementwise rate), as the H200 measured: elu's all-inline fused plan 1.73 ms
    expect(ratio('paper/elu', H200, S)).toBeLessThan(1);
  });

  it("never moves a node that computes nothing (retnet's φ = q, ψ = k: a prologue would copy the input), nor an elementwise one (mamba2's gate, elu + 1)", () => {
    const retnet = variant('variants/retnet');
    const r = decidePrologue(H200, retnet.p, retnet.sizes, S, B, T)!;
    expect(r.prologue.size).toBe(0);
    expect(r.decisions).toEqual([]);
    // elementwise maps (elu + 1: 4 operations an element) stay inline, by the model and by PROLOGUE_MIN_OPS
    for (const name of ['variants/mamba2', 'paper/elu_dwconv']) {
      const { p, sizes } = variant(name);
      const d = decidePrologue(H200, p, sizes, S, B, T)!;
      expect(d.prologue.size, name).toBe(0);
      for (const x of d.decisions) expect(elementOps(p, sizes, x.id), name).toBeLessThan(PROLOGUE_MIN_OPS);
    }
    // mamba2's scalar gate is staged once per row, not per feature: inline it costs less than its own kernel
    const m2 = variant('variants/mamba2');
    const gate = decidePrologue(H200, m2.p, m2.sizes, S, B, T)!.decisions;
    expect(gate.length).toBeGreaterThan(0);
    for (const x of gate) expect(x.inlineUs, `mamba2 %${x.id}`).toBeLessThan(x.prologueUs);
  });

  it('charges inline features once per column tile: more tiles, dearer inline, the prologue read once more per tile', () => {
    const { p, sizes } = variant('variants/hedgehog');
    const [phi] = features(p);
    const at = (cols: number) => decidePrologue(H200, p, sizes, { ...S, cols }, B, T)!.decisions.find((x) => x.id === phi)!;
    expect(at(16).inlineUs).toBeGreaterThan(1.5 * at(64).inlineUs);
    expect(at(16).prologueUs).toBeGreaterThanOrEqual(at(64).prologueUs);
  });

  it("never makes the plan dearer by the model's own estimate, and estimates the kernels lowerChunked then emits", () => {
    for (const name of ['paper/llama_linearized', 'paper/performer', 'paper/elu_dwconv', 'variants/hedgehog', 'variants/gla', 'variants/mamba2', 'paper/flash']) {
      const { p, sizes } = variant(name);
      for (const s of candidateSchedules(LIMITS, p, sizes).filter((x, k) => k % 7 === 0)) {
        const d = decidePrologue(H200, p, sizes, s, B, T)!;
        const inline = estimatePlan(H200, p, sizes, s, true, B, T)!;
        const hybrid = estimatePlan(H200, p, sizes, s, true, B, T, d.prologue)!;
        const at = `${name} at ${JSON.stringify(s)}`;
        expect(hybrid.us, at).toBeLessThanOrEqual(inline.us);
        expect(hybrid.launches, at).toBe((s.segment ? 3 : 1) + d.prologue.size);
        expect(lowerChunked(p, sizes, { fuse: true, schedule: s, prologue: d.prologue }).kernels.length, at).toBe(hybrid.launches);
      }
    }
  });

  // Its norms staged once per row, llama's q/‖q‖ is a load and a division an element inline, but each norm is a loop of
  // 64 loads on one invocation a row, every chunk (schedule-model.ts rowSerialUsPerOp): both features go to a prologue.
  // The H200 agrees (call 170, bench/results/h200-kernels.json): the fused plan at 16×32×512 with %8 and %9 in a
  // prologue ran 1.642 ms, every feature inline 2.725; call 112 had %9 alone in a prologue at 8×32×512 at 5.033 against
  // 6.414 inline. (Its unfused plan, 1.558, is its pick at b 4.)
  it("computes llama's query and key features once in a prologue, not each chunk's norms in the kernel", () => {
    const { p, sizes } = variant('paper/llama_linearized');
    const d = decidePrologue(H200, p, sizes, S, B, T)!;
    const of = (id: number) => d.decisions.find((y) => y.id === id)!;
    for (const id of features(p)) {
      expect(of(id).prologue, `%${id}`).toBe(true);
      expect(of(id).prologueUs, `%${id}: prologue vs inline`).toBeLessThan(of(id).inlineUs);
    }
  });

  it('picks the schedule with its prologue: the best over the candidates is no dearer than the best of every feature inline', () => {
    const { p, sizes } = variant('variants/hedgehog');
    const cands = candidateSchedules(LIMITS, p, sizes);
    const h = bestHybrid(H200, p, sizes, cands, B, T)!;
    const inline = Math.min(...cands.map((s) => estimatePlan(H200, p, sizes, s, true, B, T)?.us ?? Infinity));
    expect(h.us).toBeLessThan(inline);
    expect([...h.prologue].sort()).toEqual(features(p).sort());
  });

  it('refuses a prologue that is not a feature node, and one for the unfused plan', () => {
    const { p, sizes } = variant('paper/elu', { h: 2, d: 4, e: 4 });
    const input = p.nodes.findIndex((n) => n.op === 'input');
    expect(() => lowerChunked(p, sizes, { fuse: true, schedule: S, prologue: new Set([input]) })).toThrow(/is not a feature node/);
    expect(() => lowerChunked(p, sizes, { fuse: false, schedule: S, prologue: new Set(featureNodes(p)) })).toThrow(/for the fused plan/);
  });
});

describe("the model's prefill (plan-choice.ts choosePrefill, no device)", () => {
  const adapter = (name: string, isSoftware: boolean) => ({ adapterName: name, isSoftware, limits: LIMITS }) as unknown as Gpu;
  // The model's shapes: a variant's axes as a layer sees them (heads 12, head dim 64).
  const layer = (name: string) => variant(name, { h: 12, d: 64, e: 64 });

  it('asked for one unsegmented kernel, on an H200 puts hedgehog\'s and performer\'s feature maps in a prologue', () => {
    for (const name of ['variants/hedgehog', 'paper/performer']) {
      const { p, sizes } = layer(name);
      const c = choosePrefill(adapter('NVIDIA H200', false), p, sizes, 'model', 'unsegmented');
      expect([...c.prologue].sort(), `${name}: ${c.reason}`).toEqual(features(p).sort());
      expect(c.schedule.segment, name).toBeUndefined();
      expect(() => lowerChunked(p, sizes, { fuse: true, schedule: c.schedule, exportState: true, prologue: c.prologue })).not.toThrow();
    }
  });

  it("by default ('segmented' on hardware) an H200 runs elu_dwconv's and retnet's prefill in segments (more workgroups than the one kernel's walk), still exporting the state; a software adapter stays unsegmented", () => {
    const { p, sizes } = layer('paper/elu_dwconv');
    const one = choosePrefill(adapter('NVIDIA H200', false), p, sizes, 'model', 'unsegmented');
    const seg = choosePrefill(adapter('NVIDIA H200', false), p, sizes, 'model', 'segmented');
    expect(choosePrefill(adapter('NVIDIA H200', false), p, sizes).schedule).toEqual(seg.schedule);
    expect(choosePrefill(adapter('llvmpipe (LLVM 19)', true), p, sizes).schedule.segment).toBeUndefined();
    expect(one.schedule.segment, one.reason).toBeUndefined();
    expect(seg.schedule.segment, seg.reason).toBeGreaterThan(0);
    const grid = (s: ChunkSchedule) => lowerChunked(p, sizes, { fuse: true, schedule: s, exportState: true }).kernels.map((k) => k.workgroups(1, 2048).reduce((a, n) => a * n, 1));
    expect(Math.max(...grid(seg.schedule))).toBeGreaterThan(Math.max(...grid(one.schedule)));
    // a decayed state combines segment by segment through its Σ log decay (chunked/segments.ts; call 173)
    const retnet = layer('variants/retnet');
    const rs = choosePrefill(adapter('NVIDIA H200', false), retnet.p, retnet.sizes, 'model', 'segmented').schedule;
    expect(rs.segment).toBeGreaterThan(0);
    expect(() => lowerChunked(retnet.p, retnet.sizes, { fuse: true, schedule: rs, exportState: true })).not.toThrow();
    expect(choosePrefill(adapter('llvmpipe (LLVM 19)', true), p, sizes, 'model', 'segmented').schedule.segment).toBeUndefined();
    const asked = { chunk: 4, cols: 16, threads: 64, segment: 2 };
    expect(choosePrefill(adapter('llvmpipe (LLVM 19)', true), p, sizes, 'model', asked).schedule).toEqual(asked);
  });

  it('keeps every feature inline on a software adapter unless asked, and for softmax attention', () => {
    const { p, sizes } = layer('variants/hedgehog');
    expect(choosePrefill(adapter('llvmpipe (LLVM 19)', true), p, sizes).prologue.size).toBe(0);
    expect(choosePrefill(adapter('llvmpipe (LLVM 19)', true), p, sizes, 'all').prologue).toEqual(new Set(featureNodes(p)));
    expect(choosePrefill(adapter('NVIDIA H200', false), p, sizes, 'none').prologue.size).toBe(0);
    const soft = layer('variants/softmax');
    expect(choosePrefill(adapter('NVIDIA H200', false), soft.p, soft.sizes).prologue.size).toBe(0);
  });
});
