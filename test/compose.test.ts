// docker-compose.yml must stay valid for users who have Docker. CI has no Docker
// engine, but `config` only parses and validates: run it wherever a compose is installed.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function findCompose(): string[] | undefined {
  for (const cmd of [['docker', 'compose'], ['docker-compose']]) {
    const r = spawnSync(cmd[0]!, [...cmd.slice(1), 'version'], { encoding: 'utf8', timeout: 10_000 });
    if (r.status === 0) return cmd;
  }
  return undefined;
}

const compose = findCompose();

describe('docker-compose.yml', () => {
  it.skipIf(!compose)('is accepted by `compose config` (postgres, migrate, producer, worker)', () => {
    const r = spawnSync(compose![0]!, [...compose!.slice(1), '-f', 'docker-compose.yml', 'config', '--services'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.stderr).not.toMatch(/invalid|error/i);
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(['migrate', 'postgres', 'producer', 'worker']);
  });
});
