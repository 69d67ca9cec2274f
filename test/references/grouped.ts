// Mixed-chunk attention: quadratic inside aligned groups of C positions, linear across earlier groups.
import { attend, dot, l2, param, relu, row, sum, tensorOf, type Inputs, type Sizes } from './common.ts';

const sameGroup = (C: number) => (i: number, j: number) => j <= i && Math.floor(i / C) === Math.floor(j / C);
const earlierGroup = (C: number) => (i: number, j: number) => Math.floor(j / C) < Math.floor(i / C);

/**
 * Hua et al. 2022 (FLASH): local relu(q_i·k_j / C + b[h, i − j])² within the group, global q_i·k_j / C
 * across earlier groups, no normalisation.
 */
export function flash(x: Inputs, sizes: Sizes): Float64Array {
  const q = tensorOf(x, 'q');
  const k = tensorOf(x, 'k');
  const bias = tensorOf(x, 'b');
  const C = sizes.C;
  const qk = (b: number, h: number, i: number, j: number) => dot(row(q, b, i, h), row(k, b, j, h));
  return sum(
    attend(x, { sees: sameGroup(C), score: (b, h, i, j) => relu(qk(b, h, i, j) / C + param(bias, h, i - j)) ** 2 }),
    attend(x, { sees: earlierGroup(C), score: (b, h, i, j) => qk(b, h, i, j) / C }),
  );
}

/**
 * You et al. 2024, the linearized LLaMA-2 layer: with q̂ = q/‖q‖, k̂ = k/‖k‖, local relu(q̂_i·k̂_j)² within the
 * group, global q̂_i·k̂_j across earlier groups (the masked convolution is added by the caller).
 */
export function llamaGroups(x: Inputs, sizes: Sizes): Float64Array {
  const q = tensorOf(x, 'q');
  const k = tensorOf(x, 'k');
  const cos = (b: number, h: number, i: number, j: number) => {
    const qi = row(q, b, i, h);
    const kj = row(k, b, j, h);
    return dot(qi, kj) / (l2(qi) * l2(kj));
  };
  return sum(
    attend(x, { sees: sameGroup(sizes.C), score: (b, h, i, j) => relu(cos(b, h, i, j)) ** 2 }),
    attend(x, { sees: earlierGroup(sizes.C), score: cos }),
  );
}
