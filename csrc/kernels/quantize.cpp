// The file quantizers: one scalar function per type that `pyllm quantize`
// writes (kQuantTypes' quantize_file column), turning rows of float32 into
// the blocks of quant_types.h. Not the runtime's Q8_0/Q4_0/Q4_1
// quantize_row (quant.cpp), which rounds scales away from the data.
//
// The 32-element types round as gguf's numpy quantizers do, bit for bit
// (scale from the block's extreme, one reciprocal, truncation after +0.5 or
// roundf). The K and IQ4 types search their scales: for each sub-block a
// few candidate inverse scales around the extreme's, each followed by the
// least-squares scale (and minimum) for the codes it gives, keeping the
// best under a weighted squared (Q2_K: absolute) error; then the sub-block
// scales are themselves quantized against the super-block's scale and the
// codes chosen again for the stored scales. Built like quant_types.cpp:
// baseline code, no FMA contraction, so results do not depend on the ISA.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "quant_types.h"

namespace pyllm {

namespace {

constexpr float kTiny = 1e-15f;  // a sub-block whose largest |x| is below this is all zero

// fp32 -> fp16 bits, rounded to nearest even (overflow to inf, NaN kept quiet)
uint16_t to_fp16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
    if (a < 0x38800000u) {
        // below the smallest normal: a multiple of 2^-24, rounded to even
        float m;
        const uint32_t abits = a;
        std::memcpy(&m, &abits, 4);
        const float scaled = m * 16777216.0f;  // exact: a power of two
        return uint16_t(sign | uint32_t(std::nearbyint(scaled)));
    }
    const uint32_t mant_odd = (a >> 13) & 1u;
    const uint32_t r = a + 0xfffu + mant_odd;  // round to nearest even at bit 13
    return uint16_t(sign | ((r - 0x38000000u) >> 13));
}

inline float from_fp16(uint16_t h) { return fp16_to_f32_portable(h); }

// round to nearest, ties to even (the arguments here are far below 2^22)
inline int nearest(float f) { return int(std::nearbyint(f)); }

inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// the element of largest magnitude (the first of equals), signed
inline float signed_extreme(const float* x, int n, float& amax) {
    float best = 0;
    amax = 0;
    for (int i = 0; i < n; i++) {
        const float a = std::fabs(x[i]);
        if (a > amax) {
            amax = a;
            best = x[i];
        }
    }
    return best;
}

// gguf's "roundf": half away from zero
inline float round_away(float v) { return std::round(v); }

// ---- affine sub-blocks (Q2_K, Q4_K, Q5_K): x ~ scale * q - m, q in [0, qmax]
//
// The candidates' inverse scales are (qmax + first + step * k) / (max - min),
// k = 0..steps; each gives codes, then the weighted least-squares scale and
// offset for those codes (the offset kept <= 0 as the format's minimum is
// subtracted). Returns the scale; *neg_min gets the subtracted minimum.
float fit_affine(const float* x, const float* w, int n, int qmax, uint8_t* q, uint8_t* trial, float first, float step,
                 int steps, bool absolute, float* neg_min) {
    float lo = x[0], hi = x[0], sw = w[0], swx = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
        sw += w[i];
        swx += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        std::memset(q, 0, size_t(n));
        *neg_min = -lo;
        return 0.f;
    }
    auto error_of = [&](const uint8_t* codes, float s, float m) {
        float e = 0;
        for (int i = 0; i < n; i++) {
            float diff = s * float(codes[i]) + m - x[i];
            diff = absolute ? std::fabs(diff) : diff * diff;
            e += w[i] * diff;
        }
        return e;
    };
    // `lo` is the offset of the best fit so far: each candidate's codes are
    // taken against it (and its range from it), so the search drifts with
    // its best offset, as llama.cpp's does; this gives its bits
    float inv = float(qmax) / (hi - lo);
    float scale = 1 / inv;
    for (int i = 0; i < n; i++) q[i] = uint8_t(clampi(nearest(inv * (x[i] - lo)), 0, qmax));
    float best = error_of(q, scale, lo);
    for (int k = 0; k <= steps; k++) {
        inv = (first + step * float(k) + float(qmax)) / (hi - lo);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(nearest(inv * (x[i] - lo)), 0, qmax);
            trial[i] = uint8_t(l);
            sl += w[i] * float(l);
            sl2 += w[i] * float(l) * float(l);
            sxl += w[i] * float(l) * x[i];
        }
        const float det = sw * sl2 - sl * sl;
        if (det <= 0) continue;
        float s = (sw * sxl - swx * sl) / det;
        float m = (sl2 * swx - sl * sxl) / det;
        if (m > 0) {
            m = 0;
            s = sxl / sl2;
        }
        const float e = error_of(trial, s, m);
        if (e < best) {
            std::memcpy(q, trial, size_t(n));
            best = e;
            scale = s;
            lo = m;
        }
    }
    *neg_min = -lo;
    return scale;
}

