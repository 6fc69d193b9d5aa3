// The console's pages as server-rendered HTML: each takes what src/ui/queries.ts read
// and returns the page's title and body. No I/O here; src/ui/server.ts routes and
// wraps them in the layout (src/ui/layout.ts).
import { lagColour, ownerColour, sparkline } from './charts.js';
import { age, bytes, json, plural, time } from './format.js';
import { html, qs, raw, type Html } from './html.js';
import {
  THROUGHPUT_SLOT_SECONDS,
  type DeadLetters,
  type GroupDetail,
  type GroupRow,
  type MessageLookup,
  type MessageState,
  type Overview,
  type RewindPreview,
  type SystemInfo,
} from './queries.js';

export interface Page {
  title: string;
  body: Html;
  /** Refresh the page's content every second (off for forms and results). */
  live: boolean;
}

/** What an action form needs: hidden in read-only mode. */
export interface ActionContext {
  readOnly: boolean;
  csrfToken: string;
}

const groupLink = (g: string) => html`<a href="/groups/${encodeURIComponent(g)}">${g}</a>`;
const msgLink = (id: string) => html`<a href="/messages${qs({ id })}">#${id}</a>`;
const csrf = (a: ActionContext) => html`<input type="hidden" name="csrf" value="${a.csrfToken}">`;

/** Unfinished work of a group at a glance: the cards at the top of the overview and of a group's page. */
function groupCard(g: GroupRow): Html {
  const last = g.throughput[g.throughput.length - 2] ?? 0; // the last full slot
  return html`<section class="card" data-group="${g.group}">
  <h3>${groupLink(g.group)} <small>on ${g.topic}</small></h3>
  <div class="figures">
    <div><b data-field="pending">${g.pending}</b><span>pending</span></div>
    <div><b data-field="leased">${g.leased}</b><span>in flight</span></div>
    <div><b data-field="dead" class="${g.dead ? 'bad' : ''}">${g.dead}</b><span>dead</span></div>
    <div><b data-field="oldest">${age(g.oldestAgeSeconds)}</b><span>oldest</span></div>
  </div>
  ${sparkline(g.throughput, { width: 300, height: 56, label: `acks per ${THROUGHPUT_SLOT_SECONDS} s over the last 5 minutes, group ${g.group}` })}
  <div class="muted"><span data-field="rate">${(last / THROUGHPUT_SLOT_SECONDS).toFixed(1)}</span> msg/s in the last ${THROUGHPUT_SLOT_SECONDS} s ·
    ${g.perSecond} msg/s last minute · peak ${(Math.max(0, ...g.throughput) / THROUGHPUT_SLOT_SECONDS).toFixed(1)} msg/s ·
    ${g.aliveConsumers}/${g.consumers} consumers alive</div>
</section>`;
}

export function overviewPage(o: Overview): Page {
  const body = html`<h1>Overview</h1>
<div class="cards">${o.groups.map(groupCard)}</div>
${o.groups.length === 0 ? html`<p class="muted">No consumer groups yet: <code>bucketq group create NAME --topic T</code>.</p>` : ''}
<h2>Groups</h2>
<table id="groups">
<thead><tr><th>group</th><th>topic</th><th>consumers</th><th>pending</th><th>ready</th><th>in flight</th><th>delayed</th><th>waiting</th><th>dead</th><th>oldest</th><th>throughput (5 min)</th><th>msg/s (last min)</th></tr></thead>
<tbody>${o.groups.map(
    (g) => html`<tr data-group="${g.group}">
  <td>${groupLink(g.group)}</td><td>${g.topic}</td><td data-field="consumers">${g.aliveConsumers}/${g.consumers}</td>
  <td data-field="pending" class="num">${g.pending}</td><td data-field="ready" class="num">${g.ready}</td>
  <td data-field="leased" class="num">${g.leased}</td><td data-field="delayed" class="num">${g.delayed}</td>
  <td data-field="waiting" class="num">${g.waiting}</td>
  <td data-field="dead" class="num">${g.dead ? html`<a class="bad" href="/dead-letters${qs({ group: g.group })}">${g.dead}</a>` : '0'}</td>
  <td data-field="oldest" class="num">${age(g.oldestAgeSeconds)}</td>
  <td>${sparkline(g.throughput, { width: 120, height: 20, label: `throughput of ${g.group}` })}</td>
  <td data-field="per-second" class="num">${g.perSecond}</td>
</tr>`,
  )}</tbody></table>
<p class="muted">pending: not yet acked or dead-lettered, of which ready (claimable now; messages held by a locked claim count here until their batch commits),
in flight (leased), delayed (retry backoff or not_before), waiting (behind an earlier message of their key); dead: dead letters not replayed.</p>
<h2>Topics</h2>
<table id="topics"><thead><tr><th>topic</th><th>buckets</th><th>groups</th><th>partitions</th><th>retention</th><th>log size</th></tr></thead>
<tbody>${o.topics.map(
    (t) => html`<tr data-topic="${t.topic}"><td>${t.topic}</td><td class="num">${t.buckets}</td><td class="num">${t.groups}</td>
<td class="num">${t.partitions}</td><td>${t.retention}</td><td class="num">${bytes(t.logBytes)}</td></tr>`,
  )}</tbody></table>`;
  return { title: 'Overview', body, live: true };
}

