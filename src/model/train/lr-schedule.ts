// The learning rate of step s (1-based, s = 1 … steps): a linear warmup to lr over `warmup` steps, then a cosine
// decay from lr to minLr at the last step:
//
//   s ≤ warmup:  lr · s / warmup
//   otherwise:   minLr + ½ (lr − minLr) (1 + cos(π · (s − warmup) / (steps − warmup)))
export interface LrSchedule {
  readonly lr: number;
  readonly minLr: number;
  readonly warmup: number;
  readonly steps: number;
}

export function learningRate(step: number, s: LrSchedule): number {
  if (!(Number.isInteger(step) && step >= 1)) throw new Error(`learning rate: step must be a positive integer, got ${step}`);
  if (step <= s.warmup) return (s.lr * step) / s.warmup;
  if (s.steps <= s.warmup) return s.lr;
  const progress = Math.min(1, (step - s.warmup) / (s.steps - s.warmup));
  return s.minLr + 0.5 * (s.lr - s.minLr) * (1 + Math.cos(Math.PI * progress));
}
