-- bucketq 000009: roles with least privilege.
--
-- Four NOLOGIN group roles; grant them to login users (grant bucketq_producer to app_user):
--   bucketq_producer  send, send_batch. Nothing else: no claim, no ack, no tables or views.
--   bucketq_consumer  join, heartbeat, leave, claim, ack, nack, maintain (workers run it
--                     every minute), and the groups view (workers read a group's settings).
--                     It may consume from every group of the database: to keep teams
--                     apart, give them separate databases (per-group grants are not a
--                     feature yet).
--   bucketq_monitor   every view, read-only (and pg_monitor, when the migrating user may
--                     grant it, so vacuum_horizon shows other users' sessions and queries).
--   bucketq_admin     every public function and view (create_topic, create_group,
--                     replay_dead, rewind, ...) and membership of the three above.
-- Tables, sequences and the internal _functions stay private to the owner (the user who
-- ran the migrations): only the owner migrates, and ideally it is not a superuser.
--
-- The public functions run with their owner's rights (SECURITY DEFINER, with a fixed
-- search_path), so callers need EXECUTE on them and nothing on the tables. Views already
-- read their tables with the view owner's rights; functions a view calls are checked
-- against the caller, hence bucketq._now() for the monitor.
--
-- Roles are cluster-wide: each is created only if missing (another database of the
-- cluster may have created it). If the migrating user may not create roles, the
-- migration still applies, with a WARNING: the schema is then usable by its owner only,
-- until a DBA creates the roles and the owner runs select bucketq._grant_roles();
--
-- A later migration that adds a function or view ends with select bucketq._grant_roles();
-- (ALTER DEFAULT PRIVILEGES IN SCHEMA cannot revoke PUBLIC's default EXECUTE on new
-- functions; only a database-wide default could, which would also change the owner's
-- functions outside bucketq.)

do $$
declare
  r text;
begin
  foreach r in array array['bucketq_producer', 'bucketq_consumer', 'bucketq_monitor', 'bucketq_admin'] loop
    if not exists (select 1 from pg_catalog.pg_roles where rolname = r) then
      begin
        execute format('create role %I nologin', r);
      exception
        when duplicate_object or unique_violation then
          null;  -- created meanwhile by a migration of another database of the cluster
        when insufficient_privilege then
          raise warning 'bucketq: cannot create role % (the migrating user % lacks CREATEROLE); bucketq is usable by its owner only for now', r, current_user
            using hint = format('As a superuser or a CREATEROLE user: create role %I nologin; then, as %I: select bucketq._grant_roles();', r, current_user);
      end;
    end if;
  end loop;
end $$;

-- Public functions run as their owner, with a search_path callers cannot hijack
-- (pg_temp last: a caller's temporary tables never shadow ours).
alter function bucketq.create_topic(text, int, interval, int, interval) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.maintain(boolean) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.send_batch(text, jsonb[], text[], jsonb[], text[], timestamptz[]) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.send(text, jsonb, text, jsonb, text, timestamptz) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.create_group(text, text, text, int, text, interval, interval, interval, interval) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.claim(text, text, int, int[], interval) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.ack(text, bigint[], bigint[], text, boolean) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.nack(text, bigint[], bigint[], text[], interval, boolean) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.replay_dead(text, bigint[]) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.heartbeat(text, text) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.join(text, text, jsonb) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.leave(text, text) security definer set search_path = pg_catalog, bucketq, pg_temp;
alter function bucketq.rewind(text, timestamptz) security definer set search_path = pg_catalog, bucketq, pg_temp;
-- The commit-time readiness check is a deferred trigger: it fires at COMMIT, outside
-- send_batch, as whoever commits (a producer with no rights on the inbox).
alter function bucketq._tg_commit_check() security definer set search_path = pg_catalog, bucketq, pg_temp;

-- The test clock (session setting bucketq.clock_offset) is settable by anyone, and the
-- functions now run as their owner: a producer or consumer moving the clock could expire
-- other consumers' sessions and leases or let maintain() drop partitions and prune
-- idempotency keys early. Honour the offset only for sessions that log in as the schema
-- owner (or a member of it, such as a superuser); for anyone else it is ignored.
create or replace function bucketq._now() returns timestamptz
language sql stable as $$
  select now() + case
    when coalesce(current_setting('bucketq.clock_offset', true), '') = '' then interval '0'
    when pg_catalog.pg_has_role(session_user, (select n.nspowner from pg_catalog.pg_namespace n where n.nspname = 'bucketq'), 'member')
      then current_setting('bucketq.clock_offset', true)::interval
    else interval '0'
  end
$$;

-- Revokes PUBLIC's default rights on everything in the schema, then grants each role
-- its share. Idempotent; owner only. Run it after adding functions or views.
create function bucketq._grant_roles() returns void
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
    if v_consumer and f.name in ('join', 'heartbeat', 'leave', 'claim', 'ack', 'nack', 'maintain') then
      execute format('grant execute on function %s to bucketq_consumer', f.sig);
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

select bucketq._grant_roles();

insert into bucketq.migration (version, name) values (9, 'roles');
