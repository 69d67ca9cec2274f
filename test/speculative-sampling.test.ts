// Speculative sampling preserves the target's distribution: on a 6-token vocabulary the exact joint
// distribution of the first three new tokens (temperature, top-k and top-p applied to p as plain sampling
// applies them) against the counts of 20 000 speculative runs — with a sampled draft whose q is
// deliberately wrong (the rejection rule), and with deterministic drafts (the coupled rule). A chi-square
// test at p = 1e-4; the same test rejects the draft's own proposals, so it can fail. Then, on the tiny
// models, deterministic drafts under sampling emit exactly plain sampling's tokens from the same seed.
import { describe, expect, it } from 'vitest';
import { cpuForward } from '../src/model/cpu-forward.ts';
import { sampleFromDistribution, sampleToken, samplingDistribution, type SamplingOptions } from '../src/model/sampling.ts';
import { CpuTreeVerifier } from '../src/speculative/cpu-verifier.ts';
import type { Candidate } from '../src/speculative/candidate.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { pathTokens, type TokenTree } from '../src/speculative/token-tree.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { checkPath, type TreeVerifier, type VerifyRequest, type VerifyResult } from '../src/speculative/verifier.ts';
import { rng } from '../src/tensor.ts';
import { makeModel, MODEL_SPECS, randomPrompts, recurrentAttention, type TestModel } from './helpers/speculative.ts';

const V = 6;
const RUNS = 20_000;

/** Logits as a fixed random function of the last two tokens. */
function table(seed: number, scale: number): (ctx: readonly number[]) => Float64Array {
  const r = rng(seed);
  const t = Array.from({ length: V * V }, () => Float64Array.from({ length: V }, () => scale * (r() * 2 - 1)));
  return (ctx) => t[(ctx[ctx.length - 2] ?? 0) * V + ctx[ctx.length - 1]];
}

/** A toy target: next-token logits from `logits(context)`, verified node by node with the depth's draw. */
class ToyVerifier implements TreeVerifier {
  readonly vocabSize = V;
  readonly medusaHeads = 0;
  readonly maxNodes = 16;
  private committed: number[] = [];
  private pending: readonly number[] | undefined;
  private last: TokenTree | undefined;
  private sampling: SamplingOptions = {};

  constructor(private readonly logits: (ctx: readonly number[]) => Float64Array) {}

  get position(): number {
    return this.committed.length + (this.pending?.length ?? 0);
  }

  async start(prompt: readonly number[], sampling: SamplingOptions, u0: number): Promise<number> {
    this.committed = [...prompt];
    this.pending = undefined;
    this.sampling = sampling;
    return sampleToken(this.logits(this.committed), sampling, () => u0).token;
  }

  async verify(req: VerifyRequest): Promise<VerifyResult> {
    await this.flush();
    const rows = req.tree.tokens.map((_, n) => this.logits([...this.committed, ...pathTokens(req.tree, n)]));
    this.last = req.tree;
    const logits = new Float64Array(rows.length * V);
    rows.forEach((r, n) => logits.set(r, n * V));
    return { picks: rows.map((r, n) => sampleToken(r, this.sampling, () => req.uniforms![req.tree.depths[n] - 1]).token), logits };
  }

  commit(path: readonly number[]): void {
    checkPath(this.last!, path);
    this.pending = path;
  }

  async flush(): Promise<void> {
    if (this.pending) this.committed.push(...this.pending.map((n) => this.last!.tokens[n]));
    this.pending = undefined;
  }

  async destroy(): Promise<void> {}
}

/** A sampled draft: k independent draws from q(context) per node, q carried for the rejection rule. */
function sampledDraft(q: (ctx: readonly number[]) => Float64Array, seed: number): DraftSource {
  const r = rng(seed);
  return {
    name: 'wrong q',
    candidates: (ctx, tree, nodes, k) =>
      nodes.map((n) => {
        const dist = q([...ctx.tokens, ...pathTokens(tree, n).slice(1)]);
        return Array.from({ length: k }, (): Candidate => {
          const token = sampleFromDistribution(dist, r);
          return { token, prob: dist[token], q: dist };
        });
      }),
  };
}

