// Reverse-mode autodiff on the IR: Program → GradProgram (src/ir/grad.ts), a dataflow of stages that are each
// ordinary IR. Guarantees: every term stage passes verify(), prints and reads back, and is a sum of masked terms
// that the usual passes (runPasses) classify and the chunked form runs (reverse-time stages on reversed inputs);
// the stages together compute d<name> for every input and parameter from the output cotangent `do`.
//
// For a term o_i += Σ_{j ∈ M(i)} s(i, j) ⊙ v_j of output item k (plain: o = n; normalised: o = n / (z + ε)):
//   recompute  n_k and z_k (z: the same terms with value 1) as forward term stages — fla's choice (recompute the
//              forward's states rather than store them); a later step measures storing instead;
//   cotangents dN = do (plain) or do / (z + ε);  dZ = −Σ_{value-only axes} do ⊙ n / (z + ε)²   (a map stage);
//   score      g(i, j) = Σ_{value axes not in s} dN_i ⊙ v_j (+ Σ dZ_i): the adjoint of s at the pair;
//   value      dv_j = Σ_{i: (i,j) ∈ M} s(i, j) ⊙ dN_i: the same term in reverse time with value dN
//              (a Toeplitz term's dv is the reversed window of dN);
//   query side dF_i = Σ_j adj_F(i, j) for each position-free query-side value F (φ(q)_i): a forward term whose
//              value is the adjoint's key-side factor (separable: dφ_i = Σ_{j≤i} g D ψ_j, score g, value ψ);
//   key side   dG_j = Σ_i adj_G(i, j): a reverse-time term (dψ_j = Σ_{i≥j} g D φ_i);
//   parameters Σ over pairs: a forward term + Σ over tokens, or a pairs stage scattering at the lag (dw[h, l],
//              flash's b[h, l]);
//   decays     d log α_t = reverse cumulative sum of P − K (gates.ts), then back through α's own expression.
// Softmax attention (a term the passes classify `softmax`: causal exp(logit) alone in normalize(·, 0)) never sums an
// unnormalised exp. Its item instead gets
//   lse        lse_i = log Σ_{j ≤ i} exp(logit(i, j)), with a running max (an lse stage);
//   recompute  o_i = Σ_{j ≤ i} P_ij v_j with the probabilities P_ij = exp(logit(i, j) − lse_i) ≤ 1;
//   cotangents dN = do;  dZ = −Σ_{value-only axes} do ⊙ o   (so g = do_i·v_j − do_i·o_i);
// and every stage of the term reads P_ij where the forward reads exp(logit): dv_j = Σ_{i ≥ j} P_ij do_i, and the
// logit's adjoint is ds_ij = P_ij (do_i·v_j − do_i·o_i), whose sums over j (dq) and over i (dk) follow as above.
// Those terms are classified quadratic as built and run in the parallel form (O(T²)).
// A sum the passes cannot classify as one term (g's contraction times another one in J) is split instead:
// g's factor at the output position moves out of the sum (recipe.ts). The pair adjoints are derived once with a
// query-side placeholder for g (they are linear in it), and each stage substitutes what it needs.
// The token sweep then runs back through feature maps to the inputs, and the parameter sweep to the parameters.
import { GraphBuilder } from '../src/ir/builder.ts';
import { printGradProgram, verifyGradProgram, type Binding, type GradProgram, type MapStage, type PairsStage, type Stage, type TermStage } from '../src/ir/grad.ts';
import { SourceError } from '../src/ir/span.ts';
import { mapOperands, operands, type Id, type Op, type Program, type Term } from '../src/ir/types.ts';
import { PASSES, runPasses } from './pipeline.ts';
import { eulerApplies } from './autodiff/gates.ts';
import { differentiable, pairAdjoints, type PairAdjoints, type Scatter } from './autodiff/pair-adjoints.ts';
import { buildRecipe, single, type Recipe, type RecipePart } from './autodiff/recipe.ts';
import { extractGraph, paramSweep, tokenForm, tokenSweep, type ParamSeed, type Seed, type TokenSum } from './autodiff/sweep.ts';
import { TermStageBuilder, type StageContext } from './autodiff/term-stage.ts';
import { Builtins, Ops } from './autodiff/vjp.ts';

