#!/usr/bin/env bash
# Regenerates src/command/redis7.resp, the built-in command table: the raw RESP2 reply of
# `COMMAND` from a throwaway redis-server (7.x) started on a free port.
#
#   scripts/gen-command-table.sh [path/to/redis-server]
set -euo pipefail

server=${1:-redis-server}
out="$(cd "$(dirname "$0")/.." && pwd)/src/command/redis7.resp"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
"$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    --logfile "$dir/redis.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT

for _ in $(seq 100); do
    if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then break; fi
    sleep 0.05
done
version=$(redis-cli -p "$port" INFO server | tr -d '\r' | sed -n 's/^redis_version://p')
case $version in
7.*) ;;
*) echo "redis-server $version: the built-in table must come from Redis 7" >&2; exit 1 ;;
esac

# COMMAND, then QUIT so the server closes the connection after the reply.
printf '*1\r\n$7\r\nCOMMAND\r\n*1\r\n$4\r\nQUIT\r\n' >&3
cat <&3 >"$dir/reply"
exec 3<&-
# Drop QUIT's "+OK\r\n" from the end.
head -c -5 "$dir/reply" >"$out"
echo "redis $version: $(wc -c <"$out") bytes -> $out"
