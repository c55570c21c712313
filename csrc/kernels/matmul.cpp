// fp32 matrix multiply: a packed, cache-blocked GEMM with a 6x16 register
// tile (12x32 in zmm on AVX-512), GEMV paths for a few rows, and the plain
// reference. Not quantized formats (quant.cpp) and not batched broadcasting
// (the caller loops).
#include <cstring>

#include "../simd/simd.h"
#include "common.h"

namespace pyllm {
namespace PYLLM_ISA {

#include "kernels.inc"

void matmul_ref(float* C, const float* A, const float* B, int64_t M, int64_t N, int64_t K,
                bool trans_a, bool trans_b, bool accumulate) {
    // A (M,K) or (K,M), B (K,N) or (N,K) -> C (M,N)
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double acc = accumulate ? C[i * N + j] : 0.0;
            for (int64_t k = 0; k < K; k++) {
                float a = trans_a ? A[k * M + i] : A[i * K + k];
                float b = trans_b ? B[j * K + k] : B[k * N + j];
                acc += double(a) * double(b);
            }
            C[i * N + j] = float(acc);
        }
    }
}

namespace {

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

#if defined(PYLLM_ISA_AVX512)
// dst[k*ldd + i] = src[i*lds + k] for i < rows (<= 16), k < 16: one 16x16
// transpose in registers, full-line loads of the source rows, and stores
// of `rows` floats per k (missing rows read as zero, never touched).
inline void transpose16_block(float* dst, int64_t ldd, const float* src, int64_t lds, int rows) {
    vf16 r[16];
    for (int i = 0; i < 16; i++) r[i] = i < rows ? vload16(src + i * lds) : vzero16();
    vtranspose16(r);
    if (rows == 16)
        for (int k = 0; k < 16; k++) vstore16(dst + k * ldd, r[k]);
    else
        for (int k = 0; k < 16; k++) vstore16_first(dst + k * ldd, r[k], rows);
}
#endif

// Packs the (mc, kc) block of A, element (i,k) at A[i*rsa + k*csa], into
// panels of MR rows: panel p holds kc columns of MR floats, zero padded.
template <int64_t MR>
void pack_a(float* dst, const float* A, int64_t rsa, int64_t csa, int64_t mc, int64_t kc) {
    // A (mc,kc) strided -> dst (ceil(mc/MR), kc, MR)
    for (int64_t ir = 0; ir < mc; ir += MR) {
        const int64_t m = min64(MR, mc - ir);
        const float* a = A + ir * rsa;
        if (m == MR && csa == 1) {
            int64_t k = 0;
#if defined(PYLLM_ISA_AVX512)
            if constexpr (MR <= 16) {
                for (; k + 16 <= kc; k += 16, dst += 16 * MR) transpose16_block(dst, MR, a + k, rsa, MR);
            }
#endif
            for (; k < kc; k++) {
#pragma GCC unroll 16
                for (int64_t r = 0; r < MR; r++) dst[r] = a[r * rsa + k];
                dst += MR;
            }
        } else if (m == MR && rsa == 1) {
            // A stored (K,M): the MR rows of one column are contiguous
            for (int64_t k = 0; k < kc; k++) {
                const float* col = a + k * csa;
                for (int64_t r = 0; r < MR; r++) dst[r] = col[r];
                dst += MR;
            }
        } else {
            for (int64_t k = 0; k < kc; k++) {
                for (int64_t r = 0; r < MR; r++) dst[r] = r < m ? a[r * rsa + k * csa] : 0.0f;
                dst += MR;
            }
        }
    }
}

// Packs the (kc, nc) block of B, element (k,j) at B[k*rsb + j*csb], into
// panels of NR columns: panel p holds kc rows of NR floats, zero padded.
template <int64_t NR>
void pack_b(float* dst, const float* B, int64_t rsb, int64_t csb, int64_t kc, int64_t nc) {
    // B (kc,nc) strided -> dst (ceil(nc/NR), kc, NR)
    const int64_t full = nc / NR;  // panels without padding
    if (csb == 1 && full > 0) {
        // B stored (K,N): copy along each row of B, so the reads stream
        // through whole rows and the hardware prefetcher keeps up
        for (int64_t k = 0; k < kc; k++) {
            const float* b = B + k * rsb;
            for (int64_t p = 0; p < full; p++)
                for (int64_t j = 0; j < NR; j += 8)
                    vstore(dst + (p * kc + k) * NR + j, vload(b + p * NR + j));
        }
    }
    for (int64_t p = 0; p * NR < nc; p++) {
        const int64_t jr = p * NR;
        const int64_t n = min64(NR, nc - jr);
        const float* b = B + jr * csb;
        float* d = dst + p * kc * NR;
        if (n == NR && csb == 1) {
            continue;  // done above
        } else if (n == NR && rsb == 1) {
            // B stored (N,K): each column j is contiguous in k; go down 4 k
            // at a time so every column's cache line is used while it is hot
            int64_t k = 0;
#if defined(PYLLM_ISA_AVX512)
            if constexpr (NR % 16 == 0) {
                // 16 columns x 16 k at a time, transposed in registers
                for (; k + 16 <= kc; k += 16)
                    for (int64_t j = 0; j < NR; j += 16)
                        transpose16_block(d + k * NR + j, NR, b + j * csb + k, csb, 16);
            }
#endif
            for (; k + 4 <= kc; k += 4) {
                for (int64_t j = 0; j < NR; j++) {
                    const float* col = b + j * csb + k;
                    d[(k + 0) * NR + j] = col[0];
                    d[(k + 1) * NR + j] = col[1];
                    d[(k + 2) * NR + j] = col[2];
                    d[(k + 3) * NR + j] = col[3];
                }
            }
            for (; k < kc; k++)
                for (int64_t j = 0; j < NR; j++) d[k * NR + j] = b[j * csb + k];
        } else {
            for (int64_t k = 0; k < kc; k++)
                for (int64_t j = 0; j < NR; j++) d[k * NR + j] = j < n ? b[k * rsb + j * csb] : 0.0f;
        }
    }
}

// One k step of the register tile: row r of C gets a[r] * (b0, b1).
#define PYLLM_GEMM_STEP(a, b)                                          \
    do {                                                               \
        const vf b0 = vload(b), b1 = vload((b) + 8);                   \
        vf ak = vset1((a)[0]);                                         \
        c00 = vfma(ak, b0, c00), c01 = vfma(ak, b1, c01);              \
        ak = vset1((a)[1]);                                            \
        c10 = vfma(ak, b0, c10), c11 = vfma(ak, b1, c11);              \
        ak = vset1((a)[2]);                                            \
        c20 = vfma(ak, b0, c20), c21 = vfma(ak, b1, c21);              \
        ak = vset1((a)[3]);                                            \
        c30 = vfma(ak, b0, c30), c31 = vfma(ak, b1, c31);              \
        ak = vset1((a)[4]);                                            \
        c40 = vfma(ak, b0, c40), c41 = vfma(ak, b1, c41);              \
        ak = vset1((a)[5]);                                            \
        c50 = vfma(ak, b0, c50), c51 = vfma(ak, b1, c51);              \
    } while (0)

// The 8-float register tile: C (6,16) (+)= a (kc,6 packed) @ b (kc,16 packed).
inline void kernel_6x16(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                        bool accumulate) {
    // a (kc,6) packed, b (kc,16) packed -> c (6,16), row stride ldc
    vf c00 = vzero(), c01 = vzero(), c10 = vzero(), c11 = vzero(), c20 = vzero(), c21 = vzero();
    vf c30 = vzero(), c31 = vzero(), c40 = vzero(), c41 = vzero(), c50 = vzero(), c51 = vzero();
    // unrolled by the compiler: written out by hand, gcc hoists the b loads
    // of later steps and spills accumulators
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        PYLLM_GEMM_STEP(a, b);
        a += 6;
        b += 16;
    }
    if (accumulate) {
        c00 = vadd(c00, vload(c + 0 * ldc)), c01 = vadd(c01, vload(c + 0 * ldc + 8));
        c10 = vadd(c10, vload(c + 1 * ldc)), c11 = vadd(c11, vload(c + 1 * ldc + 8));
        c20 = vadd(c20, vload(c + 2 * ldc)), c21 = vadd(c21, vload(c + 2 * ldc + 8));
        c30 = vadd(c30, vload(c + 3 * ldc)), c31 = vadd(c31, vload(c + 3 * ldc + 8));
        c40 = vadd(c40, vload(c + 4 * ldc)), c41 = vadd(c41, vload(c + 4 * ldc + 8));
        c50 = vadd(c50, vload(c + 5 * ldc)), c51 = vadd(c51, vload(c + 5 * ldc + 8));
    }
    vstore(c + 0 * ldc, c00), vstore(c + 0 * ldc + 8, c01);
    vstore(c + 1 * ldc, c10), vstore(c + 1 * ldc + 8, c11);
    vstore(c + 2 * ldc, c20), vstore(c + 2 * ldc + 8, c21);
    vstore(c + 3 * ldc, c30), vstore(c + 3 * ldc + 8, c31);
    vstore(c + 4 * ldc, c40), vstore(c + 4 * ldc + 8, c41);
    vstore(c + 5 * ldc, c50), vstore(c + 5 * ldc + 8, c51);
}
#undef PYLLM_GEMM_STEP