// ---- symmetric sub-blocks (Q3_K, Q6_K): x ~ scale * (q - half), q - half in [-half, half - 1]
//
// Q6_K: the extreme's inverse scale and 18 neighbours (half + k/10), each
// scored by the x^2-weighted least-squares fit of its codes.
float fit_symmetric_grid(const float* x, int n, int half, uint8_t* q) {
    float amax;
    const float ext = signed_extreme(x, n, amax);
    if (amax < kTiny) {
        std::memset(q, 0, size_t(n));
        return 0.f;
    }
    auto fit = [&](float inv, float& sx, float& s2) {
        sx = 0;
        s2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(nearest(inv * x[i]), -half, half - 1);
            const float w = x[i] * x[i];
            sx += w * x[i] * float(l);
            s2 += w * float(l) * float(l);
        }
    };
    float inv = -float(half) / ext, sx, s2;
    fit(inv, sx, s2);
    float best_inv = inv;
    float scale = s2 != 0 ? sx / s2 : 0.f;
    float best = scale * sx;
    for (int k = -9; k <= 9; k++) {
        if (k == 0) continue;
        const float cand = -(float(half) + 0.1f * float(k)) / ext;
        fit(cand, sx, s2);
        if (s2 > 0 && sx * sx > best * s2) {
            best_inv = cand;
            scale = sx / s2;
            best = scale * sx;
        }
    }
    for (int i = 0; i < n; i++) q[i] = uint8_t(clampi(nearest(best_inv * x[i]), -half, half - 1) + half);
    return scale;
}

