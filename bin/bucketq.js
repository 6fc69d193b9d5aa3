#!/usr/bin/env node
// The `bucketq` command. In a checkout (src/ present and tsx installed) it runs the
// TypeScript source through tsx, so edits need no rebuild; an installed package has no
// src/ and runs the compiled CLI (dist/, built by `npm run build`, which `prepare` runs
// on install from git or a path and before packing).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/src/cli.js', import.meta.url));
const source = new URL('../src/cli.ts', import.meta.url);

async function loadTsx() {
  if (!existsSync(fileURLToPath(source))) return undefined;
  try {
    return await import('tsx/esm/api');
  } catch {
    return undefined;
  }
}

const tsx = await loadTsx();
let cli;
if (tsx) cli = await tsx.tsImport(source.href, import.meta.url);
else if (existsSync(compiled)) cli = await import(pathToFileURL(compiled).href);
else {
  console.error(`bucketq: ${compiled} is missing: run \`npm run build\` in ${fileURLToPath(new URL('..', import.meta.url))} (npm runs it on install through the prepare script)`);
  process.exit(1);
}

await cli.run(process.argv.slice(2));
