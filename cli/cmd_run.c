// cmd_run.c — `llmlab run -m MODEL -p PROMPT`: only the generated text goes to stdout, streamed; the timing
// line goes to stderr at the end.
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gen.h"

static void usage(FILE *f) {
    fprintf(f, "usage: llmlab run -m MODEL [-p PROMPT | -f FILE] [options]\n\n"
               "Generates text after the prompt. stdout gets only the generated text, streamed as it comes\n"
               "(--echo prints the prompt first); stderr gets load time and prompt/generation tokens per second.\n\n"
               "  -p, --prompt TEXT       the prompt (default: empty, i.e. generate after BOS)\n"
               "  -f, --file FILE         read the prompt from FILE\n"
               "  --echo                  print the prompt before the generated text\n");
    gen_print_flags_help(f);
    fprintf(f, "\nexample: llmlab run -m stories260K.gguf -p \"Once upon a time\" -n 64 --temp 0\n");
}

static char *read_prompt_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char tmp[65536];
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return NULL; }
            buf = nb;
        }
        memcpy(buf + len, tmp, n);
        len += n;
    }
    fclose(f);
    if (!buf) buf = calloc(1, 1);
    else buf[len] = 0;
    return buf;
}

int cmd_run(int argc, char **argv) {
    gen_opts o;
    gen_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        int r = gen_parse_flag("run", &o, argc, argv, &i);
        if (r < 0) return 1;
        if (r == 0) {
            fprintf(stderr, "llmlab run: unknown option '%s' (see llmlab run --help)\n", argv[i]);
            return 1;
        }
    }
    if (!o.model) {
        fprintf(stderr, "llmlab run: no model given: use -m MODEL (see llmlab run --help)\n");
        return 1;
    }
    char *file_prompt = NULL;
    if (o.prompt_file && !(file_prompt = read_prompt_file(o.prompt_file))) {
        fprintf(stderr, "llmlab run: cannot read prompt file '%s'\n", o.prompt_file);
        return 1;
    }
    const char *prompt = file_prompt ? file_prompt : o.prompt ? o.prompt : "";
    gen_session g;
    if (!gen_open("run", &o, &g)) { free(file_prompt); return 1; }
    size_t plen = strlen(prompt);
    int cap = (int)(plen + 16 < (size_t)1 << 30 ? plen + 16 : 1 << 30);
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    int n = ids ? ll_tokenize(g.m, prompt, plen, true, false, ids, cap) : -1;
    int rc = 0;
    if (n < 0) {
        fprintf(stderr, "llmlab run: could not tokenize the prompt\n");
        rc = 1;
    } else if (n == 0) {
        fprintf(stderr, "llmlab run: the prompt is empty and the model adds no BOS token: give a prompt with -p\n");
        rc = 1;
    } else if (n >= ll_context_n_ctx(g.c)) {
        fprintf(stderr, "llmlab run: the prompt has %d tokens but the context holds %d: use a larger -c\n", n,
                ll_context_n_ctx(g.c));
        rc = 1;
    } else {
        gen_install_sigint();
        if (o.echo) { fputs(prompt, stdout); fflush(stdout); }
        bool only_bos = n == 1 && ids[0] == ll_model_bos(g.m);
        gen_stats st;
        ll_error err = {0};
        if (gen_generate(&g, &o, ids, n, only_bos && !o.echo, NULL, stdout, NULL, &st, &err) != LL_OK)
            rc = cli_fail("run", &err);
        gen_print_stats(&g, &st);
        if (rc == 0 && st.interrupted) rc = 130; // as a shell reports a process Ctrl-C stopped
    }
    free(ids);
    free(file_prompt);
    gen_close(&g);
    return rc;
}
