#!/usr/bin/env node
// The `bucketq` command. Runs the compiled CLI when the package is built (published
// package, or after `npm run build`); in a fresh clone it runs the TypeScript source
// through tsx, which `npm ci` installs.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/src/cli.js', import.meta.url));
const source = new URL('../src/cli.ts', import.meta.url);

const cli = existsSync(compiled)
  ? await import(pathToFileURL(compiled).href)
  : await (await import('tsx/esm/api')).tsImport(source.href, import.meta.url);

await cli.run(process.argv.slice(2));
