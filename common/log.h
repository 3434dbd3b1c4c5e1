/*
 * portico — logging, in the manner of OpenBSD's log.c: stderr in the
 * foreground (-d), syslog otherwise.  Nothing from outside reaches a log line
 * unless it was validated first or passed through log_quote().
 */
#ifndef PORTICO_LOG_H
#define PORTICO_LOG_H

#include <stddef.h>

void	log_init(const char *name, int foreground, int verbose);
void	log_setverbose(int);
int	log_getverbose(void);
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Copy at most len bytes of untrusted s into buf, escaping anything that is
 * not printable ASCII, and return buf.  For log lines only. */
const char *log_quote(char *buf, size_t bufsz, const char *s, size_t len);

#endif
