// `linattn train` with the hand-written reference attention of test/helpers/simple-attention-train.ts (elu_dwconv,
// elu_aug: the tiny and nano models) in place of the compiled variant's, whose GPU backward is issue 12: a base
// model to train Medusa heads on (bench/medusa-h200.sh) until `linattn train --device gpu` runs every variant.
// Same options as linattn train; the checkpoint is the same (the two attentions compute the same function).
//
//   tsx bench/train-reference.ts --config examples/models/nano/config.json --data data/kjv.txt --out runs/nano --steps 2000
import { execute, processIo } from '../src/cli/command.ts';
import { trainWith } from '../src/cli/train.ts';
import { referenceTrainableAttention } from '../test/helpers/simple-attention-train.ts';

process.exitCode = await execute(trainWith(referenceTrainableAttention), process.argv.slice(2), processIo);
