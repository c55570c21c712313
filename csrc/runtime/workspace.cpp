// The per-thread scratch buffer behind thread_workspace().
// Not a general allocator: one buffer per thread, grown, never shrunk.
#include "workspace.h"

#include <cstdlib>
#include <memory>
#include <new>

namespace pyllm {

namespace {
struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
};
}  // namespace

float* thread_workspace(int64_t n) {
    thread_local std::unique_ptr<float, FreeDeleter> buf;
    thread_local int64_t cap = 0;
    if (n > cap) {
        const int64_t want = n + n / 4;
        const size_t bytes = (size_t(want) * sizeof(float) + 63) / 64 * 64;
        float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
        if (!p) throw std::bad_alloc();
        buf.reset(p);
        cap = want;
    }
    return buf.get();
}

}  // namespace pyllm
