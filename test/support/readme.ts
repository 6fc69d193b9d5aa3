// The fenced code blocks of a Markdown file, with their language and line.
import { readFileSync } from 'node:fs';

export interface CodeBlock {
  lang: string;
  code: string;
  /** 1-based line of the opening fence. */
  line: number;
}

export function codeBlocks(file: string): CodeBlock[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const blocks: CodeBlock[] = [];
  let open: { lang: string; line: number; body: string[] } | undefined;
  lines.forEach((text, i) => {
    const fence = /^```(\S*)/.exec(text);
    if (!open && fence) open = { lang: fence[1]!, line: i + 1, body: [] };
    else if (open && /^```\s*$/.test(text)) {
      blocks.push({ lang: open.lang, code: open.body.join('\n'), line: open.line });
      open = undefined;
    } else open?.body.push(text);
  });
  if (open) throw new Error(`${file}:${open.line}: code block never closed`);
  return blocks;
}
