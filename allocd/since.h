/*
 * allocd — SINCE <seq> answered from the log or with the whole state, in
 * slices between batches (since.c).
 */
#ifndef ALLOCD_SINCE_H
#define ALLOCD_SINCE_H

#include <zmq.h>

#include "alloc.h"
#include "store.h"

/* Answers go out on sock (the SINCE ROUTER), read from store. */
void	since_init(struct store *, struct alloc *, void *sock);
/* Queue the answer to id's SINCE seq; one asked again replaces it. */
void	since_answer(zmq_msg_t *id, uint64_t seq);
/* Is an answer under way?  Then since_some() sends its next slice. */
int	since_busy(void);
void	since_some(void);
/*
 * The map is about to grow, which no open transaction may see: a state
 * still being read is given up (its consumer asks again).
 */
void	since_unread(void);
void	since_close(void);

#endif
