// Which path of a verified token tree the target keeps, and the token it adds after it (the bonus).
//
// Greedy: from the root, follow the child whose token is the target's argmax at the current node; stop
// where no child matches. The bonus is the argmax at the last accepted node, so a step emits the accepted
// draft tokens plus one — never fewer tokens than plain decoding, and exactly the tokens it would emit.
//
// Sampling, the standard speculative-sampling rule (Leviathan et al., Chen et al. 2023), for a tree the
// recursive form of SpecInfer: at an accepted node with target distribution p (temperature, top-k, top-p
// applied exactly as plain sampling applies them) and children x_1, x_2, … drawn from q,
//   accept x_i with probability min(1, p(x_i)/q(x_i)); on rejection p ← norm(max(0, p − q)) and try x_{i+1};
//   if every child is rejected, the bonus is drawn from the last p.
// The emitted token then has distribution p whatever q is, provided the children are either deterministic
// (q one-hot at the token: a function of the context) or independent draws from the same q.
//
// For deterministic children (n-gram, Medusa, oracle, a greedy draft model) the rule is run as a coupling
// with one draw per emitted token: y = the token plain sampling draws from p with the depth's uniform
// (VerifyResult.picks); accept the child whose token is y, else emit y. P(accept x) = p(x) and, on rejection,
// y is distributed as p without x — the rule above with one-hot q — and the emitted tokens are exactly those
// plain sampling emits from the same seed, which is what makes the oracle draft exact under sampling.
import { sampleFromDistribution } from '../model/sampling.ts';
import { childrenOf, type TokenTree } from './token-tree.ts';

export interface Acceptance {
  /** Accepted nodes from the root (always node 0) down. */
  readonly path: readonly number[];
  /** The target's token after the last accepted node. */
  readonly bonus: number;
}

/** Follows picks: greedy acceptance, or the coupled rule for deterministic children. */
export function acceptByPicks(tree: TokenTree, picks: readonly number[]): Acceptance {
  const children = childrenOf(tree);
  const path = [0];
  for (;;) {
    const node = path[path.length - 1];
    const want = picks[node];
    const next = children[node].find((c) => tree.tokens[c] === want);
    if (next === undefined) return { path, bonus: want };
    path.push(next);
  }
}

/**
 * The sampling rule: nodes whose children are all deterministic follow `picks` (the coupling above); at a
 * node with sampled children (q given) the rejection rule runs on `targetProbs(node)` with `random`.
 */
export function acceptSampled(
  tree: TokenTree,
  picks: readonly number[],
  targetProbs: (node: number) => Float64Array,
  random: () => number,
): Acceptance {
  const children = childrenOf(tree);
  const path = [0];
  for (;;) {
    const node = path[path.length - 1];
    const kids = children[node];
    if (kids.every((c) => tree.q[c] === undefined)) {
      const next = kids.find((c) => tree.tokens[c] === picks[node]);
      if (next === undefined) return { path, bonus: picks[node] };
      path.push(next);
      continue;
    }
    const r = rejectionStep(targetProbs(node), kids.map((c) => ({ token: tree.tokens[c], q: tree.q[c] })), random);
    if (r.accepted < 0) return { path, bonus: r.token };
    path.push(kids[r.accepted]);
  }
}

/**
 * One node of the rule: children in order against p, each accepted with min(1, p(x)/q(x)), p replaced by
 * norm(max(0, p − q)) after each rejection; returns the accepted child's index, or −1 and the token drawn
 * from the final p.
 */
export function rejectionStep(
  p0: Float64Array,
  children: readonly { readonly token: number; readonly q?: Float64Array }[],
  random: () => number,
): { accepted: number; token: number } {
  let p = Float64Array.from(p0);
  for (let i = 0; i < children.length; i++) {
    const { token, q } = children[i];
    const qx = q ? q[token] : 1;
    const u = random();
    if (qx > 0 && u * qx < p[token]) return { accepted: i, token };
    const rest = new Float64Array(p.length);
    let sum = 0;
    for (let v = 0; v < p.length; v++) {
      rest[v] = Math.max(0, p[v] - (q ? q[v] : v === token ? 1 : 0));
      sum += rest[v];
    }
    // sum = 0 only when p = q, where acceptance was certain; keep p if rounding lands here.
    if (sum > 0) {
      for (let v = 0; v < rest.length; v++) rest[v] /= sum;
      p = rest;
    }
  }
  return { accepted: -1, token: sampleFromDistribution(p, random) };
}