/** Buckets that moved this recently are outlined on the map (the legend says "the last minute"). */
const RECENT_MOVE_SECONDS = 60;

export function groupPage(d: GroupDetail, a: ActionContext): Page {
  const maxLag = Math.max(0, ...d.buckets.map((b) => b.lag));
  const owners = [...new Set(d.buckets.map((b) => b.owner).filter((o): o is string => o !== null))].sort();
  const cell = (b: GroupDetail['buckets'][number]) => {
    const moved = b.movedAgoSeconds !== null && b.movedAgoSeconds < RECENT_MOVE_SECONDS;
    const tip = [
      `bucket ${b.bucket}`,
      `owner ${b.owner ?? '(none)'}${b.owner && !b.owned ? ' (heartbeat expired)' : ''}`,
      `epoch ${b.epoch}`,
      `checkpoint ${b.checkpoint ?? '(nothing pending)'}`,
      `lag ${b.lag}: ${b.ready} ready, ${b.leased} in flight, ${b.delayed} delayed, ${b.waiting} waiting, ${b.deadBlocking} dead blocking`,
      `oldest ${age(b.oldestAgeSeconds)}`,
      `heartbeat ${age(b.heartbeatAgeSeconds)} ago`,
      b.movedAgoSeconds !== null ? `moved ${age(b.movedAgoSeconds)} ago` : 'never moved',
    ].join('\n');
    return html`<div class="cell${b.owned ? '' : ' unowned'}${moved ? ' moved' : ''}" data-bucket="${b.bucket}" data-owner="${b.owner ?? ''}"
 data-epoch="${b.epoch}" data-lag="${b.lag}" title="${tip}" style="--owner:${ownerColour(b.owner, b.owned)};--lag:${lagColour(b.lag, maxLag)}">
<span class="b">${b.bucket}</span><span class="o">${b.owner ?? '–'}</span><span class="e">e${b.epoch}</span>
<span class="c">ck ${b.checkpoint ?? '–'}</span><span class="l">lag ${b.lag}${b.lag ? html` <i>${age(b.oldestAgeSeconds)}</i>` : ''}</span></div>`;
  };
  const busy = d.buckets.filter((b) => b.lag > 0).sort((x, y) => y.lag - x.lag || x.bucket - y.bucket);
  const body = html`<h1>Group ${d.group.group} <small>on ${d.group.topic} · ${plural(d.buckets.length, 'bucket')} · max ${d.group.maxAttempts} attempts, then ${d.group.onExhausted}</small></h1>
<div class="cards">${groupCard(d.group)}</div>
<h2>Bucket map</h2>
<div id="bucket-panel">
<div class="legend">
  <span>colour by</span>
  <label><input type="radio" name="colour-by" value="owner" data-colour-by="owner"> owner</label>
  <label><input type="radio" name="colour-by" value="lag" data-colour-by="lag"> lag</label>
  <span class="sep"></span>
  ${owners.map((o) => html`<span class="swatch" style="background:${ownerColour(o, true)}">${o}</span>`)}
  <span class="swatch unowned-swatch">no live owner</span><span class="swatch moved-swatch">moved in the last minute</span>
</div>
<div class="map" id="bucket-map">${d.buckets.map(cell)}</div>
<p class="muted">Each cell: bucket, owner, epoch (bumped on every move), checkpoint (every message of the bucket up to this id is done), lag (unfinished messages) and the age of the oldest. Hover for details.</p>
</div>
<h2>Consumers</h2>
<table id="consumers"><thead><tr><th>consumer</th><th>alive</th><th>heartbeat age</th><th>owned buckets</th><th>in flight</th><th>joined</th><th>meta</th></tr></thead>
<tbody>${d.consumers.map(
    (c) => html`<tr data-consumer="${c.consumerId}"><td><span class="dot" style="background:${ownerColour(c.consumerId, c.alive)}"></span>${c.consumerId}</td>
<td data-field="alive">${c.alive ? 'yes' : html`<span class="bad">no</span>`}</td><td data-field="heartbeat" class="num">${age(c.heartbeatAgeSeconds)}</td>
<td data-field="owned" class="num" title="${d.buckets.filter((b) => b.owner === c.consumerId).map((b) => b.bucket).join(', ')}">${c.ownedBuckets}</td>
<td data-field="leased" class="num">${c.leased}</td><td>${time(c.joinedAt)}</td><td><code>${c.meta === null ? '' : JSON.stringify(c.meta)}</code></td></tr>`,
  )}</tbody></table>
${d.consumers.length === 0 ? html`<p class="muted">No consumer in the lobby.</p>` : ''}
<h2>Lag per bucket</h2>
${
  busy.length === 0
    ? html`<p class="muted" id="lag-empty">Nothing pending in any bucket.</p>`
    : html`<table id="lag"><thead><tr><th>bucket</th><th>owner</th><th>lag</th><th></th><th>ready</th><th>in flight</th><th>delayed</th><th>waiting</th><th>dead (blocking)</th><th>oldest</th></tr></thead>
<tbody>${busy.map(
        (b) => html`<tr data-bucket="${b.bucket}"><td class="num">${b.bucket}</td><td>${b.owner ?? '–'}</td><td data-field="lag" class="num">${b.lag}</td>
<td><span class="bar" style="width:${Math.max(2, Math.round((b.lag / Math.max(1, maxLag)) * 120))}px"></span></td>
<td class="num">${b.ready}</td><td class="num">${b.leased}</td><td class="num">${b.delayed}</td><td class="num">${b.waiting}</td><td class="num">${b.deadBlocking}</td>
<td class="num">${age(b.oldestAgeSeconds)}</td></tr>`,
      )}</tbody></table>`
}
${
  a.readOnly
    ? ''
    : html`<h2>Rewind</h2>
<form method="post" action="/actions/rewind" class="inline" data-no-live>
  ${csrf(a)}<input type="hidden" name="group" value="${d.group.group}">
  <label>deliver everything sent since <input name="to" placeholder="15m, 2h or 2024-05-01T12:00:00Z" required size="28"></label>
  <button type="submit">Preview rewind…</button>
  <span class="muted">you will see how many messages are delivered again before anything happens</span>
</form>`
}`;
  return { title: `Group ${d.group.group}`, body, live: true };
}

