-- Topic, group and the example handler's table (run after `bucketq migrate`).
select bucketq.create_topic('orders', buckets => 16);
select bucketq.create_group('billing', 'orders', start_at => 'earliest');
create table if not exists example_orders (
  msg_id  bigint primary key,
  key     text,
  key_seq bigint,
  payload jsonb,
  done_at timestamptz not null default now()
);
