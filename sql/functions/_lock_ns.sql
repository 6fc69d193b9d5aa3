-- Advisory lock keys: (bucketq namespace, topic_id) held shared by producers and
-- exclusively by create_group, so a group never misses a message being sent while
-- it is created.
create or replace function bucketq._lock_ns() returns int language sql immutable as $$ select 1651664241 $$;
