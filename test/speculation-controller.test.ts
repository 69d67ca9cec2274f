// The cost-aware speculation controller (src/speculative/speculation-controller.ts) against a simulated
// generation with a fake clock: each option costs a fixed time per decision and produces a set number of
// tokens, and the test checks which option gets the tokens.
import { describe, expect, it } from 'vitest';
import { FixedSchedule, formatPolicySummary, PLAIN_RUN_GROWTH, SpeculationController, TREE_STEPS } from '../src/speculative/speculation-controller.ts';

interface Cost {
  /** Wall time of one decision of the option, ms. */
  readonly ms: number;
  /** Tokens it produces. */
  readonly tokens: number;
}

interface Run {
  readonly chosen: number[];
  /** Per decision: its tokens and ms. */
  readonly costs: Cost[];
}

/** Runs `decisions` decisions; `costs(option, decision)` says what each costs. */
function simulate(c: SpeculationController, clock: { now: number }, decisions: number, costs: (option: number, i: number) => Cost): Run {
  const run: Run = { chosen: [], costs: [] };
  for (let i = 0; i < decisions; i++) {
    const o = c.next();
    const cost = costs(o, i);
    clock.now += cost.ms;
    c.record(cost.tokens);
    run.chosen.push(o);
    run.costs.push(cost);
  }
  return run;
}

/** Tokens per ms of decisions [from, to), as a fraction of `best` (the best option's tokens per ms). */
function efficiency(run: Run, from: number, to: number, best: Cost): number {
  const part = run.costs.slice(from, to);
  const rate = part.reduce((a, x) => a + x.tokens, 0) / part.reduce((a, x) => a + x.ms, 0);
  return rate / (best.tokens / best.ms);
}

function controller(trees: string[], opts: { probeTokens?: number; order?: number[]; exploreCutoff?: number } = {}) {
  const clock = { now: 0 };
  return { clock, c: new SpeculationController({ trees, clock: () => clock.now, plainTokens: 16, ...opts }) };
}

// The H200 today: plain 3291 tokens/s → 16 tokens in 4.86 ms; a chain:3 step 0.87 ms + 0.1 ms per node.
const PLAIN: Cost = { ms: 4.86, tokens: 16 };

