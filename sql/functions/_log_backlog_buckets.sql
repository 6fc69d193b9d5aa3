-- What a group has left in each bucket's log past its checkpoint: messages not yet
-- handed out and free to go (ready), behind an inbox message of their key or an earlier
-- message of the key here (waiting), handed out in a batch still running (in_flight),
-- and the send time of the oldest of them. For bucketq.lag (hence the owner's rights):
-- one row per bucket, 0 to p_buckets - 1, from one read of the log for all buckets
-- (_log_unacked_query), grouped by key as it is read. Of a key's messages (all in one
-- bucket), only its first here can be ready, if it is not in flight and no inbox
-- message of the key holds it (one probe per key); the rest not in flight wait.
-- Unkeyed messages not in flight are ready. Zeros for a group the caller may not see.
create or replace function bucketq._log_backlog_buckets(p_group_id int, p_topic_id int, p_buckets int, p_start timestamptz)
returns table (bucket int, ready bigint, in_flight bigint, waiting bigint, oldest timestamptz)
language plpgsql stable security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  v_pos bucketq.progress[];
begin
  -- The views pass the group's own topic and bucket count; a direct caller that names
  -- another topic is not told how many of its messages lie past this group's positions.
  if not exists (select 1 from bucketq.consumer_group x join bucketq.topic t on t.topic_id = x.topic_id
                  where x.group_id = p_group_id and x.topic_id = p_topic_id and t.buckets = p_buckets) then
    return;
  end if;
  v_pos := bucketq._log_positions(p_group_id, p_buckets);
  if v_pos is null then
    return query select b.bucket, 0::bigint, 0::bigint, 0::bigint, null::timestamptz
                   from generate_series(0, p_buckets - 1) as b(bucket);
    return;
  end if;
  return query execute format(
    $q$with per_key as (
         select u.bucket, u.key_id, count(*) as n, count(*) filter (where u.in_flight) as n_flight,
                coalesce(u.key_id is not null
                         and min(u.key_seq) filter (where not u.in_flight) = min(u.key_seq)
                         and not exists (select 1 from bucketq.inbox x where x.group_id = $2 and x.key_id = u.key_id),
                         false) as head_ready,
                min(u.sent_at) as oldest
           from (%s) u
          group by u.bucket, u.key_id
       ),
       per_bucket as (
         select k.bucket,
                sum(case when k.key_id is null then k.n - k.n_flight when k.head_ready then 1 else 0 end)::bigint as ready,
                sum(k.n_flight)::bigint as in_flight,
                sum(case when k.key_id is null then 0 else k.n - k.n_flight - k.head_ready::int end)::bigint as waiting,
                min(k.oldest) as oldest
           from per_key k
          group by k.bucket
       )
       select b.bucket, coalesce(p.ready, 0), coalesce(p.in_flight, 0), coalesce(p.waiting, 0), p.oldest
         from generate_series(0, $3 - 1) as b(bucket)
         left join per_bucket p on p.bucket = b.bucket$q$,
    bucketq._log_unacked_query(p_topic_id, v_pos, p_buckets, p_start))
    using v_pos, p_group_id, p_buckets;
end $$;

comment on function bucketq._log_backlog_buckets(int, int, int, timestamptz) is
'For bucketq.lag: per bucket (0 to p_buckets - 1), the messages of its log past the group''s checkpoint that are ready, in flight (handed out in a batch still running) and waiting (behind an earlier message of their key), and the send time of the oldest. Zeros for a group the caller may not see; no rows when p_topic_id and p_buckets are not the group''s topic and its bucket count.';