export function differentiate(p: Program): GradProgram {
  return new Autodiff(p).run();
}

/** The gradient program with the passes run on every term stage; onPass sees each stage after each pass. */
export function runPassesOnGrad(gp: GradProgram, onPass?: (stage: TermStage, pass: string, p: Program) => void): GradProgram {
  return {
    ...gp,
    stages: gp.stages.map((st) => (st.kind === 'term' ? { ...st, program: runPasses(st.program, onPass && ((name, q) => onPass(st, name, q))) } : st)),
  };
}

/**
 * printGradProgram's text with every term stage as it is after the named pass (`all`: the whole text once per pass),
 * for `linattn ir FILE.la --grad --print-after=PASS`.
 */
export function printGradAfter(gp: GradProgram, after: string): string {
  const names = PASSES.map((p) => p.name);
  if (after !== 'all' && !names.includes(after)) throw new Error(`unknown pass '${after}' (passes: ${names.join(', ')}, or all)`);
  const at = new Map<string, Map<string, Program>>();
  runPassesOnGrad(gp, (st, pass, p) => at.set(pass, (at.get(pass) ?? new Map()).set(st.name, p)));
  const after1 = (pass: string) => printGradProgram({ ...gp, stages: gp.stages.map((st) => (st.kind === 'term' ? { ...st, program: at.get(pass)!.get(st.name)! } : st)) });
  return after === 'all' ? names.map((n) => `# ======== after ${n}\n${after1(n)}`).join('\n') : after1(after);
}

interface ItemCotangents {
  readonly dNName: string; // `do`, or dN.k for a normalised item
  readonly dN: Id; // input leaf over outAxes
  readonly dZ: Id | null; // input leaf over U (normalised items)
  readonly U: readonly string[];
  /** Softmax attention: its score exp(logit) and the probability P = exp(logit − lse_i) that replaces it. */
  readonly softmax?: { readonly score: Id; readonly P: Id };
}

/** One decay's share of a gate's d log: P − K from a term (Euler: Σ F ⊙ dF − Σ G ⊙ dG; else stages over c). */
type GatePart = { readonly kind: 'euler'; readonly F: Id; readonly dF: Recipe; readonly G: Id; readonly dG: Recipe } | { readonly kind: 'pk'; readonly P: Recipe; readonly K: Recipe };

/** What one term's adjoints are made of: the score's adjoint g, the placeholder it was derived with, its parts. */
interface ScoreCotangent {
  readonly term: Term;
  readonly placeholder: Id; // query-side stand-in for g in the pair adjoints (linear in it)
  readonly g: Id; // Σ_E dN_i ⊙ v_j + z_i
  readonly E: readonly string[]; // the value's axes that the score lacks
  readonly dN: Id;
  readonly dNName: string;
  readonly z: Id | null; // Σ_{U ∖ s} dZ_i, read at i
  readonly softmax?: ItemCotangents['softmax'];
}

class Autodiff implements StageContext {
  readonly master: GraphBuilder;
  readonly builtins = new Builtins();
  private readonly o: Ops;
  private readonly forwardInputs: Set<string>;
  private readonly gates = new Map<Id, string>();
  private readonly recompute: Stage[] = [];
  private readonly terms: Stage[] = [];
  private readonly pairs: Stage[] = [];
  private readonly cums: Stage[] = [];
  private readonly seeds: Seed[] = [];
  private readonly sums: TokenSum[] = [];
  private readonly paramSeeds: ParamSeed[] = [];
  private readonly gateParts = new Map<Id, { decay: Id; parts: GatePart[] }>();

  constructor(readonly forward: Program) {
    this.master = new GraphBuilder(forward.nodes, forward.axes);
    this.o = new Ops(this.master, this.builtins);
    this.forwardInputs = new Set(forward.inputs.map((d) => d.name));
  }

  gateTensor(x: Id): string {
    let t = this.gates.get(x);
    if (!t) this.gates.set(x, (t = `gate.${this.nameOf(x)}`));
    return t;
  }

