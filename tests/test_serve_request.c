// test_serve_request.c — `llmlab serve`'s request layer alone (src/serve/request.c, no engine, no HTTP): what a
// valid body turns into (values, defaults per API, content parts, stop lists), and a table of bodies that must be
// refused with the right status and the offending field named; the error bodies' two shapes.
#include "testutil.h"

#include <cjson/cJSON.h>

#include "serve/request.h"

static const srv_limits k_lim = {.max_tokens = 1024};

static bool parse(srv_api api, const char *body, srv_request *r, srv_error *e) {
    memset(e, 0, sizeof *e);
    return srv_request_parse(api, body, strlen(body), &k_lim, r, e);
}

static void test_openai_chat_fields(void **state) {
    (void)state;
    srv_request r;
    srv_error e;
    assert_true(parse(SRV_OPENAI_CHAT,
                      "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
                      "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
                      "{\"role\":\"assistant\",\"content\":null}],\"max_completion_tokens\":7,\"max_tokens\":99,"
                      "\"temperature\":0.25,\"top_p\":0.5,\"seed\":12,\"stop\":[\"x\",\"yz\"],\"stream\":true,"
                      "\"stream_options\":{\"include_usage\":true},\"n\":1,\"presence_penalty\":0,\"user\":\"u\",\"extra\":{},\"cache_prompt\":false}",
                      &r, &e));
    assert_string_equal(r.model, "m");
    assert_int_equal(r.n_msgs, 3);
    assert_string_equal(r.msgs[0].role, "system"); // developer -> system
    assert_string_equal(r.msgs[1].content, "ab");  // text parts joined
    assert_string_equal(r.msgs[2].content, "");    // null content
    assert_int_equal(r.max_tokens, 7);             // max_completion_tokens wins
    assert_true(r.temperature == 0.25 && r.top_p == 0.5 && r.has_seed && r.seed == 12);
    assert_int_equal(r.n_stops, 2);
    assert_string_equal(r.stops[1], "yz");
    assert_true(r.stream && r.include_usage && !r.cache_prompt);
    srv_request_free(&r);
}

static void test_defaults(void **state) {
    (void)state;
    srv_request r;
    srv_error e;
    assert_true(parse(SRV_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"hi\",\"stop\":\"\\n\"}", &r, &e));
    assert_true(r.temperature == 1 && r.top_p == 1 && r.top_k == 0 && r.repeat_penalty == 1 && !r.stream && r.cache_prompt);
    assert_int_equal(r.max_tokens, -1);
    assert_int_equal(r.n_stops, 1);
    srv_request_free(&r);
    assert_true(parse(SRV_OLLAMA_CHAT, "{\"model\":\"m:latest\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                                       "\"options\":null,\"keep_alive\":\"5m\",\"format\":\"\"}", &r, &e));
    // Ollama's documented defaults; it streams unless told not to
    assert_true(r.temperature == 0.8 && r.top_p == 0.9 && r.top_k == 40 && r.repeat_penalty == 1.1 && r.stream);
    srv_request_free(&r);
    assert_true(parse(SRV_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":\"p\",\"system\":\"s\",\"raw\":true,\"stream\":false,"
                                           "\"options\":{\"num_predict\":-2,\"temperature\":0,\"stop\":[\"q\"],\"seed\":-1}}",
                      &r, &e));
    assert_true(r.raw && !r.stream && r.temperature == 0 && !r.has_seed);
    assert_int_equal(r.max_tokens, -1);
    assert_string_equal(r.system, "s");
    assert_string_equal(r.stops[0], "q");
    srv_request_free(&r);
}

typedef struct bad_case {
    srv_api api;
    const char *body;
    int http;
    const char *param; // NULL: not checked
} bad_case;

