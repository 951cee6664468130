# tests/lib/galera.sh: a throwaway 3-node MariaDB Galera cluster on this
# machine, for tests.
#
#   . tests/lib/galera.sh
#   galera_start DIR        # three nodes in DIR/node1..3 on free ports, synced;
#                           # writes DIR/env (GALERA_PORT_n, GALERA_SOCKET_n)
#   galera_sql DIR N SQL... # runs SQL as root on node N over its socket
#   galera_wait_synced DIR  # until every running node is Synced in one
#                           # primary component of the running nodes' size
#   galera_kill DIR N       # kill -9 of node N
#   galera_restart DIR N    # starts node N again: --wsrep-recover finds its
#                           # position, then it rejoins by IST (no SST)
#   galera_stop DIR         # stops every node and removes DIR
#
# Every function takes the directory, so separate shells (a test's
# subprocesses) can drive one cluster.  Node 1 is bootstrapped
# (--wsrep-new-cluster) and gets the database `tallyd` and the user
# tallyd/tallyd; nodes 2 and 3 start empty and receive its state by rsync
# SST; a node restarted after kill -9 catches up by IST from a donor's
# gcache.  Needs galera-4, rsync and wsrep_sst_rsync (Debian's
# mariadb-server package); galera_available says whether they are here.
# Started as root; the nodes run as user mysql (rsync SST runs its daemon
# unprivileged), so DIR must be reachable by mysql.

GALERA_PROVIDER=${GALERA_PROVIDER:-/usr/lib/galera/libgalera_smm.so}

galera_available() {
	[ -f "$GALERA_PROVIDER" ] && command -v mariadbd >/dev/null 2>&1 &&
		command -v wsrep_sst_rsync >/dev/null 2>&1 && command -v rsync >/dev/null 2>&1 &&
		id mysql >/dev/null 2>&1
}

galera_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

galera_sql() {
	local dir=$1 n=$2
	shift 2
	mariadb --no-defaults -S "$dir/node$n/sock" -u root "$@"
}

# galera_mariadbd DIR N [extra mariadbd arguments]: runs mariadbd for
# node N in the foreground, in place of the shell (galera_launch puts it in the
# background).
galera_mariadbd() {
	local dir=$1 n=$2
	shift 2
	local node=$dir/node$n
	local cluster
	cluster=$(cat "$dir/cluster")
	exec mariadbd --no-defaults --datadir="$node/data" --socket="$node/sock" \
		--port="$(cat "$node/port")" --bind-address=127.0.0.1 --user=mysql \
		--pid-file="$node/pid" --skip-log-bin --skip-name-resolve \
		--log-error="$node/error.log" --tmpdir="$node" \
		--innodb-buffer-pool-size=64M --innodb-log-file-size=32M \
		--innodb-flush-log-at-trx-commit=2 --max-connections=200 \
		--binlog-format=ROW --default-storage-engine=InnoDB --innodb-autoinc-lock-mode=2 \
		--wsrep-on=ON --wsrep-provider="$GALERA_PROVIDER" \
		--wsrep-cluster-name=tallyd-test --wsrep-cluster-address="gcomm://$cluster" \
		--wsrep-node-name="node$n" --wsrep-node-address="127.0.0.1:$(cat "$node/gcomm")" \
		--wsrep-provider-options="gmcast.listen_addr=tcp://127.0.0.1:$(cat "$node/gcomm");ist.recv_addr=127.0.0.1:$(cat "$node/ist");gcache.size=64M" \
		--wsrep-sst-receive-address="127.0.0.1:$(cat "$node/sst")" --wsrep-sst-method=rsync \
		"$@" >>"$node/out" 2>&1
}

galera_launch() {
	local dir=$1 n=$2
	shift 2
	(galera_mariadbd "$dir" "$n" "$@") &
	echo $! >"$dir/node$n/launched"
	# not a job of the caller's shell (tests/run-all): a node killed by a
	# test is no "Killed" line in its output
	disown $! 2>/dev/null || true
}

# galera_wait_answers DIR N: until node N answers SQL (60 s).
galera_wait_answers() {
	local dir=$1 n=$2 i
	for i in $(seq 1 600); do
		galera_sql "$dir" "$n" -e 'SELECT 1' >/dev/null 2>&1 && return 0
		kill -0 "$(cat "$dir/node$n/launched")" 2>/dev/null || break
		sleep 0.1
	done
	echo "Galera node $n did not start; its log:" >&2
	tail -n 40 "$dir/node$n/error.log" >&2
	return 1
}

galera_node_state() {   # DIR N -> "Synced 3" (state, cluster size)
	galera_sql "$1" "$2" -N -B -e "SELECT MAX(IF(VARIABLE_NAME='WSREP_LOCAL_STATE_COMMENT', VARIABLE_VALUE, NULL)), MAX(IF(VARIABLE_NAME='WSREP_CLUSTER_SIZE', VARIABLE_VALUE, NULL)) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ('WSREP_LOCAL_STATE_COMMENT','WSREP_CLUSTER_SIZE')" 2>/dev/null | tr '\t' ' '
}

