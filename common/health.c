/*
 * portico — a daemon's health, behind one mutex: the loop writes, the
 * control socket and the HTTP thread read.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "event.h"
#include "health.h"

static pthread_mutex_t	 mtx = PTHREAD_MUTEX_INITIALIZER;
static int		 ready;
static char		 waiting[128] = "starting";
static uint64_t		 pos_seq, pos_gen;
static char		 lasterr[256];
static uint64_t		 lasterr_ms;
static uint64_t		 beat_ms;

void
health_set_ready(int r, const char *w)
{
	pthread_mutex_lock(&mtx);
	ready = r;
	snprintf(waiting, sizeof(waiting), "%s", r || w == NULL ? "" : w);
	pthread_mutex_unlock(&mtx);
}

int
health_ready(char *buf, size_t len)
{
	int r;

	pthread_mutex_lock(&mtx);
	r = ready;
	if (buf != NULL && len > 0)
		snprintf(buf, len, "%s", waiting);
	pthread_mutex_unlock(&mtx);
	return r;
}

void
health_set_position(uint64_t seq, uint64_t gen)
{
	pthread_mutex_lock(&mtx);
	pos_seq = seq;
	pos_gen = gen;
	pthread_mutex_unlock(&mtx);
}

void
health_position(uint64_t *seq, uint64_t *gen)
{
	pthread_mutex_lock(&mtx);
	if (seq != NULL)
		*seq = pos_seq;
	if (gen != NULL)
		*gen = pos_gen;
	pthread_mutex_unlock(&mtx);
}

void
health_set_error(const char *msg)
{
	pthread_mutex_lock(&mtx);
	snprintf(lasterr, sizeof(lasterr), "%s", msg);
	lasterr_ms = now_ms();
	pthread_mutex_unlock(&mtx);
}

uint64_t
health_error(char *buf, size_t len)
{
	uint64_t t;

	pthread_mutex_lock(&mtx);
	t = lasterr_ms;
	if (buf != NULL && len > 0)
		snprintf(buf, len, "%s", lasterr);
	pthread_mutex_unlock(&mtx);
	return t;
}

void
health_beat(void)
{
	uint64_t t = now_ms();

	pthread_mutex_lock(&mtx);
	beat_ms = t;
	pthread_mutex_unlock(&mtx);
}

int
health_alive(uint64_t stall_ms)
{
	uint64_t t = now_ms(), b;

	pthread_mutex_lock(&mtx);
	b = beat_ms;
	pthread_mutex_unlock(&mtx);
	return b != 0 && t - b <= stall_ms;
}