struct Tile8 {
    static constexpr GemmBlocking blk = kGemmBlocking8;
    static void kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool acc) {
        kernel_6x16(kc, a, b, c, ldc, acc);
    }
};

#if defined(PYLLM_ISA_AVX512)
// The 16-float register tile: C (MR, 16*NV) (+)= a (kc,MR packed) @ b
// (kc,16*NV packed), MR*NV zmm accumulators. The loops over r and v are
// unrolled completely, so acc lives in registers; a[r] comes in by a
// broadcast load (a load port, not the shuffle port).
template <int MR, int NV>
inline void kernel_zmm(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                       bool accumulate) {
    // a (kc,MR) packed, b (kc,16*NV) packed -> c (MR,16*NV), row stride ldc
    constexpr int NR = 16 * NV;
    static_assert(MR * NV + NV + 1 <= 32, "accumulators, b and a[r] must fit in 32 zmm");
    vf16 acc[MR][NV];
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = vzero16();
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
        vf16 bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) bv[v] = vload16(b + 16 * v);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            const vf16 ar = vset1_16(a[r]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = vfma16(ar, bv[v], acc[r][v]);
        }
        a += MR;
        b += NR;
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            float* cr = c + r * ldc + 16 * v;
            vstore16(cr, accumulate ? vadd16(acc[r][v], vload16(cr)) : acc[r][v]);
        }
    }
}

