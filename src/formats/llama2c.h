// llama2c.h — llama2.c checkpoints (legacy 7-int32 header, and the "ak42" version-1 export) with their
// tokenizer.bin, presented as an in-memory GGUF (arch "llama", F32 tensor views into the mapped file), so
// the model and tokenizer code read one format. `llmlab convert` writes that GGUF to disk.
#ifndef LL_LLAMA2C_H
#define LL_LLAMA2C_H

#include "formats/gguf.h"

// true when the file does not start with the GGUF magic (callers then try llama2.c).
bool ll_llama2c_probe(const char *path);
ll_status ll_llama2c_open(ll_gguf **out, const char *ckpt_path, const char *tokenizer_path, ll_error *err);

#endif
