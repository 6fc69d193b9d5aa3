-- The rotation of the per-key counters (migration 31), PgQ's way: nothing is deleted
-- row by row, so a pinned xmin horizon leaves nothing behind that vacuum must reread.
--
-- Every topic appends to one part of bucketq.key_counter (key_counter_0 or _1: its
-- key_rotation % 2); the other part is retired: no sender appends to it since the
-- rotation before, which pointed every topic away from it while holding each topic's
-- producers back. One run:
--
--   1. folds the retired part into key_counter_base (each key's highest last_seq), for
--      the keys with no row in the current part, without holding anyone back: nothing
--      writes the retired part;
--   2. holds every topic's producers back (_lock_topic_producers, in topic order), so
--      that no send is in flight and none starts until we commit;
--   3. TRUNCATEs the retired part, and points every topic at it (key_rotation + 1).
--
-- Producers wait only for step 3 and for the sends in flight. Senders read a key's
-- counter from their own part, then the other, then the base (_take_key_seqs): a key's
-- rows in the part it appends to are its newest, the other part's are older, and the
-- base holds what the truncated part held. A REPEATABLE READ sender whose snapshot
-- predates a rotation fails when it locks its topic row (updated by step 3), so it
-- never reads the truncated part as empty.
--
-- The caller holds maintain()'s lock (create_topic and delete_topic take it too: every
-- topic that can send is visible here, and a new topic starts at the others' rotation).
-- Nothing to rotate when both parts are empty. If the producers or a reader of the
-- retired part do not let go within 500 ms, nothing changes and the next run retries.
-- Either outcome is recorded in bucketq.rotation (view bucketq.rotations).
create or replace function bucketq._rotate_key_counters()
returns table (topic text, action text, detail text)
language plpgsql set search_path = pg_catalog, bucketq, pg_temp
as $$
#variable_conflict use_column
declare
  t bucketq.topic;
  v_min int;
  v_max int;
  v_retired int;
  v_folded bigint := 0;
  v_rows boolean;
  v_current_rows boolean;
  v_action text;
  v_detail text;
  v_saved text := current_setting('lock_timeout');
begin
  select min(x.key_rotation), max(x.key_rotation) into v_min, v_max from bucketq.topic x;
  if v_max is null then
    return;
  end if;
  begin
    perform set_config('lock_timeout', '500ms', true);
    if v_min < v_max then
      -- Topics move together, so this is a database whose topics disagree (restored in
      -- part, say): their senders may append to either part, so neither is retired.
      -- Point them all at the newest rotation's part; the next run can rotate.
      for t in select * from bucketq.topic x where x.key_rotation < v_max order by x.topic_id loop
        perform bucketq._lock_topic_producers('maintain', t);
      end loop;
      update bucketq.topic x set key_rotation = v_max where x.key_rotation < v_max;
      v_action := 'aligned_key_counters';
      v_detail := format('every topic appends to bucketq.key_counter_%s', v_max % 2);
    else
      v_retired := (v_max + 1) % 2;
      -- By name: once a minute, so dynamic SQL costs nothing that matters.
      execute format('select exists (select 1 from bucketq.%I)', 'key_counter_' || v_retired) into v_rows;
      if v_rows then
        -- Only keys with no row in the part sends append to now: a key sent to since the
        -- last rotation has newer rows there, which senders read before the base, and
        -- which the next run folds if it goes quiet. So a key sent to all along never
        -- writes its base row: under a pinned horizon each write was a version that every
        -- later fold (and a send of the key once idle) stepped over, one per key a minute.
        -- (A row appended there while we look, not seen, only makes us fold the key: the
        -- base then holds an older last_seq than that row, which senders read first.)
        execute format($f$
          insert into bucketq.key_counter_base as b (part, key_id, first_seq, last_seq)
          select 2, r.key_id, 1, r.last_seq
            from (select x.key_id, max(x.last_seq) as last_seq from bucketq.%I x group by x.key_id) r
           where not exists (select 1 from bucketq.%I n where n.key_id = r.key_id)
          on conflict (key_id) do update set last_seq = excluded.last_seq where b.last_seq < excluded.last_seq$f$,
          'key_counter_' || v_retired, 'key_counter_' || (1 - v_retired));
        get diagnostics v_folded = row_count;
      end if;
      execute format('select exists (select 1 from bucketq.%I)', 'key_counter_' || (1 - v_retired)) into v_current_rows;
      -- Nothing retired and nothing appended since: an idle database keeps its topic rows.
      if v_rows or v_current_rows then
        for t in select * from bucketq.topic x order by x.topic_id loop
          perform bucketq._lock_topic_producers('maintain', t);
        end loop;
        if v_rows then
          execute format('truncate bucketq.%I', 'key_counter_' || v_retired);
        end if;
        update bucketq.topic x set key_rotation = v_max + 1;
        v_action := 'rotated_key_counters';
        v_detail := case when v_rows then format('%s keys of bucketq.key_counter_%s folded into key_counter_base (keys sent to since keep newer rows in key_counter_%s), the part emptied; sends append to it now', v_folded, v_retired, 1 - v_retired)
                         else format('sends append to bucketq.key_counter_%s now', v_retired) end;
      end if;
    end if;
    perform set_config('lock_timeout', v_saved, true);
  exception when lock_not_available then
    v_action := 'kept_key_counters';
    v_detail := 'producers or readers of bucketq.key_counter in flight (lock timeout); retried on the next run';
  end;
  if v_action in ('rotated_key_counters', 'kept_key_counters') then
    perform bucketq._record_rotation('key_counter', v_action = 'rotated_key_counters', v_detail, bucketq._now());
  end if;
  if v_action is not null then
    topic := null; action := v_action; detail := v_detail;
    return next;
  end if;
end $$;

comment on function bucketq._rotate_key_counters() is
'For maintain(), holding its lock: folds the retired part of bucketq.key_counter (the one no topic appends to) into key_counter_base (the keys with no row in the current part), then, holding every topic''s producers back for at most 500 ms, TRUNCATEs it and points every topic at it (topic.key_rotation + 1). Deletes no row one by one. Records a rotation done or given up in bucketq.rotation (view bucketq.rotations). Returns one row (topic NULL): rotated_key_counters, kept_key_counters (lock timeout) or aligned_key_counters; none when both parts are empty.';
