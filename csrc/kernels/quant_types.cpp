// The reference decoder of every type the runtime computes with, and the
// lookups into kQuantTypes (quant_types.h). Compiled once for the baseline
// target with no FMA contraction (CMakeLists.txt): each element is computed
// in float32 one operation at a time, in the order gguf's numpy decoders
// use, so the bits match theirs. Not a fast path (quant.cpp has those).
#include "quant_types.h"

#include <array>
#include <cstring>

namespace pyllm {

namespace {

template <class Block>
inline Block load_block(const uint8_t* p) {
    Block b;
    std::memcpy(&b, p, sizeof(Block));
    return b;
}

inline uint16_t load_u16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return h;
}

inline float bf16_to_f32(uint16_t h) {
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// 4-bit code of element j (of 32) in 16 bytes: low nibbles first, then high
inline int nibble(const uint8_t* qs, int j) { return j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4; }

}  // namespace

// ---- plain arrays (a "block" is one element)

void dequantize_f32_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb floats -> out (nb,)
    std::memcpy(out, src, sizeof(float) * size_t(nb));
}

void dequantize_f16_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb fp16 -> out (nb,)
    for (int64_t i = 0; i < nb; i++) out[i] = fp16_to_f32_portable(load_u16(src + 2 * i));
}

void dequantize_bf16_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb bf16 -> out (nb,)
    for (int64_t i = 0; i < nb; i++) out[i] = bf16_to_f32(load_u16(src + 2 * i));
}

// ---- 32-element blocks

void dequantize_q4_0_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb BlockQ4_0 -> out (nb*32,)
    for (int64_t b = 0; b < nb; b++, out += kQuantBlock) {
        const auto blk = load_block<BlockQ4_0>(src + b * int64_t(sizeof(BlockQ4_0)));
        const float d = fp16_to_f32_portable(blk.d);
        for (int j = 0; j < 32; j++) out[j] = d * float(nibble(blk.qs, j) - 8);
    }
}

void dequantize_q4_1_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb BlockQ4_1 -> out (nb*32,)
    for (int64_t b = 0; b < nb; b++, out += kQuantBlock) {
        const auto blk = load_block<BlockQ4_1>(src + b * int64_t(sizeof(BlockQ4_1)));
        const float d = fp16_to_f32_portable(blk.d), m = fp16_to_f32_portable(blk.m);
        for (int j = 0; j < 32; j++) {
            const float dq = d * float(nibble(blk.qs, j));
            out[j] = dq + m;
        }
    }
}

void dequantize_q5_0_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb BlockQ5_0 -> out (nb*32,)
    for (int64_t b = 0; b < nb; b++, out += kQuantBlock) {
        const auto blk = load_block<BlockQ5_0>(src + b * int64_t(sizeof(BlockQ5_0)));
        const float d = fp16_to_f32_portable(blk.d);
        uint32_t qh;
        std::memcpy(&qh, blk.qh, 4);
        for (int j = 0; j < 32; j++) {
            const int q = nibble(blk.qs, j) | int((qh >> j) & 1u) << 4;
            out[j] = d * float(q - 16);
        }
    }
}

void dequantize_q5_1_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb BlockQ5_1 -> out (nb*32,)
    for (int64_t b = 0; b < nb; b++, out += kQuantBlock) {
        const auto blk = load_block<BlockQ5_1>(src + b * int64_t(sizeof(BlockQ5_1)));
        const float d = fp16_to_f32_portable(blk.d), m = fp16_to_f32_portable(blk.m);
        uint32_t qh;
        std::memcpy(&qh, blk.qh, 4);
        for (int j = 0; j < 32; j++) {
            const int q = nibble(blk.qs, j) | int((qh >> j) & 1u) << 4;
            const float dq = d * float(q);
            out[j] = dq + m;
        }
    }
}