describe('speculation controller', () => {
  it('runs plain decoding when every tree yields fewer tokens per second (the trained H200 model)', () => {
    const { clock, c } = controller(['chain:1', 'chain:3']);
    // chain:1 accepts 1.8 tokens in 0.97 ms (1856/s), chain:3 2.69 in 1.17 ms (2299/s): plain's 3292/s wins.
    const run = simulate(c, clock, 200, (o) => (o === 0 ? PLAIN : o === 1 ? { ms: 0.97, tokens: 1.8 } : { ms: 1.17, tokens: 2.69 }));
    expect(run.chosen.slice(0, 6).sort()).toEqual([0, 0, 1, 1, 2, 2]); // each option tried twice first
    expect(c.best()).toBe(0);
    // After exploring, within 5% of plain decoding's speed: the probes of the trees cost little.
    expect(efficiency(run, 6, 200, PLAIN)).toBeGreaterThan(0.95);
    const s = c.summary();
    expect(s[0].tokens / s.reduce((a, x) => a + x.tokens, 0)).toBeGreaterThan(0.9);
  });

  it('speculates with the fastest tree when speculation pays (the oracle on the 12-layer model)', () => {
    const { clock, c } = controller(['chain:1', 'chain:3', 'chain:7']);
    const chain = (n: number): Cost => ({ ms: 0.87 + 0.05 * n, tokens: n + 1 });
    const run = simulate(c, clock, 300, (o) => (o === 0 ? PLAIN : chain([1, 3, 7][o - 1])));
    expect(c.best()).toBe(3);
    expect(efficiency(run, 8, 300, chain(7))).toBeGreaterThan(0.9);
    expect(run.chosen.slice(8)).toContain(0); // plain still probed now and then
  });

  it('re-probes: a tree that lost on early text takes over once its acceptance rises, and gives way when it falls', () => {
    const { clock, c } = controller(['chain:3']);
    // The draft accepts nothing on the first 150 decisions, then 3 of 3 (4 tokens per 0.9 ms ≈ 4444/s), then nothing again.
    const phase = (i: number) => (i < 150 ? 'cold' : i < 400 ? 'hot' : 'cold');
    const hot: Cost = { ms: 0.9, tokens: 4 };
    const run = simulate(c, clock, 600, (o, i) => (o === 0 ? PLAIN : phase(i) === 'hot' ? hot : { ms: 0.9, tokens: 1 }));
    expect(efficiency(run, 4, 150, PLAIN)).toBeGreaterThan(0.9);
    // Some decisions to notice the change (a probe comes after 96 tokens, ~6 plain runs), then the tree's speed.
    expect(efficiency(run, 200, 400, hot)).toBeGreaterThan(0.9);
    expect(efficiency(run, 450, 600, PLAIN)).toBeGreaterThan(0.9);
  });

  it('never probes when told to wait longer than the run, so the losing option is tried only while exploring', () => {
    // chain:3 at 1000 tokens/s against plain's 3292: below half the best, it is not explored a second time …
    const { clock, c } = controller(['chain:3'], { probeTokens: 1e9 });
    const run = simulate(c, clock, 100, (o) => (o === 0 ? PLAIN : { ms: 1, tokens: 1 }));
    expect(run.chosen.filter((o) => o === 1)).toHaveLength(1);
    // … unless every option is explored `explore` times (exploreCutoff 0).
    const all = controller(['chain:3'], { probeTokens: 1e9, exploreCutoff: 0 });
    expect(simulate(all.c, all.clock, 100, (o) => (o === 0 ? PLAIN : { ms: 1, tokens: 1 })).chosen.filter((o) => o === 1)).toHaveLength(2);
  });

  it('explores in the given order, and past one look only the options within the cutoff of the best', () => {
    // Options: plain 3292/s, chain:3 (2299/s), chain:3×4 (5000/s), chain:15×4 (1000/s: low acceptance).
    const costs = (o: number): Cost => [PLAIN, { ms: 1.17, tokens: 2.69 }, { ms: 2, tokens: 10 }, { ms: 8, tokens: 8 }][o];
    const order = [2, 3, 0, 1];
    const { clock, c } = controller(['chain:3', 'chain:3×4', 'chain:15×4'], { order });
    const run = simulate(c, clock, 40, costs);
    // First round in order; then the second looks only for those at ≥ half of chain:3×4's rate: itself (5000/s)
    // and plain (3292/s), not chain:3 (2299/s) or chain:15×4 (1000/s); then chain:3×4 is exploited.
    expect(run.chosen.slice(0, 6)).toEqual([2, 3, 0, 1, 2, 0]);
    expect(run.chosen.slice(6, 20).every((o) => o === 2)).toBe(true);
    // Against the default (every option twice, index order): fewer decisions go to losing options.
    const old = controller(['chain:3', 'chain:3×4', 'chain:15×4'], { exploreCutoff: 0 });
    const oldRun = simulate(old.c, old.clock, 40, costs);
    expect(oldRun.chosen.slice(0, 8)).toEqual([0, 1, 2, 3, 0, 1, 2, 3]);
    const losing = (r: Run) => r.chosen.slice(0, 20).filter((o) => o === 1 || o === 3).length;
    expect(losing(run)).toBe(2);
    expect(losing(oldRun)).toBe(4);
    expect(efficiency(run, 0, 20, costs(2))).toBeGreaterThan(efficiency(oldRun, 0, 20, costs(2)));
    expect(() => controller(['chain:3'], { order: [0, 0] })).toThrow(/distinct options/);
    expect(() => controller(['chain:3'], { order: [2] })).toThrow(/options in 0\.\.1/);
  });

  it('runs a tree decision of TREE_STEPS steps by default, of treeSteps when given', () => {
    expect(new SpeculationController({ trees: ['chain:3'] }).treeRun()).toBe(TREE_STEPS);
    expect(new SpeculationController({ trees: ['chain:3'], treeSteps: 1 }).treeRun()).toBe(1);
    expect(() => new SpeculationController({ trees: ['chain:3'], treeSteps: 0 })).toThrow(/treeSteps/);
  });

  it('a fixed schedule repeats and the summary prints shares and rates', () => {
    const clock = { now: 0 };
    const f = new FixedSchedule(['chain:3'], [1, 0, 1], 8, () => clock.now);
    const got: number[] = [];
    for (let i = 0; i < 4; i++) {
      const o = f.next();
      got.push(o);
      clock.now += o === 0 ? 4 : 1;
      f.record(o === 0 ? 8 : 2);
    }
    expect(got).toEqual([1, 0, 1, 1]);
    expect(formatPolicySummary(f.summary())).toBe('plain 57% of tokens at 2000 tokens/s (1 decisions), chain:3 43% of tokens at 2000 tokens/s (3 decisions)');
    expect(() => new FixedSchedule(['chain:3'], [2], 8)).toThrow(/options must be integers in 0\.\.1/);
  });

  it('a fixed schedule keeps the least ms a step of each option whose decisions said their steps', () => {
    const clock = { now: 0 };
    const f = new FixedSchedule(['a', 'b'], [1, 2, 1, 0], 4, () => clock.now);
    const take = (ms: number, tokens: number, steps?: number) => {
      f.next();
      clock.now += ms;
      f.record(tokens, steps);
    };
    take(10, 4, 2); // a: 5 ms a step
    take(9, 3); // b: no steps said
    take(6, 4, 3); // a: 2 ms a step
    take(4, 4); // plain
    expect([0, 1, 2].map((o) => f.fastestMsPerStep(o))).toEqual([undefined, 2, undefined]);
  });

  it('a decision taken ahead starts at the record of the one in progress, and counts as made while exploring', () => {
    // Chained runs back to back (generate.ts): decision k + 1 is chosen before k is read, and timed from k's end.
    const { clock, c } = controller(['chain:3', 'chain:3×4'], { order: [2, 1, 0] });
    expect(() => c.ahead()).toThrow(/without a decision in progress/);
    expect(c.next()).toBe(2);
    // Exploring: chain:3×4's first decision, unrecorded, already counts; taken ahead, its second look follows at once
    // (its runs back to back), then the next in order, chain:3.
    expect(c.ahead()).toBe(2);
    expect(() => c.ahead()).toThrow(/twice without record/);
    clock.now += 3;
    c.record(9); // chain:3×4: 9 tokens in 3 ms; its second look starts now
    expect(() => c.next()).toThrow(/twice without record/);
    expect(c.ahead()).toBe(1); // chain:3×4 has its two looks (one in progress): chain:3
    clock.now += 3;
    c.record(9);
    clock.now += 2;
    c.record(2);
    const s = c.summary();
    expect(s.map((o) => [o.decisions, o.tokens, o.ms])).toEqual([[0, 0, 0], [1, 2, 2], [2, 18, 6]]);
    expect(c.next()).toBe(0); // plain, the last unexplored; nothing taken ahead is left
    const f = new FixedSchedule(['chain:3'], [1, 1, 0], 8, () => clock.now);
    expect([f.next(), f.ahead()]).toEqual([1, 1]);
    clock.now += 1;
    f.record(3);
    clock.now += 5;
    f.record(4);
    expect(f.next()).toBe(0);
    expect(f.summary().map((o) => [o.decisions, o.tokens, o.ms])).toEqual([[0, 0, 0], [2, 7, 6]]);
  });
});

