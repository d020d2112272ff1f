// test_chat.c — chat templates: family detection on typical Jinja excerpts of each family, and rendering of
// known conversations compared with the texts the reference Jinja templates produce, written out by hand.
#include "testutil.h"

#include "chat/chat.h"

static const ll_chat_msg conv3[] = {
    {"system", "You are terse."},
    {"user", "Hi!"},
    {"assistant", "Hello."},
    {"user", "2+2?"},
};
#define N_CONV3 4

static void expect_render(ll_chat_kind k, const ll_chat_msg *m, int n, bool add, const char *bos, const char *eos,
                          const char *want) {
    char *got = ll_chat_render(k, m, n, add, bos, eos);
    assert_non_null(got);
    if (strcmp(got, want) != 0) printf("# %s: got  [%s]\n# want [%s]\n", ll_chat_name(k), got, want);
    assert_string_equal(got, want);
    free(got);
}

// Excerpts in the style of the families' tokenizer.chat_template values.
static const char *jinja_chatml =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
static const char *jinja_llama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
static const char *jinja_llama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif "
    "%}{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = "
    "'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
    "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + "
    "' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif "
    "%}{% endfor %}";
static const char *jinja_mistral =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}";
static const char *jinja_zephyr = // a family we do not know: plain
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + "
    "eos_token }}{% endif %}{% endfor %}";

static void test_detect(void **state) {
    (void)state;
    assert_int_equal(ll_chat_detect(jinja_chatml), LL_CHAT_CHATML);
    assert_int_equal(ll_chat_detect(jinja_llama3), LL_CHAT_LLAMA3);
    assert_int_equal(ll_chat_detect(jinja_llama2), LL_CHAT_LLAMA2);
    assert_int_equal(ll_chat_detect(jinja_mistral), LL_CHAT_MISTRAL);
    assert_int_equal(ll_chat_detect(jinja_zephyr), LL_CHAT_PLAIN);
    assert_int_equal(ll_chat_detect(NULL), LL_CHAT_PLAIN);
    assert_int_equal(ll_chat_detect(""), LL_CHAT_PLAIN);
    // ChatML wins over an [INST] mentioned elsewhere in the same template.
    assert_int_equal(ll_chat_detect("{# [INST] #}{{ '<|im_start|>' }}"), LL_CHAT_CHATML);
}

static void test_names(void **state) {
    (void)state;
    const char *names[] = {"llama2", "mistral", "llama3", "chatml", "plain"};
    const ll_chat_kind kinds[] = {LL_CHAT_LLAMA2, LL_CHAT_MISTRAL, LL_CHAT_LLAMA3, LL_CHAT_CHATML, LL_CHAT_PLAIN};
    for (int i = 0; i < 5; i++) {
        ll_chat_kind k = LL_CHAT_PLAIN;
        assert_true(ll_chat_from_name(names[i], &k));
        assert_int_equal(k, kinds[i]);
        assert_string_equal(ll_chat_name(kinds[i]), names[i]);
    }
    ll_chat_kind k;
    assert_true(ll_chat_from_name("ChatML", &k));
    assert_int_equal(k, LL_CHAT_CHATML);
    assert_false(ll_chat_from_name("llama", &k));
    assert_false(ll_chat_from_name("", &k));
    assert_false(ll_chat_from_name(NULL, &k));
    assert_false(ll_chat_from_name("zephyr", &k));
}

static void test_chatml(void **state) {
    (void)state;
    expect_render(LL_CHAT_CHATML, conv3, N_CONV3, true, NULL, NULL,
                  "<|im_start|>system\nYou are terse.<|im_end|>\n"
                  "<|im_start|>user\nHi!<|im_end|>\n"
                  "<|im_start|>assistant\nHello.<|im_end|>\n"
                  "<|im_start|>user\n2+2?<|im_end|>\n"
                  "<|im_start|>assistant\n");
    // Contents verbatim (no trim), no generation prompt without add_assistant.
    const ll_chat_msg m[] = {{"user", " spaced \n"}};
    expect_render(LL_CHAT_CHATML, m, 1, false, "<s>", "</s>", "<|im_start|>user\n spaced \n<|im_end|>\n");
}

