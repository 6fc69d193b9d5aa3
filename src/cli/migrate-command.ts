// `bucketq migrate`: bring a database's bucketq schema up to this package's version.
import type { Command } from 'commander';
import { BucketQ } from '../client.js';
import { databaseUrl, runs } from './command.js';
import { resolveDatabase } from './database.js';

export function registerMigrate(program: Command): void {
  program
    .command('migrate')
    .description('create or upgrade the bucketq schema in the database (safe to run from many processes at once)')
    .action(runs(async (_flags: object, cmd: Command) => migrateCommand(databaseUrl(cmd))));
}

async function migrateCommand(url: string | undefined): Promise<number> {
  const db = await resolveDatabase(url, { allowEmbedded: false });
  const client = new BucketQ({ connectionString: db.connectionString, poolMax: 1 });
  try {
    const { from, to, definitions } = await client.migrate();
    if (from === to && definitions === 'current') console.log(`bucketq schema is current (version ${to}) on ${db.description}`);
    else if (from === to) console.log(`bucketq schema is at version ${to}; applied this release's functions and views on ${db.description}`);
    else console.log(`migrated bucketq schema from version ${from} to ${to} on ${db.description}`);
    return 0;
  } finally {
    await client.close();
    await db.release();
  }
}
