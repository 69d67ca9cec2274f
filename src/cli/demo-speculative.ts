// The demo's speculative decoding (`npm run demo`, part 5): the trained model of examples/models/tiny-kjv with three
// Medusa heads trained on it (examples/models/tiny-kjv-medusa, `linattn train-medusa`; its README has the command),
// greedy, on the GPU, from part 4's prompt. Two drafts: the trained heads on a fixed chained tree, and the training-free adaptive draft under
// `--tree auto`. Each run decodes the prompt plainly too, in the same run, and the check is the paper's promise:
// the same text as plain decoding, in fewer verification steps than tokens. Whether that is faster depends on the
// GPU: on a software adapter every tree row costs the CPU what a decode step does, so there it is not.
import { join } from 'node:path';
import { REPO_ROOT } from '../model/config.ts';
import { execute, type CommandIo } from './command.ts';
import { capture, PROMPT } from './demo-trained.ts';
import { generateCommand } from './generate.ts';

export const MEDUSA_MODEL = join(REPO_ROOT, 'examples/models/tiny-kjv-medusa');
const TOKENS = 160;

const RUNS: readonly { what: string; args: readonly string[] }[] = [
  { what: 'trained Medusa heads, chain:3, 4 tree steps a submit', args: ['--speculate', 'medusa', '--tree', 'chain:3', '--chain-steps', '4'] },
  { what: 'training-free adaptive draft (a tri-gram table of the text), --tree auto', args: ['--speculate', 'adaptive', '--auto-state', 'none'] },
];

/** Part 5: greedy speculative decoding with the shipped heads and with the adaptive draft. Returns whether every output equals plain decoding. */
export async function speculativePart(io: CommandIo, line: (s?: string) => void, gpuIsSoftware: boolean): Promise<boolean> {
  line(`\n5. speculative decoding: examples/models/tiny-kjv-medusa (tiny-kjv and 3 Medusa heads trained on it by linattn train-medusa), greedy, ${TOKENS} tokens`);
  let ok = true;
  let shown = false;
  for (const run of RUNS) {
    const { code, out, err } = await capture(io, (o) => execute(generateCommand, ['--model', MEDUSA_MODEL, '--prompt', PROMPT, '--max-tokens', String(TOKENS), '--temperature', '0', '--device', 'gpu', ...run.args], o));
    if (code !== 0) return false;
    if (!shown) line(`   ${JSON.stringify(PROMPT + out.replace(/\n$/, ''))}`);
    shown = true;
    const steps = /(\d+) tokens in (\d+) verification steps, mean accepted length ([\d.]+) tokens\/step/.exec(err);
    const speed = /([\d.]+|—) tokens\/s \(draft/.exec(err);
    const plain = /plain decoding, same run: \d+ tokens, ([\d.]+|—) tokens\/s; speed-up ([\d.]+×|—); output (identical to|differs from) plain decoding/.exec(err);
    const auto = /\nauto: (.*)/.exec(err);
    if (!steps || !speed || !plain) {
      io.stderr(`linattn demo: could not read the speculative report:\n${err}`);
      return false;
    }
    const same = plain[3] === 'identical to';
    line(`   ${run.what}:`);
    line(`     ${steps[1]} tokens in ${steps[2]} verification steps (${steps[3]} tokens a step); ${speed[1]} tokens/s against plain decoding's ${plain[1]} in the same run: ${plain[2]}; output ${same ? 'identical to' : 'DIFFERS FROM'} plain decoding`);
    if (auto) line(`     auto: ${auto[1]}`);
    ok = ok && same;
  }
  if (gpuIsSoftware) line('   (on this software adapter the "GPU" is the CPU: a tree step costs what its rows cost, so fewer steps are not faster here; the README has a hardware GPU\'s figures)');
  return ok;
}
