// Continuous batching: more prompts than sequences in the batch. `slots` sequences decode together; when one
// finishes (its EOS or max tokens), the next waiting prompt takes its place at the next step, so the batch never
// waits for its slowest sequence while prompts are left (a static batch's tail, docs/speculative.md).
//
// The first `slots` prompts start as a ragged batch does (ragged-prompts.ts: their common length prefilled together,
// the rest forced a token a step). A later prompt is prefilled whole in a finished sequence's place
// (GpuModel.prefillSequence: chunked, on a one-sequence state that then replaces that sequence's part of every
// layer's state; its position is its own, the others' kept as offsets) while the others decode on. So every
// prompt's tokens are what it would get alone: greedy, its own plain decoding's (the test). Sampled, each token is
// drawn from the model's distribution, but not with the draws a run of that prompt alone would use.
//
// While every busy sequence is generating, steps go in runs (decodeRun: one command buffer where the layers chain
// them, one readback) as long as the nearest budget allows, up to `inFlight` submits unread; a step that feeds a
// prompt token goes alone, and a refill goes in between. A prompt that reaches its budget is known done when its
// last step is submitted, and its place is refilled at the next submit; one that ends at an EOS is known done only
// when that step is read, a run or a few later: the steps in between run it on, discarded.
import { MAX_RUN_STEPS, READBACK_RING, RUN_STEPS, type GpuModel, type StepHandle } from './gpu-model.ts';
import { raggedPlan } from './ragged-prompts.ts';
import type { SamplingOptions } from './sampling.ts';
import type { Tokenizer } from './tokenizer.ts';
import { TextStream } from './generate.ts';

export interface ContinuousOptions {
  /** Sequences decoding together (1 ≤ slots; more than the prompts: the prompts' count). */
  readonly slots: number;
  /** New tokens per prompt, EOS included: one for all, or one a prompt (requests asking for different lengths). */
  readonly maxTokens: number | readonly number[];
  readonly sampling?: SamplingOptions;
  readonly seed?: number;
  /** Stop token (default: the tokenizer's eos). */
  readonly eos?: number;
  /** New text of prompt `prompt` (its index in the list), as soon as it decodes to whole characters. */
  readonly onText?: (text: string, prompt: number) => void;
  /** Submits (a step, or a run of steps) not yet read, at most (1..READBACK_RING, default READBACK_RING). */
  readonly inFlight?: number;
  /** Steps a run submits when every busy sequence is generating (1..MAX_RUN_STEPS, default RUN_STEPS). */
  readonly stepsPerRun?: number;
}

export interface ContinuousResult {
  /** New tokens per prompt, in the prompts' order. */
  readonly tokens: number[][];
  readonly texts: string[];
  readonly promptTokens: number;
  /** Decode steps of the batch submitted after its prefill (every sequence's picks, the discarded ones included). */
  readonly steps: number;
  /** Prompts prefilled in a finished sequence's place. */
  readonly refills: number;
  /** New tokens of all prompts / the run's time from the prefill's start. */
  readonly tokensPerS: number;
  readonly ms: number;
  /** Of the decode steps' picks (steps × sequences), the share that were some prompt's new tokens. */
  readonly occupancy: number;
}

/** What pick i of a submitted step is: prompt `prompt`'s next new token where `fresh`; else discarded. */
interface Pick {
  /** The prompt it serves, or −1 (an idle sequence). */
  readonly prompt: number;
  /** Whether it is one of that prompt's new tokens (not a pick inside its prompt). */
  readonly fresh: boolean;
}

class Request {
  readonly tokens: number[] = [];
  done = false;
  constructor(
    readonly stream: TextStream,
    readonly prompt: readonly number[],
  ) {}
}

