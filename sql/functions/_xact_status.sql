-- pg_xact_status, but never an error: an xact that is not yet assigned (a "future"
-- transaction id, which pg_xact_status refuses) is 'future'. An attempt_log row naming
-- one (written before record_attempt checked its xact) would otherwise make every
-- claim_locked of its group fail; _settle_attempts drops such rows. The common case
-- (below the snapshot's xmax: completed, or in progress since before it) costs no
-- subtransaction.
create or replace function bucketq._xact_status(x xid8) returns text
language plpgsql volatile as $$
begin
  if x < pg_snapshot_xmax(pg_current_snapshot()) then
    return pg_xact_status(x);
  end if;
  begin
    return pg_xact_status(x);
  exception when invalid_parameter_value then
    return 'future';
  end;
end $$;

comment on function bucketq._xact_status(xid8) is
'pg_xact_status(x), or ''future'' for a transaction id not yet assigned (instead of an error).';