void dequantize_q8_0_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb BlockQ8_0 -> out (nb*32,)
    for (int64_t b = 0; b < nb; b++, out += kQuantBlock) {
        const auto blk = load_block<BlockQ8_0>(src + b * int64_t(sizeof(BlockQ8_0)));
        const float d = fp16_to_f32_portable(blk.d);
        for (int j = 0; j < 32; j++) out[j] = d * float(blk.qs[j]);
    }
}

void dequantize_iq4_nl_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb BlockIQ4_NL -> out (nb*32,)
    for (int64_t b = 0; b < nb; b++, out += kQuantBlock) {
        const auto blk = load_block<BlockIQ4_NL>(src + b * int64_t(sizeof(BlockIQ4_NL)));
        const float d = fp16_to_f32_portable(blk.d);
        for (int j = 0; j < 32; j++) out[j] = d * float(kIQ4Values[nibble(blk.qs, j)]);
    }
}

// ---- 256-element super-blocks

void dequantize_q2_k_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb BlockQ2_K -> out (nb*256,), 16 sub-blocks of 16
    for (int64_t b = 0; b < nb; b++, out += kQuantBlockK) {
        const auto blk = load_block<BlockQ2_K>(src + b * int64_t(sizeof(BlockQ2_K)));
        const float d = fp16_to_f32_portable(blk.d), dmin = fp16_to_f32_portable(blk.dmin);
        float dl[16], ml[16];
        for (int j = 0; j < 16; j++) {
            dl[j] = d * float(blk.scales[j] & 0x0f);
            ml[j] = dmin * float(blk.scales[j] >> 4);
        }
        // element 128h + 32s + l: bits 2s of qs[32h + l]
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 4; s++)
                for (int l = 0; l < 32; l++) {
                    const int e = 128 * h + 32 * s + l;
                    const int q = (blk.qs[32 * h + l] >> (2 * s)) & 3;
                    const float x = dl[e / 16] * float(q);
                    out[e] = x - ml[e / 16];
                }
    }
}

void dequantize_q3_k_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb BlockQ3_K -> out (nb*256,), 16 sub-blocks of 16
    for (int64_t b = 0; b < nb; b++, out += kQuantBlockK) {
        const auto blk = load_block<BlockQ3_K>(src + b * int64_t(sizeof(BlockQ3_K)));
        const float d = fp16_to_f32_portable(blk.d);
        float dl[16];
        for (int j = 0; j < 16; j++) {
            const int lo = j < 8 ? blk.scales[j] & 0x0f : blk.scales[j - 8] >> 4;
            const int hi = (blk.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            dl[j] = d * float((lo | hi << 4) - 32);
        }
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 4; s++)
                for (int l = 0; l < 32; l++) {
                    const int e = 128 * h + 32 * s + l;
                    const int low = (blk.qs[32 * h + l] >> (2 * s)) & 3;
                    const int high = (blk.hmask[e % 32] >> (e / 32)) & 1;  // a set bit means no offset
                    out[e] = dl[e / 16] * float(low - (high ? 0 : 4));
                }
    }
}

void dequantize_q4_k_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb BlockQ4_K -> out (nb*256,), 8 sub-blocks of 32
    for (int64_t b = 0; b < nb; b++, out += kQuantBlockK) {
        const auto blk = load_block<BlockQ4_K>(src + b * int64_t(sizeof(BlockQ4_K)));
        const float d = fp16_to_f32_portable(blk.d), dmin = fp16_to_f32_portable(blk.dmin);
        for (int j = 0; j < 8; j++) {
            int sc, mn;
            scale_min_k4(blk.scales, j, sc, mn);
            const float ds = d * float(sc), dm = dmin * float(mn);
            const uint8_t* qs = blk.qs + 32 * (j / 2);
            for (int l = 0; l < 32; l++) {
                const float x = ds * float((qs[l] >> (4 * (j % 2))) & 0x0f);
                out[32 * j + l] = x - dm;
            }
        }
    }
}

