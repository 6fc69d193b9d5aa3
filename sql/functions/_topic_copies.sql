-- Each topic's own copy of the claim and ack paths, in a schema of its own
-- (bucketq_t<topic_id>), whose statements read the topic's log table
-- (bucketq.message_t<topic_id>) instead of bucketq.message.
--
-- Why: the paths run generic plans (a custom plan of a query over the log took
-- milliseconds to plan). A generic plan over bucketq.message holds every partition of
-- every topic: each execution locks them all and prunes them at start-up. On a cluster
-- of 31 topics with a week of daily partitions each (280 partitions), a claim of one
-- message took twice as long as on one topic (docs/design/log-cursor.md, thirty-third
-- pass). A statement over the topic's own table holds only that topic's partitions.
--
-- The copies are made from the definitions in schema bucketq (pg_get_functiondef), the
-- only source: in each, a table read "from/join bucketq.message" names the topic's table,
-- and a call of another function of the list calls that function's copy. Every statement
-- already filters by topic_id, so a copy returns what the original returns; one that was
-- not rewritten (a read written another way, a function left off the list) stays correct
-- and only reads through bucketq.message. The copies keep the names of the originals
-- (a PL/pgSQL body may qualify a parameter by its function's name).
--
create or replace function bucketq._topic_copies(p_topic_id int) returns void
language plpgsql set search_path = pg_catalog, bucketq, pg_temp
-- Copies may call each other in any order of creation.
set check_function_bodies = off
as $$
declare
  v_schema text := 'bucketq_t' || p_topic_id;
  v_list text[] := bucketq._topic_copy_list();
  v_missing text[];
  f record;
  d text;
  n text;
begin
  if not exists (select 1 from bucketq.topic x where x.topic_id = p_topic_id) then
    raise exception '_topic_copies: no topic with id %', p_topic_id using errcode = 'XX000';
  end if;
  select array_agg(u.n) into v_missing from unnest(v_list) u(n)
   where not exists (select 1 from pg_catalog.pg_proc p where p.pronamespace = 'bucketq'::regnamespace and p.proname = u.n);
  if v_missing is not null then
    raise exception '_topic_copies: functions % are missing from schema bucketq', v_missing
      using errcode = 'XX000', hint = 'Run bucketq migrate: the schema is not complete.';
  end if;
  perform bucketq._topic_copies_drop(p_topic_id);
  -- Owned as schema bucketq is; nobody else gets any right on it: the copies run only
  -- inside the public functions (security definer), as the owner.
  execute format('create schema %I authorization %I', v_schema,
                 (select n.nspowner::regrole::text from pg_catalog.pg_namespace n where n.nspname = 'bucketq'));
  execute format('comment on schema %I is %L', v_schema,
                 format('bucketq: the claim and ack paths of topic %s (id %s), reading its own log table bucketq.message_t%s. '
                        'Generated from the functions of schema bucketq by bucketq._topic_copies; do not edit. '
                        'Dropped with the topic.',
                        (select x.name from bucketq.topic x where x.topic_id = p_topic_id), p_topic_id, p_topic_id));
  for f in select p.oid, p.proname::text as name from pg_catalog.pg_proc p
            where p.pronamespace = 'bucketq'::regnamespace and p.proname = any(v_list)
            order by p.proname loop
    d := pg_catalog.pg_get_functiondef(f.oid);
    d := regexp_replace(d, '((from|join)\s+)bucketq\.message(?![_a-zA-Z0-9])', '\1bucketq.message_t' || p_topic_id, 'gi');
    foreach n in array v_list loop
      d := replace(d, 'bucketq.' || n || '(', v_schema || '.' || n || '(');
    end loop;
    if strpos(d, 'FUNCTION ' || v_schema || '.' || f.name || '(') = 0 then
      raise exception '_topic_copies: could not rename %', f.name using errcode = 'XX000';
    end if;
    execute d;
  end loop;
  execute format('revoke all on all functions in schema %I from public', v_schema);
end $$;

comment on function bucketq._topic_copies(int) is
'Internal: (re)makes schema bucketq_t<topic_id>, the topic''s own copy of the functions in bucketq._topic_copy_list() whose reads of bucketq.message name the topic''s table bucketq.message_t<topic_id>. Called by create_topic and by bucketq._topic_copies_refresh (after every upgrade of the definitions); the public entry points reach the copies through bucketq._topic_dispatch.';
