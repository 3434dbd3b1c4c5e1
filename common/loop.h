/*
 * portico — the daemon loop, one for every daemon.
 *
 * Sources register with the loop rather than being indexed in a poll array
 * by position (Redis's aeCreateFileEvent, relayd's event_set): a file
 * descriptor or a ZeroMQ socket with a callback, a timer (one-shot or
 * periodic, in ms), or a "source" whose poll items change from one turn to
 * the next (curl's sockets, a bus consumer that makes its SINCE socket
 * anew).  Each turn polls with the timeout of the nearest timer, calls what
 * is ready, fires the timers that are due, then the after-turn hooks, and
 * beats health_beat().  The signalfd is one of the registered descriptors:
 * SIGTERM and SIGINT end loop_run(), SIGHUP goes through daemon_signal(),
 * and other signals (SIGCHLD) to whoever asked with loop_signal().
 *
 * One loop per process, on one thread: nothing here locks but the
 * counters' snapshot, which another thread (the HTTP server) may read
 * through loop_counters().
 */
#ifndef PORTICO_LOOP_H
#define PORTICO_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

struct daemon;
struct loop_io;
struct loop_timer;

/* revents: ZMQ_POLLIN / ZMQ_POLLOUT / ZMQ_POLLERR, as zmq_poll gives them */
typedef void	(*loop_io_fn)(void *arg, int revents);
typedef void	(*loop_fn)(void *arg);

/*
 * A source with poll items of its own making: pollitems fills at most max
 * items and returns how many; dispatch gets them back after every poll,
 * ready or not (the source looks at revents); timeout, optional, is the
 * ms until it wants dispatch called anyway (-1: no wish).
 */
struct loop_source {
	int	(*pollitems)(void *arg, zmq_pollitem_t *, int max);
	void	(*dispatch)(void *arg, const zmq_pollitem_t *, int n);
	long	(*timeout)(void *arg);
};
#define LOOP_SOURCE_ITEMS	4096	/* the most items one source gets */

/*
 * Set up the loop for d: its signalfd is registered.  daemon_start()
 * calls it; a unit test may pass NULL (no signals).
 */
void	loop_init(struct daemon *d);
/* Free everything registered (at exit, after loop_run returned). */
void	loop_free(void);

struct loop_io *loop_fd(int fd, int events, loop_io_fn, void *arg);
struct loop_io *loop_socket(void *zsock, int events, loop_io_fn, void *arg);
void	loop_io_events(struct loop_io *, int events);
void	loop_io_del(struct loop_io *);
void	loop_source(const struct loop_source *, void *arg);

/*
 * A timer firing ms from now, then every ms if periodic, until deleted.
 * A one-shot timer that fired stays, disarmed, until loop_timer_set()
 * arms it again or loop_timer_del() frees it; either is safe from its own
 * callback.
 */
struct loop_timer *loop_timer(uint64_t ms, int periodic, loop_fn, void *arg);
void	loop_timer_set(struct loop_timer *, uint64_t ms);
void	loop_timer_stop(struct loop_timer *);
void	loop_timer_del(struct loop_timer *);
int	loop_timer_armed(const struct loop_timer *);

/* Called after every turn (renderd renders a dirty table there). */
void	loop_after(loop_fn, void *arg);
/* Called when sig arrives on the signalfd (SIGCHLD for applyd). */
void	loop_signal(int sig, loop_fn, void *arg);

/*
 * A named counter the daemon keeps: the control socket's "counters" and
 * "status" answer with them, and loop_counters() hands them to whoever
 * exports them (the metrics module).  The name is kept, not copied.
 */
void	loop_counter(const char *name, const unsigned long *value);

/*
 * The hook for the metrics module: fn is called with each counter's name
 * and its value as of the end of the last turn.  Safe from any thread.
 * Returns the number of counters.
 */
size_t	loop_counters(void (*fn)(const char *name, unsigned long value,
	    void *arg), void *arg);

/* Turn until SIGTERM, SIGINT or loop_stop(); returns the signal, or 0. */
int	loop_run(void);
void	loop_stop(void);
/* One turn, waiting at most max_ms (tests). */
void	loop_once(long max_ms);

/* ms since the loop started (the control socket's uptime). */
uint64_t loop_uptime_ms(void);

#endif