struct Tile16 {
    static constexpr GemmBlocking blk = kGemmBlocking16;
    static void kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool acc) {
        kernel_zmm<int(blk.MR), int(blk.NR / 16)>(kc, a, b, c, ldc, acc);
    }
};
using Tile = Tile16;
#else
using Tile = Tile8;
#endif

// C (mc, nc) block (+)= packed A block @ packed B block. Rows outer, columns
// inner: the A panel (kc,MR) stays in L1 while the B block (kc,nc) streams
// from L2, and consecutive tiles walk along the same rows of C.
// bias (nc) or null is added to every row of each tile right after it is
// stored, while the tile is still in L1.
template <class T>
void gemm_tiles(float* C, int64_t ldc, const float* pa, const float* pb, int64_t mc, int64_t kc,
                int64_t nc, bool acc, const float* bias, float* tile) {
    // pa (ceil(mc/MR),kc,MR), pb (ceil(nc/NR),kc,NR) [+ bias (nc)] -> C (mc,nc), row stride ldc
    constexpr int64_t MR = T::blk.MR, NR = T::blk.NR;
    for (int64_t ir = 0; ir < mc; ir += MR) {
        const int64_t mr = min64(MR, mc - ir);
        const float* a = pa + ir * kc;
        for (int64_t jr = 0; jr < nc; jr += NR) {
            const int64_t nr = min64(NR, nc - jr);
            const float* b = pb + jr * kc;
            float* c = C + ir * ldc + jr;
            if (mr == MR && nr == NR) {
                T::kernel(kc, a, b, c, ldc, acc);
            } else {
                T::kernel(kc, a, b, tile, NR, false);
                for (int64_t i = 0; i < mr; i++)
                    for (int64_t j = 0; j < nr; j++)
                        c[i * ldc + j] = (acc ? c[i * ldc + j] : 0.0f) + tile[i * NR + j];
            }
            if (bias) {
                for (int64_t i = 0; i < mr; i++) {
                    float* ci = c + i * ldc;
                    int64_t j = 0;
                    for (; j + 8 <= nr; j += 8) vstore(ci + j, vadd(vload(ci + j), vload(bias + jr + j)));
                    for (; j < nr; j++) ci[j] += bias[jr + j];
                }
            }
        }
    }
}

