// The gradient program as IR (passes/autodiff.ts, src/ir/grad.ts): every term stage is a verified Program that
// prints and reads back, whose terms the passes classify (prefix, Toeplitz or bounded quadratic, so the chunked
// lowering can take them), and the derivation follows DESIGN.md §3b: reverse-time stages for sums over later
// positions, the reversed window for a convolution's dv, padded reverse-time group masks, gates read one position
// later and differentiated in log space, lag-indexed parameters scattered by a pairs stage.
import { describe, expect, it } from 'vitest';
import { differentiate, printGradAfter, runPassesOnGrad } from '../passes/autodiff.ts';
import { PASSES } from '../passes/pipeline.ts';
import { compileSource } from '../src/frontend/compile.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { printGradProgram, type GradProgram, type Stage, type TermStage } from '../src/ir/grad.ts';
import { printProgram } from '../src/ir/print.ts';
import { readProgram } from '../src/ir/read.ts';
import { EXTRA_VARIANTS, GRAD_CASES } from './helpers/grad-variants.ts';

const CASES = GRAD_CASES;

const termStages = (gp: GradProgram): TermStage[] => gp.stages.filter((s): s is TermStage => s.kind === 'term');
const stage = (gp: GradProgram, name: string): Stage => gp.stages.find((s) => s.name === name) ?? expect.fail(`no stage ${name} in ${gp.stages.map((s) => s.name).join(', ')}`);
const term = (gp: GradProgram, name: string): TermStage => {
  const s = stage(gp, name);
  return s.kind === 'term' ? s : expect.fail(`${name} is a ${s.kind} stage`);
};
/** The forms the passes give a term stage's terms. */
const forms = (st: TermStage): string[] => runPassesOnGrad({ forward: st.program, builtins: [], stages: [st], gradients: [] }).stages.flatMap((s) => (s.kind === 'term' ? s.program.terms.map((t) => t.form.kind) : []));

