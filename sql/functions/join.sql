create or replace function bucketq.join(group_name text, consumer_id text, meta jsonb default null)
returns table (bucket int, epoch bigint)
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  g bucketq.consumer_group;
  v_now timestamptz;
  v_consumer text := $2;  -- "join" is a keyword, so parameters cannot be qualified with it
  v_meta jsonb := $3;
  v_by name;
begin
  g := bucketq._group(group_name);
  -- READ COMMITTED only (see _raise_not_read_committed).
  if current_setting('transaction_isolation') <> 'read committed' then
    perform bucketq._raise_not_read_committed('join', g);
  end if;
  perform bucketq._check_consumer_id('join', v_consumer);
  v_now := bucketq._now();
  -- A consumer id another role joined is not taken over (admins excepted); one that
  -- joined before consumers were bound to roles (joined_by NULL) is.
  select c.joined_by into v_by from bucketq.consumer c where c.group_id = g.group_id and c.consumer_id = v_consumer for update;
  if v_by is not null then
    perform bucketq._check_consumer('join', g, v_consumer);
  end if;
  insert into bucketq.consumer as c (group_id, consumer_id, joined_at, heartbeat_at, meta, joined_by)
  values (g.group_id, v_consumer, v_now, v_now, v_meta, bucketq._caller())
  on conflict (group_id, consumer_id) do update
     set joined_at = excluded.joined_at, heartbeat_at = excluded.heartbeat_at, meta = coalesce(excluded.meta, c.meta),
         joined_by = excluded.joined_by;
  -- A join starts a new session: whatever this id held before is released (its
  -- leases belong to a previous incarnation that is gone).
  perform bucketq._release(g,
    (select array_agg(o.bucket) from bucketq.bucket_owner o
      where o.group_id = g.group_id and o.owner = v_consumer));
  return query select * from bucketq.heartbeat(group_name, v_consumer);
end $$;

comment on function bucketq.join(text, text, jsonb) is
'Register a consumer in a group''s lobby (meta: free-form JSON such as host and pid) and take its fair share of buckets. Returns the buckets it owns with their epochs. Use a fresh consumer_id per process start; joining again with the same id starts a new session. The consumer is bound to the joining role (its SET ROLE role, else its login): only that role (and admins) may heartbeat, claim, ack, nack, record attempts or leave as it, or join with its id again (else 42501). Runs only in READ COMMITTED transactions (BQ005 in any other: rejoining with an id releases what the id held, and an older snapshot could miss batches acked while it waited to, and hand their messages out again).';
