create or replace function bucketq._topic(topic_name text) returns bucketq.topic
language plpgsql stable as $$
declare
  t bucketq.topic;
begin
  select * into t from bucketq.topic where name = topic_name;
  if not found then
    raise exception 'unknown topic: %', bucketq._quote_input(topic_name)
      using errcode = 'BQ002',
            hint = 'Create it first with bucketq.create_topic(topic => ...); list topics with: select name from bucketq.topics;';
  end if;
  return t;
end $$;