  padOf(tensor: string): Binding['pad'] {
    if (this.forwardInputs.has(tensor)) return 'edge';
    return this.builtins.list().some((b) => b.name === tensor) ? 'one' : 'zero';
  }

  letName(id: Id): string | undefined {
    return Object.entries(this.forward.lets).find(([, v]) => v === id)?.[0];
  }

  private nameOf(id: Id): string {
    const n = this.master.node(id);
    if (n.op === 'input' || n.op === 'param') return n.name;
    if (n.op === 'at') return this.nameOf(n.x);
    return this.letName(id) ?? `n${id}`;
  }

  /** The master graph's per-token leaf for an environment tensor. */
  private leaf(name: string, axes: readonly string[]): Id {
    const known = this.master.nodes.find((n) => n.op === 'input' && n.name === name);
    return known ? known.id : this.master.leaf({ op: 'input', name }, axes);
  }

  run(): GradProgram {
    const p = this.forward;
    const names = new Set([...p.inputs, ...p.params].map((d) => d.name));
    if (names.has('do')) throw new Error(`autodiff: ${p.name} declares a tensor named 'do', the name of the output's cotangent`);
    for (const n of names) if (names.has(`d${n}`)) throw new Error(`autodiff: ${p.name} declares both ${n} and d${n}; the gradient of ${n} would be named d${n}`);
    const cot = this.cotangents();
    const byName = new Map(p.terms.map((t) => [t.name, t]));
    p.output.forEach((item, k) => {
      for (const name of item.kind === 'term' ? [item.term] : item.terms) this.term(byName.get(name)!, cot[k]);
    });
    this.cumulativeSums();
    const sweep = tokenSweep(p, this.builtins, this.seeds, this.sums);
    const stages: Stage[] = [...this.recompute];
    if (this.gates.size) stages.push(this.gatesStage());
    stages.push(...this.terms, ...this.pairs, ...this.cums, sweep.map);
    if (sweep.reduce) stages.push(sweep.reduce);
    if (p.params.length) stages.push(paramSweep(p, this.builtins, [...this.paramSeeds, ...sweep.paramSeeds]));
    const gp: GradProgram = { forward: p, builtins: this.builtins.list(), stages, gradients: [...p.inputs, ...p.params].map((d) => `d${d.name}`) };
    verifyGradProgram(gp);
    return gp;
  }

