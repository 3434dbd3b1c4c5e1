/*
 * The event table of common/event.h as a Python module, for the tests:
 * the same X-macros the encoder and the decoder are built from, so a code
 * or a key the C side changes changes here at the next build, and no
 * test keeps a copy of its own that could drift.
 *
 *	EV_<TYPE> = code		the wire code of each type
 *	F_<FIELD> = "key"		the body key of each field
 *	TYPES, CODES			code -> name, name -> code
 *	KEYS				field name -> key
 *	REQUIRED, OPTIONAL		type name -> the keys it must, may carry
 *
 * Names come from event_name(), so the module says what the daemons print
 * in their JSON dumps.
 */
#include <stdio.h>
#include <stdlib.h>

#include "event.h"

static const char *keys[] = {
#define X(n, k, t, m, v)	[FI_##n] = k,
	EV_FIELDS(X)
#undef X
};

static const char *fields[] = {
#define X(n, k, t, m, v)	[FI_##n] = #n,
	EV_FIELDS(X)
#undef X
};

static const struct {
	int		code;
	uint32_t	req;
	uint32_t	opt;
} types[] = {
#define X(n, c, r, o)	{ c, r, o },
	EV_TYPES(X)
#undef X
};

#define NFIELDS	(sizeof(keys) / sizeof(keys[0]))
#define NTYPES	(sizeof(types) / sizeof(types[0]))

static void
key_tuple(uint32_t bits)
{
	size_t f;

	putchar('(');
	for (f = 0; f < NFIELDS; f++)
		if (bits & (1u << f))
			printf("\"%s\", ", keys[f]);
	putchar(')');
}

int
main(void)
{
	size_t i;

	printf("# Generated from common/event.h by tests/gen/gen_events.c"
	    "; do not edit.\n\nVERSION = %d\nMAX_BACKENDS = %d\n"
	    "MAX_MASTERS = %d\n\n", EV_VERSION, EV_MAX_BACKENDS,
	    EV_MAX_MASTERS);
	for (i = 0; i < NTYPES; i++)
		printf("EV_%s = %d\n", event_name(types[i].code),
		    types[i].code);
	putchar('\n');
	for (i = 0; i < NFIELDS; i++)
		printf("F_%s = \"%s\"\n", fields[i], keys[i]);
	printf("\nTYPES = {\n");
	for (i = 0; i < NTYPES; i++)
		printf("    %d: \"%s\",\n", types[i].code,
		    event_name(types[i].code));
	printf("}\nCODES = {name: code for code, name in TYPES.items()}\n"
	    "\nKEYS = {\n");
	for (i = 0; i < NFIELDS; i++)
		printf("    \"%s\": \"%s\",\n", fields[i], keys[i]);
	printf("}\n\nREQUIRED = {\n");
	for (i = 0; i < NTYPES; i++) {
		printf("    \"%s\": ", event_name(types[i].code));
		key_tuple(types[i].req);
		printf(",\n");
	}
	printf("}\n\nOPTIONAL = {\n");
	for (i = 0; i < NTYPES; i++) {
		printf("    \"%s\": ", event_name(types[i].code));
		key_tuple(types[i].opt);
		printf(",\n");
	}
	printf("}\n");
	return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}
