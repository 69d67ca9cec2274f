// The gradient program: what passes/autodiff.ts derives from a variant, and what a backend runs to compute
// d<name> for every input and parameter from the output's cotangent `do`. It is a dataflow of stages over named
// tensors (the environment): token tensors [b, t, …axes] and parameter-shaped tensors [...axes]. Every stage is
// ordinary IR:
//
//   term    – a Program (masked terms, output = their plain sum) that the usual passes classify and the chunked
//             form runs; in `reverse` time its inputs are read backwards (t ↦ T_pad − 1 − t), so that sums over
//             later positions i ≥ j become causal sums again. Writes one token tensor.
//   map     – token-side expressions evaluated at every (b, t). Writes token tensors.
//   reduce  – token-side expressions summed over every (b, t). Writes parameter-shaped tensors.
//   pairs   – a pair-side expression summed over every (b, i, j) the mask admits, scattered along one axis by an
//             index expression of the lag (a convolution tap's or a per-lag bias's gradient). Writes one tensor.
//   params  – parameter-side expressions evaluated once. Writes parameter-shaped tensors (the final d<param>).
//   lse     – softmax attention's log-normaliser lse_i = log Σ_{j ≤ i} exp(logit(i, j)), taken with a running max
//             (no unnormalised exp is ever summed). Its program is the softmax term alone in normalize(·, 0), valued
//             ones over the score's axes. Writes one token tensor; the stages after it read the probabilities
//             P_ij = exp(logit(i, j) − lse_i) ≤ 1.
//
// The environment starts with the forward inputs and parameters, `do` ([b, t, …outAxes]) and the builtins
// (constant tensors the IR cannot spell: ones along an axis, 0/1 selection matrices for a concat's part and an
// outer product's factors). A stage reads tensors through bindings (its declared name → an environment tensor).
import { maskToString } from './masks.ts';
import { printNode, printProgram } from './print.ts';
import { operands, type AxisDef, type Id, type MaskAtom, type Node, type Program, type TensorDecl } from './types.ts';
import { verify } from './verify.ts';

/** How a stage reads one environment tensor. */
export interface Binding {
  readonly tensor: string;
  /** Read tensor[t + shift] (1 past the end): a gate read one position later, see passes/autodiff/reverse.ts. */
  readonly shift?: number;
  /**
   * A reversed stage with group masks pads T up to a multiple of the group size (after the end, before reversing):
   * cotangents pad with 0 (so padded positions contribute nothing), forward inputs with a copy of the last token
   * (so every expression stays finite at them), gates and ones with 1.
   */
  readonly pad: 'zero' | 'edge' | 'one';
}

/** A graph of IR nodes without terms: the body of map, reduce, pairs and params stages. */
export interface StageGraph {
  readonly axes: Readonly<Record<string, AxisDef>>;
  readonly inputs: readonly TensorDecl[];
  readonly params: readonly TensorDecl[];
  readonly nodes: readonly Node[];
}

/** A value a stage writes: node `id`, stored as `tensor` over `axes` (the node's axes, reordered or broadcast). */
export interface StageOutput {
  readonly tensor: string;
  readonly id: Id;
  readonly axes: readonly string[];
}

interface StageBase {
  readonly name: string;
  /** One line: what the stage computes, in the DSL's names. */
  readonly why: string;
  readonly bindings: Readonly<Record<string, Binding>>;
}

export interface TermStage extends StageBase {
  readonly kind: 'term';
  readonly time: 'forward' | 'reverse';
  /** Reverse time only: T is padded to a multiple of this (the lcm of the group sizes; 1 = no padding). */
  readonly pad: number;
  /** `negated`: position nodes read −(original position) (reverse time with absolute positions in a score). */
  readonly positions: 'forward' | 'negated';
  readonly program: Program;
  readonly writes: string;
}

export interface MapStage extends StageBase {
  readonly kind: 'map';
  readonly graph: StageGraph;
  readonly outputs: readonly StageOutput[];
}

export interface ReduceStage extends StageBase {
  readonly kind: 'reduce';
  readonly graph: StageGraph;
  readonly outputs: readonly StageOutput[];
}

export interface PairsStage extends StageBase {
  readonly kind: 'pairs';
  readonly graph: StageGraph;
  readonly mask: readonly MaskAtom[];
  readonly noncausal: boolean;
  /** Pair-side value added at every admitted (b, i, j) … */
  readonly contribution: Id;
  /** … into writes[axis = index(i, j)]. */
  readonly axis: string;
  readonly index: Id;
  readonly writes: string;
  readonly axes: readonly string[];
}

