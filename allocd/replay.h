/*
 * allocd — replay of a recorded log (allocd -R STORE).
 */
#ifndef ALLOCD_REPLAY_H
#define ALLOCD_REPLAY_H

#include "config.h"

/* 0 identical, 1 different (printed), 2 the log cannot be replayed. */
int	replay_run(const struct config *, const char *store_dir);

#endif