  /** dN and dZ of each output item, with the recompute stages and the map that normalised items need. */
  private cotangents(): ItemCotangents[] {
    const p = this.forward;
    const out = p.outAxes;
    const doLeaf = this.leaf('do', out);
    const map = new GraphBuilder([], p.axes);
    const mo = new Ops(map, this.builtins);
    const outputs: MapStage['outputs'][number][] = [];
    const byName = new Map(p.terms.map((t) => [t.name, t]));
    const softmax = new Set(runPasses(p).terms.filter((t) => t.form.kind === 'softmax').map((t) => t.name));
    const cot = p.output.map((item, k): ItemCotangents => {
      if (item.kind === 'term') return { dNName: 'do', dN: doLeaf, dZ: null, U: out };
      const terms = item.terms.map((n) => byName.get(n)!);
      const scoreAxes = new Set(terms.flatMap((t) => this.master.type(t.score).axes));
      const U = out.filter((a) => scoreAxes.has(a));
      if (terms.length === 1 && softmax.has(terms[0].name)) {
        const t = terms[0];
        const { P } = this.softmaxStages(t, k, U);
        // dZ = −Σ_{axes not in U} do ⊙ o  (o = n / z: the recomputed output itself)
        const dO = map.leaf({ op: 'input', name: 'do' }, out);
        const o = map.leaf({ op: 'input', name: `o.${k}` }, out);
        let dz = mo.un('neg', mo.mul(dO, o));
        for (const a of out) if (!U.includes(a)) dz = mo.sum(dz, a);
        outputs.push({ tensor: `dZ.${k}`, id: dz, axes: U });
        return { dNName: 'do', dN: doLeaf, dZ: this.leaf(`dZ.${k}`, U), U, softmax: { score: t.score, P } };
      }
      const num = new TermStageBuilder(this, 'forward');
      const den = new TermStageBuilder(this, 'forward');
      const ones = this.builtins.tokenOnes(this.master, U);
      for (const t of terms) {
        num.addTerm(t.name, t, t.score, t.value);
        den.addTerm(t.name, t, t.score, ones);
      }
      this.recompute.push(num.finish(`recompute.n.${k}`, `n.${k}`, `item ${k}'s numerator n = Σ_terms Σ_j s v (recomputed)`, out));
      this.recompute.push(den.finish(`recompute.z.${k}`, `z.${k}`, `item ${k}'s denominator z = Σ_terms Σ_j s (recomputed)`, U));
      // dN = do / (z + ε);  dZ = −Σ_{axes not in U} do ⊙ n / (z + ε)²
      const dO = map.leaf({ op: 'input', name: 'do' }, out);
      const n = map.leaf({ op: 'input', name: `n.${k}` }, out);
      const z = map.leaf({ op: 'input', name: `z.${k}` }, U);
      const ze = mo.bin('add', z, mo.c(item.eps));
      let dz = mo.un('neg', mo.bin('div', mo.mul(dO, n), mo.mul(ze, ze)));
      for (const a of out) if (!U.includes(a)) dz = mo.sum(dz, a);
      outputs.push({ tensor: `dN.${k}`, id: mo.bin('div', dO, ze), axes: out }, { tensor: `dZ.${k}`, id: dz, axes: U });
      return { dNName: `dN.${k}`, dN: this.leaf(`dN.${k}`, out), dZ: this.leaf(`dZ.${k}`, U), U };
    });
    if (outputs.length) {
      const ex = extractGraph(map, outputs.map((x) => x.id));
      this.recompute.push({
        kind: 'map',
        name: 'cotangents',
        why: cot.some((c) => c.softmax)
          ? 'each normalised item’s dN = do / (z + ε) and dZ = −Σ do ⊙ n / (z + ε)²; softmax attention’s dZ = −Σ do ⊙ o (its dN is do)'
          : 'each normalised item’s dN = do / (z + ε) and dZ = −Σ do ⊙ n / (z + ε)²',
        bindings: Object.fromEntries(ex.graph.inputs.map((d) => [d.name, { tensor: d.name, pad: 'zero' as const }])),
        graph: ex.graph,
        outputs: outputs.map((x) => ({ ...x, id: ex.id(x.id) })),
      });
    }
    return cot;
  }

  /**
   * Softmax attention's lse stage and the recompute of its output o.k = Σ_j P_ij v_j, and P_ij = exp(logit − lse_i)
   * in the master graph.
   */
  private softmaxStages(t: Term, k: number, U: readonly string[]): { P: Id } {
    const m = this.master;
    const o = this.o;
    const score = m.node(t.score);
    if (score.op !== 'unary' || score.fn !== 'exp') throw new Error(`internal: softmax term ${t.name}'s score is not exp(logit)`);
    const lse = new TermStageBuilder(this, 'forward');
    lse.addTerm(t.name, t, t.score, this.builtins.tokenOnes(m, U));
    const st = lse.finish(`lse.${k}`, `lse.${k}`, '', U);
    this.recompute.push({
      kind: 'lse',
      name: `lse.${k}`,
      why: `item ${k}'s log-normaliser lse_i = log Σ_{j ≤ i} exp(logit(i, j)) of softmax term ${t.name}, with a running max`,
      bindings: st.bindings,
      program: { ...st.program, output: [{ kind: 'norm', terms: [t.name], eps: 0 }] },
      writes: `lse.${k}`,
    });
    const P = o.un('exp', o.bin('sub', score.x, m.add({ op: 'at', x: this.leaf(`lse.${k}`, U), which: 'i' })));
    const rec = new TermStageBuilder(this, 'forward');
    rec.addTerm(t.name, { mask: t.mask, noncausal: false, quadratic: true }, P, t.value);
    this.recompute.push(rec.finish(`recompute.o.${k}`, `o.${k}`, `item ${k}'s output o = Σ_{j ≤ i} P_ij v_j (recomputed), P_ij = exp(logit − lse_i)`, this.forward.outAxes));
    return { P };
  }

