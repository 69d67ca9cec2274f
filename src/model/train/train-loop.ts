// The training loop, the same for the GPU and the CPU trainer: step s (1-based) draws its micro-batches from
// seeds (seed, s, micro) and its learning rate from the schedule, so a run resumed at step S takes exactly the
// steps an uninterrupted run would. One step is kept in flight: step s + 1 is submitted before step s's loss is
// read back, except at a step that evaluates or saves. Every step appends a line to train_log.jsonl; a loss or
// gradient norm that is not finite stops the run (AdamW skipped that update, and the last checkpoint on disk is
// untouched) with an error saying which step is the last good checkpoint.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LOG_FILE, saveCheckpoint, type TrainerState, type TrainOptions } from './checkpoint.ts';
import { stepBatches, validationBatches, type Split } from './data.ts';
import { learningRate } from './lr-schedule.ts';
import type { StepResult, Trainer } from './trainer.ts';

export interface TrainProgress {
  readonly step: number;
  readonly steps: number;
  readonly loss: number;
  readonly lr: number;
  readonly gradNorm: number;
  /** Tokens per second since this process started training. */
  readonly tokensPerS: number;
  /** Seconds to the last step at that rate. */
  readonly etaS: number;
}

export interface LoopContext {
  readonly trainer: Trainer;
  readonly split: Split;
  readonly options: TrainOptions;
  readonly out: string;
  readonly device: 'gpu' | 'cpu';
  readonly data: TrainerState['data'];
  /** The saved state of the run being resumed. */
  readonly resumed?: TrainerState;
  /** Tokens per window of the batches (default options.block; train-medusa: the heads' block + heads). */
  readonly window?: number;
  /** Tensors saved with every checkpoint that do not train (train-medusa: the base model). */
  readonly frozen?: ReadonlyMap<string, { readonly shape: readonly number[]; readonly data: Float32Array }>;
  /** Saved in trainer_state.json: this run trains Medusa heads. */
  readonly medusa?: TrainerState['medusa'];
  readonly onProgress?: (p: TrainProgress) => void;
  /** Evaluations and saves, as lines for a person. */
  readonly onEvent?: (line: string) => void;
  readonly now?: () => number;
}

export interface TrainSummary {
  readonly step: number;
  readonly lastLoss?: number;
  readonly lastValLoss?: number;
  readonly tokensPerS: number;
}

/** The loss or gradient became NaN or infinite; nothing was saved after the last good checkpoint. */
export class TrainingDiverged extends Error {
  constructor(readonly step: number, readonly lastSaved: number | undefined, what: string, out: string) {
    super(
      `step ${step}: ${what}; training stopped. ` +
        (lastSaved !== undefined
          ? `The last good checkpoint is step ${lastSaved} in ${out} (resume with --resume, perhaps with a lower --lr in a new run).`
          : `No checkpoint had been saved yet (the first save comes at --save-every).`),
    );
    this.name = 'TrainingDiverged';
  }
}

