// The console's HTTP server (node:http): routes GET pages and the two POST actions,
// adds security headers, and refuses actions under --read-only (403) and from other
// sites (a per-process form token, plus Origin / Sec-Fetch-Site checks).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Queryable } from '../db/with-client.js';
import { TIME_HELP, parseTime } from '../cli/args.js';
import { html } from './html.js';
import { CSS, JS, layout } from './layout.js';
import {
  confirmPage,
  deadLettersPage,
  errorPage,
  groupPage,
  messagesPage,
  overviewPage,
  resultPage,
  rewindQuestion,
  systemPage,
  type ActionContext,
  type Page,
} from './pages.js';
import * as queries from './queries.js';

export interface UiServerOptions {
  db: Queryable;
  readOnly: boolean;
  /** Shown in the header: which database this is (no password). */
  databaseLabel: string;
}

export interface UiServer {
  server: http.Server;
  /** Listens on host:port (port 0: any free port) and returns the URL. */
  listen(port: number, host: string): Promise<string>;
  close(): Promise<void>;
}

/** Dead letters shown on one page; replaying "all" is not limited by this. */
const DEAD_LETTER_LIMIT = 500;
/** Messages of a key shown by a key lookup. */
const KEY_LOOKUP_LIMIT = 20;
const MAX_BODY_BYTES = 1 << 20;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface SqlError {
  message: string;
  code?: string;
  hint?: string;
  detail?: string;
}

/** Errors raised by Postgres (our BQ codes and others) carry a SQLSTATE and a severity. */
function isSqlError(err: unknown): err is SqlError & Error {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string' && 'severity' in err;
}

