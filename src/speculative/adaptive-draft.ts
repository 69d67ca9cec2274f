// The adaptive draft (`--speculate adaptive`): no model and no training. A tri-gram table (trigram-table.ts)
// counted online over the prompt and every token generated proposes each node's continuations; which of them
// become branches is decided by how often such proposals were accepted so far. Every proposal belongs to an
// arm — its table order (tri- or bi-gram), its rank, how dominant it is in its context (count / total, in
// quarters) and how much evidence the context has (total 1, 2–3, 4+) — and its score is a Thompson draw from
// that arm's Beta posterior of the acceptance rate (thompson.ts). With `--tree best:K` (its default) the tree
// is grown best-first on the product of those draws along each path, so confident arms grow deep chains,
// uncertain ones get a sibling or two, and an arm that keeps failing stops receiving nodes — until a lucky
// draw explores it again. After verification each node whose parent was accepted is one trial of its arm:
// accepted or not.
//
// Under sampling the draft is deterministic in the acceptance rule's sense (acceptance.ts's coupling): its
// proposals depend on the text so far and its own seeded draws, never on the target's uniforms.
import type { Candidate } from './candidate.ts';
import type { DraftContext, DraftSource, TextProposals } from './draft.ts';
import { ThompsonArms } from './thompson.ts';
import { pathTokens, type TokenTree } from './token-tree.ts';
import { TrigramTable, type Continuation } from './trigram-table.ts';

export class AdaptiveDraft implements DraftSource {
  readonly name = 'adaptive';
  private table = new TrigramTable();
  private arms: ThompsonArms;
  /** This step's proposals: parent path tokens + '|' + token → arm. */
  private proposed = new Map<string, string>();
  /** Per step: nodes placed whose parent was accepted, and how many of them were (for acceptanceHistory). */
  readonly history: { tested: number; accepted: number }[] = [];

  constructor(private readonly seed = 0) {
    this.arms = new ThompsonArms(seed);
  }

  begin(ctx: DraftContext): void {
    this.table = new TrigramTable();
    this.table.extend(ctx.tokens);
    this.arms = new ThompsonArms(this.seed);
    this.proposed.clear();
    this.history.length = 0;
  }

  candidates(ctx: DraftContext, tree: TokenTree, nodes: readonly number[], k: number): Candidate[][] {
    this.table.catchUp(ctx.tokens);
    return nodes.map((node) => {
      const path = pathTokens(tree, node);
      const key = path.join(',');
      return this.table
        .continuations([...ctx.tokens, ...path.slice(1)], k)
        .map((c) => {
          const arm = armOf(c);
          this.proposed.set(`${key}|${c.token}`, arm);
          return { token: c.token, prob: this.arms.sample(arm) };
        })
        .sort((a, b) => b.prob - a.prob);
    });
  }

  accepted(tree: TokenTree, path: readonly number[]): void {
    const onPath = new Set(path);
    let tested = 0;
    let accepted = 0;
    for (let n = 1; n < tree.tokens.length; n++) {
      if (!onPath.has(tree.parents[n])) continue;
      const arm = this.proposed.get(`${pathTokens(tree, tree.parents[n]).join(',')}|${tree.tokens[n]}`);
      if (arm === undefined) continue; // not this draft's proposal
      const hit = onPath.has(n);
      this.arms.record(arm, hit);
      tested++;
      if (hit) accepted++;
    }
    this.history.push({ tested, accepted });
    this.proposed.clear();
  }

  /**
   * The table's continuations of a growing text counted over the text itself, as candidates() proposes them at a
   * tree's root (which of them a tree keeps is the Thompson draws' choice): a table of its own, so the draft's arms
   * and table are untouched.
   */
  textProposals(): TextProposals {
    const table = new TrigramTable();
    const last: number[] = [];
    return {
      push: (token) => {
        table.extend([token]);
        last.push(token);
        if (last.length > 2) last.shift();
      },
      proposals: (k) => table.continuations(last, k).map((c) => c.token),
    };
  }

  /** The posterior mean acceptance rate of the arm a continuation falls in (for tests and reports). */
  armMean(c: Continuation): number {
    return this.arms.mean(armOf(c));
  }
}

export function armOf(c: Continuation): string {
  const share = Math.min(3, Math.floor((4 * c.count) / c.total));
  const support = c.total >= 4 ? 2 : c.total >= 2 ? 1 : 0;
  return `${c.order}:${Math.min(c.rank, 3)}:${share}:${support}`;
}
