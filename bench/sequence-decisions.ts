// One sequence's cost-aware decisions, traced (bench/batch-decisions.ts's TracedPolicy): each decision's option, its
// tokens and its ms from the choice to the record, with the verifier's host split for the tree steps in it (to the
// submit, of it uploads and queue.submit, waiting for the readback). Where a tree decision right after a plain run
// costs more than one after a tree, auto rates the tree by its worst step.
//
//   npx tsx bench/sequence-decisions.ts [--tokens 128] [--source adaptive,ngram] [--rounds 1] [--auto-only] [--reentry both] [--share 0.1 | --tree-steps 4 | --no-wait | --no-plain-ahead]
//   npx tsx bench/sequence-decisions.ts --model DIR --prompt TEXT                            (a trained model)
//
// Runs per source: auto with a fresh controller, and with exploration's share of the run bounded (exploreShare, --share,
// default 0.1) — or, with --tree-steps N, with up to N steps a tree decision (ControllerOptions.treeSteps), or with
// --no-wait, trees explored before plain decoding's first rate (ControllerOptions.waitForPlain false), or with
// --no-plain-ahead, each plain decision drained before the next is taken (AutoSpeculation.plainAhead false) — in turn for
// --rounds; unless --auto-only, plain (16 tokens) and `chain:1` once, in turn; `chain:1` alone; plain and the
// source's largest tree in turn; that tree alone. Greedy; every output is checked against plain decoding's.
import { getDevice } from '../src/runtime/dawn.ts';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { autoSpeculation, autoTrees, treeLabel } from '../src/speculative/auto-trees.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { GpuPlainDecoder } from '../src/speculative/plain-runs.ts';
import { FixedSchedule, formatPolicySummary, type ControllerOptions, type SpeculationPolicy } from '../src/speculative/speculation-controller.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { TracedPolicy, type TracedDecision } from './batch-decisions.ts';
import { adapterHeader, flagValue, runIfMain, writeReport } from './script.ts';
import { plainBaseline, speculationTarget, targetPrompts, warmer } from './speculation-target.ts';

const NODES = 15;
const PLAIN_TOKENS = 16;
const WARM_MS = 300;

