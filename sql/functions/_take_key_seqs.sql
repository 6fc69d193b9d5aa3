-- The per-key counters of a send, without a dead tuple on the way (migration 25).
--
-- topic_key rows are never updated: a new key is inserted once, then every sender of
-- the key locks its row until it commits. One statement does both, key by key in key
-- order (the caller passes the keys sorted and distinct): INSERT ... ON CONFLICT DO
-- UPDATE ... WHERE false inserts a new key, or locks the existing row (FOR UPDATE: every
-- column is a key column) and updates nothing. A concurrent sender of the same new key
-- waits for our commit, then locks our row. A row lock only sets the tuple's xmax: no
-- new version, nothing for VACUUM, however long the xmin horizon is pinned.
--
-- Creating and locking in one pass is what keeps the order: a send that first created
-- its new keys and then locked its existing ones held a new key "c" while waiting for
-- "b", and deadlocked with a transaction that held "b" and sent "c" next (key order
-- across its statements, as the caller is told to keep). replay_dead locks the same rows
-- FOR UPDATE, also in key order: it still holds producers of its keys back.
--
-- The counter itself is append-only (migration 31): a send appends one row per key to
-- the part of bucketq.key_counter its topic appends to (key_counter_0 or _1, by
-- topic.key_rotation % 2), (key_id, prev + 1, prev + count). prev, the key's last
-- key_seq, is the newest row (first_seq desc, the first index entry read) of that part,
-- else of the other part, else the key's key_counter_base row, else 0: rows of the
-- current part are newer than the other part's, which are newer than the base's, since
-- maintain() only ever points a topic at the part it has just emptied and folded into
-- the base, while holding the topic's producers back (send_batch holds that lock shared
-- and reads key_rotation after it). A key sent to since the last rotation costs one
-- index probe.
--
-- The counters are read in a later statement than the lock: in READ COMMITTED that
-- statement's snapshot sees the previous sender's row, as it committed before we got
-- the lock. In REPEATABLE READ and SERIALIZABLE the transaction's snapshot may predate
-- that commit; then prev + 1 is the first_seq of a row committed since in our part
-- (rows of a key are contiguous), and the insert fails on the primary key instead of
-- handing out a key_seq twice. A snapshot that predates a rotation (whose TRUNCATE it
-- would not see through) never gets here: the rotation updated the topic row, which
-- send_batch locks first in those isolation levels (40001). send_batch turns either
-- error into 40001 with the key's or the topic's name.
--
-- Returns, per key in the order of p_keys, its key_id and base: the key_seq before this
-- send's first message. As arrays, so that _send (send_batch's body) takes them in a plain
-- expression (migration 37 dropped the version that returned rows).
--
-- One key (every single send of a keyed message): its row is locked by a lookup (FOR
-- UPDATE, the lock ON CONFLICT DO UPDATE takes), which also gives its key_id; only a key
-- not found goes through the insert. The steps are those below, each on one row: the
-- probe and the counter row restate the batch's for one key (change both together).
-- Falling through to the batch's statements instead cost a keyed single send about 6%
-- (0.324 to 0.350 ms against 0.294 to 0.336, pgbench).
create or replace function bucketq._take_key_seqs(p_topic_id int, p_keys text[], p_counts bigint[],
                                                  out key_ids bigint[], out bases bigint[])
language plpgsql set search_path = pg_catalog, bucketq, pg_temp
-- Every read here is an index probe. Statistics that make a topic look like one key
-- (test/sql-plans.test.ts, topic_key.key) could price a sequential scan of topic_key
-- below the probes of "= any" in a generic plan: a CI run read all 12,469 keys a send.
set enable_seqscan = off
as $$
#variable_conflict use_column
declare
  v_keys text[];
  v_key_ids bigint[];
  v_bases bigint[];
  v_part int;
  v_key_id bigint;