// The packed, blocked product over whole register tiles of tile type T.
// Splits C into a tm x tn grid of thread blocks; each block packs the A rows
// and B columns it needs, with no synchronisation between threads.
// pack_b(dst, pc, kc, jc, nc) writes B's block of rows [pc,pc+kc) and columns
// [jc,jc+nc) as NR-column panels; k blocks start at multiples of k_align.
// a_all: null, or room for all of A packed (round_up(M, MR) * K floats): when
// the threads split only the columns, they pack A once between them into it
// rather than each packing all of it.
template <class T, class PackB>
void gemm_blocks(float* C, const float* A, const PackB& pack_b_block, const float* bias, int64_t M,
                 int64_t N, int64_t K, int64_t ldc, int64_t rsa, int64_t csa, int64_t k_align,
                 double b_pack_cost, bool accumulate, float* work, float* a_all, int nthreads) {
    // A (M,K) strided, B (K,N) by blocks [+ bias (N) on every row] -> C (M,N), row stride ldc
    constexpr int64_t MR = T::blk.MR, NR = T::blk.NR, MC = T::blk.MC, KC = T::blk.KC,
                      NC = T::blk.NC;
    static_assert(MC % MR == 0 && NC % NR == 0, "blocks hold whole register tiles");
    // Pick the split that packs least: every block packs its rows of A once
    // and its columns of B once per MC rows (1024 x 1024 on two threads:
    // 512 rows each, not 512 columns each, which would pack B twice).
    int nt = (M * N * K < 64 * 64 * 64) ? 1 : nthreads;
    const int64_t mtiles = ceil_div(M, MR), ntiles = ceil_div(N, NR);
    int tm = 1, tn = 1;
    double best = -1.0;
    for (int cm = 1; cm <= nt; cm++) {
        if (nt % cm) continue;
        const int cn = nt / cm;
        if (mtiles < cm || ntiles < cn) continue;
        const int64_t b_packs = ceil_div(ceil_div(mtiles, cm) * MR, MC);
        const double cost =
            double(K) * (b_pack_cost * double(cm) * double(N) * double(b_packs) + double(cn) * double(M));
        if (best < 0 || cost < best) best = cost, tm = cm, tn = cn;
    }
    nt = tm * tn;
    const int64_t kc_max = gemm_k_block(K, KC, k_align);  // the summation order (common.h)
    const int64_t per_thread = gemm_thread_floats(T::blk);
    // row and column blocks of near-equal size in whole tiles (512 columns
    // as 256 + 256, not 384 + 128)
    const auto block_max = [](int64_t n, int64_t cap, int64_t r) {
        return min64(cap, ceil_div(ceil_div(n, ceil_div(n, cap)), r) * r);
    };
    const bool share_a = a_all != nullptr && tm == 1 && nt > 1;
    const int64_t mc_all = block_max(M, MC, MR);
    // block (ic, pc) of A packed in a_all: rows before ic take ic * K floats
    const auto a_block = [&](int64_t ic, int64_t pc) {
        return a_all + ic * K + ceil_div(min64(mc_all, M - ic), MR) * MR * pc;
    };
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float* pa = work + int64_t(thread_index()) * per_thread;  // (MC, KC) packed A
        float* pb = pa + MC * KC;                                 // (KC, NC) packed B
        float* tile = pb + KC * NC;                               // (MR, NR) edge tile
        if (share_a) {
            int64_t i = 0;
            for (int64_t ic = 0; ic < M; ic += mc_all)
                for (int64_t pc = 0; pc < K; pc += kc_max, i++)
                    if (i % thread_count() == thread_index())
                        pack_a<MR>(a_block(ic, pc), A + ic * rsa + pc * csa, rsa, csa, min64(mc_all, M - ic),
                                   min64(kc_max, K - pc));
#pragma omp barrier
        }
        // a region given fewer threads than asked still covers every block
        for (int blk = thread_index(); blk < nt; blk += thread_count()) {
            const int bm = blk / tn, bn = blk % tn;
            const int64_t r0 = (mtiles * bm / tm) * MR, r1 = min64(M, (mtiles * (bm + 1) / tm) * MR);
            const int64_t c0 = (ntiles * bn / tn) * NR, c1 = min64(N, (ntiles * (bn + 1) / tn) * NR);
            const int64_t mc_max = block_max(r1 - r0, MC, MR);  // = mc_all when share_a
            const int64_t nc_max = block_max(c1 - c0, NC, NR);
            for (int64_t ic = r0; ic < r1; ic += mc_max) {
                const int64_t mc = min64(mc_max, r1 - ic);
                for (int64_t pc = 0; pc < K; pc += kc_max) {
                    const int64_t kc = min64(kc_max, K - pc);
                    const bool acc = accumulate || pc > 0;
                    const float* pa_use = pa;
                    if (share_a)
                        pa_use = a_block(ic, pc);
                    else
                        pack_a<MR>(pa, A + ic * rsa + pc * csa, rsa, csa, mc, kc);
                    for (int64_t jc = c0; jc < c1; jc += nc_max) {
                        const int64_t nc = min64(nc_max, c1 - jc);
                        pack_b_block(pb, pc, kc, jc, nc);
                        gemm_tiles<T>(C + ic * ldc + jc, ldc, pa_use, pb, mc, kc, nc, acc,
                                      pc == 0 && bias ? bias + jc : nullptr, tile);
                    }
                }
            }
        }
    }
}

