// cli.h — the `llmlab` command: one file per subcommand (parsing and printing only) and the small argument
// helpers they share. Every subcommand answers --help and returns the process exit status.
#ifndef LL_CLI_H
#define LL_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "llmlab.h"

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_fit(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_serve(int argc, char **argv);

// Argument helpers: parse a flag's value, printing "llmlab CMD: FLAG expects ..." and returning false when bad.
bool cli_int(const char *cmd, const char *flag, const char *val, long lo, long hi, long *out);
bool cli_float(const char *cmd, const char *flag, const char *val, double lo, double hi, double *out);
bool cli_u64(const char *cmd, const char *flag, const char *val, uint64_t *out);
// A thread count (-t): refused above ll_sys_max_threads() (4 x the CPUs this process may use); warns once
// when above the allowed CPUs.
bool cli_threads(const char *cmd, const char *flag, const char *val, int *out);
// n, or when n <= 0 the default: min(physical cores, CPUs this process may use).
int cli_default_threads(int n);
// argv[*i] is FLAG and needs a value: returns it (advancing *i), or NULL after printing an error.
const char *cli_value(const char *cmd, int argc, char **argv, int *i);
// Print "llmlab CMD: message" for an ll_error and return exit status 1.
int cli_fail(const char *cmd, const ll_error *err);

#endif
