// Speculative generation of one prompt as `linattn generate … --speculate` runs it (src/cli/generate.ts parses
// the options): the prompt decoded plainly first (the baseline, and the oracle's trajectory), then
// speculatively with the text streamed; the report gives mean accepted length, tokens/s of both and the
// speed-up. Everything that can be wrong with the draft checkpoint is checked before any output.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { isDecodable, type Program } from '../ir/types.ts';
import type { PrepareAttention } from '../model/attention-context.ts';
import { loadConfig, type ModelConfig } from '../model/config.ts';
import { cpuModel, type CpuModel } from '../model/cpu-forward.ts';
import { ModelFileError } from '../model/errors.ts';
import { generateCpu, generateGpu, TextStream, type GenerateResult } from '../model/generate.ts';
import { GpuModel } from '../model/gpu-model.ts';
import type { SamplingOptions } from '../model/sampling.ts';
import type { Tokenizer } from '../model/tokenizer.ts';
import { loadModelVariant, type ModelVariant } from '../model/variant.ts';
import { loadWeights, type ModelWeights } from '../model/weights.ts';
import type { Gpu } from '../runtime/device.ts';
import { CpuTreeVerifier, recurrentAttention } from './cpu-verifier.ts';
import type { DraftSource } from './draft.ts';
import { speculativeGenerate, type SpeculativeResult, type TreeOption } from './generate.ts';
import type { BatchCredit } from './generate-batch.ts';
import { GpuTreeVerifier } from './gpu-verifier.ts';
import { MAX_TOP_K } from './gpu-heads.ts';
import { MedusaDraft } from './medusa-draft.ts';
import { ModelDraft } from './model-draft.ts';
import { NgramDraft } from './ngram-draft.ts';
import { LookupChainDraft } from './lookup-chain.ts';
import { AdaptiveDraft } from './adaptive-draft.ts';
import { OracleDraft } from './oracle-draft.ts';
import { autoChainSteps, autoSpeculation, autoTrees, treeLabel } from './auto-trees.ts';
import { autoStatePath, keptController, keptLine, writeAutoState } from './auto-state-cache.ts';
import { GpuPlainDecoder, VerifierPlainDecoder, type PlainDecoder } from './plain-runs.ts';
import { FixedSchedule, formatPolicySummary } from './speculation-controller.ts';
import { candidatesPerNode, type TreeShape } from './tree-spec.ts';
import type { TreeVerifier } from './verifier.ts';

export interface SpeculateOptions {
  /** 'ngram' | 'lookup' | 'adaptive' | 'medusa' | 'oracle' | 'draft:DIR' as given. */
  readonly source: string;
  readonly shape: TreeShape;
  /** Draft nodes per step, the root excluded (auto: of the largest tree). */
  readonly maxNodes: number;
  /** --tree auto (the default): a controller picks plain decoding or one of autoTrees() step by step. */
  readonly auto?: boolean;
  /** --chain-steps R: greedy Medusa tree steps chained R per submit on the GPU (SpeculativeOptions.chainSteps). */
  readonly chainSteps?: number;
  /**
   * --auto-state FILE: auto's measurements read from FILE when it exists (the controller starts from them: nothing
   * it measured is explored again) and written back after the run, so repeated generations pay exploration once.
   * Absent, on a hardware GPU, a file in the cache keyed by the model, draft, adapter and options (auto-state-cache.ts);
   * 'none': a fresh controller, nothing kept.
   */
  readonly autoState?: string;
  /** --explore-share X: auto's ControllerOptions.exploreShare (default 1: unbounded). */
  readonly exploreShare?: number;
  /** --batch-credit: what a batch's auto credits a decision with (BatchAuto.credit; default the slower half). */
  readonly batchCredit?: BatchCredit;
}

/** What --tree names in the report. */
function treeName(args: SpeculateOptions): string {
  return (args.auto ? 'auto' : args.shape.spec) + (args.chainSteps ? `, --chain-steps ${args.chainSteps}` : '');
}

export interface SpeculativeRunContext {
  readonly args: SpeculateOptions;
  readonly device: 'gpu' | 'cpu';
  readonly config: ModelConfig;
  readonly variant: ModelVariant;
  readonly weights: ModelWeights;
  readonly tokenizer: Tokenizer;
  readonly ids: readonly number[];
  readonly maxTokens: number;
  readonly sampling: SamplingOptions;
  readonly seed: number;
  readonly stdout: (s: string) => void;
  readonly stderr: (s: string) => void;
  /** GPU only: the device and a way to make a variant's attention layers. */
  readonly gpu?: Gpu;
  /**
   * Run plain decoding and each tree (--tree auto: every option) once, untimed, before their timed runs (default: on a
   * hardware GPU; `linattn generate` reads LINATTN_SPECULATE_WARMUP=0|1).
   */
  readonly warmUp?: boolean;
  readonly prepareAttention?: PrepareAttention;
}

