// Chained Medusa runs back to back (GpuChain.continue, speculativeGenerate's overlapped runs): run k + 1 is submitted
// before run k is read back — its tree, pending path and positions are the GPU's, so the host uploads nothing and
// replays every step, the first included — and the output still equals plain greedy decoding (float64) token for
// token, across max-token stops inside a run, EOS, and run lengths; reading each run before the next
// (chainOverlap: false) gives the same tokens. The model is speculative-chain.test.ts's (llama_linearized, groups of
// 4 positions: a wrong committed position changes the output; heads accepted inside a run, paths of 1 to 4 nodes).
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { RecordedStep } from '../src/model/step-recording.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { GpuSpeculativeHeads } from '../src/speculative/gpu-heads.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { staticTopology, topologyTree } from '../src/speculative/chain.ts';
import { treeFromParents } from '../src/speculative/token-tree.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { checkPositionLimit, watchContinues } from './helpers/continues.ts';
import { gpuVerifierOf, makeModel, MODEL_SPECS, plainGreedy, repeatingModel } from './helpers/speculative.ts';

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe('chained Medusa runs submitted before the last one is read', () => {
  const m = repeatingModel(makeModel(MODEL_SPECS[1], 202), (w) => w.medusa.map((h) => ({ proj: { ...h.proj, data: new Float64Array(h.proj.data.length) }, lmHead: w.embedTokens })));
  const PROMPT = [72, 101, 108, 108, 111, 32, 108, 108];
  const N = 40;
  let made: GpuTreeVerifier | undefined;
  const target = async () => (made ??= await gpuVerifierOf(m, { maxNodes: 4, splitChain: true }, cleanup));

  /**
   * One generation, with the order of the verifier's continued submits and the loop's emits, and per continued
   * submit the queue writes and bind groups it made.
   */
  const generate = async (verifier: GpuTreeVerifier, R: number, maxTokens: number, opts: { eos?: number; overlap?: boolean; spec?: string; maxPosition?: number } = {}) => {
    return watchContinues(verifier, (onTokens) => speculativeGenerate(verifier, new MedusaDraft(3, 2), PROMPT, {
      maxTokens, shape: parseTreeSpec(opts.spec ?? 'chain:3'), maxNodes: 3, chainSteps: R,
      ...(opts.eos !== undefined && { eos: opts.eos }), ...(opts.overlap === false && { chainOverlap: false }),
      ...(opts.maxPosition !== undefined && { maxPosition: opts.maxPosition }),
      onTokens,
    }));
  };

  it('emits plain greedy decoding\'s tokens with each run submitted before the last is read, at every stop', async () => {
    const verifier = await target();
    const want = plainGreedy(m, PROMPT, N);
    const eos = want[21];
    for (const spec of ['chain:3', '[[0],[1],[0,0]]']) {
      for (const R of [1, 2, 4]) {
        for (const max of [N, 23, 9]) {
          const r = await generate(verifier, R, max, { spec });
          expect(r.tokens, `${spec} R=${R} max ${max}`).toEqual(want.slice(0, max));
          expect(r.stopReason).toBe('max-tokens');
          if (max === N) {
            expect(r.meanAccepted, `${spec} R=${R}: drafts accepted inside runs`).toBeGreaterThan(1.2);
            // The prefill's token and the root-only step are emitted first; the next run is submitted before the
            // first chained run's tokens are emitted (before its readback was read), and so on for most runs.
            const continues = r.events.filter((e) => e === 'continue').length;
            expect(continues, `${spec} R=${R}`).toBeGreaterThanOrEqual(2);
            expect(r.events.indexOf('continue'), `${spec} R=${R}: ${r.events.join(' ')}`).toBeLessThan(r.events.indexOf('emit', 2));
          }
        }
        const e = await generate(verifier, R, N, { eos, spec });
        expect(e.tokens, `${spec} R=${R} eos`).toEqual(want.slice(0, want.indexOf(eos) + 1));
        expect(e.stopReason).toBe('eos');
        const serial = await generate(verifier, R, N, { overlap: false, spec });
        expect(serial.tokens, `${spec} R=${R} read before the next run`).toEqual(want);
        expect(serial.events).not.toContain('continue');
      }
    }
  }, 180_000);

  it('a run is continued only when all its steps fit below the last position the model allows', async () => {
    const verifier = await target();
    const want = plainGreedy(m, PROMPT, N);
    const reach = 4; // chain:3: a step moves its root at most depth + 1 positions
    // The first chained run starts at the root after the prefill's token and the root-only step, position P + 1,
    // and may reach R · reach positions past it.
    await checkPositionLimit((R, maxPosition) => generate(verifier, R, N, { maxPosition }), want, reach, (R) => PROMPT.length + 1 + R * reach);
  }, 120_000);

  it('refuses to begin a run while one is unread, and to continue once the verifier ran anything else', async () => {
    const verifier = await target();
    const topology = staticTopology(parseTreeSpec('chain:3'));
    const root = await verifier.start(PROMPT, { temperature: 0 }, 0);
    const step = await verifier.verify({ tree: treeFromParents([root], [-1]), medusaTopK: 2 });
    verifier.commit([0]);
    const tree = topologyTree(topology, step.picks[0], step.medusa!);
    const draft = { kind: 'medusa', medusaK: 2 } as const;
    const a = await verifier.beginChain(tree, topology, 2, draft);
    await expect(verifier.beginChain(tree, topology, 2, draft)).rejects.toThrow(/not read yet/);
    const b = await verifier.continueChain(3);
    const [ra, rb] = [await a.result, await b.result];
    // The two runs emit what one run of their steps would: plain greedy decoding after the first two tokens.
    expect([root, step.picks[0], ...ra.steps.flat(), ...rb.steps.flat()]).toEqual(plainGreedy(m, PROMPT, 2 + ra.steps.flat().length + rb.steps.flat().length));
    await verifier.verify({ tree: treeFromParents([rb.steps[2].at(-1)!], [-1]), medusaTopK: 2 });
    await expect(verifier.continueChain(2)).rejects.toThrow(/nothing to continue/);
  }, 120_000);

  it('each run read before the next: a run begun after a step of its plan replays its first step too', async () => {
    const verifier = await target();
    await generate(verifier, 3, N, { overlap: false }); // every recording made
    // The JavaScript encode of a step runs the heads' encoder; a replayed step does not.
    const heads = vi.spyOn(GpuSpeculativeHeads.prototype, 'encode');
    const r = await generate(verifier, 3, N, { overlap: false });
    expect(r.tokens).toEqual(plainGreedy(m, PROMPT, N));
    expect(r.steps, 'several runs').toBeGreaterThan(3 * 3);
    // None: the root-only step after the prefill and the first step of the run after it replay the verifier's
    // recordings of its tree steps, made in the first generation, as the chained steps replay theirs.
    expect(heads).not.toHaveBeenCalled();
  }, 120_000);

  it('a continued run writes one queue word pair, makes no bind group and replays every step', async () => {
    const verifier = await target();
    await generate(verifier, 3, N); // every recording made
    const record = vi.spyOn(RecordedStep, 'recordAsync');
    const r = await generate(verifier, 3, N);
    expect(r.tokens).toEqual(plainGreedy(m, PROMPT, N));
    expect(r.continued.length).toBeGreaterThanOrEqual(2);
    // The ring and step count reset; no tree, path, position or dims from the host.
    for (const c of r.continued) expect(c).toEqual({ writes: 1, groups: 0 });
    expect(record).not.toHaveBeenCalled();
  }, 120_000);
});
