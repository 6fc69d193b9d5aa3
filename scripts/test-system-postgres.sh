#!/usr/bin/env bash
# Runs the test suite against the machine's own Postgres (Debian's postgresql-NN
# package) when one is installed: a throwaway cluster in a temp dir on a free port.
# Usage: scripts/test-system-postgres.sh [vitest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

bindir=""
for v in 17 16 15 14; do
  if [ -x "/usr/lib/postgresql/$v/bin/initdb" ]; then bindir="/usr/lib/postgresql/$v/bin"; break; fi
done
if [ -z "$bindir" ]; then
  echo "system Postgres: none installed (/usr/lib/postgresql/NN/bin); skipped"
  exit 0
fi

run_as=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  run_as=(runuser -u postgres --)
fi

dir=$(mktemp -d /tmp/bucketq-syspg.XXXXXX)
chmod 755 "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
port=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
cleanup() {
  "${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

"${run_as[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
"${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c max_locks_per_transaction=256" start >/dev/null
echo "system Postgres: $("$bindir/postgres" --version) on port $port"
DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres" npx vitest run "$@"
