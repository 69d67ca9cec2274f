// Text generation: prefill the prompts, then decode token by token until max tokens or EOS, streaming
// each sequence's text as it becomes decodable. The GPU loop keeps several runs of steps in flight: each step
// reads the previous step's token on the GPU, so nothing on the host is needed to submit the next one; a run's
// steps (RUN_STEPS by default, at most MAX_RUN_STEPS) are read back with one map, and the host reads run n's tokens (EOS,
// streaming) while runs n+1 … are queued — the GPU never waits for a readback or for the host's work. The CPU
// loop is the float64 oracle with the real variant. Prompts may differ in length (ragged-prompts.ts): their common
// part is prefilled together, the longer ones' rest fed one token a step before the loop (feedRaggedPrompts: the forced
// tokens put in place of the previous picks on the GPU, so nothing waits for a readback).
import { rng } from '../tensor.ts';
import { cpuForward, type CpuAttentionStep, type CpuModel } from './cpu-forward.ts';
import { MAX_RUN_STEPS, READBACK_RING, RUN_STEPS, RUNS_IN_FLIGHT, type GpuModel, type StepHandle, type StepTiming } from './gpu-model.ts';
import { batchDraws, commonPrompts, forcedToken, picksNewToken, raggedDraws, raggedPlan, stepInput, type RaggedPlan } from './ragged-prompts.ts';
import { sampleToken, type SamplingOptions } from './sampling.ts';
import type { Tokenizer } from './tokenizer.ts';

export { cpuAttentionFromVariant, cpuAttentionSessionFromVariant } from './cpu-attention.ts';

export interface GenerateOptions {
  /** New tokens per sequence, EOS included. */
  readonly maxTokens: number;
  /** Temperature 0 (the default) is greedy. */
  readonly sampling?: SamplingOptions;
  /** Seeds the uniform draws (token g of sequence s: draw g·b + s of the stream). Default 0. */
  readonly seed?: number;
  /** Stop token (default: the tokenizer's eos); generation ends when every sequence produced it. */
  readonly eos?: number;
  /** New text of sequence `seq`, as soon as it decodes to whole characters. */
  readonly onText?: (text: string, seq: number) => void;
  /** GPU: submit later steps before waiting for step n's tokens (default true); false waits step by step. */
  readonly pipelined?: boolean;
  /** GPU, pipelined: runs of steps submitted and not yet read, at most (1..READBACK_RING, default RUNS_IN_FLIGHT). */
  readonly inFlight?: number;
  /** GPU, pipelined: steps read back together (1..MAX_RUN_STEPS, default RUN_STEPS). */
  readonly stepsPerReadback?: number;
  /** GPU: a greedy run's steps in one command buffer when the attention layers can chain them (default true). */
  readonly chainSteps?: boolean;
  /**
   * GPU, pipelined: the first runs grow 1, 2, 4, … steps up to stepsPerReadback (default true), so the GPU starts
   * after one step's encoding instead of a whole run's; false: every run stepsPerReadback from the first.
   */
  readonly rampRuns?: boolean;
  /**
   * GPU: the first run submitted before the prefill's token is read (default: when pipelined), so the GPU decodes
   * while the host reads it; false: decoding starts once the first token is on the host.
   */
  readonly aheadOfPrefill?: boolean;
  /**
   * GPU: whether the steps write their GPU timestamps (default: the model's `stampSteps`). `linattn generate` runs
   * without (a model created with `timestamps: false`); a speed-up's plain baseline on a model that keeps them for
   * its tree steps passes false, so that it times what that command runs.
   */
  readonly stepTimes?: boolean;
}

export interface GenerateResult {
  /** New tokens per sequence (up to and including its EOS). */
  readonly tokens: number[][];
  readonly texts: string[];
  /** Prompt tokens of the batch, every sequence's. */
  readonly promptTokens: number;
  readonly stopReason: 'eos' | 'max-tokens';
  readonly prefillMs: number;
  readonly decodeMs: number;
  /** Prompt tokens / prefill time (until every sequence's first new token is on the host). */
  readonly prefillTokensPerS: number;
  /** b · decode steps after that / decode time; undefined when only the first tokens were generated. */
  readonly decodeTokensPerS: number | undefined;
  /** Per decode step (GPU only): host encode and submit times, wait, and GPU time when timed. */
  readonly decodeSteps: readonly StepTiming[];
}