// Q3_K: codes from the extreme's scale, then coordinate descent: each code
// moved to its best value for the others' least-squares scale while that
// raises the x^2-weighted fit (at most 5 sweeps).
float fit_symmetric_descent(const float* x, int n, int half, uint8_t* q) {
    float amax;
    const float ext = signed_extreme(x, n, amax);
    if (amax < kTiny) {
        std::memset(q, 0, size_t(n));
        return 0.f;
    }
    int l[32];
    const float inv = -float(half) / ext;
    float sx = 0, s2 = 0;
    for (int i = 0; i < n; i++) {
        l[i] = clampi(nearest(inv * x[i]), -half, half - 1);
        const float w = x[i] * x[i];
        sx += w * x[i] * float(l[i]);
        s2 += w * float(l[i]) * float(l[i]);
    }
    for (int sweep = 0; sweep < 5; sweep++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float sxo = sx - w * x[i] * float(l[i]);
            if (sxo <= 0) continue;
            float s2o = s2 - w * float(l[i]) * float(l[i]);
            const int nl = clampi(nearest(x[i] * s2o / sxo), -half, half - 1);
            if (nl == l[i]) continue;
            sxo += w * x[i] * float(nl);
            s2o += w * float(nl) * float(nl);
            if (s2o > 0 && sxo * sxo * s2 > sx * sx * s2o) {
                l[i] = nl;
                sx = sxo;
                s2 = s2o;
                changed++;
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) q[i] = uint8_t(l[i] + half);
    return sx / s2;
}

// the index of the IQ4 level nearest v
inline uint8_t iq4_index(float v) {
    if (v <= kIQ4Values[0]) return 0;
    if (v >= kIQ4Values[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (v < kIQ4Values[mid]) hi = mid;
        else lo = mid;
    }
    return uint8_t(v - kIQ4Values[hi - 1] < kIQ4Values[hi] - v ? hi - 1 : hi);
}

// IQ4 sub-block of 32: the x^2-weighted least-squares scale over the
// extreme's inverse scale and 14 neighbours (level -127 + k at the extreme)
float fit_iq4(const float* x) {
    float amax;
    const float ext = signed_extreme(x, 32, amax);
    if (amax < kTiny) return 0.f;
    auto fit = [&](float inv, float& sx, float& s2) {
        sx = 0;
        s2 = 0;
        for (int j = 0; j < 32; j++) {
            const float v = float(kIQ4Values[iq4_index(inv * x[j])]);
            const float w = x[j] * x[j];
            sx += w * v * x[j];
            s2 += w * v * v;
        }
    };
    float sx, s2;
    fit(1 / (-ext / float(kIQ4Values[0])), sx, s2);
    float d = sx / s2, best = d * sx;
    for (int k = -7; k <= 7; k++) {
        fit((float(k) + float(kIQ4Values[0])) / ext, sx, s2);
        if (s2 > 0 && sx * sx > best * s2) {
            d = sx / s2;
            best = d * sx;
        }
    }
    return d;
}

// 32 IQ4 codes (low nibbles the first 16) into 16 bytes
inline void pack_nibbles32(uint8_t* qs, const uint8_t* q) {
    for (int j = 0; j < 16; j++) qs[j] = uint8_t(q[j] | (q[j + 16] << 4));
}

// 2-bit codes of a 256-element block into Q2_K/Q3_K's 64 bytes
inline void pack_2bit(uint8_t* qs, const uint8_t* q) {
    for (int h = 0; h < 256; h += 128)
        for (int l = 0; l < 32; l++)
            qs[h / 4 + l] = uint8_t(q[h + l] | (q[h + l + 32] << 2) | (q[h + l + 64] << 4) | (q[h + l + 96] << 6));
}

// ---- 32-element blocks, as gguf's numpy quantizers

template <int Bits>
void blocks_symmetric(const float* x, uint8_t* y, int64_t nb) {
    // Q4_0 (Bits 4) / Q5_0 (Bits 5): d = extreme / -2^(Bits-1), q = trunc(x / d + 2^(Bits-1) + 0.5)
    constexpr int half = 1 << (Bits - 1), top = 2 * half - 1;
    constexpr int64_t bytes = Bits == 4 ? int64_t(sizeof(BlockQ4_0)) : int64_t(sizeof(BlockQ5_0));
    for (int64_t b = 0; b < nb; b++, x += 32, y += bytes) {
        float amax;
        const float ext = signed_extreme(x, 32, amax);
        const float d = ext / -float(half);
        const float id = d == 0 ? 0.f : 1 / d;
        uint8_t q[32];
        for (int j = 0; j < 32; j++) q[j] = uint8_t(std::min(top, int(std::trunc(x[j] * id + (float(half) + 0.5f)))));
        const uint16_t dh = to_fp16(d);
        std::memcpy(y, &dh, 2);
        uint8_t* qs = y + 2;
        if (Bits == 5) {
            uint32_t qh = 0;
            for (int j = 0; j < 32; j++) qh |= uint32_t(q[j] >> 4) << j;
            std::memcpy(y + 2, &qh, 4);
            qs = y + 6;
        }
        for (int j = 0; j < 16; j++) qs[j] = uint8_t((q[j] & 15) | (q[j + 16] << 4));
    }
}

template <int Bits>
void blocks_affine(const float* x, uint8_t* y, int64_t nb) {
    // Q4_1 / Q5_1: d = (max - min) / (2^Bits - 1), m = min, q = trunc((x - m) / d + 0.5)
    constexpr int top = (1 << Bits) - 1;
    constexpr int64_t bytes = Bits == 4 ? int64_t(sizeof(BlockQ4_1)) : int64_t(sizeof(BlockQ5_1));
    for (int64_t b = 0; b < nb; b++, x += 32, y += bytes) {
        float lo = x[0], hi = x[0];
        for (int j = 1; j < 32; j++) {
            lo = std::min(lo, x[j]);
            hi = std::max(hi, x[j]);
        }
        const float d = (hi - lo) / float(top);
        const float id = d == 0 ? 0.f : 1 / d;
        uint8_t q[32];
        for (int j = 0; j < 32; j++) q[j] = uint8_t(std::min(top, int(std::trunc((x[j] - lo) * id + 0.5f))));
        const uint16_t dh = to_fp16(d), mh = to_fp16(lo);
        std::memcpy(y, &dh, 2);
        std::memcpy(y + 2, &mh, 2);
        uint8_t* qs = y + 4;
        if (Bits == 5) {
            uint32_t qh = 0;
            for (int j = 0; j < 32; j++) qh |= uint32_t(q[j] >> 4) << j;
            std::memcpy(y + 4, &qh, 4);
            qs = y + 8;
        }
        for (int j = 0; j < 16; j++) qs[j] = uint8_t((q[j] & 15) | (q[j + 16] << 4));
    }
}

}  // namespace

void quantize_q4_0_file(uint8_t* y, const float* x, int64_t nb) { blocks_symmetric<4>(x, y, nb); }
void quantize_q5_0_file(uint8_t* y, const float* x, int64_t nb) { blocks_symmetric<5>(x, y, nb); }
void quantize_q4_1_file(uint8_t* y, const float* x, int64_t nb) { blocks_affine<4>(x, y, nb); }
void quantize_q5_1_file(uint8_t* y, const float* x, int64_t nb) { blocks_affine<5>(x, y, nb); }

void quantize_q8_0_file(uint8_t* y, const float* x, int64_t nb) {
    // d = max|x| / 127, q = roundf(x / d)
    for (int64_t b = 0; b < nb; b++, x += 32, y += sizeof(BlockQ8_0)) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127;
        const float id = d == 0 ? 0.f : 1 / d;
        BlockQ8_0 blk;
        blk.d = to_fp16(d);
        for (int j = 0; j < 32; j++) blk.qs[j] = int8_t(round_away(x[j] * id));
        std::memcpy(y, &blk, sizeof blk);
    }
}