describe('gradient program as IR', () => {
  for (const c of CASES) {
    it(`${c.name}: every term stage reads back from its text, and the passes classify every term`, () => {
      const gp = differentiate(c.load());
      expect(gp.gradients).toEqual([...gp.forward.inputs, ...gp.forward.params].map((d) => `d${d.name}`));
      const seen = new Map<string, string[]>();
      const passed = runPassesOnGrad(gp, (st, pass) => seen.set(st.name, [...(seen.get(st.name) ?? []), pass]));
      for (const st of termStages(gp)) {
        const text = printProgram(st.program);
        expect(printProgram(readProgram(text, `${st.name}.ir`)), st.name).toBe(text);
        expect(seen.get(st.name), st.name).toEqual(PASSES.map((p) => p.name));
      }
      for (const st of termStages(passed)) for (const t of st.program.terms) expect(t.form.kind, `${st.name}: term ${t.name}`).not.toBe('general');
    });
  }

  it('prints every stage under a header that says its kind, direction, reads and writes', () => {
    const gp = differentiate(loadVariant('examples/paper/elu_aug.la'));
    const text = printGradProgram(gp);
    expect(text).toMatch(/^# gradient of elu_aug: \d+ stages; writes dq, dk, dv, dw$/m);
    gp.stages.forEach((st, k) => expect(text).toContain(`## stage ${k + 1}: ${st.name} (`));
    expect(text).toContain('## stage 6: adj.lin.j.fk (term, reverse time)\n');
    expect(text).toContain('# reads dN.0, v, dZ.0, k\n# writes adj.lin.i.fq\nvariant adj.lin.i.fq\n');
    expect(text).toMatch(/scatter %\d+ into adj\.conv\.s\.w\[K = %\d+\]  : \[h, K\]/);
    expect(text).toContain('# builtin ones.h[b, t, h]: ones');
  });
});

describe('the derivation (DESIGN.md §3b)', () => {
  it('elu: dφ(q) is a forward prefix sum with score dN·v (+ dZ) and value φ(k); dψ(k) and dv are reverse-time prefix sums', () => {
    const gp = differentiate(loadVariant('examples/paper/elu.la'));
    expect(gp.stages.map((s) => `${s.kind} ${s.name}${s.kind === 'term' ? ` ${s.time}` : ''}`)).toEqual([
      'term recompute.n.0 forward',
      'term recompute.z.0 forward',
      'map cotangents',
      'term adj.lin.value reverse',
      'term adj.lin.i.fq forward',
      'term adj.lin.j.fk reverse',
      'map token-sweep',
    ]);
    const dfq = term(gp, 'adj.lin.i.fq');
    expect(printProgram(dfq.program)).toContain('term lin.0 : causal score %8 value %12 form general');
    expect(dfq.program.lets).toHaveProperty('fk', dfq.program.terms[0].value);
    for (const name of ['adj.lin.i.fq', 'adj.lin.j.fk', 'adj.lin.value']) expect(forms(term(gp, name)), name).toEqual(name === 'adj.lin.value' ? ['prefix'] : ['prefix', 'prefix']);
  });

  it("a convolution's dv is the reversed window of dN (Toeplitz, lags kept) and dw comes from a pairs stage at the lag", () => {
    const gp = differentiate(loadVariant('examples/paper/elu_aug.la'));
    const dv = term(gp, 'adj.conv.value');
    expect(dv.time).toBe('reverse');
    expect(dv.program.terms[0].mask).toEqual([{ kind: 'window', size: 4 }]);
    const passed = runPassesOnGrad({ ...gp, stages: [dv] }).stages[0] as TermStage;
    expect(passed.program.terms[0].form).toEqual({ kind: 'toeplitz', lags: [0, 3] });
    const dw = stage(gp, 'adj.conv.s.w');
    expect(dw.kind === 'pairs' && dw.axis === 'K' && dw.mask[0].kind === 'window').toBe(true);
  });

  it('flash: reverse-time stages under group(C) and past_groups(C) pad T to a multiple of C; forward ones do not', () => {
    const gp = differentiate(loadVariant('examples/paper/flash.la', { sizes: { C: 4 } }));
    for (const st of termStages(gp)) expect(st.pad, st.name).toBe(st.time === 'reverse' ? 4 : 1);
    expect(forms(term(gp, 'adj.local.j.k'))).toEqual(['quadratic']);
    expect(forms(term(gp, 'adj.global.j.k'))).toEqual(['prefix']);
    const dk = term(gp, 'adj.local.j.k');
    expect(dk.program.inputs.map((d) => `${d.name}:${dk.bindings[d.name].pad}`).sort()).toEqual(['do:zero', 'k:edge', 'q:edge', 'v:edge']);
    expect(stage(gp, 'adj.local.s.b').kind).toBe('pairs');
  });

  it('gla: reverse-time stages read the gate one position later; d log α is one reverse cumulative sum of q ⊙ dq − k ⊙ dk; dg divides by nothing', () => {
    const gp = differentiate(loadVariant('examples/variants/gla.la'));
    expect(stage(gp, 'gates').kind).toBe('map');
    for (const st of termStages(gp).filter((s) => s.time === 'reverse' && s.name !== 'dlog.alpha')) {
      expect(st.bindings['gate.alpha.next'], st.name).toEqual({ tensor: 'gate.alpha', shift: 1, pad: 'one' });
    }
    expect(gp.stages.some((s) => /^[PK]\./.test(s.name))).toBe(false); // Euler's identity: no extra stages
    const cum = printProgram(term(gp, 'dlog.alpha').program);
    expect(cum).toContain('%7 = sub %3 %6  : token[h, d]\nterm cumsum : causal score %0 value %7 form general');
    const sweep = stage(gp, 'token-sweep');
    if (sweep.kind !== 'map') expect.fail('token-sweep is a map');
    expect(sweep.graph.nodes.filter((n) => n.op === 'binary' && n.fn === 'div' && n.type.side !== 'const')).toEqual([]);
  });

  it('a decay that the score does not carry linearly gets P and K stages; absolute positions reverse as negated positions', () => {
    const gp = differentiate(compileSource(EXTRA_VARIANTS.zoo_scores, 'zoo_scores.la'));
    expect(term(gp, 'P.wg.alpha').time).toBe('forward');
    expect(term(gp, 'K.wg.alpha').time).toBe('reverse');
    expect(term(gp, 'adj.pos.j.k').positions).toBe('negated');
    expect(term(gp, 'adj.pos.i.q').positions).toBe('forward');
    expect(printProgram(term(gp, 'adj.pos.j.k').program)).toMatch(/= position i  : query\[\]\n%\d+ = neg %\d+  : query\[\]/);
    // dot(q[i], k[j], d) * sum(q[i], d): the adjoint of sum(q[i], d) is g·(q·k), two contractions — split (recipe.ts)
    expect(term(gp, 'adj.gate.i.n32.W').program.outAxes).toEqual(['h', 'e']);
  });

  it('leaky_dwconv: the centred convolution keeps its noncausal mask in reverse time (parallel form only)', () => {
    const gp = differentiate(loadVariant('examples/paper/leaky_dwconv.la'));
    const dv = term(gp, 'adj.conv.value');
    expect(dv.program.terms[0].noncausal).toBe(true);
    expect(dv.program.terms[0].mask).toEqual([{ kind: 'centered', size: 3 }]);
    expect(forms(dv)).toEqual(['quadratic']);
  });

  it('retnet: γ receives Σ_{b,t} of its d log and then divides by γ', () => {
    const gp = differentiate(loadVariant('examples/variants/retnet.la'));
    const sums = stage(gp, 'token-sums');
    expect(sums.kind === 'reduce' && sums.outputs.map((o) => o.tensor)).toEqual(['sum.dlog.gamma']);
    const params = stage(gp, 'param-sums');
    if (params.kind !== 'params') expect.fail('param-sums is a params stage');
    const out = params.graph.nodes[params.outputs[0].id];
    expect(out.op === 'binary' && out.fn).toBe('div');
  });

  it('refuses a variant whose gradient names would collide', () => {
    const src = 'variant clash\ninput q[h, d], dq[h, d], v[h, e]\nterm t : causal score dot(q[i], dq[j], d) value v\noutput t';
    expect(() => differentiate(compileSource(src, 'clash.la'))).toThrow(/declares both q and dq/);
  });
});

describe('printing the gradient program after a pass (for linattn ir --grad --print-after)', () => {
  it('shows each term stage as the named pass leaves it, and refuses an unknown pass', () => {
    const gp = differentiate(loadVariant('examples/paper/elu_aug.la'));
    const text = printGradAfter(gp, 'separability');
    expect(text).toMatch(/term conv : window\(4\) score %\d+ value %\d+ form toeplitz lags 0\.\.3/);
    expect(text).toMatch(/term lin\.0\.1 : causal score %\d+ value %\d+ form prefix phi/);
    expect(text).not.toContain('form general');
    expect(printGradAfter(gp, 'all').match(/^# ======== after /gm)).toHaveLength(PASSES.length);
    expect(() => printGradAfter(gp, 'fold')).toThrow(/unknown pass 'fold'/);
  });
});
