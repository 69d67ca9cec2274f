// Separability and Toeplitz analysis.
// Guarantees afterwards: every term has a form other than `general`:
//   prefix    – s(i,j) = Σ_f φ_i[f] ψ_j[f] (· γ^(i−j) or Π_{l=j+1..i} α_l) under a causal or past_groups mask;
//               position factors are rewritten first (cos(a−b) = cos a cos b + sin a sin b, exp(a+b) = exp a exp b),
//               so one written term may become several prefix terms named NAME, NAME.1, … in the output;
//   toeplitz  – s depends on the lag alone inside a bounded window (a causal depthwise convolution);
//   quadratic – anything else under a bounded mask (group / window), or a noncausal term;
//   softmax   – a causal score exp(logit) that is not separable, alone in normalize(term, 0): softmax attention,
//               whose decoding state (a key/value cache) grows with t.
// Any other unbounded, non-separable causal term is rejected with the reason and what would make it legal.
import { GraphBuilder } from '../src/ir/builder.ts';
import { lagRange, maskToString } from '../src/ir/masks.ts';
import { SourceError } from '../src/ir/span.ts';
import { aloneInExactNormalize } from '../src/ir/terms.ts';
import { operands, type Decay, type Id, type Node, type OutputItem, type Program, type Term } from '../src/ir/types.ts';

interface Monomial {
  coef: number;
  q: Id[]; // query-side factors
  k: Id[]; // key-side factors
  c: Id[]; // param / const factors
  feature: string | null; // a contraction Σ_feature over the product
  decay: Id | null; // a decay node
}

type Expansion = { ok: true; terms: Monomial[] } | { ok: false; why: string; at: Node };

const one = (): Monomial => ({ coef: 1, q: [], k: [], c: [], feature: null, decay: null });

export function separability(p: Program): Program {
  const g = new GraphBuilder(p.nodes, p.axes);
  const terms: Term[] = [];
  const renames = new Map<string, string[]>();
  for (const t of p.terms) {
    const parts = classify(g, p, t);
    terms.push(...parts);
    renames.set(t.name, parts.map((x) => x.name));
  }
  const output: OutputItem[] = p.output.flatMap((o): OutputItem[] =>
    o.kind === 'term' ? renames.get(o.term)!.map((term) => ({ kind: 'term', term })) : [{ ...o, terms: o.terms.flatMap((n) => renames.get(n)!) }],
  );
  return { ...p, nodes: g.nodes, axes: g.axes, terms, output };
}

function classify(g: GraphBuilder, p: Program, t: Term): Term[] {
  if (t.form.kind !== 'general') return [t];
  if (t.noncausal) return [{ ...t, form: { kind: 'quadratic' } }];
  const range = lagRange(t.mask);
  if (range && dependsOnLagOnly(g, t.score)) return [{ ...t, form: { kind: 'toeplitz', lags: range } }];
  const prefixMask = t.mask.length === 1 && (t.mask[0].kind === 'causal' || t.mask[0].kind === 'past_groups');
  const ex = expand(g, t.score);
  if (ex.ok && prefixMask) {
    const made = ex.terms.map((m, k) => prefixTerm(g, t, m, k));
    if (made.every((x): x is Term => !('why' in x))) return made;
    if (!range) {
      const bad = made.find((x) => 'why' in x) as { why: string };
      throw new SourceError(`term ${t.name}: ${bad.why}`, t.span);
    }
  }
  if (range || t.mask.some((m) => m.kind === 'group')) return [{ ...t, form: { kind: 'quadratic' } }];
  const soft = softmaxLogit(g, p, t);
  if (soft !== null) return [{ ...t, form: { kind: 'softmax', logit: soft } }];
  const why = ex.ok ? `its mask ${maskToString(t.mask)} is not a prefix mask (causal or past_groups)` : `${ex.why} (at ${ex.at.span ? `${ex.at.span.line}:${ex.at.span.col}` : `%${ex.at.id}`})`;
  throw new SourceError(
    `term ${t.name} is not a prefix sum: ${why}. Under the unbounded mask ${maskToString(t.mask)} that would be quadratic (softmax-style) attention. ` +
      `Write the score as dot(φ(q)[i], ψ(k)[j], axis) (times decay(…) or cos/sin of the lag), or bound the mask with window(K) or group(C); ` +
      `softmax attention itself is allowed as a causal score exp(…) alone in normalize(${t.name}, 0).`,
    t.span,
  );
}

/**
 * The logit of softmax attention: a term under the causal mask alone whose score is exp(logit), alone in an output
 * item normalize(term, 0) — the normalisation cancels any shift of the logits, which is what lets the kernels run
 * a running max (an eps > 0 would not cancel). Null for anything else.
 */
function softmaxLogit(g: GraphBuilder, p: Program, t: Term): Id | null {
  if (t.mask.length !== 1 || t.mask[0].kind !== 'causal') return null;
  const n = g.node(t.score);
  if (n.op !== 'unary' || n.fn !== 'exp') return null;
  return aloneInExactNormalize(p.output, t.name) ? n.x : null;
}

