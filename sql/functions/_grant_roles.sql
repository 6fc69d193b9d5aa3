-- Revokes PUBLIC's default rights on everything in the schema, then grants each role
-- its share. Idempotent; owner only. migrate() runs it after applying these files.
create or replace function bucketq._grant_roles() returns void
language plpgsql as $$
declare
  f record;
  v_producer boolean := exists (select 1 from pg_catalog.pg_roles where rolname = 'bucketq_producer');
  v_consumer boolean := exists (select 1 from pg_catalog.pg_roles where rolname = 'bucketq_consumer');
  v_monitor boolean := exists (select 1 from pg_catalog.pg_roles where rolname = 'bucketq_monitor');
  v_admin boolean := exists (select 1 from pg_catalog.pg_roles where rolname = 'bucketq_admin');
begin
  revoke all on schema bucketq from public;
  revoke all on all tables in schema bucketq from public;   -- views too
  revoke all on all sequences in schema bucketq from public;
  revoke all on all functions in schema bucketq from public;

  if v_producer then
    grant usage on schema bucketq to bucketq_producer;
  end if;
  if v_consumer then
    grant usage on schema bucketq to bucketq_consumer;
    grant select on bucketq.groups to bucketq_consumer;
  end if;
  if v_monitor then
    grant usage on schema bucketq to bucketq_monitor;
    grant execute on function bucketq._now() to bucketq_monitor;
  end if;
  if v_admin then
    grant usage on schema bucketq to bucketq_admin;
    grant execute on function bucketq._now() to bucketq_admin;
  end if;

  -- Functions by name, so every overload of a name is covered.
  for f in
    select p.oid::regprocedure as sig, p.proname::text as name
      from pg_catalog.pg_proc p
     where p.pronamespace = 'bucketq'::regnamespace and p.proname !~ '^_'
  loop
    if v_producer and f.name in ('send', 'send_batch') then
      execute format('grant execute on function %s to bucketq_producer', f.sig);
    end if;
    if v_consumer and f.name in ('join', 'heartbeat', 'leave', 'claim', 'claim_locked', 'record_attempt', 'ack', 'nack', 'maintain') then
      execute format('grant execute on function %s to bucketq_consumer', f.sig);
    end if;
    if v_monitor and f.name in ('metrics') then
      execute format('grant execute on function %s to bucketq_monitor', f.sig);
    end if;
    if v_admin then
      execute format('grant execute on function %s to bucketq_admin', f.sig);
    end if;
  end loop;

  -- Views are the public read side; tables stay private.
  for f in
    select c.oid::regclass as rel from pg_catalog.pg_class c
     where c.relnamespace = 'bucketq'::regnamespace and c.relkind in ('v', 'm')
  loop
    if v_monitor then
      execute format('grant select on %s to bucketq_monitor', f.rel);
    end if;
    if v_admin then
      execute format('grant select on %s to bucketq_admin', f.rel);
    end if;
  end loop;

  -- Role memberships are cluster-wide; granting them needs ADMIN on the roles (their
  -- creator has it; a superuser always).
  if v_admin then
    begin
      if v_producer then grant bucketq_producer to bucketq_admin; end if;
      if v_consumer then grant bucketq_consumer to bucketq_admin; end if;
      if v_monitor then grant bucketq_monitor to bucketq_admin; end if;
    exception when insufficient_privilege or invalid_grant_operation then
      raise warning 'bucketq: % may not grant the bucketq roles to bucketq_admin (%)', current_user, sqlerrm
        using hint = 'As a superuser: grant bucketq_producer, bucketq_consumer, bucketq_monitor to bucketq_admin;';
    end;
  end if;
  -- pg_monitor lets vacuum_horizon show every session's query; optional.
  if v_monitor and not pg_catalog.pg_has_role('bucketq_monitor', 'pg_monitor', 'member') then
    begin
      grant pg_monitor to bucketq_monitor;
    exception when insufficient_privilege or invalid_grant_operation then
      raise notice 'bucketq: % may not grant pg_monitor to bucketq_monitor; vacuum_horizon shows other users'' queries only once a superuser does', current_user;
    end;
  end if;
end $$;

comment on function bucketq._grant_roles() is
'Owner only: revoke PUBLIC''s rights on everything in schema bucketq and grant bucketq_producer, bucketq_consumer, bucketq_monitor and bucketq_admin their share (skipping roles that do not exist). Idempotent; run after adding functions or views, or once a DBA created missing roles.';
