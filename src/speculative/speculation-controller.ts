// When to speculate, and with which tree (`--tree auto`): speculation pays only when a step's accepted tokens
// outrun its wall time against plain decoding's runs of steps, and that depends on the model, the draft's
// acceptance on the current text and the GPU (docs/speculative.md, "Cost-aware speculation"). So each
// generation measures it. Option 0 is plain decoding (a run of `plainTokens` decode steps), options 1… the
// speculative trees; each decision is timed with the clock and credited with the tokens it produced, and an
// option's rate is Σ tokens / Σ ms over its last `window` decisions (a decision chosen ahead, ahead(), is timed from
// the record of the one before it: chained runs go back to back, and their rate is the time between their ends). The
// controller
//   explores: every option once, in `order` (the caller's guess of what pays: chained runs first), then up to
//     `explore` times each option whose rate is within `exploreCutoff` of the best so far — an option measured
//     at a fraction of the best rate is not explored again (on a short run its second look costs more than it
//     can win back; the re-probes below still revisit it). A decision chosen ahead (ahead(): a chained run in
//     progress) takes the in-progress tree option's next look at once, so its runs go back to back. Plain decoding is left to the re-probes once one of
//     the options the caller names (`deferPlain`: runs chained on the GPU, whose steps cost little more than a
//     decode step and read back once a run) has accepted `deferPlainAt` tokens a verification step or more:
//     such an option outruns plain decoding, and on a short generation a plain run explored costs more than it
//     can tell (a fresh controller per 128-token generation ran 1.08–1.49× plain decoding on the H200 where the
//     fixed chained trees ran 2×, most of the gap plain runs explored). A never-measured plain run is probed
//     only as the probe budget allows for a run at the best option's rate;
//   exploits: the option with the highest rate;
//   re-probes: the stalest other option runs again (a tree `probeLength` decisions, plain one run), so an
//     option that lost on earlier text (acceptance changes with the text, a GPU warms up) is measured again
//     and wins back when it has become faster. A probe waits until its expected time is at most
//     `probeOverhead` of the time since the last one (and `probeTokens` tokens have passed), which bounds
//     what probing a slower option costs: ≤ 5% of the best option's speed by default.
// The option being exploited is measured at every decision, so when it slows down (its draft stops being
// accepted) its rate falls below another's within a window and the controller moves on by itself.
// Estimates (useEstimates; the caller's, from drafts that propose from the text alone, draft-hits.ts): a tree's tokens
// per step on the text decoded so far. A tree whose estimate over its cost a step (measured, else the most a measured
// tree of as many nodes or fewer cost, or what it cost before this controller — stepCosts, the warm-up's — else plain's
// cost a token) cannot beat plain's rate is neither explored nor re-probed: at batch 8 on the H200 exploring and
// re-probing trees that could not pay cost auto a third of plain's speed (call 215, bench/batch-decisions.ts). With
// estimates, a tree never measured waits for plain's first rate (waitForPlain): a batch takes its next decision ahead
// during the first plain run, and that tree was explored unjudged (calls 242–243).
// Exploration's share (exploreShare): past the run's first decision, a tree is explored only while the tree
// decisions explored so far took at most that share of the run's time (plain decoding, the fallback, is explored
// regardless). Exploring is what a short run cannot afford: at batch 8 on the H200 a fresh controller spent 20–49 % of
// a 128-token generation in tree decisions on the random 12-layer model, where none paid, and the plain runs between
// them drained their chains (bench/batch-decisions.ts, calls 215–216). With a share, what exploring trees loses is bounded
// by it (and one decision), and the trees not explored yet are reached later in a long run or by the re-probes. Not the
// default (`--explore-share`): on the H200 a share of 0.1 gained at batch 8 with the n-gram draft on random weights
// (0.61× plain against 0.47×, medians of three), lost on `tiny-kjv` at batch 8 (0.39× against 0.61×) and changed
// nothing else beyond the noise (calls 226–227, docs/speculative.md).
// Stalls: a decision at more than STALL_FACTOR times its window's median ms a token is left out of the option's rate,
// its steps' cost and its probes' (steady()): one ~200 ms stall of a ~1 ms decision on the H200 otherwise rated a tree
// that paid at 798 tokens/s against 31k, and kept between runs (--auto-state) that sample stays in the tree's window
// until 8 more decisions of it, which its rate and its probes' expected cost then make unlikely (call 235).
// Pure logic, no GPU: the clock is injectable, so tests drive it with a fake one.

