-- Whether bucket p_bucket of group p_group_id has a progress row after p_seq, as
-- committed now. VOLATILE, so that its query takes a snapshot of its own when it runs
-- (READ COMMITTED), not the calling statement's: _claim's several-bucket statement locks
-- each bucket's cursor row as it reaches it, then asks this, so that a batch another
-- claim wrote and committed after that statement's snapshot is seen (and the bucket
-- left to _log_claim) rather than handed out again.
create or replace function bucketq._progress_newer(p_group_id int, p_bucket int, p_seq bigint)
returns boolean
language plpgsql volatile as $$
begin
  return exists (select 1 from bucketq.progress p
                  where p.group_id = p_group_id and p.bucket = p_bucket and p.seq > p_seq);
end $$;

comment on function bucketq._progress_newer(int, int, bigint) is
'Internal (claims): whether the bucket has a progress row after p_seq, as committed now (a snapshot of its own, not the calling statement''s).';
