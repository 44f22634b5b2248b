# Sourced by the bench scripts: `stop PID [GRACE_SECONDS]` sends SIGTERM, waits up to the
# grace (default 6 s) for the process to exit, then SIGKILLs it and reaps it.
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
