create or replace function bucketq.create_group(
  group_name text,
  topic text,
  start_at text default 'latest',
  max_attempts int default 4,
  on_exhausted text default 'skip',
  backoff_base interval default '1 second',
  backoff_max interval default '5 minutes',
  lease_timeout interval default '30 seconds',
  session_timeout interval default '10 seconds'
) returns boolean
language plpgsql security definer set search_path = pg_catalog, bucketq, pg_temp
set jit = off
as $$
#variable_conflict use_variable
declare
  t bucketq.topic;
  g bucketq.consumer_group;
  v_start_time timestamptz;
  v_now timestamptz;
begin
  perform bucketq._check_name('group', group_name);
  t := bucketq._topic(topic);
  if start_at is null then
    start_at := 'latest';
  end if;
  if start_at not in ('earliest', 'latest') then
    begin
      v_start_time := start_at::timestamptz;
    exception when others then
      raise exception 'invalid start_at for group %: %', group_name, bucketq._quote_input(start_at)
        using errcode = 'BQ005', hint = 'start_at is ''earliest'', ''latest'' or a timestamp such as ''2026-01-31 12:00:00+00''.';
    end;
    if not isfinite(v_start_time) then
      raise exception 'invalid start_at for group %: % is not a finite time', group_name, bucketq._quote_input(start_at)
        using errcode = 'BQ005', hint = 'start_at is ''earliest'', ''latest'' or a timestamp such as ''2026-01-31 12:00:00+00''; ''infinity'' would never receive a message (use ''earliest'' for ''-infinity'').';
    end if;
  end if;
  if max_attempts is null or max_attempts < 1 or max_attempts > 1000 then
    raise exception 'invalid max_attempts for group %: %', group_name, coalesce(max_attempts::text, 'NULL')
      using errcode = 'BQ005', hint = 'max_attempts counts the first try: 1 to 1000 (default 4: one try and three retries).';
  end if;
  if on_exhausted is null or on_exhausted not in ('skip', 'block') then
    raise exception 'invalid on_exhausted for group %: %', group_name, bucketq._quote_input(on_exhausted)
      using errcode = 'BQ005', hint = 'on_exhausted is ''skip'' (dead-letter and move the key on, the default) or ''block'' (hold the key until an operator replays it).';
  end if;
  if backoff_base is null or backoff_base < interval '0' or backoff_max is null or backoff_max < backoff_base
     or not isfinite(backoff_max) then
    raise exception 'invalid backoff for group %: base %, max %', group_name, coalesce(backoff_base::text, 'NULL'), coalesce(backoff_max::text, 'NULL')
      using errcode = 'BQ005', hint = 'Retry n waits backoff_base * 2^(n-1), at most backoff_max; need 0 <= backoff_base <= backoff_max, both finite.';
  end if;
  if lease_timeout is null or lease_timeout <= interval '0' or lease_timeout > interval '1 day' then
    raise exception 'invalid lease_timeout for group %: %', group_name, coalesce(lease_timeout::text, 'NULL')
      using errcode = 'BQ005', hint = 'lease_timeout is how long a claimed message stays leased before it is delivered again: more than 0, at most 1 day (default 30 seconds).';
  end if;

  if session_timeout is null or session_timeout < interval '100 milliseconds' or session_timeout > interval '1 hour' then
    raise exception 'invalid session_timeout for group %: %', group_name, coalesce(session_timeout::text, 'NULL')
      using errcode = 'BQ005', hint = 'session_timeout is how long a consumer may go without a heartbeat before its buckets move: 100 milliseconds to 1 hour (default 10 seconds).';
  end if;

  -- Wait for in-flight producers of this topic and hold new ones back until we
  -- commit: every message is then either in the backfill below or fanned out to us.
  perform bucketq._lock_topic_producers('create_group', t);
  v_now := bucketq._now();

  -- The topic's log floor (read after the lock: maintain() moves it holding the same
  -- lock): every message below it is passed for this group too, in the backfill or
  -- before its start.
  insert into bucketq.consumer_group (name, topic_id, start_at, start_time, max_attempts, on_exhausted,
                                      backoff_base, backoff_max, lease_timeout, session_timeout, log_from)
  values (group_name, t.topic_id, start_at, v_start_time, max_attempts, on_exhausted,
          backoff_base, backoff_max, lease_timeout, session_timeout,
          (select x.log_from from bucketq.topic x where x.topic_id = t.topic_id))
  on conflict (name) do nothing
  returning * into g;

  if not found then
    select * into g from bucketq.consumer_group x where x.name = group_name;
    if (g.topic_id, g.start_at, g.max_attempts, g.on_exhausted, g.backoff_base, g.backoff_max, g.lease_timeout, g.session_timeout)
       is distinct from (t.topic_id, start_at, max_attempts, on_exhausted, backoff_base, backoff_max, lease_timeout, session_timeout) then
      raise exception 'consumer group % already exists with other settings', group_name
        using errcode = 'BQ007',
              detail = format('existing: topic=%s start_at=%s max_attempts=%s on_exhausted=%s backoff=%s..%s lease_timeout=%s session_timeout=%s',
                              (select name from bucketq.topic where topic_id = g.topic_id), g.start_at, g.max_attempts,
                              g.on_exhausted, g.backoff_base, g.backoff_max, g.lease_timeout, g.session_timeout),
              hint = 'Call create_group with the existing settings, or choose a new group name.';
    end if;
    return false;
  end if;

  update bucketq.topic x set group_version = x.group_version + 1 where x.topic_id = t.topic_id;

  insert into bucketq.bucket_owner (group_id, bucket)
  select g.group_id, b from generate_series(0, t.buckets - 1) b;

  -- The group reads each bucket's log. No producer of the topic is in flight (the
  -- advisory lock above), so this snapshot holds every message sent so far. 'latest':
  -- the log from this snapshot on. Otherwise the first window is the whole log (from
  -- an empty snapshot): claims read it in ord order and skip what was sent before the
  -- start time; only messages sent before the log path existed (no xid: migration 21)
  -- are put in the inbox below.
  insert into bucketq.cursor (group_id, bucket)
  select g.group_id, b from generate_series(0, t.buckets - 1) b;
  insert into bucketq.progress (group_id, bucket, kind, lo, lo_floor, hi, hi_floor, hi_ceil, pos_ord, pos_id, created_at)
  select g.group_id, b, 1,
         case when start_at = 'latest' then s.snap else '1:1:'::pg_snapshot end,
         case when start_at = 'latest' then s.floor else 0 end,
         s.snap, s.floor, s.ceil, 0, 0, v_now
    from generate_series(0, t.buckets - 1) b cross join bucketq._log_snapshot() s;

  if start_at <> 'latest' then
    insert into bucketq.inbox (group_id, msg_id, bucket, state, key_id, key_seq, sent_at, available_at)
    select g.group_id, m.id, m.bucket,
           case
             when m.key_id is not null and m.key_seq > min(m.key_seq) over (partition by m.key_id) then 3
             when m.not_before > v_now then 2
             else 0
           end,
           m.key_id, m.key_seq, m.sent_at, m.not_before
      from bucketq.message m
     where m.topic_id = t.topic_id and m.xid is null and (v_start_time is null or m.sent_at >= v_start_time);
  end if;
  return true;
end $$;

comment on function bucketq.create_group(text, text, text, int, text, interval, interval, interval, interval) is
'Create a consumer group: an independent subscription to a topic with its own progress. start_at: ''earliest'' (everything still retained), ''latest'' (messages sent from now on) or a timestamp. max_attempts: tries before a message is dead-lettered (default 4). on_exhausted: ''skip'' dead-letters and moves the key on; ''block'' holds the key until replay_dead. backoff_base / backoff_max: retry n waits base * 2^(n-1), capped. lease_timeout: how long a claim holds a message. session_timeout: how long a consumer may miss heartbeats before its buckets move to others. Idempotent: false when it exists with the same settings, BQ007 otherwise.';
