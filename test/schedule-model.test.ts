// The schedule model's properties (backends/wgsl/schedule-model.ts, fusion-model.ts, element-ops.ts): what it must
// prefer and refuse, whatever its constants. No device: the model is a pure function of the plan and the adapter.
import { describe, expect, it } from 'vitest';
import { candidateSchedules } from '../backends/wgsl/chunk-schedules.ts';
import { PREFETCH_MARK, sharedFloats, type ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { itemsOver } from '../backends/wgsl/chunked/analysis.ts';
import { elementOps } from '../backends/wgsl/element-ops.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { chooseFusion, estimatePlan, featureKernelOps } from '../backends/wgsl/fusion-model.ts';
import { featureNodes } from '../backends/wgsl/feature-nodes.ts';
import { featureRowQuantities } from '../backends/wgsl/feature-rows.ts';
import { stagedElementOps, stagedRowOps } from '../backends/wgsl/row-quantity-ops.ts';
import { blockedShares, chunkKernelCost, hardwareModel, launchCost } from '../backends/wgsl/schedule-model.ts';
import { computeUnits, UNKNOWN_HARDWARE_UNITS } from '../src/runtime/adapter-model.ts';
import { axisSizes } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';

const H200 = hardwareModel(132, 48 * 1024);
const LIMITS = { maxComputeWorkgroupStorageSize: 48 * 1024, maxComputeInvocationsPerWorkgroup: 1024 };
const variant = (name: string, axes: Record<string, number>) => {
  const c = compileFile(`examples/${name}.la`);
  return { p: c.program, sizes: axisSizes(c.source, axes) };
};

describe('schedule model', () => {
  it('offers register-blocked schedules only when asked, and charges a blocked product its workgroup loads', () => {
    const { p, sizes } = variant('paper/elu_dwconv', { h: 16, d: 64, e: 64 });
    expect(candidateSchedules(LIMITS, p, sizes).some((s) => s.block)).toBe(false);
    const all = candidateSchedules(LIMITS, p, sizes, false, true);
    const blocked = all.filter((s) => s.block);
    expect(blocked.length).toBeGreaterThan(0);
    // 16 rows × 64 columns at 512 threads: 2 rows of a column (1.5 loads a product) against 1 row of 4 (1.25);
    // the fold's 64 features: 4 of a column (1.25) against 2 of 4 (0.75)
    // the 16 × 16 score tile: one cell (2 loads a product) against 1 × 4 (1.25)
    expect(blockedShares(16, 64, 64, { chunk: 16, cols: 64, threads: 512, block: 4 })).toEqual({ scores: 1.25 / 2, outputs: 1.25 / 1.5, fold: 0.75 / 1.25 });
    expect(blockedShares(16, 64, 64, { chunk: 16, cols: 64, threads: 512, block: 1 })).toEqual({ scores: 1, outputs: 1, fold: 1 });
    const cost = (s: (typeof all)[number]) => chunkKernelCost(H200, { program: p, sizes, terms: p.terms, items: p.output, schedule: s, materialised: new Set(), partial: false }, 4, 4096)!;
    const est = (s: (typeof all)[number]) => cost(s).us;
    // Where blocking changes the workgroup memory enough that a unit holds a different number of workgroups (the
    // overlapped output launch of a segmented 64-thread schedule: 10 a unit against 9), the waves price that, not the products.
    let compared = 0;
    for (const s of blocked) {
      const { block: _, ...plain } = s;
      expect(est({ ...plain, block: 1 })).toBe(est(plain));
      if (cost(s).resident !== cost(plain).resident) continue;
      expect(est(s)).toBeLessThanOrEqual(est(plain));
      compared++;
    }
    expect(compared).toBeGreaterThan(blocked.length * 0.9);
  });

  it('prefers more workgroups while the grid under-fills the units, and charges waves once it over-fills them', () => {
    const k = { threads: 512, workgroupBytes: 16 * 1024, steps: 128, bytes: 0 };
    // the same work as 64 workgroups or as 256 of a quarter each, on 132 units
    const few = launchCost(H200, { ...k, workgroups: 64, stepOps: 4e5 });
    const many = launchCost(H200, { ...k, workgroups: 256, stepOps: 1e5 });
    expect(many.us).toBeLessThan(few.us);
    // past what the units hold at once, doubling the grid adds waves and time
    const full = launchCost(H200, { ...k, workgroups: 132 * many.resident, stepOps: 1e5 });
    const twice = launchCost(H200, { ...k, workgroups: 2 * 132 * many.resident, stepOps: 1e5 });
    expect(twice.waves).toBe(2 * full.waves);
    expect(twice.us).toBeGreaterThan(1.5 * full.us - H200.launchUs);
  });

  it('holds fewer workgroups per unit as each takes more workgroup memory', () => {
    const k = { threads: 128, steps: 1, stepOps: 1, bytes: 0, workgroups: 1 };
    expect(launchCost(H200, { ...k, workgroupBytes: 40 * 1024 }).resident).toBeLessThan(launchCost(H200, { ...k, workgroupBytes: 8 * 1024 }).resident);
  });

  it('takes longer for longer sequences, and shorter critical paths for segmented schedules on long ones', () => {
    const { p, sizes } = variant('paper/elu_dwconv', { h: 16, d: 64, e: 64 });
    const s = { chunk: 32, cols: 32, threads: 512 };
    const at = (t: number, seg?: number) => estimatePlan(H200, p, sizes, seg ? { ...s, segment: seg } : s, true, 1, t)!.us;
    expect(at(8192)).toBeGreaterThan(at(2048));
    expect(at(16384, 16)).toBeLessThan(at(16384));
  });

  it('refuses a kernel whose workgroup memory does not fit the adapter', () => {
    const { p, sizes } = variant('variants/based', { h: 2, d: 16, e: 16 });
    const s = { chunk: 16, cols: 16, threads: 256 };
    const bytes = sharedFloats(p, sizes, p.terms, p.output, s) * 4;
    const k = { program: p, sizes, terms: p.terms, items: itemsOver(p.output, p.terms), schedule: s, materialised: new Set<number>(), partial: false };
    expect(chunkKernelCost(hardwareModel(132, bytes), k, 1, 256)).toBeDefined();
    expect(chunkKernelCost(hardwareModel(132, bytes - 4), k, 1, 256)).toBeUndefined();
  });

  it('counts a feature map as ExprGen emits it: a softmax over a projection re-runs its reductions per element', () => {
    const at = (m: number, d: number) => {
      const { p, sizes } = variant('variants/hedgehog', { h: 2, d, e: 8, m });
      const phi = p.terms.find((t) => t.form.kind === 'prefix')!.form as { phi: number };
      return elementOps(p, { ...sizes, m }, phi.phi);
    };
    expect(at(64, 16)).toBeGreaterThanOrEqual(2 * 64 * 16); // two reductions over m, each of a d-long dot product
    expect(at(64, 32)).toBeGreaterThan(1.9 * at(64, 16));
    const { p, sizes } = variant('paper/elu', { h: 2, d: 16, e: 16 });
    const f = p.terms[0].form as { phi: number };
    expect(elementOps(p, sizes, f.phi)).toBeLessThan(10); // elu(q) + 1: a load and a few operations
    expect(elementOps(p, sizes, f.phi, new Set([f.phi]))).toBe(1); // materialised: one load
  });

  it('prices the row quantities a kernel stages once per row, as the generator stages them: hedgehog\'s q @ W m·d, each softmax 2m, a feature an exp', () => {
    const m = 64;
    const { p, sizes } = variant('variants/hedgehog', { h: 16, d: 64, e: 64, m });
    const phi = (p.terms[0].form as { phi: number }).phi;
    // a feature kernel: one token's row over every head, h·m·d products (3 operations each as element-ops.ts counts
    // a matmul's step: two loads and a multiply-add) and the two softmaxes' statistics, spread over its h·2m elements
    const quantities = featureRowQuantities(p, sizes, phi);
    expect(quantities.map((q) => q.kind).sort()).toEqual(['stats', 'stats', 'value']);
    const perToken = 16 * m * 64 * 3;
    expect(featureKernelOps(p, sizes, phi)).toBeGreaterThan(perToken / (16 * 2 * m));
    expect(featureKernelOps(p, sizes, phi)).toBeLessThan(1.25 * perToken / (16 * 2 * m) + 10);
    expect(elementOps(p, sizes, phi)).toBeGreaterThan(100 * featureKernelOps(p, sizes, phi)); // each element its whole softmax
    // the chunk kernel: the staged list is the generator's (stagedReductions); with it a feature element is a load,
    // an exp and a division, where each recomputed its softmax
    const rows = stagedRowOps(p, sizes, quantities, new Set());
    expect(stagedElementOps(p, sizes, phi, rows)).toBeLessThan(10);
    const s = { chunk: 16, cols: 32, threads: 1024 };
    const k = { program: p, sizes, terms: p.terms, items: itemsOver(p.output, p.terms), schedule: s, materialised: new Set<number>(), partial: false };
    const fused = chunkKernelCost(H200, k, 4, 4096)!.us;
    const materialised = chunkKernelCost(H200, { ...k, materialised: new Set(featureNodes(p)) }, 4, 4096)!.us;
    // was 50× before the staging was priced; the H200 ran hedgehog's fused kernel at 2.2× its prologue plan (4.26 and
    // 1.95 ms, h200-kernels.json), which the q @ W loops' serial time (schedule-model.ts rowSerialUsPerOp) now adds
    expect(fused).toBeGreaterThan(1.5 * materialised);
    expect(fused).toBeLessThan(3 * materialised);
  });
});

describe('fusion by the model', () => {
  it('computes hedgehog\'s softmax features in a prologue (inline they dominate) and falls back to unfused where fused does not fit', () => {
    const h = variant('variants/hedgehog', { h: 16, d: 64, e: 64 });
    const hc = chooseFusion(H200, h.p, h.sizes, { fused: candidateSchedules(LIMITS, h.p, h.sizes), unfused: candidateSchedules(LIMITS, h.p, h.sizes, true) }, 4, 4096)!;
    const f = h.p.terms.find((t) => t.form.kind === 'prefix')!.form as { phi: number; psi: number };
    expect(hc.fuse).toBe(true);
    expect([...hc.prologue!].sort()).toEqual([f.phi, f.psi].sort());
    expect(hc.unfused!.us).toBeLessThan(hc.fused!.us);
    expect(hc.hybrid!.us).toBeLessThan(hc.unfused!.us);
    // based at d 16: the Taylor term's kernel fits alone in a limit its fused kernel with the window term exceeds
    const b = variant('variants/based', { h: 2, d: 16, e: 16 });
    const s = { chunk: 8, cols: 16, threads: 256 };
    const fusedBytes = sharedFloats(b.p, b.sizes, b.p.terms, b.p.output, s) * 4;
    const aloneBytes = Math.max(...b.p.terms.map((t) => sharedFloats(b.p, b.sizes, [t], itemsOver(b.p.output, [t]), s) * 4));
    expect(aloneBytes).toBeLessThan(fusedBytes);
    const m = hardwareModel(132, aloneBytes);
    const bc = chooseFusion(m, b.p, b.sizes, { fused: [s], unfused: [s] }, 1, 1024)!;
    expect(bc.fuse).toBe(false);
    expect(bc.reason).toMatch(/does not fit/);
    expect(chooseFusion(hardwareModel(132, aloneBytes - 4), b.p, b.sizes, { fused: [s], unfused: [s] }, 1, 1024)).toBeUndefined();
  });

  it('estimates the kernels lowerChunked emits, one for one, fused and unfused', () => {
    for (const name of ['paper/elu_dwconv', 'paper/cosformer_aug', 'paper/flash', 'paper/llama_linearized', 'paper/performer_aug', 'variants/mamba2', 'variants/hedgehog', 'variants/based']) {
      const { p, sizes } = variant(name, { h: 2, d: 8, e: 8 });
      for (const fuse of [true, false]) {
        const s = candidateSchedules(LIMITS, p, sizes, !fuse).find((x) => !x.segment)!;
        expect(estimatePlan(H200, p, sizes, s, fuse, 1, 64)!.launches, `${name} ${fuse ? 'fused' : 'unfused'}`).toBe(lowerChunked(p, sizes, { fuse, schedule: s }).kernels.length);
      }
    }
  });

  it('never chooses a plan its own estimates rank slower', () => {
    for (const name of ['paper/elu_dwconv', 'paper/performer', 'variants/retnet']) {
      const { p, sizes } = variant(name, { h: 16, d: 64, e: 64 });
      const c = chooseFusion(H200, p, sizes, { fused: candidateSchedules(LIMITS, p, sizes), unfused: candidateSchedules(LIMITS, p, sizes, true) }, 4, 4096)!;
      const chosen = c.fuse ? (c.prologue?.size ? c.hybrid! : c.fused!) : c.unfused!;
      for (const other of [c.fused, c.hybrid, c.unfused]) if (other) expect(chosen.us).toBeLessThanOrEqual(other.us);
      expect(c.reason).toMatch(/fused .*ms/);
    }
  });

  // The prefetch term against the kernels lowering writes: the held loads are read from each chunk kernel's
  // PREFETCH_MARK line, not from the model's own call of the generator.
  it('takes the held loads\' arrival off a prefetching kernel\'s steps, and nothing where a launch stages at its chunk\'s start', () => {
    const { p, sizes } = variant('paper/performer', { h: 16, d: 64, e: 64 });
    const held = (schedule: ChunkSchedule, prologue: Set<number>) =>
      lowerChunked(p, sizes, { fuse: true, schedule, prologue }).kernels.filter((k) => k.code.includes('let nchunks')).map((k) => Number(new RegExp(`${PREFETCH_MARK}: (\\d+)`).exec(k.code)?.[1] ?? 0));
    const saved = (schedule: ChunkSchedule, prologue: Set<number>) => estimatePlan(H200, p, sizes, schedule, true, 4, 4096, prologue, false)!.us - estimatePlan(H200, p, sizes, schedule, true, 4, 4096, prologue)!.us;
    const arrival = (loads: number, threads: number) => (4 * loads * threads * 132) / H200.bytesPerUs;
    // φ and ψ from the prologue at 32×32×512: one workgroup a unit with room, 128 chunks
    const room = { chunk: 32, cols: 32, threads: 512 };
    const [loads] = held(room, new Set([20, 21]));
    expect(loads).toBeGreaterThan(0);
    expect(saved(room, new Set([20, 21]))).toBeCloseTo(128 * H200.prefetchRoomShare * Math.min(H200.roomStepUs, arrival(loads, 512)), 6);
    // the same at 1024 threads: the workgroup fills its unit, a share of at most stepLatencyUs
    const lone = { chunk: 32, cols: 32, threads: 1024 };
    const [loneLoads] = held(lone, new Set([20, 21]));
    expect(saved(lone, new Set([20, 21]))).toBeCloseTo(128 * H200.prefetchLoneShare * Math.min(H200.stepLatencyUs, arrival(loneLoads, 1024)), 6);
    // every feature inline: staged in a loop, nothing prefetched, nothing taken off
    expect(held(room, new Set())).toEqual([0]);
    expect(saved(room, new Set())).toBe(0);
  });

  it('reads compute units from the adapter name: H200 132, unknown hardware the default, software the host cores', () => {
    expect(computeUnits('NVIDIA H200 (nvidia, vulkan)', false)).toBe(132);
    expect(computeUnits('NVIDIA H100 PCIe (nvidia, vulkan)', false)).toBe(114);
    expect(computeUnits('Some GPU (acme, vulkan)', false)).toBe(UNKNOWN_HARDWARE_UNITS);
    expect(computeUnits('llvmpipe (LLVM 19, 256 bits) (mesa, vulkan)', true, 6)).toBe(6);
  });
});