  /** An adjoint written with the placeholder for g, with `G` in its place (and P for a softmax score). */
  private adjoint(sc: ScoreCotangent, a: Id, G: Id): Id {
    const x = this.substitute(a, sc.placeholder, G);
    return sc.softmax ? this.substitute(x, sc.softmax.score, sc.softmax.P) : x;
  }

  /** Every stage one forward term needs. */
  private term(t: Term, cot: ItemCotangents): void {
    const m = this.master;
    const o = this.o;
    const out = this.forward.outAxes;
    const scoreAxes = m.type(t.score).axes;
    const E = out.filter((a) => !scoreAxes.includes(a));
    // g(i, j) = Σ_E dN_i ⊙ v_j  (+ Σ_{U ∖ s} dZ_i)
    let g = o.mul(m.add({ op: 'at', x: cot.dN, which: 'i' }), m.add({ op: 'at', x: t.value, which: 'j' }));
    for (const a of E) g = o.sum(g, a);
    let z: Id | null = null;
    if (cot.dZ !== null) {
      z = m.add({ op: 'at', x: cot.dZ, which: 'i' });
      for (const a of cot.U) if (!scoreAxes.includes(a)) z = o.sum(z, a);
      g = o.bin('add', g, z);
    }
    const placeholder = m.add({ op: 'at', x: this.leaf(`g.${t.name}`, scoreAxes), which: 'i' });
    const sc: ScoreCotangent = { term: t, placeholder, g, E, dN: cot.dN, dNName: cot.dNName, z, ...(cot.softmax && { softmax: cot.softmax }) };
    const pa = pairAdjoints(o, t.score, placeholder);
    if (cot.softmax && pa.decay.size) throw new Error(`autodiff: softmax term ${t.name}: a decay inside the logit has no gradient here`);
    const axesOf = (x: Id, a: Id) => m.type(x).axes.filter((ax) => m.type(a).axes.includes(ax));
    if (differentiable(m, t.value)) {
      const b = new TermStageBuilder(this, 'reverse');
      if (cot.softmax) b.addTerm(t.name, { mask: t.mask, noncausal: false, quadratic: true }, cot.softmax.P, cot.dN);
      else b.addTerm(t.name, t, t.score, cot.dN);
      const tensor = `adj.${t.name}.value`;
      this.terms.push(b.finish(tensor, tensor, `dv_j = Σ_{i ≥ j} s(i,j) dN_i for term ${t.name}'s value`, out));
      this.seeds.push({ kind: 'token', node: t.value, value: single(tensor, out) });
    }
    const frontier = new Map<Id, Recipe>();
    for (const [time, adjoints, at] of [['forward', pa.query, 'i'], ['reverse', pa.key, 'j']] as const) {
      for (const [F, a] of adjoints) {
        const what = `the adjoint of ${this.nameOf(F)} read at ${at} in term ${t.name}`;
        const r = this.sumOf(sc, time, `adj.${t.name}.${at}.${this.nameOf(F)}`, at === 'i' ? `Σ_{j ≤ i} of ${what}` : `Σ_{i ≥ j} of ${what}`, a, axesOf(F, a));
        this.seeds.push({ kind: 'frontier', node: F, value: r });
        frontier.set(F, r);
      }
    }
    for (const [x, a] of pa.param) {
      const name = `adj.${t.name}.p.${this.nameOf(x)}`;
      const r = this.sumOf(sc, 'forward', name, `Σ_j of parameter ${this.nameOf(x)}'s adjoint in term ${t.name} (then Σ over b, i)`, a, axesOf(x, a));
      this.sums.push({ name, value: r, node: x, log: false });
    }
    for (const s of pa.scatter) this.pairs.push(this.pairsStage(sc, s));
    for (const [D, aD] of pa.decay) this.decay(sc, D, aD, pa, frontier);
  }

