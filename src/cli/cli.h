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
/* --precision f32|bf16 for the image encoder's matrix products: sets it for the process, or
 * prints the error and returns non-zero. */
int cli_set_precision(const char *arg);

#endif
