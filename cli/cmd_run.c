// cmd_run.c — placeholder until the command lands (replaced by its implementation).
#include <stdio.h>
#include "cli.h"
int cmd_run(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "llmlab run: not built yet\n"); return 1; }