/** Generation of `prompts` on the GPU through `opts.slots` sequences, refilled as they finish. */
export async function generateContinuousGpu(
  model: GpuModel, tokenizer: Tokenizer, prompts: readonly (readonly number[])[], opts: ContinuousOptions,
): Promise<ContinuousResult> {
  if (prompts.length === 0) throw new Error('generate (continuous): no prompts');
  const empty = prompts.findIndex((p) => p.length === 0);
  if (empty >= 0) throw new Error(`generate (continuous): prompt ${empty} is empty`);
  const budgets = typeof opts.maxTokens === 'number' ? prompts.map(() => opts.maxTokens as number) : [...opts.maxTokens];
  if (budgets.length !== prompts.length) throw new Error(`generate (continuous): ${budgets.length} maxTokens for ${prompts.length} prompts`);
  const badBudget = budgets.findIndex((n) => !(Number.isInteger(n) && n >= 1));
  if (badBudget >= 0) throw new Error(`generate (continuous): prompt ${badBudget}'s maxTokens must be a positive integer, got ${budgets[badBudget]}`);
  if (!(Number.isInteger(opts.slots) && opts.slots >= 1)) throw new Error(`generate (continuous): slots must be a positive integer, got ${opts.slots}`);
  const depth = opts.inFlight ?? READBACK_RING;
  const runSteps = opts.stepsPerRun ?? RUN_STEPS;
  if (!(Number.isInteger(runSteps) && runSteps >= 1 && runSteps <= MAX_RUN_STEPS)) throw new Error(`generate (continuous): stepsPerRun must be an integer in 1..${MAX_RUN_STEPS}, got ${runSteps}`);
  if (!(Number.isInteger(depth) && depth >= 1 && depth <= READBACK_RING)) throw new Error(`generate (continuous): inFlight must be an integer in 1..${READBACK_RING}, got ${depth}`);
  const eos = opts.eos ?? tokenizer.eos;
  const requests = prompts.map((p) => new Request(new TextStream(tokenizer), p));
  const b = Math.min(opts.slots, prompts.length);

  // Each slot's prompt and how many of its tokens it has been fed.
  const served = Array.from({ length: b }, (_, s) => s);
  const fed = new Array<number>(b).fill(0);
  // New tokens submitted for each slot's prompt: at its budget the prompt is done once those steps run (an EOS may end
  // it sooner), so its place is refilled at the next submit, not a readback later.
  const planned = new Array<number>(b).fill(0);
  let waiting = b;
  let steps = 0;
  let useful = 0;
  let refills = 0;
  let decoded = 0; // new tokens picked by decode steps (not prefills)

  const record = (r: number, id: number) => {
    const req = requests[r];
    if (req.done) return;
    req.tokens.push(id);
    useful++;
    if (id === eos || req.tokens.length >= budgets[r]) req.done = true;
    if (id === eos) return;
    const text = req.stream.push(id);
    if (text && opts.onText) opts.onText(text, r);
  };

  if (prompts.length > b) {
    // Refills need a position per sequence: refused here, before any output, by layers that keep one for the batch.
    try {
      await model.prepareSequenceOffsets(b);
    } catch (e) {
      throw new Error(`generate: ${prompts.length} prompts through ${b} sequences (continuous batching) need a position per sequence: ${(e as Error).message}`);
    }
  }
  const t0 = performance.now();
  // The first slots: a ragged batch's start (their common length prefilled, the rest forced below).
  const first = prompts.slice(0, b);
  const plan = raggedPlan(first);
  const temperature = opts.sampling?.temperature ?? 0;
  const prefill = await model.prefill(first.map((p) => p.slice(0, plan.common)), { ...opts.sampling, temperature, seed: opts.seed ?? 0 });
  fed.fill(plan.common);
  served.forEach((r, s) => (planned[s] = fed[s] === prompts[r].length ? 1 : 0));
  const pending: { step: StepHandle; picks: Pick[] }[] = [
    { step: prefill, picks: served.map((r, s) => ({ prompt: r, fresh: fed[s] === prompts[r].length })) },
  ];

  const read = async () => {
    const { step, picks } = pending.shift()!;
    const ids = await step.tokens();
    picks.forEach(({ prompt, fresh }, i) => {
      if (!(prompt >= 0 && fresh) || requests[prompt].done) return;
      record(prompt, ids[i]);
      if (step.kind === 'decode') decoded++;
    });
  };

  const allDone = () => requests.every((r) => r.done);
  while (!allDone()) {
    // Sequences whose prompt is done (read to its EOS or budget) or has its whole budget submitted take the next
    // waiting one, prefilled in their place; its chosen token is that prompt's first new one. With none waiting the
    // sequence goes idle (its picks discarded).
    for (let s = 0; s < b; s++) {
      if (served[s] >= 0 && (requests[served[s]].done || planned[s] >= budgets[served[s]])) {
        if (waiting < prompts.length) {
          if (pending.length >= depth) await read();
          const r = waiting++;
          served[s] = r;
          fed[s] = prompts[r].length;
          planned[s] = 1;
          const step = await model.prefillSequence(s, prompts[r]);
          step.tokens().catch(() => undefined); // read (and awaited) in order below
          pending.push({ step, picks: [{ prompt: r, fresh: true }] });
          refills++;
        } else served[s] = -1;
      }
    }
    if (allDone()) break; // a read above finished the last prompts
    if (served.every((r) => r < 0)) {
      // Every prompt has all its steps submitted: read them (their picks may end at an EOS, or the budget).
      if (pending.length === 0) throw new Error('generate (continuous): prompts left unfinished with nothing in flight');
      await read();
      continue;
    }
    const forced = served.map((r, s) => (r >= 0 && fed[s] < prompts[r].length ? prompts[r][fed[s]] : undefined));
    if (pending.length >= depth) await read();
    if (forced.every((id) => id === undefined)) {
      // Every busy sequence generating: a run of steps up to the nearest budget (RUN_STEPS at most), its steps in one
      // command buffer where the layers chain them, read back once — no budget overrun, no refill delayed.
      const room = Math.min(runSteps, ...served.map((r, s) => (r < 0 ? Infinity : budgets[r] - planned[s])));
      const n = Math.max(1, room);
      const step = n === 1 ? model.decodeStep() : model.decodeRun(n, { chain: true });
      step.tokens().catch(() => undefined); // read (and awaited) in order below
      const picks = Array.from({ length: n }, () => served.map((r): Pick => (r < 0 ? { prompt: -1, fresh: false } : { prompt: r, fresh: true }))).flat();
      served.forEach((r, s) => r >= 0 && (planned[s] += n));
      pending.push({ step, picks });
      steps += n;
      continue;
    }
    const picks = served.map((r, s): Pick => {
      if (r < 0) return { prompt: -1, fresh: false };
      if (forced[s] !== undefined) fed[s]++;
      const fresh = fed[s] === prompts[r].length;
      if (fresh) planned[s]++;
      return { prompt: r, fresh };
    });
    const step = model.decodeStepForcing(forced);
    step.tokens().catch(() => undefined); // read (and awaited) in order below
    pending.push({ step, picks });
    steps++;
  }
  while (pending.length) await read(); // leave no readback half-done
  const ms = performance.now() - t0;
  const texts = requests.map((req, r) => {
    const rest = req.stream.flush();
    if (rest && opts.onText) opts.onText(rest, r);
    return req.stream.text;
  });
  return {
    tokens: requests.map((r) => r.tokens),
    texts,
    promptTokens: prompts.reduce((n, p) => n + p.length, 0),
    steps,
    refills,
    tokensPerS: useful / (ms / 1000),
    ms,
    occupancy: steps > 0 ? decoded / (steps * b) : 1,
  };
}
