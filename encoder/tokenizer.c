/* encoder/tokenizer.c — SentencePiece BPE: a hand-written ModelProto reader, the identity
 * normalizer and the BPE merge loop of sentencepiece (normalizer.cc, bpe_model.cc,
 * sentencepiece_processor.cc), and a writer for seeded synthetic models.
 *
 * Field numbers (sentencepiece_model.proto): ModelProto {pieces=1, trainer_spec=2,
 * normalizer_spec=3}; SentencePiece {piece=1, score=2 (float), type=3}; TrainerSpec
 * {model_type=3, vocab_size=4, treat_whitespace_as_suffix=24, byte_fallback=35, unk_id=40,
 * bos_id=41, eos_id=42, pad_id=43, unk_piece=45, bos_piece=46, eos_piece=47, pad_piece=48};
 * NormalizerSpec {name=1, precompiled_charsmap=2, add_dummy_prefix=3,
 * remove_extra_whitespaces=4, escape_whitespaces=5}.
 */
#include "encoder/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/status.h"

enum { P_NORMAL = 1, P_UNKNOWN = 2, P_CONTROL = 3, P_USER = 4, P_UNUSED = 5, P_BYTE = 6 };
enum { MT_UNIGRAM = 1, MT_BPE = 2, MT_WORD = 3, MT_CHAR = 4 };

#define MAX_MODEL_BYTES (256u << 20)
#define SPACE_SYM "\xe2\x96\x81" /* U+2581 */

/* Work area for one encode call (sizes for RTV_TOKENIZER_MAX_TEXT bytes of text). */
#define W_NORM (3 * RTV_TOKENIZER_MAX_TEXT + 8)
#define W_SYM (RTV_TOKENIZER_MAX_TEXT + 2)
#define W_HEAP (3 * W_SYM)
#define W_REV 32768 /* power of two > 2 * W_HEAP */

typedef struct tok_pair {
    float score;
    int32_t left, right;
    uint32_t size;
} tok_pair;

typedef struct tok_work {
    char norm[W_NORM];
    int32_t prev[W_SYM], next[W_SYM];
    uint32_t start[W_SYM], len[W_SYM];
    uint8_t freeze[W_SYM];
    tok_pair heap[W_HEAP];
    int32_t rev_id[W_REV];    /* UNUSED piece id -> byte length of its left part */
    uint32_t rev_left[W_REV];
    int32_t rev_used[W_HEAP]; /* slots to clear after the call */
    uint32_t stack[2 * W_NORM];
} tok_work;

struct rtv_tokenizer {
    char *path;
    int n;
    char *arena;      /* piece strings, NUL-terminated */
    uint32_t *off;    /* [n] offsets into arena */
    uint32_t *plen;   /* [n] byte lengths */
    float *score;     /* [n] */
    uint8_t *type;    /* [n] */
    /* Open-addressing tables of ids: pieces (NORMAL/USER_DEFINED/UNUSED), reserved pieces
     * (CONTROL/UNKNOWN/BYTE), user-defined pieces. */
    int32_t *h_piece, *h_res, *h_user;
    uint32_t hmask;
    uint8_t user_maxlen[256]; /* longest user-defined piece starting with this byte */
    int byte_id[256];
    int unk, bos, eos, pad;
    int byte_fallback, add_dummy_prefix, remove_extra_ws, escape_ws, ws_suffix;
    pthread_mutex_t mu;
    tok_work *w;
};

/* ---- hashing ---- */

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int h_find(const rtv_tokenizer *t, const int32_t *tab, const char *s, size_t n)
{
    for (uint32_t i = hash_bytes(s, n) & t->hmask;; i = (i + 1) & t->hmask) {
        int32_t id = tab[i];
        if (id < 0) return -1;
        if (t->plen[id] == n && !memcmp(t->arena + t->off[id], s, n)) return id;
    }
}

static int h_insert(rtv_tokenizer *t, int32_t *tab, int id)
{
    const char *s = t->arena + t->off[id];
    size_t n = t->plen[id];
    for (uint32_t i = hash_bytes(s, n) & t->hmask;; i = (i + 1) & t->hmask) {
        if (tab[i] < 0) { tab[i] = id; return 1; }
        if (t->plen[tab[i]] == n && !memcmp(t->arena + t->off[tab[i]], s, n)) return 0;
    }
}

/* ---- protobuf reading ---- */

typedef struct pb {
    const uint8_t *p, *end;
    const char *path;
    const char *msg; /* message name for errors */
    const uint8_t *base;
} pb;

static int pb_varint(pb *r, uint64_t *v)
{
    uint64_t x = 0;
    *v = 0;
    for (int sh = 0; sh < 70; sh += 7) {
        if (r->p >= r->end)
            return rtv_fail(RTV_E_INPUT, "%s: truncated varint in %s at byte %zu", r->path,
                            r->msg, (size_t)(r->p - r->base));
        uint8_t b = *r->p++;
        if (sh < 64) x |= (uint64_t)(b & 0x7f) << sh;
        if (!(b & 0x80)) { *v = x; return RTV_OK; }
    }
    return rtv_fail(RTV_E_INPUT, "%s: varint longer than 10 bytes in %s at byte %zu", r->path,
                    r->msg, (size_t)(r->p - r->base));
}

/* Reads one tag; *field = 0 at the end of the message. */
static int pb_tag(pb *r, uint32_t *field, int *wt)
{
    if (r->p >= r->end) { *field = 0; return RTV_OK; }
    uint64_t v;
    int rc = pb_varint(r, &v);
    if (rc) return rc;
    *field = (uint32_t)(v >> 3);
    *wt = (int)(v & 7);
    if (*field == 0 || v >> 32)
        return rtv_fail(RTV_E_INPUT, "%s: invalid field number in %s at byte %zu", r->path,
                        r->msg, (size_t)(r->p - r->base));
    return RTV_OK;
}

