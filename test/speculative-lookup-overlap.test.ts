// Chained prompt-lookup runs back to back (GpuChain.continue for a lookup draft, speculativeGenerate's overlapped
// runs): run k + 1 is submitted before run k is read, and drafts from the token history as run k's kernels left it
// on the GPU. The oracles are independent of the chain: plain greedy decoding (float64) for the tokens, and the
// host's unchained lookup steps (the same proposals, so the same trees) for the tokens each step accepts — a
// continued run that read a stale or truncated history would propose other chains and accept other lengths. Stops:
// max tokens inside a run, the position limit; the counts show the runs were continued, and that a continued run
// uploads nothing but the ring's reset (the history grows on the GPU, by a copy, when it runs out of room).
// Under `--tree auto` a chained option's runs go back to back while the policy, deciding ahead, picks it again.
// The model is speculative-lookup-chain.test.ts's (its greedy text repeats itself: lookups are accepted).
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { RecordedStep } from '../src/model/step-recording.ts';
import { autoChainSteps, autoTrees, treeLabel } from '../src/speculative/auto-trees.ts';
import { speculativeGenerate, type TreeOption } from '../src/speculative/generate.ts';
import { GpuPlainDecoder } from '../src/speculative/plain-runs.ts';
import { FixedSchedule, SpeculationController, type SpeculationPolicy } from '../src/speculative/speculation-controller.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { LookupChainDraft } from '../src/speculative/lookup-chain.ts';
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

describe('chained prompt-lookup runs submitted before the last one is read', () => {
  const m = repeatingModel(makeModel(MODEL_SPECS[1], 202, 0));
  const PROMPT = [72, 101, 108, 108, 111, 32, 108, 108, 72, 101, 108, 108];
  const N = 40;
  const K = 3;
  const want = plainGreedy(m, PROMPT, N);
  let made: GpuTreeVerifier | undefined;
  const target = async () => (made ??= await gpuVerifierOf(m, { maxNodes: 8 }, cleanup));

  /** One generation, with the order of continued submits and emits, and per continued submit its queue writes and bind groups. */
  const generate = async (verifier: GpuTreeVerifier, R: number, maxTokens: number, opts: { overlap?: boolean; maxPosition?: number; auto?: { policy: SpeculationPolicy; trees: readonly TreeOption[] } } = {}) => {
    return watchContinues(verifier, (onTokens) => speculativeGenerate(verifier, new LookupChainDraft({ length: K, minN: 1, maxN: 4 }), PROMPT, {
      maxTokens, shape: parseTreeSpec(`chain:${K}`), maxNodes: K, ...(R > 0 && { chainSteps: R }),
      ...(opts.overlap === false && { chainOverlap: false }), ...(opts.maxPosition !== undefined && { maxPosition: opts.maxPosition }),
      ...(opts.auto && { auto: { ...opts.auto, plain: new GpuPlainDecoder(verifier, {}) } }),
      onTokens,
    }));
  };

  it('emits plain greedy decoding\'s tokens and accepts what the host\'s proposals accept, runs continued, the history grown on the GPU', async () => {
    // A fresh verifier: its history buffer is sized for the first run and must grow while runs are in flight.
    const verifier = await gpuVerifierOf(m, { maxNodes: 8 }, cleanup);
    const host = await generate(verifier, 0, N);
    expect(host.tokens).toEqual(want);
    for (const R of [2, 4]) {
      for (const max of [N, 17]) {
        const r = await generate(verifier, R, max);
        const at = `R=${R} max ${max}`;
        expect(r.tokens, at).toEqual(want.slice(0, max));
        expect(r.stopReason).toBe('max-tokens');
        // The same trees step for step (the last may differ: the host's tree stops at the tokens left).
        expect(r.acceptedPerStep.slice(0, -1), at).toEqual(host.acceptedPerStep.slice(0, r.acceptedPerStep.length - 1));
        if (max === N) {
          expect(r.meanAccepted, `${at}: lookups accepted inside runs`).toBeGreaterThan(1.3);
          // The prefill's token is emitted first; the next run is submitted before the first run's tokens are emitted.
          expect(r.continued.length, at).toBeGreaterThanOrEqual(2);
          expect(r.events.indexOf('continue'), `${at}: ${r.events.join(' ')}`).toBeLessThan(r.events.indexOf('emit', 1));
          // The first generation outgrows the history sized at begin: a continued run made its one bind group then.
          if (R === 2) expect(r.continued.some((c) => c.groups === 1), `${at}: grown`).toBe(true);
        }
      }
      const serial = await generate(verifier, R, N, { overlap: false });
      expect(serial.tokens, `R=${R} read before the next run`).toEqual(want);
      expect(serial.events).not.toContain('continue');
    }
  }, 120_000);

  it('a run is continued only when all its steps fit below the last position the model allows', async () => {
    const verifier = await target();
    const reach = K + 1; // a step moves its root at most depth + 1 positions
    // The first chained run starts at the prefill's token, position P, and may reach R · reach positions past it.
    await checkPositionLimit((R, maxPosition) => generate(verifier, R, N, { maxPosition }), want, reach, (R) => PROMPT.length + R * reach);
  }, 120_000);

  it('a continued run writes one queue word pair, makes no bind group and replays every step', async () => {
    const verifier = await target();
    await generate(verifier, 3, N); // every recording made, the history grown
    const record = vi.spyOn(RecordedStep, 'recordAsync');
    const r = await generate(verifier, 3, N);
    expect(r.tokens).toEqual(want);
    expect(r.continued.length).toBeGreaterThanOrEqual(2);
    // The ring and step count reset; no tree, path, position, dims or history from the host.
    for (const c of r.continued) expect(c).toEqual({ writes: 1, groups: 0 });
    expect(record).not.toHaveBeenCalled();
  }, 120_000);

  it('auto: a chained option the policy takes again runs back to back, and any option follows it', async () => {
    const verifier = await target();
    const trees: TreeOption[] = [{ shape: parseTreeSpec(`chain:${K}`), maxNodes: K }, { shape: parseTreeSpec(`chain:${K}`), maxNodes: K, chainSteps: 3 }];
    const labels = trees.map(treeLabel);
    // Chained three times (two continued), plain, a tree step, chained twice (one continued), and around again.
    for (const max of [N, 17]) {
      const r = await generate(verifier, 0, max, { auto: { policy: new FixedSchedule(labels, [2, 2, 2, 0, 1, 2, 2], 3), trees } });
      expect(r.tokens, `max ${max}`).toEqual(want.slice(0, max));
      const s = r.policy!;
      expect(s.reduce((a, o) => a + o.tokens, 0), `max ${max}: every token after the prefill's, credited once`).toBe(max - 1);
      if (max === N) {
        expect(s.map((o) => o.decisions > 0), 'every option ran').toEqual([true, true, true]);
        expect(r.continued.length).toBeGreaterThanOrEqual(3);
        expect(r.events.indexOf('continue'), r.events.join(' ')).toBeLessThan(r.events.indexOf('emit', 1));
      }
    }
    // The controller, offered the chained options: it decides, and the tokens stay plain greedy.
    const auto = autoTrees('lookup', K, Infinity, autoChainSteps('lookup', 'gpu', {}));
    const r = await generate(verifier, 0, N, { auto: { policy: new SpeculationController({ trees: auto.map(treeLabel), plainTokens: 4 }), trees: auto } });
    expect(r.tokens).toEqual(want);
    expect(r.policy!.reduce((a, o) => a + o.tokens, 0)).toBe(N - 1);
  }, 120_000);
});
