// The `bucketq` command line, on commander: each subcommand (src/cli/*) declares its
// arguments, options, environment variables and help once. Usage errors (unknown
// command or option, with a suggestion; missing or malformed values) exit 2 everywhere,
// runtime errors (database, unknown topic or group, ...) exit 1.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { registerDemo } from './cli/demo.js';
import { registerDlq } from './cli/dlq-command.js';
import { registerExporter } from './cli/exporter-command.js';
import { registerGroup } from './cli/group-command.js';
import { registerMaintain } from './cli/maintain-command.js';
import { registerMessageCommands } from './cli/message-commands.js';
import { registerMigrate } from './cli/migrate-command.js';
import { registerRewind } from './cli/rewind-command.js';
import { registerSchedule } from './cli/schedule-command.js';
import { registerSend } from './cli/send-command.js';
import { registerStatus } from './cli/status-command.js';
import { registerTopic } from './cli/topic-command.js';
import { registerUi } from './cli/ui-command.js';
import { registerWorker } from './cli/worker-command.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE, UsageError } from './cli/cli-error.js';
import { takeExitCode } from './cli/command.js';
import { printable } from './cli/terminal-text.js';
import { BucketqError, mapPgError } from './errors.js';
import { EmbeddedPostgresUnavailableError } from './db/embedded.js';

/** The package's version: package.json is one level up from src/cli.ts, two from dist/src/cli.js. */
function packageVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'bucketq' && pkg.version) return pkg.version;
    } catch {
      // not there: try the next
    }
  }
  return 'unknown';
}
const VERSION = packageVersion();

/** The whole command tree; output goes through console.log / console.error. */
export function buildProgram(): Command {
  const program = new Command('bucketq')
    .description('Kafka-style partitions, consumer groups and per-key FIFO inside Postgres')
    .version(VERSION, '-V, --version', 'print the version')
    .addOption(
      new Option('--database-url <url>', 'Postgres connection string; without it and DATABASE_URL, the PG* variables as for psql (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)').env(
        'DATABASE_URL',
      ),
    )
    .helpOption('-h, --help', 'show help (also: bucketq COMMAND --help)')
    .showSuggestionAfterError(true)
    .showHelpAfterError(false)
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .configureOutput({
      writeOut: (s) => console.log(s.replace(/\n$/, '')),
      writeErr: (s) => console.error(s.replace(/\n$/, '')),
      outputError: () => {}, // main() turns the error into a UsageError, printed once by run()
    });
  registerMigrate(program);
  registerWorker(program);
  registerStatus(program);
  registerTopic(program);
  registerGroup(program);
  registerSend(program);
  registerMessageCommands(program);
  registerDlq(program);
  registerRewind(program);
  registerSchedule(program);
  registerMaintain(program);
  registerUi(program);
  registerExporter(program);
  registerDemo(program);
  program.addHelpText('after', '\nexit codes: 0 ok, 1 failed (database, unknown topic or group, ...), 2 bad usage');
  // Every command throws instead of exiting, carrying itself, so errors can name it.
  const override = (cmd: Command) => {
    cmd.exitOverride((err) => {
      throw Object.assign(err, { command: cmd });
    });
    cmd.commands.forEach(override);
  };
  override(program);
  return program;
}

/** 'topic create' for `bucketq topic create`; '' for bucketq itself. */
function commandPath(cmd: Command | undefined): string {
  const names: string[] = [];
  for (let c: Command | null | undefined = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Runs the command line and returns its exit code. Usage errors throw UsageError,
 * runtime errors whatever failed; run() prints them.
 */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  takeExitCode();
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
    if (err.code === 'commander.help') return EXIT_USAGE; // no command given: the help went to stderr
    const path = commandPath((err as CommanderError & { command?: Command }).command);
    const message = err.message.replace(/^error: /, '');
    throw new UsageError(`${path ? `${path}: ` : ''}${message}\nsee: bucketq ${path ? `${path} ` : ''}--help`);
  }
  return takeExitCode();
}

/** Hints that name CLI commands, for the errors whose SQL hint names SQL calls: by SQLSTATE, then by message. */
const CLI_HINTS: Record<string, string> = {
  BQ002: 'list topics with `bucketq topic list`; create one with `bucketq topic create NAME`',
  BQ003: 'list groups with `bucketq group list`; create one with `bucketq group create NAME --topic T`',
  BQ007: 'see the existing settings with `bucketq topic describe NAME` or `bucketq group describe NAME`',
};
const CLI_HINTS_BY_MESSAGE: [RegExp, string][] = [
  [/^delete_group: .* live consumer/, 'stop its workers first, or add --force (their acks then fail)'],
  [/^delete_topic: .* consumer group/, 'delete the groups first (`bucketq group delete NAME`), or add --force to delete them with the topic'],
  [/^delete_dead: .* hold their key/, 'replay them with `bucketq dlq replay --group G --id ID`; replayed, `bucketq dlq delete` removes their records'],
  [/^(delete_dead|replay_dead): .* not dead letters/, 'list them with `bucketq dlq list --group G --all`'],
];

function cliHint(code: string | undefined, message: string, sqlHint: string | undefined): string | undefined {
  return (code && CLI_HINTS[code]) || CLI_HINTS_BY_MESSAGE.find(([re]) => re.test(message))?.[1] || sqlHint;
}

function describeError(err: unknown): string {
  if (err instanceof BucketqError) {
    const hint = cliHint(err.code, err.message, err.hint);
    return [`${err.name} [${err.code}]: ${err.message}`, err.detail && `detail: ${err.detail}`, hint && `hint: ${hint}`].filter(Boolean).join('\n');
  }
  if (err instanceof CliError || err instanceof EmbeddedPostgresUnavailableError) return err.message;
  // Postgres errors from the commands' own queries (connection refused, auth, SQL): as the client maps them.
  if (err instanceof Error && ('severity' in err || 'code' in err)) {
    const mapped = mapPgError(err);
    if (mapped instanceof BucketqError) return describeError(mapped);
    const hint = cliHint(undefined, err.message, (err as { hint?: string }).hint);
    return `${err.message}${hint ? `\nhint: ${hint}` : ''}`;
  }
  if (err instanceof AggregateError && err.errors.length) return err.errors.map((e) => describeError(e)).join('\n'); // connection refused on every address
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

/**
 * A reader that stops early (`bucketq group list | head -3`) closes the pipe: the next
 * write fails with EPIPE, which Node throws as an unhandled 'error' event with a stack
 * trace. As other command-line tools do, stop quietly instead.
 */
function exitQuietlyOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
}

/** Runs the CLI and sets the process exit code; errors are printed, not thrown. */
export async function run(argv: string[]): Promise<void> {
  exitQuietlyOnClosedPipe();
  try {
    process.exitCode = await main(argv);
  } catch (err) {
    console.error(`bucketq: ${printable(describeError(err))}`); // errors may quote input and data
    process.exitCode = err instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  }
}

// Run when executed directly (node dist/src/cli.js, tsx src/cli.ts); bin/bucketq.js calls run().
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(process.argv.slice(2));
}
