# shellcheck shell=bash
# bench/lib.sh: what bench/run and the measuring scripts beside it share.
#
#   . "$(dirname "$0")/lib.sh"
#   bench_init NAME          # WORK=/tmp/bench-NAME.XXXXXX, clean-up on exit
#
# Sourced, not run, by bench/run, bench/extras, bench/edge, bench/hung,
# bench/journal, bench/ratelimit, bench/daemon-memory and bench/instructions.  It gives them:
#   - the programs: TALLYD, TALLYCTL, BENCH (bench/tallyd-bench), BARE
#     (bench/bare-server), each from BUILD (this tree by default; an
#     out-of-tree build sets BUILD=DIR, or the programs one by one);
#   - servers started in sessions of their own (start_server), load
#     generators (bench_start), and a throwaway MariaDB
#     (tests/lib/mariadb.sh), all stopped when the script exits, however it
#     exits; WORK is removed then, unless BENCH_KEEP=1 or the script failed;
#   - free ports (pick_port, wait_for_port);
#   - the how-to's tables (setup_database) and tallyd's configuration for
#     them (start_tallyd; knobs TALLYD_CHAIN, TALLYD_PRELOAD,
#     TALLYD_WORKERS, TALLYD_TIME_PATTERN, TALLYD_WAIT, TALLYD_DB_PORT);
#   - tallyd-bench points read by column name (bench_point, csv_field);
#   - a row for the targets table of doc/benchmarks.md (add_target, into
#     the file BENCH_TARGETS names, when it is set).
# Every function that fails calls die, which exits: callers need no checks.

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${BUILD:=$TOP}"
: "${TALLYD:=$BUILD/tallyd}" "${TALLYCTL:=$BUILD/tallyctl}"
: "${BENCH:=$BUILD/bench/tallyd-bench}" "${BARE:=$BUILD/bench/bare-server}"
export BUILD TALLYD TALLYCTL BENCH BARE
: "${BENCH_KEEP:=0}" "${BARE_THREADS:=$(nproc)}"
: "${TALLYD_CHAIN:=full}" "${TALLYD_WORKERS:=8}" "${TALLYD_PRELOAD:=1}"
: "${TALLYD_TIME_PATTERN:=}" "${TALLYD_WAIT:=}"

DB_USER=tallyd        # created by tests/lib/mariadb.sh
DB_PASSWORD=tallyd
# SqlUserConfig's query from the how-to, and the same mapping whole.
USER_CONFIG_QUERY='SELECT p.config FROM relay_policies p JOIN relay_hosts h ON (h.relay_policy = p.id) WHERE h.client_address=?'
PRELOAD_QUERY='SELECT h.client_address, p.config FROM relay_policies p JOIN relay_hosts h ON (h.relay_policy = p.id)'
# The key the chain is checked with: the last one of 10.0.0.0/8, outside
# every measured key range, so its tight quota never defers a measured
# request.
CHECK_KEY_NUMBER=16777215
CHECK_KEY=10.255.255.255

