// Builds `bucketq.fn(name => $1::type, ...)` naming only the arguments given, so the
// SQL function's own defaults apply to the rest (one source of truth for defaults).

export type NamedArg = readonly [name: string, cast: string, value: unknown];

export function namedCall(fn: string, args: readonly NamedArg[]): { text: string; values: unknown[] } {
  const parts: string[] = [];
  const values: unknown[] = [];
  for (const [name, cast, value] of args) {
    if (value === undefined) continue;
    values.push(value);
    parts.push(`${name} => $${values.length}::${cast}`);
  }
  return { text: `${fn}(${parts.join(', ')})`, values };
}