function dependsOnLagOnly(g: GraphBuilder, root: Id): boolean {
  const ok = (id: Id): boolean => {
    const n = g.node(id);
    switch (n.type.side) {
      case 'const':
      case 'param':
        return true;
      case 'query':
      case 'key':
      case 'token':
        return false;
      case 'pair':
        break;
    }
    if (n.op === 'binary' && n.fn === 'sub') {
      const a = g.node(n.a);
      const b = g.node(n.b);
      if (a.op === 'position' && a.which === 'i' && b.op === 'position' && b.which === 'j') return true;
    }
    if (n.op === 'decay') return g.type(n.x).side !== 'token';
    if (n.op === 'at') return false;
    return operands(n).every(ok);
  };
  return ok(root);
}

function times(a: Monomial, b: Monomial): Monomial | string {
  if (a.feature && b.feature) return 'a product of two contractions';
  if (a.decay !== null && b.decay !== null) return 'two decays in one product';
  return {
    coef: a.coef * b.coef,
    q: [...a.q, ...b.q],
    k: [...a.k, ...b.k],
    c: [...a.c, ...b.c],
    feature: a.feature ?? b.feature,
    decay: a.decay ?? b.decay,
  };
}

/** Writes a score as a sum of products of query, key and constant factors (with one contraction and one decay each). */
function expand(g: GraphBuilder, id: Id): Expansion {
  const n = g.node(id);
  const leaf = (m: Partial<Monomial>): Expansion => ({ ok: true, terms: [{ ...one(), ...m }] });
  switch (n.type.side) {
    case 'const':
      return n.op === 'const' ? leaf({ coef: n.value }) : leaf({ c: [id] });
    case 'param':
      return leaf({ c: [id] });
    case 'query':
      return leaf({ q: [id] });
    case 'key':
      return leaf({ k: [id] });
    case 'token':
      return { ok: false, why: 'a per-token value not read at i or j', at: n };
    case 'pair':
      break;
  }
  const fail = (why: string): Expansion => ({ ok: false, why, at: n });
  switch (n.op) {
    case 'binary': {
      if (n.fn === 'add' || n.fn === 'sub') {
        const a = expand(g, n.a);
        const b = expand(g, n.b);
        if (!a.ok) return a;
        if (!b.ok) return b;
        const sign = n.fn === 'sub' ? -1 : 1;
        return { ok: true, terms: [...a.terms, ...b.terms.map((m) => ({ ...m, coef: sign * m.coef }))] };
      }
      if (n.fn === 'mul') return product(g.node(n.a), g.node(n.b));
      if (n.fn === 'div') {
        if (g.type(n.b).side === 'pair') return fail('division by a value of both i and j');
        const recip = g.add({ op: 'unary', fn: 'recip', x: n.b }, n.span);
        return product(g.node(n.a), g.node(recip));
      }
      if (n.fn === 'pow') {
        const e = g.node(n.b);
        if (e.op === 'const' && Number.isInteger(e.value) && e.value >= 1 && e.value <= 4) {
          let acc: Expansion = { ok: true, terms: [one()] };
          for (let r = 0; r < e.value; r++) acc = multiply(acc, expand(g, n.a));
          return acc;
        }
        return fail(`${n.fn} of a score with a non-integer exponent`);
      }
      return fail(`${n.fn}(…) of a score`);
    }
    case 'unary': {
      if (n.fn === 'neg') {
        const a = expand(g, n.x);
        return a.ok ? { ok: true, terms: a.terms.map((m) => ({ ...m, coef: -m.coef })) } : a;
      }
      if (n.fn === 'cos' || n.fn === 'sin' || n.fn === 'exp') {
        const split = splitAdditive(g, n.x);
        if (!split) return fail(`${n.fn}(…) of an argument that is not a sum of a query part and a key part`);
        const [a, b] = split; // argument = a(i) + b(j)
        const f = (fn: 'cos' | 'sin' | 'exp', x: Id) => g.add({ op: 'unary', fn, x });
        if (n.fn === 'exp') return leaf({ q: [f('exp', a)], k: [f('exp', b)] });
        const [ca, sa, cb, sb] = [f('cos', a), f('sin', a), f('cos', b), f('sin', b)];
        return n.fn === 'cos'
          ? { ok: true, terms: [{ ...one(), q: [ca], k: [cb] }, { ...one(), coef: -1, q: [sa], k: [sb] }] }
          : { ok: true, terms: [{ ...one(), q: [sa], k: [cb] }, { ...one(), q: [ca], k: [sb] }] };
      }
      return fail(`${n.fn}(…) of a score`);
    }
    case 'sum': {
      const inner = expand(g, n.x);
      if (!inner.ok) return inner;
      for (const m of inner.terms) if (m.feature) return fail('a contraction nested in another');
      return { ok: true, terms: inner.terms.map((m) => ({ ...m, feature: n.axis })) };
    }
    case 'decay':
      return leaf({ decay: id });
    case 'matmul':
      return fail('a matrix product of a score (write it as dot(…) of query and key features)');
    case 'select':
      return fail('a parameter indexed by the lag (a convolution, which needs a window(K) mask)');
    default:
      return fail(`${n.op} of a score`);
  }

  function product(a: Node, b: Node): Expansion {
    return multiply(expand(g, a.id), expand(g, b.id));
  }
  function multiply(a: Expansion, b: Expansion): Expansion {
    if (!a.ok) return a;
    if (!b.ok) return b;
    const out: Monomial[] = [];
    for (const x of a.terms) for (const y of b.terms) {
      const m = times(x, y);
      if (typeof m === 'string') return fail(m);
      out.push(m);
    }
    return { ok: true, terms: out };
  }
}