  /** A copy of the master expression `id` with `from` replaced by `to`. */
  private substitute(id: Id, from: Id, to: Id, memo = new Map<Id, Id>()): Id {
    if (id === from) return to;
    const hit = memo.get(id);
    if (hit !== undefined) return hit;
    const n = this.master.node(id);
    let out = id;
    if (operands(n).length) {
      const { id: _i, type: _t, span: _s, ...op } = n;
      out = this.master.add(mapOperands(op as Op, (x) => this.substitute(x, from, to, memo)));
    }
    memo.set(id, out);
    return out;
  }

  /**
   * Stages that compute Σ_j (forward) or Σ_i (reverse) of the adjoint `a` (written with the placeholder for g),
   * over `axes`, and the recipe that reads the sum back: one term stage when the passes classify it, else the
   * split form of recipe.ts.
   */
  private sumOf(sc: ScoreCotangent, time: 'forward' | 'reverse', name: string, why: string, a: Id, axes: readonly string[]): Recipe {
    const t = sc.term;
    const m = this.master;
    const spec = sc.softmax ? { mask: t.mask, noncausal: false, quadratic: true } : t;
    const build = (tensor: string, expr: Id, over: readonly string[], text: string) => {
      const b = new TermStageBuilder(this, time);
      b.addSumOf(t.name, spec, expr, over);
      return b.finish(tensor, tensor, text, over);
    };
    const direct = build(name, this.adjoint(sc, a, sc.g), axes, why);
    if (classifies(direct.program)) {
      this.terms.push(direct);
      return single(name, axes);
    }
    const clash = axes.filter((x) => sc.E.includes(x));
    if (clash.length) throw new Error(`autodiff: ${name}: cannot split the adjoint, its axes [${axes}] share [${clash}] with the value's`);
    const wide = [...axes, ...sc.E];
    const parts: RecipePart[] = [];
    if (time === 'forward') {
      const W = build(`${name}.W`, this.adjoint(sc, a, m.add({ op: 'at', x: t.value, which: 'j' })), wide, `${why}: W_i = Σ_j v_j ⊗ J(i,j), contracted with dN_i afterwards`);
      parts.push({ tensor: W.writes, axes: wide, factor: { tensor: sc.dNName, axes: m.type(sc.dN).axes }, over: sc.E });
      this.terms.push(W);
    } else {
      const W = build(`${name}.W`, this.adjoint(sc, a, m.add({ op: 'at', x: sc.dN, which: 'i' })), wide, `${why}: W_j = Σ_i dN_i ⊗ J(i,j), contracted with v_j afterwards`);
      parts.push({ tensor: W.writes, axes: wide, factor: { node: t.value }, over: sc.E });
      this.terms.push(W);
    }
    if (sc.z !== null) {
      const Z = build(`${name}.Z`, this.adjoint(sc, a, sc.z), axes, `${why}: the dZ part`);
      parts.push({ tensor: Z.writes, axes, factor: null, over: [] });
      this.terms.push(Z);
    }
    for (const p of parts) {
      const st = this.terms.find((x) => x.kind === 'term' && x.writes === p.tensor) as TermStage;
      if (!classifies(st.program)) throw new Error(`autodiff: the passes cannot classify ${p.tensor} (term ${t.name}); its terms are neither separable nor bounded`);
    }
    return { parts };
  }

  private pairsStage(sc: ScoreCotangent, s: Scatter): PairsStage {
    const t = sc.term;
    const writes = `adj.${t.name}.s.${this.nameOf(s.x)}`;
    const contribution = this.adjoint(sc, s.adjoint, sc.g);
    const ex = extractGraph(this.master, [contribution, s.index]);
    this.paramSeeds.push({ node: s.x, tensor: writes, log: false });
    return {
      kind: 'pairs',
      name: writes,
      why: `${this.nameOf(s.x)}[${s.axis} = index(lag)] receives term ${t.name}'s score adjoint at every pair`,
      bindings: Object.fromEntries([...ex.graph.inputs, ...ex.graph.params].map((d) => [d.name, { tensor: d.name, pad: 'zero' as const }])),
      graph: ex.graph,
      mask: t.mask,
      noncausal: t.noncausal,
      contribution: ex.id(contribution),
      axis: s.axis,
      index: ex.id(s.index),
      writes,
      axes: this.master.type(s.x).axes,
    };
  }

