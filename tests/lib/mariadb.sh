# tests/lib/mariadb.sh: a throwaway MariaDB server for tests and benchmarks.
#
#   . tests/lib/mariadb.sh
#   mariadb_start DIR      # starts mariadbd in DIR on a free port; sets
#                          # MARIADB_PORT, MARIADB_SOCKET, MARIADB_PIDFILE
#   mariadb_sql SQL...     # runs SQL as root over the socket
#   mariadb_stop           # stops it and waits until it has exited
#
# Nothing is installed system-wide and no init system is needed (see
# ENVIRONMENT.md).  The database `tallyd` and the user tallyd/tallyd
# (@127.0.0.1 and @localhost) are created.  MARIADB_BUFFER_POOL sizes InnoDB's
# buffer pool (default 128M; the benchmarks use more).  Needs
# mariadb-server-core.

mariadb_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mariadb_sql() {
	mariadb --no-defaults -S "$MARIADB_SOCKET" -u root "$@"
}

mariadb_start() {
	local dir=$1
	mkdir -p "$dir"
	MARIADB_DIR=$dir
	MARIADB_SOCKET=$dir/sock
	MARIADB_PIDFILE=$dir/pid
	MARIADB_PORT=$(mariadb_free_port)
	mariadb-install-db --no-defaults --datadir="$dir/data" --user=root \
		--auth-root-authentication-method=socket >"$dir/install.log" 2>&1 || {
		cat "$dir/install.log" >&2
		return 1
	}
	mariadbd --no-defaults --datadir="$dir/data" --socket="$MARIADB_SOCKET" \
		--port="$MARIADB_PORT" --bind-address=127.0.0.1 --user=root \
		--pid-file="$MARIADB_PIDFILE" --skip-log-bin --skip-name-resolve \
		--innodb-buffer-pool-size="${MARIADB_BUFFER_POOL:-128M}" --innodb-log-file-size=256M \
		--max-connections=500 --log-error="$dir/err" --tmpdir="$dir" \
		>/dev/null 2>&1 &
	local i
	for i in $(seq 1 300); do
		mariadb_sql -e 'SELECT 1' >/dev/null 2>&1 && break
		sleep 0.1
	done
	mariadb_sql -e 'SELECT 1' >/dev/null 2>&1 || {
		echo "MariaDB did not start; its log:" >&2
		cat "$dir/err" >&2
		return 1
	}
	mariadb_sql -e "CREATE DATABASE tallyd;
		CREATE USER 'tallyd'@'127.0.0.1' IDENTIFIED BY 'tallyd';
		CREATE USER 'tallyd'@'localhost' IDENTIFIED BY 'tallyd';
		GRANT ALL ON *.* TO 'tallyd'@'127.0.0.1';
		GRANT ALL ON *.* TO 'tallyd'@'localhost';"
	export MARIADB_PORT MARIADB_SOCKET MARIADB_PIDFILE MARIADB_DIR
}

mariadb_stop() {
	[ -n "${MARIADB_PIDFILE:-}" ] && [ -f "$MARIADB_PIDFILE" ] || return 0
	local pid i
	pid=$(cat "$MARIADB_PIDFILE")
	kill "$pid" 2>/dev/null || true
	for i in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	rm -rf "$MARIADB_DIR"
	MARIADB_PIDFILE=
}