/** Splits a pair expression into a query-side and a key-side summand (constants go to the query side). */
function splitAdditive(g: GraphBuilder, id: Id): [Id, Id] | null {
  const n = g.node(id);
  const zero = g.const(0);
  switch (n.type.side) {
    case 'const':
    case 'param':
    case 'query':
      return [id, zero];
    case 'key':
      return [zero, id];
    case 'token':
      return null;
    case 'pair':
      break;
  }
  if (n.op === 'binary' && (n.fn === 'add' || n.fn === 'sub')) {
    const a = splitAdditive(g, n.a);
    const b = splitAdditive(g, n.b);
    if (!a || !b) return null;
    return [g.add({ op: 'binary', fn: n.fn, a: a[0], b: b[0] }), g.add({ op: 'binary', fn: n.fn, a: a[1], b: b[1] })];
  }
  if (n.op === 'binary' && (n.fn === 'mul' || n.fn === 'div')) {
    const scale = n.fn === 'mul' && g.type(n.a).side !== 'pair' ? n.a : n.b;
    const other = scale === n.a ? n.b : n.a;
    const side = g.type(scale).side;
    if (side !== 'const' && side !== 'param') return null;
    if (n.fn === 'div' && scale !== n.b) return null;
    const s = splitAdditive(g, other);
    if (!s) return null;
    return [g.add({ op: 'binary', fn: n.fn, a: s[0], b: scale }), g.add({ op: 'binary', fn: n.fn, a: s[1], b: scale })];
  }
  if (n.op === 'unary' && n.fn === 'neg') {
    const s = splitAdditive(g, n.x);
    return s ? [g.add({ op: 'unary', fn: 'neg', x: s[0] }), g.add({ op: 'unary', fn: 'neg', x: s[1] })] : null;
  }
  return null;
}

/** Builds φ, ψ and the decay of one monomial; returns a reason when the monomial cannot run as a scan. */
function prefixTerm(g: GraphBuilder, t: Term, m: Monomial, k: number): Term | { why: string } {
  const prod = (ids: Id[]): Id => ids.reduce((acc, x) => g.add({ op: 'binary', fn: 'mul', a: acc, b: x }), g.const(1));
  let phi = prod([...m.c, ...m.q]);
  if (m.coef !== 1) phi = g.add({ op: 'binary', fn: 'mul', a: phi, b: g.const(m.coef) });
  let psi = prod(m.k);
  let feature = m.feature;
  let decay: Decay | null = null;
  if (m.decay !== null) {
    const dn = g.node(m.decay) as Extract<Node, { op: 'decay' }>;
    const gate = g.type(dn.x);
    if (t.mask[0].kind !== 'causal') return { why: 'a decay needs the causal mask (not past_groups)' };
    if (gate.side === 'token') {
      if (gate.axes.some((a) => a !== feature && !g.type(t.value).axes.includes(a))) {
        return { why: `the gate's axes [${gate.axes.join(', ')}] must be the contracted feature axis or axes of the value` };
      }
      decay = { kind: 'gate', alpha: dn.x };
    } else {
      if (feature && gate.axes.includes(feature)) return { why: 'a constant decay cannot vary along the contracted feature axis' };
      decay = { kind: 'constant', gamma: dn.x };
    }
  }
  if (feature) {
    const inPhi = g.type(phi).axes.includes(feature);
    const inPsi = g.type(psi).axes.includes(feature);
    const inGate = decay?.kind === 'gate' && g.type(decay.alpha).axes.includes(feature);
    if (!inPhi && !inPsi && !inGate) return { why: `Σ over ${feature} of a product that does not vary along ${feature}` };
    if (!inGate) {
      if (!inPsi) { phi = g.add({ op: 'sum', x: phi, axis: feature }); feature = null; }
      else if (!inPhi) { psi = g.add({ op: 'sum', x: psi, axis: feature }); feature = null; }
    } else if (!inPhi || !inPsi) {
      return { why: `the gate varies along ${feature} but the query or key features do not` };
    }
  }
  // The part's own score, so that the parallel form of the program after this pass still means the same.
  let score = g.add({ op: 'binary', fn: 'mul', a: phi, b: psi });
  if (m.decay !== null) score = g.add({ op: 'binary', fn: 'mul', a: score, b: m.decay });
  if (feature) score = g.add({ op: 'sum', x: score, axis: feature });
  const name = k === 0 ? t.name : `${t.name}.${k}`;
  return { ...t, name, score, form: { kind: 'prefix', phi, psi, feature, decay } };
}