/** Chooses the next option (0: plain decoding, i ≥ 1: speculative tree i − 1) and learns what it produced. */
export interface SpeculationPolicy {
  /** Option names, plain first: ['plain', 'chain:1', …]. */
  readonly labels: readonly string[];
  /** Tokens a plain decision decodes. */
  readonly plainTokens: number;
  /** The next option; its time runs from this call to record(). */
  next(): number;
  /**
   * The decision after the one in progress (next()'s, not recorded yet), chosen now, so that the caller may start it
   * before the one in progress ends (a chained run submitted before the last is read: generate.ts). It is then the
   * next decision — record() of the one in progress starts it, no next() — and its time runs from that record() to
   * its own. Optional: without it the caller waits for each decision's end before asking for the next.
   */
  ahead?(): number;
  /**
   * Tokens the plain decision in progress decodes (default plainTokens). Optional: the controller lengthens the runs
   * while it exploits plain decoding, since each run ends in a readback.
   */
  plainRun?(): number;
  /** Tokens the decision chosen by ahead() decodes when it is plain (default plainTokens). */
  aheadPlainRun?(): number;
  /**
   * Verification steps a decision of an unchained tree runs at most, one sequence (default 1; a step whose drafts were
   * all refused ends it). Optional: the controller runs several, so that the step after a plain run, which pays the
   * switch back to the trees, does not set the rate of a tree that pays.
   */
  treeRun?(): number;
  /**
   * The option the decision in progress (the oldest not recorded) produced `tokens` tokens; `steps`, for a tree
   * option, the verification steps it ran (a chained run's steps, a warm-up step included; a batch counts a step once
   * for every live sequence, so that tokens per step are a sequence's).
   */
  record(tokens: number, steps?: number): void;
  summary(): OptionSummary[];
  /**
   * Estimates of each tree option's tokens per verification step (a sequence's) from the text decoded so far
   * (draft-hits.ts), undefined where there is none. Optional: a policy that takes them need not run a tree to learn
   * that it cannot pay.
   */
  useEstimates?(estimate: (option: number) => number | undefined): void;
}

export interface OptionSummary {
  readonly label: string;
  readonly decisions: number;
  readonly tokens: number;
  readonly ms: number;
  /** A tree's estimated tokens per step on the text decoded (useEstimates), at the end; and whether it could not pay. */
  readonly estimate?: number;
  readonly cannotPay?: boolean;
}

export interface ControllerOptions {
  /** Labels of the speculative options (option i + 1). */
  readonly trees: readonly string[];
  /** Milliseconds, monotonic (default performance.now). */
  readonly clock?: () => number;
  /** Tokens per plain decision (default 16: four of generate's runs of 4 steps). */
  readonly plainTokens?: number;
  /** Decisions of each option before exploiting (default 2). */
  readonly explore?: number;
  /** Options (0 plain, i tree i − 1) in the order exploration first tries them (default 0, 1, …; missing ones follow). */
  readonly order?: readonly number[];
  /** Exploration past the first decision only for options at ≥ this fraction of the best rate (default 0.5; 0: all). */
  readonly exploreCutoff?: number;
  /** Latest decisions per option its rate is computed over (default 8). */
  readonly window?: number;
  /** Tokens at least between probes of a non-best option (default 32). */
  readonly probeTokens?: number;
  /**
   * Options (i ≥ 1, trees) whose measured tokens per verification step (record's `steps`), at `deferPlainAt` or
   * more over their window, leave plain decoding unexplored (the re-probes still measure it). Default none.
   */
  readonly deferPlain?: readonly number[];
  /** Tokens per verification step of a `deferPlain` option that defer plain decoding (default 2.5). */
  readonly deferPlainAt?: number;
  /**
   * Draft nodes of each tree option (option i + 1), for the estimates (useEstimates): a tree not measured yet costs
   * a step at least what a measured tree of as many nodes or fewer did. Default: none known (plain's step the least).
   */
  readonly nodes?: readonly number[];
  /**
   * What a verification step of each tree option (option i + 1) cost when it ran before this controller (ms a step, as
   * record's `steps` count them; undefined: unknown), such as in the warm-up (FixedSchedule.fastestMsPerStep): for the
   * estimates, a tree not measured yet costs a step at least that. Default: none.
   */
  readonly stepCosts?: readonly (number | undefined)[];
  /**
   * With estimates (useEstimates), whether a tree not measured yet waits for plain decoding's first rate before it is
   * explored (default true; false: as before, benches compare the two).
   */
  readonly waitForPlain?: boolean;
  /** Largest share of the time spent probing (default 0.05). */
  readonly probeOverhead?: number;
  /** Decisions per probe of a tree (default 2; plain: one run). */
  readonly probeLength?: number;
  /** Steps a decision of an unchained tree runs (one sequence: SpeculationPolicy.treeRun; default TREE_STEPS). */
  readonly treeSteps?: number;
  /**
   * Largest share of the run's time (from its first decision) that explored tree decisions may have taken when
   * another tree is explored; the run's first decision is neither limited nor counted, plain decoding never limited
   * (default 1: exploration unbounded).
   */
  readonly exploreShare?: number;
  /**
   * What an earlier controller over the same options measured (state()): its windows and counts carry over, so the
   * options it explored are not explored again, and this run starts from its best. summary() counts this run only.
   */
  readonly from?: ControllerState;
}

