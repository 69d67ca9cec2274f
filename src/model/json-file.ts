// Reading a model directory's JSON files (config.json, tokenizer.json): a file that cannot be read or parsed is a
// ModelFileError naming it, with the system's or the parser's reason.
import { readFileSync } from 'node:fs';
import { ModelFileError } from './errors.ts';

export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ModelFileError(path, 'file', `cannot read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelFileError(path, 'file', `not valid JSON: ${(e as Error).message}`);
  }
}
