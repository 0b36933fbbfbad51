#!/usr/bin/env bash
# A scangate deployment on one host, laid out as it would be over many: a
# three-node JetStream cluster (n1.conf, n2.conf, n3.conf) and two of each
# role, every one its own process with its own data directory.
#
#   ingest     http://127.0.0.1:8008 and http://127.0.0.1:8009
#   NATS       nats://127.0.0.1:4222,4223,4224 (monitoring on :8222..8224)
#   logs       data/cluster/logs/<process>.log
#
# Every process is restarted when it exits, as a supervisor (systemd's
# Restart=always) would: kill any one of them to watch the others carry on
# and it come back. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=data/cluster/bin
logs=data/cluster/logs
mkdir -p "$bin" "$logs"
# nats-server is a module dependency, so this builds the exact version
# scangate is tested against.
go build -o "$bin/nats-server" github.com/nats-io/nats-server/v2
go build -o "$bin/scangate" .

pids=()
stop() {
	trap - EXIT INT TERM
	[ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
	wait
}
trap stop EXIT
trap 'exit 130' INT TERM

# supervise runs a command, restarting it whenever it exits, until it is
# sent SIGTERM.
supervise() { # name command...
	local name=$1 child="" status
	shift
	trap 'kill "$child" 2>/dev/null; wait "$child"; exit 0' TERM
	while :; do
		"$@" >>"$logs/$name.log" 2>&1 &
		child=$!
		wait "$child" && status=0 || status=$?
		echo "$name exited with status $status; restarting (see $logs/$name.log)" >&2
		sleep 1
	done
}

run() { # name command...
	supervise "$@" &
	pids+=($!)
	echo "$*"
}

for i in 1 2 3; do
	run "nats-n$i" "$bin/nats-server" -c "configs/cluster/n$i.conf"
done

# The roles declare their streams with three replicas, which needs a meta
# leader: wait until every node reports JetStream healthy.
for i in 1 2 3; do
	port=$((8221 + i))
	for try in $(seq 120); do
		curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
		[ "$try" -lt 120 ] || { echo "nats n$i is not healthy; see $logs/nats-n$i.log" >&2; exit 1; }
		sleep 0.5
	done
done

export SCANGATE_NATS_REPLICAS=3   # every stream, bucket and object store on three nodes
export SCANGATE_BLOB_STORE=jetstream # uploaded bytes in JetStream: any node reads any file
nats=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224
for i in 1 2; do
	run "ingest-$i" "$bin/scangate" ingest --nats "$nats" --listen "127.0.0.1:$((8007 + i))" --data "data/cluster/ingest-$i"
	run "assembler-$i" "$bin/scangate" assembler --nats "$nats" --data "data/cluster/assembler-$i"
	run "scanner-$i" "$bin/scangate" scanner --nats "$nats" --data "data/cluster/scanner-$i"
	run "notifier-$i" "$bin/scangate" notifier --nats "$nats" --data "data/cluster/notifier-$i"
done

echo "running; ingest on http://127.0.0.1:8008 and http://127.0.0.1:8009; Ctrl-C stops"
wait
