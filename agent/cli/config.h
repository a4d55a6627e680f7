#ifndef PX_CONFIG_H
#define PX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "agent/cli/common.h"
#include "agent/cli/measure.h"

/* The volunteer's INI file (/etc/parallax/parallax.conf, libinih). Keys are
 * the long flags of the agent commands, '-' or '_' alike, in no section or
 * in [parallax]; lists (resolver, address, targets) are space-separated or
 * repeated; '#' or ';' after whitespace starts a comment. A flag given on
 * the command line replaces the file's value for its key, lists included
 * (agent/cli/run.c). Documented in parallax.conf(5). */
typedef struct px_config {
  char **strings; /* values the options point into, freed with the config */
  size_t nstrings;
  char **targets; /* "targets = …" (none: the collector's list) */
  size_t ntargets;
} px_config_t;

/* Cuts an inline comment off a line read from a config: whitespace, then
 * '#' or ';', to the end of the line (the newline kept). */
void px_config_strip_comment(char *line);

/* Applies path to o and agent. An unknown section or key, or a bad value,
 * is -EINVAL with "PATH:LINE: reason" in err. */
int px_config_load(const char *path, px_config_t *cfg, px_measure_opts_t *o,
                   px_agent_opts_t *agent, char *err, size_t errlen);
/* The same from an open stream; name stands for the file in messages.
 * (The fuzzers feed it from memory.) */
int px_config_load_stream(FILE *f, const char *name, px_config_t *cfg, px_measure_opts_t *o,
                          px_agent_opts_t *agent, char *err, size_t errlen);
void px_config_free(px_config_t *cfg);

/* True when path holds no setting at all (only comments, blank lines and
 * section headers), like the file `make install` puts in place: `parallax
 * setup` may then write it without --force. */
bool px_config_is_blank(const char *path);

#endif
