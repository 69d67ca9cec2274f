// Renders a SourceError the way the CLI prints it:
//
//   examples/paper/x.la:5:39: dot over axis 'e', but operand 1 has axes [h, d]
//     term a : causal score dot(q[i], k[j], e) value v
//                                           ^
//     expected: …            (syntax errors only: the tokens the grammar would have accepted)
import type { SourceError } from '../ir/span.ts';

export function formatDiagnostic(err: SourceError, source: string): string {
  const span = err.span;
  if (!span) return `${err.message}`;
  const lines = source.split('\n');
  const text = (lines[span.line - 1] ?? '').replace(/\r$/, '');
  // Keep tabs in the caret's indentation so that it lines up under tabbed source.
  const indent = text.slice(0, span.col - 1).replace(/[^\t]/g, ' ');
  const width = Math.max(1, Math.min(span.length, text.length - (span.col - 1)));
  const out = [`${span.file}:${span.line}:${span.col}: ${err.message}`, `  ${text}`, `  ${indent}^${'~'.repeat(width - 1)}`];
  if (err.expected) out.push(`  expected: ${err.expected}`);
  return out.join('\n');
}
