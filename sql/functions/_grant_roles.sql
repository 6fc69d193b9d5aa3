-- Revokes PUBLIC's default rights on everything in the schema, then grants each role
-- its share. Idempotent; owner only. migrate() runs it after applying these files.
-- Each kind goes to bucketq._role(kind): this database's own role when it exists
-- (bucketq._create_database_roles), else the cluster-wide one; a cluster-wide role that
-- a per-database role replaces loses every right here.
create or replace function bucketq._grant_roles() returns void
language plpgsql as $$
declare
  f record;
  k text;
  r_producer name := bucketq._role('producer');
  r_consumer name := bucketq._role('consumer');
  r_monitor name := bucketq._role('monitor');
  r_admin name := bucketq._role('admin');
  v_producer boolean := exists (select 1 from pg_catalog.pg_roles where rolname = r_producer);
  v_consumer boolean := exists (select 1 from pg_catalog.pg_roles where rolname = r_consumer);
  v_monitor boolean := exists (select 1 from pg_catalog.pg_roles where rolname = r_monitor);
  v_admin boolean := exists (select 1 from pg_catalog.pg_roles where rolname = r_admin);
begin
  revoke all on schema bucketq from public;
  revoke all on all tables in schema bucketq from public;   -- views too
  revoke all on all sequences in schema bucketq from public;
  revoke all on all functions in schema bucketq from public;
  foreach k in array array['producer', 'consumer', 'monitor', 'admin'] loop
    if bucketq._role(k) <> ('bucketq_' || k)::name and exists (select 1 from pg_catalog.pg_roles where rolname = 'bucketq_' || k) then
      execute format('revoke all on schema bucketq from %I', 'bucketq_' || k);
      execute format('revoke all on all tables in schema bucketq from %I', 'bucketq_' || k);
      execute format('revoke all on all sequences in schema bucketq from %I', 'bucketq_' || k);
      execute format('revoke all on all functions in schema bucketq from %I', 'bucketq_' || k);
    end if;
  end loop;

  if v_producer then
    execute format('grant usage on schema bucketq to %I', r_producer);
  end if;
  if v_consumer then
    execute format('grant usage on schema bucketq to %I', r_consumer);
    execute format('grant select on bucketq.groups to %I', r_consumer);
    -- Functions a view calls are checked against its reader: the views' filters.
    execute format('grant execute on function bucketq._may_see_group(int) to %I', r_consumer);
    -- Workers fire the schedules of their group's topic: these send only what an admin
    -- scheduled (create_schedule), never a payload the consumer names.
    execute format('grant execute on function bucketq._due_schedules(text, int), bucketq._fire_schedules(text, text[], timestamptz[], timestamptz[], text[]) to %I', r_consumer);
  end if;
  if v_monitor then
    execute format('grant usage on schema bucketq to %I', r_monitor);
    execute format('grant execute on function bucketq._now(), bucketq._schema_owner(), bucketq._may_see_group(int), bucketq._may_read_payloads(int, int) to %I', r_monitor);
  end if;
  if v_admin then
    execute format('grant usage on schema bucketq to %I', r_admin);
    execute format('grant execute on function bucketq._now(), bucketq._schema_owner(), bucketq._may_see_group(int), bucketq._may_read_payloads(int, int) to %I', r_admin);
  end if;
  -- The views count what is left in the log through these (they run as the owner).
  foreach k in array array[r_monitor, r_admin, r_consumer] loop
    if exists (select 1 from pg_catalog.pg_roles where rolname = k) then
      for f in
        select p.oid::regprocedure as sig from pg_catalog.pg_proc p
         where p.pronamespace = 'bucketq'::regnamespace
           and p.proname in ('_log_backlog_buckets', '_log_backlog_total', '_log_backlog_any')
      loop
        execute format('grant execute on function %s to %I', f.sig, k);
      end loop;
    end if;
  end loop;

  -- Functions by name, so every overload of a name is covered.
  for f in
    select p.oid::regprocedure as sig, p.proname::text as name
      from pg_catalog.pg_proc p
     where p.pronamespace = 'bucketq'::regnamespace and p.proname !~ '^_'
  loop
    if v_producer and f.name in ('send', 'send_batch') then
      execute format('grant execute on function %s to %I', f.sig, r_producer);
    end if;
    if v_consumer and f.name in ('join', 'heartbeat', 'leave', 'claim', 'claim_locked', 'record_attempt', 'ack', 'nack', 'reject', 'maintain') then
      execute format('grant execute on function %s to %I', f.sig, r_consumer);
    end if;
    if v_monitor and f.name in ('metrics') then
      execute format('grant execute on function %s to %I', f.sig, r_monitor);
    end if;
    if v_admin then
      execute format('grant execute on function %s to %I', f.sig, r_admin);
    end if;
  end loop;

  -- Views are the public read side; tables stay private.
  for f in
    select c.oid::regclass as rel from pg_catalog.pg_class c
     where c.relnamespace = 'bucketq'::regnamespace and c.relkind in ('v', 'm')
  loop
    if v_monitor then
      execute format('grant select on %s to %I', f.rel, r_monitor);
    end if;
    if v_admin then
      execute format('grant select on %s to %I', f.rel, r_admin);
    end if;
  end loop;

  -- Role memberships are cluster-wide; granting them needs ADMIN on the roles (their
  -- creator has it; a superuser always).
  if v_admin then
    begin
      foreach k in array array[r_producer, r_consumer, r_monitor] loop
        if exists (select 1 from pg_catalog.pg_roles where rolname = k) then
          if not pg_catalog.pg_has_role(r_admin, k, 'member') then
            execute format('grant %I to %I', k, r_admin);
          end if;
        end if;
      end loop;
    exception when insufficient_privilege or invalid_grant_operation then
      raise warning 'bucketq: % may not grant the bucketq roles to % (%)', current_user, r_admin, sqlerrm
        using hint = format('As a superuser: grant %I, %I, %I to %I;', r_producer, r_consumer, r_monitor, r_admin);
    end;
  end if;
  -- bucketq_monitor must not hold pg_monitor (earlier versions granted it when a
  -- superuser migrated): the role is shared by every database of the cluster, and
  -- pg_monitor would show its members every database's query texts. A DBA who wants
  -- vacuum_horizon to show other users' queries grants pg_read_all_stats to a chosen
  -- monitoring login, knowing that it is cluster-wide.
  if v_monitor and exists (select 1 from pg_catalog.pg_auth_members m
                            where m.roleid = 'pg_monitor'::regrole and m.member = r_monitor::regrole) then
    begin
      execute format('revoke pg_monitor from %I', r_monitor);
    exception when insufficient_privilege or invalid_grant_operation then
      raise warning 'bucketq: % may not revoke pg_monitor from %, which exposes every database''s query texts to bucketq monitors', current_user, r_monitor
        using hint = format('As a superuser: revoke pg_monitor from %I;', r_monitor);
    end;
  end if;
end $$;

comment on function bucketq._grant_roles() is
'Owner only: revoke PUBLIC''s rights on everything in schema bucketq and grant the producer, consumer, monitor and admin roles their share (bucketq._role: this database''s bucketq_<kind>_<database> when it exists, else the cluster-wide bucketq_<kind>; skipping roles that do not exist). Idempotent; run after adding functions or views, or once a DBA created missing roles.';
