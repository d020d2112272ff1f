// main.c — `llmlab`: dispatches to one subcommand per file; `llmlab help` lists them.
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command k_commands[] = {
    {"run", cmd_run, "generate text from a prompt (streams only the generated text to stdout)"},
    {"chat", cmd_chat, "interactive chat with the model's chat template"},
    {"synth", cmd_synth, "write a random-weight GGUF at a named architecture's real shapes"},
    {"convert", cmd_convert, "convert a llama2.c checkpoint (+ tokenizer.bin) to GGUF"},
    {"bench", cmd_bench, "bench hw: measure this machine's CPU/GPU ceilings (GEMM, memory, attention, ...)"},
    {"quantize", cmd_quantize, "quantize a GGUF with llama-quantize's type mixes (Q8_0 ... Q4_K_M, F16)"},
    {"fit", cmd_fit, "will a model fit here (weights, KV cache, context, best type) and how fast will it run"},
    {"report", cmd_report, "REPORT.md and report.html from the results JSON (optionally compared with another run)"},
    {"serve", cmd_serve, "OpenAI- and Ollama-compatible HTTP server with continuous batching (loopback by default)"},
    {"perplexity", cmd_perplexity, "perplexity of a text (llama.cpp's method); KL-divergence against a base model"},
};

static void usage(FILE *f) {
    fprintf(f, "llmlab %s — what can this machine do with an LLM, measured.\n\n"
               "usage: llmlab COMMAND [options]    (llmlab COMMAND --help for each)\n\ncommands:\n",
            LLMLAB_VERSION);
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        fprintf(f, "  %-10s %s\n", k_commands[i].name, k_commands[i].summary);
    fprintf(f, "  %-10s %s\n", "help", "this list");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *name = argv[1];
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version")) {
        printf("llmlab %s\n", LLMLAB_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (!strcmp(name, k_commands[i].name)) return k_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "llmlab: unknown command '%s'\n\n", name);
    usage(stderr);
    return 1;
}