describe('measurements carried to the next generation (ControllerOptions.from)', () => {
  const TREE: Cost = { ms: 1.2, tokens: 10 }; // a chained run: 8333 tokens/s against plain's 3292
  const costs = (o: number) => (o === 0 ? PLAIN : o === 1 ? TREE : { ms: 1.0, tokens: 2 });

  it('a controller started from another\'s state explores nothing it measured and starts from its best', () => {
    const first = controller(['chain:3×4', 'chain:1×4']);
    simulate(first.c, first.clock, 20, costs);
    const state = first.c.state();
    expect(state.labels).toEqual(['plain', 'chain:3×4', 'chain:1×4']);
    // A fresh controller explores: its first decisions are every option.
    const fresh = controller(['chain:3×4', 'chain:1×4']);
    expect(new Set(simulate(fresh.c, fresh.clock, 3, costs).chosen)).toEqual(new Set([0, 1, 2]));
    // Carried: the best from the first decision, and its summary counts only its own decisions.
    const clock = { now: 1000 };
    const carried = new SpeculationController({ trees: ['chain:3×4', 'chain:1×4'], clock: () => clock.now, plainTokens: 16, from: state });
    const run = simulate(carried, clock, 10, costs);
    expect(run.chosen.slice(0, 5)).toEqual([1, 1, 1, 1, 1]);
    expect(carried.summary().reduce((a, o) => a + o.decisions, 0)).toBe(10);
    // Its state adds up both runs.
    expect(carried.state().options.reduce((a, o) => a + o.decisions, 0)).toBe(30);
  });

  it('refuses measurements of other options, or negative ones', () => {
    const { clock, c } = controller(['chain:3×4']);
    simulate(c, clock, 4, costs);
    const state = c.state();
    expect(() => new SpeculationController({ trees: ['chain:1×4'], from: state })).toThrow(/saved measurements are of the options \[plain, chain:3×4\], this run offers \[plain, chain:1×4\]/);
    const bad = { ...state, options: state.options.map((o, i) => (i === 1 ? { ...o, ms: -1 } : o)) };
    expect(() => new SpeculationController({ trees: ['chain:3×4'], from: bad })).toThrow(/chain:3×4 have a negative count or time/);
  });
});

