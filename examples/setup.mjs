// Applies examples/setup.sql (topic, group, the example handler's table) to DATABASE_URL.
import { readFile } from 'node:fs/promises';
import pg from 'pg';

const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
await client.connect();
await client.query(await readFile(new URL('./setup.sql', import.meta.url), 'utf8'));
await client.end();
console.log('example topic "orders" and group "billing" are ready');
