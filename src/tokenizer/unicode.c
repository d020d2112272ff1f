// unicode.c — UTF-8 decoding the way llama.cpp's tokenizer does it, strict validation for the streaming
// detokenizer, and GPT-2's bytes_to_unicode map (byte-level BPE: every byte is a printable code point).
#include "tokenizer/tok_internal.h"

// llama.cpp's decoder: a lead byte announces the length; only the continuation bits are checked (no overlong,
// surrogate or range checks). A malformed sequence yields U+FFFD for its first byte.
uint32_t ll_utf8_next(const uint8_t *s, size_t n, size_t *pos) {
    size_t i = *pos;
    uint8_t b = s[i];
    size_t need = b < 0x80 ? 0 : (b & 0x40) == 0 ? SIZE_MAX : (b & 0x20) == 0 ? 1 : (b & 0x10) == 0 ? 2
                : (b & 0x08) == 0 ? 3 : SIZE_MAX;
    if (need == 0) {
        *pos = i + 1;
        return b;
    }
    if (need == SIZE_MAX || n - i <= need) goto bad;
    static const uint8_t lead_mask[4] = {0, 0x1f, 0x0f, 0x07};
    uint32_t cp = b & lead_mask[need];
    for (size_t k = 1; k <= need; k++) {
        if ((s[i + k] & 0xc0) != 0x80) goto bad;
        cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    *pos = i + need + 1;
    return cp;
bad:
    *pos = i + 1;
    return 0xFFFD;
}

int ll_utf8_put(uint32_t cp, char *out) {
    if (cp > 0x10FFFF) cp = 0xFFFD;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

// RFC 3629 well-formed sequences (Unicode Table 3-7): the second byte's range depends on the lead byte.
int ll_utf8_check(const uint8_t *s, size_t n, size_t *len) {
    uint8_t b = s[0];
    if (b < 0x80) {
        *len = 1;
        return 1;
    }
    size_t need;
    uint8_t lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
        need = 2;
        if (b == 0xe0) lo = 0xa0;
        if (b == 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        need = 3;
        if (b == 0xf0) lo = 0x90;
        if (b == 0xf4) hi = 0x8f;
    } else {
        *len = 1;
        return -1;
    }
    for (size_t k = 1; k <= need; k++) {
        if (k >= n) {
            *len = k;
            return 0;
        }
        uint8_t c = s[k];
        if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xbf)) {
            *len = k; // the maximal valid prefix becomes one U+FFFD; c starts over
            return -1;
        }
    }
    *len = need + 1;
    return 1;
}

// GPT-2 encoder.py bytes_to_unicode(): printable bytes (0x21-0x7e, 0xa1-0xac, 0xae-0xff) keep their value; the
// other 68 take 256, 257, ... in byte order: 0x00-0x20 -> 256-288, 0x7f-0xa0 -> 289-322, 0xad -> 323.
uint32_t ll_bpe_byte_to_cp(uint8_t b) {
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7f && b <= 0xa0) return b + 162u;
    if (b == 0xad) return 323;
    return b;
}

int ll_bpe_cp_to_byte(uint32_t cp) {
    if (cp <= 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad) return -1; // not in the map's image
    if (cp <= 0xff) return (int)cp;
    if (cp <= 288) return (int)(cp - 256);
    if (cp <= 322) return (int)(cp - 162);
    if (cp == 323) return 0xad;
    return -1;
}