function stateDetail(s: MessageState): Html {
  switch (s.state) {
    case 'ready':
      return html`ready: next of its key, not yet claimed`;
    case 'leased':
      return html`in flight with <b>${s.consumerId}</b> (epoch ${s.epoch}), lease until ${time(s.until)}, attempt ${s.attempts}`;
    case 'locked':
      return html`in flight with <b>${s.consumerId}</b> since ${time(s.since)} (locked claim)`;
    case 'delayed':
      return s.attempts
        ? html`retrying at ${time(s.until)} (${plural(s.attempts ?? 0, 'attempt')} so far)`
        : html`not before ${time(s.until)}`;
    case 'waiting':
      return html`waiting behind ${s.waitingBehind ? msgLink(s.waitingBehind) : 'an earlier message of its key'}${s.until ? html`, not before ${time(s.until)}` : ''}`;
    case 'dead':
      return html`dead since ${time(s.since)} after ${plural(s.attempts ?? 0, 'attempt')}${s.replayedAt ? html`, replayed at ${time(s.replayedAt)}` : ''}`;
    case 'done':
      return html`done by ${s.consumerId ?? '(unknown)'} at ${time(s.since)}, attempt ${s.attempts}${s.replayedAt ? html` (after a replay at ${time(s.replayedAt)})` : ''}`;
    case 'not subscribed':
      return html`not for this group: sent before the group's start`;
    default:
      return html`${s.state}`;
  }
}

