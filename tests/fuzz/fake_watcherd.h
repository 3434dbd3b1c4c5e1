/*
 * tests/fuzz — what watcherd.c gives the rest of watcherd (its globals,
 * obs_send), for the harnesses that link watcherd without its main().
 */
#ifndef FUZZ_FAKE_WATCHERD_H
#define FUZZ_FAKE_WATCHERD_H

#include <stddef.h>

#include "event.h"

#define FAKE_OBS_MAX	512

/* The observations sent since the last fake_obs_clear(), decoded. */
extern struct event	fake_obs[FAKE_OBS_MAX];
extern size_t		fake_nobs;

/* libFuzzer's start: the configuration every harness starts from. */
int	LLVMFuzzerInitialize(int *, char ***);
void	fake_obs_clear(void);

/*
 * What allocd would decide on the ROUTE observations sent: a port for
 * each route with backends (live at once), the refusal for the others.
 */
void	fake_alloc_decide(void);

#endif
