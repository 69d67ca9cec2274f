// How often the fused chunk kernels evaluate each prefix term's feature maps φ (query side) and ψ (key side),
// counted statically from the generated WGSL (test/helpers/wgsl-counts.ts): each value at most once per
// (row, feature) per chunk in a workgroup — staged in phase 1, read back from workgroup memory by the score,
// output and state phases — and φ not at all in a segment-state launch, which writes no outputs. At the H200's
// default schedules and d 64 (issue 15: elu fused timed 4.5× slower than elu_aug, suspected of inline φ). A row
// reduction inside a feature map (a norm over d) at most once per staged row.
import { describe, expect, it } from 'vitest';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { featureCount } from '../backends/wgsl/layout.ts';
import { isSoftmaxProgram } from '../backends/wgsl/softmax-analysis.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { segmentable } from '../backends/wgsl/chunked.ts';
import { axisSizes } from '../src/inputs.ts';
import type { Program } from '../src/ir/types.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { matchingExecutions, nodeEvaluations } from './helpers/wgsl-counts.ts';
import { DECODABLE } from './helpers/variants.ts';

/** The H200's defaults at b 4, h 16, t 4096, d 64 (132 units: segmented; 64 units: one kernel), and the software one. */
const SCHEDULES: readonly ChunkSchedule[] = [
  { chunk: 8, cols: 64, threads: 512, segment: 16 },
  { chunk: 16, cols: 32, threads: 1024 },
  { chunk: 8, cols: 16, threads: 64 },
];

const CHUNK_KERNELS = DECODABLE.filter((f) => !isSoftmaxProgram(compileFile(f).program));

/** One fused chunk kernel (a launch with the chunk loop) of a variant at one of SCHEDULES, with what it stages. */
interface ChunkKernelCase {
  readonly program: Program;
  readonly sizes: Readonly<Record<string, number>>;
  /** The schedule it was lowered at (SCHEDULES' entry, or it less the segments where the variant has none). */
  readonly schedule: ChunkSchedule;
  readonly code: string;
  readonly label: string;
  /** Rows of keys staged before the chunk (a bounded term's reach). */
  readonly halo: number;
  /** The kernel's head axes. */
  readonly head: readonly string[];
}

/** Every fused chunk kernel of `file` at h 16, d 64, e 64, at every schedule of SCHEDULES. */
function chunkKernels(file: string): ChunkKernelCase[] {
  const c = compileFile(file);
  const p = c.program;
  const sizes = axisSizes(c.source, Object.fromEntries(Object.entries({ h: 16, d: 64, e: 64 }).filter(([a]) => c.source.axes[a]?.kind === 'free')));
  return SCHEDULES.flatMap((s) => {
    const schedule = s.segment && !segmentable(p, sizes) ? { chunk: s.chunk, cols: s.cols, threads: s.threads } : s;
    return lowerChunked(p, sizes, { fuse: true, schedule }).kernels.filter((x) => /for \(var c: u32 = /.test(x.code)).map((k) => ({
      program: p, sizes, schedule, code: k.code, label: k.label,
      halo: Number(/halo (\d+)/.exec(k.code)![1]),
      head: /head axes \[([^\]]*)\]/.exec(k.code)![1].split(', ').filter(Boolean),
    }));
  });
}