export function messagesPage(
  topics: string[],
  input: { id?: string | undefined; topic?: string | undefined; key?: string | undefined },
  found: MessageLookup | undefined,
  problem: string | undefined,
): Page {
  const states = (id: string) => found?.states.filter((s) => s.msgId === id) ?? [];
  const single = input.id !== undefined;
  const body = html`<h1>Messages</h1>
<div class="forms">
<form method="get" action="/messages" class="inline" data-no-live>
  <label>message id <input name="id" value="${input.id ?? ''}" size="14" inputmode="numeric"></label><button type="submit">Look up</button>
</form>
<form method="get" action="/messages" class="inline" data-no-live>
  <label>topic <select name="topic">${topics.map((t) => html`<option${t === input.topic ? raw(' selected') : ''}>${t}</option>`)}</select></label>
  <label>key <input name="key" value="${input.key ?? ''}" size="20"></label><button type="submit">Recent messages of the key</button>
</form>
</div>
${problem ? html`<p class="error">${problem}</p>` : ''}
${
  found && found.messages.length === 0
    ? html`<p class="muted" id="not-found">${single ? html`No message ${input.id} in the log (never sent, or dropped by retention).` : html`No message with key ${input.key} on topic ${input.topic}.`}</p>`
    : ''
}
${(found?.messages ?? []).map(
  (m) => html`<section class="message" data-msg="${m.msgId}">
<h2>${msgLink(m.msgId)} <small>topic ${m.topic} · key ${m.key ?? '(none)'}${m.keySeq ? html` · seq ${m.keySeq}` : ''} · bucket ${m.bucket} · sent ${time(m.sentAt)}${m.notBefore ? html` · not before ${time(m.notBefore)}` : ''}</small></h2>
<table class="states"><thead><tr><th>group</th><th>state</th><th>detail</th><th>last error</th></tr></thead>
<tbody>${states(m.msgId).map(
    (s) => html`<tr data-group="${s.group}" data-state="${s.state}"><td>${groupLink(s.group)}</td><td><span class="state state-${s.state.replace(' ', '-')}">${s.state}</span></td>
<td>${stateDetail(s)}</td><td>${s.lastError ? html`<pre class="err">${s.lastError}</pre>` : ''}</td></tr>`,
  )}</tbody></table>
${
  single
    ? html`<div class="payload"><div><h3>payload</h3><pre>${json(m.payload)}</pre></div><div><h3>headers</h3><pre>${json(m.headers)}</pre></div></div>
${m.idempotencyKey ? html`<p class="muted">idempotency key ${m.idempotencyKey}</p>` : ''}`
    : html`<details><summary>payload and headers</summary><div class="payload"><pre>${json(m.payload)}</pre><pre>${json(m.headers)}</pre></div></details>`
}
</section>`,
)}`;
  // A looked-up message is worth watching move through its states; the empty form is not.
  return { title: single ? `Message ${input.id}` : input.key ? `Key ${input.key}` : 'Messages', body, live: found !== undefined };
}

