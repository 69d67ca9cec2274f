// The float64 tree form (backends/cpu/tree.ts) equals recurrent decoding along every root-to-leaf path, for
// every decodable variant, random trees (chains and stars among them) and committed prefixes that put the
// tree across a group boundary or leave the convolution's window reaching before position 0; commitPath
// leaves the state that recurrent steps over the accepted tokens leave.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createState, Recurrent, type RecurrentState } from '../backends/cpu/recurrent.ts';
import { commitPath, evaluateTree, rootPath, TreeForm, type TreeNode } from '../backends/cpu/tree.ts';
import { runPasses } from '../passes/pipeline.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import type { Program } from '../src/ir/types.ts';
import { relativeError, rng, type Tensor } from '../src/tensor.ts';
import { VARIANTS } from './references/index.ts';

const AXES = { h: 2, d: 3, e: 2 };
// Small C = 4 and K = 4 (or W = 3): prefixes 0..3 are shorter than the window, 3 and 7 put the root at the last
// position of a group (its children start the next one), 8 puts the root at a group's first position.
const PREFIXES = [0, 1, 2, 3, 5, 7, 8];

interface Setup {
  readonly program: Program;
  readonly sizes: Record<string, number>;
  readonly params: Record<string, Tensor>;
  /** Per-token inputs of a sequence of `n` tokens (seeded). */
  readonly tokens: (n: number, seed: number) => Record<string, Float64Array>[];
}

function setup(file: string, sizes: Readonly<Record<string, number>>): Setup {
  const source = loadVariant(file, { sizes });
  const program = runPasses(source);
  const axes = axisSizes(source, AXES);
  const params: Record<string, Tensor> = {};
  const fixed = makeInputs(source, { b: 1, t: 1, axes: AXES, seed: 1 });
  for (const d of program.params) params[d.name] = { shape: fixed[d.name].shape, data: Float64Array.from(fixed[d.name].data) };
  const tokens = (n: number, seed: number) => {
    const x = makeInputs(source, { b: 1, t: n, axes: AXES, seed });
    return Array.from({ length: n }, (_, t) =>
      Object.fromEntries(program.inputs.map((d) => {
        const per = x[d.name].data.length / n;
        return [d.name, Float64Array.from(x[d.name].data.subarray(t * per, (t + 1) * per))];
      })),
    );
  };
  return { program, sizes: axes, params, tokens };
}

/** Random parents: each node hangs under −1 or an earlier node of depth < maxDepth. */
function randomParents(n: number, maxDepth: number, draw: () => number): number[] {
  const parents: number[] = [];
  const depth: number[] = [];
  for (let i = 0; i < n; i++) {
    const choices = [-1, ...depth.flatMap((d, j) => (d < maxDepth ? [j] : []))];
    const p = choices[Math.floor(draw() * choices.length)];
    parents.push(p);
    depth.push(p < 0 ? 1 : depth[p] + 1);
  }
  return parents;
}

const SHAPES: readonly { name: string; parents: (draw: () => number) => number[] }[] = [
  { name: 'single node', parents: () => [-1] },
  { name: 'chain of 6', parents: () => [-1, 0, 1, 2, 3, 4] },
  { name: 'star of 5', parents: () => [-1, -1, -1, -1, -1] },
  { name: 'star under one root', parents: () => [-1, 0, 0, 0, 0] },
  { name: 'random of 1..12, depth ≤ 6', parents: (draw) => randomParents(1 + Math.floor(draw() * 12), 6, draw) },
  { name: 'random of 12, depth ≤ 6', parents: (draw) => randomParents(12, 6, draw) },
];

function committed(rec: Recurrent, prefix: readonly Record<string, Float64Array>[]): RecurrentState {
  const st = createState();
  for (const tok of prefix) rec.step(st, tok);
  return st;
}

const leaves = (parents: readonly number[]) => parents.map((_, i) => i).filter((i) => !parents.includes(i));

const CASES = VARIANTS.filter((c) => c.causal);