describe('the counter', () => {
  // A φ evaluated inside the score loop, per (i, j, f), as the issue suspected: C·C·F evaluations, not C·F.
  const inline = [
    'var<workgroup> A0: array<f32, 64>;',
    'fn main() {',
    '  for (var c: u32 = 0u; c < nchunks; c++) {',
    '    for (var x: u32 = lid; x < 64u; x += WG) {',
    '      for (var f: u32 = 0u; f < 4u; f++) {',
    '        let x3 = select(exp(x0) - 1.0, x0, x0 > 0.0); // %3 unary',
    '        let x8 = x3 + 1.0; // %8 binary',
    '      }',
    '      let x9 = A0[x]; // %8 at',
    '    }',
    '  }',
    '}',
  ].join('\n');
  it('counts a statement inside nested loops once per trip of each, and not a read back from workgroup memory', () => {
    expect(nodeEvaluations(inline, 8, 8, 32)).toBe(64 * 4);
  });
  it('follows the strided index into a guard: a clamped slot computed only where its index is in range', () => {
    const guarded = inline.replace('      for (var f: u32 = 0u; f < 4u; f++) {', '      if ((x + 16u) < 64u) {');
    expect(nodeEvaluations(guarded, 8, 8, 32)).toBe(48);
  });
  it('refuses a loop header it does not know instead of guessing', () => {
    expect(() => nodeEvaluations(inline.replace('f < 4u', 'f < m'), 8, 8, 32)).toThrow(/unknown loop end: m/);
  });
});