galera_running() {      # DIR -> the numbers of the nodes whose process runs
	local dir=$1 n
	for n in 1 2 3; do
		[ -f "$dir/node$n/launched" ] && kill -0 "$(cat "$dir/node$n/launched")" 2>/dev/null &&
			printf '%s ' "$n"
	done
}

galera_wait_synced() {
	local dir=$1 i n nodes size ok
	for i in $(seq 1 300); do
		nodes=$(galera_running "$dir")
		size=$(echo $nodes | wc -w)
		ok=1
		for n in $nodes; do
			[ "$(galera_node_state "$dir" "$n")" = "Synced $size" ] || ok=0
		done
		[ "$ok" = 1 ] && [ "$size" -gt 0 ] && return 0
		sleep 0.1
	done
	echo "Galera nodes ($nodes) did not sync; states:" >&2
	for n in $nodes; do
		echo "node $n: $(galera_node_state "$dir" "$n")" >&2
		tail -n 20 "$dir/node$n/error.log" >&2
	done
	return 1
}

galera_stop_node() {
	local dir=$1 n=$2 pid i
	[ -f "$dir/node$n/launched" ] || return 0
	pid=$(cat "$dir/node$n/launched")
	kill "$pid" 2>/dev/null || true
	for i in $(seq 1 600); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$dir/node$n/launched"
}

galera_start() {
	local dir=$1 n
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	local cluster=""
	for n in 1 2 3; do
		mkdir -p "$dir/node$n"
		galera_free_port >"$dir/node$n/port"
		galera_free_port >"$dir/node$n/gcomm"
		galera_free_port >"$dir/node$n/ist"
		galera_free_port >"$dir/node$n/sst"
		cluster="$cluster${cluster:+,}127.0.0.1:$(cat "$dir/node$n/gcomm")"
	done
	echo "$cluster" >"$dir/cluster"
	# rsync SST runs its daemon unprivileged: the nodes run as mysql
	chmod 755 "$dir"
	chown -R mysql:mysql "$dir"
	mariadb-install-db --no-defaults --datadir="$dir/node1/data" --user=mysql \
		--auth-root-authentication-method=socket >"$dir/install.log" 2>&1 || {
		cat "$dir/install.log" >&2
		return 1
	}
	galera_launch "$dir" 1 --wsrep-new-cluster
	galera_wait_answers "$dir" 1 || return 1
	galera_sql "$dir" 1 -e "CREATE DATABASE tallyd;
		CREATE USER 'tallyd'@'127.0.0.1' IDENTIFIED BY 'tallyd';
		CREATE USER 'tallyd'@'localhost' IDENTIFIED BY 'tallyd';
		GRANT ALL ON *.* TO 'tallyd'@'127.0.0.1';
		GRANT ALL ON *.* TO 'tallyd'@'localhost';" || return 1
	# nodes 2 and 3 start empty and get node 1's state by rsync SST
	for n in 2 3; do
		install -d -o mysql -g mysql "$dir/node$n/data"
		galera_launch "$dir" "$n"
		galera_wait_answers "$dir" "$n" || return 1
	done
	galera_wait_synced "$dir" || return 1
	{
		for n in 1 2 3; do
			echo "GALERA_PORT_$n=$(cat "$dir/node$n/port")"
			echo "GALERA_SOCKET_$n=$dir/node$n/sock"
		done
	} >"$dir/env"
}

galera_kill() {
	local dir=$1 n=$2 pid
	pid=$(cat "$dir/node$n/launched")
	kill -9 "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	rm -f "$dir/node$n/launched"
}

galera_restart() {
	local dir=$1 n=$2 position
	rm -f "$dir/node$n/recover.log"
	# after kill -9 grastate.dat says seqno -1: InnoDB knows the position
	(galera_mariadbd "$dir" "$n" --wsrep-recover --log-error="$dir/node$n/recover.log") || true
	position=$(sed -n 's/.*WSREP: Recovered position: *\([^ ]*\).*/\1/p' \
		"$dir/node$n/recover.log" | tail -n 1)
	if [ -z "$position" ]; then
		echo "node $n: --wsrep-recover found no position:" >&2
		cat "$dir/node$n/recover.log" >&2
		return 1
	fi
	galera_launch "$dir" "$n" --wsrep-start-position="$position"
	galera_wait_answers "$dir" "$n" || return 1
	galera_wait_synced "$dir"
}

galera_stop() {
	local dir=$1 n
	[ -d "$dir" ] || return 0
	for n in 3 2 1; do
		galera_stop_node "$dir" "$n"
	done
	rm -rf "$dir"
}
