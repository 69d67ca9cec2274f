// The `linattn` command line: finds the command and hands it its arguments (command.ts: --help, parsing,
// errors and exit codes). Exit code 2 for a usage mistake, 1 for a failure, 0 otherwise. The process entry
// is linattn.ts; tests call `main` with their own io.
import { PASSES } from '../../passes/pipeline.ts';
import { checkCommand } from './check.ts';
import { execute, processIo, type Command } from './command.ts';
import { compileCommand } from './compile.ts';
import { demoCommand } from './demo.ts';
import { evalCommand } from './eval.ts';
import { generateCommand } from './generate.ts';
import { gradCommand } from './grad.ts';
import { initModelCommand } from './init-model.ts';
import { inputsCommand } from './inputs.ts';
import { irCommand } from './ir.ts';
import { logitsCommand } from './logits.ts';
import { runCommand } from './run.ts';
import { trainCommand } from './train.ts';
import { trainMedusaCommand } from './train-medusa.ts';

export const COMMANDS: readonly Command[] = [
  checkCommand, irCommand, compileCommand, inputsCommand, runCommand, gradCommand, initModelCommand, trainCommand, trainMedusaCommand,
  evalCommand, generateCommand, logitsCommand, demoCommand,
];

export function overview(): string {
  const synopses = COMMANDS.map((c) => `  ${c.synopsis.replace(/\n/g, '\n  ')}`).join('\n');
  return (
    'linattn — a compiler and runtime for causal linear attention\n\n' +
    `${synopses}\n\n` +
    '`linattn COMMAND --help` describes a command and its options. A variant command\'s --size NAME=N overrides\n' +
    `the variant's \`size\` declaration. Passes: ${PASSES.map((p) => p.name).join(', ')}.\n`
  );
}

/** Runs the command line `argv` (without node and the script) and returns the exit code. */
export async function main(argv: readonly string[], io = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stdout(overview());
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const c = COMMANDS.find((x) => x.name === rest[0]);
    if (name === 'help' && c) return execute(c, ['--help'], io);
    io.stdout(overview());
    return 0;
  }
  const c = COMMANDS.find((x) => x.name === name);
  if (!c) {
    const what = name.startsWith('-') ? `option '${name}' before a command` : `command '${name}'`;
    io.stderr(`linattn: unknown ${what}; the commands are ${COMMANDS.map((x) => x.name).join(', ')} (linattn --help describes them)\n`);
    return 2;
  }
  return execute(c, rest, io);
}
