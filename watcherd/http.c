/*
 * watcherd — HTTP on libcurl's multi socket interface.
 */
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "http.h"
#include "log.h"

#define MAX_FDS		4096

struct watched {
	curl_socket_t	fd;
	short		events;
};

static CURLM		*multi;
static struct watched	 fds[MAX_FDS];
static int		 nfds;
static uint64_t		 timer_at;	/* 0: none */

static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *u, void *sp)
{
	int i;

	(void)easy;
	(void)u;
	(void)sp;
	for (i = 0; i < nfds; i++)
		if (fds[i].fd == fd)
			break;
	if (what == CURL_POLL_REMOVE) {
		if (i < nfds)
			fds[i] = fds[--nfds];
		return 0;
	}
	if (i == nfds) {
		if (nfds == MAX_FDS) {
			log_warnx("http: too many sockets");
			return -1;
		}
		nfds++;
	}
	fds[i].fd = fd;
	fds[i].events = (short)(((what & CURL_POLL_IN) ? ZMQ_POLLIN : 0) |
	    ((what & CURL_POLL_OUT) ? ZMQ_POLLOUT : 0));
	return 0;
}

static int
on_timer(CURLM *m, long ms, void *u)
{
	(void)m;
	(void)u;
	timer_at = ms < 0 ? 0 : now_ms() + (uint64_t)ms;
	return 0;
}

void
http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 ||
	    (multi = curl_multi_init()) == NULL)
		fatalx("http: cannot initialise libcurl");
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
}

static size_t
on_write(char *ptr, size_t size, size_t n, void *u)
{
	struct http_req *r = u;
	size_t len = size * n, cap;
	char *b;

	r->last_byte = now_ms();
	if (r->data != NULL) {
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->code);
		/* a stream that failed is read whole, as an error body */
		if (r->code == 200)
			return r->data(r, ptr, len) == -1 ? 0 : len;
	}
	if (r->len + len > HTTP_MAX_BODY) {
		r->too_big = 1;
		return 0;
	}
	if (r->len + len + 1 > r->cap) {
		cap = r->cap ? r->cap : 16384;
		while (cap < r->len + len + 1)
			cap *= 2;
		if ((b = realloc(r->body, cap)) == NULL)
			return 0;
		r->body = b;
		r->cap = cap;
	}
	memcpy(r->body + r->len, ptr, len);
	r->len += len;
	r->body[r->len] = '\0';
	return len;
}

static void
http_free(struct http_req *r)
{
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	curl_slist_free_all(r->connect_to);
	free(r->body);
	if (r->post != NULL)	/* a token request's form holds a password */
		explicit_bzero(r->post, strlen(r->post));
	free(r->post);
	free(r);
}

static int
blob(CURL *e, CURLoption opt, const char *pem)
{
	struct curl_blob b = { (void *)pem, strlen(pem), CURL_BLOB_COPY };

	return curl_easy_setopt(e, opt, &b) == CURLE_OK ? 0 : -1;
}

