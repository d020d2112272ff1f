// cmd_synth.c — placeholder until the command lands (replaced by its implementation).
#include <stdio.h>
#include "cli.h"
int cmd_synth(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "llmlab synth: not built yet\n"); return 1; }