describe('plain runs while plain decoding is exploited', () => {
  it('double up to 8 × plainTokens while plain is exploited, and start again at plainTokens after anything else', () => {
    const { clock, c } = controller(['chain:3×4']);
    const runs: [number, number][] = [];
    // Plain: 3292 tokens/s whatever the run length; the tree: a third of that.
    simulate(c, clock, 40, (o) => {
      if (o !== 0) return { ms: 3, tokens: 3.3 };
      const n = c.plainRun();
      runs.push([o, n]);
      return { ms: (PLAIN.ms * n) / 16, tokens: n };
    });
    const lengths = runs.map(([, n]) => n);
    // Exploration's plain decisions run 16 tokens; then 16, 32, 64, 128, 128, … while exploited (a probe of the tree
    // in between starts the doubling again).
    expect(lengths.slice(0, 2)).toEqual([16, 16]);
    expect(Math.max(...lengths)).toBe(16 * PLAIN_RUN_GROWTH);
    expect(lengths).toContain(32);
    expect(lengths).toContain(64);
    for (let i = 1; i < lengths.length; i++) expect(lengths[i] === 16 || lengths[i] === 2 * lengths[i - 1] || lengths[i] === lengths[i - 1], `${lengths}`).toBe(true);
  });

  it('a tree that wins keeps plain runs at plainTokens', () => {
    const { clock, c } = controller(['chain:3×4']);
    const runs: number[] = [];
    simulate(c, clock, 60, (o) => {
      if (o !== 0) return { ms: 1.1, tokens: 10 };
      runs.push(c.plainRun());
      return PLAIN;
    });
    expect(runs.every((n) => n === 16), `${runs}`).toBe(true);
  });
});

