// Tree steps encoded ahead (src/speculative/step-ahead.ts): while a step that followed a step runs, the GPU verifier
// encodes the next step's commands for the size it just ran, and submits them when the next step is that size, its
// data (trees, pending paths, positions) written first. Checked: the holder gives commands only for the objects they
// were encoded with, once, and asks for them only after steps in a row; on the GPU, steps of one sequence with accepted paths of every length, sizes that change, a
// flush and a prefill in between, and a batch of mixed drafts, each equal to plain greedy decoding in float64 — with
// the commands encoded ahead submitted (the counts say so), and the same without them.
import { afterAll, describe, expect, it } from 'vitest';
import type { RecordedStep } from '../src/model/step-recording.ts';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { speculativeGenerateBatch } from '../src/speculative/generate-batch.ts';
import type { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { GpuPlainDecoder } from '../src/speculative/plain-runs.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { StepAhead } from '../src/speculative/step-ahead.ts';
import { treeFromParents } from '../src/speculative/token-tree.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { rng } from '../src/tensor.ts';
import { gpuVerifierOf, makeModel, MODEL_SPECS, plainGreedy } from './helpers/speculative.ts';

describe('StepAhead', () => {
  const step = {} as RecordedStep;
  const staging = {} as GPUBuffer;
  const commands = {} as GPUCommandBuffer;

  it('gives the held commands once, and only for the step, readback buffer and size they were encoded with', () => {
    const ahead = new StepAhead();
    ahead.hold({ commands, step, staging, bytes: 64, reenter: false }, 0.5);
    expect(ahead.holding).toBe(true);
    expect(ahead.take(step, staging, 64)).toBe(commands);
    expect(ahead.take(step, staging, 64)).toBeUndefined();
    for (const [s, g, n] of [[{} as RecordedStep, staging, 64], [step, {} as GPUBuffer, 64], [step, staging, 72]] as const) {
      ahead.hold({ commands, step, staging, bytes: 64, reenter: false }, 0.5);
      expect(ahead.take(s, g, n)).toBeUndefined();
      expect(ahead.holding).toBe(false);
    }
    ahead.hold({ commands, step, staging, bytes: 64, reenter: true }, 0.5);
    expect(ahead.take(step, staging, 64)).toBeUndefined(); // re-entering commands, for a step in the sets
    ahead.hold({ commands, step, staging, bytes: 64, reenter: true }, 0.5);
    expect(ahead.take(step, staging, 64, true)).toBe(commands);
    ahead.hold({ commands, step, staging, bytes: 64, reenter: false }, 0.5);
    ahead.drop();
    expect(ahead.take(step, staging, 64)).toBeUndefined();
    expect(ahead.counts).toEqual({ encoded: 7, used: 2, ms: 3.5 });
  });

  it('says to encode ahead only for a step that followed a step, and never when off', () => {
    const ahead = new StepAhead();
    expect(ahead.stepped()).toBe(false);
    expect(ahead.stepped()).toBe(true);
    ahead.discard(); // commands that did not fit: the steps still come in a row
    expect(ahead.stepped()).toBe(true);
    ahead.drop(); // something else ran
    expect(ahead.stepped()).toBe(false);
    expect(ahead.stepped()).toBe(true);
    ahead.enabled = false;
    expect(ahead.stepped()).toBe(false);
  });
});

describe('tree steps encoded ahead on the GPU', () => {
  const spec = MODEL_SPECS[0];
  const m = makeModel(spec, spec.seed);
  const cleanup: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanup) await c();
  });
  const N = 20;

  /**
   * Verifies the chain `tokens` (rooted at the last of `out`), commits the path greedy acceptance takes and appends its
   * tokens and the bonus to `out`; whether the step was submitted from commands encoded ahead.
   */
  const verifyChain = async (verifier: GpuTreeVerifier, tokens: readonly number[], out: number[]): Promise<boolean> => {
    const used = verifier.stepTimes.ahead.used;
    const r = await verifier.verify({ tree: treeFromParents(tokens, tokens.map((_, n) => n - 1)) });
    const path = [0];
    while (path.length < tokens.length && r.picks[path.at(-1)!] === tokens[path.length]) path.push(path.length);
    verifier.commit(path);
    out.push(...tokens.slice(1, path.length), r.picks[path.at(-1)!]);
    return verifier.stepTimes.ahead.used > used;
  };

  /**
   * One sequence through the verifier's own calls: chains of 2 or 3 nodes (rows 2 and 4), the drafted tokens right
   * or wrong by a fixed pattern so that paths of 1, 2 and 3 nodes are committed; a flush after step 3. Returns the
   * tokens and, per step, whether its commands had been encoded ahead.
   */
  const decode = async (verifier: GpuTreeVerifier, prompt: readonly number[], want: readonly number[]) => {
    const out = [await verifier.start(prompt, { temperature: 0 }, 0)];
    const fromAhead: boolean[] = [];
    for (let step = 0; out.length < N; step++) {
      if (step === 3) await verifier.flush();
      const right = (d: number) => (step % 3 === 0 ? d === 1 : step % 3 === 1);
      const depth = step % 4 === 2 ? 2 : 3;
      const tokens = [out.at(-1)!];
      for (let d = 1; d < depth; d++) tokens.push(right(d) ? (want[out.length - 1 + d] ?? 0) : (want[out.length - 1 + d] ?? 0) ^ 1);
      fromAhead.push(await verifyChain(verifier, tokens, out));
    }
    return { tokens: out.slice(0, N), fromAhead };
  };

  it('one sequence: paths of every length, sizes that change, a flush; greedy equals plain float64, with and without', async () => {
    const verifier = await gpuVerifierOf(m, { maxNodes: 4 }, cleanup);
    const r = rng(31);
    for (const ahead of [true, false]) {
      verifier.encodesAhead = ahead;
      const prompt = Array.from({ length: 5 }, () => Math.floor(r() * 256));
      const want = plainGreedy(m, prompt, N);
      const { tokens, fromAhead } = await decode(verifier, prompt, want);
      expect(tokens, `prompt ${prompt}, encoded ahead: ${ahead}`).toEqual(want);
      if (!ahead) {
        expect(fromAhead.every((a) => !a)).toBe(true);
        continue;
      }
      // Commands are encoded ahead after a step that followed a step: not after step 0 (it follows the prefill) nor
      // step 3 (the flush); steps 2 and 6 change the size (rows 2), 3 and 7 change it back.
      expect(fromAhead.slice(0, 10)).toEqual([false, false, false, false, false, true, false, false, true, true]);
    }
  });

  it('after plain runs: the step that re-enters the folded sets, encoded while they ran, is submitted when it is the last size; greedy equals plain float64', async () => {
    const verifier = await gpuVerifierOf(m, { maxNodes: 4 }, cleanup);
    const prompt = Array.from({ length: 5 }, (_, i) => (37 * i + 11) % 256);
    const want = plainGreedy(m, prompt, N);
    const out = [await verifier.start(prompt, { temperature: 0 }, 0)];
    const plain = new GpuPlainDecoder(verifier, { temperature: 0 });
    const fromAhead: boolean[] = [];
    // A chain of `nodes` nodes whose first draft is right: paths of 2 nodes, the bonus after them.
    const step = async (nodes: number) => {
      const tokens = [out.at(-1)!, ...Array.from({ length: nodes - 1 }, (_, d) => (d === 0 ? want[out.length] : (want[out.length + d] ?? 0) ^ 1))];
      fromAhead.push(await verifyChain(verifier, tokens, out));
    };
    const plainRun = async (n: number) => out.push(...(await plain.run(out.at(-1)!, n, () => 0)));
    await step(2); // rows 2
    await plainRun(3);
    await step(2); // rows 2 again: re-enters from the commands encoded during the plain run
    await step(2); // encoded ahead after the re-entering step
    await plainRun(2);
    await step(3); // rows 4: the re-entering commands were of rows 2
    await step(3);
    expect(out.length).toBe(16);
    expect(out).toEqual(want.slice(0, 16));
    expect(fromAhead).toEqual([false, true, true, false, false]);
  });

  it('batch 3, mixed drafts (oracle, n-gram, adaptive): greedy of every sequence equals its plain float64 decoding, with and without', async () => {
    const B = 3;
    const verifier = await gpuVerifierOf(m, { maxNodes: 7, maxBatch: B }, cleanup);
    const r = rng(77);
    const ps = Array.from({ length: B }, (_, s) => Array.from({ length: 6 }, (_, j) => (s === 1 ? [5, 9][j % 2] : Math.floor(r() * 256))));
    const want = ps.map((p) => plainGreedy(m, p, N));
    for (const ahead of [true, false]) {
      verifier.encodesAhead = ahead;
      const before = verifier.stepTimes.ahead;
      const drafts = [new OracleDraft(ps[0], want[0], m.config.vocabSize), new NgramDraft(), new AdaptiveDraft(1)];
      const out = await speculativeGenerateBatch(verifier, drafts, ps, { maxTokens: N, shape: parseTreeSpec('top:2'), maxNodes: 6 });
      expect(out.tokens, `encoded ahead: ${ahead}`).toEqual(want);
      const after = verifier.stepTimes.ahead;
      if (ahead) expect(after.used - before.used).toBeGreaterThan(0);
      else expect(after).toEqual(before);
    }
  });
});
