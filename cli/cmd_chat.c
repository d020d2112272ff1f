// cmd_chat.c — placeholder until the command lands (replaced by its implementation).
#include <stdio.h>
#include "cli.h"
int cmd_chat(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "llmlab chat: not built yet\n"); return 1; }
