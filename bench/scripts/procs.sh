# shellcheck shell=bash
# Sourced by the bench scripts: the processes they start and stop.
#
# `stop PID [GRACE_SECONDS]` sends SIGTERM, waits up to the grace (default 6 s) for the
# process to exit, then SIGKILLs it and reaps it.
stop() {
    local pid=$1 grace=${2:-6} i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# A TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
            [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
            echo "$p"
            return
        fi
    done
    echo "no free port found" >&2
    return 1
}

# `tail_logs FILE...`: the last 20 lines of each file that is not empty, on stderr (what a
# failing script shows of the processes it started).
tail_logs() {
    local f
    for f in "$@"; do
        [ -s "$f" ] || continue
        echo "--- last lines of $(basename "$f"):" >&2
        tail -n 20 "$f" >&2
    done
}