/**
 * Incremental detokenisation: text is released once it no longer ends in an incomplete character. Each push
 * decodes only the tokens since the last release plus the few before it (their decoded text is subtracted), not
 * the whole sequence: re-decoding everything made every token cost O(length) host time — at hundreds of tokens
 * per second and a BPE tokenizer, a large share of a step. Starting the window a token early keeps what a
 * tokenizer does at the start of a text (a Metaspace decoder drops the leading space) out of the deltas.
 */
export class TextStream {
  private readonly ids: number[] = [];
  /** ids[prefix … read) decoded is the text the last release ended with; ids[read …] are not released yet. */
  private prefix = 0;
  private read = 0;
  private released = '';

  constructor(private readonly tokenizer: Tokenizer) {}

  push(id: number): string {
    this.ids.push(id);
    const before = this.tokenizer.decode(this.ids.slice(this.prefix, this.read));
    const text = this.tokenizer.decode(this.ids.slice(this.prefix));
    // Held back while the new text ends in an incomplete character (U+FFFD) or has not grown past `before`
    // (a token that decodes to nothing yet, or a tokenizer rewriting its window).
    if (text.length <= before.length || text.charCodeAt(text.length - 1) === 0xfffd || !text.startsWith(before)) return '';
    const delta = text.slice(before.length);
    this.prefix = this.read;
    this.read = this.ids.length;
    this.released += delta;
    return delta;
  }

  /** Whatever is left (an incomplete character decodes to U+FFFD). */
  flush(): string {
    const before = this.tokenizer.decode(this.ids.slice(this.prefix, this.read));
    const text = this.tokenizer.decode(this.ids.slice(this.prefix));
    this.prefix = this.read = this.ids.length;
    const delta = text.startsWith(before) ? text.slice(before.length) : '';
    this.released += delta;
    return delta;
  }

  /** Everything released so far (after flush: the whole text). */
  get text(): string {
    return this.released;
  }
}

class Tracker {
  readonly tokens: number[][];
  readonly done: boolean[];
  readonly streams: TextStream[];

  constructor(
    b: number,
    tokenizer: Tokenizer,
    private readonly eos: number | undefined,
    private readonly onText?: (text: string, seq: number) => void,
    /** A sequence is done once it has this many tokens (ragged prompts start sequences at different steps). */
    private readonly cap = Infinity,
  ) {
    this.tokens = Array.from({ length: b }, () => []);
    this.done = new Array<boolean>(b).fill(false);
    this.streams = Array.from({ length: b }, () => new TextStream(tokenizer));
  }

  /** One step's picks; `isNew(s)`: whether sequence s's pick is one of its new tokens (default: all are). */
  record(ids: readonly number[], isNew?: (s: number) => boolean): void {
    ids.forEach((id, s) => {
      if (this.done[s] || (isNew && !isNew(s))) return;
      this.tokens[s].push(id);
      if (id === this.eos) {
        this.done[s] = true;
        return;
      }
      if (this.tokens[s].length >= this.cap) this.done[s] = true;
      const text = this.streams[s].push(id);
      if (text && this.onText) this.onText(text, s);
    });
  }

  get allDone(): boolean {
    return this.done.every(Boolean);
  }

  finish(): string[] {
    return this.streams.map((st, s) => {
      const rest = st.flush();
      if (rest && this.onText) this.onText(rest, s);
      return st.text;
    });
  }

  /**
   * The run's result, its texts flushed: `promptTokens` of the batch, `steps` decode steps after every sequence had
   * its first token, timed from t0 (start) to t1 (every first token) to t2 (end).
   */
  result(promptTokens: number, steps: number, t0: number, t1: number, t2: number, decodeSteps: readonly StepTiming[]): GenerateResult {
    const b = this.tokens.length;
    const texts = this.finish();
    const eos = this.tokens.every((t) => t[t.length - 1] === this.eos);
    return {
      tokens: this.tokens,
      texts,
      promptTokens,
      stopReason: eos ? 'eos' : 'max-tokens',
      prefillMs: t1 - t0,
      decodeMs: t2 - t1,
      prefillTokensPerS: promptTokens / ((t1 - t0) / 1000),
      decodeTokensPerS: steps > 0 ? (b * steps) / ((t2 - t1) / 1000) : undefined,
      decodeSteps,
    };
  }
}

/** The prompts' plan (any lengths, none empty), maxTokens checked. */
function checkPrompts(prompts: readonly (readonly number[])[], opts: GenerateOptions): RaggedPlan {
  if (prompts.length === 0) throw new Error('generate: no prompts');
  const empty = prompts.findIndex((p) => p.length === 0);
  if (empty >= 0) throw new Error(`generate: prompt ${empty} is empty`);
  if (!(Number.isInteger(opts.maxTokens) && opts.maxTokens >= 1)) throw new Error(`generate: maxTokens must be a positive integer, got ${opts.maxTokens}`);
  return raggedPlan(prompts);
}