template <class T>
void gemm_packed(float* C, const float* A, const float* B, const float* bias, int64_t M, int64_t N,
                 int64_t K, int64_t ldc, int64_t rsa, int64_t csa, int64_t rsb, int64_t csb,
                 bool accumulate, float* work, int nthreads) {
    // A (M,K) strided, B (K,N) strided [+ bias (N) on every row] -> C (M,N), row stride ldc
    const auto pack = [&](float* dst, int64_t pc, int64_t kc, int64_t jc, int64_t nc) {
        pack_b<T::blk.NR>(dst, B + pc * rsb + jc * csb, rsb, csb, kc, nc);
    };
    gemm_blocks<T>(C, A, pack, bias, M, N, K, ldc, rsa, csa, 4, 1.0, accumulate, work, nullptr, nthreads);
}

// A few rows times B stored (K,N): each thread streams its own slice of the
// rows of B into a private partial result, then the partials are summed.
// a: MM rows of K contiguous floats. part: nthreads * MM * N floats.
template <int MM>
void gemv_kn(float* C, const float* a, const float* B, int64_t N, int64_t K, bool accumulate,
             float* part) {
    // a (MM,K), B (K,N) -> C (MM,N)
    int nt = num_threads();
    if (K < 64 || int64_t(MM) * N * K < (int64_t(1) << 16)) nt = 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = thread_index();
        const int nr = thread_count();
        const int64_t kchunk = ceil_div(K, nr);
        float* y = part + int64_t(t) * MM * N;
        std::memset(y, 0, sizeof(float) * MM * N);
        const int64_t k0 = t * kchunk, k1 = min64(K, k0 + kchunk);
        int64_t k = k0;
        for (; k + 4 <= k1; k += 4) {
            const float* b0 = B + k * N;
            const float* b1 = b0 + N;
            const float* b2 = b1 + N;
            const float* b3 = b2 + N;
            for (int m = 0; m < MM; m++) {
                const float* am = a + m * K + k;
                const vf a0 = vset1(am[0]), a1 = vset1(am[1]), a2 = vset1(am[2]), a3 = vset1(am[3]);
                float* ym = y + m * N;
                int64_t j = 0;
                for (; j + 8 <= N; j += 8) {
                    vf acc = vload(ym + j);
                    acc = vfma(a0, vload(b0 + j), acc);
                    acc = vfma(a1, vload(b1 + j), acc);
                    acc = vfma(a2, vload(b2 + j), acc);
                    acc = vfma(a3, vload(b3 + j), acc);
                    vstore(ym + j, acc);
                }
                for (; j < N; j++) ym[j] += am[0] * b0[j] + am[1] * b1[j] + am[2] * b2[j] + am[3] * b3[j];
            }
        }
        for (; k < k1; k++) {
            const float* bk = B + k * N;
            for (int m = 0; m < MM; m++) {
                const vf ak = vset1(a[m * K + k]);
                float* ym = y + m * N;
                int64_t j = 0;
                for (; j + 8 <= N; j += 8) vstore(ym + j, vfma(ak, vload(bk + j), vload(ym + j)));
                for (; j < N; j++) ym[j] += a[m * K + k] * bk[j];
            }
        }
#pragma omp barrier
        // sum the partials, each thread a slice of the columns
        const int64_t jchunk = ceil_div(N, nr);
        const int64_t j0 = t * jchunk, j1 = min64(N, j0 + jchunk);
        for (int m = 0; m < MM; m++) {
            for (int64_t j = j0; j < j1; j++) {
                float s = accumulate ? C[m * N + j] : 0.0f;
                for (int u = 0; u < nr; u++) s += part[(int64_t(u) * MM + m) * N + j];
                C[m * N + j] = s;
            }
        }
    }
}