interface DraftCheckpoint {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly variant: ModelVariant;
  readonly weights: ModelWeights;
}

/** Loads draft:DIR and checks it shares the target's tokenizer and vocabulary and can be decoded. */
export function loadDraftCheckpoint(spec: string, target: ModelConfig): DraftCheckpoint {
  const dir = resolve(spec.slice('draft:'.length));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ModelFileError(dir, 'directory', 'draft model directory not found');
  const config = loadConfig(join(dir, 'config.json'));
  if (config.vocabSize !== target.vocabSize) {
    throw new ModelFileError(config.file, 'vocab_size', `the draft model has vocab_size ${config.vocabSize}, the target ${target.vocabSize} (${target.file}): a draft must share the target's tokenizer and vocabulary`);
  }
  const same =
    config.tokenizer.kind === target.tokenizer.kind &&
    (config.tokenizer.kind === 'bytes' || readFileSync(config.tokenizer.path, 'utf8') === readFileSync((target.tokenizer as { path: string }).path, 'utf8'));
  if (!same) throw new ModelFileError(config.file, 'tokenizer', `the draft model's tokenizer differs from the target's (${target.file}): a draft must share the target's tokenizer`);
  for (const field of ['bosTokenId', 'eosTokenId'] as const) {
    if (config[field] !== target[field]) throw new ModelFileError(config.file, field === 'bosTokenId' ? 'bos_token_id' : 'eos_token_id', `the draft's ${config[field]} differs from the target's ${target[field]}`);
  }
  const variant = loadModelVariant(config);
  checkDecodable(variant.compiled, 'the draft model');
  return { dir, config, variant, weights: loadWeights(config, join(dir, 'model.safetensors'), variant.params) };
}

/** The draft --speculate SOURCE names, for one sequence (`plain`: its plain decoding, the oracle's; draft:DIR: its verifier). */
export function draftFor(
  source: string,
  o: { config: ModelConfig; candidates: number; maxNodes: number; seed: number; prompt: readonly number[]; plain: readonly number[]; sampling: SamplingOptions; draftVerifier?: TreeVerifier },
): DraftSource {
  if (source === 'ngram') return new NgramDraft();
  if (source === 'lookup') return new LookupChainDraft({ length: o.maxNodes });
  if (source === 'adaptive') return new AdaptiveDraft(o.seed);
  if (source === 'medusa') return new MedusaDraft(o.config.medusa!.numHeads, o.candidates);
  if (source === 'oracle') return new OracleDraft(o.prompt, o.plain, o.config.vocabSize);
  if (!o.draftVerifier) throw new Error(`--speculate ${source}: no draft model loaded`);
  return new ModelDraft(source, o.draftVerifier, o.sampling, o.seed);
}

/** The model can be decoded, and has Medusa heads where --speculate medusa asks for them. */
export function checkSpeculatable(source: string, variant: ModelVariant, config: ModelConfig): void {
  checkDecodable(variant.compiled, 'the model');
  if (source === 'medusa' && !config.medusa) {
    throw new ModelFileError(config.file, 'medusa', '--speculate medusa needs Medusa heads: "medusa": {"num_heads": M} in config.json and medusa.N.{proj,lm_head}.weight in model.safetensors');
  }
}

export function checkDecodable(program: Program, what: string): void {
  if (isDecodable(program)) return;
  const t = program.terms.find((x) => x.noncausal)!;
  throw new Error(`--speculate: ${what}'s variant ${program.name} (${program.file}) has the noncausal term ${t.name}; it cannot be decoded, so it cannot be speculated`);
}

