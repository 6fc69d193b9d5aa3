-- Each bucket's latest position (kind 1 or 2) for a group, buckets 0 to p_buckets - 1,
-- in bucket order (a bucket with none is left out). For the views' backlog counts, NULL
-- for a group the caller may not see (_may_see_group); p_check false for the operations
-- that read the backlog (skip_to_latest, rewind, delete_group), whose callers have been
-- checked already. See _log_unacked_query.
create or replace function bucketq._log_positions(p_group_id int, p_buckets int, p_check boolean default true)
returns bucketq.progress[]
language sql stable as $$
  select array_agg(lp.p order by b.bucket)
    from generate_series(0, p_buckets - 1) as b(bucket)
    cross join lateral (select p from bucketq.progress p
                         where p.group_id = p_group_id and p.bucket = b.bucket and p.kind in (1, 2)
                         order by p.seq desc limit 1) lp(p)
   where not p_check or bucketq._may_see_group(p_group_id)
$$;

comment on function bucketq._log_positions(int, int, boolean) is
'Internal: a group''s latest position in each bucket''s log (buckets 0 to p_buckets - 1, those that have one), in bucket order; with p_check, NULL for a group the caller may not see.';
