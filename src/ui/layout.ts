// The page frame (navigation, read-only badge, live indicator) and the two static
// assets, served from strings: no build step, nothing read from disk.
import { html, type Html } from './html.js';

const NAV = [
  ['/', 'Overview'],
  ['/messages', 'Messages'],
  ['/dead-letters', 'Dead letters'],
  ['/system', 'System'],
] as const;

export function layout(opts: { title: string; body: Html; live: boolean; readOnly: boolean; path: string; database: string }): Html {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${opts.title} · bucketq</title><link rel="stylesheet" href="/assets/ui.css"><script src="/assets/ui.js" defer></script></head>
<body>
<header><a class="brand" href="/">bucketq</a>
<nav>${NAV.map(([href, label]) => html`<a href="${href}"${(href === '/' ? opts.path === '/' : opts.path.startsWith(href)) ? html` class="here"` : ''}>${label}</a>`)}</nav>
<span class="db" title="database">${opts.database}</span>
${opts.readOnly ? html`<span class="badge" id="read-only">read-only</span>` : ''}
${opts.live ? html`<span id="live-status" class="muted">live</span><button type="button" id="pause">pause</button>` : ''}
</header>
<main id="content" data-live="${opts.live ? '1' : '0'}">${opts.body}</main>
</body></html>`;
}

export const CSS = `
:root { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; background: #f6f7f9; }
body { margin: 0; }
header { display: flex; gap: 16px; align-items: center; padding: 8px 20px; background: #1d2330; color: #fff; }
header a { color: #cfd6e4; text-decoration: none; } header a.here, header a:hover { color: #fff; }
header nav { display: flex; gap: 14px; flex: 1; }
.brand { font-weight: 700; color: #fff !important; }
.db { color: #8e98ab; font-size: 12px; }
.badge { background: #b7791f; color: #fff; border-radius: 3px; padding: 1px 6px; font-size: 12px; }
header button { font-size: 12px; }
main { padding: 12px 20px 40px; max-width: 1400px; }
h1 { font-size: 20px; margin: 8px 0 12px; } h1 small, h2 small { color: #6b7385; font-weight: normal; font-size: 13px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
table { border-collapse: collapse; background: #fff; box-shadow: 0 0 0 1px #e2e5eb; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eceef2; text-align: left; vertical-align: top; }
th { font-weight: 600; color: #4a5266; font-size: 12px; background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
a { color: #2158c7; }
.muted { color: #6b7385; font-size: 12px; }
.bad { color: #c0392b; font-weight: 600; }
.ok { color: #1e7a3c; }
.error { background: #fdecea; border: 1px solid #f5c2bd; padding: 8px 12px; color: #8a1f14; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; font-size: 12px; }
pre.err { color: #8a1f14; max-width: 420px; } pre.small { max-width: 320px; max-height: 80px; overflow: auto; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; box-shadow: 0 0 0 1px #e2e5eb; padding: 10px 14px; min-width: 300px; }
.card h3 { margin: 0 0 6px; font-size: 15px; }
.figures { display: flex; gap: 18px; margin-bottom: 4px; }
.figures div { display: flex; flex-direction: column; } .figures b { font-size: 22px; font-variant-numeric: tabular-nums; }
.figures span { color: #6b7385; font-size: 12px; }
svg.spark { display: block; }
.spark-area { fill: #d6e4ff; } .spark-line { fill: none; stroke: #2158c7; stroke-width: 1.5; }
.legend { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-bottom: 8px; font-size: 12px; }
.legend .sep { width: 12px; }
.swatch { padding: 1px 8px; border-radius: 3px; }
.unowned-swatch { background: repeating-linear-gradient(45deg, #eee, #eee 4px, #ddd 4px, #ddd 8px); }
.moved-swatch { box-shadow: inset 0 0 0 2px #1d2330; }
.map { display: grid; grid-template-columns: repeat(auto-fill, minmax(92px, 1fr)); gap: 4px; max-width: 1100px; }
.cell { background: var(--owner); border-radius: 3px; padding: 4px 6px; font-size: 11px; line-height: 1.3; display: grid;
        grid-template-columns: auto 1fr; column-gap: 6px; min-height: 48px; }
body.by-lag .cell { background: var(--lag); }
.cell .b { font-weight: 700; font-size: 13px; } .cell .o { text-align: right; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.cell .c { grid-column: 1 / 3; color: #39404f; } .cell .l { grid-column: 1 / 3; font-weight: 600; }
.cell .l i { font-style: normal; font-weight: normal; color: #39404f; }
#bucket-panel { padding: 4px 0; max-width: 1100px; }
.cell .e { color: #39404f; }
.cell.unowned { background-image: repeating-linear-gradient(45deg, transparent, transparent 4px, rgba(0,0,0,.07) 4px, rgba(0,0,0,.07) 8px); }
.cell.moved { box-shadow: inset 0 0 0 2px #1d2330; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 6px; }
.bar { display: inline-block; height: 10px; background: #e07b39; border-radius: 2px; }
form.inline { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin: 6px 0; }
.forms { display: flex; gap: 28px; flex-wrap: wrap; }
.actions { display: flex; gap: 8px; align-items: center; margin: 8px 0 4px; }
button { font: inherit; padding: 3px 10px; cursor: pointer; }
button.danger { background: #c0392b; color: #fff; border: 1px solid #a93226; padding: 5px 14px; }
.confirm p { font-size: 15px; max-width: 800px; }
.state { border-radius: 3px; padding: 0 6px; font-size: 12px; background: #eceef2; }
.state-done { background: #d4f0dc; } .state-dead { background: #f8d3cf; } .state-leased, .state-locked { background: #d6e4ff; }
.state-delayed { background: #fdebc8; } .state-waiting { background: #efe3fa; } .state-ready { background: #e7f3ff; }
.message { margin-bottom: 18px; }
.payload { display: flex; gap: 16px; margin-top: 8px; } .payload pre { background: #fff; box-shadow: 0 0 0 1px #e2e5eb; padding: 8px; min-width: 240px; }
.payload h3 { font-size: 13px; margin: 0 0 4px; }
`;

// Live refresh: every second, fetch this page's content (?partial=1) and swap it in,
// unless paused, hidden, or the user is typing or has touched a form on the page. A page
// that takes long to read (its lag counts a backlog of millions: seconds) is read again
// only after three times as long, so that an open tab keeps a quarter of a core at most.
// Also keeps the bucket map's "colour by" choice across refreshes.
export const JS = `
(function () {
  var main = document.getElementById('content');
  var body = document.body;
  var mode = localStorage.getItem('bucketq.colourBy') || 'owner';
  var status = document.getElementById('live-status');
  function applyMode() {
    body.classList.toggle('by-lag', mode === 'lag');
    document.querySelectorAll('[data-colour-by]').forEach(function (r) { r.checked = r.getAttribute('data-colour-by') === mode; });
  }
  document.addEventListener('change', function (e) {
    var m = e.target && e.target.getAttribute && e.target.getAttribute('data-colour-by');
    if (m) { mode = m; localStorage.setItem('bucketq.colourBy', m); applyMode(); e.target.blur(); return; }
    if (e.target && e.target.closest && e.target.closest('form')) {
      dirty = true;
      if (status) status.textContent = 'paused while you fill in a form (reload to resume)';
    }
  });
  applyMode();
  if (!main || main.getAttribute('data-live') !== '1') return;
  var paused = false, busy = false, dirty = false, nextAt = 0, slowNote = '';
  var button = document.getElementById('pause');
  if (button) button.addEventListener('click', function () {
    paused = !paused; button.textContent = paused ? 'resume' : 'pause';
    status.textContent = paused ? 'paused' : 'live';
  });
  function typing() {
    var a = document.activeElement;
    if (!a || !main.contains(a)) return false;
    if (a.tagName === 'INPUT') return !/^(radio|checkbox|button|submit|hidden)$/.test(a.type);
    return a.tagName === 'TEXTAREA' || a.tagName === 'SELECT';
  }
  function tick() {
    if (paused || busy || dirty || document.hidden || typing() || Date.now() < nextAt) return;
    busy = true;
    var started = Date.now();
    var url = new URL(location.href);
    url.searchParams.set('partial', '1');
    fetch(url, { headers: { accept: 'text/html' } }).then(function (r) {
      return r.text().then(function (text) {
        pace(started);
        if (!r.ok) throw new Error('HTTP ' + r.status);
        if (!dirty && !typing()) {
          // Keep what the reader opened (payload and headers) open across the swap.
          var open = [];
          main.querySelectorAll('details').forEach(function (d, i) { if (d.open) open.push(i); });
          main.innerHTML = text;
          var all = main.querySelectorAll('details');
          open.forEach(function (i) { if (all[i]) all[i].open = true; });
          applyMode();
        }
        status.textContent = 'live · ' + new Date().toLocaleTimeString() + slowNote;
        status.className = 'muted';
        body.setAttribute('data-refreshed', String(Date.now()));
      });
    }).catch(function (e) {
      pace(started);
      status.textContent = 'refresh failed (' + e.message + '), retrying';
      status.className = 'bad';
    }).finally(function () { busy = false; });
  }
  // After a read that took over a second: the next after three times as long.
  function pace(started) {
    var took = Date.now() - started;
    nextAt = took > 1000 ? Date.now() + 3 * took : 0;
    slowNote = took > 1000 ? ' (the page took ' + (took / 1000).toFixed(1) + ' s to read: refreshing every ' + Math.round((4 * took) / 1000) + ' s)' : '';
  }
  setInterval(tick, 1000);
})();
`;