// A chained run of 4 steps on the trained nano model (H200, calls 130–131): ~15 tokens in ~4 × 0.25 ms, against plain
// decoding's 16 tokens in 4.86 ms (its runs read back every 16 tokens).
describe('speculation controller: plain decoding deferred by a chained option that accepts much', () => {
  const chained = (tokens: number): Cost => ({ ms: 1.2, tokens });
  const run = (tokensPerRun: number, defer: boolean, decisions = 12) => {
    const clock = { now: 0 };
    const c = new SpeculationController({ trees: ['chain:4×4', 'chain:3×4'], clock: () => clock.now, plainTokens: 16, order: [1, 2, 0], ...(defer && { deferPlain: [1, 2] }) });
    const chosen: number[] = [];
    for (let i = 0; i < decisions; i++) {
      const o = c.next();
      const cost = o === 0 ? PLAIN : chained(o === 1 ? tokensPerRun : tokensPerRun - 2);
      clock.now += cost.ms;
      // A chained decision is 4 verification steps; plain says none.
      c.record(cost.tokens, o === 0 ? undefined : 4);
      chosen.push(o);
    }
    return { c, chosen, ms: clock.now };
  };

  it('is not explored while a chained option accepts ≥ 2.5 tokens a step: every early decision speculates', () => {
    const { c, chosen } = run(15, true);
    expect(c.tokensPerStep(1)).toBeCloseTo(15 / 4);
    expect(c.plainDeferred()).toBe(true);
    expect(chosen).not.toContain(0);
    expect(c.rate(0)).toBeUndefined();
  });

  it('is explored as before without deferPlain, or when the chained options accept little', () => {
    expect(run(15, false).chosen.slice(0, 3)).toEqual([1, 2, 0]);
    const low = run(8, true); // 2 tokens a step: below 2.5
    expect(low.c.plainDeferred()).toBe(false);
    expect(low.chosen.slice(0, 3)).toEqual([1, 2, 0]);
  });

  it('a deferred plain run is still probed on a long generation, within the probe budget', () => {
    const { c, chosen, ms } = run(15, true, 400);
    const at = chosen.indexOf(0);
    expect(at, 'plain decoding probed at last').toBeGreaterThan(20);
    // Probes cost about probeOverhead (5 %) of the time, the first one included.
    expect(c.summary()[0].ms / ms).toBeLessThan(0.06);
    expect(c.best()).toBe(1);
  });

  it('steps are checked and carried in the saved state', () => {
    const { c } = run(15, true);
    expect(() => c.next() && c.record(1, -1)).toThrow(/steps must be a non-negative integer/);
    const saved = c.state();
    expect(saved.options[1].recent.every((x) => x.steps === 4)).toBe(true);
    const again = new SpeculationController({ trees: ['chain:4×4', 'chain:3×4'], deferPlain: [1, 2], from: saved });
    expect(again.plainDeferred()).toBe(true);
    expect(() => new SpeculationController({ trees: ['a'], deferPlain: [0] })).toThrow(/deferPlain must list tree options/);
  });
});