struct http_req *
http_start(const char *method, const char *url, const struct http_auth *a,
    const char *ctype, const char *body, long timeout_ms, http_done_fn done,
    http_data_fn data, void *arg)
{
	struct http_req *r;
	char hdr[128];
	CURL *e;

	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->easy = e = curl_easy_init()) == NULL)
		fatal("http_start");
	r->done = done;
	r->data = data;
	r->arg = arg;
	r->last_byte = now_ms();
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 10L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (timeout_ms > 0)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	r->hdrs = curl_slist_append(r->hdrs, "Accept: application/json");
	if (ctype != NULL) {
		snprintf(hdr, sizeof(hdr), "Content-Type: %s", ctype);
		r->hdrs = curl_slist_append(r->hdrs, hdr);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
		if ((r->post = strdup(body ? body : "")) == NULL)
			fatal("http_start");
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->post);
	}
	if (a != NULL) {
		if ((a->ca_pem && blob(e, CURLOPT_CAINFO_BLOB, a->ca_pem)) ||
		    (a->cert_pem && blob(e, CURLOPT_SSLCERT_BLOB,
		    a->cert_pem)) ||
		    (a->key_pem && blob(e, CURLOPT_SSLKEY_BLOB, a->key_pem)))
			log_warnx("http: cannot set TLS material");
		if (a->ca_file != NULL && *a->ca_file != '\0')
			curl_easy_setopt(e, CURLOPT_CAINFO, a->ca_file);
		/* a CA configured is the only one: no default bundle or CApath */
		if (a->ca_pem != NULL || (a->ca_file != NULL && *a->ca_file)) {
			if (a->ca_pem != NULL)
				curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
			curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
		}
		if (a->bearer != NULL) {
			curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
			curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, a->bearer);
		} else if (a->basic_user != NULL) {
			curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
			curl_easy_setopt(e, CURLOPT_USERNAME, a->basic_user);
			curl_easy_setopt(e, CURLOPT_PASSWORD,
			    a->basic_pass ? a->basic_pass : "");
		}
		if (a->connect_to != NULL) {
			r->connect_to = curl_slist_append(NULL, a->connect_to);
			curl_easy_setopt(e, CURLOPT_CONNECT_TO, r->connect_to);
		}
	}
	if (curl_multi_add_handle(multi, e) != CURLM_OK)
		fatalx("http: curl_multi_add_handle");
	return r;
}

void
http_cancel(struct http_req *r)
{
	if (r == NULL)
		return;
	curl_multi_remove_handle(multi, r->easy);
	http_free(r);
}

int
http_pollitems(zmq_pollitem_t *items, int max)
{
	int i;

	for (i = 0; i < nfds && i < max; i++)
		items[i] = (zmq_pollitem_t){ NULL, fds[i].fd, fds[i].events,
		    0 };
	return i;
}

long
http_timeout(void)
{
	uint64_t now = now_ms();

	if (timer_at == 0)
		return -1;
	return timer_at <= now ? 0 : (long)(timer_at - now);
}

static void
finish(void)
{
	struct http_req *r;
	CURLMsg *msg;
	int left;
	long code = 0;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &r);
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
		curl_multi_remove_handle(multi, r->easy);
		if (msg->data.result != CURLE_OK) {
			if (r->too_big)
				snprintf(r->errbuf, sizeof(r->errbuf),
				    "answer over %u MiB", HTTP_MAX_BODY >> 20);
			else if (r->errbuf[0] == '\0')
				snprintf(r->errbuf, sizeof(r->errbuf), "%s",
				    curl_easy_strerror(msg->data.result));
			r->done(r, 0, r->body, r->len, r->errbuf);
		} else
			r->done(r, code, r->body ? r->body : "", r->len,
			    NULL);
		http_free(r);
	}
}

void
http_dispatch(const zmq_pollitem_t *items, int n)
{
	int i, running, ev;

	for (i = 0; i < n; i++) {
		if (items[i].revents == 0)
			continue;
		ev = ((items[i].revents & ZMQ_POLLIN) ? CURL_CSELECT_IN : 0) |
		    ((items[i].revents & ZMQ_POLLOUT) ? CURL_CSELECT_OUT : 0) |
		    ((items[i].revents & ZMQ_POLLERR) ? CURL_CSELECT_ERR : 0);
		curl_multi_socket_action(multi, items[i].fd, ev, &running);
	}
	finish();
}

void
http_timer(void)
{
	int running;

	if (timer_at != 0 && timer_at <= now_ms()) {
		timer_at = 0;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0,
		    &running);
		finish();
	}
}

int
http_escape(char *buf, size_t len, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (o + 4 > len)
			return -1;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		    c == '.' || c == '~')
			buf[o++] = (char)c;
		else {
			buf[o++] = '%';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		}
	}
	buf[o] = '\0';
	return 0;
}