  private decay(sc: ScoreCotangent, D: Id, aD: Id, pa: PairAdjoints, frontier: ReadonlyMap<Id, Recipe>): void {
    const t = sc.term;
    const m = this.master;
    const dn = m.node(D);
    if (dn.op !== 'decay') throw new Error('internal: decay');
    const gateAxes = dn.type.axes;
    const fits = (F: Id) => gateAxes.every((a) => m.type(F).axes.includes(a)) && eulerApplies(m, t.score, F, D);
    const F = [...pa.query.keys()].find(fits);
    const G = [...pa.key.keys()].find(fits);
    let part: GatePart;
    if (F !== undefined && G !== undefined) part = { kind: 'euler', F, dF: frontier.get(F)!, G, dG: frontier.get(G)! };
    else {
      const c = this.o.mul(D, aD);
      const base = `${t.name}.${this.nameOf(dn.x)}`;
      part = {
        kind: 'pk',
        P: this.sumOf(sc, 'forward', `P.${base}`, `P_i = Σ_j D ⊙ ∂L/∂D for the decay in term ${t.name}`, c, gateAxes),
        K: this.sumOf(sc, 'reverse', `K.${base}`, `K_j = Σ_i D ⊙ ∂L/∂D for the decay in term ${t.name}`, c, gateAxes),
      };
    }
    const entry = this.gateParts.get(dn.x) ?? { decay: D, parts: [] };
    entry.parts.push(part);
    this.gateParts.set(dn.x, entry);
  }

  /** d log of each gate: the reverse cumulative sum of Σ_parts (P − K). */
  private cumulativeSums(): void {
    const m = this.master;
    const o = this.o;
    const read = (r: Recipe) => buildRecipe(o, r, (tensor, axes) => this.leaf(tensor, axes));
    for (const [x, { decay, parts }] of this.gateParts) {
      const axes = m.type(decay).axes;
      const onGate = (F: Id, dF: Recipe) => o.reduceTo(o.mul(tokenForm(m, F), read(dF)), axes, m.type(F).axes);
      const value = parts
        .map((pt) => (pt.kind === 'euler' ? o.bin('sub', onGate(pt.F, pt.dF), onGate(pt.G, pt.dG)) : o.bin('sub', read(pt.P), read(pt.K))))
        .reduce((a, b) => o.bin('add', a, b));
      const tensor = `dlog.${this.nameOf(x)}`;
      const b = new TermStageBuilder(this, 'reverse');
      b.addTerm('cumsum', { mask: [{ kind: 'causal' }], noncausal: false }, o.c(1), o.ordered(value, axes));
      this.cums.push(b.finish(tensor, tensor, `d log ${this.nameOf(x)}_l = Σ_{t ≥ l} (P_t − K_t), the pairs whose decay contains it`, axes));
      if (m.type(x).side === 'token') this.seeds.push({ kind: 'log', node: x, value: single(tensor, axes) });
      else this.sums.push({ name: tensor, value: single(tensor, axes), node: x, log: true });
    }
  }

  /** The per-token gates that reverse-time stages read shifted by one. */
  private gatesStage(): MapStage {
    const ids = [...this.gates.keys()];
    const ex = extractGraph(new GraphBuilder(this.forward.nodes, this.forward.axes), ids);
    return {
      kind: 'map',
      name: 'gates',
      why: 'the per-token gates, stored for the reverse-time stages (which read them one position later)',
      bindings: Object.fromEntries([...ex.graph.inputs, ...ex.graph.params].map((d) => [d.name, { tensor: d.name, pad: 'zero' as const }])),
      graph: ex.graph,
      outputs: ids.map((x) => ({ tensor: this.gates.get(x)!, id: ex.id(x), axes: this.master.type(x).axes })),
    };
  }
}

/** Do the passes classify every term of the stage (prefix, Toeplitz or bounded quadratic)? */
function classifies(p: Program): boolean {
  try {
    runPasses(p);
    return true;
  } catch (e) {
    if (e instanceof SourceError) return false;
    throw e;
  }
}
