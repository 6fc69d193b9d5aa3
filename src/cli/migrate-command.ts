// `bucketq migrate`: bring a database's bucketq schema up to this package's version.
import { BucketQ } from '../client.js';
import { resolveDatabase } from './database.js';

export async function migrateCommand(opts: { databaseUrl?: string | undefined }): Promise<number> {
  const db = await resolveDatabase(opts.databaseUrl, { allowEmbedded: false });
  const client = new BucketQ({ connectionString: db.connectionString, poolMax: 1 });
  try {
    const { from, to } = await client.migrate();
    console.log(from === to ? `bucketq schema is current (version ${to}) on ${db.description}` : `migrated bucketq schema from version ${from} to ${to} on ${db.description}`);
    return 0;
  } finally {
    await client.close();
    await db.release();
  }
}