// A few rows times B stored (N,K) (a Linear weight): each output is a dot
// product of two contiguous rows; threads take contiguous ranges of B's rows.
template <int MM, int NN>
inline void dot_tile(float* C, const float* a, const float* B, int64_t N, int64_t K, int64_t n,
                     bool accumulate) {
    vf acc[MM][NN];
    for (int m = 0; m < MM; m++)
        for (int r = 0; r < NN; r++) acc[m][r] = vzero();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        vf bv[NN];
        for (int r = 0; r < NN; r++) bv[r] = vload(B + (n + r) * K + k);
        for (int m = 0; m < MM; m++) {
            const vf av = vload(a + m * K + k);
            for (int r = 0; r < NN; r++) acc[m][r] = vfma(av, bv[r], acc[m][r]);
        }
    }
    for (int m = 0; m < MM; m++) {
        for (int r = 0; r < NN; r++) {
            float s = vhsum(acc[m][r]);
            for (int64_t kk = k; kk < K; kk++) s += a[m * K + kk] * B[(n + r) * K + kk];
            float* c = C + m * N + n + r;
            *c = accumulate ? *c + s : s;
        }
    }
}

template <int MM, int NN>
void gemv_nk(float* C, const float* a, const float* B, int64_t N, int64_t K, bool accumulate) {
    // a (MM,K), B (N,K) -> C (MM,N)
    const int nt = int64_t(MM) * N * K < (int64_t(1) << 16) ? 1 : num_threads();
    const int64_t groups = N / NN;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t g = 0; g < groups; g++) dot_tile<MM, NN>(C, a, B, N, K, g * NN, accumulate);
    for (int64_t n = groups * NN; n < N; n++) dot_tile<MM, 1>(C, a, B, N, K, n, accumulate);
}

