// The ingest-floor benchmark compares send_batch with a bare INSERT into bare_message,
// a table meant to be shaped as a partition of bucketq.message. If the log gains a
// column or an index and bare_message does not, the floor is wrong and the ratio lies:
// this compares the two, column by column and index by index.
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { BARE_SCHEMA } from '../bench/lib/db.js';
import { useDatabase } from './helpers/sql.js';

const ctx = useDatabase();

/** Columns (name, type, not null, in order), indexes (definition without names) and storage options of a table. */
async function shape(c: pg.Client, table: string) {
  const { rows: columns } = await c.query<{ col: string }>(
    `select format('%s %s%s', a.attname, format_type(a.atttypid, a.atttypmod), case when a.attnotnull then ' not null' else '' end) as col
       from pg_attribute a where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum`, [table]);
  const { rows: indexes } = await c.query<{ def: string }>(
    `select regexp_replace(pg_get_indexdef(i.indexrelid), '^CREATE (UNIQUE )?INDEX \\S+ ON \\S+ ', 'CREATE \\1INDEX ON ') as def
       from pg_index i where i.indrelid = $1::regclass order by 1`, [table]);
  const { rows: options } = await c.query<{ opts: string[] | null; toast: string[] | null }>(
    `select c.reloptions as opts, t.reloptions as toast from pg_class c left join pg_class t on t.oid = c.reltoastrelid where c.oid = $1::regclass`, [table]);
  return { columns: columns.map((r) => r.col), indexes: indexes.map((r) => r.def), options: options[0] };
}

describe('ingest-floor baseline', () => {
  it('bare_message has the columns, indexes and storage options of a partition of bucketq.message', async () => {
    const c = await ctx.session();
    const topic = ctx.unique('floor');
    await c.query(`select bucketq.create_topic(topic => $1, buckets => 16)`, [topic]);
    const { rows } = await c.query<{ rel: string }>(
      `select format('bucketq.%I', p.message_rel) as rel from bucketq.log_partition p join bucketq.topic t using (topic_id)
        where t.name = $1 order by p.lower_bound limit 1`, [topic]);
    await c.query('create schema bench_floor');
    await c.query('set search_path = bench_floor');
    await c.query(BARE_SCHEMA);
    await c.query('reset search_path');
    const partition = await shape(c, rows[0]!.rel);
    const bare = await shape(c, 'bench_floor.bare_message');
    expect(partition.columns.length).toBeGreaterThan(10);
    expect(bare.columns).toEqual(partition.columns);
    expect(bare.indexes).toHaveLength(3);
    expect(bare.indexes).toEqual(partition.indexes);
    expect(bare.options).toEqual(partition.options);
  });
});
