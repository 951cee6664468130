/*
 * reuse.c: an LD_PRELOAD library under which calloc() hands back the block
 * of the same size freed last, as an allocator may at any time, for the
 * tests of code that must not tell objects apart by their address (an ABA:
 * a pointer compared equal although the object was freed and another one
 * took its place).  Built by the tests (cc -shared -fPIC reuse.c -ldl).
 *
 * Only blocks that calloc() returned are kept back: free() puts them on one
 * list (never giving them back to the real allocator), and a calloc() of
 * the same total size takes the newest of them, zeroed.  realloc() of such
 * a block forgets it (the real allocator owns the result).  Any thread: one
 * spin lock guards the list and the table of calloc()ed blocks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define TABLE_SIZE (1u << 18)   /* calloc()ed blocks alive at once, at most */

struct freed {
	struct freed *next;
	size_t size;
};

static void *(*real_calloc)(size_t, size_t);
static void (*real_free)(void *);
static void *(*real_realloc)(void *, size_t);
static atomic_flag lock = ATOMIC_FLAG_INIT;
static void *blocks[TABLE_SIZE];          /* calloc()ed and not freed; open addressing */
static size_t sizes[TABLE_SIZE];
static struct freed *freed;               /* newest first */
static char bootstrap[4096];              /* for dlsym()'s own calloc() */
static size_t bootstrap_used;

static void take_lock(void)
{
	while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire))
		;
}

static void drop_lock(void)
{
	atomic_flag_clear_explicit(&lock, memory_order_release);
}

static size_t slot_of(const void *p)
{
	size_t i = ((uintptr_t)p >> 4) & (TABLE_SIZE - 1);

	while (blocks[i] != NULL && blocks[i] != p)
		i = (i + 1) & (TABLE_SIZE - 1);
	return i;
}

/* Removes slot i, moving later entries of its run back (no tombstones). */
static void remove_slot(size_t i)
{
	blocks[i] = NULL;
	for (size_t j = (i + 1) & (TABLE_SIZE - 1); blocks[j]; j = (j + 1) & (TABLE_SIZE - 1)) {
		void *p = blocks[j];
		size_t size = sizes[j];
		blocks[j] = NULL;
		size_t k = slot_of(p);
		blocks[k] = p;
		sizes[k] = size;
	}
}

static void *take_freed(size_t size)
{
	for (struct freed **f = &freed; *f; f = &(*f)->next) {
		if ((*f)->size == size) {
			struct freed *block = *f;
			*f = block->next;
			return block;
		}
	}
	return NULL;
}

void *calloc(size_t count, size_t size)
{
	size_t total = count * size;

	if (real_calloc == NULL) {
		if (bootstrap_used + total > sizeof(bootstrap))
			return NULL;
		void *p = bootstrap + bootstrap_used;
		bootstrap_used += (total + 15) & ~(size_t)15;
		real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
		real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
		return p;
	}
	take_lock();
	void *p = total >= sizeof(struct freed) ? take_freed(total) : NULL;
	drop_lock();
	if (p)
		memset(p, 0, total);
	else if ((p = real_calloc(count, size)) == NULL || total < sizeof(struct freed))
		return p;
	take_lock();
	size_t i = slot_of(p);
	blocks[i] = p;
	sizes[i] = total;
	drop_lock();
	return p;
}

void free(void *p)
{
	if (p == NULL || ((char *)p >= bootstrap && (char *)p < bootstrap + sizeof(bootstrap)))
		return;
	take_lock();
	size_t i = slot_of(p);
	if (blocks[i] == p) {
		struct freed *block = p;
		block->size = sizes[i];
		block->next = freed;
		freed = block;
		remove_slot(i);
		drop_lock();
		return;
	}
	drop_lock();
	if (real_free == NULL)
		real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
	real_free(p);
}

void *realloc(void *p, size_t size)
{
	if (p != NULL) {
		take_lock();
		size_t i = slot_of(p);
		if (blocks[i] == p)
			remove_slot(i);
		drop_lock();
	}
	if (real_realloc == NULL)
		real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	return real_realloc(p, size);
}
