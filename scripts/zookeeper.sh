#!/usr/bin/env bash
# Start or stop a standalone ZooKeeper on 127.0.0.1 for development, tests and CI.
#   zookeeper.sh start   [PORT] [DIR]  install Debian's `zookeeper` if missing, start it, wait for ruok -> imok
#   zookeeper.sh stop    [PORT] [DIR]  stop the server this script started from DIR (data is kept)
#   zookeeper.sh status  [PORT] [DIR]  exit 0 if PORT answers imok
#   zookeeper.sh install               only install the package (CI runs this before the tests)
# Defaults: PORT 2181, DIR /tmp/mpim-zookeeper-PORT (conf/, data/, zookeeper.log, stdout.log, zookeeper.pid).
# Idempotent: start does nothing if PORT already answers; stop does nothing if nothing runs.
# Works as root without a prior `apt-get update` (a fresh CI container) and as a user with passwordless sudo.
# Environment: ZOOKEEPER_JAR (default /usr/share/java/zookeeper.jar), ZOOKEEPER_START_TIMEOUT (s, default 60).
set -u
cmd=${1:-start}; port=${2:-2181}; dir=${3:-/tmp/mpim-zookeeper-$port}
jar=${ZOOKEEPER_JAR:-/usr/share/java/zookeeper.jar}
start_timeout=${ZOOKEEPER_START_TIMEOUT:-60}

# One ruok round trip with bash's /dev/tcp: no python or netcat needed.
ruok() {
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf ruok >&3
    IFS= read -r -t 2 -n 4 reply <&3
    printf %s "$reply"' _ "$port" 2>/dev/null
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo -n "$@"
  else echo "need root (or passwordless sudo) to install packages" >&2; return 1; fi
}

install_zookeeper() {
  [ -f "$jar" ] && return 0
  command -v apt-get >/dev/null || { echo "$jar missing and apt-get not available; install ZooKeeper 3.5+ and set ZOOKEEPER_JAR" >&2; return 1; }
  local log=${TMPDIR:-/tmp}/mpim-zookeeper-install.log
  echo "installing Debian's zookeeper package (log: $log)"
  # A fresh container has no package lists, and old lists point at versions the mirror no
  # longer has, so always update first. A partly failing update (one unreachable extra
  # repository) is not fatal: the install below decides.
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
  {
    as_root "${apt[@]}" update || echo "apt-get update failed (continuing)"
    as_root "${apt[@]}" install -y --no-install-recommends zookeeper
  } >"$log" 2>&1 || { echo "could not install Debian's zookeeper package; last lines of $log:" >&2; tail -n 20 "$log" >&2; return 1; }
  [ -f "$jar" ] || { echo "zookeeper package installed but $jar is missing" >&2; return 1; }
}

# True while pid runs and is not a zombie (our own unreaped child still answers kill -0).
alive() {
  local state
  [ -r "/proc/$1/stat" ] || return 1
  read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null || return 1
  [ "$state" != Z ]
}

# The pid in DIR/zookeeper.pid if that process is still our ZooKeeper (pids get reused).
our_pid() {
  local pid
  pid=$(cat "$dir/zookeeper.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "QuorumPeerMain $dir/conf/zoo.cfg" || return 1
  echo "$pid"
}

write_config() {
  mkdir -p "$dir/data" "$dir/conf"
  cat >"$dir/conf/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
maxClientCnxns=0
4lw.commands.whitelist=ruok,stat,srvr
CFG
  printf '%s\n' \
    'log4j.rootLogger=INFO, F' \
    'log4j.appender.F=org.apache.log4j.FileAppender' \
    "log4j.appender.F.File=$dir/zookeeper.log" \
    'log4j.appender.F.layout=org.apache.log4j.PatternLayout' \
    'log4j.appender.F.layout.ConversionPattern=%d %p %c{1}: %m%n' >"$dir/conf/log4j.properties"
}

wait_ready() {
  local pid=$1 tries=$((start_timeout * 4))
  for _ in $(seq 1 "$tries"); do
    [ "$(ruok)" = imok ] && { echo "zookeeper up on 127.0.0.1:$port (pid $pid, dir $dir)"; return 0; }
    alive "$pid" || { echo "zookeeper exited during start-up; last lines of $dir/stdout.log and zookeeper.log:" >&2; tail -n 20 "$dir/stdout.log" "$dir/zookeeper.log" >&2 2>/dev/null; return 1; }
    sleep 0.25
  done
  echo "zookeeper did not answer within ${start_timeout} s; see $dir/zookeeper.log" >&2; return 1
}

start() {
  [ "$(ruok)" = imok ] && { echo "zookeeper already answering on 127.0.0.1:$port"; return 0; }
  local pid
  if pid=$(our_pid); then wait_ready "$pid"; return; fi  # started a moment ago, still booting
  install_zookeeper || return 1
  command -v java >/dev/null || { echo "java not found (the zookeeper package should bring it)" >&2; return 1; }
  write_config
  # setsid: the server outlives this script and is not hit by the caller's Ctrl-C.
  # Without job control the background job is not a group leader, so setsid execs in
  # place and $! is the JVM's pid.
  # The Debian jar's manifest names slf4j-api but no binding; add log4j's (when present)
  # so the server logs to DIR/zookeeper.log per conf/log4j.properties.
  local cp="$dir/conf:$jar" j
  for j in /usr/share/java/slf4j-log4j12.jar /usr/share/java/log4j-1.2.jar; do
    [ -f "$j" ] && cp="$cp:$j"
  done
  setsid nohup java -Xmx256m -cp "$cp" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/conf/zoo.cfg" >"$dir/stdout.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/zookeeper.pid"
  wait_ready "$pid"
}

stop() {
  local pid
  pid=$(our_pid) || { rm -f "$dir/zookeeper.pid"; echo "no zookeeper started from $dir is running"; return 0; }
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 40); do alive "$pid" || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null
  rm -f "$dir/zookeeper.pid"
  echo "zookeeper stopped (pid $pid)"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  status) if [ "$(ruok)" = imok ]; then echo "zookeeper answering on 127.0.0.1:$port"; else echo "nothing answering on 127.0.0.1:$port"; exit 1; fi ;;
  install) install_zookeeper ;;
  *) echo "usage: zookeeper.sh start|stop|status|install [PORT] [DIR]" >&2; exit 2 ;;
esac