static int pb_bytes(pb *r, const uint8_t **s, size_t *n)
{
    uint64_t l = 0;
    *s = NULL;
    *n = 0;
    int rc = pb_varint(r, &l);
    if (rc) return rc;
    if (l > (uint64_t)(r->end - r->p))
        return rtv_fail(RTV_E_INPUT, "%s: length %llu in %s at byte %zu runs past the end (%zu "
                        "bytes left)", r->path, (unsigned long long)l, r->msg,
                        (size_t)(r->p - r->base), (size_t)(r->end - r->p));
    *s = r->p;
    *n = (size_t)l;
    r->p += l;
    return RTV_OK;
}

static int pb_skip(pb *r, uint32_t field, int wt)
{
    uint64_t v;
    const uint8_t *s;
    size_t n;
    switch (wt) {
    case 0: return pb_varint(r, &v);
    case 1:
        if (r->end - r->p < 8) break;
        r->p += 8;
        return RTV_OK;
    case 2: return pb_bytes(r, &s, &n);
    case 5:
        if (r->end - r->p < 4) break;
        r->p += 4;
        return RTV_OK;
    default:
        return rtv_fail(RTV_E_INPUT, "%s: field %u of %s has wire type %d (groups and unknown "
                        "types are not valid here)", r->path, field, r->msg, wt);
    }
    return rtv_fail(RTV_E_INPUT, "%s: truncated field %u in %s", r->path, field, r->msg);
}

static int pb_want(pb *r, uint32_t field, int wt, int want, const char *name)
{
    if (wt == want) return RTV_OK;
    return rtv_fail(RTV_E_INPUT, "%s: %s.%s (field %u) has wire type %d, expected %d", r->path,
                    r->msg, name, field, wt, want);
}

static pb pb_sub(const pb *r, const uint8_t *s, size_t n, const char *msg)
{
    pb c = {s, s + n, r->path, msg, r->base};
    return c;
}

/* ---- loading ---- */

typedef struct tok_spec {
    int model_type, byte_fallback, ws_suffix;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    size_t charsmap_len;
    char norm_name[64];
    char unk_piece[64], bos_piece[64], eos_piece[64], pad_piece[64];
} tok_spec;

static int copy_str(pb *r, char *dst, size_t cap, const char *name)
{
    const uint8_t *s;
    size_t n;
    int rc = pb_bytes(r, &s, &n);
    if (rc) return rc;
    if (n >= cap)
        return rtv_fail(RTV_E_INPUT, "%s: %s.%s is %zu bytes long (at most %zu)", r->path,
                        r->msg, name, n, cap - 1);
    memcpy(dst, s, n);
    dst[n] = 0;
    return RTV_OK;
}

static int parse_trainer(pb *r, tok_spec *sp)
{
    uint32_t f;
    int wt, rc;
    uint64_t v;
    for (;;) {
        if ((rc = pb_tag(r, &f, &wt))) return rc;
        if (!f) return RTV_OK;
        switch (f) {
        case 3: case 24: case 35:
            if ((rc = pb_want(r, f, wt, 0, f == 3 ? "model_type" : f == 24 ?
                              "treat_whitespace_as_suffix" : "byte_fallback")) ||
                (rc = pb_varint(r, &v)))
                return rc;
            if (f == 3) sp->model_type = (int)(int32_t)v;
            else if (f == 24) sp->ws_suffix = v != 0;
            else sp->byte_fallback = v != 0;
            break;
        case 45: case 46: case 47: case 48: {
            static const char *nm[] = {"unk_piece", "bos_piece", "eos_piece", "pad_piece"};
            char *dst[] = {sp->unk_piece, sp->bos_piece, sp->eos_piece, sp->pad_piece};
            if ((rc = pb_want(r, f, wt, 2, nm[f - 45])) ||
                (rc = copy_str(r, dst[f - 45], 64, nm[f - 45])))
                return rc;
            break;
        }
        default:
            if ((rc = pb_skip(r, f, wt))) return rc;
        }
    }
}

static int parse_normalizer(pb *r, tok_spec *sp)
{
    uint32_t f;
    int wt, rc;
    uint64_t v;
    const uint8_t *s;
    size_t n;
    for (;;) {
        if ((rc = pb_tag(r, &f, &wt))) return rc;
        if (!f) return RTV_OK;
        switch (f) {
        case 1:
            if ((rc = pb_want(r, f, wt, 2, "name")) ||
                (rc = copy_str(r, sp->norm_name, sizeof(sp->norm_name), "name")))
                return rc;
            break;
        case 2:
            if ((rc = pb_want(r, f, wt, 2, "precompiled_charsmap")) || (rc = pb_bytes(r, &s, &n)))
                return rc;
            sp->charsmap_len = n;
            break;
        case 3: case 4: case 5:
            if ((rc = pb_want(r, f, wt, 0, f == 3 ? "add_dummy_prefix" : f == 4 ?
                              "remove_extra_whitespaces" : "escape_whitespaces")) ||
                (rc = pb_varint(r, &v)))
                return rc;
            if (f == 3) sp->add_dummy_prefix = v != 0;
            else if (f == 4) sp->remove_extra_ws = v != 0;
            else sp->escape_ws = v != 0;
            break;
        default:
            if ((rc = pb_skip(r, f, wt))) return rc;
        }
    }
}

