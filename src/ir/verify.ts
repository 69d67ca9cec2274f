// The IR's invariants, checked after the frontend and after every pass:
// SSA order, types equal to re-inference, sides of scores and values, forms that point at real nodes.
import { GraphBuilder } from './builder.ts';
import { SourceError } from './span.ts';
import { aloneInExactNormalize, decayNode } from './terms.ts';
import { operands, type Id, type Program } from './types.ts';

export class VerifyError extends Error {
  override name = 'VerifyError';
}

export function verify(p: Program): void {
  const fail = (msg: string): never => {
    throw new VerifyError(`IR of ${p.name} is invalid: ${msg}`);
  };
  const b = new GraphBuilder([], p.axes);
  p.nodes.forEach((n, k) => {
    if (n.id !== k) fail(`node at index ${k} has id %${n.id}`);
    for (const o of operands(n)) if (!(o >= 0 && o < k)) fail(`%${k} reads %${o}, which is not defined before it`);
    let id: Id;
    try {
      if (n.op === 'input' || n.op === 'param') id = b.leaf({ op: n.op, name: n.name }, n.type.axes);
      else {
        const { id: _i, type: _t, span: _s, ...op } = n;
        id = b.add(op as never);
      }
    } catch (e) {
      if (e instanceof SourceError) fail(`%${k}: ${e.message}`);
      throw e;
    }
    const t = b.type(id!);
    if (t.side !== n.type.side || t.axes.join() !== n.type.axes.join()) {
      fail(`%${k} has type ${n.type.side}[${n.type.axes}] but its operands give ${t.side}[${t.axes}]`);
    }
  });
  const node = (id: Id, what: string) => p.nodes[id] ?? fail(`${what} refers to missing node %${id}`);
  for (const t of p.terms) {
    const v = node(t.value, `term ${t.name}'s value`);
    if (v.type.side !== 'token') fail(`term ${t.name}'s value %${t.value} is ${v.type.side}-side, not per-token`);
    if (v.type.axes.join() !== p.outAxes.join()) fail(`term ${t.name}'s value has axes [${v.type.axes}] but the output has [${p.outAxes}]`);
    const s = node(t.score, `term ${t.name}'s score`);
    if (s.type.side === 'token') fail(`term ${t.name}'s score is per-token`);
    for (const a of s.type.axes) if (!v.type.axes.includes(a)) fail(`term ${t.name}'s score axis ${a} is not an axis of its value`);
    const f = t.form;
    if (f.kind === 'prefix') {
      const phi = node(f.phi, `term ${t.name}'s phi`);
      const psi = node(f.psi, `term ${t.name}'s psi`);
      if (!['query', 'param', 'const'].includes(phi.type.side)) fail(`term ${t.name}'s phi is ${phi.type.side}-side`);
      if (!['key', 'param', 'const'].includes(psi.type.side)) fail(`term ${t.name}'s psi is ${psi.type.side}-side`);
      if (f.feature && !(phi.type.axes.includes(f.feature) && psi.type.axes.includes(f.feature))) fail(`term ${t.name}'s feature axis ${f.feature} is missing from phi or psi`);
      if (f.decay) node(decayNode(f.decay), `term ${t.name}'s decay`);
      if (t.mask.length !== 1 || !['causal', 'past_groups'].includes(t.mask[0].kind)) fail(`prefix term ${t.name} must have a causal or past_groups mask`);
    }
  }
  for (const t of p.terms) {
    if (t.form.kind !== 'softmax') continue;
    const score = p.nodes[t.score];
    if (!(score.op === 'unary' && score.fn === 'exp' && score.x === t.form.logit)) fail(`softmax term ${t.name}'s score %${t.score} is not exp of its logit %${t.form.logit}`);
    if (t.mask.length !== 1 || t.mask[0].kind !== 'causal') fail(`softmax term ${t.name} must have the causal mask alone`);
    if (!aloneInExactNormalize(p.output, t.name)) fail(`softmax term ${t.name} must be alone in an output item normalize(${t.name}, 0)`);
  }
  const names = new Set(p.terms.map((t) => t.name));
  for (const o of p.output) for (const n of o.kind === 'term' ? [o.term] : o.terms) if (!names.has(n)) fail(`output refers to unknown term ${n}`);
}
