# The word cache of the BPE cores (_bpe.pyx, _spm.pyx): piece bytes -> ids, bounded in bytes.
# Included by both; not a general cache, and no Python objects in it.
#
# Each concurrent caller has its own WordCache of two generations: lookups hit the
# current one or the previous one (a hit there is copied forward), inserts go to the
# current one; when its estimated size would pass CACHE_GEN_BYTES it becomes the
# previous one and the older one is freed. Frequent words survive the turnover, and
# one cache never holds much more than 2 * CACHE_GEN_BYTES.

cdef extern from *:
    """
    #if defined(__GLIBC__)
    #include <malloc.h>
    static void pyllm_trim_heap(void) { malloc_trim(0); }  /* freed map nodes back to the system */
    #else
    static void pyllm_trim_heap(void) {}
    #endif
    """
    void pyllm_trim_heap() noexcept nogil


cdef enum:
    MAX_CACHED_WORD = 256       # bytes; longer pieces are merged every time
    CACHE_GEN_BYTES = 8 << 20   # estimated bytes of one generation before it is retired
    CACHE_ENTRY_BYTES = 96      # estimate of one entry's map node, bucket and allocator overhead


cdef struct WordCache:
    unordered_map[string, uint64_t] index      # current generation: piece -> (offset << 16 | count) in ids
    vector[int32_t] ids
    unordered_map[string, uint64_t] old_index  # the generation before, for its hot words
    vector[int32_t] old_ids
    size_t used                                # estimated bytes of the current generation
    size_t old_used                            # and of the one before


cdef int cache_put(WordCache* c, const string& key, vector[int32_t]& out, size_t start) except -1 nogil:
    """Remember out[start:] as the ids of key."""
    cdef size_t k, cost = CACHE_ENTRY_BYTES + key.size() + 4 * (out.size() - start)
    cdef uint64_t off
    cdef unordered_map[string, uint64_t] no_index
    cdef vector[int32_t] no_ids
    if c.used + cost > CACHE_GEN_BYTES:
        # retire the current generation; the one before it is freed (swap: clear() keeps the memory)
        c.old_index.swap(c.index)
        c.old_ids.swap(c.ids)
        c.index.swap(no_index)
        c.ids.swap(no_ids)
        c.old_used = c.used
        c.used = 0
    off = c.ids.size()
    for k in range(start, out.size()):
        c.ids.push_back(out[k])
    c.index[key] = (off << 16) | (out.size() - start)
    c.used += cost
    return 0


cdef int cache_get(WordCache* c, const string& key, vector[int32_t]& out) except -1 nogil:
    """Append the cached ids of key to out: 1 on a hit, 0 on a miss."""
    cdef unordered_map[string, uint64_t].iterator it = c.index.find(key)
    cdef uint64_t v, k
    cdef size_t start
    if it != c.index.end():
        v = deref(it).second
        for k in range(v & 0xFFFF):
            out.push_back(c.ids[(v >> 16) + k])
        return 1
    it = c.old_index.find(key)
    if it == c.old_index.end():
        return 0
    v = deref(it).second
    start = out.size()
    for k in range(v & 0xFFFF):
        out.push_back(c.old_ids[(v >> 16) + k])
    cache_put(c, key, out, start)  # still in use: into the current generation
    return 1


cdef void cache_free(WordCache* c) noexcept nogil:
    cdef unordered_map[string, uint64_t] no_index, no_old_index
    cdef vector[int32_t] no_ids, no_old_ids
    c.index.swap(no_index)
    c.ids.swap(no_ids)
    c.old_index.swap(no_old_index)
    c.old_ids.swap(no_old_ids)
    c.used = 0
    c.old_used = 0


cdef tuple cache_stats(vector[WordCache]& caches):
    # (entries, estimated bytes) over every cache and both generations
    cdef size_t k, entries = 0, used = 0
    for k in range(caches.size()):
        entries += caches[k].index.size() + caches[k].old_index.size()
        used += caches[k].used + caches[k].old_used
    return entries, used
