-- The buckets a claim names must be the topic's (0 to buckets - 1). claim and
-- claim_locked call this only when the named buckets are not all owned by the caller:
-- owned ones are in range, so a claim of some of its own buckets does not read the topic.
create or replace function bucketq._check_buckets(fn text, g bucketq.consumer_group, p_buckets int[]) returns void
language plpgsql stable as $$
declare
  t bucketq.topic;
begin
  select * into t from bucketq.topic where topic_id = g.topic_id;
  if exists (select 1 from unnest(p_buckets) b where b is null or b < 0 or b >= t.buckets) then
    raise exception '%: buckets % out of range for topic % (0 to %)', fn, p_buckets, t.name, t.buckets - 1
      using errcode = 'BQ005', hint = 'Pass bucket numbers between 0 and buckets - 1, or NULL for all buckets.';
  end if;
end $$;

comment on function bucketq._check_buckets(text, bucketq.consumer_group, int[]) is
'Internal: raises BQ005 when a bucket number given to claim or claim_locked is NULL or outside 0 to the topic''s buckets - 1.';
