-- Is a message of topic p_topic sent in [p_lower, p_upper) still ahead of some group's
-- checkpoint in its bucket's log, or in the batch under way there (messages sent before
-- a group's start time aside: it skips them)? The inbox is another matter (its rows are
-- read by id and sent_at). Built as text with the bounds in it, so that the plan keeps
-- to the partitions in that range.
create or replace function bucketq._log_pending(p_topic bucketq.topic, p_lower timestamptz, p_upper timestamptz)
returns boolean
language plpgsql as $$
declare
  v_pending boolean;
begin
  execute format(
    $q$select exists (
         select 1
           from bucketq.consumer_group g
           cross join generate_series(0, %s - 1) as b(bucket)
           cross join lateral (select p.* from bucketq.progress p
                                where p.group_id = g.group_id and p.bucket = b.bucket and p.kind in (1, 2)
                                order by p.seq desc limit 1) c
          where g.topic_id = %s
            and exists (select 1 from bucketq._log_ahead(g.topic_id, c) m
                         where m.sent_at >= %L and m.sent_at < %L
                           and (g.start_time is null or m.sent_at >= g.start_time)))$q$,
    p_topic.buckets, p_topic.topic_id, p_lower, p_upper) into v_pending;
  return v_pending;
end $$;