/** A controller's measurements (SpeculationController.state), to carry to the next generation. */
export interface ControllerState {
  readonly labels: readonly string[];
  readonly options: readonly { readonly recent: readonly Sample[]; readonly decisions: number; readonly tokens: number; readonly ms: number }[];
}

interface Sample {
  readonly tokens: number;
  readonly ms: number;
  /** Verification steps, when the caller said (record's `steps`). */
  readonly steps?: number;
}

interface OptionStats {
  readonly recent: Sample[];
  decisions: number;
  tokens: number;
  ms: number;
  /** Of decisions, tokens and ms: what the state it started from (ControllerOptions.from) had. */
  readonly prior: { readonly decisions: number; readonly tokens: number; readonly ms: number };
  /** Decision count when it last ran (staleness). */
  lastRun: number;
}

/** A decision at more than this many times its window's median ms a token is a stall (SpeculationController.steady). */
export const STALL_FACTOR = 10;
/** Decisions in a window, at least, before stalls are looked for. */
export const STALL_MIN_SAMPLES = 3;

/** Longest plain run while the controller exploits plain decoding, in plainTokens (16 → 128 tokens by default). */
export const PLAIN_RUN_GROWTH = 8;

/**
 * Steps a decision of an unchained tree runs at most by default (one sequence; a step whose drafts were all refused
 * ends it). A tree's first step after a plain run costs about twice a step after a step of trees — the state copied
 * into the folded sets, the commands encoded afresh — (H200, call 221: 1.3–1.9 ms against 0.6–0.9 on the random
 * 12-layer model), and a decision of one step rates the tree by it. Decisions of 4 steps rated the trees fairly and won
 * with the n-gram draft but lost with the adaptive draft (call 222: geometric mean +2 % over six settings), and with
 * the early end −4 % (call 223), both within the rounds' spread: so one, until the switch itself is cheaper.
 */
export const TREE_STEPS = 1;

export class SpeculationController implements SpeculationPolicy {
  readonly labels: readonly string[];
  readonly plainTokens: number;
  private readonly clock: () => number;
  private readonly explore: number;
  private readonly order: readonly number[];
  private readonly exploreCutoff: number;
  private readonly window: number;
  private readonly probeTokens: number;
  private readonly probeOverhead: number;
  private readonly probeLength: number;
  private readonly treeSteps: number;
  private readonly exploreShare: number;
  private readonly deferPlain: readonly number[];
  private readonly deferPlainAt: number;
  private readonly nodes: readonly number[] | undefined;
  private readonly stats: OptionStats[];
  private current: { option: number; t0: number } | undefined;
  /** The decision chosen by ahead(): it starts when the current one is recorded. */
  private queued: number | undefined;
  private decisions = 0;
  /** Clock at the run's first decision, and the ms of the tree decisions explored since (exploreShare). */
  private startedAt: number | undefined;
  private exploredMs = 0;
  /** Whether the decision in progress, and the one chosen ahead, were explorations of a tree. */
  private currentExplored = false;
  private queuedExplored = false;
  /** What the last choose() was: an exploration of a tree (counted against exploreShare). */
  private explored = false;
  private tokensSinceProbe = 0;
  /** Clock when the last probe ended (or the run started). */
  private lastProbe: number | undefined;
  private pendingProbeEnd = false;
  private probe: { option: number; left: number } | undefined;
  /**
   * Plain decisions in a row taken to exploit it (not explored, not probed): each doubles the next run up to
   * PLAIN_RUN_GROWTH × plainTokens. A plain run ends in a readback; on the H200 auto's 16-token plain runs ran
   * 1,158–2,974 tokens/s where generate's pipelined loop ran 2,398–4,972 (call 46, docs/speculative.md).
   */
  private plainStreak = 0;
  /** The run length of the decision in progress when it is plain (next(), or ahead() once it starts). */
  private plainLength: number;
  private queuedPlainLength: number | undefined;
  /** Whether the last choose() returned the best option to exploit it (not an exploration or a probe). */
  private exploiting = false;
  /** ControllerOptions.waitForPlain. */
  private readonly waitForPlain: boolean;
  /** ControllerOptions.stepCosts. */
  private readonly stepCosts: readonly (number | undefined)[] | undefined;
  /** useEstimates()'s: a tree option's tokens per verification step on the text so far. */
  private estimate: ((option: number) => number | undefined) | undefined;