export function createUiServer(opts: UiServerOptions): UiServer {
  const token = randomBytes(24).toString('base64url');
  const actions: ActionContext = { readOnly: opts.readOnly, csrfToken: token };
  const db = opts.db;

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // Our own SQLSTATEs (BQ001..) say what was wrong with the request; anything else is ours to fix.
      const status = err instanceof HttpError ? err.status : isSqlError(err) && err.code?.startsWith('BQ') ? 400 : 500;
      if (status >= 500) console.error(`bucketq ui: ${req.method} ${req.url}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      const page = errorPage(status === 403 ? 'Refused' : status === 404 ? 'Not found' : 'Error', {
        message: err instanceof Error ? err.message : String(err),
        code: isSqlError(err) ? err.code : undefined,
        hint: isSqlError(err) ? err.hint : undefined,
        detail: isSqlError(err) ? err.detail : undefined,
      }, req.headers.referer && sameOrigin(req, req.headers.referer) ? req.headers.referer : '/');
      send(res, status, page, new URL(req.url ?? '/', 'http://x').pathname, false);
    });
  });
  // A slow or stuck client must not hold a socket for ever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  function send(res: http.ServerResponse, status: number, page: Page, path: string, partial: boolean): void {
    const text = partial ? page.body.text : layout({ ...page, readOnly: opts.readOnly, path, database: opts.databaseLabel }).text;
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...SECURITY_HEADERS });
    res.end(text);
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const p = url.searchParams;
    const partial = p.get('partial') === '1';
    const show = (page: Page, status = 200) => send(res, status, page, path, partial);

    if (req.method === 'POST') {
      if (opts.readOnly) {
        throw new HttpError(403, 'bucketq ui runs with --read-only: replaying dead letters and rewinding groups are refused. Restart it without --read-only to act, or use `bucketq dlq replay` / `bucketq rewind`.');
      }
      checkCrossSite(req);
      const form = await readForm(req);
      const given = Buffer.from(form.get('csrf') ?? '');
      const expected = Buffer.from(token);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new HttpError(403, 'the form token is missing or stale (the console restarted since the page was loaded?): reload the page and try again');
      }
      if (path === '/actions/replay') return show(await replay(form));
      if (path === '/actions/rewind') return show(await rewind(form));
      throw new HttpError(404, `no action ${path}`);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `method ${req.method} not allowed`);

    if (path === '/assets/ui.css' || path === '/assets/ui.js') {
      res.writeHead(200, {
        'content-type': path.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8',
        ...SECURITY_HEADERS,
        'cache-control': 'no-cache',
      });
      res.end(path.endsWith('.css') ? CSS : JS);
      return;
    }
    if (path === '/health') {
      await queries.listTopics(db); // the database answers
      res.writeHead(200, { 'content-type': 'text/plain', ...SECURITY_HEADERS });
      res.end('ok\n');
      return;
    }
    if (path === '/') return show(overviewPage(await queries.readOverview(db)));
    const groupMatch = /^\/groups\/([^/]+)$/.exec(path);
    if (groupMatch) {
      const name = decodeURIComponent(groupMatch[1]!);
      const detail = await queries.readGroup(db, name);
      if (!detail) throw new HttpError(404, `unknown group '${name}'`);
      return show(groupPage(detail, actions));
    }
    if (path === '/messages') {
      const id = p.get('id')?.trim() || undefined;
      const topic = p.get('topic') || undefined;
      const key = p.get('key') ?? undefined;
      const topics = await queries.listTopics(db);
      if (id !== undefined) {
        if (!/^\d{1,19}$/.test(id)) return show(messagesPage(topics, { id }, undefined, `a message id is a whole number, got '${id}'`), 400);
        return show(messagesPage(topics, { id }, await queries.lookupMessages(db, { id }), undefined));
      }
      if (topic !== undefined && key !== undefined && key !== '') {
        return show(messagesPage(topics, { topic, key }, await queries.lookupMessages(db, { topic, key, limit: KEY_LOOKUP_LIMIT }), undefined));
      }
      return show(messagesPage(topics, { topic }, undefined, undefined));
    }
    if (path === '/dead-letters') {
      const filter = { group: p.get('group') || undefined, key: p.get('key') || undefined, all: p.get('all') === '1' };
      const dl = await queries.readDeadLetters(db, { ...filter, includeReplayed: filter.all, limit: DEAD_LETTER_LIMIT });
      return show(deadLettersPage(dl, filter, actions, DEAD_LETTER_LIMIT));
    }
    if (path === '/system') return show(systemPage(await queries.readSystem(db)));
    throw new HttpError(404, `no page ${path}`);
  }

  async function replay(form: URLSearchParams): Promise<Page> {
    const group = required(form, 'group');
    const key = form.get('key') || undefined;
    const scope = form.get('scope') ?? 'selected';
    const back = `/dead-letters?group=${encodeURIComponent(group)}${key ? `&key=${encodeURIComponent(key)}` : ''}`;
    let ids: string[] | undefined = form.getAll('id');
    for (const id of ids) if (!/^\d{1,19}$/.test(id)) throw new HttpError(400, `a message id is a whole number, got '${id}'`);
    if (scope === 'all') ids = key !== undefined ? await queries.deadLetterIdsOfKey(db, group, key) : undefined;
    else if (ids.length === 0) throw new HttpError(400, 'select at least one dead letter to replay (the checkboxes), or use "Replay all"');
    if (!(await queries.groupExists(db, group))) throw new HttpError(404, `unknown group '${group}'`);
    if (form.get('confirm') !== '1') {
      const n = await queries.countReplayable(db, group, ids);
      const shown = ids && ids.length <= 20 ? html` (${ids.map((id, i) => html`${i ? ', ' : ''}#${id}`)})` : '';
      return confirmPage(actions, {
        title: 'Replay dead letters',
        question:
          ids === undefined
            ? html`All dead letters of group <b>${group}</b> not yet replayed when you confirm will be delivered again, in key order: <b data-field="count">${n}</b> now.`
            : html`<b data-field="count">${n}</b> ${n === 1 ? 'dead letter' : 'dead letters'} of group <b>${group}</b>${shown} will be delivered again, in key order.`,
        action: '/actions/replay',
        fields: { group, key, scope, id: scope === 'all' ? undefined : ids },
        confirmLabel: `Replay ${n}`,
        back,
      });
    }
    const n = await queries.replayDead(db, group, ids);
    return resultPage(
      'Replayed',
      html`replayed <span data-field="count">${n}</span> ${n === 1 ? 'dead letter' : 'dead letters'} of group ${group}${n ? ': they are delivered again in key order' : ''}`,
      { href: back, label: 'Back to the dead letters' },
    );
  }

  async function rewind(form: URLSearchParams): Promise<Page> {
    const group = required(form, 'group');
    const toText = required(form, 'to');
    const to = parseTime(toText);
    if (!to) throw new HttpError(400, `rewind: the time must be ${TIME_HELP}; got '${toText}'`);
    const back = `/groups/${encodeURIComponent(group)}`;
    if (form.get('confirm') !== '1') {
      const preview = await queries.previewRewind(db, group, to);
      if (!preview) throw new HttpError(404, `unknown group '${group}'`);
      return confirmPage(actions, {
        title: 'Rewind group',
        question: rewindQuestion(preview),
        action: '/actions/rewind',
        // The resolved time, so "15m" means the same instant when confirmed.
        fields: { group, to: to.toISOString() },
        confirmLabel: `Rewind: deliver ${preview.messages} again`,
        back,
      });
    }
    const n = await queries.rewind(db, group, to);
    return resultPage(
      'Rewound',
      html`rewound group ${group} to ${to.toISOString()}: <span data-field="count">${n}</span> ${n === 1 ? 'message' : 'messages'} will be delivered again`,
      { href: back, label: `Back to group ${group}` },
    );
  }

  return {
    server,
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const a = server.address() as AddressInfo;
          resolve(`http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/`);
        });
      }),
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
};

function required(form: URLSearchParams, name: string): string {
  const v = form.get(name)?.trim();
  if (!v) throw new HttpError(400, `${name} is required`);
  return v;
}

/** The host a browser addressed (behind a proxy: the forwarded one). */
function requestHosts(req: http.IncomingMessage): string[] {
  const hosts = [req.headers.host];
  const fwd = req.headers['x-forwarded-host'];
  if (typeof fwd === 'string') hosts.push(...fwd.split(',').map((h) => h.trim()));
  return hosts.filter((h): h is string => !!h).map((h) => h.toLowerCase());
}

function sameOrigin(req: http.IncomingMessage, url: string): boolean {
  try {
    return requestHosts(req).includes(new URL(url).host.toLowerCase());
  } catch {
    return false;
  }
}

/** Refuses POSTs a browser sent from another site; the form token is the second lock. */
function checkCrossSite(req: http.IncomingMessage): void {
  const site = req.headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') throw new HttpError(403, 'cross-site request refused: actions are only taken from the console\'s own pages');
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== 'null' && !sameOrigin(req, origin)) {
    throw new HttpError(403, `cross-site request refused: origin ${origin} is not this console`);
  }
  if (origin === 'null') throw new HttpError(403, 'cross-site request refused: opaque origin');
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') throw new HttpError(415, 'actions take a form (application/x-www-form-urlencoded)');
}

async function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'request body too large');
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}
