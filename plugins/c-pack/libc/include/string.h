/* The part of <string.h> the pack and the generated bindings use, for a freestanding
 * wasm32 build (no libc, no WASI). Implemented in ../string.c. The compiler may also
 * emit calls to memcpy, memmove and memset on its own (struct copies, zeroing). */
#ifndef C_PACK_LIBC_STRING_H
#define C_PACK_LIBC_STRING_H

#include <stddef.h>

void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#endif