  constructor(opts: ControllerOptions) {
    if (opts.trees.length === 0) throw new Error('speculation controller: no speculative option');
    this.labels = ['plain', ...opts.trees];
    this.clock = opts.clock ?? (() => performance.now());
    this.plainTokens = positive(opts.plainTokens ?? 16, 'plainTokens');
    this.explore = positive(opts.explore ?? 2, 'explore');
    const order = opts.order ?? [];
    if (order.some((o) => !(Number.isInteger(o) && o >= 0 && o < this.labels.length)) || new Set(order).size !== order.length) {
      throw new Error(`speculation controller: order must list distinct options in 0..${this.labels.length - 1}, got [${order.join(', ')}]`);
    }
    this.order = [...order, ...this.labels.map((_, i) => i).filter((i) => !order.includes(i))];
    this.exploreCutoff = opts.exploreCutoff ?? 0.5;
    if (!(this.exploreCutoff >= 0 && this.exploreCutoff <= 1)) throw new Error(`speculation controller: exploreCutoff must be in [0, 1], got ${this.exploreCutoff}`);
    this.window = positive(opts.window ?? 8, 'window');
    this.probeTokens = positive(opts.probeTokens ?? 32, 'probeTokens');
    this.probeOverhead = opts.probeOverhead ?? 0.05;
    if (!(this.probeOverhead > 0 && this.probeOverhead <= 1)) throw new Error(`speculation controller: probeOverhead must be in (0, 1], got ${this.probeOverhead}`);
    this.probeLength = positive(opts.probeLength ?? 2, 'probeLength');
    this.treeSteps = positive(opts.treeSteps ?? TREE_STEPS, 'treeSteps');
    this.exploreShare = opts.exploreShare ?? 1;
    if (!(this.exploreShare > 0 && this.exploreShare <= 1)) throw new Error(`speculation controller: exploreShare must be in (0, 1], got ${this.exploreShare}`);
    this.deferPlain = opts.deferPlain ?? [];
    if (this.deferPlain.some((o) => !(Number.isInteger(o) && o >= 1 && o < this.labels.length))) {
      throw new Error(`speculation controller: deferPlain must list tree options in 1..${this.labels.length - 1}, got [${this.deferPlain.join(', ')}]`);
    }
    this.deferPlainAt = opts.deferPlainAt ?? 2.5;
    if (!(this.deferPlainAt > 0)) throw new Error(`speculation controller: deferPlainAt must be positive, got ${this.deferPlainAt}`);
    this.plainLength = this.plainTokens;
    if (opts.nodes && (opts.nodes.length !== opts.trees.length || opts.nodes.some((n) => !(Number.isInteger(n) && n >= 0)))) {
      throw new Error(`speculation controller: nodes must give each of the ${opts.trees.length} trees a count of draft nodes, got [${opts.nodes.join(', ')}]`);
    }
    this.nodes = opts.nodes;
    if (opts.stepCosts && (opts.stepCosts.length !== opts.trees.length || opts.stepCosts.some((c) => c !== undefined && !(c >= 0 && Number.isFinite(c))))) {
      throw new Error(`speculation controller: stepCosts must give each of the ${opts.trees.length} trees a non-negative ms a step or none, got [${opts.stepCosts.join(', ')}]`);
    }
    this.stepCosts = opts.stepCosts;
    this.waitForPlain = opts.waitForPlain ?? true;
    const from = opts.from;
    if (from && (from.labels.length !== this.labels.length || from.labels.some((l, i) => l !== this.labels[i]) || from.options.length !== this.labels.length)) {
      throw new Error(`speculation controller: the saved measurements are of the options [${from.labels.join(', ')}], this run offers [${this.labels.join(', ')}]`);
    }
    this.stats = this.labels.map((_, i) => {
      const o = from?.options[i];
      if (o && !(o.recent.every((x) => x.tokens >= 0 && x.ms >= 0 && (x.steps === undefined || (Number.isInteger(x.steps) && x.steps >= 0))) && o.decisions >= 0 && o.tokens >= 0 && o.ms >= 0)) {
        throw new Error(`speculation controller: the saved measurements of ${this.labels[i]} have a negative count or time`);
      }
      const prior = { decisions: o?.decisions ?? 0, tokens: o?.tokens ?? 0, ms: o?.ms ?? 0 };
      return { recent: (o?.recent ?? []).slice(-this.window).map((x) => ({ tokens: x.tokens, ms: x.ms, ...(x.steps !== undefined && { steps: x.steps }) })), ...prior, prior, lastRun: -1 };
    });
  }