describe('speculation controller with estimates (useEstimates: what each tree would have emitted on the decoded text)', () => {
  // Plain: 16 tokens in 4 ms. Trees: chain:1, chain:3, chain:7 with 1, 3, 7 nodes; a step costs 1 ms + 0.5 ms a node and
  // emits `accepted + 1` tokens; the estimates say what each would emit, so the controller need not run them to know.
  const trees = ['chain:1', 'chain:3', 'chain:7'];
  const nodes = [1, 3, 7];
  const run = (accepted: number[], estimated: number[] | undefined, decisions = 60, stepCosts?: number[]) => {
    const clock = { now: 0 };
    const c = new SpeculationController({ trees, clock: () => clock.now, plainTokens: 16, nodes, order: [0, 1, 2, 3], ...(stepCosts && { stepCosts }) });
    if (estimated) c.useEstimates((o) => estimated[o - 1]);
    const chosen: number[] = [];
    for (let i = 0; i < decisions; i++) {
      const o = c.next();
      clock.now += o === 0 ? 4 : 1 + 0.5 * nodes[o - 1];
      c.record(o === 0 ? 16 : accepted[o - 1] + 1, o === 0 ? undefined : 1);
      chosen.push(o);
    }
    return Object.assign(chosen, { summary: formatPolicySummary(c.summary()) });
  };
  const trees_ = (chosen: number[]) => chosen.filter((o) => o > 0).length;

  it('neither explores nor re-probes a tree whose estimate cannot beat plain, once a smaller tree has shown what a step costs', () => {
    // Nothing accepted: every tree emits 1 token a step at 1.5 ms or more, plain 4 a ms.
    const without = run([0, 0, 0], undefined);
    // Before any tree ran, plain's cost a token is the least a step costs: a tree estimated at 1 token a step (nothing
    // accepted) can at best tie plain.
    const none = run([0, 0, 0], [1, 1, 1]);
    expect(trees_(none)).toBe(0);
    expect(none.summary).toMatch(/^plain 100% of tokens .*; not tried, their tokens a step estimated on the decoded text too few to pay: chain:1 1\.00, chain:3 1\.00, chain:7 1\.00$/);
    expect(trees_(without)).toBeGreaterThanOrEqual(3);
    // Estimates above what plain's cost would allow, but below what the measured chain:1 costs: chain:1 runs (its
    // explorations), the larger trees are bounded by its cost a step and skipped.
    const bounded = run([0, 0, 0], [1.3, 1.3, 1.3]);
    expect(bounded.filter((o) => o === 2 || o === 3)).toEqual([]);
    expect(bounded.filter((o) => o === 1).length).toBeGreaterThanOrEqual(1);
  });

  it('with what each tree cost a step before (stepCosts, the warm-up), explores none that cannot pay, and still the one that does', () => {
    // The trees' own costs a step (1.5, 2.5, 4.5 ms), as a warm-up would have measured them: at 1.3 tokens a step none can
    // reach plain's 4 tokens a ms, so not even chain:1 is looked at (without the costs it was: the test above).
    const costs = nodes.map((n) => 1 + 0.5 * n);
    const none = run([0, 0, 0], [1.3, 1.3, 1.3], 60, costs);
    expect(trees_(none)).toBe(0);
    expect(none.summary).toMatch(/not tried, .*chain:1 1\.30, chain:3 1\.30, chain:7 1\.30$/);
    // Where plain emits 1 token a ms, chain:7 estimated (and accepting) 8 tokens a step in 4.5 ms pays, and is taken.
    const clock = { now: 0 };
    const c = new SpeculationController({ trees, clock: () => clock.now, plainTokens: 16, nodes, order: [0, 1, 2, 3], stepCosts: costs });
    c.useEstimates((o) => [2, 4, 8][o - 1]);
    const chosen: number[] = [];
    for (let i = 0; i < 60; i++) {
      const o = c.next();
      clock.now += o === 0 ? 16 : costs[o - 1];
      c.record(o === 0 ? 16 : [2, 4, 8][o - 1], o === 0 ? undefined : 1);
      chosen.push(o);
    }
    expect(chosen.slice(-20).filter((o) => o === 3).length).toBeGreaterThan(15);
  });

  it("a tree with an estimate waits for plain decoding's first rate: not taken first, nor ahead while that decision runs", () => {
    // Trees first in the order, and every decision's successor taken ahead (as a batch's plain chain does): without the
    // wait the first decision was chain:1, judged before plain had a rate; estimates of 1 token a step cannot pay.
    const clock = { now: 0 };
    const c = new SpeculationController({ trees, clock: () => clock.now, plainTokens: 16, nodes, order: [1, 2, 3, 0] });
    c.useEstimates(() => 1);
    const chosen = [c.next()];
    for (let i = 0; i < 30; i++) {
      const ahead = c.ahead();
      clock.now += chosen[chosen.length - 1] === 0 ? 4 : 2;
      c.record(chosen[chosen.length - 1] === 0 ? 16 : 1, chosen[chosen.length - 1] === 0 ? undefined : 1);
      chosen.push(ahead);
    }
    expect(chosen.filter((o) => o > 0)).toEqual([]);
    // Without estimates nothing waits: the order's first tree goes first; nor with waitForPlain false.
    const d = new SpeculationController({ trees, plainTokens: 16, nodes, order: [1, 2, 3, 0] });
    expect(d.next()).toBe(1);
    const e = new SpeculationController({ trees, plainTokens: 16, nodes, order: [1, 2, 3, 0], waitForPlain: false });
    e.useEstimates(() => 1);
    expect(e.next()).toBe(1);
  });

  it('refuses step costs that are not one non-negative figure or none per tree', () => {
    expect(() => new SpeculationController({ trees, stepCosts: [1, 2] })).toThrow('stepCosts must give each of the 3 trees');
    expect(() => new SpeculationController({ trees, stepCosts: [1, -2, undefined] })).toThrow('stepCosts must give each of the 3 trees');
    expect(() => new SpeculationController({ trees, stepCosts: [1, undefined, 3] })).not.toThrow();
  });

  it('still explores and exploits a tree whose estimate says it pays', () => {
    // chain:7 accepts all: 8 tokens in 4.5 ms against plain's 1 token a ms.
    const clock = { now: 0 };
    const c = new SpeculationController({ trees, clock: () => clock.now, plainTokens: 16, nodes, order: [0, 1, 2, 3] });
    c.useEstimates((o) => [2, 4, 8][o - 1]);
    const chosen: number[] = [];
    for (let i = 0; i < 60; i++) {
      const o = c.next();
      clock.now += o === 0 ? 16 : 1 + 0.5 * nodes[o - 1]; // plain 1 token a ms; chain:7 8 tokens in 4.5 ms
      c.record(o === 0 ? 16 : [2, 4, 8][o - 1], o === 0 ? undefined : 1);
      chosen.push(o);
    }
    expect(chosen.slice(-20).filter((o) => o === 3).length).toBeGreaterThan(15);
  });
});

