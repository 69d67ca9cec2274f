// Reading a model directory's JSON files (config.json, tokenizer.json, trainer_state.json): a file that cannot be
// read or parsed is a ModelFileError naming it, with the system's or the parser's reason.
import { readFileSync } from 'node:fs';
import { ModelFileError } from './errors.ts';

/** `invalid` starts the message of a file that is not JSON (a checkpoint's says it is damaged). */
export function readJsonFile(path: string, invalid = 'not valid JSON'): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ModelFileError(path, 'file', `cannot read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelFileError(path, 'file', `${invalid}: ${(e as Error).message}`);
  }
}
