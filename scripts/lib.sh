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

# mount_image DIR REVISIONS: mounts DIR.img (made if missing: ext4, 1 KiB blocks, inline
# data, inodes for REVISIONS revisions) on DIR, unless DIR is already a mount point. A
# 1M-revision tree takes about 5 KB a manifest there instead of about 35 KB.
mount_image() {
  local dir=$1 revs=$2 img=$1.img
  mountpoint -q "$dir" && return 0
  if [ ! -f "$img" ]; then
    truncate -s $(( revs * 8 / 1000 + 512 ))M "$img"
    mkfs.ext4 -q -b 1024 -I 256 -O inline_data -N $(( revs * 12 + 100000 )) "$img"
  fi
  mkdir -p "$dir"
  mount -o loop "$img" "$dir"
}