const promptTokens = (prompts: readonly (readonly number[])[]) => prompts.reduce((n, p) => n + p.length, 0);

/**
 * The forced steps 1 … extra of a ragged batch on the GPU (ragged-prompts.ts), submitted while the prefill's picks
 * (`prefill`, step 0) are still being read: each step's forced tokens put in place of the previous picks on the GPU
 * (GpuModel.decodeStepForcing), at most READBACK_RING submits unread; `onPicks(k, picks)` gets step k's picks, 0 first.
 */
export async function feedRaggedPrompts(
  model: GpuModel, prompts: readonly (readonly number[])[], plan: RaggedPlan, prefill: Promise<number[]>, onPicks: (k: number, picks: readonly number[]) => void,
): Promise<void> {
  const queue: { k: number; ids: Promise<number[]> }[] = [{ k: 0, ids: prefill }];
  const drain = async () => {
    const { k, ids } = queue.shift()!;
    onPicks(k, await ids);
  };
  for (let k = 1; k <= plan.extra; k++) {
    if (queue.length >= READBACK_RING) await drain();
    const ids = model.decodeStepForcing(prompts.map((_, s) => forcedToken(prompts, plan, k, s))).tokens();
    ids.catch(() => undefined); // awaited by drain
    queue.push({ k, ids });
  }
  while (queue.length) await drain();
}

/** Generation on the GPU: one submit per token for the whole batch, tokens read back one step behind. */
export async function generateGpu(model: GpuModel, tokenizer: Tokenizer, prompts: readonly (readonly number[])[], opts: GenerateOptions): Promise<GenerateResult> {
  if (opts.stepTimes === undefined) return generateOnGpu(model, tokenizer, prompts, opts);
  return model.withStepTimes(opts.stepTimes, () => generateOnGpu(model, tokenizer, prompts, opts));
}

async function generateOnGpu(model: GpuModel, tokenizer: Tokenizer, prompts: readonly (readonly number[])[], opts: GenerateOptions): Promise<GenerateResult> {
  const plan = checkPrompts(prompts, opts);
  const b = prompts.length;
  const tracker = new Tracker(b, tokenizer, opts.eos ?? tokenizer.eos, opts.onText, opts.maxTokens);
  // Steps the longest prompt's sequence needs: the prefill's, its forced steps, then maxTokens − 1.
  const limit = opts.maxTokens + plan.extra;

  // Each run's readback is started right at its last submit (a map waits for all work submitted before it,
  // so starting it later would wait for the following runs too). Up to `depth` runs are in flight: the host
  // reads the oldest while the GPU runs the others, and submits the next as soon as one is read. Steps
  // submitted past an EOS are wasted work, never output. The first runs ramp up (1, 2, 4, … steps): the GPU sits
  // idle after the prefill until the first run is encoded and submitted, and encoding a step takes the host about
  // as long as the GPU takes to run it, so a first run of one step starts the GPU early and each later run is
  // encoded while the runs before it, half as long, are running. The first run goes in before the prefill's token
  // is read (aheadOfPrefill): it reads that token on the GPU, so the GPU decodes while the host learns it. Only the
  // first: each run encoded before the read would delay the first token on the host by its encoding (and credit
  // the GPU work done meanwhile to the decode time, measured from there: in call 164, three full runs ahead read batch
  // 1 at 3,128–3,216 tokens/s, above the 3,106 its 0.322 ms step allows, and batch 8's GPU 100 % busy).
  const depth = opts.pipelined === false ? 1 : opts.inFlight ?? RUNS_IN_FLIGHT;
  if (!(Number.isInteger(depth) && depth >= 1 && depth <= READBACK_RING)) throw new Error(`generate: inFlight must be an integer in 1..${READBACK_RING}, got ${depth}`);
  const runSteps = opts.pipelined === false ? 1 : opts.stepsPerReadback ?? RUN_STEPS;
  if (!(Number.isInteger(runSteps) && runSteps >= 1 && runSteps <= MAX_RUN_STEPS)) throw new Error(`generate: stepsPerReadback must be an integer in 1..${MAX_RUN_STEPS}, got ${runSteps}`);
  const ramp = opts.rampRuns ?? true;
  let produced = 1;
  let submitted = 1;
  let runs = 0;
  const decodeSteps: StepTiming[] = [];
  const queue: { step: StepHandle; ids: Promise<number[]> }[] = [];
  const submit = () => {
    const n = Math.min(runSteps, limit - submitted, ramp ? 2 ** Math.min(runs, 4) : runSteps);
    runs++;
    const step = n === 1 ? model.decodeStep() : model.decodeRun(n, { chain: opts.chainSteps ?? true });
    const ids = step.tokens();
    ids.catch(() => undefined); // awaited below; a failure there must not also surface as unhandled
    queue.push({ step, ids });
    submitted += n;
  };

  const t0 = performance.now();
  const temperature = opts.sampling?.temperature ?? 0;
  // Ragged prompts: the model's draws mapped so that token g of sequence s still takes draw g·b + s of the seed's stream.
  const draws = plan.extra > 0 ? { random: raggedDraws(plan, batchDraws(rng(opts.seed ?? 0), b)) } : { seed: opts.seed ?? 0 };
  const prefill = await model.prefill(commonPrompts(prompts, plan), { ...opts.sampling, temperature, ...draws });
  const first = prefill.tokens();
  first.catch(() => undefined); // awaited below
  if ((opts.aheadOfPrefill ?? depth > 1) && plan.extra === 0 && submitted < limit) submit();
  // The longer prompts' rest, a forced token a step (the others feed their own picks on the GPU).
  await feedRaggedPrompts(model, prompts, plan, first, (k, picks) => tracker.record(picks, (s) => picksNewToken(plan, k, s)));
  produced += plan.extra;
  submitted += plan.extra;
  const t1 = performance.now();
  const started = produced;

  while (produced < limit && !tracker.allDone) {
    while (queue.length < depth && submitted < limit) submit();
    const oldest = queue.shift()!;
    const ids = await oldest.ids;
    for (let i = 0; i < oldest.step.steps && produced < limit && !tracker.allDone; i++) {
      tracker.record(ids.slice(i * b, (i + 1) * b));
      decodeSteps.push(oldest.step.timings[i]);
      produced++;
    }
  }
  for (const rest of queue) await rest.ids; // leave no readback half-done
  return tracker.result(promptTokens(prompts), produced - started, t0, t1, performance.now(), decodeSteps);
}