void quantize_iq4_nl_file(uint8_t* y, const float* x, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 32, y += sizeof(BlockIQ4_NL)) {
        const float d = fit_iq4(x);
        const float id = d != 0 ? 1 / d : 0.f;
        uint8_t q[32];
        for (int j = 0; j < 32; j++) q[j] = iq4_index(id * x[j]);
        BlockIQ4_NL blk;
        blk.d = to_fp16(d);
        pack_nibbles32(blk.qs, q);
        std::memcpy(y, &blk, sizeof blk);
    }
}

// ---- 256-element super-blocks

void quantize_iq4_xs_file(uint8_t* y, const float* x, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 256, y += sizeof(BlockIQ4_XS)) {
        float sc[8], amax = 0, ext = 0;
        for (int j = 0; j < 8; j++) {
            sc[j] = fit_iq4(x + 32 * j);
            if (std::fabs(sc[j]) > amax) {
                amax = std::fabs(sc[j]);
                ext = sc[j];
            }
        }
        BlockIQ4_XS blk{};
        const float d = -ext / 32;
        blk.d = to_fp16(d);
        const float id = d != 0 ? 1.f / d : 0.f;
        for (int j = 0; j < 8; j++) {
            int l = clampi(nearest(id * sc[j]), -32, 31);
            const float dl = d * float(l);
            const float idl = dl != 0 ? 1.f / dl : 0.f;
            uint8_t q[32];
            for (int k = 0; k < 32; k++) q[k] = iq4_index(idl * x[32 * j + k]);
            pack_nibbles32(blk.qs + 16 * j, q);
            l += 32;
            blk.scales_l[j / 2] = uint8_t(blk.scales_l[j / 2] | ((l & 15) << (4 * (j % 2))));
            blk.scales_h = uint16_t(blk.scales_h | ((l >> 4) << (2 * j)));
        }
        std::memcpy(y, &blk, sizeof blk);
    }
}

