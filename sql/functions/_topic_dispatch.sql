-- The public entry points (claim, claim_locked, ack, nack, record_attempt) choose the
-- topic's copy by its topic_id, with branches written into them here: one per topic that
-- has its schema of copies, made from the generic call at their end. A branch of static
-- calls costs a few microseconds (an EXECUTE of the call, 35 to 70: it parses and plans
-- the call every time). Each branch is one comparison, so a cluster of very many topics
-- pays for them: 1,000 branches passed cost 44 to 52 µs a call (0.05 µs each).
create or replace function bucketq._topic_dispatch() returns void
language plpgsql set search_path = pg_catalog, bucketq, pg_temp
as $$
declare
  f record;
  d text;
  v_call text[];
  v_branches text;
  v_begin text := E'  -- topic branches begin\n';
  v_end text := E'  -- topic branches end\n';
begin
  for f in select p.oid, p.proname::text as name from pg_catalog.pg_proc p
            where p.pronamespace = 'bucketq'::regnamespace
              and '_' || p.proname = any(bucketq._topic_copy_list())  -- claim (_claim), ack (_ack), ...
            order by p.proname loop
    d := pg_catalog.pg_get_functiondef(f.oid);
    v_call := regexp_match(d, E'\\n  ((return query select \\* from |perform )bucketq\\.(_[a-z_]+)\\(([^;]*)\\);)\\nend ');
    if v_call is null or strpos(d, v_begin) = 0 or strpos(d, v_end) = 0 then
      raise exception '_topic_dispatch: bucketq.% has no topic branches to write', f.name using errcode = 'XX000';
    end if;
    select coalesce(string_agg(format(E'  if g.topic_id = %s then %s%I.%s(%s); return; end if;\n',
                                      x.topic_id, v_call[2], 'bucketq_t' || x.topic_id, v_call[3], v_call[4]),
                               '' order by x.topic_id), '')
      into v_branches
      from bucketq.topic x
     where exists (select 1 from pg_catalog.pg_namespace n where n.nspname = 'bucketq_t' || x.topic_id);
    d := substr(d, 1, strpos(d, v_begin) + length(v_begin) - 1) || v_branches || substr(d, strpos(d, v_end));
    execute d;
  end loop;
end $$;

comment on function bucketq._topic_dispatch() is
'Internal: writes into bucketq.claim, claim_locked, ack, nack and record_attempt one branch per topic that has its schema of copies (bucketq_t<topic_id>), so that each calls the topic''s own copy of its body.';