static void test_llama3(void **state) {
    (void)state;
    expect_render(LL_CHAT_LLAMA3, conv3, N_CONV3, true, "<|begin_of_text|>", "<|end_of_text|>",
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    // | trim; default BOS text when none is given.
    const ll_chat_msg m[] = {{"user", "\n  Why?\t \n"}};
    expect_render(LL_CHAT_LLAMA3, m, 1, false, NULL, NULL,
                  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhy?<|eot_id|>");
}

static void test_llama2(void **state) {
    (void)state;
    expect_render(LL_CHAT_LLAMA2, conv3, N_CONV3, true, "<s>", "</s>",
                  "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] 2+2? [/INST]");
    // Without a system message; contents stripped.
    const ll_chat_msg m[] = {{"user", "  Hi there \n"}, {"assistant", " Hey "}, {"user", "Bye"}};
    expect_render(LL_CHAT_LLAMA2, m, 3, false, NULL, NULL,
                  "<s>[INST] Hi there [/INST] Hey </s><s>[INST] Bye [/INST]");
    // add_assistant changes nothing: the turn is already open.
    expect_render(LL_CHAT_LLAMA2, m, 1, true, "<s>", "</s>", "<s>[INST] Hi there [/INST]");
}

static void test_mistral(void **state) {
    (void)state;
    // Mistral-7B-Instruct-v0.1's template with bos "<s>", eos "</s>" (system folded into the first user turn).
    expect_render(LL_CHAT_MISTRAL, conv3, N_CONV3, true, "<s>", "</s>",
                  "<s>[INST] You are terse.\n\nHi! [/INST]Hello.</s> [INST] 2+2? [/INST]");
    const ll_chat_msg m[] = {{"user", "Hello, how are you?"},
                             {"assistant", "I'm doing great. How can I help you today?"},
                             {"user", "I'd like to show off how chat templating works!"}};
    expect_render(LL_CHAT_MISTRAL, m, 3, false, "<s>", "</s>",
                  "<s>[INST] Hello, how are you? [/INST]I'm doing great. How can I help you today?</s> "
                  "[INST] I'd like to show off how chat templating works! [/INST]");
}

static void test_plain_and_edges(void **state) {
    (void)state;
    expect_render(LL_CHAT_PLAIN, conv3, N_CONV3, true, NULL, NULL,
                  "You are terse.\n\nUser: Hi!\nAssistant: Hello.\nUser: 2+2?\nAssistant:");
    // Empty conversation: "" (not NULL) everywhere; the generation prompt alone where there is one.
    expect_render(LL_CHAT_CHATML, NULL, 0, false, NULL, NULL, "");
    expect_render(LL_CHAT_CHATML, NULL, 0, true, NULL, NULL, "<|im_start|>assistant\n");
    expect_render(LL_CHAT_LLAMA3, NULL, 0, false, NULL, NULL, "");
    // NULL content renders as empty.
    const ll_chat_msg m[] = {{"user", NULL}};
    expect_render(LL_CHAT_CHATML, m, 1, false, NULL, NULL, "<|im_start|>user\n<|im_end|>\n");
}

static void test_stops(void **state) {
    (void)state;
    const ll_chat_kind kinds[] = {LL_CHAT_LLAMA2, LL_CHAT_MISTRAL, LL_CHAT_LLAMA3, LL_CHAT_CHATML, LL_CHAT_PLAIN};
    const char *must[] = {"</s>", "</s>", "<|eot_id|>", "<|im_end|>", "\nUser:"};
    for (int i = 0; i < 5; i++) {
        const char *const *s = ll_chat_stops(kinds[i]);
        assert_non_null(s);
        bool found = false;
        int n = 0;
        for (; s[n]; n++) found |= strcmp(s[n], must[i]) == 0;
        assert_true(n >= 1 && n < 8);
        assert_true(found);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),  cmocka_unit_test(test_names),   cmocka_unit_test(test_chatml),
        cmocka_unit_test(test_llama3),  cmocka_unit_test(test_llama2),  cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_plain_and_edges), cmocka_unit_test(test_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
