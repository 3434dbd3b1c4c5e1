/*
 * watcherd — HTTP through one libcurl multi handle, driven by our poll loop
 * (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION): every request of every cluster
 * shares one loop, with no threads.
 */
#ifndef WATCHERD_HTTP_H
#define WATCHERD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <zmq.h>

#define HTTP_MAX_BODY	(64u << 20)

struct http_req;

/* The request is over: code is the HTTP status, or 0 with err set. */
typedef void (*http_done_fn)(struct http_req *, long code, const char *body,
    size_t len, const char *err);
/* Streamed bytes (watches); -1 aborts the request. */
typedef int (*http_data_fn)(struct http_req *, const char *, size_t);

/* How to reach and authenticate to a server.  NULL fields are unused. */
struct http_auth {
	const char	*ca_pem;	/* PEM bytes */
	const char	*ca_file;
	const char	*cert_pem;	/* client certificate and key, PEM */
	const char	*key_pem;
	const char	*bearer;	/* never logged */
	const char	*basic_user;
	const char	*basic_pass;	/* never logged */
	const char	*connect_to;	/* "host:port:ip:port" */
};

struct http_req {
	CURL			*easy;
	struct curl_slist	*hdrs;
	struct curl_slist	*connect_to;
	char			*body;
	size_t			 len;
	size_t			 cap;
	char			*post;
	http_done_fn		 done;
	http_data_fn		 data;	/* NULL: buffer the body */
	void			*arg;
	long			 code;
	int			 too_big;	/* body over HTTP_MAX_BODY */
	uint64_t		 last_byte;	/* ms */
	char			 errbuf[CURL_ERROR_SIZE];
};

void	http_init(void);
/*
 * Start a request.  method is GET, POST or PATCH; body and ctype may be
 * NULL.  timeout_ms 0 means none (watches: staleness is detected by the
 * caller's own idle timer on last_byte).
 */
struct http_req *http_start(const char *method, const char *url,
	    const struct http_auth *, const char *ctype, const char *body,
	    long timeout_ms, http_done_fn, http_data_fn, void *arg);
/* Stop a request without calling its done function. */
void	http_cancel(struct http_req *);

int	http_pollitems(zmq_pollitem_t *, int max);
void	http_dispatch(const zmq_pollitem_t *, int n);
long	http_timeout(void);	/* ms until curl wants a call, -1 none */
void	http_timer(void);

/* Percent-encode s into buf for a query value; -1 if it does not fit. */
int	http_escape(char *buf, size_t len, const char *s);

#endif
