/* A small, deterministic allocator for one single-threaded WebAssembly instance.
 *
 * Blocks come in power-of-two size classes, from 16 bytes to 1 GiB. Each block starts
 * with an 8-byte header that records its class, so free() and realloc() know its size.
 * A freed block goes onto the free list of its class and is reused before new memory is
 * taken. New blocks are cut from the top of the heap, and the linear memory grows (in
 * 64 KiB pages) when the heap reaches its end. Memory is never handed back to the host:
 * an instance's footprint is its peak use, rounded up to powers of two.
 *
 * Every payload is 8-byte aligned, the largest alignment the `safety:rules` types need
 * (the canonical ABI asks cabi_realloc for at most 4 here).
 */
#include <stdlib.h>

#include <stdint.h>
#include <string.h>

#define HEADER_SIZE 8u
#define MIN_CLASS 4u  /* 16-byte blocks: a header and 8 bytes of payload */
#define MAX_CLASS 30u /* 1 GiB blocks */
#define PAGE_SIZE 65536u

/* Defined by wasm-ld: the first byte after the stack and the static data. */
extern unsigned char __heap_base;

typedef struct free_block {
    struct free_block *next;
} free_block_t;

static free_block_t *free_lists[MAX_CLASS + 1];
static uintptr_t heap_top; /* the next unused byte; 0 until the first allocation */

/* The smallest class whose blocks hold `size` payload bytes, or 0 if none does. */
static unsigned class_for(size_t size) {
    if (size > ((size_t)1 << MAX_CLASS) - HEADER_SIZE) return 0;
    unsigned class = MIN_CLASS;
    while (((size_t)1 << class) - HEADER_SIZE < size) class++;
    return class;
}

static uint32_t *header_of(void *payload) {
    return (uint32_t *)((uint8_t *)payload - HEADER_SIZE);
}

/* Makes sure the linear memory reaches `end`, growing it if needed. */
static int reserve(uint64_t end) {
    uint64_t have = (uint64_t)__builtin_wasm_memory_size(0) * PAGE_SIZE;
    if (end <= have) return 1;
    uint64_t pages = (end - have + PAGE_SIZE - 1) / PAGE_SIZE;
    return __builtin_wasm_memory_grow(0, (size_t)pages) != (size_t)-1;
}

void *malloc(size_t size) {
    unsigned class = class_for(size);
    if (class == 0) return NULL;

    uint8_t *block;
    if (free_lists[class] != NULL) {
        block = (uint8_t *)free_lists[class];
        free_lists[class] = free_lists[class]->next;
    } else {
        if (heap_top == 0) heap_top = ((uintptr_t)&__heap_base + 7u) & ~(uintptr_t)7u;
        uint64_t end = (uint64_t)heap_top + ((uint64_t)1 << class);
        if (end > UINTPTR_MAX || !reserve(end)) return NULL;
        block = (uint8_t *)heap_top;
        heap_top = (uintptr_t)end;
    }
    *(uint32_t *)block = class;
    return block + HEADER_SIZE;
}

void *calloc(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    void *p = malloc(count * size);
    if (p != NULL) memset(p, 0, count * size);
    return p;
}

void free(void *ptr) {
    if (ptr == NULL) return;
    uint32_t class = *header_of(ptr);
    free_block_t *block = (free_block_t *)header_of(ptr);
    block->next = free_lists[class];
    free_lists[class] = block;
}

void *realloc(void *ptr, size_t size) {
    if (ptr == NULL) return malloc(size);
    size_t capacity = ((size_t)1 << *header_of(ptr)) - HEADER_SIZE;
    if (size <= capacity) return ptr;
    void *bigger = malloc(size);
    if (bigger == NULL) return NULL;
    memcpy(bigger, ptr, capacity);
    free(ptr);
    return bigger;
}

_Noreturn void abort(void) {
    __builtin_trap();
}