static void test_refusals(void **state) {
    (void)state;
    static const bad_case k[] = {
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":-5}", 400, "max_tokens"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", 400, "max_tokens"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1025}", 400, "max_tokens"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2.5}", 400, "max_tokens"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":2.5}", 400, "temperature"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":\"1\"}", 400, "top_p"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":1.5}", 400, "seed"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", 400, "n"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"\"]}", 400, "stop"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}", 400, "stop"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                          "\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}", 400, "stop"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{}]}", 400, "tools"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"frequency_penalty\":1}", 400, "frequency_penalty"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_object\"}}", 400, "response_format"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 400, "messages[0].role"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400, "messages[0].content"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", 400, "messages[0].content"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[]}", 400, "messages"},
        {SRV_OPENAI_CHAT, "{\"model\":\"m\"}", 400, "messages"},
        {SRV_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "model"},
        {SRV_OPENAI_CHAT, "{\"model\":7,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "model"},
        {SRV_OPENAI_CHAT, "[1,2]", 400, NULL},
        {SRV_OPENAI_CHAT, "{\"model\":", 400, NULL},
        {SRV_OPENAI_CHAT, "", 400, NULL},
        {SRV_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", 400, "prompt"},
        {SRV_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"a\",\"echo\":true}", 400, "echo"},
        {SRV_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"options\":{\"num_predict\":0}}", 400, "num_predict"},
        {SRV_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"options\":[]}", 400, "options"},
        {SRV_OLLAMA_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"format\":\"json\"}", 400, "format"},
        {SRV_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":\"x\",\"images\":[\"aGk=\"]}", 400, "images"},
        {SRV_OLLAMA_GENERATE, "{\"model\":\"m\",\"prompt\":\"x\",\"context\":[1,2]}", 400, "context"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        srv_request r;
        srv_error e;
        bool ok = parse(k[i].api, k[i].body, &r, &e);
        if (ok || e.http != k[i].http || (k[i].param && strcmp(e.param, k[i].param)) || !e.message[0])
            fail_msg("case %zu (%s): ok %d http %d param '%s' message '%s'", i, k[i].body, ok, e.http, e.param, e.message);
    }
}

static void test_bounds(void **state) {
    (void)state;
    srv_request r;
    srv_error e;
    // nesting deeper than SRV_MAX_JSON_DEPTH is refused before cJSON recurses
    char deep[200] = "{\"model\":\"m\",\"x\":";
    for (int i = 0; i < 40; i++) strcat(deep, "[");
    assert_false(parse(SRV_OPENAI_CHAT, deep, &r, &e));
    assert_int_equal(e.http, 400);
    assert_non_null(strstr(e.message, "nested"));
    // 257 messages
    size_t cap = 64 + 257 * 40;
    char *b = malloc(cap);
    strcpy(b, "{\"model\":\"m\",\"messages\":[");
    for (int i = 0; i < 257; i++) strcat(b, i ? ",{\"role\":\"user\",\"content\":\"x\"}" : "{\"role\":\"user\",\"content\":\"x\"}");
    strcat(b, "]}");
    assert_false(parse(SRV_OPENAI_CHAT, b, &r, &e));
    assert_string_equal(e.param, "messages");
    free(b);
    // a body over SRV_MAX_BODY: 413 without parsing
    size_t big = SRV_MAX_BODY + 1;
    char *body = malloc(big);
    memset(body, ' ', big);
    assert_false(srv_request_parse(SRV_OPENAI_CHAT, body, big, &k_lim, &r, &e));
    assert_int_equal(e.http, 413);
    free(body);
}

static void test_error_shapes(void **state) {
    (void)state;
    srv_error e;
    srv_error_set(&e, 401, "invalid_request_error", "invalid_api_key", NULL, "bad \"key\"");
    char *s = srv_error_json(&e, false);
    cJSON *o = cJSON_Parse(s), *err = cJSON_GetObjectItem(o, "error");
    assert_string_equal(cJSON_GetObjectItem(err, "message")->valuestring, "bad \"key\"");
    assert_string_equal(cJSON_GetObjectItem(err, "code")->valuestring, "invalid_api_key");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(err, "param")));
    cJSON_Delete(o);
    free(s);
    s = srv_error_json(&e, true);
    o = cJSON_Parse(s);
    assert_string_equal(cJSON_GetObjectItem(o, "error")->valuestring, "bad \"key\"");
    cJSON_Delete(o);
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_chat_fields), cmocka_unit_test(test_defaults), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_bounds), cmocka_unit_test(test_error_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