describe('feature maps in the fused chunk kernel', () => {
  it.each(CHUNK_KERNELS)('%s: φ and ψ evaluated at most once per (row, feature) per chunk; no φ in a segment-state launch', (file) => {
    for (const { program, sizes, schedule: s, code, label, halo } of chunkKernels(file)) {
      const prefix = program.terms.flatMap((t) => (t.form.kind === 'prefix' ? [t.form] : []));
      const stateOnly = label.endsWith('.segment-state');
      for (const f of prefix) {
        const F = featureCount(f, sizes);
        const at = `${label} at ${JSON.stringify(s)}`;
        const phi = nodeEvaluations(code, f.phi, s.chunk, s.threads);
        const psi = nodeEvaluations(code, f.psi, s.chunk, s.threads);
        // Rows staged per chunk: φ the chunk's C, ψ also the halo a bounded term reading it as its key reaches back.
        const phiMax = s.chunk * F;
        const psiMax = (s.chunk + halo) * F;
        if (f.phi === f.psi) {
          // One node on both sides (a symmetric feature map) is staged for each.
          expect(phi, `${at}: φ = ψ %${f.phi} evaluations per chunk`).toBeLessThanOrEqual((stateOnly ? 0 : phiMax) + psiMax);
          continue;
        }
        if (stateOnly) expect(phi, `${at}: φ %${f.phi} evaluated in a launch that writes no outputs`).toBe(0);
        else expect(phi, `${at}: φ %${f.phi} never evaluated (is the counter reading this kernel?)`).toBeGreaterThan(0);
        expect(phi, `${at}: φ %${f.phi} evaluations per chunk`).toBeLessThanOrEqual(phiMax);
        expect(psi, `${at}: ψ %${f.psi} never evaluated (is the counter reading this kernel?)`).toBeGreaterThan(0);
        expect(psi, `${at}: ψ %${f.psi} evaluations per chunk`).toBeLessThanOrEqual(psiMax);
      }
    }
  });

  // A reduction over a feature axis whose result has only head axes (llama_linearized's ‖q‖ and ‖k‖ over d,
  // performer's): one value per row, staged once per row. Evaluated per element, as ExprGen did inside each φ/ψ
  // element, it ran (C + halo)·d times a chunk, each a d-long loop.
  it.each(CHUNK_KERNELS)('%s: a row reduction inside a feature map evaluated at most once per staged row per chunk', (file) => {
    for (const { program: p, schedule: s, code, label, halo, head } of chunkKernels(file)) {
      const rowReductions = p.nodes.filter((n) => (n.op === 'sum' || n.op === 'norm' || n.op === 'matmul') && n.type.side !== 'pair' && n.type.axes.every((x) => head.includes(x)));
      for (const r of rowReductions) {
        const n = nodeEvaluations(code, r.id, s.chunk, s.threads);
        expect(n, `${label} at ${JSON.stringify(s)}: %${r.id} ${r.op} evaluations per chunk`).toBeLessThanOrEqual(s.chunk + halo);
      }
    }
  });

  // A reduction with feature axes that a softmax reads along its axis (hedgehog's q @ W, m dot products of length d
  // per row): each element once per staged row. Computed inside each softmax element, it ran (2m + 1) times per
  // feature, F·(2m + 1)·d multiply-adds a row where m·d suffice.
  it.each(CHUNK_KERNELS)('%s: every element of a row reduction evaluated at most once per staged row per chunk', (file) => {
    for (const { program: p, sizes, schedule: s, code, label, halo, head } of chunkKernels(file)) {
      for (const r of p.nodes.filter((n) => (n.op === 'sum' || n.op === 'norm' || n.op === 'matmul') && (n.type.side === 'token' || n.type.side === 'query' || n.type.side === 'key'))) {
        const W = r.type.axes.filter((x) => !head.includes(x)).reduce((w, x) => w * sizes[x], 1);
        const n = nodeEvaluations(code, r.id, s.chunk, s.threads);
        expect(n, `${label} at ${JSON.stringify(s)}: %${r.id} ${r.op} evaluations per chunk`).toBeLessThanOrEqual((s.chunk + halo) * W);
      }
    }
  });

  // hedgehog's φ = [softmax(q @ W, m), softmax(−q @ W, m)] (F = 2m), ψ likewise from k: per staged row, each
  // softmax's Σ exp takes m exponentials and each feature one, F + 2m a side; the counter takes both branches of
  // the concat's if-chain, so 2F + 2m. Each feature recomputing its softmax's Σ exp took F·(m + 1) a side. (The
  // state fold's exp(lend) is the decay's, outside the features.)
  it('hedgehog: its softmaxes take O(F + m) exponentials a row in the chunk kernel, not O(F·m)', () => {
    const file = CHUNK_KERNELS.find((f) => f.endsWith('/hedgehog.la'))!;
    const c = compileFile(file);
    const sizes = axisSizes(c.source, { h: 16, d: 64, e: 64 });
    const m = sizes.m;
    const F = 2 * m;
    for (const s of SCHEDULES) {
      const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: s });
      for (const k of plan.kernels.filter((x) => /for \(var c: u32 = /.test(x.code))) {
        const halo = Number(/halo (\d+)/.exec(k.code)![1]);
        const sides = k.label.endsWith('.segment-state') ? 1 : 2; // a segment-state launch stages ψ only
        const exps = matchingExecutions(k.code, /exp\((?!lend)/, s.chunk, s.threads);
        expect(exps, `${k.label} at ${JSON.stringify(s)}: exponentials per chunk`).toBeGreaterThan(0);
        expect(exps, `${k.label} at ${JSON.stringify(s)}: exponentials per chunk`).toBeLessThanOrEqual(sides * (s.chunk + halo) * (2 * F + 2 * m));
      }
    }
  });

  it('llama_linearized stages ‖q‖ once per chunk row and ‖k‖ once per row with the halo', () => {
    const file = CHUNK_KERNELS.find((f) => f.endsWith('/llama_linearized.la'))!;
    const c = compileFile(file);
    const sizes = axisSizes(c.source, { h: 16, d: 64, e: 64 });
    const norms = c.program.nodes.filter((n) => n.op === 'norm' && n.type.side !== 'pair');
    expect(norms.length).toBe(2);
    const s = SCHEDULES[1];
    const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: s });
    const halo = Number(/halo (\d+)/.exec(plan.kernels[0].code)![1]);
    // ‖q‖ for the chunk's C rows, ‖k‖ for those and the halo (the group term's keys reach back): once each.
    const counts = norms.map((n) => nodeEvaluations(plan.kernels.find((k) => /for \(var c: u32 = /.test(k.code))!.code, n.id, s.chunk, s.threads)).sort((a, b) => a - b);
    expect(counts).toEqual([s.chunk, s.chunk + halo]);
  });
});
