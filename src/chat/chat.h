// chat.h — chat templates: detect the family from tokenizer.chat_template (Jinja text, matched by
// fingerprint, not executed) and render a conversation into the prompt text the model was trained on.
#ifndef LL_CHAT_H
#define LL_CHAT_H

#include <stdbool.h>
#include <stddef.h>

typedef enum ll_chat_kind {
    LL_CHAT_LLAMA2,  // Llama-2 / Mistral: <s>[INST] <<SYS>>..<</SYS>> user [/INST] answer </s>
    LL_CHAT_MISTRAL, // Mistral v0.1: <s>[INST] user [/INST]answer</s> [INST] ... (no <<SYS>>; system folded into user)
    LL_CHAT_LLAMA3,  // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
    LL_CHAT_CHATML,  // <|im_start|>role\ncontent<|im_end|>\n (Qwen, SmolLM)
    LL_CHAT_PLAIN,   // fallback: "User: ...\nAssistant: ..."
} ll_chat_kind;

typedef struct ll_chat_msg {
    const char *role; // "system", "user", "assistant"
    const char *content;
} ll_chat_msg;

// From the GGUF's template text (NULL or unknown: LL_CHAT_PLAIN).
ll_chat_kind ll_chat_detect(const char *jinja);
// From a --template name: llama2, mistral, llama3, chatml, plain. false when unknown.
bool ll_chat_from_name(const char *name, ll_chat_kind *out);
const char *ll_chat_name(ll_chat_kind k);
// Render msgs; add_assistant opens the assistant turn. bos/eos are the vocabulary's texts ("<s>", "</s>"),
// used by templates that spell them (NULL or "": "<s>"/"</s>", Llama-3 "<|begin_of_text|>"). Returns a malloc'd
// NUL-terminated string (NULL only when out of memory); the caller frees it.
// The text is exactly what the reference Jinja renders, so it already holds the BOS text for Llama-2, Mistral
// and Llama-3: tokenize it with parse_special = true (control texts -> their ids) and add_special = false (no
// second BOS). Llama-2/Mistral have no generation prompt (the turn is open after "[/INST]"), so add_assistant
// changes nothing for them.
char *ll_chat_render(ll_chat_kind k, const ll_chat_msg *msgs, int n, bool add_assistant, const char *bos,
                     const char *eos);
// Extra stop strings of the template's end-of-turn ("<|im_end|>", "<|eot_id|>") and of the start of a next turn
// ("<|im_start|>", "[INST]", "\nUser:"), NULL-terminated list.
const char *const *ll_chat_stops(ll_chat_kind k);

#endif
