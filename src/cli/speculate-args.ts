// --speculate, --tree and --max-nodes of `linattn generate` (docs/speculative.md) → SpeculateOptions, with
// every mistake a usage error before anything is loaded. Without --tree (or with --tree auto) the run is
// cost-aware: it measures plain decoding and a few trees as it goes and uses the fastest
// (src/speculative/speculation-controller.ts). Its plain option reads back after every run (16 tokens, doubling
// to 128 while plain wins), so where it settles on plain decoding it runs below generate's pipelined loop (0.37–0.67×
// with runs of 16 on the H200, docs/speculative.md).
import { BATCH_CREDITS, type BatchCredit } from '../speculative/batch-credit.ts';
import { MAX_TOP_K } from '../speculative/gpu-heads.ts';
import { MAX_CHAIN_STEPS } from '../speculative/gpu-chain.ts';
import type { SpeculateOptions } from '../speculative/run-speculative.ts';
import { parseTreeSpec, TreeSpecError, type TreeShape } from '../speculative/tree-spec.ts';
import { str, UsageError, type Values } from './args.ts';

/** Draft nodes per step of a dynamic tree when --max-nodes is not given. */
const DEFAULT_MAX_NODES = 16;

/** undefined without --speculate. */
export function parseSpeculateArgs(values: Values): SpeculateOptions | undefined {
  const source = str(values, 'speculate');
  const tree = str(values, 'tree');
  const maxRaw = str(values, 'max-nodes');
  const chainRaw = str(values, 'chain-steps');
  const autoState = str(values, 'auto-state');
  const shareRaw = str(values, 'explore-share');
  const creditRaw = str(values, 'batch-credit');
  if (source === undefined) {
    if (tree !== undefined || maxRaw !== undefined || chainRaw !== undefined || autoState !== undefined || shareRaw !== undefined || creditRaw !== undefined) {
      throw new UsageError('--tree, --max-nodes, --chain-steps, --auto-state, --explore-share and --batch-credit need --speculate ngram|lookup|adaptive|medusa|oracle|draft:DIR');
    }
    return undefined;
  }
  if (!(['ngram', 'lookup', 'adaptive', 'medusa', 'oracle'].includes(source) || /^draft:.+/.test(source))) {
    throw new UsageError(`unknown --speculate source ${JSON.stringify(source)} (ngram, lookup, adaptive, medusa, oracle or draft:DIR)`);
  }
  let maxNodes: number | undefined;
  if (maxRaw !== undefined) {
    maxNodes = Number(maxRaw);
    if (!/^\d+$/.test(maxRaw.trim()) || maxNodes < 1) throw new UsageError(`--max-nodes must be a positive integer, got ${JSON.stringify(maxRaw)}`);
  }
  const auto = tree === undefined || tree.trim() === 'auto';
  let shape: TreeShape;
  try {
    // auto: the source's own dynamic tree stands for the largest option (candidates per node, the verifier's size).
    shape = parseTreeSpec(auto ? (source === 'oracle' || source === 'lookup' ? `chain:${maxNodes ?? DEFAULT_MAX_NODES}` : source === 'adaptive' ? 'best:4' : 'top:4') : tree);
  } catch (e) {
    if (e instanceof TreeSpecError) throw new UsageError(e.message);
    throw e;
  }
  const nodes = maxNodes ?? (shape.kind === 'static' ? shape.paths.length : DEFAULT_MAX_NODES);
  if (shape.kind === 'static' && shape.paths.length > nodes) {
    throw new UsageError(`--tree ${shape.spec} has ${shape.paths.length} draft nodes, more than --max-nodes ${nodes} (the size the verifier is compiled for)`);
  }
  if (shape.kind !== 'static' && shape.width > MAX_TOP_K) throw new UsageError(`--tree ${shape.spec}: at most ${MAX_TOP_K} candidates per ${shape.kind === 'best' ? 'node' : 'level'}`);
  if (shape.kind === 'static' && Math.max(...shape.paths.flat()) >= MAX_TOP_K) throw new UsageError(`--tree ${shape.spec}: ranks must be below ${MAX_TOP_K}`);
  // A sampled draft model's candidates are draws that the rejection rule needs kept or dropped blindly.
  if (shape.kind === 'best' && source.startsWith('draft:') && Number(str(values, 'temperature') ?? 0) > 0) {
    throw new UsageError(`--tree ${shape.spec} places a sampled draft's candidates by their values, which the rejection rule forbids; with --temperature > 0 a draft model takes top:K or a static tree`);
  }
  let chainSteps: number | undefined;
  if (chainRaw !== undefined) {
    chainSteps = Number(chainRaw);
    if (!/^\d+$/.test(chainRaw.trim()) || chainSteps < 1 || chainSteps > MAX_CHAIN_STEPS) throw new UsageError(`--chain-steps must be an integer in 1..${MAX_CHAIN_STEPS}, got ${JSON.stringify(chainRaw)}`);
    const isChain = shape.kind === 'static' && shape.paths.every((p) => p.every((r) => r === 0));
    if (auto || !((source === 'medusa' && shape.kind === 'static') || (source === 'lookup' && isChain))) {
      throw new UsageError('--chain-steps needs --speculate medusa and a static --tree (chain:N or a list of paths), or --speculate lookup and --tree chain:N');
    }
    if (Number(str(values, 'temperature') ?? 0) > 0) throw new UsageError('--chain-steps is greedy only (--temperature 0)');
    if (str(values, 'device') === 'cpu') throw new UsageError('--chain-steps needs --device gpu');
  }
  if (autoState !== undefined && (!auto || autoState.trim() === '')) throw new UsageError('--auto-state FILE keeps --tree auto\'s measurements: it needs --tree auto (the default) and a file name');
  let exploreShare: number | undefined;
  if (shareRaw !== undefined) {
    exploreShare = Number(shareRaw);
    if (shareRaw.trim() === '' || !(exploreShare > 0 && exploreShare <= 1)) throw new UsageError(`--explore-share must be a number in (0, 1], got ${JSON.stringify(shareRaw)}`);
    if (!auto) throw new UsageError('--explore-share bounds --tree auto\'s exploration: it needs --tree auto (the default)');
  }
  if (creditRaw !== undefined) {
    if (!(BATCH_CREDITS as readonly string[]).includes(creditRaw)) throw new UsageError(`--batch-credit must be ${BATCH_CREDITS.join(', ')}, got ${JSON.stringify(creditRaw)}`);
    if (!auto) throw new UsageError('--batch-credit is what --tree auto credits a batch\'s decisions with: it needs --tree auto (the default)');
    if (((values.prompt as string[] | undefined) ?? []).length < 2) throw new UsageError('--batch-credit is about a batch: it needs several --prompt');
  }
  return {
    source, shape, maxNodes: nodes, auto, ...(chainSteps !== undefined && { chainSteps }), ...(autoState !== undefined && { autoState }),
    ...(exploreShare !== undefined && { exploreShare }), ...(creditRaw !== undefined && { batchCredit: creditRaw as BatchCredit }),
  };
}