describe('tree form (float64) against recurrent decoding along each root-to-leaf path', () => {
  it('covers every decodable variant under examples/', () => {
    const files = ['examples/paper', 'examples/variants'].flatMap((d) => readdirSync(d).filter((f) => f.endsWith('.la')).map((f) => join(d, f)));
    const decodable = files.filter((f) => !runPasses(loadVariant(f)).terms.some((t) => t.noncausal));
    expect(CASES.map((c) => c.file).sort()).toEqual(decodable.sort());
  });

  CASES.forEach((c, n) => {
    it(`${c.file}: every node equals the recurrent output at it, for prefixes ${PREFIXES.join(', ')}`, () => {
      const s = setup(c.file, c.sizes);
      const rec = new Recurrent(s.program, s.params, s.sizes);
      const tree = new TreeForm(s.program, s.params, s.sizes);
      for (const P of PREFIXES) {
        SHAPES.forEach((shape, k) => {
          const seed = 100_000 + 1000 * n + 10 * P + k;
          const draw = rng(seed);
          const parents = shape.parents(draw);
          const toks = s.tokens(P + parents.length, seed);
          const prefix = toks.slice(0, P);
          const nodes: TreeNode[] = parents.map((parent, i) => ({ parent, inputs: toks[P + i] }));
          const state = committed(rec, prefix);
          const before = structuredClone(state);
          const got = tree.evaluate(state, nodes);
          expect(state, `${c.file} seed ${seed}: the tree form wrote the committed state`).toEqual(before);
          for (const leaf of leaves(parents)) {
            const st = committed(rec, prefix);
            for (const i of rootPath(nodes, leaf)) {
              const want = rec.step(st, nodes[i].inputs);
              const err = relativeError(got[i], want);
              expect(err, `${c.file} ${shape.name} prefix ${P} node ${i} (leaf ${leaf}), parents [${parents}], seed ${seed}: relative error ${err}`).toBeLessThanOrEqual(1e-9);
            }
          }
        });
      }
    });

    it(`${c.file}: commitPath leaves the state recurrent steps over the accepted tokens leave`, () => {
      const s = setup(c.file, c.sizes);
      const rec = new Recurrent(s.program, s.params, s.sizes);
      for (const P of [0, 2, 3, 7]) {
        const seed = 200_000 + 1000 * n + P;
        const draw = rng(seed);
        const parents = randomParents(10, 6, draw);
        const toks = s.tokens(P + parents.length + 5, seed);
        const prefix = toks.slice(0, P);
        const after = toks.slice(P + parents.length);
        const nodes: TreeNode[] = parents.map((parent, i) => ({ parent, inputs: toks[P + i] }));
        const accepted = rootPath(nodes, Math.floor(draw() * nodes.length));
        for (const path of [accepted, accepted.slice(0, 1), []]) {
          const folded = committed(rec, prefix);
          commitPath(s.program, s.params, folded, nodes, path, s.sizes);
          const stepped = committed(rec, prefix);
          for (const i of path) rec.step(stepped, nodes[i].inputs);
          expect(folded.position).toBe(P + path.length);
          for (const tok of after) {
            const a = rec.step(folded, tok);
            const b = rec.step(stepped, tok);
            expect(relativeError(a, b), `${c.file} prefix ${P} path [${path}] seed ${seed}`).toBe(0);
          }
        }
      }
    });
  });
});

describe('tree form: inputs it refuses', () => {
  const c = CASES.find((x) => x.file.endsWith('llama_linearized.la'))!;
  const s = setup(c.file, c.sizes);
  const toks = s.tokens(3, 9);

  it('refuses parents that are not earlier nodes', () => {
    const st = createState();
    expect(() => evaluateTree(s.program, s.params, st, [{ parent: -1, inputs: toks[0] }, { parent: 1, inputs: toks[1] }], s.sizes)).toThrow(/node 1 has parent 1.*topological/);
    expect(() => evaluateTree(s.program, s.params, st, [{ parent: -2, inputs: toks[0] }], s.sizes)).toThrow(/node 0 has parent -2/);
  });

  it('refuses an accepted path that does not run from a root through children', () => {
    const nodes: TreeNode[] = [{ parent: -1, inputs: toks[0] }, { parent: -1, inputs: toks[1] }, { parent: 0, inputs: toks[2] }];
    expect(() => commitPath(s.program, s.params, createState(), nodes, [1, 2], s.sizes)).toThrow(/entry 1 \(node 2\) has parent 0, expected 1/);
    expect(() => commitPath(s.program, s.params, createState(), nodes, [2], s.sizes)).toThrow(/entry 0 \(node 2\) has parent 0, expected -1/);
    expect(() => commitPath(s.program, s.params, createState(), nodes, [3], s.sizes)).toThrow(/not a node of this tree/);
  });

  it('refuses the leaky (noncausal) convolution', () => {
    const leaky = VARIANTS.find((x) => !x.causal)!;
    const p = runPasses(loadVariant(leaky.file, { sizes: leaky.sizes }));
    expect(() => new TreeForm(p, {}, {})).toThrow(/noncausal/);
  });
});
