create or replace function bucketq.delete_group(group_name text, force boolean default false) returns bigint
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  t bucketq.topic;
  v_live text[];
  v_pending bigint;
  v_log_pending bigint;
  v_pos bucketq.progress[];
begin
  g := bucketq._group(group_name);
  -- READ COMMITTED only (see _raise_not_read_committed).
  if current_setting('transaction_isolation') <> 'read committed' then
    perform bucketq._raise_not_read_committed('delete_group', g);
  end if;
  perform 1 from bucketq.consumer_group x where x.group_id = g.group_id for update;
  select array_agg(c.consumer_id order by c.consumer_id) into v_live
    from bucketq._consumer_now c
   where c.group_id = g.group_id and c.heartbeat_at > bucketq._now() - g.session_timeout;
  if v_live is not null and not coalesce(force, false) then
    raise exception 'delete_group: group % has % live consumer(s): %', g.name, cardinality(v_live), array_to_string(v_live[1:5], ', ')
      using errcode = 'BQ005', hint = 'Stop its workers first, or pass force => true (their acks then fail).';
  end if;
  perform 1 from bucketq.bucket_owner o where o.group_id = g.group_id order by o.bucket for update;  -- the lobby's lock order
  delete from bucketq.inbox i where i.group_id = g.group_id;
  get diagnostics v_pending = row_count;
  -- and what was still ahead in the buckets' logs (locked batches reading them finish first)
  perform 1 from bucketq.cursor k where k.group_id = g.group_id order by k.bucket for update;
  -- (in one pass over the log for all buckets: _log_unacked_query)
  select * into t from bucketq.topic where topic_id = g.topic_id;
  v_pos := bucketq._log_positions(g.group_id, t.buckets, false);
  if v_pos is not null then
    execute format('select count(*) from (%s) u', bucketq._log_unacked_query(g.topic_id, v_pos, t.buckets, g.start_time))
      into v_log_pending using v_pos;
    v_pending := v_pending + v_log_pending;
  end if;
  delete from bucketq.delivery d where d.group_id = g.group_id and d.topic_id = g.topic_id;
  -- No foreign key cascades to progress (migration 32): claims and acks write it while
  -- holding the cursor rows locked above, so theirs have all committed by now.
  delete from bucketq.progress p where p.group_id = g.group_id;
  delete from bucketq.consumer_group x where x.group_id = g.group_id;  -- owners, lobby, dead letters, access: on delete cascade
  return v_pending;
end $$;

comment on function bucketq.delete_group(text, boolean) is
'Delete a consumer group with its progress, delivery records, dead letters and lobby; the topic and its messages stay. Refuses (BQ005) while the group has live consumers unless force => true. Returns how many messages were still pending for it. Runs only in READ COMMITTED transactions (BQ005 in any other: an older snapshot could miss progress written while it waited for the group''s batches, and leave it behind).';