  /** The measurements so far, this run's and those it started from: ControllerOptions.from of the next controller. */
  state(): ControllerState {
    return { labels: [...this.labels], options: this.stats.map((s) => ({ recent: s.recent.map((x) => ({ ...x })), decisions: s.decisions, tokens: s.tokens, ms: s.ms })) };
  }

  next(): number {
    if (this.current) throw new Error('speculation controller: next() twice without record()');
    const now = this.clock();
    this.lastProbe ??= now;
    this.startedAt ??= now;
    const option = this.choose(now);
    // The run's first decision is its baseline, not counted against exploreShare.
    this.currentExplored = this.explored && this.decisions > 0;
    this.plainLength = this.runLength(option);
    this.current = { option, t0: now };
    return option;
  }

  plainRun(): number {
    return this.plainLength;
  }

  /** A decision of `option` was just chosen (this.exploiting says how): the run length if it is plain. */
  private runLength(option: number): number {
    this.plainStreak = option === 0 && this.exploiting ? this.plainStreak + 1 : 0;
    return this.plainTokens * Math.min(PLAIN_RUN_GROWTH, 2 ** Math.max(0, this.plainStreak - 1));
  }

  aheadPlainRun(): number {
    return this.queuedPlainLength ?? this.plainTokens;
  }

  treeRun(): number {
    return this.treeSteps;
  }

  ahead(): number {
    if (!this.current) throw new Error('speculation controller: ahead() without a decision in progress');
    if (this.queued !== undefined) throw new Error('speculation controller: ahead() twice without record()');
    this.queued = this.choose(this.clock());
    this.queuedExplored = this.explored;
    this.queuedPlainLength = this.runLength(this.queued);
    return this.queued;
  }

  record(tokens: number, steps?: number): void {
    if (!this.current) throw new Error('speculation controller: record() without next()');
    if (steps !== undefined && !(Number.isInteger(steps) && steps >= 0)) throw new Error(`speculation controller: steps must be a non-negative integer, got ${steps}`);
    const { option, t0 } = this.current;
    this.current = undefined;
    const ms = Math.max(0, this.clock() - t0);
    const s = this.stats[option];
    s.recent.push({ tokens, ms, ...(steps !== undefined && { steps }) });
    if (s.recent.length > this.window) s.recent.shift();
    s.decisions++;
    s.tokens += tokens;
    s.ms += ms;
    s.lastRun = this.decisions++;
    if (this.currentExplored) this.exploredMs += ms;
    this.tokensSinceProbe += tokens;
    if (this.pendingProbeEnd) {
      this.pendingProbeEnd = false;
      this.tokensSinceProbe = 0;
      this.lastProbe = this.clock();
    }
    if (this.queued !== undefined) {
      this.current = { option: this.queued, t0: this.clock() };
      this.currentExplored = this.queuedExplored;
      this.plainLength = this.queuedPlainLength ?? this.plainTokens;
      this.queued = undefined;
      this.queuedPlainLength = undefined;
    }
  }

  /**
   * An option's window without its stalls: with STALL_MIN_SAMPLES or more, a decision whose ms a token (a token at
   * least) exceed STALL_FACTOR times the window's median is left out of its rate, its steps' cost and its probes'.
   * On the H200 a chained Medusa decision of about 1 ms once took about 200 ms (call 235): counted, it rated the option
   * at 798 tokens/s against 31k, and kept between runs (--auto-state) it stays in the window until 8 more decisions of
   * the option, which that rate and the probes' expected cost make unlikely. A decision that is merely slow (drafts
   * refused, the switch after a plain run: 2–5×) stays counted.
   */
  private steady(option: number): readonly Sample[] {
    const r = this.stats[option].recent;
    if (r.length < STALL_MIN_SAMPLES) return r;
    const per = (x: Sample) => x.ms / Math.max(x.tokens, 1);
    const sorted = r.map(per).sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    return r.filter((x) => per(x) <= STALL_FACTOR * median);
  }

  /** Tokens per millisecond of an option over its window, stalls left out (undefined before it ran). */
  rate(option: number): number | undefined {
    const r = this.steady(option);
    if (r.length === 0) return undefined;
    const ms = r.reduce((a, x) => a + x.ms, 0);
    const tokens = r.reduce((a, x) => a + x.tokens, 0);
    return tokens / Math.max(ms, 1e-9);
  }

