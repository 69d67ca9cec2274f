// A chained Medusa step ≥ 1 starts from the rows its chain kernel wrote (chainAcceptWgsl's embedHidden): the kernel
// that assembles the next tree also gathers its tokens' embedding rows into the step's input, so the recorded step
// has no embedding dispatch — one fewer per chained step (the trained nano model's sparse 8-node tree: 37 → 36); the
// prompt lookup's chain kernel does the same. A run's first step, whose tree the host uploads, gathers its rows unless a continued run's chain kernel wrote them.
// Oracle: plain greedy decoding (float64), through runs begun after a chained run, after an unchained step of the
// same plan (x then holds that step's hidden states), and continued runs.
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { RecordedStep } from '../src/model/step-recording.ts';
import { TREE_STEP_RECORDING } from '../src/speculative/gpu-verifier.ts';
import { acceptByPicks } from '../src/speculative/acceptance.ts';
import { staticTopology, topologyTree } from '../src/speculative/chain.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { LookupChainDraft } from '../src/speculative/lookup-chain.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { treeFromParents } from '../src/speculative/token-tree.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { gpu } from './helpers/gpu.ts';
import { gpuVerifierOf, makeModel, MODEL_SPECS, plainGreedy, repeatingModel } from './helpers/speculative.ts';

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** The labels of a recording's bind groups, one per dispatch. */
function groupLabels(step: RecordedStep): string[] {
  return (step as unknown as { groups: readonly GPUBindGroup[] }).groups.map((g) => g.label);
}

