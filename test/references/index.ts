// Every variant's independent reference, by the variant's file. A variant with the masked convolution is
// its base reference plus the convolution's taps.
import { sum, type Reference, type Sizes } from './common.ts';
import { centeredConv, maskedConv } from './conv.ts';
import { based, cosformer, elu, hedgehog, performer, relu } from './feature-maps.ts';
import { gla, mamba2, retnet } from './gated.ts';
import { flash, llamaGroups } from './grouped.ts';
import { softmax } from './softmax.ts';

export type { Dense, Inputs, Reference, Sizes } from './common.ts';

const withConv = (base: Reference): Reference => (x, s) => sum(base(x, s), maskedConv(x, s.K));

export interface VariantCase {
  readonly file: string;
  readonly reference: Reference;
  /** Size overrides the tests compile with: small, and C never dividing the test lengths. */
  readonly sizes: Sizes;
  /** False for the leaky ablation, which reads later positions. */
  readonly causal: boolean;
}

const paper = (name: string, reference: Reference, sizes: Sizes = {}, causal = true): VariantCase => ({ file: `examples/paper/${name}.la`, reference, sizes, causal });
const variant = (name: string, reference: Reference, sizes: Sizes = {}): VariantCase => ({ file: `examples/variants/${name}.la`, reference, sizes, causal: true });

export const VARIANTS: readonly VariantCase[] = [
  paper('elu', elu),
  paper('relu', relu),
  paper('performer', performer, { m: 5 }),
  paper('cosformer', cosformer, { M: 12 }),
  paper('elu_dwconv', withConv(elu)),
  paper('elu_aug', withConv(elu)),
  paper('relu_aug', withConv(relu)),
  paper('performer_aug', withConv(performer), { m: 5 }),
  paper('cosformer_aug', withConv(cosformer), { M: 12 }),
  paper('flash', flash, { C: 4 }),
  paper('llama_linearized', withConv(llamaGroups), { C: 4 }),
  paper('leaky_dwconv', (x, s) => sum(elu(x), centeredConv(x, s.K)), {}, false),
  variant('retnet', retnet),
  variant('gla', gla),
  variant('mamba2', mamba2),
  variant('hedgehog', hedgehog, { m: 3 }),
  variant('based', based, { W: 3 }),
  variant('softmax', softmax, { D: 3 }),
];