  /** Tokens per verification step of an option over its window's decisions that said their steps (undefined: none did). */
  tokensPerStep(option: number): number | undefined {
    const r = this.steady(option).filter((x) => x.steps !== undefined);
    const steps = r.reduce((a, x) => a + x.steps!, 0);
    return steps > 0 ? r.reduce((a, x) => a + x.tokens, 0) / steps : undefined;
  }

  /** Whether exploration leaves plain decoding to the probes (ControllerOptions.deferPlain). */
  plainDeferred(): boolean {
    return this.deferPlain.some((o) => (this.tokensPerStep(o) ?? 0) >= this.deferPlainAt);
  }

  useEstimates(estimate: (option: number) => number | undefined): void {
    this.estimate = estimate;
  }

  /** Milliseconds per verification step of a tree option over its window's decisions that said their steps. */
  private msPerStep(option: number): number | undefined {
    const r = this.steady(option).filter((x) => x.steps !== undefined);
    const steps = r.reduce((a, x) => a + x.steps!, 0);
    return steps > 0 ? r.reduce((a, x) => a + x.ms, 0) / steps : undefined;
  }

  /**
   * Whether tree option i cannot beat plain decoding by the estimate (useEstimates): its estimated tokens a step over
   * its measured ms a step — before it ran, what it cost earlier (stepCosts) or plain's ms a token, the least a
   * verification step costs (a plain step emits one token a sequence) — at or below plain's measured rate. Such an option is neither explored nor re-probed
   * until the text makes it promising; what it measured still counts when it is the best.
   */
  cannotPay(i: number): boolean {
    const plain = this.rate(0);
    const est = i > 0 && plain !== undefined ? this.estimate?.(i) : undefined;
    if (est === undefined) return false;
    return est / (this.msPerStep(i) ?? this.leastMsPerStep(i, 1 / plain!)) <= plain!;
  }

  /**
   * Whether tree option i, never measured, is to be judged by an estimate (useEstimates) that cannot judge it yet:
   * plain decoding has no rate to compare it with (the run's first decision, plain, still in progress), and the text
   * may be too short for an estimate. Such a tree is not explored until plain has a rate; without estimates, or with
   * plain deferred, nothing waits.
   */
  private awaitsPlain(i: number): boolean {
    return this.waitForPlain && i > 0 && this.estimate !== undefined && this.stats[i].recent.length === 0 && this.rate(0) === undefined && !this.plainDeferred();
  }

  /**
   * The least a step of tree option i (not measured) costs: `floor`, what it cost before this controller
   * (stepCosts), or a measured tree's of as many nodes or fewer.
   */
  private leastMsPerStep(i: number, floor: number): number {
    let least = Math.max(floor, this.stepCosts?.[i - 1] ?? 0);
    if (!this.nodes) return least;
    for (let j = 1; j < this.stats.length; j++) {
      const ms = this.nodes[j - 1] <= this.nodes[i - 1] ? this.msPerStep(j) : undefined;
      if (ms !== undefined && ms > least) least = ms;
    }
    return least;
  }

  /** The option with the highest measured rate (ties: the lower index, so plain before any tree). */
  best(): number {
    let best = 0;
    for (let i = 1; i < this.stats.length; i++) if ((this.rate(i) ?? -1) > (this.rate(best) ?? -1)) best = i;
    return best;
  }

  summary(): OptionSummary[] {
    return this.stats.map((s, i) => {
      const estimate = i > 0 ? this.estimate?.(i) : undefined;
      return {
        label: this.labels[i], decisions: s.decisions - s.prior.decisions, tokens: s.tokens - s.prior.tokens, ms: s.ms - s.prior.ms,
        ...(estimate !== undefined && { estimate, cannotPay: this.cannotPay(i) }),
      };
    });
  }

  /**
   * Whether exploration may take a tree for the next decision: the run's first, or the tree decisions explored so far
   * took at most exploreShare of the run's time (the one in progress counts from its start).
   */
  private mayExplore(now: number): boolean {
    if (this.exploreShare >= 1 || (this.decisions === 0 && !this.current)) return true;
    const inProgress = this.current && this.currentExplored ? now - this.current.t0 : 0;
    return this.exploredMs + inProgress <= this.exploreShare * (now - this.startedAt!);
  }

  /** Milliseconds of the tree decisions explored (the run's first aside), and the run's time so far (exploreShare). */
  exploration(): { readonly ms: number; readonly runMs: number } {
    return { ms: this.exploredMs, runMs: this.startedAt === undefined ? 0 : this.clock() - this.startedAt };
  }