/* Growable piece list used while parsing. */
typedef struct tok_build {
    char *arena;
    size_t arena_n, arena_cap;
    uint32_t *off, *plen;
    float *score;
    uint8_t *type;
    int n, cap;
} tok_build;

static int build_add(tok_build *b, const uint8_t *s, size_t n, float score, int type)
{
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 1024;
        uint32_t *o = realloc(b->off, (size_t)cap * sizeof(*o));
        if (o) b->off = o;
        uint32_t *l = realloc(b->plen, (size_t)cap * sizeof(*l));
        if (l) b->plen = l;
        float *sc = realloc(b->score, (size_t)cap * sizeof(*sc));
        if (sc) b->score = sc;
        uint8_t *ty = realloc(b->type, (size_t)cap);
        if (ty) b->type = ty;
        if (!o || !l || !sc || !ty) return RTV_E_NOMEM;
        b->cap = cap;
    }
    if (b->arena_n + n + 1 > b->arena_cap) {
        size_t cap = b->arena_cap ? b->arena_cap : 65536;
        while (cap < b->arena_n + n + 1) cap *= 2;
        char *a = realloc(b->arena, cap);
        if (!a) return RTV_E_NOMEM;
        b->arena = a;
        b->arena_cap = cap;
    }
    memcpy(b->arena + b->arena_n, s, n);
    b->arena[b->arena_n + n] = 0;
    b->off[b->n] = (uint32_t)b->arena_n;
    b->plen[b->n] = (uint32_t)n;
    b->score[b->n] = score;
    b->type[b->n] = (uint8_t)type;
    b->arena_n += n + 1;
    b->n++;
    return RTV_OK;
}

static int parse_piece(pb *r, tok_build *b, int index)
{
    uint32_t f;
    int wt, rc, type = P_NORMAL;
    uint64_t v;
    const uint8_t *s = NULL;
    size_t n = 0;
    float score = 0.0f;
    for (;;) {
        if ((rc = pb_tag(r, &f, &wt))) return rc;
        if (!f) break;
        if (f == 1) {
            if ((rc = pb_want(r, f, wt, 2, "piece")) || (rc = pb_bytes(r, &s, &n))) return rc;
        } else if (f == 2) {
            if ((rc = pb_want(r, f, wt, 5, "score"))) return rc;
            if (r->end - r->p < 4)
                return rtv_fail(RTV_E_INPUT, "%s: truncated score of piece %d", r->path, index);
            uint32_t u = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
                         (uint32_t)r->p[3] << 24;
            memcpy(&score, &u, 4);
            r->p += 4;
        } else if (f == 3) {
            if ((rc = pb_want(r, f, wt, 0, "type")) || (rc = pb_varint(r, &v))) return rc;
            type = (int)(int32_t)v;
        } else if ((rc = pb_skip(r, f, wt))) {
            return rc;
        }
    }
    if (!s || !n)
        return rtv_fail(RTV_E_INPUT, "%s: piece %d is empty", r->path, index);
    if (n > 65535)
        return rtv_fail(RTV_E_INPUT, "%s: piece %d is %zu bytes long", r->path, index, n);
    if (type < P_NORMAL || type > P_BYTE)
        return rtv_fail(RTV_E_INPUT, "%s: piece %d has type %d (valid: 1..6)", r->path, index,
                        type);
    if (isnan(score))
        return rtv_fail(RTV_E_INPUT, "%s: piece %d has score NaN", r->path, index);
    if (build_add(b, s, n, score, type))
        return rtv_fail(RTV_E_NOMEM, "%s: out of memory at piece %d", r->path, index);
    return RTV_OK;
}

static int parse_model(const char *path, const uint8_t *buf, size_t len, tok_build *b,
                       tok_spec *sp)
{
    pb r = {buf, buf + len, path, "ModelProto", buf};
    uint32_t f;
    int wt, rc;
    const uint8_t *s;
    size_t n;
    for (;;) {
        if ((rc = pb_tag(&r, &f, &wt))) return rc;
        if (!f) return RTV_OK;
        if (f >= 1 && f <= 3) {
            if ((rc = pb_want(&r, f, wt, 2, f == 1 ? "pieces" : f == 2 ? "trainer_spec" :
                              "normalizer_spec")) ||
                (rc = pb_bytes(&r, &s, &n)))
                return rc;
            if (f == 1) {
                pb c = pb_sub(&r, s, n, "SentencePiece");
                if ((rc = parse_piece(&c, b, b->n))) return rc;
            } else if (f == 2) {
                pb c = pb_sub(&r, s, n, "TrainerSpec");
                if ((rc = parse_trainer(&c, sp))) return rc;
            } else {
                pb c = pb_sub(&r, s, n, "NormalizerSpec");
                if ((rc = parse_normalizer(&c, sp))) return rc;
            }
        } else if ((rc = pb_skip(&r, f, wt))) {
            return rc;
        }
    }
}

static int byte_piece_value(const char *s, size_t n)
{
    /* "<0xNN>" with upper-case hex, as sentencepiece's ByteToPiece writes it. */
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    return v;
}

static int special_id(const rtv_tokenizer *t, const char *piece, int want_type)
{
    size_t n = strlen(piece);
    int id = h_find(t, t->h_res, piece, n);
    if (id < 0) id = h_find(t, t->h_piece, piece, n);
    return id >= 0 && t->type[id] == want_type ? id : -1;
}

