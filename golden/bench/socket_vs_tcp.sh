#!/bin/sh
# Run by ./inv bench as root inside a throwaway VM of the image (its disk is
# a snapshot, discarded afterwards). ADR-002 says Unix sockets beat TCP
# loopback; this measures it. The TCP listeners exist only here, for the
# comparison: PostgreSQL gets listen_addresses=127.0.0.1 and a trust line
# for 127.0.0.1 (peer over the socket: no password either way), Valkey a
# second instance with both a socket and a TCP port.
# Prints "<measure> <value>" lines.
set -eu
SECONDS_EACH=${SECONDS_EACH:-15}
systemctl is-system-running --wait >/dev/null || true  # first boot: credentials made, services up
pgbench=/usr/lib/postgresql/17/bin/pgbench
conf=/etc/postgresql/17/main

echo "listen_addresses = '127.0.0.1'" >"$conf/conf.d/zz-bench.conf"
echo "host bench postgres 127.0.0.1/32 trust" >>"$conf/pg_hba.conf"
systemctl restart postgresql@17-main
until runuser -u postgres -- pg_isready -q -h 127.0.0.1; do sleep 1; done
runuser -u postgres -- createdb bench
runuser -u postgres -- "$pgbench" -q -i -s 5 bench >/dev/null 2>&1
for transport in socket tcp; do
  host=/var/run/postgresql
  [ "$transport" = tcp ] && host=127.0.0.1
  out=$(runuser -u postgres -- "$pgbench" -n -S -T "$SECONDS_EACH" -c 4 -j 2 -h "$host" bench 2>&1)
  echo "pgbench_${transport}_tps $(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n1)"
  echo "pgbench_${transport}_latency_ms $(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')"
done

valkey-server --port 6390 --bind 127.0.0.1 --unixsocket /run/bench-valkey.sock --unixsocketperm 700 \
  --save '' --appendonly no --daemonize yes --pidfile /run/bench-valkey.pid --logfile /run/bench-valkey.log
until valkey-cli -s /run/bench-valkey.sock PING >/dev/null 2>&1; do sleep 0.2; done
for transport in socket tcp; do
  if [ "$transport" = socket ]; then target="-s /run/bench-valkey.sock"; else target="-h 127.0.0.1 -p 6390"; fi
  # shellcheck disable=SC2086
  out=$(valkey-benchmark $target -t set,get -n 100000 -c 20 -q 2>&1 | tr '\r' '\n')
  for op in SET GET; do
    echo "valkey_${transport}_${op}_rps $(echo "$out" | sed -n "s/^$op: \([0-9.]*\) requests per second.*/\1/p" | tail -n1)"
  done
done
kill "$(cat /run/bench-valkey.pid)"