  private choose(now: number): number {
    this.exploiting = false;
    this.explored = false;
    if (this.probe) {
      const { option } = this.probe;
      if (--this.probe.left <= 0) this.endProbe();
      return option;
    }
    // Exploration: in `order`, the option with the fewest decisions while any has fewer than `explore` — past
    // its first decision only an option within exploreCutoff of the best rate.
    const best = this.best();
    const bestRate = this.rate(best) ?? 0;
    // A decision in progress counts (ahead() chooses before it is recorded).
    const made = (i: number) => this.stats[i].decisions + (this.current?.option === i ? 1 : 0);
    // Chosen ahead (a chained run in progress, the next one submitted before it is read): a tree option still short of
    // its looks takes the next look at once, so its runs go back to back; switching options drains the GPU's queue.
    const inProgress = this.current?.option;
    const may = this.mayExplore(now);
    if (may && inProgress !== undefined && inProgress > 0 && made(inProgress) < this.explore && !this.cannotPay(inProgress) && !this.awaitsPlain(inProgress)) {
      const r = this.rate(inProgress);
      if (r === undefined || r >= this.exploreCutoff * bestRate) {
        this.explored = true;
        return inProgress;
      }
    }
    let fewest = -1;
    const deferred = this.plainDeferred();
    for (const i of this.order) {
      if ((i === 0 && deferred) || (i > 0 && !may) || this.cannotPay(i) || this.awaitsPlain(i)) continue;
      const d = made(i);
      if (d >= this.explore || (d >= 1 && (this.rate(i) ?? 0) < this.exploreCutoff * bestRate)) continue;
      if (fewest < 0 || d < made(fewest)) fewest = i;
    }
    if (fewest >= 0) {
      this.explored = fewest > 0;
      return fewest;
    }
    let stalest = -1;
    for (let i = 0; i < this.stats.length; i++) {
      // A tree never measured would be probed at once (nothing says what it costs): that is exploring, within the share.
      const unexplored = i > 0 && !may && this.stats[i].recent.length === 0;
      if (i !== best && !unexplored && !this.cannotPay(i) && !this.awaitsPlain(i) && (stalest < 0 || this.stats[i].lastRun < this.stats[stalest].lastRun)) stalest = i;
    }
    this.exploiting = true;
    if (stalest < 0 || this.tokensSinceProbe < this.probeTokens) return best;
    const length = stalest === 0 ? 1 : this.probeLength;
    const r = this.steady(stalest);
    // Never measured (plain, deferred): a run at the best option's rate, at the least.
    const expectedMs = r.length ? (length * r.reduce((a, x) => a + x.ms, 0)) / r.length : stalest === 0 ? this.plainTokens / Math.max(bestRate, 1e-9) : 0;
    if (now - this.lastProbe! < expectedMs / this.probeOverhead) return best;
    this.exploiting = false;
    if (length > 1) this.probe = { option: stalest, left: length - 1 };
    else this.endProbe();
    return stalest;
  }

  /** The probe's last decision was handed out: the waits count from here (its own time is not a wait). */
  private endProbe(): void {
    this.probe = undefined;
    this.tokensSinceProbe = 0;
    this.pendingProbeEnd = true;
  }
}

/** `policy` behind a policy that takes no estimates (useEstimates): what auto does without them, for benches and tests. */
export function withoutEstimates(policy: SpeculationPolicy): SpeculationPolicy {
  return {
    labels: policy.labels, plainTokens: policy.plainTokens, next: () => policy.next(), record: (t, s) => policy.record(t, s), summary: () => policy.summary(),
    ...(policy.ahead && { ahead: () => policy.ahead!() }), ...(policy.plainRun && { plainRun: () => policy.plainRun!() }), ...(policy.aheadPlainRun && { aheadPlainRun: () => policy.aheadPlainRun!() }),
    ...(policy.treeRun && { treeRun: () => policy.treeRun!() }),
  };
}

/** `policy` with every call's host ms handed to `add` (what a generation spends choosing: SpeculativeResult.policyMs). */
export function timedPolicy(policy: SpeculationPolicy, add: (ms: number) => void): SpeculationPolicy {
  const timed = <A extends unknown[], R>(f: (...a: A) => R) => (...a: A): R => {
    const t0 = performance.now();
    try {
      return f(...a);
    } finally {
      add(performance.now() - t0);
    }
  };
  return {
    labels: policy.labels, plainTokens: policy.plainTokens, summary: () => policy.summary(),
    next: timed(() => policy.next()), record: timed((t: number, s?: number) => policy.record(t, s)),
    ...(policy.ahead && { ahead: timed(() => policy.ahead!()) }), ...(policy.plainRun && { plainRun: () => policy.plainRun!() }),
    ...(policy.aheadPlainRun && { aheadPlainRun: () => policy.aheadPlainRun!() }), ...(policy.treeRun && { treeRun: () => policy.treeRun!() }),
    // The estimates are read inside the policy's choices, which are timed.
    ...(policy.useEstimates && { useEstimates: (e: (option: number) => number | undefined) => policy.useEstimates!(e) }),
  };
}

