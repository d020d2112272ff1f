// fuzz_chat.c — libFuzzer target for the chat templates (`make fuzz`): template detection on arbitrary Jinja text
// and rendering of arbitrary conversations. Input: a flags byte (bits 0-2: the family, used when the template text
// is empty; bit 3: add_assistant), then NUL-separated fields: template text, bos, eos, and then role/content pairs.
// Invariants: detection and names are total; the rendering is non-NULL and NUL-terminated; every content (trimmed
// of ASCII whitespace, as the Jinja templates do) appears in it, except a Llama-2/Mistral system message with no
// turn after it to carry it (chat.c drops those); the stop lists are NULL-terminated and non-empty.
#include "chat/chat.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHAT_MAX_FIELDS 64

static volatile uint64_t g_sink;

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// content trimmed both ends is a substring of out
static bool contains_trimmed(const char *out, const char *s) {
    size_t n = strlen(s);
    while (n && is_space(*s)) s++, n--;
    while (n && is_space(s[n - 1])) n--;
    if (!n) return true;
    for (const char *p = out; (p = strchr(p, *s)); p++)
        if (!strncmp(p, s, n)) return true;
    return false;
}

// Llama-2 and Mistral carry a system message into the next turn (Llama-2: any non-system one; Mistral: the next
// user one); one with no such turn before the next system message, or the end, is not rendered (see chat.c).
static bool system_is_rendered(ll_chat_kind k, const ll_chat_msg *msgs, int n, int i) {
    if (k != LL_CHAT_LLAMA2 && k != LL_CHAT_MISTRAL) return true;
    for (int j = i + 1; j < n; j++) {
        if (!strcmp(msgs[j].role, "system")) return false;
        if (k == LL_CHAT_LLAMA2 || strcmp(msgs[j].role, "assistant")) return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char *buf = malloc(size); // data[1..] plus a closing NUL
    if (!buf) return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    char *field[FUZZ_CHAT_MAX_FIELDS];
    int nf = 0;
    for (char *p = buf; nf < FUZZ_CHAT_MAX_FIELDS && p <= buf + size - 1; p += strlen(p) + 1) field[nf++] = p;
    const char *jinja = nf > 0 ? field[0] : NULL;
    ll_chat_kind k = ll_chat_detect(jinja);
    if (k > LL_CHAT_PLAIN) abort();
    if (!jinja || !*jinja) k = (ll_chat_kind)((data[0] & 7) % 5);
    bool add_assistant = data[0] & 8;
    const char *name = ll_chat_name(k);
    ll_chat_kind back;
    if (!name || !ll_chat_from_name(name, &back) || back != k) abort();
    if (jinja) g_sink += ll_chat_from_name(jinja, &back); // arbitrary names: true or false, nothing else
    const char *bos = nf > 1 ? field[1] : NULL, *eos = nf > 2 ? field[2] : NULL;
    ll_chat_msg msgs[FUZZ_CHAT_MAX_FIELDS / 2];
    int n = 0;
    for (int i = 3; i + 1 < nf; i += 2) msgs[n++] = (ll_chat_msg){field[i], field[i + 1]};
    for (int pass = 0; pass < 2; pass++) {
        // pass 1 maps every role onto the three known ones, so the family's main paths are reached
        if (pass == 1)
            for (int i = 0; i < n; i++) msgs[i].role = (const char *[]){"system", "user", "assistant"}[(unsigned char)msgs[i].role[0] % 3];
        char *out = ll_chat_render(k, msgs, n, add_assistant, bos, eos);
        if (!out) abort(); // NULL only when out of memory
        for (int i = 0; i < n; i++)
            if (pass == 1 && !contains_trimmed(out, msgs[i].content) &&
                (strcmp(msgs[i].role, "system") || system_is_rendered(k, msgs, n, i))) {
                fprintf(stderr, "fuzz_chat: %s dropped message %d's content\n", name, i);
                abort();
            }
        g_sink += strlen(out);
        free(out);
    }
    const char *const *stops = ll_chat_stops(k);
    if (!stops) abort();
    for (int i = 0; stops[i]; i++)
        if (!*stops[i] || i > 16) abort();
    free(buf);
    return 0;
}