SCRIPT=bench
say() { printf '%s %s: %s\n' "$(date +%H:%M:%S)" "$SCRIPT" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# ------------------------------------------------------------- clean-up

SERVER_PIDS=()
CLIENT_PIDS=()
WORK=
# tests/lib/mariadb.sh exports MARIADB_*: a script that bench/run starts
# sees bench/run's, and must not stop that server.
MARIADB_OURS=0

# Creates WORK and sets the traps; NAME names the directory and the messages.
bench_init() {
	SCRIPT=bench/$1
	WORK=$(mktemp -d "/tmp/bench-$1.XXXXXX")
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# Every server runs in a session of its own (setsid), so stopping its
# process group also stops the children it forks (mtpolicyd's).
stop_group() {
	local pid=$1 i
	kill -TERM -- "-$pid" 2>/dev/null || return 0
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL -- "-$pid" 2>/dev/null || true
}

# Removes process id $2 from the array variable named $1.
forget_pid() {
	local -n pids=$1
	local kept=() p
	for p in "${pids[@]}"; do
		[ "$p" = "$2" ] || kept+=("$p")
	done
	pids=("${kept[@]}")
}

# Stops server $1 now, and forgets it.
stop_server() {
	stop_group "$1"
	wait "$1" 2>/dev/null || true
	forget_pid SERVER_PIDS "$1"
}

cleanup() {
	local status=$? i
	trap - EXIT INT TERM
	for i in "${CLIENT_PIDS[@]}"; do
		kill "$i" 2>/dev/null || true
	done
	for ((i = ${#SERVER_PIDS[@]} - 1; i >= 0; i--)); do
		stop_group "${SERVER_PIDS[$i]}"
	done
	if [ "$MARIADB_OURS" = 1 ]; then
		cp "$MARIADB_DIR/err" "$WORK/mariadbd.log" 2>/dev/null || true
		mariadb_stop
	fi
	wait 2>/dev/null || true
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ "$BENCH_KEEP" = 1 ] || [ "$status" != 0 ]; then
			say "logs and configuration kept in $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$status"
}

# Starts "$@" in its own session with output to log file $1; sets STARTED_PID.
start_server() {
	local log=$1
	shift
	setsid "$@" >"$log" 2>&1 </dev/null &
	STARTED_PID=$!
	SERVER_PIDS+=("$STARTED_PID")
}

# Sleeps $1 seconds; unlike a foreground sleep, a signal ends it at once
# (and the clean-up stops the sleep).
pause() {
	local pid
	sleep "$1" &
	pid=$!
	CLIENT_PIDS+=("$pid")
	wait "$pid" || true
	forget_pid CLIENT_PIDS "$pid"
}

# Pauses until the Unix time $1 (may have a fraction); at once if it has passed.
pause_until() {
	pause "$(awk -v t="$1" -v now="$(date +%s.%N)" 'BEGIN { d = t - now; print (d > 0 ? d : 0) }')"
}

# --------------------------------------------------------------- checks

require_root() {
	[ "$(id -u)" = 0 ] || die "run as root: MariaDB is started as root here"
}

# Each argument is a program this tree builds (a path) or a command.
require() {
	local f
	for f in "$@"; do
		case "$f" in
		*/*) [ -x "$f" ] || die "$f is missing: build first (autoreconf -fi && ./configure && make), or set BUILD to the build directory" ;;
		*) command -v "$f" >/dev/null || die "$f not found: apt-get install mariadb-server-core mariadb-client-core (and see bench/run's usage)" ;;
		esac
	done
}

# ------------------------------------------------------------------ ports

# ss (iproute2) sees every socket on the port; without it, at least make
# sure nothing listens on 127.0.0.1.
port_is_free() {
	if command -v ss >/dev/null; then
		[ -z "$(ss -Htan "( sport = :$1 )")" ]
	elif (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
		return 1
	fi
}

# Sets variable $1 to a free port in 20000-59999.  Ports are picked at
# random so that two runs, or other test suites on the machine, rarely meet.
PICKED_PORTS=
pick_port() {
	local candidate
	while :; do
		candidate=$((20000 + RANDOM % 40000))
		port_is_free "$candidate" && ! [[ " $PICKED_PORTS " == *" $candidate "* ]] && break
	done
	PICKED_PORTS+=" $candidate"
	printf -v "$1" '%s' "$candidate"
}

# Waits until 127.0.0.1:port accepts, while process $2 lives, for at most
# $4 seconds [30]; shows log $3 on failure.
wait_for_port() {
	local port=$1 pid=$2 log=$3 tenths=$((${4:-30} * 10)) i
	for ((i = 0; i < tenths; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	tail -n 20 "$log" >&2 || true
	die "nothing answers on port $port (log above: $log)"
}

# -------------------------------------------------------------- MariaDB

sql() { mariadb_sql "$@"; }

# A throwaway MariaDB in WORK/db (tests/lib/mariadb.sh); sets DB_PORT.
start_mariadb() {
	# shellcheck source-path=SCRIPTDIR/.. source=tests/lib/mariadb.sh
	. "$TOP/tests/lib/mariadb.sh"
	MARIADB_OURS=1
	MARIADB_BUFFER_POOL=512M mariadb_start "$WORK/db" || die "MariaDB did not start"
	DB_PORT=$MARIADB_PORT
	PICKED_PORTS+=" $DB_PORT"
	say "a throwaway MariaDB listens on port $DB_PORT"
}

# The how-to's tables (seed/000_8772fceef30c2b9d.txt), with two additions
# for the benchmark: an index on relay_hosts.client_address (every admin
# would add it; without it each mtpolicyd request scans the table), and the
# measured keys 10.0.0.0 .. 10.0.3.231 (the 1,000-key set) as premium
# relay hosts, whose 100,000-message quota no run reaches, so every request
# goes through the whole chain.  Keys beyond get the default threshold
# (1000) and see a few requests each.
relay_tables_sql() {
	cat <<'EOF'
CREATE TABLE `relay_policies` (
  `id` int(11) NOT NULL auto_increment,
  `desc` VARCHAR(64) NOT NULL,
  `config` TEXT NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB;
INSERT INTO relay_policies VALUES(1, 'standard relay host', '{"quota_count":"10000"}');
INSERT INTO relay_policies VALUES(2, 'premium relay host', '{"quota_count":"100000"}');
CREATE TABLE `relay_hosts` (
  `id` int(11) NOT NULL auto_increment,
  `client_address` VARCHAR(64) NOT NULL,
  `relay_policy` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  KEY `relay_policy` (`relay_policy`),
  CONSTRAINT `relay_hosts_ibfk_1` FOREIGN KEY (`relay_policy`) REFERENCES `relay_policies` (`id`)
) ENGINE=InnoDB;
INSERT INTO relay_hosts VALUES(NULL, '2604:8d00:0:1::3', 1);
INSERT INTO relay_hosts VALUES(NULL, '2604:8d00:0:1::4', 2);
-- bench additions
CREATE INDEX client_address ON relay_hosts (client_address);
INSERT INTO relay_hosts (client_address, relay_policy)
  SELECT CONCAT('10.', (seq >> 16) & 255, '.', (seq >> 8) & 255, '.', seq & 255), 2
  FROM seq_0_to_999;
-- the chain check's key: a quota of 2 messages
INSERT INTO relay_policies VALUES(3, 'bench: chain check', '{"quota_count":"2"}');
EOF
	echo "INSERT INTO relay_hosts VALUES(NULL, '$CHECK_KEY', 3);"
}

# Database $1 with the how-to's tables.  Each daemon gets its own: tallyd
# and mtpolicyd both name their table acct_client_address.
setup_database() {
	sql -e "CREATE DATABASE IF NOT EXISTS $1"
	relay_tables_sql | sql "$1"
}

# --------------------------------------------------------------- servers

start_bare() {
	pick_port BARE_PORT
	say "starting bench/bare-server on port $BARE_PORT ($BARE_THREADS threads)"
	start_server "$WORK/bare.log" "$BARE" -p "$BARE_PORT" -t "$BARE_THREADS"
	BARE_PID=$STARTED_PID
	wait_for_port "$BARE_PORT" "$BARE_PID" "$WORK/bare.log"
}

# The how-to's chain, or the Action module alone with TALLYD_CHAIN=action.
# TALLYD_PRELOAD=1 gives SqlUserConfig the whole mapping (preload_query);
# TALLYD_TIME_PATTERN, when set, gives Quota and Accounting another period
# than the month.
tallyd_plugins() {
	local preload='' pattern=''
	if [ "$TALLYD_CHAIN" = action ]; then
		echo '      { name = "dunno"; module = "Action"; action = "dunno"; }'
		return
	fi
	if [ "$TALLYD_PRELOAD" = 1 ]; then
		preload=$'\n'"        preload_query = \"$PRELOAD_QUERY\";"
	fi
	if [ -n "$TALLYD_TIME_PATTERN" ]; then
		pattern=" time_pattern = \"$TALLYD_TIME_PATTERN\";"
	fi
	cat <<EOF
      { name = "QuotaPolicyConfig"; module = "SqlUserConfig"; field = "client_address";
        sql_query = "$USER_CONFIG_QUERY";$preload },
      { name = "QuotaIP"; module = "Quota"; field = "client_address"; metric = "count";
        threshold = 1000; uc_threshold = "quota_count";$pattern
        action = "defer you exceeded your monthly limit, please insert coin"; },
      { name = "AcctIP"; module = "Accounting"; fields = "client_address";$pattern }
EOF
}

# DESIGN.md §3's example in file $1, on port $2, with control socket $3,
# logging to stderr, against database TALLYD_DB [tallyd] on port
# TALLYD_DB_PORT [DB_PORT] (bench/hung puts a proxy there).
write_tallyd_config() {
	local wait=''
	if [ -n "$TALLYD_WAIT" ]; then
		wait=$'\n'"  wait = $TALLYD_WAIT;"
	fi
	cat >"$1" <<EOF
# tallyd for $SCRIPT (chain: $TALLYD_CHAIN)
log_level = "notice";
log_target = "stderr";
control_socket = "$3";
listen = "127.0.0.1:$2";
workers = $TALLYD_WORKERS;
max_connections = 4096;
database = {
  driver = "mysql";
  host = "127.0.0.1"; port = ${TALLYD_DB_PORT:-$DB_PORT}; user = "$DB_USER"; password = "$DB_PASSWORD";
  name = "${TALLYD_DB:-tallyd}";
  pool_size = 4;$wait
};
accounting = { flush_interval = 1.0; flush_batch = 1000; refresh_interval = 10.0; };
user_config_ttl = 60;
virtual_hosts = (
  { port = $2; name = "accounting";
    plugins = (
$(tallyd_plugins)
    );
  }
);
EOF
}

# Starts tallyd from WORK/NAME.conf; sets TALLYD_PORT, TALLYD_PID,
# TALLYD_CONF, TALLYD_LOG and TALLYD_CTL (its control socket).
start_tallyd() {
	local name=$1
	case "$TALLYD_CHAIN" in full | action) ;; *) die "TALLYD_CHAIN must be full or action" ;; esac
	case "$TALLYD_PRELOAD" in 0 | 1) ;; *) die "TALLYD_PRELOAD must be 0 or 1" ;; esac
	pick_port TALLYD_PORT
	TALLYD_CONF=$WORK/$name.conf TALLYD_LOG=$WORK/$name.log TALLYD_CTL=$WORK/$name.ctl
	write_tallyd_config "$TALLYD_CONF" "$TALLYD_PORT" "$TALLYD_CTL"
	if ! "$TALLYD" -t -c "$TALLYD_CONF" >"$WORK/$name-check.log" 2>&1; then
		cat "$WORK/$name-check.log" >&2
		if [ "$TALLYD_CHAIN" = full ]; then
			say "this tallyd does not take the how-to's chain yet; TALLYD_CHAIN=action measures the Action module alone"
		fi
		die "tallyd refused $TALLYD_CONF"
	fi
	say "starting tallyd on port $TALLYD_PORT ($TALLYD_WORKERS workers, chain: $TALLYD_CHAIN, user configs: $(user_configs_used))"
	start_server "$TALLYD_LOG" "$TALLYD" -f -c "$TALLYD_CONF"
	TALLYD_PID=$STARTED_PID
	wait_for_port "$TALLYD_PORT" "$TALLYD_PID" "$TALLYD_LOG"
}

# How SqlUserConfig finds a client's config, as the Markdown says it.
user_configs_used() {
	if [ "$TALLYD_PRELOAD" = 1 ]; then
		echo "preload_query"
	else
		echo "sql_query per client"
	fi
}

# tallyctl against the tallyd started last.
ctl() { "$TALLYCTL" -s "$TALLYD_CTL" "$@"; }

# A number from tallyctl stats: the last word of the line that starts with
# $1 ("waits", "answers dunno").
tallyd_stat() {
	ctl stats | awk -v name="$1 " 'index($0, name) == 1 { print $NF }'
}

# tallyctl flush, again every second until it succeeds or $1 seconds have
# passed; prints the attempts it took (none: it never succeeded).
tallyd_flush_within() {
	local deadline=$((SECONDS + $1)) tries=0
	while :; do
		tries=$((tries + 1))
		if ctl flush >/dev/null 2>&1; then
			echo "$tries"
			return 0
		fi
		[ "$SECONDS" -lt "$deadline" ] || return 1
		pause 1
	done
}

# Resident set size of process $1, in KiB.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# ----------------------------------------------------------- chain check

# Proves a server runs the whole chain against the database: the check key
# has a quota of 2 in relay_policies (SqlUserConfig must find it, or the
# default 1000 applies), so four messages give dunno, dunno, defer, defer
# (Quota), and the database ends up counting 2 (Accounting; tallyd writes
# behind, so its count is awaited).
check_chain() {
	local name=$1 port=$2 db=$3 out count i
	out=$("$BENCH" -p "$port" -c 1 -n 4 -k 1 --key-offset "$CHECK_KEY_NUMBER" --csv | tail -n 1)
	case "$out" in
	*,dunno:2\;defer:2) ;;
	*) die "$name did not answer dunno, dunno, defer, defer to the chain check: $out" ;;
	esac
	for i in $(seq 50); do
		count=$(sql -N "$db" -e "SELECT SUM(\`count\`) FROM acct_client_address WHERE \`key\`='$CHECK_KEY'" 2>/dev/null || true)
		[ "$count" = 2 ] && break
		sleep 0.1
	done
	[ "$count" = 2 ] || die "$name: acct_client_address counts '$count' for $CHECK_KEY, expected 2"
	say "$name runs the chain: SqlUserConfig, Quota and Accounting checked"
}

# ------------------------------------------------------------ measuring

# tallyd-bench runs in the background and the script waits for it: a
# signal interrupts `wait` at once (not a foreground command), and the
# clean-up stops it too.  bench_start FILE ARGS... writes its CSV (a header
# and a data line) to FILE and sets BENCH_STARTED; bench_wait PID says
# whether it measured anything.
bench_start() {
	local out=$1
	shift
	"$BENCH" "$@" --csv >"$out" 2>>"$WORK/bench-errors.log" &
	BENCH_STARTED=$!
	CLIENT_PIDS+=("$BENCH_STARTED")
}

bench_wait() {
	local status=0
	wait "$1" || status=$?
	forget_pid CLIENT_PIDS "$1"
	return "$status"
}

# One point, into FILE: bench_point FILE ARGS...; fails when nothing was answered.
bench_point() {
	local out=$1
	shift
	bench_start "$out" "$@"
	bench_wait "$BENCH_STARTED"
}

# Column $2 (by its name in the header: rps, p99_ms, max_ms...) of the data
# line of tallyd-bench CSV file $1.
csv_field() {
	awk -F, -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
		col { value = $col } END { print value }' "$1"
}

# The count of answers whose action is $2 in tallyd-bench CSV file $1.
csv_actions() {
	csv_field "$1" actions | tr ';' '\n' | awk -F: -v a="$2" '$1 == a { n = $2 } END { print n + 0 }'
}

# ---------------------------------------------------------------- report

# $1 / $2 with two decimals, or – when $2 is zero or missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "–"; else printf "%.2f\n", a / b }'; }

# yes when the ratio $1 is at most $2 (ge: at least), no otherwise.
meets() {
	awk -v r="$1" -v t="$2" -v op="${3:-le}" 'BEGIN {
		if (r == "–") print "–"; else if (op == "le" ? r <= t : r >= t) print "yes"; else print "no" }'
}

# A row of the targets table: add_target TARGET VALUE MET, into the file
# BENCH_TARGETS names (bench/run's), when there is one.
add_target() {
	if [ -n "${BENCH_TARGETS:-}" ]; then
		printf '| %s | %s | %s |\n' "$1" "$2" "$3" >>"$BENCH_TARGETS"
	fi
}

cpu_model() { lscpu | sed -n 's/^Model name: *//p' | head -n 1; }

tallyd_version() { git -C "$TOP" describe --always --dirty 2>/dev/null || echo unknown; }

# One line that says when, on what and how busy: for the scripts'
# sections, which can be run alone.
measured_on() {
	echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) CPUs ($(cpu_model)), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; tallyd $(tallyd_version), $TALLYD_WORKERS workers."
}
