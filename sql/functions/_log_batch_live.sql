-- Is the batch that a bucket's latest progress row records still running? A lease:
-- until it expires, while the bucket is still owned at its epoch (p_epoch: the epoch the
-- caller owns the bucket at). A locked batch: while its transaction is in progress.
-- PL/pgSQL for its plan cache: Postgres 14 to 17 plan a SQL function's body at every
-- call (pg_current_xact_id, volatile, keeps Postgres from inlining it).
create or replace function bucketq._log_batch_live(c bucketq.progress, p_epoch bigint, p_now timestamptz)
returns boolean
language plpgsql stable as $$
begin
  return case
    when c.kind = 1 then false
    when c.kind = 2 and c.lease_token is not null then c.leased_until > p_now and c.epoch = p_epoch
    else c.xact = pg_current_xact_id() or pg_xact_status(c.xact) = 'in progress'
  end;
end $$;