export function deadLettersPage(dl: DeadLetters, filter: { group?: string | undefined; key?: string | undefined; all: boolean }, a: ActionContext, limit: number): Page {
  const byGroup = new Map<string, DeadLetters['rows']>();
  for (const r of dl.rows) byGroup.set(r.group, [...(byGroup.get(r.group) ?? []), r]);
  const section = (group: string, rows: DeadLetters['rows']) => {
    const replayable = rows.filter((r) => r.status !== 'replayed');
    const table = html`<table class="dead"><thead><tr>${a.readOnly ? '' : html`<th></th>`}<th>message</th><th>key</th><th>seq</th><th>attempts</th><th>status</th><th>dead at</th><th>last error</th><th>payload</th></tr></thead>
<tbody>${rows.map(
      (r) => html`<tr data-msg="${r.msgId}" data-status="${r.status}">
${a.readOnly ? '' : html`<td>${r.status === 'replayed' ? '' : html`<input type="checkbox" name="id" value="${r.msgId}" aria-label="select ${r.msgId}">`}</td>`}
<td>${msgLink(r.msgId)}</td><td>${r.key ?? '–'}</td><td class="num">${r.keySeq ?? ''}</td><td class="num">${r.attempts}</td><td>${r.status}${r.replayedAt ? html` ${time(r.replayedAt)}` : ''}</td>
<td>${time(r.deadAt)}</td><td><pre class="err">${r.lastError ?? ''}</pre></td><td><pre class="small">${json(r.payload)}</pre></td></tr>`,
    )}</tbody></table>`;
    if (a.readOnly) return html`<section class="dead-group" data-group="${group}"><h2>${groupLink(group)}</h2>${table}</section>`;
    return html`<section class="dead-group" data-group="${group}"><h2>${groupLink(group)}</h2>
<form method="post" action="/actions/replay" data-no-live>${csrf(a)}<input type="hidden" name="group" value="${group}">
${filter.key !== undefined ? html`<input type="hidden" name="key" value="${filter.key}">` : ''}
${table}
<div class="actions">
  <button type="submit" name="scope" value="selected">Replay selected…</button>
  ${
    replayable.length
      ? html`<button type="submit" name="scope" value="all">${filter.key !== undefined ? `Replay all dead letters of key ${filter.key}…` : `Replay all dead letters of ${group}…`}</button>`
      : ''
  }
  <span class="muted">replays are delivered again in key order; you confirm the count first</span>
</div></form></section>`;
  };
  const body = html`<h1>Dead letters</h1>
<form method="get" action="/dead-letters" class="inline" data-no-live>
  <label>group <select name="group"><option value="">all groups</option>${dl.groups.map((g) => html`<option${g === filter.group ? raw(' selected') : ''}>${g}</option>`)}</select></label>
  <label>key <input name="key" value="${filter.key ?? ''}" size="20"></label>
  <label><input type="checkbox" name="all" value="1"${filter.all ? raw(' checked') : ''}> include replayed</label>
  <button type="submit">Filter</button>
</form>
<p class="muted" id="dead-count">${plural(dl.total, 'dead letter')}${filter.all ? '' : ' not yet replayed'}${dl.total > dl.rows.length ? `; the first ${limit} shown` : ''}.</p>
${[...byGroup.entries()].map(([g, rows]) => section(g, rows))}`;
  return { title: 'Dead letters', body, live: a.readOnly };
}

