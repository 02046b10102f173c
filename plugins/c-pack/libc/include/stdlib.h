/* The part of <stdlib.h> the pack and the generated bindings use, for a freestanding
 * wasm32 build (no libc, no WASI). Implemented in ../malloc.c. */
#ifndef C_PACK_LIBC_STDLIB_H
#define C_PACK_LIBC_STDLIB_H

#include <stddef.h>

void *malloc(size_t size);
void *calloc(size_t count, size_t size);
void *realloc(void *ptr, size_t size);
void free(void *ptr);
_Noreturn void abort(void);

#endif