interface RunFigure {
  readonly name: string;
  readonly tokensPerS: number;
  readonly speedup: number;
  readonly identical: boolean;
  readonly auto: string;
  /** Tree decisions right after a plain one, and after a tree: their mean ms and tokens. */
  readonly treeAfterPlain?: { decisions: number; ms: number; tokens: number };
  readonly treeAfterTree?: { decisions: number; ms: number; tokens: number };
  readonly decisions: readonly TracedDecision[];
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const gpu = await getDevice();
  const tokens = Number(flagValue(args, '--tokens') ?? (gpu.isSoftware ? 32 : 128));
  const sources = (flagValue(args, '--source') ?? 'adaptive,ngram').split(',');
  const rounds = Number(flagValue(args, '--rounds') ?? 1);
  const onlyAuto = args.includes('--auto-only');
  // --reentry both: each run with and without the re-entering step encoded during plain runs (verifier.reentersAhead).
  const reentries = flagValue(args, '--reentry') === 'both' ? [true, false] : [true];
  const target = await speculationTarget(gpu, args, 'sequence-decisions-target');
  const { config, variant, weights, model, tokenizer: tok } = target;
  const sizes = [...new Set(sources.flatMap((s) => autoTrees(s, NODES).map((t) => t.maxNodes + 1)))];
  const verifier = await GpuTreeVerifier.create(model, variant.compiled, weights, { maxNodes: NODES + 1, ownsModel: true, sizes });
  const log = (s: string) => console.log(s);
  log(`one sequence's decisions on ${gpu.adapterName}: ${target.source}, ${config.numLayers} layers, hidden ${config.hiddenSize}, ${tokens} new tokens, ≤ ${NODES} nodes`);
  const figures: RunFigure[] = [];
  try {
    const text = flagValue(args, '--prompt');
    const prompt = text !== undefined ? tok.encode(text) : targetPrompts([], target, 1)[0];
    const warm = warmer(gpu, WARM_MS);
    const baseline = await plainBaseline(gpu, target, [prompt], tokens, warm);
    const { tokensPerS: plainTps, runs: plainRuns } = baseline;
    const plain = baseline.tokens[0];
    log(`plain generate: ${plainTps.toFixed(1)} tokens/s (median of ${plainRuns.length})`);
    await verifier.prepare();
    const probe = () => {
      const t = verifier.stepTimes;
      return { steps: t.steps, encodeMs: t.encodeMs, uploadMs: t.uploadMs, submitMs: t.submitMs, waitMs: t.waitMs, ahead: t.ahead.used };
    };

    for (const source of sources) {
      const trees = autoTrees(source, NODES);
      const labels = trees.map(treeLabel);
      const largest = trees.length;
      const draft = () => (source === 'adaptive' ? new AdaptiveDraft(0) : new NgramDraft());
      let plainDecoder = new GpuPlainDecoder(verifier, { temperature: 0 });
      const generate = (policy: SpeculationPolicy, plainAhead = true) => {
        plainDecoder = new GpuPlainDecoder(verifier, { temperature: 0 });
        return speculativeGenerate(verifier, draft(), prompt, {
          maxTokens: tokens, shape: parseTreeSpec('chain:1'), maxNodes: NODES,
          auto: { ...autoSpeculation(trees, plainDecoder), policy, plainAhead },
        });
      };
      const autoOf = (opts: Omit<ControllerOptions, 'trees'> = {}) => () => autoSpeculation(trees, new GpuPlainDecoder(verifier, { temperature: 0 }), opts).policy;
      const autos: [string, () => SpeculationPolicy, boolean?][] = [];
      const treeSteps = flagValue(args, '--tree-steps');
      const share = Number(flagValue(args, '--share') ?? 0.1);
      for (let round = 1; round <= rounds; round++) {
        const tag = rounds > 1 ? ` (round ${round})` : '';
        const other: [string, () => SpeculationPolicy, boolean?] = args.includes('--no-wait')
          ? [`auto, fresh, trees not waiting for plain's first rate${tag}`, autoOf({ waitForPlain: false })]
          : args.includes('--no-plain-ahead')
            ? [`auto, fresh, each plain decision drained before the next${tag}`, autoOf(), false]
            : treeSteps
            ? [`auto, fresh, up to ${treeSteps} steps a tree decision${tag}`, autoOf({ treeSteps: Number(treeSteps) })]
            : [`auto, fresh, exploration's share ${share}${tag}`, autoOf({ exploreShare: share })];
        autos.push([`auto, fresh${tag}`, autoOf()], other);
      }
      const runs: [string, () => SpeculationPolicy, boolean?][] = [
        ...autos,
        [`plain ${PLAIN_TOKENS} then ${labels[0]} once, in turn`, () => new FixedSchedule(labels, [0, 1], PLAIN_TOKENS)],
        [`${labels[0]} alone`, () => new FixedSchedule(labels, [1], PLAIN_TOKENS)],
        [`plain ${PLAIN_TOKENS} then ${labels[largest - 1]} once, in turn`, () => new FixedSchedule(labels, [0, largest], PLAIN_TOKENS)],
        [`${labels[largest - 1]} alone`, () => new FixedSchedule(labels, [largest], PLAIN_TOKENS)],
      ];
      for (const [name, policy, reentry, plainAhead] of (onlyAuto ? autos : runs).flatMap(([n, p, a]) => reentries.map((on) => [n, p, on, a ?? true] as const))) {
        verifier.reentersAhead = reentry;
        await warm(() => generate(policy(), plainAhead));
        const traced = new TracedPolicy(policy(), probe);
        const r = await generate(traced, plainAhead);
        const tps = r.decodeTokensPerS ?? NaN;
        const after = (plainBefore: boolean) => {
          const ds = traced.decisions.filter((d, i) => d.label !== 'plain' && i > 0 && (traced.decisions[i - 1].label === 'plain') === plainBefore);
          return ds.length ? { decisions: ds.length, ms: ds.reduce((n, d) => n + d.ms, 0) / ds.length, tokens: ds.reduce((n, d) => n + d.tokens, 0) / ds.length } : undefined;
        };
        const fig: RunFigure = {
          name: `${source}: ${name}${reentries.length > 1 ? (reentry ? ', re-entry encoded ahead' : ', no re-entry ahead') : ''}`, tokensPerS: tps, speedup: tps / plainTps, identical: r.tokens.join(',') === plain.join(','),
          auto: formatPolicySummary(r.policy ?? []), ...(after(true) && { treeAfterPlain: after(true) }), ...(after(false) && { treeAfterTree: after(false) }),
          decisions: traced.decisions,
        };
        figures.push(fig);
        const fmt = (x?: { decisions: number; ms: number; tokens: number }) => (x ? `${x.ms.toFixed(3)} ms, ${x.tokens.toFixed(2)} tokens (${x.decisions} decisions)` : '—');
        log(`${fig.name}: ${tps.toFixed(1)} tokens/s, ${fig.speedup.toFixed(2)}× plain, identical ${fig.identical}`);
        log(`  host split: ${r.decodeMs.toFixed(2)} ms decoding, of it plain decisions ${r.plainMs.toFixed(2)}, tree drafting ${r.draftMs.toFixed(2)}, tree verification ${r.verifyMs.toFixed(2)}, the policy's calls ${r.policyMs.toFixed(2)}`);
        log(`  a tree decision after plain: ${fmt(fig.treeAfterPlain)}; after a tree: ${fmt(fig.treeAfterTree)}`);
        log(`  ${fig.auto}`);
        const c = (d: TracedDecision) => (d.counted && d.counted.steps ? ` [enc ${d.counted.encodeMs.toFixed(3)} upl ${d.counted.uploadMs.toFixed(3)} sub ${d.counted.submitMs.toFixed(3)} wait ${d.counted.waitMs.toFixed(3)}${d.counted.ahead ? ' ahead' : ''}]` : '');
        const runs = plainDecoder.runs;
        log(`  plain runs (flush / first read / whole ms, tokens, GPU ms (— : no step timestamps, as generate's), recordings): ${runs.slice(0, 16).map((x) => `${x.flushMs.toFixed(2)}/${x.firstMs.toFixed(2)}/${x.ms.toFixed(2)} ${x.tokens}t ${x.gpuMs > 0 ? x.gpuMs.toFixed(2) : '—'} ${x.recordings}`).join(' | ')}`);
        log(`  decisions: ${traced.decisions.slice(0, 40).map((d) => `${d.label} ${d.tokens}t ${d.ms.toFixed(2)}ms${c(d)}`).join(' | ')}`);
      }
    }
    verifier.reentersAhead = true;
    if (args.includes('--json')) writeReport(flagValue(args, '--out') ?? 'bench/results', 'sequence-decisions.json', { ...adapterHeader(gpu), model: target.source, tokens, plainTokensPerS: plainTps, figures });
  } finally {
    await verifier.destroy();
  }
}

runIfMain(import.meta.url, main);