static int index_pieces(rtv_tokenizer *t, const tok_spec *sp)
{
    const char *path = t->path;
    uint32_t size = 16;
    while (size < 2u * (uint32_t)t->n + 16) size *= 2;
    t->hmask = size - 1;
    t->h_piece = malloc(size * sizeof(int32_t));
    t->h_res = malloc(size * sizeof(int32_t));
    t->h_user = malloc(size * sizeof(int32_t));
    if (!t->h_piece || !t->h_res || !t->h_user)
        return rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
    memset(t->h_piece, 0xff, size * sizeof(int32_t));
    memset(t->h_res, 0xff, size * sizeof(int32_t));
    memset(t->h_user, 0xff, size * sizeof(int32_t));
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    t->unk = -1;
    int n_bytes = 0;
    for (int i = 0; i < t->n; i++) {
        int ty = t->type[i];
        const char *s = t->arena + t->off[i];
        int normal = ty == P_NORMAL || ty == P_USER || ty == P_UNUSED;
        if (!h_insert(t, normal ? t->h_piece : t->h_res, i))
            return rtv_fail(RTV_E_INPUT, "%s: piece %d '%.40s' is already defined", path, i, s);
        if (ty == P_USER) {
            h_insert(t, t->h_user, i);
            uint8_t c = (uint8_t)s[0];
            uint32_t l = t->plen[i] > 255 ? 255 : t->plen[i];
            if (t->plen[i] > 255)
                return rtv_fail(RTV_E_UNSUPPORTED, "%s: user-defined piece %d is %u bytes long "
                                "(at most 255 supported)", path, i, t->plen[i]);
            if (l > t->user_maxlen[c]) t->user_maxlen[c] = (uint8_t)l;
        }
        if (ty == P_UNKNOWN) {
            if (t->unk >= 0)
                return rtv_fail(RTV_E_INPUT, "%s: pieces %d and %d are both UNKNOWN", path,
                                t->unk, i);
            t->unk = i;
        }
        if (ty == P_BYTE) {
            if (!sp->byte_fallback)
                return rtv_fail(RTV_E_INPUT, "%s: byte piece %d '%.40s' found although "
                                "trainer_spec.byte_fallback is false", path, i, s);
            int v = byte_piece_value(s, t->plen[i]);
            if (v < 0)
                return rtv_fail(RTV_E_INPUT, "%s: byte piece %d '%.40s' is not <0xNN>", path, i,
                                s);
            if (t->byte_id[v] < 0) n_bytes++;
            t->byte_id[v] = i;
        }
    }
    if (t->unk < 0) return rtv_fail(RTV_E_INPUT, "%s: no UNKNOWN piece (unk)", path);
    if (sp->byte_fallback && n_bytes != 256)
        return rtv_fail(RTV_E_INPUT, "%s: byte_fallback is on but only %d of the 256 byte pieces "
                        "exist", path, n_bytes);
    t->bos = special_id(t, sp->bos_piece, P_CONTROL);
    t->eos = special_id(t, sp->eos_piece, P_CONTROL);
    t->pad = special_id(t, sp->pad_piece, P_CONTROL);
    return RTV_OK;
}

static const char *model_type_name(int m)
{
    switch (m) {
    case MT_UNIGRAM: return "UNIGRAM";
    case MT_BPE: return "BPE";
    case MT_WORD: return "WORD";
    case MT_CHAR: return "CHAR";
    }
    return "unknown";
}

int rtv_tokenizer_load(rtv_tokenizer **out, const char *path)
{
    *out = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = RTV_OK;
    FILE *f = fopen(path, "rb");
    if (!f)
        return rtv_fail(errno == ENOENT ? RTV_E_INPUT : RTV_E_OS, "%s: cannot open: %s", path,
                        strerror(errno));
    if (fseek(f, 0, SEEK_END) == 0) {
        long sz = ftell(f);
        if (sz < 0 || (unsigned long)sz > MAX_MODEL_BYTES) {
            fclose(f);
            return rtv_fail(RTV_E_INPUT, "%s: %ld bytes; a tokenizer model is at most %u", path,
                            sz, MAX_MODEL_BYTES);
        }
        len = (size_t)sz;
        rewind(f);
    }
    buf = malloc(len ? len : 1);
    if (!buf) {
        fclose(f);
        return rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
    }
    if (fread(buf, 1, len, f) != len) {
        fclose(f);
        free(buf);
        return rtv_fail(RTV_E_OS, "%s: read error", path);
    }
    fclose(f);
    rc = rtv_tokenizer_load_bytes(out, path, buf, len);
    free(buf);
    return rc;
}

int rtv_tokenizer_load_bytes(rtv_tokenizer **out, const char *name, const void *bytes,
                             size_t len)
{
    *out = NULL;
    tok_spec sp = {.model_type = MT_UNIGRAM, .add_dummy_prefix = 1, .remove_extra_ws = 1,
                   .escape_ws = 1};
    snprintf(sp.unk_piece, sizeof(sp.unk_piece), "<unk>");
    snprintf(sp.bos_piece, sizeof(sp.bos_piece), "<s>");
    snprintf(sp.eos_piece, sizeof(sp.eos_piece), "</s>");
    snprintf(sp.pad_piece, sizeof(sp.pad_piece), "<pad>");
    tok_build b = {0};
    rtv_tokenizer *t = calloc(1, sizeof(*t));
    if (!t || !(t->path = strdup(name))) {
        free(t);
        return rtv_fail(RTV_E_NOMEM, "%s: out of memory", name);
    }
    pthread_mutex_init(&t->mu, NULL);
    int rc = parse_model(name, bytes, len, &b, &sp);
    t->arena = b.arena;
    t->off = b.off;
    t->plen = b.plen;
    t->score = b.score;
    t->type = b.type;
    t->n = b.n;
    if (rc) goto fail;
    if (t->n == 0) {
        rc = rtv_fail(RTV_E_INPUT, "%s: no pieces (not a SentencePiece model?)", name);
        goto fail;
    }
    if (sp.model_type != MT_BPE) {
        rc = rtv_fail(RTV_E_UNSUPPORTED, "%s: trainer_spec.model_type is %s (%d); rtvla encodes "
                      "BPE models only", name, model_type_name(sp.model_type), sp.model_type);
        goto fail;
    }
    if (sp.charsmap_len) {
        rc = rtv_fail(RTV_E_UNSUPPORTED, "%s: normalizer_spec '%s' has a %zu-byte precompiled "
                      "charsmap; rtvla supports identity normalization only", name,
                      sp.norm_name, sp.charsmap_len);
        goto fail;
    }
    if ((rc = index_pieces(t, &sp))) goto fail;
    t->byte_fallback = sp.byte_fallback;
    t->add_dummy_prefix = sp.add_dummy_prefix;
    t->remove_extra_ws = sp.remove_extra_ws;
    t->escape_ws = sp.escape_ws;
    t->ws_suffix = sp.ws_suffix;
    if (!(t->w = malloc(sizeof(*t->w)))) {
        rc = rtv_fail(RTV_E_NOMEM, "%s: out of memory for the encode work area", name);
        goto fail;
    }
    memset(t->w->rev_id, 0xff, sizeof(t->w->rev_id));
    *out = t;
    return RTV_OK;
fail:
    rtv_tokenizer_free(t);
    return rc;
}

