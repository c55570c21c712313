// Scratch memory for kernels: one growing, 64-byte aligned buffer per
// calling thread, reused across calls. Not for anything that outlives a call.
#pragma once

#include <cstdint>

namespace pyllm {

// At least n floats, private to the calling thread, valid until its next call.
float* thread_workspace(int64_t n);

}  // namespace pyllm
