/*
 * portico — what a daemon says of its own health: ready or not (and what it
 * waits for), its position on the bus, and its last error.  Written by the
 * daemon's loop, read by its control socket and its HTTP endpoints
 * (/healthz, /readyz), which may run on a thread of their own: every call
 * here is safe from any thread.
 */
#ifndef PORTICO_HEALTH_H
#define PORTICO_HEALTH_H

#include <stddef.h>
#include <stdint.h>

/* Ready, or not with what it waits for ("catching up with allocd"). */
void	health_set_ready(int ready, const char *waiting);
/* 1 if ready; else 0 and, when buf is given, what it waits for. */
int	health_ready(char *buf, size_t len);

/* The seq applied and the generation made or served (0: none). */
void	health_set_position(uint64_t seq, uint64_t gen);
void	health_position(uint64_t *seq, uint64_t *gen);

/* The last error, already fit for a log line; its time in ms, 0 if none. */
void	health_set_error(const char *msg);
uint64_t health_error(char *buf, size_t len);

/* The loop went round: /healthz fails when it has not for stall_ms. */
void	health_beat(void);
int	health_alive(uint64_t stall_ms);

#endif
