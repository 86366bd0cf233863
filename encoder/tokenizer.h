/* encoder/tokenizer.h — SentencePiece (BPE, byte fallback) tokenizer, as pi0 uses.
 *
 * Loads a SentencePiece `tokenizer.model` (protobuf ModelProto) and encodes text exactly as
 * spm_encode does for BPE models with identity normalization (Gemma/PaliGemma's settings):
 * merges by piece score, unknown characters as <0xNN> byte pieces. Other normalizations
 * (a non-empty precompiled charsmap) and unigram models are refused with RTV_E_UNSUPPORTED.
 * A loaded tokenizer is immutable and may be shared by threads. encode allocates nothing: it
 * works in buffers sized at load for RTV_TOKENIZER_MAX_TEXT bytes of text, guarded by a mutex
 * (concurrent encode calls on one tokenizer take turns). Not real-time safe; call it when the
 * task changes.
 */
#ifndef RTV_TOKENIZER_H
#define RTV_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct rtv_tokenizer rtv_tokenizer;

/* Longest text (bytes, without the NUL) encode accepts; longer text is RTV_E_ARG. */
#define RTV_TOKENIZER_MAX_TEXT 4096

int rtv_tokenizer_load(rtv_tokenizer **out, const char *path);
/* Same from bytes in memory (name is used in messages); the bytes are not kept. */
int rtv_tokenizer_load_bytes(rtv_tokenizer **out, const char *name, const void *bytes,
                             size_t len);
void rtv_tokenizer_free(rtv_tokenizer *t);
/* Encodes text (UTF-8) into ids[max_ids]; *n_out = tokens written. If the text needs more
 * than max_ids tokens, writes the first max_ids and sets *n_needed (may be NULL) to the full
 * count. add_bos prepends the BOS id. */
int rtv_tokenizer_encode(const rtv_tokenizer *t, const char *text, int add_bos, int32_t *ids,
                         int max_ids, int *n_out, int *n_needed);
int rtv_tokenizer_vocab_size(const rtv_tokenizer *t);
int rtv_tokenizer_bos(const rtv_tokenizer *t); /* -1 if the model has none */
int rtv_tokenizer_eos(const rtv_tokenizer *t);
int rtv_tokenizer_pad(const rtv_tokenizer *t);
const char *rtv_tokenizer_piece(const rtv_tokenizer *t, int id); /* NULL if out of range */
/* Writes a valid SentencePiece BPE model with byte fallback and exactly vocab_size pieces
 * (ids 0 pad, 1 eos, 2 bos, 3 unk, then the 256 byte pieces, then characters and merges),
 * for seeded checkpoints. spm_encode must accept it. vocab_size >= 300. */
int rtv_tokenizer_write_synthetic(const char *path, int vocab_size);

#endif
