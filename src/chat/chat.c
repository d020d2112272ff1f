// chat.c — chat templates: the family of a GGUF's tokenizer.chat_template by fingerprint, and the prompt text
// each family's reference Jinja template renders (HF apply_chat_template), written out here as plain C.
//
// Sources of the formats (facts, not code): Meta's Llama-2-chat template (system in <<SYS>>, contents
// .strip()ped), Mistral-7B-Instruct-v0.1's template, Meta's Llama-3-Instruct template (contents | trim, BOS
// before the first message), the ChatML convention (Qwen, SmolLM). Where the Jinja raises (a system role for
// Mistral, roles not alternating) we render something sensible instead: see each renderer.
#include "chat/chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// ---- a growable string; an allocation failure poisons it and render returns NULL --------------------------
typedef struct chat_buf {
    char *p;
    size_t len, cap;
    bool oom;
} chat_buf;

static void cb_put(chat_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (n > SIZE_MAX - b->len - 1) { b->oom = true; return; }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap = cap > SIZE_MAX / 2 ? b->len + n + 1 : cap * 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = true; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void cb_str(chat_buf *b, const char *s) { if (s) cb_put(b, s, strlen(s)); }

// Python's str.strip() / Jinja's trim for ASCII whitespace.
static bool chat_is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static void cb_strip(chat_buf *b, const char *s) {
    if (!s) return;
    size_t n = strlen(s);
    while (n && chat_is_space(*s)) s++, n--;
    while (n && chat_is_space(s[n - 1])) n--;
    cb_put(b, s, n);
}

static const char *chat_or(const char *s, const char *dflt) { return s && *s ? s : dflt; }
static bool chat_role_is(const ll_chat_msg *m, const char *role) { return m->role && strcmp(m->role, role) == 0; }

// ---- detection and names ---------------------------------------------------------------------------------
ll_chat_kind ll_chat_detect(const char *jinja) {
    if (!jinja || !*jinja) return LL_CHAT_PLAIN;
    if (strstr(jinja, "<|im_start|>")) return LL_CHAT_CHATML;
    if (strstr(jinja, "<|start_header_id|>")) return LL_CHAT_LLAMA3;
    if (strstr(jinja, "[INST]")) return strstr(jinja, "<<SYS>>") ? LL_CHAT_LLAMA2 : LL_CHAT_MISTRAL;
    return LL_CHAT_PLAIN;
}

static const char *const chat_names[] = {
    [LL_CHAT_LLAMA2] = "llama2", [LL_CHAT_MISTRAL] = "mistral", [LL_CHAT_LLAMA3] = "llama3",
    [LL_CHAT_CHATML] = "chatml", [LL_CHAT_PLAIN] = "plain",
};

bool ll_chat_from_name(const char *name, ll_chat_kind *out) {
    if (!name) return false;
    for (int k = 0; k < (int)(sizeof chat_names / sizeof chat_names[0]); k++) {
        if (strcasecmp(name, chat_names[k]) == 0) {
            *out = (ll_chat_kind)k;
            return true;
        }
    }
    return false;
}

const char *ll_chat_name(ll_chat_kind k) {
    return (unsigned)k < sizeof chat_names / sizeof chat_names[0] ? chat_names[k] : "unknown";
}

// ---- renderers ---------------------------------------------------------------------------------------------
// <|im_start|>{role}\n{content}<|im_end|>\n per message, contents verbatim; no BOS; no default system prompt.
static void chat_chatml(chat_buf *b, const ll_chat_msg *msgs, int n, bool add_assistant) {
    for (int i = 0; i < n; i++) {
        cb_str(b, "<|im_start|>");
        cb_str(b, chat_or(msgs[i].role, "user"));
        cb_str(b, "\n");
        cb_str(b, msgs[i].content);
        cb_str(b, "<|im_end|>\n");
    }
    if (add_assistant) cb_str(b, "<|im_start|>assistant\n");
}

// BOS before the first message, then <|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>.
static void chat_llama3(chat_buf *b, const ll_chat_msg *msgs, int n, bool add_assistant, const char *bos) {
    for (int i = 0; i < n; i++) {
        if (i == 0) cb_str(b, chat_or(bos, "<|begin_of_text|>"));
        cb_str(b, "<|start_header_id|>");
        cb_str(b, chat_or(msgs[i].role, "user"));
        cb_str(b, "<|end_header_id|>\n\n");
        cb_strip(b, msgs[i].content);
        cb_str(b, "<|eot_id|>");
    }
    if (add_assistant) cb_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Llama-2-chat: {bos}[INST] {user.strip()} [/INST] per user turn, " {answer.strip()} {eos}" per assistant turn;
// a system message becomes "<<SYS>>\n{system}\n<</SYS>>\n\n" in front of the next message (the reference only
// allows it first; later ones are handled the same way instead of failing). Other roles count as user.
// No generation prompt: the assistant turn is open after " [/INST]".
static void chat_llama2(chat_buf *b, const ll_chat_msg *msgs, int n, const char *bos, const char *eos) {
    chat_buf body = {0};
    const char *sys = NULL;
    for (int i = 0; i < n; i++) {
        if (chat_role_is(&msgs[i], "system")) {
            sys = msgs[i].content ? msgs[i].content : "";
            continue;
        }
        body.len = 0;
        if (sys) {
            cb_str(&body, "<<SYS>>\n");
            cb_str(&body, sys);
            cb_str(&body, "\n<</SYS>>\n\n");
            sys = NULL;
        }
        cb_str(&body, msgs[i].content ? msgs[i].content : "");
        if (body.oom) { b->oom = true; break; }
        if (chat_role_is(&msgs[i], "assistant")) {
            cb_str(b, " ");
            cb_strip(b, body.p);
            cb_str(b, " ");
            cb_str(b, eos);
        } else {
            cb_str(b, bos);
            cb_str(b, "[INST] ");
            cb_strip(b, body.p);
            cb_str(b, " [/INST]");
        }
    }
    free(body.p);
}

// Mistral-7B-Instruct-v0.1: {bos} once, "[INST] {user} [/INST]" per user turn, "{answer}{eos} " per assistant
// turn, contents verbatim. The reference has no system role: a system message is folded into the next user
// message as "{system}\n\n{user}". Other roles count as user. No generation prompt.
static void chat_mistral(chat_buf *b, const ll_chat_msg *msgs, int n, const char *bos, const char *eos) {
    cb_str(b, bos);
    const char *sys = NULL;
    for (int i = 0; i < n; i++) {
        const char *content = msgs[i].content ? msgs[i].content : "";
        if (chat_role_is(&msgs[i], "system")) {
            sys = content;
        } else if (chat_role_is(&msgs[i], "assistant")) {
            cb_str(b, content);
            cb_str(b, eos);
            cb_str(b, " ");
        } else {
            cb_str(b, "[INST] ");
            if (sys) {
                cb_str(b, sys);
                cb_str(b, "\n\n");
                sys = NULL;
            }
            cb_str(b, content);
            cb_str(b, " [/INST]");
        }
    }
}

// Fallback for models without a known template: a system message is a preamble "{system}\n\n", then
// "User: {content}\n" and "Assistant: {content}\n" (other roles: "{role}: "); the open turn is "Assistant:".
static void chat_plain(chat_buf *b, const ll_chat_msg *msgs, int n, bool add_assistant) {
    for (int i = 0; i < n; i++) {
        const char *content = msgs[i].content ? msgs[i].content : "";
        if (chat_role_is(&msgs[i], "system")) {
            cb_str(b, content);
            cb_str(b, "\n\n");
            continue;
        }
        if (chat_role_is(&msgs[i], "assistant")) cb_str(b, "Assistant: ");
        else if (!msgs[i].role || chat_role_is(&msgs[i], "user")) cb_str(b, "User: ");
        else {
            cb_str(b, msgs[i].role);
            cb_str(b, ": ");
        }
        cb_str(b, content);
        cb_str(b, "\n");
    }
    if (add_assistant) cb_str(b, "Assistant:");
}

char *ll_chat_render(ll_chat_kind k, const ll_chat_msg *msgs, int n, bool add_assistant, const char *bos,
                     const char *eos) {
    chat_buf b = {0};
    cb_put(&b, "", 0); // an empty conversation renders as "", not NULL
    if (n < 0 || (n > 0 && !msgs)) n = 0;
    const char *bos_s = chat_or(bos, "<s>"), *eos_s = chat_or(eos, "</s>");
    switch (k) {
    case LL_CHAT_CHATML: chat_chatml(&b, msgs, n, add_assistant); break;
    case LL_CHAT_LLAMA3: chat_llama3(&b, msgs, n, add_assistant, bos); break;
    case LL_CHAT_LLAMA2: chat_llama2(&b, msgs, n, bos_s, eos_s); break;
    case LL_CHAT_MISTRAL: chat_mistral(&b, msgs, n, bos_s, eos_s); break;
    default: chat_plain(&b, msgs, n, add_assistant); break;
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

// End of the assistant's turn as text, and the start of the next turn (a model that runs on into it is done).
const char *const *ll_chat_stops(ll_chat_kind k) {
    static const char *const chatml[] = {"<|im_end|>", "<|im_start|>", NULL};
    static const char *const llama3[] = {"<|eot_id|>", "<|eom_id|>", "<|start_header_id|>", NULL};
    static const char *const inst[] = {"</s>", "[INST]", NULL};
    static const char *const plain[] = {"\nUser:", NULL};
    switch (k) {
    case LL_CHAT_CHATML: return chatml;
    case LL_CHAT_LLAMA3: return llama3;
    case LL_CHAT_LLAMA2:
    case LL_CHAT_MISTRAL: return inst;
    default: return plain;
    }
}
