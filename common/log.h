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

/*
 * The line format: text ("<ts> <daemon>: <msg>") or logfmt ("ts=... level=...
 * daemon=... msg=\"...\"", stable keys, the message quoted and escaped so
 * that nothing inside it can start a key of its own).
 */
#define LOG_TEXT	0
#define LOG_LOGFMT	1
void	log_setformat(int);
/* "text" or "logfmt": LOG_TEXT or LOG_LOGFMT; -1 for anything else. */
int	log_format_parse(const char *);
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
