# Shared by registry.sh and moto.sh: waiting for a server and stopping it by its pid file.

# wait_up NAME URL PIDFILE LOG TRIES: polls URL every 50 ms until it answers; on failure
# prints the server's log (if it died) and returns 1.
wait_up() {
  local name=$1 url=$2 pidfile=$3 log=$4 tries=$5
  for _ in $(seq 1 "$tries"); do
    curl -sk -o /dev/null "$url" && return 0
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "$name exited; its log:" >&2; cat "$log" >&2; return 1
    fi
    sleep 0.05
  done
  echo "$name did not answer on $url" >&2
  return 1
}

# stop_pidfile PIDFILE: SIGTERM, wait up to 5 s, then SIGKILL; removes the pid file.
stop_pidfile() {
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}
