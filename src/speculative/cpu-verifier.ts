// The float64 reference of tree verification: the CPU model forward (cpuForward) over the tree's nodes as
// rows, its attention per layer the tree form of backends/cpu/tree.ts against the layer's recurrent state
// (read only), and the commit of an accepted path as recurrent steps over the nodes' q, k, v that the
// verification computed (commitPath) — the model itself is not run again. The prompt is prefilled with
// recurrent steps, so the state is the decoding state throughout.
import { createState, Recurrent, type RecurrentState } from '../../backends/cpu/recurrent.ts';
import { TreeForm, type TreeNode } from '../../backends/cpu/tree.ts';
import type { Program } from '../ir/types.ts';
import { isDecodable } from '../ir/types.ts';
import { cpuForward, cpuMedusaLogits, type CpuAttention, type CpuForwardResult, type CpuModel } from '../model/cpu-forward.ts';
import { argmax, sampleToken, type SamplingOptions } from '../model/sampling.ts';
import type { Tensor } from '../tensor.ts';
import { acceptByPicks } from './acceptance.ts';
import { checkPath, checkTree, softmax, topCandidates, variantAxisSizes, type TreeVerifier, type VerifyRequest, type VerifyResult } from './verifier.ts';

/**
 * Plain decoding's attention in float64 as recurrent steps (a CpuAttentionStep for generateCpu): each call
 * folds its tokens into the layer's state and returns their outputs — the baseline speculative runs compare with.
 */
export function recurrentAttention(model: CpuModel, program: Program): CpuAttention {
  const c = model.config;
  const sizes = variantAxisSizes(program, c.numHeads, c.headDim);
  const layers = model.weights.layers.map((l) => new Recurrent(program, l.attention as Readonly<Record<string, Tensor>>, sizes));
  const states = layers.map(() => createState());
  return recurrentSteps(layers, states);
}

function recurrentSteps(layers: readonly Recurrent[], states: readonly RecurrentState[]): CpuAttention {
  return (layer, q, k, v) => {
    const [, t, h, d] = q.shape;
    const per = h * d;
    const outs: Float64Array[] = [];
    for (let i = 0; i < t; i++) {
      const at = (x: Float64Array) => x.slice(i * per, (i + 1) * per);
      outs.push(layers[layer].step(states[layer], { q: at(q.data), k: at(k.data), v: at(v.data) }));
    }
    const e = outs[0].length / h;
    const o = new Float64Array(t * h * e);
    outs.forEach((x, i) => o.set(x, i * h * e));
    return { shape: [1, t, h, e], data: o };
  };
}

interface Layer {
  readonly rec: Recurrent;
  readonly tree: TreeForm;
}

export class CpuTreeVerifier implements TreeVerifier {
  private readonly layers: Layer[];
  private states: RecurrentState[] = [];
  private sampling: SamplingOptions = { temperature: 0 };
  /** Per layer, the last verified tree's nodes (their q, k, v) for the commit. */
  private lastNodes: TreeNode[][] | undefined;
  private lastTree: VerifyRequest['tree'] | undefined;
  private pending: readonly number[] | undefined;

  /** `program` after the passes (the model variant's `compiled`); `maxNodes` counts the root. */
  constructor(readonly model: CpuModel, program: Program, readonly maxNodes: number) {
    if (!isDecodable(program)) {
      const t = program.terms.find((x) => x.noncausal)!;
      throw new Error(`variant ${program.name}: term ${t.name} is noncausal, so it cannot be decoded or speculated`);
    }
    const c = model.config;
    const sizes = variantAxisSizes(program, c.numHeads, c.headDim);
    this.layers = model.weights.layers.map((l) => {
      const params = l.attention as Readonly<Record<string, Tensor>>;
      return { rec: new Recurrent(program, params, sizes), tree: new TreeForm(program, params, sizes) };
    });
  }

  get vocabSize(): number {
    return this.model.config.vocabSize;
  }

  get medusaHeads(): number {
    return this.model.weights.medusa.length;
  }

  get position(): number {
    return (this.states[0]?.position ?? 0) + (this.pending?.length ?? 0);
  }