template <int MM>
void gemv(float* C, const float* a, const float* B, int64_t N, int64_t K, bool trans_b,
          bool accumulate, float* part) {
    if (trans_b)
        gemv_nk<MM, (MM <= 2 ? 4 : 2)>(C, a, B, N, K, accumulate);
    else
        gemv_kn<MM>(C, a, B, N, K, accumulate, part);
}

}  // namespace

void sgemm_bias(float* C, const float* A, const float* B, const float* bias, int64_t M, int64_t N,
                int64_t K, bool trans_a, bool trans_b, bool accumulate, float* work) {
    // A (M,K) [or (K,M)], B (K,N) [or (N,K)], bias (N) or null -> C (M,N)
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate) std::memset(C, 0, sizeof(float) * M * N);
        if (bias)
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) C[i * N + j] += bias[j];
        return;
    }
    const int nthreads = num_threads();
    const int64_t rsa = trans_a ? 1 : K, csa = trans_a ? M : 1;
    const int64_t rsb = trans_b ? 1 : N, csb = trans_b ? K : 1;

    // A few rows: stream B once instead of packing it.
    const int64_t capacity = sgemm_work_floats(nthreads);
    // (only the (K,N) path needs the per-thread partial rows in work)
    if (M <= 4 && !trans_a && (trans_b || int64_t(nthreads) * M * N <= capacity)) {
        switch (M) {
            case 1: gemv<1>(C, A, B, N, K, trans_b, accumulate, work); break;
            case 2: gemv<2>(C, A, B, N, K, trans_b, accumulate, work); break;
            case 3: gemv<3>(C, A, B, N, K, trans_b, accumulate, work); break;
            default: gemv<4>(C, A, B, N, K, trans_b, accumulate, work); break;
        }
        if (bias)
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) C[i * N + j] += bias[j];
        return;
    }

    gemm_packed<Tile>(C, A, B, bias, M, N, K, N, rsa, csa, rsb, csb, accumulate, work, nthreads);
}

void sgemm(float* C, const float* A, const float* B, int64_t M, int64_t N, int64_t K,
           bool trans_a, bool trans_b, bool accumulate, float* work) {
    // A (M,K) [or (K,M)], B (K,N) [or (N,K)] -> C (M,N)
    sgemm_bias(C, A, B, nullptr, M, N, K, trans_a, trans_b, accumulate, work);
}

void sgemm_packed_b(float* C, const float* A, int64_t M, int64_t N, int64_t K, PackBlockFn pack,
                    const void* ctx, int64_t k_align, double pack_cost, float* work) {
    // A (M,K), B (K,N) delivered in packed blocks by pack -> C (M,N)
    static_assert(Tile::blk.KC % kQuantBlock == 0, "k blocks must hold whole quantization blocks");
    if (M <= 0 || N <= 0 || K <= 0) return;
    const int nthreads = num_threads();
    const auto blocks = [&](float* dst, int64_t pc, int64_t kc, int64_t jc, int64_t nc) {
        pack(ctx, dst, jc, nc, pc, kc, Tile::blk.NR);
    };
    gemm_blocks<Tile>(C, A, blocks, nullptr, M, N, K, N, K, 1, k_align, pack_cost, false, work,
                      work + sgemm_work_floats(nthreads), nthreads);
}

void sgemm_strided(float* C, const float* A, const float* B, int64_t M, int64_t N, int64_t K,
                   int64_t ldc, int64_t rsa, int64_t csa, int64_t rsb, int64_t csb, bool accumulate,
                   float* work) {
    // A (M,K) at A[i*rsa + k*csa], B (K,N) at B[k*rsb + j*csb] -> C (M,N) at C[i*ldc + j]
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) std::memset(C + i * ldc, 0, sizeof(float) * N);
        return;
    }
    gemm_packed<Tile>(C, A, B, nullptr, M, N, K, ldc, rsa, csa, rsb, csb, accumulate, work, 1);
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
