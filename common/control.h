/*
 * portico — a daemon's control socket, <run_dir>/<name>.ctl.
 *
 * A unix stream socket, mode 0600 in the 0700 run folder, served by the
 * daemon's loop without ever blocking it: one request line in, one JSON
 * object out, then the connection is closed.
 *
 *	status		name, daemon, proxy, shard (watcherd's), version, pid,
 *			uptime, ready and what it waits for, position (seq,
 *			gen), last error, counters
 *	counters	the counters registered with loop_counter()
 *
 * A client is given CONTROL_LINE_MAX bytes for its request and
 * CONTROL_DEADLINE_MS to send it and read the answer; at most
 * CONTROL_CLIENTS are served at once, and one more is closed at accept.
 * A slow or hostile client costs the daemon one descriptor and a buffer,
 * never a wait.
 */
#ifndef PORTICO_CONTROL_H
#define PORTICO_CONTROL_H

struct daemon;

#define CONTROL_LINE_MAX	256
#define CONTROL_DEADLINE_MS	2000
#define CONTROL_CLIENTS		16

/*
 * Bind <run_dir>/<name>.ctl and serve it on the loop; name is the pid
 * file's (renderd-haproxy).  The socket is removed at exit.  -1 if it
 * cannot be made (the reason logged).
 */
int	control_open(struct daemon *, const char *name);

#endif
