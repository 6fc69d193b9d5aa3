// How the tests pick their Postgres: DATABASE_URL, else testcontainers when a Docker
// engine answers, else the embedded server. The engine check talks HTTP to a real
// socket (a stand-in engine here: this machine has none).
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { chooseServer, dockerEngineAnswers } from './support/postgres-server.js';

const yes = async () => true;
const no = async () => false;
const mustNotAsk = async (): Promise<boolean> => {
  throw new Error('asked the Docker engine although the choice did not depend on it');
};

describe('chooseServer', () => {
  it('takes DATABASE_URL first, without asking Docker', async () => {
    expect((await chooseServer({ DATABASE_URL: 'postgres://x/y' }, mustNotAsk)).kind).toBe('database-url');
    expect((await chooseServer({ DATABASE_URL: 'postgres://x/y', BUCKETQ_TEST_POSTGRES: 'embedded' }, mustNotAsk)).kind).toBe('database-url');
  });

  it('then testcontainers when an engine answers, else the embedded Postgres', async () => {
    expect(await chooseServer({}, yes)).toEqual({ kind: 'testcontainers', reason: 'a Docker engine answers' });
    expect(await chooseServer({}, no)).toEqual({ kind: 'embedded', reason: 'no DATABASE_URL and no Docker engine answers' });
    expect((await chooseServer({ DATABASE_URL: '' }, no)).kind).toBe('embedded');
  });

  it('BUCKETQ_TEST_POSTGRES forces embedded or testcontainers, and rejects anything else naming both', async () => {
    expect((await chooseServer({ BUCKETQ_TEST_POSTGRES: 'embedded' }, mustNotAsk)).kind).toBe('embedded');
    expect((await chooseServer({ BUCKETQ_TEST_POSTGRES: 'testcontainers' }, mustNotAsk)).kind).toBe('testcontainers');
    await expect(chooseServer({ BUCKETQ_TEST_POSTGRES: 'docker' }, no)).rejects.toThrow("BUCKETQ_TEST_POSTGRES must be 'embedded' or 'testcontainers', got 'docker'");
  });

  it.runIf(!process.env.DOCKER_HOST && !existsSync('/var/run/docker.sock'))('picks the embedded Postgres on a machine without an engine (this one)', async () => {
    expect((await chooseServer({}, () => dockerEngineAnswers({}))).kind).toBe('embedded');
  });
});

describe('dockerEngineAnswers', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bucketq-engine-'));
  const servers: http.Server[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    rmSync(dir, { recursive: true, force: true });
  });

  function fakeEngine(name: string, answer: (res: http.ServerResponse) => void): Promise<string> {
    const socketPath = path.join(dir, name);
    const server = http.createServer((req, res) => (req.url === '/_ping' ? answer(res) : res.writeHead(404).end()));
    servers.push(server);
    return new Promise((resolve) => server.listen(socketPath, () => resolve(`unix://${socketPath}`)));
  }

  it('is true when GET /_ping on DOCKER_HOST answers OK', async () => {
    const host = await fakeEngine('ok.sock', (res) => res.writeHead(200).end('OK'));
    expect(await dockerEngineAnswers({ DOCKER_HOST: host })).toBe(true);
  });

  it('is false for a socket that answers something else, one that does not exist, a closed port, or one that hangs', async () => {
    const wrong = await fakeEngine('wrong.sock', (res) => res.writeHead(500).end('no'));
    const hangs = await fakeEngine('hangs.sock', () => {});
    expect(await dockerEngineAnswers({ DOCKER_HOST: wrong })).toBe(false);
    expect(await dockerEngineAnswers({ DOCKER_HOST: `unix://${path.join(dir, 'missing.sock')}` })).toBe(false);
    expect(await dockerEngineAnswers({ DOCKER_HOST: 'tcp://127.0.0.1:1' })).toBe(false);
    const started = Date.now();
    expect(await dockerEngineAnswers({ DOCKER_HOST: hangs }, 300)).toBe(false);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
