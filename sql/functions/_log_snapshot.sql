-- A snapshot that cuts the log into windows, with message_ord_seq read just before it
-- was taken (floor) and just after (ceil). Every message visible in the snapshot took
-- its ord before it committed, so before the snapshot: ord <= ceil. Every message of a
-- transaction that got its id after the snapshot took its ord later still: ord > floor.
-- Each statement takes its own snapshot (read committed), in this order.
create or replace function bucketq._log_snapshot(out floor bigint, out snap pg_snapshot, out ceil bigint)
language plpgsql volatile as $$
begin
  floor := coalesce(pg_sequence_last_value('bucketq.message_ord_seq'), 0);
  snap := pg_current_snapshot();
  ceil := coalesce(pg_sequence_last_value('bucketq.message_ord_seq'), 0);
end $$;