describe("exploration's share of the run (ControllerOptions.exploreShare)", () => {
  // A batch of 8 on the H200, roughly (calls 215–216): plain 16 steps emit 128 tokens in 8.5 ms (15 a ms); six trees
  // that do not pay but come close enough to be explored twice: a step of n nodes emits 12 + 2n tokens in 1.6 + 0.16n ms
  // (8–10.5 a ms).
  const BATCH_PLAIN: Cost = { ms: 8.5, tokens: 128 };
  const trees = ['chain:1', 'chain:3', 'chain:7', 'chain:15', 'best:4/8', 'best:4/15'];
  const nodes = [1, 3, 7, 15, 8, 15];
  const cost = (o: number): Cost => (o === 0 ? BATCH_PLAIN : { ms: 1.6 + 0.16 * nodes[o - 1], tokens: 12 + 2 * nodes[o - 1] });
  const run = (decisions: number, exploreShare?: number, order?: number[]) => {
    const clock = { now: 0 };
    const c = new SpeculationController({ trees, clock: () => clock.now, plainTokens: 128, ...(exploreShare !== undefined && { exploreShare }), ...(order && { order }) });
    // After each decision: the ms the controller counts as explored, and the run's ms.
    const explored: { ms: number; runMs: number }[] = [];
    let tree = 0;
    const chosen: number[] = [];
    for (let i = 0; i < decisions; i++) {
      const o = c.next();
      clock.now += cost(o).ms;
      c.record(cost(o).tokens);
      if (o > 0) tree += cost(o).ms;
      explored.push(c.exploration());
      chosen.push(o);
    }
    return { c, chosen, clock, treeShare: tree / clock.now, explored };
  };

  it('bounds the time trees that do not pay take from a short run, where unbounded exploration looks at each twice', () => {
    const unbounded = run(24);
    expect(unbounded.chosen.filter((o) => o > 0).length).toBeGreaterThanOrEqual(12);
    expect(unbounded.treeShare).toBeGreaterThan(0.3);
    const bounded = run(24, 0.1);
    // Plain first, then trees explored only while their time is within a tenth of the run's (plus the one decision that
    // crosses it); the re-probes add at most their 5 %.
    const longest = Math.max(...nodes.map((_, i) => cost(i + 1).ms));
    let elapsed = 0;
    for (let i = 0; i < bounded.chosen.length; i++) {
      elapsed += cost(bounded.chosen[i]).ms;
      expect(bounded.explored[i].runMs).toBeCloseTo(elapsed, 9);
      expect(bounded.explored[i].ms).toBeLessThanOrEqual(0.1 * elapsed + longest);
    }
    expect(bounded.explored.at(-1)!.ms).toBeGreaterThan(0);
    expect(bounded.treeShare).toBeLessThan(0.2);
    expect(bounded.treeShare).toBeLessThan(unbounded.treeShare / 2);
    // Every tree is still looked at on a long enough run: the share grows with it.
    const long = run(400, 0.1);
    expect(new Set(long.chosen).size).toBe(7);
    expect(long.treeShare).toBeLessThan(0.2);
  });

  it('finds a tree that pays as unbounded exploration does, and exploits it', () => {
    // chain:7 accepts everything: 64 tokens in 2.7 ms (23.7 a ms) against plain's 15 a ms.
    const pays = (o: number): Cost => (o === 3 ? { ms: 2.7, tokens: 64 } : cost(o));
    const clock = { now: 0 };
    const c = new SpeculationController({ trees, clock: () => clock.now, plainTokens: 128, exploreShare: 0.1 });
    const r = simulate(c, clock, 300, pays);
    expect(c.best()).toBe(3);
    expect(efficiency(r, 100, 300, pays(3))).toBeGreaterThan(0.9);
  });

  it('takes the run\'s first decision and explores plain decoding regardless of the share', () => {
    // Trees first: the first is the run's baseline (not counted); the second is explored; plain comes third although the
    // second tree took more than a tenth of the run.
    const r = run(3, 0.1, [4, 6, 0]);
    expect(r.chosen).toEqual([4, 6, 0]);
    expect(r.c.exploration().ms).toBeCloseTo(cost(6).ms, 9);
  });

  it('refuses a share outside (0, 1]', () => {
    expect(() => new SpeculationController({ trees, exploreShare: 0 })).toThrow(/exploreShare must be in \(0, 1\], got 0/);
    expect(() => new SpeculationController({ trees, exploreShare: 1.5 })).toThrow(/exploreShare must be in \(0, 1\]/);
  });
});

