// The tensors of a Hugging Face checkpoint directory: model.safetensors, or the shards that
// model.safetensors.index.json lists ({"weight_map": {tensor: shard file}}). Every shard's header is read and
// checked when the checkpoint is opened — a missing shard, a tensor the index places in a shard that lacks it,
// a dtype we do not read, a truncated file: each an error naming the file and the tensor — and tensors are then
// read one at a time (src/io/safetensors-file.ts), converted to float32 once, so a caller can upload and drop
// each before reading the next. PyTorch pickles (pytorch_model.bin, *.pt) are refused with how to convert them.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, type SafetensorsTensorInfo } from '../io/safetensors-file.ts';
import { ModelFileError } from './errors.ts';

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';

/** How to turn a PyTorch pickle into safetensors, for error messages (we never unpickle). */
export function pickleAdvice(file: string, out: string): string {
  return (
    `PyTorch pickles are not read (they can run code). Convert it once with Python: ` +
    `python -c "import torch; from safetensors.torch import save_file; ` +
    `save_file({k: v.contiguous() for k, v in torch.load('${file}', map_location='cpu').items()}, '${out}')"`
  );
}

export class HfCheckpoint {
  private constructor(
    readonly dir: string,
    /** The file errors about the set of tensors name: the index, or the single file. */
    readonly file: string,
    private readonly shards: ReadonlyMap<string, SafetensorsFile>,
    private readonly where: ReadonlyMap<string, string>,
  ) {}

  static open(dir: string): HfCheckpoint {
    const index = join(dir, INDEX_FILE);
    if (existsSync(index)) return HfCheckpoint.fromIndex(dir, index);
    const single = join(dir, SINGLE_FILE);
    if (existsSync(single)) {
      const f = SafetensorsFile.open(single);
      return new HfCheckpoint(dir, single, new Map([[SINGLE_FILE, f]]), new Map(f.names.map((n) => [n, SINGLE_FILE])));
    }
    const pickle = ['pytorch_model.bin', 'pytorch_model.bin.index.json'].find((f) => existsSync(join(dir, f)));
    const found = existsSync(dir) ? readdirSync(dir).join(', ') || 'nothing' : 'no such directory';
    const why = pickle ? `; it holds ${pickle}. ${pickleAdvice(join(dir, 'pytorch_model.bin'), join(dir, SINGLE_FILE))}` : ` (it holds: ${found})`;
    throw new ModelFileError(dir, 'checkpoint', `neither ${SINGLE_FILE} nor ${INDEX_FILE}${why}`);
  }

  private static fromIndex(dir: string, index: string): HfCheckpoint {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(index, 'utf8'));
    } catch (e) {
      throw new ModelFileError(index, 'file', `not readable JSON: ${(e as Error).message}`);
    }
    const map = (json as { weight_map?: unknown })?.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new ModelFileError(index, 'weight_map', 'missing, or not an object of tensor → shard file');
    const where = new Map<string, string>();
    const byShard = new Map<string, string[]>();
    for (const [name, shard] of Object.entries(map)) {
      if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\') || !shard.endsWith('.safetensors')) {
        throw new ModelFileError(index, `weight_map.${name}`, `expected a .safetensors file name in this directory, got ${JSON.stringify(shard)}`);
      }
      where.set(name, shard);
      byShard.set(shard, [...(byShard.get(shard) ?? []), name]);
    }
    const shards = new Map<string, SafetensorsFile>();
    try {
      for (const [shard, names] of byShard) {
        const path = join(dir, shard);
        if (!existsSync(path)) throw new ModelFileError(index, names[0], `its shard ${shard} is missing from ${dir} (the index places ${names.length} tensor${names.length > 1 ? 's' : ''} there)`);
        const f = SafetensorsFile.open(path);
        shards.set(shard, f);
        for (const name of names) if (!f.has(name)) throw new ModelFileError(path, name, `${INDEX_FILE} places this tensor in ${shard}, which does not hold it`);
      }
    } catch (e) {
      for (const f of shards.values()) f.close();
      throw e;
    }
    return new HfCheckpoint(dir, index, shards, where);
  }

  get names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  /** dtype, shape and bytes of a tensor, and the file it is in. */
  info(name: string): (SafetensorsTensorInfo & { file: string }) | undefined {
    const shard = this.where.get(name);
    if (shard === undefined) return undefined;
    const f = this.shards.get(shard)!;
    return { ...f.info(name)!, file: f.path };
  }

  /** Tensor `name` as float32, read now (nothing is cached). */
  read(name: string): { shape: number[]; data: Float32Array } {
    const shard = this.where.get(name);
    if (shard === undefined) throw new ModelFileError(this.file, name, 'missing tensor');
    return this.shards.get(shard)!.read(name);
  }

  close(): void {
    for (const f of this.shards.values()) f.close();
  }
}
