create or replace function bucketq.record_attempt(group_name text, consumer_id text, xact xid8, msg_ids bigint[])
returns void
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
begin
  g := bucketq._group(group_name);
  perform bucketq._check_consumer_id('record_attempt', consumer_id);
  if xact is null or msg_ids is null or array_position(msg_ids, null) is not null then
    raise exception 'record_attempt: xact and msg_ids must not be NULL (group %)', g.name
      using errcode = 'BQ005',
            hint = 'Pass the xact that claim_locked returned and the msg_ids it handed out (the first of each key is enough).';
  end if;
  insert into bucketq.attempt_log (group_id, xact, consumer_id, msg_ids, started_at)
  values (g.group_id, xact, record_attempt.consumer_id, msg_ids, bucketq._now())
  on conflict (group_id, xact) do update set msg_ids = bucketq.attempt_log.msg_ids || excluded.msg_ids;
end $$;

comment on function bucketq.record_attempt(text, text, xid8, bigint[]) is
'Call from a session other than the claiming one (autocommit), right after claim_locked handed out messages: records that transaction xact is attempting msg_ids. If that transaction then ends without committing (the worker crashed, its connection dropped or timed out, it rolled back), the next claim_locked of the group counts an attempt for each of those messages that is still the next of its key, and dead-letters those whose attempts are spent. Without it, a message that kills its worker is retried forever.';