/** A deterministic draft: proposes last + 1 and last + 2 (mod V). */
const shiftDraft: DraftSource = {
  name: 'shift',
  candidates: (ctx, tree, nodes, k) =>
    nodes.map((n) => {
      const last = pathTokens(tree, n).at(-1)!;
      return [1, 2].slice(0, k).map((d) => ({ token: (last + d) % V, prob: 0.5 }));
    }),
};

/** Upper quantile of χ²(dof) at tail probability α = 1e-4 (Wilson–Hilferty; z = 3.719). */
function chiSquareCritical(dof: number): number {
  const z = 3.719;
  return dof * (1 - 2 / (9 * dof) + z * Math.sqrt(2 / (9 * dof))) ** 3;
}

/** χ² of counts over the joint of three tokens against the exact distribution, cells with expected < 5 pooled. */
function chiSquare(counts: Map<string, number>, exact: Map<string, number>, n: number): { stat: number; dof: number } {
  let stat = 0;
  let cells = 0;
  let pooledE = 0;
  let pooledO = 0;
  for (const [key, p] of exact) {
    const e = p * n;
    const o = counts.get(key) ?? 0;
    if (e < 5) {
      pooledE += e;
      pooledO += o;
      continue;
    }
    stat += (o - e) ** 2 / e;
    cells++;
  }
  for (const [key, o] of counts) if (!exact.has(key)) pooledO += o; // impossible outcomes land in the pool
  if (pooledE > 0 || pooledO > 0) {
    stat += (pooledO - pooledE) ** 2 / Math.max(pooledE, 1e-9);
    cells++;
  }
  return { stat, dof: cells - 1 };
}

function exactJoint(logits: (ctx: readonly number[]) => Float64Array, prompt: readonly number[], s: SamplingOptions): Map<string, number> {
  const out = new Map<string, number>();
  const p0 = samplingDistribution(logits(prompt), s);
  for (let a = 0; a < V; a++) {
    if (!p0[a]) continue;
    const p1 = samplingDistribution(logits([...prompt, a]), s);
    for (let b = 0; b < V; b++) {
      if (!p1[b]) continue;
      const p2 = samplingDistribution(logits([...prompt, a, b]), s);
      for (let c = 0; c < V; c++) if (p2[c]) out.set(`${a},${b},${c}`, p0[a] * p1[b] * p2[c]);
    }
  }
  return out;
}

