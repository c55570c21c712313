// Vector helpers over one row shared by the kernel sources (sums, maxima,
// dot products) and the small-work threading cut-off. Not kernels themselves.
#pragma once

#include <cmath>

#include "../simd/simd.h"
#include "common.h"

namespace pyllm {
namespace PYLLM_ISA {
namespace {

// below this many elements a parallel region costs more than it saves
constexpr int64_t kParallelMin = 1 << 15;

inline int threads_for(int64_t work) { return work >= kParallelMin ? num_threads() : 1; }

// sum of x[0:n], 8 float lanes per block of 256, blocks added in double
inline double row_sum(const float* x, int64_t n) {
    double total = 0.0;
    int64_t j = 0;
    while (j + 8 <= n) {
        const int64_t end = (n - j) >= 256 ? j + 256 : n;
        vf acc0 = vzero(), acc1 = vzero();
        for (; j + 16 <= end; j += 16) {
            acc0 = vadd(acc0, vload(x + j));
            acc1 = vadd(acc1, vload(x + j + 8));
        }
        for (; j + 8 <= end; j += 8) acc0 = vadd(acc0, vload(x + j));
        total += double(vhsum(vadd(acc0, acc1)));
    }
    for (; j < n; j++) total += double(x[j]);
    return total;
}

// sum of (x - c)^2 over x[0:n], the same blocking
inline double row_sumsq(const float* x, int64_t n, float c) {
    double total = 0.0;
    const vf cv = vset1(c);
    int64_t j = 0;
    while (j + 8 <= n) {
        const int64_t end = (n - j) >= 256 ? j + 256 : n;
        vf acc = vzero();
        for (; j + 8 <= end; j += 8) {
            const vf d = vsub(vload(x + j), cv);
            acc = vfma(d, d, acc);
        }
        total += double(vhsum(acc));
    }
    for (; j < n; j++) total += double(x[j] - c) * double(x[j] - c);
    return total;
}

inline float row_max(const float* x, int64_t n) {
    vf m = vset1(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) m = vmax(m, vload(x + j));
    float mx = vhmax(m);
    for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

// y[0:n] += x[0:n]
inline void row_add(float* y, const float* x, int64_t n) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) vstore(y + j, vadd(vload(y + j), vload(x + j)));
    for (; j < n; j++) y[j] += x[j];
}

}  // namespace
}  // namespace PYLLM_ISA
}  // namespace pyllm