export interface ParamsStage extends StageBase {
  readonly kind: 'params';
  readonly graph: StageGraph;
  readonly outputs: readonly StageOutput[];
}

export interface LseStage extends StageBase {
  readonly kind: 'lse';
  /** One causal term, score exp(logit), value ones over the output axes, output normalize(term, 0). */
  readonly program: Program;
  readonly writes: string;
}

export type Stage = TermStage | MapStage | ReduceStage | PairsStage | ParamsStage | LseStage;

export type Builtin =
  | { readonly name: string; readonly kind: 'ones'; readonly token: boolean; readonly axes: readonly string[] }
  /** S[f, p] = 1 where position p of part `part` sits in the concat axis f (axes [f, P], or [f] for a size-1 part). */
  | { readonly name: string; readonly kind: 'concat-part'; readonly axis: string; readonly parts: readonly (string | null)[]; readonly part: number; readonly axes: readonly string[] }
  /** F[pq, r] = 1 where r = p (which 0) or r = q (which 1), pq = p·|from| + q: an outer product's factors. */
  | { readonly name: string; readonly kind: 'outer-factor'; readonly axis: string; readonly from: string; readonly which: 0 | 1; readonly axes: readonly string[] };

export interface GradProgram {
  /** The program as written, which the gradient is of. */
  readonly forward: Program;
  readonly builtins: readonly Builtin[];
  readonly stages: readonly Stage[];
  /** d<name> for every input and parameter, each written by some stage. */
  readonly gradients: readonly string[];
}

export function graphAsProgram(name: string, g: StageGraph): Program {
  return { name, file: '<grad>', sizes: {}, axes: g.axes, inputs: g.inputs, params: g.params, nodes: g.nodes, lets: {}, terms: [], output: [], outAxes: [] };
}

function header(k: number, st: Stage): string {
  const reads = Object.entries(st.bindings).map(([local, b]) => {
    const from = b.tensor === local ? local : `${local} ← ${b.tensor}`;
    return b.shift ? `${from} (shifted by ${b.shift})` : from;
  });
  let kind: string;
  switch (st.kind) {
    case 'term':
      kind = st.time === 'reverse'
        ? `term, reverse time${st.pad > 1 ? `, T padded to a multiple of ${st.pad}` : ''}${st.positions === 'negated' ? ', positions negated' : ''}`
        : 'term, forward time';
      break;
    case 'map': kind = 'map, per token'; break;
    case 'reduce': kind = 'reduce, Σ over b, t'; break;
    case 'pairs': kind = `pairs, Σ over b and (i, j) in ${st.noncausal ? 'noncausal ' : ''}${maskToString(st.mask)}`; break;
    case 'params': kind = 'params, once'; break;
    case 'lse': kind = 'lse, forward time: log Σ_{j ≤ i} exp(logit) with a running max'; break;
  }
  const writes = st.kind === 'term' || st.kind === 'pairs' || st.kind === 'lse' ? [st.writes] : st.outputs.map((o) => o.tensor);
  return [`## stage ${k}: ${st.name} (${kind})`, `# ${st.why}`, `# reads ${reads.join(', ') || 'nothing'}`, `# writes ${writes.join(', ')}`].join('\n');
}

function printGraph(g: StageGraph): string[] {
  return g.nodes.map(printNode);
}

/** Every stage's IR text under a header saying its kind, direction, reads and writes. */
export function printGradProgram(gp: GradProgram): string {
  const out = [
    `# gradient of ${gp.forward.name}: ${gp.stages.length} stages; writes ${gp.gradients.join(', ')}`,
    ...gp.builtins.map((b) => `# builtin ${b.name}${b.kind === 'ones' && b.token ? '[b, t, ' + b.axes.join(', ') + ']' : `[${b.axes.join(', ')}]`}: ${describeBuiltin(b)}`),
  ];
  gp.stages.forEach((st, k) => {
    out.push('', header(k + 1, st));
    switch (st.kind) {
      case 'term':
      case 'lse':
        out.push(printProgram(st.program).trimEnd());
        break;
      case 'map':
      case 'reduce':
      case 'params':
        out.push(...printGraph(st.graph), ...st.outputs.map((o) => `${st.kind === 'reduce' ? 'sum' : 'out'} ${o.tensor} = %${o.id}  : [${o.axes.join(', ')}]`));
        break;
      case 'pairs':
        out.push(...printGraph(st.graph), `scatter %${st.contribution} into ${st.writes}[${st.axis} = %${st.index}]  : [${st.axes.join(', ')}]`);
        break;
    }
  });
  return out.join('\n') + '\n';
}