/** Plain, then speculative generation of one prompt; the speculative text goes to stdout. */
export async function runSpeculativeGenerate(c: SpeculativeRunContext): Promise<void> {
  const { args, config } = c;
  // Checks first: nothing is printed before they pass.
  checkSpeculatable(args.source, c.variant, config);
  const draftCheckpoint = args.source.startsWith('draft:') ? loadDraftCheckpoint(args.source, config) : undefined;
  const trees = args.auto
    ? autoTrees(args.source, args.maxNodes, args.source === 'medusa' ? config.medusa!.numHeads : Infinity, autoChainSteps(args.source, c.device, c.sampling))
    : [{ shape: args.shape, maxNodes: args.maxNodes }];
  const k = Math.max(...trees.map((t) => candidatesPerNode(t.shape)));
  const verifierNodes = args.maxNodes + 1;
  // Each tree runs unpadded: static trees fill their size, dynamic ones are planned at their budget.
  const sizes = [...new Set(trees.map((t) => (t.shape.kind === 'static' ? t.shape.paths.length : t.maxNodes) + 1))];
  let plainDecoder: PlainDecoder | undefined;
  // Untimed first runs of plain decoding and of each tree, on a hardware GPU unless told (SpeculativeRunContext.warmUp).
  const warmUp = c.warmUp ?? (c.device === 'gpu' && !c.gpu!.isSoftware);

  const owned: { destroy(): Promise<void> | void }[] = [];
  try {
    let target: TreeVerifier;
    let plain: GenerateResult;
    let where: string;
    let makeDraftVerifier: (() => Promise<TreeVerifier>) | undefined;
    if (c.device === 'gpu') {
      const gpu = c.gpu!;
      const factoryFor = (cfg: ModelConfig, v: ModelVariant) => c.prepareAttention!({ gpu, config: cfg, program: v.compiled, source: v.program });
      // The verifier uploads the checkpoint's Medusa heads beside the model: the model's fit check counts them.
      const model = await GpuModel.create(gpu, config, c.weights, await factoryFor(config, c.variant), { withMedusa: true });
      const verifier = await GpuTreeVerifier.create(model, c.variant.compiled, c.weights, { maxNodes: verifierNodes, ownsModel: true, sizes });
      owned.push(verifier);
      target = verifier;
      plainDecoder = new GpuPlainDecoder(verifier, c.sampling);
      if (draftCheckpoint) {
        const d = draftCheckpoint;
        makeDraftVerifier = async () => {
          const m = await GpuModel.create(gpu, d.config, d.weights, await factoryFor(d.config, d.variant), { withMedusa: true });
          return GpuTreeVerifier.create(m, d.variant.compiled, d.weights, { maxNodes: verifierNodes, ownsModel: true, sizes });
        };
      }
      // Plain decoding is warmed as the trees are below (its decode kernels build at their first use): both figures
      // the command prints are of warm work.
      // The baseline is what `linattn generate` runs: no step timestamps (this model keeps them for the tree steps).
      if (warmUp) await generateGpu(model, c.tokenizer, [c.ids], { maxTokens: Math.min(c.maxTokens, 32), sampling: c.sampling, seed: c.seed, stepTimes: false });
      plain = await generateGpu(model, c.tokenizer, [c.ids], { maxTokens: c.maxTokens, sampling: c.sampling, seed: c.seed, stepTimes: false });
      where = gpu.adapterName;
    } else {
      const cpu: CpuModel = cpuModel(config, c.weights);
      target = new CpuTreeVerifier(cpu, c.variant.compiled, verifierNodes);
      plainDecoder = new VerifierPlainDecoder(target, c.sampling);
      if (draftCheckpoint) {
        const d = draftCheckpoint;
        makeDraftVerifier = async () => new CpuTreeVerifier(cpuModel(d.config, d.weights), d.variant.compiled, verifierNodes);
      }
      plain = generateCpu(cpu, recurrentAttention(cpu, c.variant.compiled), c.tokenizer, [c.ids], { maxTokens: c.maxTokens, sampling: c.sampling, seed: c.seed });
      where = 'CPU float64';
    }

    let dv: TreeVerifier | undefined;
    if (args.source.startsWith('draft:')) {
      if (k > MAX_TOP_K) throw new Error(`a draft model proposes at most ${MAX_TOP_K} candidates per node, the tree asks for ${k}`);
      dv = await makeDraftVerifier!();
      owned.push(dv);
      await dv.prepare?.((c.sampling.temperature ?? 0) > 0 ? {} : { topK: k });
    }
    const draftOf = (): DraftSource =>
      draftFor(args.source, { config, candidates: k, maxNodes: args.maxNodes, seed: c.seed, prompt: c.ids, plain: plain.tokens[0], sampling: c.sampling, ...(dv && { draftVerifier: dv }) });
    const draft = draftOf();
    await target.prepare?.(args.source === 'medusa' ? { medusaTopK: k } : {});
    const eos = c.tokenizer.eos;
    const bounds = {
      ...(eos !== undefined && { eos }),
      ...(config.maxPositionEmbeddings !== undefined && { maxPosition: config.maxPositionEmbeddings }),
    };
    // On a hardware GPU, first an untimed generation that runs each tree once (--tree auto: a fixed schedule over its
    // options), so that the pipelines, chained-run kernels and recorded steps a tree builds at its first use are
    // charged neither to the timed run's speed nor, under auto, to its first decisions, by which a fresh controller
    // rates the options (H200 call 147: the sparse tree, explored first, rated 200–1,600 tokens/s where it runs
    // ~5,000 warm; the command's speed-up 0.24–1.48× against 1.58–2.61× after this, call 148). Its own draft; the
    // output is discarded.
    if (warmUp) {
      await speculativeGenerate(target, draftOf(), c.ids, {
        maxTokens: Math.min(c.maxTokens, 32 * trees.length), shape: args.shape, maxNodes: args.maxNodes, sampling: c.sampling, seed: c.seed, ...bounds,
        ...(args.auto && { auto: { policy: new FixedSchedule(trees.map(treeLabel), trees.map((_, i) => i + 1), 16), trees, plain: plainDecoder! } }),
        ...(args.chainSteps !== undefined && { chainSteps: args.chainSteps }),
      });
    }

    // --tree auto keeps its measurements between runs: in --auto-state FILE, or by default on a hardware GPU in the
    // cache (auto-state-cache.ts; --auto-state none starts afresh and keeps nothing)
    const statePath = !args.auto || args.autoState === 'none'
      ? undefined
      : args.autoState ?? (c.device === 'gpu' && !c.gpu!.isSoftware ? autoStatePath({ files: modelFiles(config, draftCheckpoint), source: args.source, adapter: c.gpu!.adapterName, labels: ['plain', ...trees.map(treeLabel)] }) : undefined);
    const kept = args.auto ? keptController(statePath, args.autoState !== undefined, (from) => autoSpeculation(trees, plainDecoder!, { ...(from && { from }), ...(args.exploreShare !== undefined && { exploreShare: args.exploreShare }) })) : undefined;
    const auto = kept?.controller;
    const stream = new TextStream(c.tokenizer);
    const result: SpeculativeResult = await speculativeGenerate(target, draft, c.ids, {
      maxTokens: c.maxTokens, shape: args.shape, maxNodes: args.maxNodes, sampling: c.sampling, seed: c.seed, ...bounds,
      ...(auto && { auto }),
      ...(args.chainSteps !== undefined && { chainSteps: args.chainSteps }),
      onTokens: (tokens) => {
        for (const id of tokens) {
          if (id === eos) continue;
          const text = stream.push(id);
          if (text) c.stdout(text);
        }
      },
    });
    const rest = stream.flush();
    if (rest) c.stdout(rest);
    c.stdout('\n');
    if (auto && statePath !== undefined) writeAutoState(statePath, auto.policy.state());
    c.stderr(formatSpeculativeReport(args, result, plain, where, draft.name));
    if (statePath !== undefined) c.stderr(keptLine(statePath, kept!.started));
  } finally {
    for (const o of owned.reverse()) await o.destroy();
  }
}

