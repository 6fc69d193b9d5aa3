-- The progress rows a claim (_log_claim) or a settle (_log_settle) gathered, bucket by
-- bucket, written in one INSERT: 15 µs a row, against 34 for one INSERT a row. seq
-- comes from the identity, in the array's order. The callers hold the buckets' cursor
-- rows, so nobody else reads these buckets' progress before they commit; they write
-- what they gathered before anything of theirs reads it back (_promote, through
-- _log_holds_earlier, reads a bucket's latest row).
create or replace function bucketq._progress_append(p_rows bucketq.progress[])
returns void
language plpgsql as $$
begin
  insert into bucketq.progress (group_id, bucket, kind, lo, lo_floor, hi, hi_floor, hi_ceil, early_ids, pos_ord, pos_id,
                                msg_ids, lease_token, leased_until, xact, consumer_id, epoch, created_at)
  select p.group_id, p.bucket, p.kind, p.lo, p.lo_floor, p.hi, p.hi_floor, p.hi_ceil, p.early_ids, p.pos_ord, p.pos_id,
         p.msg_ids, p.lease_token, p.leased_until, p.xact, p.consumer_id, p.epoch, p.created_at
    from unnest(p_rows) as p;
end $$;

comment on function bucketq._progress_append(bucketq.progress[]) is
'Internal: writes the progress rows a claim or a settle gathered (their seq NULL: the identity numbers them in array order) in one INSERT.';