describe('speculative sampling preserves the target distribution (χ², 6-token vocabulary, 20 000 runs)', () => {
  const target = table(11, 2);
  const wrongQ = (ctx: readonly number[]) => samplingDistribution(table(12, 3)(ctx), { temperature: 1 }); // unrelated to p
  const cases: { name: string; sampling: SamplingOptions; draft: (seed: number) => DraftSource; tree: string; prompt?: number[] }[] = [
    { name: 'sampled draft with a wrong q, two siblings and a grandchild', sampling: { temperature: 0.9 }, draft: (s) => sampledDraft(wrongQ, s), tree: '[[0],[1],[0,0]]' },
    { name: 'sampled draft, top-k 3 and top-p 0.9 on p (q proposes tokens p excludes)', sampling: { temperature: 1.2, topK: 3, topP: 0.9 }, draft: (s) => sampledDraft(wrongQ, s), tree: 'top:2' },
    { name: 'deterministic draft (the coupled rule)', sampling: { temperature: 0.8, topK: 4 }, draft: () => shiftDraft, tree: '[[0],[1],[0,0],[1,0]]' },
    // Its proposals depend on the text and its own seeded draws only; a repetitive prompt fills its table.
    { name: 'adaptive draft, best-first tree (the coupled rule)', sampling: { temperature: 1 }, draft: (s) => new AdaptiveDraft(s), tree: 'best:2', prompt: [2, 3, 4, 2, 3, 5, 1, 2, 3, 4, 1, 2] },
  ];

  it.each(cases)('$name', async ({ sampling, draft, tree, prompt = [2] }) => {
    const exact = exactJoint(target, prompt, sampling);
    const counts = new Map<string, number>();
    const control = new Map<string, number>(); // what the draft proposed at depth 1 and 2
    const verifier = new ToyVerifier(target);
    let acceptedDrafts = 0;
    for (let i = 0; i < RUNS; i++) {
      let firstTree: TokenTree | undefined;
      const d = draft(1_000_000 + i);
      const spy: DraftSource = { name: d.name, candidates: (ctx, t, nodes, k) => d.candidates(ctx, t, nodes, k), finalize: (_ctx, t) => void (firstTree ??= t) };
      const r = await speculativeGenerate(verifier, spy, prompt, { maxTokens: 3, shape: parseTreeSpec(tree), maxNodes: 6, sampling, seed: i });
      const key = r.tokens.join(',');
      counts.set(key, (counts.get(key) ?? 0) + 1);
      acceptedDrafts += r.acceptedPerStep.reduce((a, b) => a + b - 1, 0);
      if (firstTree && firstTree.tokens.length >= 3) {
        const ck = `${r.tokens[0]},${firstTree.tokens[1]},${firstTree.tokens[firstTree.parents.indexOf(1)] ?? firstTree.tokens[2]}`;
        control.set(ck, (control.get(ck) ?? 0) + 1);
      }
    }
    const { stat, dof } = chiSquare(counts, exact, RUNS);
    expect(stat, `χ² = ${stat.toFixed(1)} with ${dof} degrees of freedom (critical ${chiSquareCritical(dof).toFixed(1)})`).toBeLessThan(chiSquareCritical(dof));
    expect(acceptedDrafts, 'drafts were accepted at all').toBeGreaterThan(RUNS / 10);
    // Power: the draft's own proposals (what "accept everything" would emit) fail the same test.
    const n = [...control.values()].reduce((a, b) => a + b, 0);
    const c = chiSquare(control, exact, n);
    expect(c.stat).toBeGreaterThan(chiSquareCritical(c.dof));
  });
});

/** Plain sampling in float64 with recurrent steps and one draw per token from rng(seed). */
function plainSampled(m: TestModel, prompt: readonly number[], n: number, s: SamplingOptions, seed: number): number[] {
  const c = m.config;
  const attention = recurrentAttention(m);
  const random = rng(seed);
  let logits = cpuForward(m.cpu, [prompt], attention).logits.data;
  const out: number[] = [];
  for (;;) {
    out.push(sampleToken(logits.subarray(logits.length - c.vocabSize), s, random).token);
    if (out.length === n) return out;
    logits = cpuForward(m.cpu, [[out[out.length - 1]]], attention).logits.data;
  }
}

describe('deterministic drafts under sampling emit plain sampling’s tokens from the same seed (float64)', () => {
  it.each(MODEL_SPECS.map((s) => ({ ...s })))('$name: n-gram, adaptive, Medusa and oracle, temperature 0.9, top-k 40, top-p 0.95', async (spec) => {
    const m = makeModel(spec, spec.seed);
    const sampling = { temperature: 0.9, topK: 40, topP: 0.95 };
    const verifier = new CpuTreeVerifier(m.cpu, m.variant.compiled, 9);
    let oracleSteps = 0;
    for (const [p, prompt] of randomPrompts(8, 77).entries()) {
      const want = plainSampled(m, prompt, 10, sampling, 500 + p);
      for (const [draft, tree] of [[new NgramDraft(), 'top:3'], [new AdaptiveDraft(p), 'best:3'], [new MedusaDraft(3, 2), '[[0],[1],[0,0]]'], [new OracleDraft(prompt, want, m.config.vocabSize), 'chain:4']] as const) {
        const r = await speculativeGenerate(verifier, draft, prompt, { maxTokens: 10, shape: parseTreeSpec(tree), maxNodes: 8, sampling, seed: 500 + p });
        expect(r.tokens, `${spec.name} ${draft.name} prompt [${prompt}] seed ${500 + p}`).toEqual(want);
        if (draft.name === 'oracle') oracleSteps += r.steps;
      }
    }
    expect(oracleSteps).toBe(8 * 2); // 9 tokens after the first: 5 + 4, every proposal accepted
  });
});
