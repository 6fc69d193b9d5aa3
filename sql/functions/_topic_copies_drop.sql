create or replace function bucketq._topic_copies_drop(p_topic_id int) returns void
language plpgsql set search_path = pg_catalog, bucketq, pg_temp
-- DROP SCHEMA ... CASCADE lists every function it drops in a NOTICE: not the caller's
-- business (delete_topic's, create_topic's or an upgrade's).
set client_min_messages = warning
as $$
begin
  if exists (select 1 from pg_catalog.pg_namespace n where n.nspname = 'bucketq_t' || p_topic_id) then
    execute format('drop schema %I cascade', 'bucketq_t' || p_topic_id);
  end if;
end $$;

comment on function bucketq._topic_copies_drop(int) is
'Internal: drops schema bucketq_t<topic_id>, the topic''s copies of the claim and ack paths (see bucketq._topic_copies), if it exists. The public functions'' branches to it are bucketq._topic_dispatch''s to remove.';
