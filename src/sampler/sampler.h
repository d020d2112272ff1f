// sampler.h — the sampler's entries for the engine beyond llmlab.h: sampling from the best few candidates that a
// device backend selected (ll_sample), so the whole logits row need not cross to the host.
#ifndef LL_SAMPLER_H
#define LL_SAMPLER_H

#include "core/core.h"

// The most candidates ll_sampler_top_wanted asks for (a backend's top-k bound: backend.h's topk).
#define LL_SAMPLER_TOP_MAX 512

// How many of the best logits (by value, the lower id first among equals) decide s's next draw: 1 when greedy,
// top_k + 1 with top-k on (the extra one tells that more than top_k were there); 0 when the chain needs every
// logit (top-k off or above LL_SAMPLER_TOP_MAX, or a repetition penalty with history).
int ll_sampler_top_wanted(const ll_sampler *s);

// The id ll_sampler_sample would give on the whole row, from its n best (n <= ll_sampler_top_wanted(s), best
// first; vals finite, as ll_sampler_sample loads them: NaN and -inf left out, +inf as FLT_MAX). false (and
// the RNG untouched) when n is too few to decide it: the caller then samples the whole row.
bool ll_sampler_sample_top(ll_sampler *s, const float *vals, const int32_t *ids, int n, int32_t *out);

#endif