export async function trainLoop(ctx: LoopContext): Promise<TrainSummary> {
  const { trainer, options: o, split } = ctx;
  const now = ctx.now ?? (() => performance.now() / 1000);
  const logPath = join(ctx.out, LOG_FILE);
  prepareLog(logPath, ctx.resumed?.step);
  const log = (entry: Record<string, number>) => appendFileSync(logPath, JSON.stringify(entry) + '\n');
  const window = ctx.window ?? o.block;
  const valBatches = validationBatches(split, o.batch, window);
  const tokensPerStep = o.batch * o.block * o.accum;

  let tokensSeen = ctx.resumed?.tokensSeen ?? 0;
  const elapsedBefore = ctx.resumed?.elapsedSeconds ?? 0;
  let lastSaved = ctx.resumed?.step;
  let lastLoss = ctx.resumed?.lastLoss;
  let lastValLoss = ctx.resumed?.lastValLoss;
  const start = now();
  const first = trainer.step + 1;
  const rate = () => ((trainer.step - first + 1) * tokensPerStep) / Math.max(1e-9, now() - start);

  const finish = (s: number, lr: number, r: StepResult) => {
    if (!Number.isFinite(r.loss)) throw new TrainingDiverged(s, lastSaved, `the loss is ${r.loss}`, ctx.out);
    if (r.skipped) throw new TrainingDiverged(s, lastSaved, `the gradient norm is ${r.gradNorm}`, ctx.out);
    tokensSeen += tokensPerStep;
    lastLoss = r.loss;
    log({ step: s, loss: r.loss, lr, grad_norm: r.gradNorm, tokens: tokensSeen, elapsed_s: round(elapsedBefore + now() - start) });
    const tps = rate();
    ctx.onProgress?.({ step: s, steps: o.steps, loss: r.loss, lr, gradNorm: r.gradNorm, tokensPerS: tps, etaS: ((o.steps - s) * tokensPerStep) / tps });
  };

  let inflight: { step: number; lr: number; result: Promise<StepResult> } | undefined;
  try {
    for (let s = first; s <= o.steps; s++) {
      const micro = stepBatches(split, o.batch, window, o.accum, o.seed, s);
      const lr = learningRate(s, o);
      const result = trainer.trainStep(micro, { lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, step: s, maxNorm: o.clip });
      if (inflight) finish(inflight.step, inflight.lr, await inflight.result);
      inflight = { step: s, lr, result };
      const evaluate = s % o.evalEvery === 0 || s === o.steps;
      const save = s % o.saveEvery === 0 || s === o.steps;
      if (!evaluate && !save) continue;
      finish(s, lr, await result);
      inflight = undefined;
      if (evaluate) {
        const ev = trainer.evaluateMetrics ? await trainer.evaluateMetrics(valBatches) : { loss: await trainer.evaluate(valBatches), metrics: {} };
        lastValLoss = ev.loss;
        log({ step: s, val_loss: lastValLoss, val_perplexity: Math.exp(lastValLoss), ...ev.metrics });
        const extra = Object.entries(ev.metrics).map(([k, v]) => `, ${k} ${v.toFixed(4)}`).join('');
        ctx.onEvent?.(`step ${s}: validation loss ${lastValLoss.toFixed(4)} nats/token (perplexity ${Math.exp(lastValLoss).toFixed(2)})${extra}`);
        if (!Number.isFinite(lastValLoss)) throw new TrainingDiverged(s, lastSaved, `the validation loss is ${lastValLoss}`, ctx.out);
      }
      if (save) {
        const snap = await trainer.snapshot();
        const state: TrainerState = {
          format: 'linattn-trainer', version: 1, step: s, device: ctx.device, options: o, data: ctx.data,
          tokensSeen, elapsedSeconds: round(elapsedBefore + now() - start),
          ...(lastLoss !== undefined && { lastLoss }), ...(lastValLoss !== undefined && { lastValLoss }),
          ...(ctx.medusa && { medusa: ctx.medusa }),
        };
        saveCheckpoint(ctx.out, trainer.layout, snap, state, ctx.frozen);
        lastSaved = s;
        ctx.onEvent?.(`step ${s}: saved ${ctx.out}`);
      }
    }
  } catch (e) {
    inflight?.result.catch(() => undefined);
    throw e;
  }
  return { step: trainer.step, ...(lastLoss !== undefined && { lastLoss }), ...(lastValLoss !== undefined && { lastValLoss }), tokensPerS: rate() };
}

/** A fresh run starts an empty log; a resumed one drops the lines of steps after its checkpoint (a crash's). */
function prepareLog(path: string, resumedAt: number | undefined): void {
  if (resumedAt === undefined || !existsSync(path)) {
    writeFileSync(path, '');
    return;
  }
  const kept = readFileSync(path, 'utf8').split('\n').filter((line) => {
    if (line.trim() === '') return false;
    try {
      const step = (JSON.parse(line) as { step?: unknown }).step;
      return typeof step === 'number' && step <= resumedAt;
    } catch {
      return false;
    }
  });
  writeFileSync(path, kept.map((l) => l + '\n').join(''));
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