describe('chained steps start from the rows the chain kernel embedded', () => {
  // speculative-chain.test.ts's model: random, scaled so greedy text repeats itself (the heads accepted in a run).
  const m = repeatingModel(makeModel(MODEL_SPECS[1], 202), (w) => w.medusa.map((h) => ({ proj: { ...h.proj, data: new Float64Array(h.proj.data.length) }, lmHead: w.embedTokens })));
  const PROMPT = [72, 101, 108, 108, 111, 32, 108, 108];
  const L = m.config.numLayers;

  it('a recorded step ≥ 1 has no embedding dispatch: 5 per layer, the LM head and its argmax, the 3 heads, the chain kernel', async () => {
    const verifier = await gpuVerifierOf(m, { maxNodes: 8 }, cleanup);
    const record = vi.spyOn(RecordedStep, 'recordAsync');
    for (const [spec, nodes] of [['chain:3', 3], ['[[0],[1],[0,0],[0,1],[1,0],[0,0,0],[2]]', 7]] as const) {
      for (const R of [1, 2, 4]) {
        const want = plainGreedy(m, PROMPT, 30);
        const r = await speculativeGenerate(verifier, new MedusaDraft(3, 3), PROMPT, { maxTokens: 30, shape: parseTreeSpec(spec), maxNodes: nodes, chainSteps: R });
        expect(r.tokens, `${spec} R=${R}`).toEqual(want);
      }
    }
    // The chained runs' recordings (the verifier's own tree steps, recorded for their replay, hold the embedding).
    const steps = (await Promise.all(record.mock.results.map((x) => x.value as Promise<RecordedStep>))).filter((x) => x.label !== TREE_STEP_RECORDING);
    expect(steps.length).toBeGreaterThanOrEqual(2);
    for (const step of steps) {
      const labels = groupLabels(step);
      expect(labels.filter((l) => l.startsWith('embedding')), labels.join('\n')).toEqual([]);
      expect(labels.at(-1)).toBe('chain accept');
      // With the tree's embedding this was 5 L + 7 (the nano model: 37).
      expect(step.dispatches, labels.join('\n')).toBe(5 * L + 6);
    }
  }, 240_000);

  it('prompt lookup: a recorded step ≥ 1 has no embedding dispatch either: 5 per layer, the LM head and its argmax, the lookup kernel', async () => {
    const lm = repeatingModel(makeModel(MODEL_SPECS[1], 202, 0));
    const verifier = await gpuVerifierOf(lm, { maxNodes: 4 }, cleanup);
    const record = vi.spyOn(RecordedStep, 'recordAsync');
    for (const R of [1, 2, 4]) {
      const prompt = [...PROMPT, ...PROMPT];
      const r = await speculativeGenerate(verifier, new LookupChainDraft({ length: 3, minN: 1, maxN: 4 }), prompt, { maxTokens: 30, shape: parseTreeSpec('chain:3'), maxNodes: 3, chainSteps: R });
      expect(r.tokens, `R=${R}`).toEqual(plainGreedy(lm, prompt, 30));
    }
    // The chained runs' recordings (the verifier's own tree steps, recorded for their replay, hold the embedding).
    const steps = (await Promise.all(record.mock.results.map((x) => x.value as Promise<RecordedStep>))).filter((x) => x.label !== TREE_STEP_RECORDING);
    expect(steps.length).toBeGreaterThanOrEqual(1);
    for (const step of steps) {
      const labels = groupLabels(step);
      expect(labels.filter((l) => l.startsWith('embedding')), labels.join('\n')).toEqual([]);
      expect(labels.at(-1), labels.join('\n')).toBe('chain lookup');
      expect(step.dispatches, labels.join('\n')).toBe(5 * L + 3);
    }
  }, 240_000);

  it('a run begun after an unchained step of its plan gathers its first tree, then replays', async () => {
    const verifier = await gpuVerifierOf(m, { maxNodes: 4 }, cleanup);
    const topology = staticTopology(parseTreeSpec('chain:3'));
    const draft = { kind: 'medusa', medusaK: 2 } as const;
    const root = await verifier.start(PROMPT, { temperature: 0 }, 0);
    const first = await verifier.verify({ tree: treeFromParents([root], [-1]), medusaTopK: 2 });
    verifier.commit([0]);
    // An unchained step of the chain's plan: its hidden states stay in the plan's rows.
    const tree = topologyTree(topology, first.picks[0], first.medusa!);
    const step = await verifier.verify({ tree, medusaTopK: 2 });
    const { path, bonus } = acceptByPicks(tree, step.picks);
    verifier.commit(path);
    const a = await verifier.beginChain(topologyTree(topology, bonus, step.medusa!), topology, 3, draft);
    const ra = await a.result;
    const b = await verifier.continueChain(2);
    const rb = await b.result;
    const tokens = [root, first.picks[0], ...path.slice(1).map((n) => tree.tokens[n]), bonus, ...ra.steps.flat(), ...rb.steps.flat()];
    expect(tokens).toEqual(plainGreedy(m, PROMPT, tokens.length));
  }, 120_000);

  it('each run read before the next: a run begun on the tree the last chain kernel assembled gathers nothing', async () => {
    const verifier = await gpuVerifierOf(m, { maxNodes: 4 }, cleanup);
    const { device } = await gpu();
    // Per chained run (its command encoders by label): the embedding gathers its passes record.
    const gathers: number[] = [];
    const real = device.createCommandEncoder.bind(device);
    vi.spyOn(device, 'createCommandEncoder').mockImplementation((d?: GPUCommandEncoderDescriptor) => {
      const encoder = real(d);
      const label = d?.label ?? '';
      if (!label.startsWith('chained tree steps')) return encoder;
      if (!label.includes('from step')) gathers.push(0);
      const at = gathers.length - 1;
      const begin = encoder.beginComputePass.bind(encoder);
      encoder.beginComputePass = (pd?: GPUComputePassDescriptor) => {
        const pass = begin(pd);
        const set = pass.setBindGroup.bind(pass);
        pass.setBindGroup = ((index: number, group: GPUBindGroup | null, ...rest: never[]) => {
          if (group?.label.startsWith('embedding')) gathers[at]++;
          return (set as (...a: unknown[]) => void)(index, group, ...rest);
        }) as GPUComputePassEncoder['setBindGroup'];
        return pass;
      };
      return encoder;
    });
    const r = await speculativeGenerate(verifier, new MedusaDraft(3, 2), PROMPT, { maxTokens: 40, shape: parseTreeSpec('chain:3'), maxNodes: 3, chainSteps: 3, chainOverlap: false });
    expect(r.tokens).toEqual(plainGreedy(m, PROMPT, 40));
    expect(gathers.length, 'runs').toBeGreaterThanOrEqual(3);
    // The first run follows the root-only step (its first step encoded with its gather); every later one starts
    // from the rows the last run's chain kernel wrote.
    expect(gathers).toEqual([1, ...gathers.slice(1).map(() => 0)]);
  }, 120_000);
});