/**
 * Generation with the float64 CPU forward: the prompt in one forward, then one token per step through
 * `attention`, which must carry state across calls (cpuAttentionSessionFromVariant).
 */
export function generateCpu(model: CpuModel, attention: CpuAttentionStep, tokenizer: Tokenizer, prompts: readonly (readonly number[])[], opts: GenerateOptions): GenerateResult {
  const plan = checkPrompts(prompts, opts);
  const b = prompts.length;
  const V = model.config.vocabSize;
  const sampling: SamplingOptions = { ...opts.sampling, temperature: opts.sampling?.temperature ?? 0 };
  // b draws a step, sequence 0 first, as the GPU model makes them (ragged: mapped the same way).
  const random = plan.extra > 0 ? raggedDraws(plan, batchDraws(rng(opts.seed ?? 0), b)) : rng(opts.seed ?? 0);
  const tracker = new Tracker(b, tokenizer, opts.eos ?? tokenizer.eos, opts.onText, opts.maxTokens);
  const choose = (logits: Float64Array, rows: number, last: number) =>
    Array.from({ length: b }, (_, s) => sampleToken(logits.subarray((s * rows + last) * V, (s * rows + last + 1) * V), sampling, random).token);

  const t0 = performance.now();
  const t = plan.common;
  let ids = choose(cpuForward(model, commonPrompts(prompts, plan), attention).logits.data, t, t - 1);
  tracker.record(ids, (s) => picksNewToken(plan, 0, s));
  let produced = 1;
  for (let k = 1; k <= plan.extra && !tracker.allDone; k++, produced++) {
    const inputs = prompts.map((_, s) => [stepInput(prompts, plan, k, s, ids[s])]);
    ids = choose(cpuForward(model, inputs, attention).logits.data, 1, 0);
    tracker.record(ids, (s) => picksNewToken(plan, k, s));
  }
  const t1 = performance.now();
  const started = produced;
  while (produced < opts.maxTokens + plan.extra && !tracker.allDone) {
    ids = choose(cpuForward(model, ids.map((id) => [id]), attention).logits.data, 1, 0);
    tracker.record(ids);
    produced++;
  }
  return tracker.result(promptTokens(prompts), produced - started, t0, t1, performance.now(), []);
}
