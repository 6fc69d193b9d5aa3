create or replace function bucketq.delete_topic(topic text, force boolean default false) returns bigint
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  t bucketq.topic;
  v_groups text[];
  v_messages bigint;
begin
  t := bucketq._topic(topic);
  -- maintain()'s lock first (it takes topic locks after it): a rotation of the per-key
  -- counters running now would fold our keys back into key_counter_base.
  perform bucketq._lock_maintenance('delete_topic');
  -- Producers hold this lock shared while they send; create_group and rewind take it too.
  perform pg_advisory_xact_lock(bucketq._lock_ns(), t.topic_id);
  perform 1 from bucketq.topic x where x.topic_id = t.topic_id for update;
  select array_agg(g.name order by g.name) into v_groups from bucketq.consumer_group g where g.topic_id = t.topic_id;
  if v_groups is not null and not coalesce(force, false) then
    raise exception 'delete_topic: topic % has % consumer group(s): %', t.name, cardinality(v_groups), array_to_string(v_groups[1:5], ', ')
      using errcode = 'BQ005', hint = 'Delete the groups first, or pass force => true to delete them with the topic.';
  end if;
  perform bucketq.delete_group(g.name, true) from bucketq.consumer_group g where g.topic_id = t.topic_id order by g.name;
  execute format('select count(*) from bucketq.%I', 'message_t' || t.topic_id) into v_messages;
  execute format('drop table bucketq.%I', 'delivery_t' || t.topic_id);
  execute format('drop table bucketq.%I', 'message_t' || t.topic_id);
  -- key_counter has no foreign key (it would be checked on every send).
  delete from bucketq.key_counter c using bucketq.topic_key k where k.topic_id = t.topic_id and c.key_id = k.key_id;
  delete from bucketq.topic x where x.topic_id = t.topic_id;  -- keys, idempotency keys, partition list: on delete cascade
  -- Its copies of the claim and ack paths, and their branch in the public functions.
  perform bucketq._topic_copies_drop(t.topic_id);
  perform bucketq._topic_dispatch();
  return v_messages;
end $$;

comment on function bucketq.delete_topic(text, boolean) is
'Delete a topic and its whole log (its partitions are dropped), keys and idempotency keys. Refuses (BQ005) while consumer groups read it unless force => true, which deletes them too (see delete_group). Returns how many messages the log held.';
