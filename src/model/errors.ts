// An error about a model file (config.json, a checkpoint, a tokenizer) that names the file and the
// field or tensor at fault, so a user can fix the file without reading our code.
export class ModelFileError extends Error {
  constructor(
    readonly file: string,
    /** The field (`attention.options.K`) or tensor (`model.layers.0.mlp.up_proj.weight`) at fault. */
    readonly where: string,
    readonly detail: string,
  ) {
    super(`${file}: ${where}: ${detail}`);
    this.name = 'ModelFileError';
  }
}

export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