begin
  if cardinality(p_keys) = 1 then
    select l.key_id into v_key_id from bucketq.topic_key l
     where l.topic_id = p_topic_id and l.key = p_keys[1] for update;
    if v_key_id is null then
      insert into bucketq.topic_key as k (topic_id, key) values (p_topic_id, p_keys[1])
      on conflict (topic_id, key) do update set key = excluded.key where false;
      select l.key_id into v_key_id from bucketq.topic_key l where l.topic_id = p_topic_id and l.key = p_keys[1];
    end if;
    select x.key_rotation % 2 into v_part from bucketq.topic x where x.topic_id = p_topic_id;
    v_bases := array[coalesce(
      case when v_part = 0
           then (select y.last_seq from bucketq.key_counter_0 y where y.key_id = v_key_id order by y.first_seq desc limit 1)
           else (select y.last_seq from bucketq.key_counter_1 y where y.key_id = v_key_id order by y.first_seq desc limit 1) end,
      case when v_part = 0
           then (select y.last_seq from bucketq.key_counter_1 y where y.key_id = v_key_id order by y.first_seq desc limit 1)
           else (select y.last_seq from bucketq.key_counter_0 y where y.key_id = v_key_id order by y.first_seq desc limit 1) end,
      (select b.last_seq from bucketq.key_counter_base b where b.key_id = v_key_id),
      0)];
    if v_part = 0 then
      insert into bucketq.key_counter_0 (part, key_id, first_seq, last_seq)
      values (0, v_key_id, v_bases[1] + 1, v_bases[1] + p_counts[1]);
    else
      insert into bucketq.key_counter_1 (part, key_id, first_seq, last_seq)
      values (1, v_key_id, v_bases[1] + 1, v_bases[1] + p_counts[1]);
    end if;
    key_ids := array[v_key_id];
    bases := v_bases;
    return;
  end if;

  -- Rows are inserted (or locked) in the order of the SELECT: key order.
  insert into bucketq.topic_key as k (topic_id, key)
  select p_topic_id, u.k from unnest(p_keys) as u(k) order by u.k
  on conflict (topic_id, key) do update set key = excluded.key where false;

  -- The key_ids come from here: every later statement goes by key_id, an index probe.
  -- (A join of the keys with topic_key by name, planned generically for any number of
  -- keys, became a hash join over a sequential scan of all the topic's keys.) Sorted as
  -- p_keys is, so the arrays below line up with it.
  if current_setting('server_version_num')::int >= 170000 then
    -- One pass over the index for all the keys (Postgres 17 reads "= any" that way).
    select array_agg(l.key order by l.key), array_agg(l.key_id order by l.key) into v_keys, v_key_ids
      from bucketq.topic_key l
     where l.topic_id = p_topic_id and l.key = any(p_keys);
  else
    -- Before 17, the generic plan of the statement above, with statistics that price a
    -- topic at a few keys (as with many small topics beside a big one), took only
    -- topic_id into the index condition and filtered the keys: every send read all of
    -- its topic's keys (test/sql-plans.test.ts, topic_key.topic_id). One probe per key
    -- cannot go that way, and costs about as much there (2.7 against 2.3 ms for 1,000).
    select array_agg(l.key order by l.key), array_agg(l.key_id order by l.key) into v_keys, v_key_ids
      from unnest(p_keys) as u(k)
      cross join lateral (select l.key, l.key_id from bucketq.topic_key l
                           where l.topic_id = p_topic_id and l.key = u.k offset 0) l;
  end if;
  if v_keys is distinct from p_keys then
    raise exception '_take_key_seqs: keys must be distinct and sorted (got % keys, found % in topic_key)',
      cardinality(p_keys), cardinality(v_keys) using errcode = 'XX000';
  end if;

  -- Read after send_batch took the topic's producer lock: maintain() changes it only
  -- while holding that lock exclusively.
  select x.key_rotation % 2 into v_part from bucketq.topic x where x.topic_id = p_topic_id;

  -- Each key's last key_seq, then its new counter row. By position in the arrays: joins
  -- of the keys by name cost a third of a send of 1,000. (CASE and COALESCE evaluate
  -- only the subqueries they reach.)
  select array_agg(coalesce(
           case when v_part = 0
                then (select y.last_seq from bucketq.key_counter_0 y where y.key_id = u.key_id order by y.first_seq desc limit 1)
                else (select y.last_seq from bucketq.key_counter_1 y where y.key_id = u.key_id order by y.first_seq desc limit 1) end,
           case when v_part = 0
                then (select y.last_seq from bucketq.key_counter_1 y where y.key_id = u.key_id order by y.first_seq desc limit 1)
                else (select y.last_seq from bucketq.key_counter_0 y where y.key_id = u.key_id order by y.first_seq desc limit 1) end,
           (select b.last_seq from bucketq.key_counter_base b where b.key_id = u.key_id),
           0) order by u.n) into v_bases
    from unnest(v_key_ids) with ordinality as u(key_id, n);
  if v_part = 0 then
    insert into bucketq.key_counter_0 (part, key_id, first_seq, last_seq)
    select 0, u.key_id, u.base + 1, u.base + u.c from unnest(v_key_ids, v_bases, p_counts) as u(key_id, base, c);
  else
    insert into bucketq.key_counter_1 (part, key_id, first_seq, last_seq)
    select 1, u.key_id, u.base + 1, u.base + u.c from unnest(v_key_ids, v_bases, p_counts) as u(key_id, base, c);
  end if;

  key_ids := v_key_ids;
  bases := v_bases;
end $$;

comment on function bucketq._take_key_seqs(int, text[], bigint[]) is
'For send_batch, holding the topic''s producer lock: creates missing keys and locks existing ones (topic_key rows, in key order, in one pass) until commit and appends one row per key to the topic''s part of bucketq.key_counter (key_rotation % 2); returns each key''s key_id and the key_seq before this send, as arrays in the order of p_keys. keys sorted and distinct, counts one per key. Writes no row version that VACUUM must remove.';
