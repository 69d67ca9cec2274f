// The source editor: a plain textarea with a line-number gutter, and a backdrop behind the (transparent-
// backgrounded) textarea that underlines the span of the current error. Gutter, backdrop and textarea share one
// font and line height (style.css), so the marks line up with the text; they scroll together.
import type { SourceError } from '../../../src/runtime/browser.ts';

type Span = NonNullable<SourceError['span']>;

export class Editor {
  private readonly gutter: HTMLElement;
  private readonly backdrop: HTMLElement;
  readonly textarea: HTMLTextAreaElement;
  private error: Span | undefined;

  constructor(root: HTMLElement, onEdit: (text: string) => void) {
    this.gutter = root.querySelector<HTMLElement>('.gutter')!;
    this.backdrop = root.querySelector<HTMLElement>('.backdrop')!;
    this.textarea = root.querySelector<HTMLTextAreaElement>('textarea')!;
    this.textarea.addEventListener('input', () => {
      this.render();
      onEdit(this.textarea.value);
    });
    this.textarea.addEventListener('scroll', () => this.syncScroll());
    this.textarea.addEventListener('keydown', (e) => {
      if (e.key !== 'Tab' || e.shiftKey || e.ctrlKey || e.metaKey || e.altKey) return;
      e.preventDefault(); // indent instead of leaving the editor; Shift+Tab still moves focus
      document.execCommand('insertText', false, '  ');
    });
  }

  get value(): string {
    return this.textarea.value;
  }

  /** Replaces the text (a variant picked from the list); clears the error mark. */
  set value(text: string) {
    this.textarea.value = text;
    this.error = undefined;
    this.render();
    this.textarea.scrollTop = 0;
    this.syncScroll();
  }

  /** Marks the span of an error in this text (undefined: no error). */
  mark(span: Span | undefined): void {
    this.error = span;
    this.render();
  }

  private render(): void {
    const text = this.textarea.value;
    const lines = text.split('\n');
    const bad = this.error?.line;
    this.gutter.replaceChildren(
      ...lines.map((_, n) => {
        const el = document.createElement('div');
        el.textContent = String(n + 1);
        if (n + 1 === bad) el.className = 'error';
        return el;
      }),
    );
    // The backdrop holds the same text; the error's span is wrapped in a <mark>. A span at the end of a line
    // (an unexpected end of input) marks one blank cell so that it stays visible.
    const parts: (string | Node)[] = [];
    if (this.error && bad !== undefined && bad <= lines.length) {
      const start = lines.slice(0, bad - 1).reduce((n, l) => n + l.length + 1, 0) + this.error.col - 1;
      const lineEnd = start - (this.error.col - 1) + lines[bad - 1].length;
      const end = Math.min(start + Math.max(1, this.error.length), lineEnd);
      const mark = document.createElement('mark');
      mark.textContent = end > start ? text.slice(start, end) : ' ';
      parts.push(text.slice(0, start), mark, text.slice(Math.max(start, end)));
    } else {
      parts.push(text);
    }
    parts.push('\n'); // a trailing newline in the textarea still gets its own line here
    this.backdrop.replaceChildren(...parts);
    this.syncScroll();
  }

  private syncScroll(): void {
    this.gutter.scrollTop = this.textarea.scrollTop;
    this.backdrop.scrollTop = this.textarea.scrollTop;
    this.backdrop.scrollLeft = this.textarea.scrollLeft;
  }
}
