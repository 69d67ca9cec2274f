// Bernoulli arms with Beta posteriors, sampled (Thompson sampling): the adaptive draft's estimate of how often
// each kind of candidate is accepted. An arm starts at Beta(1, 1) — every acceptance rate equally likely, so
// untried arms draw high values often and get tried (exploration); as outcomes accumulate its draws
// concentrate on the observed rate (exploitation). Seeded, so a run is reproducible.
import { rng } from '../tensor.ts';

export class ThompsonArms {
  private readonly arms = new Map<string, { wins: number; losses: number }>();
  private readonly random: () => number;

  constructor(seed: number) {
    this.random = rng(seed >>> 0);
  }

  /** Records one trial of `arm`. */
  record(arm: string, accepted: boolean): void {
    let a = this.arms.get(arm);
    if (!a) this.arms.set(arm, (a = { wins: 0, losses: 0 }));
    if (accepted) a.wins++;
    else a.losses++;
  }

  /** A draw from the arm's posterior Beta(1 + wins, 1 + losses). */
  sample(arm: string): number {
    const a = this.arms.get(arm);
    return betaSample(1 + (a?.wins ?? 0), 1 + (a?.losses ?? 0), this.random);
  }

  /** The posterior mean (1 + wins) / (2 + trials). */
  mean(arm: string): number {
    const a = this.arms.get(arm);
    return (1 + (a?.wins ?? 0)) / (2 + (a?.wins ?? 0) + (a?.losses ?? 0));
  }

  trials(arm: string): number {
    const a = this.arms.get(arm);
    return (a?.wins ?? 0) + (a?.losses ?? 0);
  }
}

/** Beta(a, b) as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b). */
export function betaSample(a: number, b: number, random: () => number): number {
  const x = gammaSample(a, random);
  const y = gammaSample(b, random);
  return x / (x + y);
}

/** Gamma(shape, 1) for shape ≥ 1 by Marsaglia and Tsang's squeeze method (every shape here is ≥ 1). */
function gammaSample(shape: number, random: () => number): number {
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = normal(random);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = random();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(Math.max(u, Number.MIN_VALUE)) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

function normal(random: () => number): number {
  const u = Math.max(random(), Number.MIN_VALUE);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}