void rtv_tokenizer_free(rtv_tokenizer *t)
{
    if (!t) return;
    pthread_mutex_destroy(&t->mu);
    free(t->w);
    free(t->h_piece);
    free(t->h_res);
    free(t->h_user);
    free(t->arena);
    free(t->off);
    free(t->plen);
    free(t->score);
    free(t->type);
    free(t->path);
    free(t);
}

int rtv_tokenizer_vocab_size(const rtv_tokenizer *t) { return t->n; }
int rtv_tokenizer_bos(const rtv_tokenizer *t) { return t->bos; }
int rtv_tokenizer_eos(const rtv_tokenizer *t) { return t->eos; }
int rtv_tokenizer_pad(const rtv_tokenizer *t) { return t->pad; }

const char *rtv_tokenizer_piece(const rtv_tokenizer *t, int id)
{
    return id >= 0 && id < t->n ? t->arena + t->off[id] : NULL;
}

/* ---- encoding ---- */

/* Longest user-defined piece at s[0..n), 0 if none. */
static int user_match(const rtv_tokenizer *t, const char *s, size_t n)
{
    size_t m = t->user_maxlen[(uint8_t)s[0]];
    if (m > n) m = n;
    for (; m > 0; m--)
        if (h_find(t, t->h_user, s, m) >= 0) return (int)m;
    return 0;
}