namespace {

// Q4_K / Q5_K: 8 affine sub-blocks of 32, weights rms(x) + |x|; 6-bit
// scales and minima against the block's largest of each
template <int Bits, class Block>
void blocks_k_affine(uint8_t* y, const float* x, int64_t nb) {
    constexpr int qmax = (1 << Bits) - 1;
    for (int64_t b = 0; b < nb; b++, x += 256, y += sizeof(Block)) {
        uint8_t q[256], trial[32];
        float w[32], sc[8], mn[8], max_sc = 0, max_mn = 0;
        for (int j = 0; j < 8; j++) {
            const float* xs = x + 32 * j;
            float s2 = 0;
            for (int l = 0; l < 32; l++) s2 += xs[l] * xs[l];
            const float rms = std::sqrt(s2 / 32);
            for (int l = 0; l < 32; l++) w[l] = rms + std::fabs(xs[l]);
            sc[j] = Bits == 4 ? fit_affine(xs, w, 32, qmax, q + 32 * j, trial, -1.f, 0.1f, 20, false, &mn[j])
                              : fit_affine(xs, w, 32, qmax, q + 32 * j, trial, -0.5f, 0.1f, 15, false, &mn[j]);
            max_sc = std::max(max_sc, sc[j]);
            max_mn = std::max(max_mn, mn[j]);
        }
        Block blk{};
        const float inv_sc = max_sc > 0 ? 63.f / max_sc : 0.f, inv_mn = max_mn > 0 ? 63.f / max_mn : 0.f;
        int ls[8], lm[8];
        for (int j = 0; j < 8; j++) {
            ls[j] = std::min(63, nearest(inv_sc * sc[j]));
            lm[j] = std::min(63, nearest(inv_mn * mn[j]));
            if (j < 4) {
                blk.scales[j] = uint8_t(ls[j]);
                blk.scales[j + 4] = uint8_t(lm[j]);
            } else {
                blk.scales[j + 4] = uint8_t((ls[j] & 15) | ((lm[j] & 15) << 4));
                blk.scales[j - 4] = uint8_t(blk.scales[j - 4] | ((ls[j] >> 4) << 6));
                blk.scales[j] = uint8_t(blk.scales[j] | ((lm[j] >> 4) << 6));
            }
        }
        blk.d = to_fp16(max_sc / 63.f);
        blk.dmin = to_fp16(max_mn / 63.f);
        for (int j = 0; j < 8; j++) {
            const float d = from_fp16(blk.d) * float(ls[j]);
            if (d == 0) continue;
            const float dm = from_fp16(blk.dmin) * float(lm[j]);
            for (int l = 0; l < 32; l++) q[32 * j + l] = uint8_t(clampi(nearest((x[32 * j + l] + dm) / d), 0, qmax));
        }
        for (int h = 0; h < 4; h++)
            for (int l = 0; l < 32; l++) {
                const int lo = q[64 * h + l], hi = q[64 * h + 32 + l];
                blk.qs[32 * h + l] = uint8_t((lo & 15) | ((hi & 15) << 4));
                if constexpr (Bits == 5) {
                    // bit 4 of sub-block 2h's code at bit 2h of qh[l], 2h+1's at bit 2h+1
                    blk.qh[l] = uint8_t(blk.qh[l] | ((lo >> 4) << (2 * h)) | ((hi >> 4) << (2 * h + 1)));
                }
            }
        std::memcpy(y, &blk, sizeof blk);
    }
}

}  // namespace

void quantize_q4_k_file(uint8_t* y, const float* x, int64_t nb) { blocks_k_affine<4, BlockQ4_K>(y, x, nb); }
void quantize_q5_k_file(uint8_t* y, const float* x, int64_t nb) { blocks_k_affine<5, BlockQ5_K>(y, x, nb); }

void quantize_q2_k_file(uint8_t* y, const float* x, int64_t nb) {
    // 16 affine sub-blocks of 16, weights |x|, absolute error; 4-bit scales and minima
    for (int64_t b = 0; b < nb; b++, x += 256, y += sizeof(BlockQ2_K)) {
        uint8_t q[256], trial[16];
        float w[16], sc[16], mn[16], max_sc = 0, max_mn = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = std::fabs(x[16 * j + l]);
            sc[j] = fit_affine(x + 16 * j, w, 16, 3, q + 16 * j, trial, -0.5f, 0.1f, 15, true, &mn[j]);
            max_sc = std::max(max_sc, sc[j]);
            max_mn = std::max(max_mn, mn[j]);
        }
        BlockQ2_K blk{};
        if (max_sc > 0) {
            const float inv = 15.f / max_sc;
            for (int j = 0; j < 16; j++) blk.scales[j] = uint8_t(nearest(inv * sc[j]));
            blk.d = to_fp16(max_sc / 15.f);
        }
        if (max_mn > 0) {
            const float inv = 15.f / max_mn;
            for (int j = 0; j < 16; j++) blk.scales[j] = uint8_t(blk.scales[j] | (nearest(inv * mn[j]) << 4));
            blk.dmin = to_fp16(max_mn / 15.f);
        }
        for (int j = 0; j < 16; j++) {
            const float d = from_fp16(blk.d) * float(blk.scales[j] & 15);
            if (d == 0) continue;
            const float dm = from_fp16(blk.dmin) * float(blk.scales[j] >> 4);
            for (int l = 0; l < 16; l++) q[16 * j + l] = uint8_t(clampi(nearest((x[16 * j + l] + dm) / d), 0, 3));
        }
        pack_2bit(blk.qs, q);
        std::memcpy(y, &blk, sizeof blk);
    }
}