export function formatSpeculativeReport(args: SpeculateOptions, r: SpeculativeResult, plain: GenerateResult, where: string, draft: string): string {
  const spec = r.decodeTokensPerS;
  const base = plain.decodeTokensPerS;
  const speedup = spec !== undefined && base !== undefined ? `${(spec / base).toFixed(2)}×` : '—';
  const same = r.tokens.join(',') === plain.tokens[0].join(',');
  const gpu = r.gpuMsPerStep.length ? `, GPU ${median(r.gpuMsPerStep).toFixed(3)} ms per tree step` : '';
  return (
    `speculative (${draft}, --tree ${treeName(args)}, --max-nodes ${args.maxNodes}; ${where}): ${r.tokens.length} tokens in ${r.steps} verification steps, ` +
    `mean accepted length ${r.meanAccepted.toFixed(2)} tokens/step (mean tree ${r.meanTreeNodes.toFixed(1)} draft nodes), ` +
    `${spec === undefined ? '—' : spec.toFixed(1)} tokens/s (draft ${r.draftMs.toFixed(0)} ms, verify ${r.verifyMs.toFixed(0)} ms${gpu})\n` +
    `plain decoding, same run: ${plain.tokens[0].length} tokens, ${base === undefined ? '—' : base.toFixed(1)} tokens/s; speed-up ${speedup}; ` +
    `output ${same ? 'identical to' : 'differs from'} plain decoding${same ? '' : ' (expected only when sampling with a sampled draft, or at a float32 near-tie)'}\n` +
    (r.policy ? `auto: ${formatPolicySummary(r.policy)}\n` : '')
  );
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The files a model's measurements are of (auto-state-cache.ts): its config and weights, a draft model's too. */
export function modelFiles(config: ModelConfig, draft?: DraftCheckpoint): string[] {
  const dirs = [dirname(config.file), ...(draft ? [draft.dir] : [])];
  return dirs.flatMap((d) => [join(d, 'config.json'), join(d, 'model.safetensors')]);
}
