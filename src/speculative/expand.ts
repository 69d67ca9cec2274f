// Filling a tree shape (tree-spec.ts) from a draft source, level by level: each level asks the draft once
// for the candidates of the whole previous level, so a draft that runs a model does one forward per level.
//
//   static   node at path [r1, …, rn] = the rn-th candidate of the node at [r1, …, rn−1]; a node whose
//            candidate list is too short is left out with its subtree
//   dynamic  (top:K) the K best children of the previous level by cumulative draft probability
//            (Π of the candidates' probs along the path), until the budget of draft nodes is spent
//   best     (best:K) one node at a time, the candidate with the highest cumulative probability among the K
//            best children of every node placed so far: for probabilities that are acceptance rates, each
//            node added is the one that adds most to the expected accepted length
// All stop at `depthLimit` draft levels (and at the draft's own maxDepth).
import type { Candidate } from './candidate.ts';
import type { DraftContext, DraftSource } from './draft.ts';
import { TreeBuilder, type TokenTree } from './token-tree.ts';
import type { TreeShape } from './tree-spec.ts';

export interface ExpandLimits {
  /** Draft nodes (root excluded) the verifier takes. */
  readonly budget: number;
  /** Draft levels below the root worth proposing (tokens left to generate − 1, position limits). */
  readonly depthLimit: number;
}

export async function expandTree(shape: TreeShape, draft: DraftSource, ctx: DraftContext, limits: ExpandLimits): Promise<TokenTree> {
  const root = ctx.tokens[ctx.tokens.length - 1];
  const b = new TreeBuilder(root);
  const maxDepth = Math.min(limits.depthLimit, draft.maxDepth ?? Infinity);
  if (shape.kind === 'static') {
    if (shape.paths.length > limits.budget) {
      throw new Error(`tree ${shape.spec} has ${shape.paths.length} draft nodes, more than --max-nodes ${limits.budget}`);
    }
    const nodeOf = new Map<string, number>([['', 0]]);
    for (let level = 1; level <= maxDepth; level++) {
      const paths = shape.paths.filter((p) => p.length === level && nodeOf.has(p.slice(0, -1).join(',')));
      if (paths.length === 0) break;
      const frontier = [...new Set(paths.map((p) => nodeOf.get(p.slice(0, -1).join(','))!))];
      const k = Math.max(...paths.map((p) => p[level - 1])) + 1;
      const cands = await draft.candidates(ctx, b.build(), frontier, k);
      for (const p of paths) {
        const parent = nodeOf.get(p.slice(0, -1).join(','))!;
        const c = cands[frontier.indexOf(parent)]?.[p[level - 1]];
        if (c) nodeOf.set(p.join(','), b.add(parent, c.token, c.q));
      }
    }
  } else if (shape.kind === 'best') {
    await growBestFirst(b, draft, ctx, shape.width, limits.budget, maxDepth);
  } else {
    let frontier = [0];
    const score = new Map<number, number>([[0, 1]]);
    for (let level = 1; level <= maxDepth && b.size - 1 < limits.budget; level++) {
      const cands = await draft.candidates(ctx, b.build(), frontier, shape.width);
      const all = frontier.flatMap((parent, f) => (cands[f] ?? []).slice(0, shape.width).map((c, rank) => ({ f, parent, rank, c, s: score.get(parent)! * c.prob })));
      const take = Math.min(shape.width, limits.budget - (b.size - 1));
      const chosen = all.some((x) => x.c.q) ? drawPrefixes(all, frontier.map((p) => score.get(p)!), take) : bestFirst(all, take);
      if (chosen.length === 0) break;
      frontier = chosen.map((x) => {
        const node = b.add(x.parent, x.c.token, x.c.q);
        score.set(node, x.s);
        return node;
      });
    }
  }
  const tree = b.build();
  await draft.finalize?.(ctx, tree);
  return tree;
}

/** A candidate child of `parent` waiting to be placed, with its cumulative score. */
interface Waiting {
  readonly parent: number;
  readonly c: Candidate;
  readonly s: number;
  /** Arrival order: ties go to the earlier (the better-ranked sibling, the shallower node). */
  readonly order: number;
}

async function growBestFirst(b: TreeBuilder, draft: DraftSource, ctx: DraftContext, width: number, budget: number, maxDepth: number): Promise<void> {
  const waiting: Waiting[] = [];
  const score = new Map<number, number>([[0, 1]]);
  let arrivals = 0;
  const offer = async (node: number, depth: number) => {
    if (depth > maxDepth) return; // a node of depth d (the root's 1) has its children at draft level d
    const [cands = []] = await draft.candidates(ctx, b.build(), [node], width);
    for (const c of cands.slice(0, width)) {
      if (c.q) throw new Error(`--tree best:${width} places a sampled draft's candidates by their values, which the rejection rule forbids; use top:K or a static tree`);
      waiting.push({ parent: node, c, s: score.get(node)! * c.prob, order: arrivals++ });
    }
  };
  await offer(0, 1);
  const depthOf = new Map<number, number>([[0, 1]]);
  while (b.size - 1 < budget && waiting.length > 0) {
    let best = 0;
    for (let i = 1; i < waiting.length; i++) {
      const w = waiting[i];
      if (w.s > waiting[best].s || (w.s === waiting[best].s && w.order < waiting[best].order)) best = i;
    }
    const [w] = waiting.splice(best, 1);
    const node = b.add(w.parent, w.c.token);
    score.set(node, w.s);
    depthOf.set(node, depthOf.get(w.parent)! + 1);
    await offer(node, depthOf.get(node)!);
  }
}

interface Scored {
  readonly f: number;
  readonly parent: number;
  readonly rank: number;
  readonly c: Candidate;
  readonly s: number;
}

/** The `take` best candidates by cumulative probability (stable), in parent and rank order. */
function bestFirst(all: readonly Scored[], take: number): Scored[] {
  return all
    .map((x, i) => ({ x, i }))
    .sort((a, b) => b.x.s - a.x.s || a.i - b.i)
    .slice(0, take)
    .sort((a, b) => a.i - b.i)
    .map((a) => a.x);
}

/**
 * Sampled candidates must stay independent draws from q for the rejection rule: a parent keeps a prefix
 * of its draws whose length depends on the parents' scores only (slots dealt round-robin, best parent
 * first), never on the values drawn.
 */
function drawPrefixes(all: readonly Scored[], parentScores: readonly number[], take: number): Scored[] {
  const available = parentScores.map((_, f) => all.filter((x) => x.f === f).length);
  const order = parentScores.map((s, f) => ({ s, f })).sort((a, b) => b.s - a.s || a.f - b.f).map((x) => x.f);
  const counts = parentScores.map(() => 0);
  for (let dealt = 0, s = 0; dealt < take && s < take * order.length; s++) {
    const f = order[s % order.length];
    if (counts[f] < available[f]) {
      counts[f]++;
      dealt++;
    }
  }
  return all.filter((x) => x.rank < counts[x.f]);
}
