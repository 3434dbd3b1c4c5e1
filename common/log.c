/*
 * portico — logging.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "log.h"

static const char *log_name = "portico";
static int log_foreground = 1;
static int log_verbose;
static int log_format = LOG_TEXT;

void
log_init(const char *name, int foreground, int verbose)
{
	log_name = name;
	log_foreground = foreground;
	log_verbose = verbose;
	if (!foreground)
		openlog(name, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void
log_setverbose(int v)
{
	log_verbose = v;
}

int
log_getverbose(void)
{
	return log_verbose;
}

void
log_setformat(int f)
{
	log_format = f;
}

int
log_format_parse(const char *s)
{
	if (strcmp(s, "text") == 0)
		return LOG_TEXT;
	if (strcmp(s, "logfmt") == 0)
		return LOG_LOGFMT;
	return -1;
}

/* c as \xNN at buf + o; the new end. */
static size_t
put_hex(char *buf, size_t o, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";

	buf[o++] = '\\';
	buf[o++] = 'x';
	buf[o++] = hex[c >> 4];
	buf[o++] = hex[c & 15];
	return o;
}

static const char *
level_name(int pri)
{
	switch (pri) {
	case LOG_CRIT:
		return "fatal";
	case LOG_WARNING:
		return "warn";
	case LOG_DEBUG:
		return "debug";
	default:
		return "info";
	}
}

/*
 * s as the inside of a logfmt quoted value: '"' and '\\' escaped, newline,
 * return and tab as \n \r \t, any other byte outside printable ASCII as
 * \xNN.  A message can then never close its quotes or start a line, and so
 * never forge a key.  Cut with "..." where dst is too small.
 */
static void
logfmt_escape(char *dst, size_t dstsz, const char *s)
{
	size_t o = 0;
	unsigned char c;

	for (; (c = (unsigned char)*s) != '\0'; s++) {
		if (o + 8 >= dstsz) {
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		if (c == '"' || c == '\\') {
			dst[o++] = '\\';
			dst[o++] = (char)c;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			dst[o++] = '\\';
			dst[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
		} else if (c >= 0x20 && c < 0x7f)
			dst[o++] = (char)c;
		else
			o = put_hex(dst, o, c);
	}
	dst[o] = '\0';
}

static void
vlog(int pri, const char *fmt, va_list ap, const char *suffix)
{
	char msg[2048], q[4 * sizeof(msg) + 8], ts[96];
	struct timespec now;
	struct tm tm;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (suffix != NULL) {
		strncat(msg, ": ", sizeof(msg) - strlen(msg) - 1);
		strncat(msg, suffix, sizeof(msg) - strlen(msg) - 1);
	}
	if (log_format == LOG_LOGFMT)
		logfmt_escape(q, sizeof(q), msg);
	if (!log_foreground) {
		if (log_format == LOG_LOGFMT)
			syslog(pri, "level=%s daemon=%s msg=\"%s\"",
			    level_name(pri), log_name, q);
		else
			syslog(pri, "%s", msg);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
	if (log_format == LOG_LOGFMT)
		fprintf(stderr, "ts=%s level=%s daemon=%s msg=\"%s\"\n", ts,
		    level_name(pri), log_name, q);
	else
		fprintf(stderr, "%s %s: %s\n", ts, log_name, msg);
	fflush(stderr);
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	vlog(LOG_WARNING, fmt, ap, strerror(saved));
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_WARNING, fmt, ap, NULL);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_INFO, fmt, ap, NULL);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!log_verbose)
		return;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, fmt, ap, NULL);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	vlog(LOG_CRIT, fmt, ap, strerror(saved));
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, fmt, ap, NULL);
	va_end(ap);
	exit(1);
}

const char *
log_quote(char *buf, size_t bufsz, const char *s, size_t len)
{
	size_t i, o = 0;

	if (bufsz == 0)
		return "";
	for (i = 0; i < len && s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];

		if (o + 5 >= bufsz) {
			if (o + 4 <= bufsz - 1) {
				memcpy(buf + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
			buf[o++] = (char)c;
		else
			o = put_hex(buf, o, c);
	}
	buf[o] = '\0';
	return buf;
}