void dequantize_q5_k_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb BlockQ5_K -> out (nb*256,), 8 sub-blocks of 32
    for (int64_t b = 0; b < nb; b++, out += kQuantBlockK) {
        const auto blk = load_block<BlockQ5_K>(src + b * int64_t(sizeof(BlockQ5_K)));
        const float d = fp16_to_f32_portable(blk.d), dmin = fp16_to_f32_portable(blk.dmin);
        for (int j = 0; j < 8; j++) {
            int sc, mn;
            scale_min_k4(blk.scales, j, sc, mn);
            const float ds = d * float(sc), dm = dmin * float(mn);
            const uint8_t* qs = blk.qs + 32 * (j / 2);
            for (int l = 0; l < 32; l++) {
                const int q = ((qs[l] >> (4 * (j % 2))) & 0x0f) | ((blk.qh[l] >> j) & 1) << 4;
                const float x = ds * float(q);
                out[32 * j + l] = x - dm;
            }
        }
    }
}

void dequantize_q6_k_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb BlockQ6_K -> out (nb*256,), 16 sub-blocks of 16
    for (int64_t b = 0; b < nb; b++, out += kQuantBlockK) {
        const auto blk = load_block<BlockQ6_K>(src + b * int64_t(sizeof(BlockQ6_K)));
        const float d = fp16_to_f32_portable(blk.d);
        float ds[16];
        for (int j = 0; j < 16; j++) ds[j] = d * float(blk.scales[j]);
        // element 128h + 64k + l: nibble k of ql[64h + l], bits 2s of qh[32h + l % 32] (s = 2k + l/32)
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 2; k++)
                for (int l = 0; l < 64; l++) {
                    const int e = 128 * h + 64 * k + l, s = 2 * k + l / 32;
                    const int lo = (blk.ql[64 * h + l] >> (4 * k)) & 0x0f;
                    const int hi = (blk.qh[32 * h + l % 32] >> (2 * s)) & 3;
                    out[e] = ds[e / 16] * float((lo | hi << 4) - 32);
                }
    }
}

void dequantize_iq4_xs_ref(float* out, const uint8_t* src, int64_t nb) {
    // src: nb BlockIQ4_XS -> out (nb*256,), 8 sub-blocks of 32
    for (int64_t b = 0; b < nb; b++, out += kQuantBlockK) {
        const auto blk = load_block<BlockIQ4_XS>(src + b * int64_t(sizeof(BlockIQ4_XS)));
        const float d = fp16_to_f32_portable(blk.d);
        for (int j = 0; j < 8; j++) {
            const int lo = (blk.scales_l[j / 2] >> (4 * (j % 2))) & 0x0f;
            const int hi = (blk.scales_h >> (2 * j)) & 3;
            const float dl = d * float((lo | hi << 4) - 32);
            for (int l = 0; l < 32; l++) out[32 * j + l] = dl * float(kIQ4Values[nibble(blk.qs + 16 * j, l)]);
        }
    }
}

// ---- lookups

const QuantType* quant_type(int64_t id) {
    for (const QuantType& t : kQuantTypes)
        if (t.id == id) return &t;
    return nullptr;
}

int64_t quant_block_elems(int type) {
    const QuantType* t = quant_type(type);
    return t ? t->block : 0;
}

int64_t quant_block_bytes(int type) {
    const QuantType* t = quant_type(type);
    return t ? t->block_bytes : 0;
}

int64_t quant_row_bytes(int type, int64_t n) {
    const QuantType* t = quant_type(type);
    return t ? n / t->block * t->block_bytes : 0;
}

bool quant_computable(int type) {
    const QuantType* t = quant_type(type);
    return t && t->computable();
}

const std::string& quant_type_list(bool quantize) {
    static const std::array<std::string, 2> lists = [] {
        std::string read, written;
        for (const QuantType& t : kQuantTypes) {
            if (t.computable()) read += (read.empty() ? "" : ", ") + std::string(t.name);
            if (t.quantize) written += (written.empty() ? "" : ", ") + std::string(t.name);
        }
        return std::array<std::string, 2>{read, written};
    }();
    return lists[quantize ? 1 : 0];
}

}  // namespace pyllm
