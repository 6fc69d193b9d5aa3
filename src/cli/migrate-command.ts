// `bucketq migrate`: bring a database's bucketq schema up to this package's version.
import { BucketQ } from '../client.js';
import { resolveDatabase } from './database.js';

export async function migrateCommand(opts: { databaseUrl?: string | undefined }): Promise<number> {
  const db = await resolveDatabase(opts.databaseUrl, { allowEmbedded: false });
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
