/* The medseg command-line tool: one file per subcommand. Each returns the process exit code. */
#ifndef MS_CLI_H
#define MS_CLI_H

#include "medseg.h"

int cmd_segment(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);

/* Prints "medseg: <message>" on stderr and returns the exit code for the status. */
int cli_fail(const medseg_error *err);
int cli_exit_code(medseg_status st);
/* The options every command that runs a model shares: --model NAME|PATH, --threads N (1..1024),
 * --precision f32|bf16 (set for the process). Looks at argv[*i]: returns 0 if it is none of them,
 * 1 after consuming it (and its value), or a non-zero exit code (negated) after printing why. */
int cli_model_option(int argc, char **argv, int *i, const char **model, int *threads);
/* "a,b[,c...]" -> up to max finite numbers in v; returns the count, or -1 (an empty field, a
 * trailing comma, anything else after a number, more than max). */
int cli_parse_numbers(const char *s, double *v, int max);
/* A whole decimal integer in [lo, hi] -> *out; returns 1, or 0 when s is not one. */
int cli_parse_long(const char *s, long lo, long hi, long *out);

#endif
