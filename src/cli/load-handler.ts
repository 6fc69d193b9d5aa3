// Loads a worker's handler module. A TypeScript handler (.ts, .mts, .cts) loads as it
// is when something already compiles TypeScript (tsx in a checkout, Node's own type
// stripping); otherwise through tsx when the project has it installed; otherwise the
// error names the fix.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Handler } from '../worker/options.js';
import { CliError } from './cli-error.js';

const TS_FILE = /\.(c|m)?tsx?$/;

export async function loadHandler(file: string, cwd: string = process.cwd()): Promise<Handler> {
  const url = pathToFileURL(path.resolve(cwd, file)).href;
  const mod = (await importModule(file, url, cwd)) as { default?: unknown; handler?: unknown };
  const handler = mod.handler ?? mod.default;
  if (typeof handler !== 'function') {
    throw new CliError(`bucketq worker: ${file} must export a handler function (export default async (message, ctx) => {...} or export const handler = ...)`);
  }
  return handler as Handler;
}

async function importModule(file: string, url: string, cwd: string): Promise<unknown> {
  try {
    return await import(url);
  } catch (err) {
    if (!TS_FILE.test(file) || (err as { code?: string }).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err;
  }
  const tsx = await findTsx(cwd);
  if (!tsx) {
    throw new CliError(
      `bucketq worker: ${file} is TypeScript, which this Node (${process.version}) cannot load by itself: ` +
        `install tsx in your project (npm install --save-dev tsx) and bucketq loads it through tsx, or compile the handler to JavaScript and pass the .js file`,
    );
  }
  return tsx.tsImport(url, pathToFileURL(path.join(cwd, 'noop.js')).href);
}

interface TsxApi {
  tsImport(specifier: string, parentURL: string): Promise<unknown>;
}

/** tsx as the user's project has it installed (resolved from cwd), else as bucketq finds it. */
async function findTsx(cwd: string): Promise<TsxApi | undefined> {
  try {
    // Its ES module entry: a require()-resolved path would be the CommonJS one.
    const pkgJson = createRequire(path.join(cwd, 'package.json')).resolve('tsx/package.json');
    const pkg = JSON.parse(await readFile(pkgJson, 'utf8')) as { exports: Record<string, { import: { default: string } }> };
    return (await import(pathToFileURL(path.join(path.dirname(pkgJson), pkg.exports['./esm/api']!.import.default)).href)) as TsxApi;
  } catch {
    // not installed in the project (or laid out differently): try from here
  }
  try {
    return (await import('tsx/esm/api')) as TsxApi;
  } catch {
    return undefined;
  }
}
