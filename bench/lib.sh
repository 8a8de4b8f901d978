# Helpers shared by the benchmark scripts (sourced, not run): messages, the processes a script
# started (PIDS), and waiting for a process's first line.

say() { printf '==> %s\n' "$*" >&2; }

stop() { # pid: TERM, up to 5 s to exit, then KILL
  local pid=$1 i
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

cleanup() { local pid; for pid in "${PIDS[@]}"; do stop "$pid"; done; }

wait_line() { # file, extended regexp, seconds, pid: prints the first matching line
  local file=$1 pattern=$2 limit=$3 pid=$4 line i
  for ((i = 0; i < limit * 10; i++)); do
    line=$(grep -m1 -E "$pattern" "$file" 2>/dev/null || true)
    if [ -n "$line" ]; then echo "$line"; return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "timed out waiting for /$pattern/ in $file:" >&2; tail -n 20 "$file" "$file.err" >&2 2>/dev/null || true
  return 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
