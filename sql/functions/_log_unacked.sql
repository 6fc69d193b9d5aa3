-- What a group has not acked in one bucket's log: everything past its latest position
-- (the batch under way included), messages sent before the group's start aside, and
-- nothing for a group the caller may not see (_may_see_group). For _log_backlog_any,
-- which asks whether there is any (the counts read all buckets at once:
-- _log_unacked_rows); plain SQL, so it is inlined into its (owner's) query.
create or replace function bucketq._log_unacked(p_group_id int, p_topic_id int, p_bucket int, p_start timestamptz)
returns setof bucketq.message
language sql stable as $$
  select m.*
    from (select p.* from bucketq.progress p
           where p.group_id = p_group_id and p.bucket = p_bucket and p.kind in (1, 2)
             and bucketq._may_see_group(p_group_id)   -- callable directly: only groups the caller may see
           order by p.seq desc limit 1) c
    cross join lateral bucketq._log_ahead(p_topic_id, c) m
   where p_start is null or m.sent_at >= p_start
$$;

comment on function bucketq._log_unacked(int, int, int, timestamptz) is
'For _log_backlog_any: the messages of one bucket''s log past the group''s latest position (the batch under way included) and not before its start time; none for a group the caller may not see.';
