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
-- The counter itself is append-only: bucketq.key_counter gets one row per key per
-- send, (key_id, prev + 1, prev + count), prev being the last_seq of the key's newest
-- row (first_seq desc, the first index entry read). It is read in a later statement
-- than the lock: in READ COMMITTED that statement's snapshot sees the previous sender's
-- row, as it committed before we got the lock. In REPEATABLE READ and SERIALIZABLE the
-- transaction's snapshot may predate that commit; then prev + 1 is the first_seq of a
-- row committed since (rows of a key are contiguous), and the insert fails on the
-- primary key instead of handing out a key_seq twice. maintain() deletes all but each
-- key's newest row, so such a row could be gone: there the newest row we see is gone
-- too, and we lock it FOR KEY SHARE, which raises 40001 ("concurrent delete") in those
-- isolation levels if it was deleted. send_batch turns either error into 40001 with
-- the key's name. (Read committed needs neither: maintain never deletes a key's newest
-- row.)
--
-- Returns, per key, its key_id and base: the key_seq before this send's first message.
create or replace function bucketq._take_key_seqs(p_topic_id int, p_keys text[], p_counts bigint[])
returns table (key text, key_id bigint, base bigint)
language plpgsql set search_path = pg_catalog, bucketq, pg_temp
as $$
#variable_conflict use_column
declare
  v_keys text[];
  v_key_ids bigint[];
  v_bases bigint[];
begin
  -- Rows are inserted (or locked) in the order of the SELECT: key order.
  insert into bucketq.topic_key as k (topic_id, key)
  select p_topic_id, u.k from unnest(p_keys) as u(k) order by u.k
  on conflict (topic_id, key) do update set key = excluded.key where false;

  -- The key_ids come from here: every later statement goes by key_id, an index probe.
  -- (A join of the keys with topic_key by name, planned generically for any number of
  -- keys, became a hash join over a sequential scan of all the topic's keys.) Sorted as
  -- p_keys is, so the arrays below line up with it.
  select array_agg(l.key order by l.key), array_agg(l.key_id order by l.key) into v_keys, v_key_ids
    from bucketq.topic_key l
   where l.topic_id = p_topic_id and l.key = any(p_keys);
  if v_keys is distinct from p_keys then
    raise exception '_take_key_seqs: keys must be distinct and sorted (got % keys, found % in topic_key)',
      cardinality(p_keys), cardinality(v_keys) using errcode = 'XX000';
  end if;

  -- Not in READ COMMITTED, whose new snapshot sees the newest row, which maintain()
  -- never deletes: lock the newest row we see, so that one deleted since our snapshot
  -- raises 40001 instead of being read.
  if current_setting('transaction_isolation') <> 'read committed' then
    perform 1
      from unnest(v_key_ids) as u(key_id)
      cross join lateral (select y.first_seq from bucketq.key_counter y
                           where y.key_id = u.key_id
                           order by y.first_seq desc limit 1
                             for key share) p;
  end if;

  -- Each key's last key_seq (its newest counter row), then its new counter row. By
  -- position in the arrays: joins of the keys by name cost a third of a send of 1,000.
  select array_agg(coalesce(p.last_seq, 0) order by u.n) into v_bases
    from unnest(v_key_ids) with ordinality as u(key_id, n)
    left join lateral (select y.last_seq from bucketq.key_counter y
                        where y.key_id = u.key_id
                        order by y.first_seq desc limit 1) p on true;
  insert into bucketq.key_counter (key_id, first_seq, last_seq)
  select u.key_id, u.base + 1, u.base + u.c from unnest(v_key_ids, v_bases, p_counts) as u(key_id, base, c);

  return query select u.key, u.key_id, u.base from unnest(p_keys, v_key_ids, v_bases) as u(key, key_id, base);
end $$;

comment on function bucketq._take_key_seqs(int, text[], bigint[]) is
'For send_batch: creates missing keys and locks existing ones (topic_key rows, in key order, in one pass) until commit and appends one bucketq.key_counter row per key; returns each key''s key_id and the key_seq before this send, in the order of p_keys. keys sorted and distinct, counts one per key. Writes no row version that VACUUM must remove.';
