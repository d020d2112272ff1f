// cmd_chat.c — `llmlab chat -m MODEL`: an interactive conversation rendered with the model's chat template.
// Each turn re-renders the whole conversation and evaluates only what the KV cache does not already hold.
// Ctrl-C stops the current answer; at the prompt, Ctrl-C (exit status 130) or Ctrl-D ends the session.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "gen.h"

static void usage(FILE *f) {
    fprintf(f, "usage: llmlab chat -m MODEL [options]\n\n"
               "Interactive chat. The template comes from the model's tokenizer.chat_template (Llama-2/Mistral\n"
               "[INST], Llama-3, ChatML for Qwen/SmolLM; otherwise a plain User:/Assistant: fallback).\n"
               "Type a message and Enter. /reset starts over, /exit (or Ctrl-D) quits; Ctrl-C stops an answer.\n\n"
               "  --template NAME         override: llama2, mistral, llama3, chatml, plain\n"
               "  --system TEXT           a system message\n");
    gen_print_flags_help(f);
    fprintf(f, "\nexample: llmlab chat -m model.gguf --temp 0.7\n");
}

typedef struct convo {
    ll_chat_msg *msgs;
    int n, cap;
} convo;

static void convo_add(convo *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 8;
        c->msgs = realloc(c->msgs, (size_t)c->cap * sizeof *c->msgs);
        if (!c->msgs) abort();
    }
    c->msgs[c->n++] = (ll_chat_msg){strdup(role), strdup(content)};
}

static void convo_clear(convo *c, int keep) {
    for (int i = keep; i < c->n; i++) {
        free((char *)c->msgs[i].role);
        free((char *)c->msgs[i].content);
    }
    c->n = keep;
}

// Tokenize the rendered conversation: special tokens in the text are parsed, a doubled BOS is dropped.
static int32_t *tokenize_convo(ll_model *m, const char *text, int *n_out) {
    size_t len = strlen(text);
    int cap = (int)len + 8;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return NULL;
    int n = ll_tokenize(m, text, len, true, true, ids, cap);
    if (n < 0) { free(ids); return NULL; }
    int32_t bos = ll_model_bos(m);
    if (n >= 2 && ids[0] == bos && ids[1] == bos) {
        memmove(ids, ids + 1, (size_t)(n - 1) * sizeof *ids);
        n--;
    }
    *n_out = n;
    return ids;
}

static char *read_line(void) {
    size_t cap = 256, len = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        int ch = fgetc(stdin);
        if (ch == EOF) {
            if (len == 0 || ferror(stdin)) { free(buf); return NULL; }
            break;
        }
        if (ch == '\n') break;
        if (len + 2 > cap) { char *nb = realloc(buf, cap *= 2); if (!nb) { free(buf); return NULL; } buf = nb; }
        buf[len++] = (char)ch;
    }
    buf[len] = 0;
    return buf;
}

static int chat_loop(gen_session *g, const gen_opts *o, ll_chat_kind kind, const char *system) {
    convo cv = {0};
    if (system) convo_add(&cv, "system", system);
    int keep = cv.n;
    int32_t *cached = NULL; // the ids the KV cache holds, in order
    int n_cached = 0;
    char bos[64] = "", eos[64] = "";
    ll_token_to_piece(g->m, ll_model_bos(g->m), true, bos, sizeof bos - 1);
    ll_token_to_piece(g->m, ll_model_eos(g->m), true, eos, sizeof eos - 1);
    int rc = 0;
    for (;;) {
        fprintf(stderr, "\n> ");
        fflush(stderr);
        g_gen_interrupted = 0;
        char *line = read_line();
        if (!line) { // EOF, or Ctrl-C at the prompt: exit status 130 as for a process killed by SIGINT
            if (g_gen_interrupted) rc = 130;
            break;
        }
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) { free(line); break; }
        if (!strcmp(line, "/reset")) {
            convo_clear(&cv, keep);
            free(line);
            fprintf(stderr, "(conversation reset)\n");
            continue;
        }
        convo_add(&cv, "user", line);
        free(line);
        char *text = ll_chat_render(kind, cv.msgs, cv.n, true, bos, eos);
        int n_ids = 0;
        int32_t *ids = tokenize_convo(g->m, text, &n_ids);
        free(text);
        if (!ids) { fprintf(stderr, "llmlab chat: could not tokenize the conversation\n"); rc = 1; break; }
        if (n_ids + 1 >= ll_context_n_ctx(g->c)) {
            fprintf(stderr, "llmlab chat: the conversation (%d tokens) fills the context (%d): /reset or use a larger -c\n",
                    n_ids, ll_context_n_ctx(g->c));
            free(ids);
            convo_clear(&cv, cv.n - 1);
            continue;
        }
        int common = 0; // reuse the cached prefix; keep one token to evaluate so there are logits
        while (common < n_cached && common < n_ids - 1 && cached[common] == ids[common]) common++;
        ll_context_truncate(g->c, common);
        ll_gen_result res;
        ll_error err = {0};
        char *answer = NULL;
        ll_status s = gen_generate(g, o, ids + common, n_ids - common, false, ll_chat_stops(kind), stdout, &answer,
                                   &res, &err);
        free(cached);
        cached = ids;
        if (s != LL_OK) { cli_fail("chat", &err); free(answer); rc = 1; break; }
        if (res.finish == LL_FINISH_INTERRUPTED) fprintf(stderr, "\n(stopped)");
        convo_add(&cv, "assistant", answer ? answer : "");
        free(answer);
        n_cached = ll_context_n_past(g->c) < n_ids ? ll_context_n_past(g->c) : n_ids;
        if (o->verbose) gen_print_stats(g, &res);
    }
    free(cached);
    convo_clear(&cv, 0);
    free(cv.msgs);
    fprintf(stderr, "\n");
    return rc;
}

int cmd_chat(int argc, char **argv) {
    gen_opts o;
    gen_opts_default(&o);
    o.n_predict = -1;
    const char *system = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--system")) {
            if (!(system = cli_value("chat", argc, argv, &i))) return 1;
            continue;
        }
        int r = gen_parse_flag("chat", &o, argc, argv, &i);
        if (r < 0) return 1;
        if (r == 0) { fprintf(stderr, "llmlab chat: unknown option '%s' (see llmlab chat --help)\n", argv[i]); return 1; }
    }
    if (!o.model) { fprintf(stderr, "llmlab chat: no model given: use -m MODEL\n"); return 1; }
    ll_chat_kind kind;
    if (o.template_name && !ll_chat_from_name(o.template_name, &kind)) {
        fprintf(stderr, "llmlab chat: unknown --template '%s' (llama2, mistral, llama3, chatml, plain)\n", o.template_name);
        return 1;
    }
    gen_session g;
    if (!gen_open("chat", &o, &g)) return 1;
    if (!o.template_name) kind = ll_chat_detect(ll_model_chat_template(g.m));
    fprintf(stderr, "llmlab chat: template %s; /reset starts over, /exit or Ctrl-D quits, Ctrl-C stops an answer\n",
            ll_chat_name(kind));
    gen_install_sigint();
    int rc = chat_loop(&g, &o, kind, system);
    gen_close(&g);
    return rc;
}
