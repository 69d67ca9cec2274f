// Plain decoding inside a speculative run against `linattn generate`'s own loop, same model, same prompt.
// `--tree auto` switches to plain runs when speculation does not pay (src/speculative/plain-runs.ts); call 47
// read its 128-token plain runs at ~2,700 tokens/s on the trained nano model where generate's plain decoding of
// the same prompt ran 3,700–4,800. This times both side by side, rounds alternating: generateGpu, then
// speculativeGenerate with a schedule of plain runs only (FixedSchedule, runs of R tokens) — the same decode steps
// plus what each plain decision adds (the verifier's pending commit, the first step's uploaded root, the readback
// that ends the run) — and prints tokens/s and the cost a decision adds beyond generate's per-token time.
//
// With --after-chain, each plain run follows a chained run of prompt-lookup trees (chain:3, 4 steps a submit), as
// `--tree auto`'s plain runs do when it switches: the plain decisions' time then includes finishing the chain; with
// --after-tree, one step of an n-gram chain:3 tree (the table drafts' switch). Plain decisions in a row go on in one
// stream, the next taken ahead (AutoSpeculation.plainAhead); --plain-ahead both times each run length with and
// without, off without. Each plain run of the decoder (a stream) prints its median host ms to the pending commit
// applied, to its first tokens read, and its GPU ms a token.
//
//   npx tsx bench/plain-in-speculation.ts [--model DIR | --full] [--tokens N] [--runs 16,128] [--rounds N] [--after-chain | --after-tree] [--plain-ahead both|off]
//   (default: the nano config of examples/models/nano with random weights, prompt lookup as the draft; --full: bench/decode.ts's
//   12-layer hidden-768 shape, random weights)
import { join } from 'node:path';
import { loadConfig, REPO_ROOT } from '../src/model/config.ts';
import { generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { loadModelDir } from '../src/model/model-dir.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { median } from '../src/runtime/timing.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { LookupChainDraft } from '../src/speculative/lookup-chain.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { GpuPlainDecoder } from '../src/speculative/plain-runs.ts';
import { FixedSchedule } from '../src/speculative/speculation-controller.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { FULL, silentTokenizer } from './decode.ts';
import { adapterHeader, flagValue, runIfMain, writeReport } from './script.ts';
import { benchConfig } from './speculative.ts';

const PROMPT = 'And it came to pass, when the king had heard the words of the book of the law, that he rent his clothes.';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const gpu = await getDevice();
  const dir = flagValue(args, '--model');
  const tokens = Number(flagValue(args, '--tokens') ?? (gpu.isSoftware ? 24 : 512));
  const rounds = Number(flagValue(args, '--rounds') ?? (gpu.isSoftware ? 1 : 5));
  const runs = (flagValue(args, '--runs') ?? (gpu.isSoftware ? '4,16' : '16,128')).split(',').map(Number);
  const loaded = dir
    ? loadModelDir(dir)
    : args.includes('--full')
      ? (() => {
          const config = benchConfig(FULL, 0, 'plain-in-speculation-full');
          const variant = loadModelVariant(config);
          return { config, variant, weights: randomWeights(config, 1, variant.params) };
        })()
      : (() => {
        const config = loadConfig(join(REPO_ROOT, 'examples', 'models', 'nano', 'config.json'));
        const variant = loadModelVariant(config);
        return { config, variant, weights: randomWeights(config, 1, variant.params) };
      })();
  const { config, variant, weights } = loaded;
  if (config.tokenizer.kind !== 'bytes') throw new Error(`${dir}: this bench encodes its prompt as bytes; the model has a tokenizer.json`);
  const bytes = new ByteTokenizer({ bos: 256 });
  const prompt = [256, ...bytes.encode(PROMPT)];
  // The 12-layer shape's vocabulary is larger than the bytes': its generations are not decoded.
  const tok = args.includes('--full') && !dir ? silentTokenizer(config.vocabSize) : bytes;
  const factory = await compiledAttentionFactory(gpu, variant.compiled, config.numHeads, config.headDim);
  const model = await GpuModel.create(gpu, config, weights, factory, { withMedusa: config.medusa !== undefined });
  const afterChain = args.includes('--after-chain');
  const afterTree = args.includes('--after-tree');
  if (afterChain && afterTree) throw new Error('plain-in-speculation: --after-chain or --after-tree, not both');
  const aheads = { both: [true, false], off: [false], on: [true] }[flagValue(args, '--plain-ahead') ?? 'on'];
  if (!aheads) throw new Error(`plain-in-speculation: --plain-ahead takes both, on or off, got ${flagValue(args, '--plain-ahead')}`);
  const tree = { shape: parseTreeSpec('chain:3'), maxNodes: 3, ...(afterChain && { chainSteps: 4 }) };
  const verifier = await GpuTreeVerifier.create(model, variant.compiled, weights, { maxNodes: 4, ownsModel: true });
  await verifier.prepare();
  const what = dir ?? (args.includes('--full') ? '12 layers, hidden 768, random weights' : 'nano config, random weights');
  console.log(`plain decoding in speculation on ${gpu.adapterName}: ${what}, ${prompt.length}-token prompt, ${tokens} tokens, ${rounds} rounds`);
  const plainOf = (r: number, plainAhead: boolean) => {
    // Step timestamps on, as on generate's side here (the model's default): each stream's GPU ms a token.
    const plain = new GpuPlainDecoder(verifier, { temperature: 0 }, { stepTimes: true });
    return { policy: new FixedSchedule([tree.shape.spec], afterChain || afterTree ? [1, 0] : [0], r), trees: [tree], plain, plainAhead };
  };
  const gen: number[] = [];
  const cases = runs.flatMap((r) => aheads.map((ahead) => ({ r, ahead })));
  const spec = cases.map(() => ({ tps: [] as number[], decisions: 0, same: true, plainMs: [] as number[], flushMs: [] as number[], firstMs: [] as number[], gpuMsPerToken: [] as number[], streams: [] as number[] }));
  let want: number[] | undefined;
  try {
    for (let i = 0; i < (gpu.isSoftware ? 0 : 3); i++) await generateGpu(model, tok, [prompt], { maxTokens: tokens }); // warm-up
    for (let round = 0; round < rounds; round++) {
      const g = await generateGpu(model, tok, [prompt], { maxTokens: tokens });
      gen.push(g.decodeTokensPerS ?? NaN);
      want = g.tokens[0];
      for (const [i, { r, ahead }] of cases.entries()) {
        const auto = plainOf(r, ahead);
        const draft = afterChain ? new LookupChainDraft({ length: tree.maxNodes }) : new NgramDraft();
        const s = await speculativeGenerate(verifier, draft, prompt, { maxTokens: tokens, shape: tree.shape, maxNodes: tree.maxNodes, sampling: { temperature: 0 }, seed: 0, auto });
        spec[i].tps.push(s.decodeTokensPerS ?? NaN);
        spec[i].decisions = s.policy![0].decisions;
        // The plain decisions' own time per token (the policy's clock: the chain's last readback included after a chain).
        spec[i].plainMs.push(s.policy![0].ms / Math.max(1, s.policy![0].tokens));
        spec[i].flushMs.push(...auto.plain.runs.map((x) => x.flushMs));
        spec[i].firstMs.push(...auto.plain.runs.map((x) => x.firstMs));
        spec[i].gpuMsPerToken.push(...auto.plain.runs.map((x) => x.gpuMs / x.tokens));
        spec[i].streams.push(auto.plain.runs.length);
        spec[i].same &&= s.tokens.join(',') === want.join(',');
      }
    }
  } finally {
    await verifier.destroy();
  }
  const g = median(gen);
  console.log(`generate (generateGpu): ${g.toFixed(1)} tokens/s  (${gen.map((x) => x.toFixed(0)).join(' ')})`);
  const rows = cases.map(({ r, ahead }, i) => {
    const tps = median(spec[i].tps);
    // Plain decisions' ms a token beyond generate's, times the run: what a decision adds.
    const plainMsPerToken = median(spec[i].plainMs);
    const extraMs = (plainMsPerToken - 1000 / g) * r;
    const flushMs = spec[i].flushMs.length ? median(spec[i].flushMs) : NaN;
    const flushMaxMs = spec[i].flushMs.length ? Math.max(...spec[i].flushMs) : NaN;
    const firstMs = spec[i].firstMs.length ? median(spec[i].firstMs) : NaN;
    const gpuMsPerToken = spec[i].gpuMsPerToken.length ? median(spec[i].gpuMsPerToken) : NaN;
    const after = afterChain ? ' after chains' : afterTree ? ' after a tree step' : '';
    console.log(
      `plain runs of ${String(r).padStart(3)}${after}${aheads.length > 1 || !ahead ? (ahead ? ', taken ahead' : ', each drained') : ''}: ${tps.toFixed(1)} tokens/s in all (${spec[i].tps.map((x) => x.toFixed(0)).join(' ')}), ` +
        `plain decisions ${(1000 / plainMsPerToken).toFixed(1)} tokens/s (${((1000 / plainMsPerToken) / g).toFixed(2)}× generate), ${extraMs.toFixed(2)} ms more a run ` +
        `(pending commit applied in ${flushMs.toFixed(3)} ms, at most ${flushMaxMs.toFixed(3)}; first tokens read ${firstMs.toFixed(3)} ms in; GPU ${gpuMsPerToken.toFixed(4)} ms a token), ` +
        `${spec[i].decisions} plain decisions in ${median(spec[i].streams)} streams; output ${spec[i].same ? 'identical to' : 'DIFFERS from'} generate's`,
    );
    return {
      run: r, afterChain, afterTree, plainAhead: ahead, tokensPerS: tps, rounds: spec[i].tps, plainTokensPerS: 1000 / plainMsPerToken, ratio: 1000 / plainMsPerToken / g,
      decisions: spec[i].decisions, streams: median(spec[i].streams), extraMsPerRun: extraMs, flushMs, flushMaxMs, firstMs, gpuMsPerToken, same: spec[i].same,
    };
  });
  writeReport(process.env.OUT ?? 'out', 'plain-in-speculation.json', { ...adapterHeader(gpu), model: what, tokens, generate: { tokensPerS: g, rounds: gen }, rows });
  if (rows.some((r) => !r.same)) process.exitCode = 1;
}

runIfMain(import.meta.url, main, { stack: true });
