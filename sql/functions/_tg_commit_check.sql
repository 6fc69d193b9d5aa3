-- The commit-time readiness check in one statement instead of one per key. Only
-- predecessors can go away meanwhile (our transaction holds the keys' counter rows, so
-- no earlier message of these keys can be sent now): one snapshot for all keys sees
-- the same as one per key, and a row deleted under the lock wait is skipped as before.
-- The keys come from the transaction-local setting bucketq.pending_heads, which send
-- writes and the caller could write too: entries not naming a row of this transaction
-- are ignored.
create or replace function bucketq._tg_commit_check() returns trigger
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
as $$
declare
  v_ready_groups int[] := '{}';
  v_ready_keys bigint[] := '{}';
  v_ready_seqs bigint[] := '{}';
begin
  delete from bucketq.commit_check where txid = new.txid;
  -- One statement: lock, in (group, key) order, what still stands before each key's
  -- first new message (nested loop: the lateral runs in the sorted order of p).
  select coalesce(array_agg(c.g order by c.g, c.k), '{}'), coalesce(array_agg(c.k order by c.g, c.k), '{}'),
         coalesce(array_agg(c.s order by c.g, c.k), '{}')
    into v_ready_groups, v_ready_keys, v_ready_seqs
    from (select p.g, p.k, p.s, l.hit
            from (select distinct on (e.g, e.k) e.g, e.k, e.s
                    from (select split_part(x, ':', 1)::int as g, split_part(x, ':', 2)::bigint as k, split_part(x, ':', 3)::bigint as s
                            from unnest(string_to_array(current_setting('bucketq.pending_heads', true), ';')) as x
                           where x <> '') e
                   -- Only entries naming a waiting row this transaction inserted: the
                   -- setting is the caller's to write, and forged entries would lock
                   -- other groups' rows for the rest of its transaction (issue 13,
                   -- item 4). A row we can see whose inserter is in progress is ours.
                   where exists (select 1 from bucketq.inbox h
                                  where h.group_id = e.g and h.key_id = e.k and h.key_seq = e.s and h.state = 3
                                    and pg_xact_status(bucketq._xid8(h.xmin)) = 'in progress')
                   order by e.g, e.k, e.s) p
            left join lateral (select 1 as hit from bucketq.inbox x
                                where x.group_id = p.g and x.key_id = p.k and x.key_seq < p.s
                                order by x.key_seq desc
                                limit 1
                                for key share) l on true) c
   where c.hit is null;
  if cardinality(v_ready_keys) > 0 then
    -- Fresh statement, fresh snapshot: whoever we waited for has committed.
    update bucketq.inbox i
       set state = case when i.available_at > bucketq._now() then 2 else 0 end
      from unnest(v_ready_groups, v_ready_keys, v_ready_seqs) as r(g, k, s)
     where i.group_id = r.g and i.key_id = r.k and i.key_seq = r.s and i.state = 3
       and not exists (select 1 from bucketq.inbox y
                        where y.group_id = r.g and y.key_id = r.k and (y.key_seq < r.s or y.state <> 3));
  end if;
  perform set_config('bucketq.pending_heads', '', true);
  return null;
end $$;
