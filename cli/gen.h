// gen.h — what `run` and `chat` share: the llama.cpp-style model/sampling flags, loading with timing, and
// the token loop that samples, streams text and counts speed.
#ifndef LL_CLI_GEN_H
#define LL_CLI_GEN_H

#include <signal.h>
#include <stdio.h>

#include "cli.h"

typedef struct gen_opts {
    const char *model, *prompt, *prompt_file, *tokenizer, *template_name, *device;
    int n_predict; // -1 = until end of generation or a full context
    int n_ctx, n_threads, n_batch;
    ll_sampler_params sp;
    bool echo, verbose, ignore_eos;
} gen_opts;

void gen_opts_default(gen_opts *o);
// Parse the flag at argv[*i] if it is a shared one: 1 = consumed, 0 = not shared, -1 = bad value (printed).
int gen_parse_flag(const char *cmd, gen_opts *o, int argc, char **argv, int *i);
void gen_print_flags_help(FILE *f);

typedef struct gen_session {
    ll_model *m;
    ll_context *c;
    ll_sampler *s;
    double load_s;
} gen_session;

// Load the model and make the context and sampler; prints the error and returns false on failure.
bool gen_open(const char *cmd, const gen_opts *o, gen_session *g);
void gen_close(gen_session *g);

// Set by SIGINT while generating; gen_install_sigint makes Ctrl-C set it instead of killing the process.
extern volatile sig_atomic_t g_gen_interrupted;
void gen_install_sigint(void);

typedef struct gen_stats {
    int n_prompt, n_gen;
    int n_prompt_asked; // n_prompt is what was evaluated: fewer when Ctrl-C stopped the prompt
    double prompt_s, gen_s;
    bool interrupted;   // Ctrl-C stopped the prompt or the generation
} gen_stats;

// Evaluate ids (after the n_past already cached), then sample up to n_predict tokens, printing each piece to
// out as soon as it is whole UTF-8. Stops at end of generation (unless ignore_eos), a stop string, the
// context's end, or Ctrl-C. The answer's text is appended to *answer (malloc'd) when answer is not NULL.
ll_status gen_generate(gen_session *g, const gen_opts *o, const int32_t *ids, int n_ids, bool strip_leading_space,
                       const char *const *stops, FILE *out, char **answer, gen_stats *st, ll_error *err);
void gen_print_stats(const gen_session *g, const gen_stats *st);

#endif