export function systemPage(s: SystemInfo): Page {
  const body = html`<h1>System</h1>
<h2>Vacuum horizon</h2>
<p class="muted">The oldest holders of the xmin horizon (this console's own snapshot left out). A long transaction anywhere keeps vacuum from cleaning dead queue rows.</p>
<table id="vacuum"><thead><tr><th>kind</th><th>holder</th><th>role</th><th>database</th><th>state</th><th>xmin age (xids)</th><th>transaction age</th><th>query</th></tr></thead>
<tbody>${s.vacuumHorizon.map(
    (v) => html`<tr><td>${v.kind}</td><td>${v.holder}</td><td>${v.role ?? ''}</td><td>${v.database ?? ''}</td><td>${v.state ?? ''}</td>
<td class="num">${v.xminAge}</td><td class="num">${age(v.transactionAgeSeconds)}</td><td><code>${v.query ?? ''}</code></td></tr>`,
  )}</tbody></table>
${s.vacuumHorizon.length === 0 ? html`<p class="muted">Nothing holds the horizon back.</p>` : ''}
<h2>Rotations</h2>
<p class="muted">Parts that maintain() empties by TRUNCATE: the per-key counters and the heartbeats. Overdue: the retired part has waited over 5 minutes (a reader holds it, or nothing runs maintain()).</p>
<table id="rotations"><thead><tr><th>rotation</th><th>appending to</th><th>retired</th><th>size</th><th>last emptied</th><th>runs given up</th><th>due for</th><th>detail</th></tr></thead>
<tbody>${s.rotations.map(
    (r) => html`<tr data-rotation="${r.rotation}"><td>${r.rotation}${r.overdue ? html` <span class="bad">overdue</span>` : ''}</td><td>${r.appendingTo}</td>
<td>${r.retired}${r.retiredRows ? '' : ' (empty)'}</td><td class="num">${bytes(r.bytes)}</td><td>${time(r.rotatedAt)}</td><td class="num">${r.keptRuns}</td>
<td class="num">${age(r.dueSeconds)}</td><td>${r.detail}</td></tr>`,
  )}</tbody></table>
<h2>Table sizes</h2>
<table id="sizes"><thead><tr><th>table</th><th>kind</th><th>size</th><th>live rows</th><th>dead rows</th><th>last autovacuum</th></tr></thead>
<tbody>${s.tableSizes.map(
    (t) => html`<tr data-table="${t.relation}"><td>${t.relation}</td><td>${t.kind}</td><td class="num">${bytes(t.totalBytes)}</td>
<td class="num">${t.liveRows ?? ''}</td><td class="num">${t.deadRows ?? ''}</td><td>${time(t.lastAutovacuum)}</td></tr>`,
  )}</tbody></table>`;
  return { title: 'System', body, live: true };
}

/** Asks before an action: what will happen and how many messages it delivers again. */
export function confirmPage(
  a: ActionContext,
  opts: { title: string; question: Html; action: string; fields: Record<string, string | string[] | undefined>; confirmLabel: string; back: string },
): Page {
  const hidden = Object.entries(opts.fields).flatMap(([k, v]) =>
    v === undefined ? [] : (Array.isArray(v) ? v : [v]).map((x) => html`<input type="hidden" name="${k}" value="${x}">`),
  );
  const body = html`<h1>${opts.title}</h1>
<form method="post" action="${opts.action}" class="confirm" data-no-live>${csrf(a)}${hidden}<input type="hidden" name="confirm" value="1">
<p id="confirm-question">${opts.question}</p>
<button type="submit" class="danger">${opts.confirmLabel}</button> <a href="${opts.back}">Cancel</a>
</form>`;
  return { title: opts.title, body, live: false };
}

export function resultPage(title: string, text: Html, back: { href: string; label: string }): Page {
  return { title, body: html`<h1>${title}</h1><p class="ok" id="result">${text}</p><p><a href="${back.href}">${back.label}</a></p>`, live: false };
}

/** An error as the CLI shows it: message, SQLSTATE, detail and hint. */
export function errorPage(title: string, e: { message: string; code?: string | undefined; detail?: string | undefined; hint?: string | undefined }, back?: string): Page {
  return {
    title,
    body: html`<h1>${title}</h1><div class="error" id="error"><p>${e.message}${e.code ? html` <code>[${e.code}]</code>` : ''}</p>
${e.detail ? html`<p>detail: ${e.detail}</p>` : ''}${e.hint ? html`<p>hint: ${e.hint}</p>` : ''}</div>
${back ? html`<p><a href="${back}">Back</a></p>` : ''}`,
    live: false,
  };
}

export function rewindQuestion(p: RewindPreview): Html {
  return html`Rewind group <b>${p.group}</b> (topic ${p.topic}) to ${time(p.to)}: <b data-field="count">${p.messages}</b> ${p.messages === 1 ? 'message' : 'messages'} sent since then will be delivered to ${p.group} again, in key order.
Its leases in flight become void; other groups are not affected.${
    p.oldestRetained && p.to < p.oldestRetained
      ? html`<br><span class="bad">That is before the oldest retained message time, ${time(p.oldestRetained)}: rewind will refuse it.</span>`
      : ''
  }`;
}
