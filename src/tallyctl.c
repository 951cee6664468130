/*
 * tallyctl.c: the admin client.  Sends one command to tallyd's control
 * socket and prints the answer:
 *
 *   tallyctl [-s SOCKET] stats | show FIELD KEY [TIME] | reset FIELD KEY [TIME]
 *                        | show rate:PLUGIN-or-FIELD KEY | reset rate:PLUGIN-or-FIELD KEY
 *                        | top FIELD [N] [METRIC] | forget FIELD KEY | flush | reload
 *
 * Exit status: 0 when tallyd answered "ok", 1 when it answered an error, 2
 * when it could not be reached or the command line is wrong.
 * Single-threaded.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/tallyd/control.sock"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: tallyctl [-s SOCKET] COMMAND [ARGS]\n"
		"  stats                   requests, answers, cache, flusher and database state\n"
		"  show FIELD KEY [TIME]   the four metrics of a key (flushed + pending)\n"
		"  reset FIELD KEY [TIME]  set a key's four metrics to zero\n"
		"  show rate:NAME KEY      a RateLimit key's windows: each one's load and limit\n"
		"  reset rate:NAME KEY     empty a RateLimit key's windows\n"
		"  top FIELD [N] [METRIC]  the N (10) keys of this period with the largest METRIC\n"
		"                          (count), from memory\n"
		"  forget FIELD KEY        read the key's SqlUserConfig config afresh\n"
		"  flush                   write pending increments now, and wait\n"
		"  reload                  re-read tallyd's configuration\n"
		"  -s SOCKET               tallyd's control_socket (default " DEFAULT_SOCKET ")\n"
		"FIELD is the request attribute (client_address) or the table (acct_client_address);\n"
		"TIME defaults to the current period.  NAME is the RateLimit plugin's name or its\n"
		"field.\n");
}

static int connect_to(const char *path)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (strlen(path) >= sizeof(un.sun_path)) {
		fprintf(stderr, "tallyctl: %s: path too long\n", path);
		exit(2);
	}
	strcpy(un.sun_path, path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&un, sizeof(un)) == 0)
		return fd;
	int err = errno;
	fprintf(stderr, "tallyctl: cannot connect to %s: %s\n", path, strerror(err));
	if (err == ENOENT || err == ECONNREFUSED)
		fprintf(stderr, "tallyctl: is tallyd running, and is its control_socket %s? "
			"(-s names another)\n", path);
	else if (err == EACCES)
		fprintf(stderr, "tallyctl: run as root or as a member of tallyd's group\n");
	exit(2);
}

/* One line, the arguments separated by tabs, so that a key with spaces
 * stays one argument. */
static void send_command(int fd, int argc, char **argv)
{
	char line[4096];
	size_t len = 0;

	for (int i = 0; i < argc; i++) {
		if (strpbrk(argv[i], "\t\n") != NULL) {
			fprintf(stderr, "tallyctl: argument %d holds a tab or a newline, which "
				"tallyd cannot take\n", i + 1);
			exit(2);
		}
		int n = snprintf(line + len, sizeof(line) - len, "%s%s", i ? "\t" : "", argv[i]);
		if (n < 0 || (size_t)n >= sizeof(line) - len - 1) {
			fprintf(stderr, "tallyctl: command too long\n");
			exit(2);
		}
		len += (size_t)n;
	}
	line[len++] = '\n';
	if (write(fd, line, len) != (ssize_t)len) {
		fprintf(stderr, "tallyctl: cannot send the command: %s\n", strerror(errno));
		exit(2);
	}
}

/* Prints the answer without its first line; returns the exit status. */
static int print_answer(int fd)
{
	FILE *in = fdopen(fd, "r");
	char line[8192];
	int status = 2;

	if (in == NULL || fgets(line, sizeof(line), in) == NULL) {
		fprintf(stderr, "tallyctl: tallyd closed the connection without an answer\n");
		return 2;
	}
	if (strcmp(line, "ok\n") == 0) {
		status = 0;
	} else if (strncmp(line, "usage: ", 7) == 0) {
		fprintf(stderr, "tallyctl: %s", line);       /* the command line is wrong */
		status = 2;
	} else {
		fprintf(stderr, "tallyctl: %s", strncmp(line, "error: ", 7) == 0 ? line + 7 : line);
		status = 1;
	}
	while (fgets(line, sizeof(line), in))
		fputs(line, status == 0 ? stdout : stderr);
	fclose(in);
	return status;
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_SOCKET;
	int ch;

	while ((ch = getopt(argc, argv, "+s:h")) != -1) {
		switch (ch) {
		case 's': path = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	int fd = connect_to(path);
	send_command(fd, argc - optind, argv + optind);
	shutdown(fd, SHUT_WR);
	return print_answer(fd);
}