/**
 * A fixed sequence of options, repeated — to force switches in tests and benches (greedy output must equal
 * plain decoding's whatever the schedule). Times each decision like the controller, for the summary.
 */
export class FixedSchedule implements SpeculationPolicy {
  readonly labels: readonly string[];
  private readonly totals: { decisions: number; tokens: number; ms: number }[];
  /** Per option, the least ms a step of its decisions that said their steps took (fastestMsPerStep). */
  private readonly fastest: (number | undefined)[];
  private i = 0;
  private current: { option: number; t0: number } | undefined;
  private queued: number | undefined;

  constructor(
    trees: readonly string[],
    private readonly schedule: readonly number[],
    readonly plainTokens: number,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.labels = ['plain', ...trees];
    if (schedule.length === 0 || schedule.some((o) => !(Number.isInteger(o) && o >= 0 && o < this.labels.length))) {
      throw new Error(`fixed schedule: options must be integers in 0..${this.labels.length - 1}, got [${schedule.join(', ')}]`);
    }
    positive(plainTokens, 'plainTokens');
    this.totals = this.labels.map(() => ({ decisions: 0, tokens: 0, ms: 0 }));
    this.fastest = this.labels.map(() => undefined);
  }

  /** The least ms a verification step of `option` took over its decisions that said their steps (record's `steps`). */
  fastestMsPerStep(option: number): number | undefined {
    return this.fastest[option];
  }

  next(): number {
    const option = this.schedule[this.i++ % this.schedule.length];
    this.current = { option, t0: this.clock() };
    return option;
  }

  ahead(): number {
    if (!this.current) throw new Error('fixed schedule: ahead() without a decision in progress');
    if (this.queued !== undefined) throw new Error('fixed schedule: ahead() twice without record()');
    this.queued = this.schedule[this.i++ % this.schedule.length];
    return this.queued;
  }

  record(tokens: number, steps?: number): void {
    if (!this.current) throw new Error('fixed schedule: record() without next()');
    const o = this.current.option;
    const t = this.totals[o];
    const ms = Math.max(0, this.clock() - this.current.t0);
    t.decisions++;
    t.tokens += tokens;
    t.ms += ms;
    if (steps !== undefined && steps > 0) this.fastest[o] = Math.min(this.fastest[o] ?? Infinity, ms / steps);
    this.current = this.queued === undefined ? undefined : { option: this.queued, t0: this.clock() };
    this.queued = undefined;
  }

  summary(): OptionSummary[] {
    return this.totals.map((t, i) => ({ label: this.labels[i], ...t }));
  }
}

/** Summaries of several generations over the same options, added up option by option. */
export function addSummaries(runs: readonly (readonly OptionSummary[])[]): OptionSummary[] {
  return (runs[0] ?? []).map((first, i) => ({
    label: first.label,
    decisions: runs.reduce((a, r) => a + r[i].decisions, 0),
    tokens: runs.reduce((a, r) => a + r[i].tokens, 0),
    ms: runs.reduce((a, r) => a + r[i].ms, 0),
  }));
}

/** One line: each option's share of the tokens and its measured tokens/s. */
export function formatPolicySummary(summary: readonly OptionSummary[]): string {
  const total = summary.reduce((a, s) => a + s.tokens, 0);
  const ran = summary
    .filter((s) => s.decisions > 0)
    .map((s) => `${s.label} ${((100 * s.tokens) / Math.max(total, 1)).toFixed(0)}% of tokens at ${s.ms > 0 ? ((1000 * s.tokens) / s.ms).toFixed(0) : '—'} tokens/s (${s.decisions} decisions)`);
  // Trees the estimates kept out (useEstimates): what they would have emitted a step on the decoded text.
  const out = summary.filter((s) => s.decisions === 0 && s.cannotPay && s.estimate !== undefined).map((s) => `${s.label} ${s.estimate!.toFixed(2)}`);
  return ran.join(', ') + (out.length ? `; not tried, their tokens a step estimated on the decoded text too few to pay: ${out.join(', ')}` : '');
}

function positive(n: number, what: string): number {
  if (!(Number.isInteger(n) && n >= 1)) throw new Error(`speculation controller: ${what} must be a positive integer, got ${n}`);
  return n;
}