function describeBuiltin(b: Builtin): string {
  switch (b.kind) {
    case 'ones': return 'ones';
    case 'concat-part': return `selects part ${b.part} of concat axis ${b.axis} = (${b.parts.map((p) => p ?? '1').join(', ')})`;
    case 'outer-factor': return `selects the ${b.which === 0 ? 'first' : 'second'} factor of outer axis ${b.axis} = ${b.from} ⊗ ${b.from}`;
  }
}

export class GradVerifyError extends Error {
  override name = 'GradVerifyError';
}

/** Each stage is valid IR; every tensor a stage reads exists by then, with the axes it is declared with. */
export function verifyGradProgram(gp: GradProgram): void {
  const fail = (msg: string): never => {
    throw new GradVerifyError(`gradient program of ${gp.forward.name} is invalid: ${msg}`);
  };
  const env = new Map<string, { token: boolean; axes: readonly string[] }>();
  for (const d of gp.forward.inputs) env.set(d.name, { token: true, axes: d.axes });
  for (const d of gp.forward.params) env.set(d.name, { token: false, axes: d.axes });
  env.set('do', { token: true, axes: gp.forward.outAxes });
  for (const b of gp.builtins) env.set(b.name, { token: b.kind === 'ones' && b.token, axes: b.axes });
  const write = (name: string, token: boolean, axes: readonly string[], st: Stage) => {
    if (env.has(name)) fail(`stage ${st.name} writes ${name}, which already exists`);
    env.set(name, { token, axes });
  };
  for (const st of gp.stages) {
    const p = st.kind === 'term' || st.kind === 'lse' ? st.program : graphAsProgram(st.name, st.graph);
    try {
      verify(p);
    } catch (e) {
      fail(`stage ${st.name}: ${(e as Error).message}`);
    }
    for (const [decls, token] of [[p.inputs, true], [p.params, false]] as const) {
      for (const d of decls) {
        const b = st.bindings[d.name] ?? fail(`stage ${st.name} declares ${d.name} without a binding`);
        const t = env.get(b.tensor) ?? fail(`stage ${st.name} reads ${b.tensor} before any stage writes it`);
        if (t.token !== token) fail(`stage ${st.name} reads ${b.tensor} as a ${token ? 'token' : 'parameter-shaped'} tensor`);
        if (t.axes.join() !== d.axes.join()) fail(`stage ${st.name} reads ${b.tensor} [${t.axes}] as ${d.name}[${d.axes}]`);
      }
    }
    const checkOut = (id: Id, axes: readonly string[], what: string) => {
      const n = p.nodes[id] ?? fail(`stage ${st.name}: ${what} refers to missing node %${id}`);
      if (!n.type.axes.every((a) => axes.includes(a))) fail(`stage ${st.name}: ${what} has axes [${n.type.axes}] outside [${axes}]`);
    };
    switch (st.kind) {
      case 'term':
        write(st.writes, true, st.program.outAxes, st);
        break;
      case 'lse': {
        const t = st.program.terms;
        const out = st.program.output;
        if (t.length !== 1 || t[0].mask.length !== 1 || t[0].mask[0].kind !== 'causal' || t[0].noncausal || out.length !== 1 || out[0].kind !== 'norm' || out[0].eps !== 0) {
          fail(`stage ${st.name}: an lse stage's program is one causal term alone in normalize(·, 0)`);
        }
        if (p.nodes[t[0].score].op !== 'unary' || (p.nodes[t[0].score] as { fn?: string }).fn !== 'exp') fail(`stage ${st.name}: its score is not exp(logit)`);
        write(st.writes, true, st.program.outAxes, st);
        break;
      }
      case 'map':
      case 'reduce':
      case 'params':
        for (const o of st.outputs) {
          checkOut(o.id, o.axes, o.tensor);
          write(o.tensor, st.kind === 'map', o.axes, st);
        }
        break;
      case 'pairs':
        checkOut(st.contribution, st.axes.filter((a) => a !== st.axis), 'the contribution');
        if (p.nodes[st.index]?.type.axes.length !== 0) fail(`stage ${st.name}: the index must be a scalar`);
        write(st.writes, false, st.axes, st);
        break;
    }
    for (const n of p.nodes) for (const o of operands(n)) if (o >= n.id) fail(`stage ${st.name}: %${n.id} reads %${o}`);
  }
  for (const g of gp.gradients) if (!env.has(g)) fail(`no stage writes ${g}`);
}
