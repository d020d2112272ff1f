// cmd_convert.c — placeholder until the command lands (replaced by its implementation).
#include <stdio.h>
#include "cli.h"
int cmd_convert(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "llmlab convert: not built yet\n"); return 1; }
