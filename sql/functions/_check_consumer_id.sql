create or replace function bucketq._check_consumer_id(fn text, consumer_id text) returns void
language plpgsql immutable as $$
begin
  if consumer_id is null or consumer_id = '' or length(consumer_id) > 200 then
    raise exception '%: invalid consumer_id %', fn, bucketq._quote_input(consumer_id)
      using errcode = 'BQ005', hint = 'consumer_id names one worker instance (1 to 200 characters), e.g. hostname:pid:random; use a new one per process start.';
  end if;
end $$;