describe('stalls (a decision at many times its window\'s median ms a token)', () => {
  // A chained tree at 2 ms for 40 tokens (20k/s) against plain at 16 tokens for 1.6 ms (10k/s). One decision of the
  // tree is slow: a stall (as one was on the H200, ~200 ms for a ~1 ms decision, call 235) or merely 3× its median.
  const TREE: Cost = { ms: 2, tokens: 40 };
  const PLAIN_10K: Cost = { ms: 1.6, tokens: 16 };
  /** Decisions until the tree's `at`-th (which takes `slowMs`), the tree's rate then, then `more` decisions. */
  const run = (slowMs: number, at: number, more: number) => {
    const { clock, c } = controller(['chain:3×4']);
    let treeDecisions = 0;
    const costs = (o: number) => (o === 0 ? PLAIN_10K : ++treeDecisions === at ? { ms: slowMs, tokens: TREE.tokens } : TREE);
    while (treeDecisions < at) simulate(c, clock, 1, costs);
    const rateThen = c.rate(1)!;
    const r = simulate(c, clock, more, costs);
    return { c, r, rateThen };
  };

  it('one stall is left out of the rate and the probes: the tree that pays keeps being chosen', () => {
    const { r, rateThen } = run(200, 6, 40);
    expect(rateThen, 'the window right after the stall').toBeCloseTo(20, 9);
    expect(r.chosen.filter((o) => o === 1).length / r.chosen.length, 'the tree\'s share of the decisions after it').toBeGreaterThan(0.9);
  });

  it('a decision merely slower (3× its median) stays counted', () => {
    // The window holds the last 8 tree decisions: 8 × 40 tokens in 7 × 2 + 6 ms.
    expect(run(6, 12, 0).rateThen).toBeCloseTo(320 / 20, 9);
  });

  it('with fewer than 3 decisions in a window nothing is left out', () => {
    // Exploration's order: plain, the tree, plain again; the second plain decision stalls.
    const { clock, c } = controller(['chain:1']);
    for (const ms of [1, 1, 100]) {
      c.next();
      clock.now += ms;
      c.record(10);
    }
    expect(c.rate(0)).toBeCloseTo(20 / 101, 9);
  });
});