static int one_char_len(uint8_t c)
{
    static const uint8_t l[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return l[c >> 4];
}

static int is_trail(uint8_t c) { return (c & 0xc0) == 0x80; }

static int valid_cp(uint32_t c) { return c < 0xd800 || (c >= 0xe000 && c <= 0x10ffff); }

/* sentencepiece's DecodeUTF8 + IsValidDecodeUTF8: length of a valid character at s, or 0. */
static int utf8_valid_len(const uint8_t *s, size_t n)
{
    uint32_t c;
    if (s[0] < 0x80) return 1;
    if (n >= 2 && (s[0] & 0xe0) == 0xc0) {
        c = (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
        if (is_trail(s[1]) && c >= 0x80 && valid_cp(c)) return 2;
    } else if (n >= 3 && (s[0] & 0xf0) == 0xe0) {
        c = (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
        if (is_trail(s[1]) && is_trail(s[2]) && c >= 0x800 && valid_cp(c)) return 3;
    } else if (n >= 4 && (s[0] & 0xf8) == 0xf0) {
        c = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 |
            (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
        if (is_trail(s[1]) && is_trail(s[2]) && is_trail(s[3]) && c >= 0x10000 && valid_cp(c))
            return 4;
    }
    return 0;
}

/* normalizer.cc NormalizePrefix for identity rules: the output piece and bytes consumed. */
static void norm_prefix(const rtv_tokenizer *t, const char *s, size_t n, const char **o,
                        size_t *olen, size_t *used)
{
    int m = user_match(t, s, n);
    if (m) {
        *o = s;
        *olen = *used = (size_t)m;
        return;
    }
    int l = utf8_valid_len((const uint8_t *)s, n);
    if (!l) {
        *o = "\xef\xbf\xbd"; /* U+FFFD for a malformed byte, which alone is consumed */
        *olen = 3;
        *used = 1;
        return;
    }
    *o = s;
    *olen = *used = (size_t)l;
}

static size_t normalize(const rtv_tokenizer *t, const char *in, size_t n, char *out)
{
    size_t k = 0, pos = 0;
    const char *o;
    size_t ol, used;
    if (t->remove_extra_ws)
        while (pos < n) {
            norm_prefix(t, in + pos, n - pos, &o, &ol, &used);
            if (ol != 1 || o[0] != ' ') break;
            pos += used;
        }
    if (pos >= n) return 0;
    const char *ws = t->escape_ws ? SPACE_SYM : " ";
    size_t wsl = t->escape_ws ? 3 : 1;
    if (!t->ws_suffix && t->add_dummy_prefix) {
        memcpy(out + k, ws, wsl);
        k += wsl;
    }
    int prev_space = t->remove_extra_ws;
    while (pos < n) {
        norm_prefix(t, in + pos, n - pos, &o, &ol, &used);
        while (prev_space && ol && o[0] == ' ') {
            o++;
            ol--;
        }
        if (ol) {
            for (size_t i = 0; i < ol; i++) {
                if (t->escape_ws && o[i] == ' ') {
                    memcpy(out + k, SPACE_SYM, 3);
                    k += 3;
                } else {
                    out[k++] = o[i];
                }
            }
            prev_space = o[ol - 1] == ' ';
        }
        pos += used;
        if (!t->remove_extra_ws) prev_space = 0;
    }
    if (t->remove_extra_ws)
        while (k >= wsl && !memcmp(out + k - wsl, ws, wsl)) k -= wsl;
    if (t->ws_suffix && t->add_dummy_prefix) {
        memcpy(out + k, ws, wsl);
        k += wsl;
    }
    return k;
}

static int pair_better(const tok_pair *a, const tok_pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(tok_pair *h, int *n, tok_pair p)
{
    int i = (*n)++;
    while (i > 0) {
        int up = (i - 1) / 2;
        if (!pair_better(&p, &h[up])) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = p;
}

static tok_pair heap_pop(tok_pair *h, int *n)
{
    tok_pair top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && pair_better(&h[c + 1], &h[c])) c++;
        if (!pair_better(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

typedef struct enc_state {
    const rtv_tokenizer *t;
    tok_work *w;
    int n_heap, n_rev;
    int32_t *ids;
    int max_ids, count, prev_unk;
} enc_state;

static void rev_put(enc_state *e, int id, uint32_t left_len)
{
    tok_work *w = e->w;
    uint32_t i = ((uint32_t)id * 2654435761u) & (W_REV - 1);
    while (w->rev_id[i] >= 0 && w->rev_id[i] != id) i = (i + 1) & (W_REV - 1);
    if (w->rev_id[i] < 0) {
        w->rev_id[i] = id;
        w->rev_used[e->n_rev++] = (int32_t)i;
    }
    w->rev_left[i] = left_len; /* the latest pair wins, as in bpe_model.cc */
}

static int rev_get(const enc_state *e, int id, uint32_t *left_len)
{
    const tok_work *w = e->w;
    for (uint32_t i = ((uint32_t)id * 2654435761u) & (W_REV - 1); w->rev_id[i] >= 0;
         i = (i + 1) & (W_REV - 1))
        if (w->rev_id[i] == id) {
            *left_len = w->rev_left[i];
            return 1;
        }
    return 0;
}

static void maybe_add_pair(enc_state *e, int l, int r)
{
    tok_work *w = e->w;
    if (l < 0 || r < 0 || w->freeze[l] || w->freeze[r]) return;
    uint32_t size = w->len[l] + w->len[r];
    int id = h_find(e->t, e->t->h_piece, w->norm + w->start[l], size);
    if (id < 0) return;
    tok_pair p = {e->t->score[id], l, r, size};
    heap_push(w->heap, &e->n_heap, p);
    if (e->t->type[id] == P_UNUSED) rev_put(e, id, w->len[l]);
}

static void emit(enc_state *e, int id)
{
    if (e->count < e->max_ids) e->ids[e->count] = id;
    e->count++;
}

/* sentencepiece_processor.cc PopulateSentencePieceText for one piece. */
static int emit_piece(enc_state *e, const char *s, uint32_t n, int id)
{
    const rtv_tokenizer *t = e->t;
    if (t->type[id] == P_CONTROL)
        return rtv_fail(RTV_E_INPUT, "%s: text contains '%.*s', a control piece of the model",
                        t->path, (int)n, s);
    int unk = t->type[id] == P_UNKNOWN;
    if (unk && t->byte_fallback) {
        for (uint32_t i = 0; i < n; i++) emit(e, t->byte_id[(uint8_t)s[i]]);
    } else if (!(unk && e->prev_unk)) {
        emit(e, id); /* a run of unknown pieces becomes one unk */
    }
    e->prev_unk = unk;
    return RTV_OK;
}

static int piece_to_id(const rtv_tokenizer *t, const char *s, uint32_t n)
{
    int id = h_find(t, t->h_res, s, n);
    if (id < 0) id = h_find(t, t->h_piece, s, n);
    return id < 0 ? t->unk : id;
}

/* Emits the symbol at norm[start, start+n), splitting merged UNUSED pieces back into the pair
 * they were made from (bpe_model.cc resegment), depth first, left before right. */
static int resegment(enc_state *e, uint32_t start, uint32_t n)
{
    tok_work *w = e->w;
    int sp = 0, rc;
    w->stack[sp++] = start;
    w->stack[sp++] = n;
    while (sp) {
        uint32_t l = w->stack[--sp], s0 = w->stack[--sp];
        const char *s = w->norm + s0;
        int id = piece_to_id(e->t, s, l);
        uint32_t left;
        if (e->t->type[id] == P_UNUSED && rev_get(e, id, &left) && left > 0 && left < l) {
            w->stack[sp++] = s0 + left;
            w->stack[sp++] = l - left;
            w->stack[sp++] = s0;
            w->stack[sp++] = left;
            continue;
        }
        if ((rc = emit_piece(e, s, l, id))) return rc;
    }
    return RTV_OK;
}

static int encode_locked(const rtv_tokenizer *t, const char *text, size_t n, enc_state *e)
{
    tok_work *w = e->w;
    size_t nl = normalize(t, text, n, w->norm);
    if (!nl) return RTV_OK;
    /* Initial symbols: user-defined pieces (frozen) or single UTF-8 characters. */
    int ns = 0;
    for (size_t p = 0; p < nl; ns++) {
        int m = user_match(t, w->norm + p, nl - p);
        w->freeze[ns] = m > 0;
        if (!m) {
            m = one_char_len((uint8_t)w->norm[p]);
            if ((size_t)m > nl - p) m = (int)(nl - p);
        }
        w->start[ns] = (uint32_t)p;
        w->len[ns] = (uint32_t)m;
        w->prev[ns] = ns - 1;
        p += (size_t)m;
        w->next[ns] = p < nl ? ns + 1 : -1;
    }
    e->n_heap = 0;
    for (int i = 1; i < ns; i++) maybe_add_pair(e, i - 1, i);
    while (e->n_heap) {
        tok_pair top = heap_pop(w->heap, &e->n_heap);
        int l = top.left, r = top.right;
        if (!w->len[l] || !w->len[r] || w->len[l] + w->len[r] != top.size) continue;
        w->len[l] += w->len[r];
        w->next[l] = w->next[r];
        if (w->next[r] >= 0) w->prev[w->next[r]] = l;
        w->len[r] = 0;
        maybe_add_pair(e, w->prev[l], l);
        maybe_add_pair(e, l, w->next[l]);
    }
    for (int i = 0; i != -1; i = w->next[i]) {
        int rc = resegment(e, w->start[i], w->len[i]);
        if (rc) return rc;
    }
    return RTV_OK;
}

int rtv_tokenizer_encode(const rtv_tokenizer *t, const char *text, int add_bos, int32_t *ids,
                         int max_ids, int *n_out, int *n_needed)
{
    *n_out = 0;
    if (n_needed) *n_needed = 0;
    if (max_ids < 0 || (max_ids > 0 && !ids))
        return rtv_fail(RTV_E_ARG, "tokenizer encode: ids buffer of %d entries", max_ids);
    size_t n = strnlen(text, RTV_TOKENIZER_MAX_TEXT + 1);
    if (n > RTV_TOKENIZER_MAX_TEXT)
        return rtv_fail(RTV_E_ARG, "tokenizer encode: text is longer than %d bytes",
                        RTV_TOKENIZER_MAX_TEXT);
    if (add_bos && t->bos < 0)
        return rtv_fail(RTV_E_ARG, "%s: BOS requested but the model has no CONTROL piece for "
                        "it", t->path);
    rtv_tokenizer *mt = (rtv_tokenizer *)t; /* the mutex and work area only */
    pthread_mutex_lock(&mt->mu);
    enc_state e = {t, mt->w, 0, 0, ids, max_ids, 0, 0};
    if (add_bos) emit(&e, t->bos);
    int rc = encode_locked(t, text, n, &e);
    for (int i = 0; i < e.n_rev; i++) mt->w->rev_id[mt->w->rev_used[i]] = -1;
    pthread_mutex_unlock(&mt->mu);
    if (rc) return rc;
    *n_out = e.count < max_ids ? e.count : max_ids;
    if (n_needed) *n_needed = e.count;
    return RTV_OK;
}

/* ---- synthetic model writer ---- */

typedef struct pbw {
    uint8_t *p;
    size_t n, cap;
    int oom;
} pbw;

static void w_bytes(pbw *b, const void *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void w_varint(pbw *b, uint64_t v)
{
    uint8_t tmp[10];
    int k = 0;
    do {
        tmp[k] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) tmp[k] |= 0x80;
        k++;
    } while (v);
    w_bytes(b, tmp, (size_t)k);
}

static void w_tag(pbw *b, uint32_t field, int wt) { w_varint(b, (uint64_t)field << 3 | (uint64_t)wt); }

static void w_int(pbw *b, uint32_t field, int64_t v)
{
    w_tag(b, field, 0);
    w_varint(b, (uint64_t)v); /* negative int32: 10-byte sign extension, as protobuf does */
}

static void w_lenbytes(pbw *b, uint32_t field, const void *s, size_t n)
{
    w_tag(b, field, 2);
    w_varint(b, n);
    w_bytes(b, s, n);
}

static void w_piece(pbw *b, const char *s, float score, int type)
{
    uint8_t tmp[64]; /* synthetic pieces are < 40 bytes: one-byte lengths */
    size_t n = strlen(s);
    size_t k = 0;
    tmp[k++] = 1 << 3 | 2;
    tmp[k++] = (uint8_t)n;
    memcpy(tmp + k, s, n);
    k += n;
    tmp[k++] = 2 << 3 | 5;
    uint32_t u;
    memcpy(&u, &score, 4);
    for (int i = 0; i < 4; i++) tmp[k++] = (uint8_t)(u >> (8 * i));
    tmp[k++] = 3 << 3 | 0;
    tmp[k++] = (uint8_t)type;
    w_lenbytes(b, 1, tmp, k);
}

/* Characters in rough English frequency order, then the rest of printable ASCII. */
static const char synth_chars[] =
    "etaonisrhldcumfpgwybvkxjqzETAOINSRHLDCUMFPGWYBVKXJQZ0123456789.,'\"-!?:;()/&%$#@*+=<>[]"
    "\\^_`{|}~";
static const char *const synth_bigrams[] = {
    "th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of",
    "ed", "is", "it", "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le",
    "ve", "co", "me", "de", "hi", "ri", "ro", "ic", "ne", "ea", "ra", "ce", "li", "ch", "ll",
    "be", "ma", "si", "om", "ur", "ck", "ow", "ip", "ub", "up", "ft", "ht", "gh", "pp", "ee",
};
static const char *const synth_words[] = {
    "the", "put", "pick", "up", "red", "blue", "green", "yellow", "cube", "block", "bowl", "in",
    "on", "to", "and", "of", "a", "place", "move", "left", "right", "open", "close", "drawer",
    "gripper", "arm", "cup", "plate", "box", "push", "pull", "grasp", "lift", "stack", "top",
    "fold", "towel", "pour", "water", "into", "from", "table", "robot", "object", "take", "it",
    "with", "is", "this", "that", "door", "handle", "turn", "down", "small", "large", "then",
};

typedef struct synth {
    char (*piece)[48];
    float *score;
    uint8_t *type;
    int n, cap;
} synth;

static int synth_has(const synth *s, const char *p, int from)
{
    for (int i = from; i < s->n; i++)
        if (!strcmp(s->piece[i], p)) return 1;
    return 0;
}

static void synth_add(synth *s, const char *p, float score, int type)
{
    if (s->n >= s->cap) return;
    snprintf(s->piece[s->n], sizeof(s->piece[0]), "%s", p);
    s->score[s->n] = score;
    s->type[s->n] = (uint8_t)type;
    s->n++;
}

int rtv_tokenizer_write_synthetic(const char *path, int vocab_size)
{
    if (vocab_size < 300 || vocab_size > (1 << 24))
        return rtv_fail(RTV_E_ARG, "%s: synthetic tokenizer vocab_size %d (300..16777216)", path,
                        vocab_size);
    synth s = {0};
    s.cap = vocab_size;
    s.piece = malloc((size_t)vocab_size * sizeof(*s.piece));
    s.score = malloc((size_t)vocab_size * sizeof(*s.score));
    s.type = malloc((size_t)vocab_size);
    pbw b = {0};
    int rc = RTV_OK;
    if (!s.piece || !s.score || !s.type) {
        rc = rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    synth_add(&s, "<pad>", 0, P_CONTROL);
    synth_add(&s, "</s>", 0, P_CONTROL);
    synth_add(&s, "<s>", 0, P_CONTROL);
    synth_add(&s, "<unk>", 0, P_UNKNOWN);
    for (int i = 0; i < 256; i++) {
        char p[8];
        snprintf(p, sizeof(p), "<0x%02X>", i);
        synth_add(&s, p, 0, P_BYTE);
    }
    int first_char = s.n;
    float sc = -1000000.0f;
    synth_add(&s, SPACE_SYM, sc--, P_NORMAL);
    synth_add(&s, "\n", sc--, P_NORMAL);
    synth_add(&s, "\t", sc--, P_NORMAL);
    for (const char *c = synth_chars; *c; c++) {
        char p[2] = {*c, 0};
        synth_add(&s, p, sc--, P_NORMAL);
    }
    int first_merge = s.n;
    float ms = 0.0f;
    for (size_t i = 0; i < sizeof(synth_bigrams) / sizeof(synth_bigrams[0]); i++) {
        const char *g = synth_bigrams[i];
        char l[2] = {g[0], 0}, r[2] = {g[1], 0};
        if (synth_has(&s, l, first_char) && synth_has(&s, r, first_char) &&
            !synth_has(&s, g, first_merge))
            synth_add(&s, g, ms--, P_NORMAL);
    }
    /* Words as chains of prefixes ("▁p", "▁pi", "▁pic", "▁pick"): every merge joins two
     * existing pieces, so BPE can reach the whole word. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < sizeof(synth_words) / sizeof(synth_words[0]); i++) {
            const char *word = synth_words[i];
            int ok = 1;
            for (const char *c = word; *c; c++) {
                char p[2] = {*c, 0};
                if (!synth_has(&s, p, first_char)) ok = 0;
            }
            if (!ok) continue;
            char p[48];
            size_t L = strlen(word);
            for (size_t k = pass == 0 ? 1 : 2; k <= L; k++) {
                snprintf(p, sizeof(p), "%s%.*s", pass == 0 ? SPACE_SYM : "", (int)k, word);
                if (!synth_has(&s, p, first_char)) synth_add(&s, p, ms--, P_NORMAL);
            }
        }
    for (int i = 0; s.n < vocab_size; i++) {
        char p[40];
        snprintf(p, sizeof(p), "<unused%d>", i);
        synth_add(&s, p, 0, P_UNUSED);
    }
    for (int i = 0; i < s.n; i++) w_piece(&b, s.piece[i], s.score[i], s.type[i]);
    {
        pbw ts = {0};
        w_int(&ts, 3, MT_BPE);
        w_int(&ts, 4, vocab_size);
        w_int(&ts, 35, 1);
        w_int(&ts, 40, 3);
        w_int(&ts, 41, 2);
        w_int(&ts, 42, 1);
        w_int(&ts, 43, 0);
        w_lenbytes(&b, 2, ts.p, ts.n);
        int oom = ts.oom;
        free(ts.p);
        pbw nsp = {0};
        w_lenbytes(&nsp, 1, "identity", 8);
        w_int(&nsp, 3, 0); /* add_dummy_prefix: off, as Gemma */
        w_int(&nsp, 4, 0); /* remove_extra_whitespaces: off */
        w_int(&nsp, 5, 1); /* escape_whitespaces: on */
        w_lenbytes(&b, 3, nsp.p, nsp.n);
        oom |= nsp.oom;
        free(nsp.p);
        if (oom) b.oom = 1;
    }
    if (b.oom) {
        rc = rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (!tmp) {
        rc = rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = rtv_fail(RTV_E_OS, "%s: cannot create: %s", tmp, strerror(errno));
    } else {
        int bad = fwrite(b.p, 1, b.n, f) != b.n;
        bad |= fclose(f) != 0;
        if (bad) rc = rtv_fail(RTV_E_OS, "%s: write failed", tmp);
        else if (rename(tmp, path))
            rc = rtv_fail(RTV_E_OS, "%s: cannot rename into place: %s", path, strerror(errno));
        if (rc) unlink(tmp);
    }
    free(tmp);
out:
    free(b.p);
    free(s.piece);
    free(s.score);
    free(s.type);
    return rc;
}
