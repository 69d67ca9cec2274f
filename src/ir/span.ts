// Source positions travel with IR nodes so that every later error can point back at the DSL text.
export interface Span {
  readonly file: string;
  readonly line: number; // 1-based
  readonly col: number; // 1-based
  readonly length: number;
}

/** An error that names a place in a variant's source. The CLI prints it as file:line:col, the line and a caret. */
export class SourceError extends Error {
  constructor(
    message: string,
    readonly span: Span | undefined,
    readonly expected?: string,
  ) {
    super(message);
    this.name = 'SourceError';
  }
}

export function at(span: Span | undefined): string {
  return span ? `${span.file}:${span.line}:${span.col}` : '<generated>';
}