void quantize_q3_k_file(uint8_t* y, const float* x, int64_t nb) {
    // 16 symmetric sub-blocks of 16 (codes -4..3), 6-bit signed scales against the block's extreme
    for (int64_t b = 0; b < nb; b++, x += 256, y += sizeof(BlockQ3_K)) {
        uint8_t q[256];
        float sc[16], amax = 0, ext = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = fit_symmetric_descent(x + 16 * j, 16, 4, q + 16 * j);
            if (std::fabs(sc[j]) > amax) {
                amax = std::fabs(sc[j]);
                ext = sc[j];
            }
        }
        BlockQ3_K blk{};
        int ls[16] = {};
        if (ext != 0) {
            const float inv = -32.f / ext;
            for (int j = 0; j < 16; j++) {
                ls[j] = clampi(nearest(inv * sc[j]), -32, 31);
                const int l = ls[j] + 32;
                if (j < 8) blk.scales[j] = uint8_t(l & 15);
                else blk.scales[j - 8] = uint8_t(blk.scales[j - 8] | ((l & 15) << 4));
                blk.scales[8 + j % 4] = uint8_t(blk.scales[8 + j % 4] | ((l >> 4) << (2 * (j / 4))));
            }
            blk.d = to_fp16(1 / inv);
        }
        for (int j = 0; j < 16; j++) {
            const float d = from_fp16(blk.d) * float(ls[j]);  // 0 when every scale is
            if (d == 0) continue;
            for (int l = 0; l < 16; l++) q[16 * j + l] = uint8_t(clampi(nearest(x[16 * j + l] / d), -4, 3) + 4);
        }
        for (int e = 0; e < 256; e++)
            if (q[e] > 3) {
                blk.hmask[e % 32] = uint8_t(blk.hmask[e % 32] | (1 << (e / 32)));
                q[e] = uint8_t(q[e] - 4);
            }
        pack_2bit(blk.qs, q);
        std::memcpy(y, &blk, sizeof blk);
    }
}

void quantize_q6_k_file(uint8_t* y, const float* x, int64_t nb) {
    // 16 symmetric sub-blocks of 16 (codes -32..31), int8 scales against the block's extreme
    for (int64_t b = 0; b < nb; b++, x += 256, y += sizeof(BlockQ6_K)) {
        uint8_t q[256];
        float sc[16], amax = 0, ext = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = fit_symmetric_grid(x + 16 * j, 16, 32, q + 16 * j);
            if (std::fabs(sc[j]) > amax) {
                amax = std::fabs(sc[j]);
                ext = sc[j];
            }
        }
        BlockQ6_K blk{};
        if (amax >= kTiny) {
            const float inv = -128.f / ext;
            blk.d = to_fp16(1 / inv);
            for (int j = 0; j < 16; j++) blk.scales[j] = int8_t(std::min(127, nearest(inv * sc[j])));
            for (int j = 0; j < 16; j++) {
                const float d = from_fp16(blk.d) * float(blk.scales[j]);
                if (d == 0) continue;
                for (int l = 0; l < 16; l++)
                    q[16 * j + l] = uint8_t(clampi(nearest(x[16 * j + l] / d), -32, 31) + 32);
            }
            for (int h = 0; h < 2; h++) {
                const uint8_t* qq = q + 128 * h;
                for (int l = 0; l < 32; l++) {
                    const int a = qq[l], c = qq[l + 32], e = qq[l + 64], g = qq[l + 96];
                    blk.ql[64 * h + l] = uint8_t((a & 15) | ((e & 15) << 4));
                    blk.ql[64 * h + l + 32] = uint8_t((c & 15) | ((g & 15) << 4));
                    blk.qh[32 * h + l] = uint8_t((a >> 4) | ((c >> 4) << 2) | ((e >> 4) << 4) | ((g >> 4) << 6));
                }
            }
        }
        std::memcpy(y, &blk, sizeof blk);
    }
}

void quantize_rows_file(int type, uint8_t* dst, const float* src, int64_t rows, int64_t n, int threads) {
    const QuantType* t = quant_type(type);
    const int64_t nb = n / t->block, row_bytes = nb * t->block_bytes;
    const int64_t use = std::max<int64_t>(1, std::min<int64_t>(threads, rows));
    auto work = [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; r++) t->quantize_file(dst + r * row_bytes, src + r * n, nb);
    };
    if (use == 1) {
        work(0, rows);
        return;
    }
    std::vector<std::thread> pool;
    for (int64_t k = 0; k < use; k++) pool.emplace_back(work, rows * k / use, rows * (k + 1) / use);
    for (std::thread& th : pool) th.join();
}

}  // namespace pyllm