  async start(prompt: readonly number[], sampling: SamplingOptions, u0: number): Promise<number> {
    this.states = this.layers.map(() => createState());
    this.sampling = sampling;
    this.lastNodes = undefined;
    this.lastTree = undefined;
    this.pending = undefined;
    const r = cpuForward(this.model, [prompt], this.recurrent());
    const V = this.vocabSize;
    return this.pick(r.logits.data.subarray((prompt.length - 1) * V, prompt.length * V), u0);
  }

  async verify(req: VerifyRequest): Promise<VerifyResult> {
    const { tree } = req;
    checkTree(tree, this.maxNodes, this.vocabSize);
    if (this.states.length === 0) throw new Error('verify: call start first');
    this.applyPending();
    const nodesPerLayer: TreeNode[][] = [];
    const attention: CpuAttention = (layer, q, k, v) => {
      const [, n, h, d] = q.shape;
      const per = h * d;
      const nodes: TreeNode[] = tree.parents.map((parent, i) => ({
        parent,
        inputs: { q: q.data.slice(i * per, (i + 1) * per), k: k.data.slice(i * per, (i + 1) * per), v: v.data.slice(i * per, (i + 1) * per) },
      }));
      nodesPerLayer[layer] = nodes;
      const outs = this.layers[layer].tree.evaluate(this.states[layer], nodes);
      const e = outs[0].length / h;
      const o = new Float64Array(n * h * e);
      outs.forEach((x, i) => o.set(x, i * h * e));
      return { shape: [1, n, h, e], data: o };
    };
    const r: CpuForwardResult = cpuForward(this.model, [tree.tokens], attention);
    this.lastNodes = nodesPerLayer;
    this.lastTree = tree;
    const V = this.vocabSize;
    const rowOf = (i: number) => r.logits.data.subarray(i * V, (i + 1) * V);
    const picks = tree.tokens.map((_, i) => this.pick(rowOf(i), req.uniforms?.[tree.depths[i] - 1]));
    const H = this.model.config.hiddenSize;
    const medusaTopK = req.medusaTopK ?? 0;
    return {
      picks,
      ...(req.wantLogits && { logits: r.logits.data }),
      ...(medusaTopK > 0 && ((node: number) => ({
        medusa: cpuMedusaLogits(this.model, { shape: [1, 1, H], data: r.hidden.data.slice(node * H, (node + 1) * H) }).map((l) => topCandidates(softmax(l.data), medusaTopK)),
        medusaNode: node,
      }))(acceptByPicks(tree, picks).path.at(-1)!)),
      ...(req.topK && { topAt: (node: number) => topCandidates(softmax(rowOf(node)), req.topK!) }),
    };
  }

  commit(path: readonly number[]): void {
    if (!this.lastTree) throw new Error('commit: no tree was verified');
    if (this.pending) throw new Error('commit: the previous commit was not applied (verify or flush first)');
    checkPath(this.lastTree, path);
    this.pending = [...path];
  }

  async flush(): Promise<void> {
    this.applyPending();
  }

  /**
   * A plain decode step on the committed state (pending commit applied first): `token` folded in by
   * recurrent steps, its logits returned. What decoding would do next — the commit's state under test.
   */
  decode(token: number): Float64Array {
    if (this.states.length === 0) throw new Error('decode: call start first');
    this.applyPending();
    return cpuForward(this.model, [[token]], this.recurrent()).logits.data;
  }

  async destroy(): Promise<void> {
    this.states = [];
  }

  private applyPending(): void {
    if (!this.pending) return;
    const path = this.pending;
    this.pending = undefined;
    this.layers.forEach((l, n) => l.tree.commitPath(this.states[n], this.lastNodes![n], path));
    this.lastNodes = undefined;
    this.lastTree = undefined;
  }

  /** The greedy or sampled token of a logit row; `u` is the depth's draw. */
  private pick(logits: ArrayLike<number>, u: number | undefined): number {
    if ((this.sampling.temperature ?? 0) === 0 || u === undefined) return argmax(logits);
    return sampleToken(logits, this.sampling, () => u).token;
  }

  /** Attention over new tokens as recurrent steps on each layer's state (the prefill, plain decode steps). */
  private recurrent(): CpuAttention {
    return recurrentSteps(this.layers.map((l) => l.rec), this.states);
  }
}
