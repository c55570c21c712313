// The GGUF tensor types, one row each (kQuantTypes): ggml id, name, block
// geometry, whether the runtime computes with it and its reference decoder.
// Not the fast kernels (quant.cpp) and not the packed layouts (common.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace pyllm {

// ---- ggml type ids (GGUF's tensor type field)
constexpr int kTypeF32 = 0, kTypeF16 = 1, kTypeQ4_0 = 2, kTypeQ4_1 = 3, kTypeQ5_0 = 6, kTypeQ5_1 = 7,
              kTypeQ8_0 = 8, kTypeQ8_1 = 9, kTypeQ2_K = 10, kTypeQ3_K = 11, kTypeQ4_K = 12, kTypeQ5_K = 13,
              kTypeQ6_K = 14, kTypeQ8_K = 15, kTypeIQ2_XXS = 16, kTypeIQ2_XS = 17, kTypeIQ3_XXS = 18,
              kTypeIQ1_S = 19, kTypeIQ4_NL = 20, kTypeIQ3_S = 21, kTypeIQ2_S = 22, kTypeIQ4_XS = 23, kTypeI8 = 24,
              kTypeI16 = 25, kTypeI32 = 26, kTypeI64 = 27, kTypeF64 = 28, kTypeIQ1_M = 29, kTypeBF16 = 30,
              kTypeTQ1_0 = 34, kTypeTQ2_0 = 35, kTypeMXFP4 = 39, kTypeNVFP4 = 40, kTypeQ1_0 = 41;

// elements of a block: the 32-element types (and the packed layouts of
// common.h), the 256-element super-blocks of the K, IQ and TQ types, and
// the largest block of any type (a row of scratch that holds one block)
constexpr int64_t kQuantBlock = 32, kQuantBlockK = 256, kQuantMaxBlock = 256;

// ---- block layouts, little-endian and packed; fp16 fields are uint16_t
// bits. Elements are numbered 0..block-1 within their block; "sub-block j"
// is elements [j*S, (j+1)*S). An element decodes in float32, one rounding
// per operation written (products of fp16 scales by small integers are
// exact, so each formula rounds once, at its last + or -).

// x = d * (q - 8); q of element j < 16 the low nibble of qs[j], of j + 16 its high nibble
struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };
// x = d * q + m; q as Q4_0's
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[16]; };
// x = d * (q - 16); q = Q4_0's nibble | bit j of qh (uint32) << 4
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };
// x = d * q + m; q as Q5_0's
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; };
// x = d * q
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };
// Q8_0 with s = d * sum(q): a dot-product operand, not a storage type
struct BlockQ8_1 { uint16_t d, s; int8_t qs[32]; };
// 16 sub-blocks of 16: x = (d * (scales[j] & 15)) * q - dmin * (scales[j] >> 4);
// q of element 128h + 32s + l: bits 2s..2s+1 of qs[32h + l]
struct BlockQ2_K { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; };
// 16 sub-blocks of 16: x = (d * (sc[j] - 32)) * (q - 4 * !hbit), sc 6 bits (low 4: scales[j] & 15
// for j < 8, scales[j - 8] >> 4 after; high 2: bits 2(j/4) of scales[8 + j%4]); q as Q2_K's; hbit of
// element e: bit e/32 of hmask[e % 32]
struct BlockQ3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; };
// 8 sub-blocks of 32: x = (d * sc[j]) * q - dmin * mn[j], 6-bit sc and mn: for j < 4 the low 6 bits
// of scales[j] and scales[j + 4]; for j >= 4 the nibbles of scales[j + 4] (sc low, mn high) with the
// top 2 bits of scales[j - 4] (sc) and scales[j] (mn) above them. q of element 32j + l: nibble j%2
// of qs[32(j/2) + l]
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; };
// the 6-bit scale and min of sub-block j (of 8) of a Q4_K / Q5_K block, unpacked from its 12 scale bytes
inline void scale_min_k4(const uint8_t* scales, int j, int& sc, int& mn) {
    if (j < 4) {
        sc = scales[j] & 0x3f;
        mn = scales[j + 4] & 0x3f;
    } else {
        sc = (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4);
        mn = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}
// Q4_K, and q gains bit j of qh[l] as its bit 4
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
// 16 sub-blocks of 16: x = (d * scales[j]) * (q - 32); q of element 128h + 64k + l (l < 64): nibble k
// of ql[64h + l], with bits 2s..2s+1 of qh[32h + l % 32] (s = 2k + l/32) as its bits 4..5
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };
// x = d * q (an fp32 scale): a dot-product operand, not a storage type
struct BlockQ8_K { float d; int8_t qs[256]; int16_t bsums[16]; };
// x = d * kIQ4Values[q]; q as Q4_0's
struct BlockIQ4_NL { uint16_t d; uint8_t qs[16]; };
// 8 sub-blocks of 32: x = (d * (ls[j] - 32)) * kIQ4Values[q], ls 6 bits: nibble j%2 of scales_l[j/2]
// | bits 2j..2j+1 of scales_h << 4; q of element 32j + l: IQ4_NL's, over qs[16j..16j+16)
struct BlockIQ4_XS { uint16_t d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[128]; };
// the IQ4 types' non-uniform levels
constexpr int8_t kIQ4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Known, sized, not computed with: codebook (IQ1-IQ3), ternary and fp4 types
struct BlockIQ2_XXS { uint16_t d; uint16_t qs[32]; };
struct BlockIQ2_XS { uint16_t d; uint16_t qs[32]; uint8_t scales[8]; };
struct BlockIQ2_S { uint16_t d; uint8_t qs[32]; uint8_t signs[32]; uint8_t qh[8]; uint8_t scales[8]; };
struct BlockIQ3_XXS { uint16_t d; uint8_t qs[64]; uint8_t scales_signs[32]; };
struct BlockIQ3_S { uint16_t d; uint8_t qs[64]; uint8_t qh[8]; uint8_t signs[32]; uint8_t scales[4]; };
struct BlockIQ1_S { uint16_t d; uint8_t qs[32]; uint16_t qh[8]; };
struct BlockIQ1_M { uint8_t qs[32]; uint8_t qh[16]; uint8_t scales[8]; };
struct BlockTQ1_0 { uint8_t qs[48]; uint8_t qh[4]; uint16_t d; };
struct BlockTQ2_0 { uint8_t qs[64]; uint16_t d; };
struct BlockMXFP4 { uint8_t e; uint8_t qs[16]; };       // 32 elements, an e8m0 scale
struct BlockNVFP4 { uint8_t d[4]; uint8_t qs[32]; };    // 64 elements, 4 e4m3 scales
struct BlockQ1_0 { uint16_t d; uint8_t qs[16]; };       // 128 elements of 1 bit

// no padding anywhere: each size is the sum of its fields
static_assert(sizeof(BlockQ4_0) == 2 + 16 && sizeof(BlockQ4_1) == 4 + 16, "Q4 layout");
static_assert(sizeof(BlockQ5_0) == 2 + 4 + 16 && sizeof(BlockQ5_1) == 4 + 4 + 16, "Q5 layout");
static_assert(sizeof(BlockQ8_0) == 2 + 32 && sizeof(BlockQ8_1) == 4 + 32, "Q8 layout");
static_assert(sizeof(BlockQ2_K) == 16 + 64 + 4, "Q2_K layout");
static_assert(sizeof(BlockQ3_K) == 32 + 64 + 12 + 2, "Q3_K layout");
static_assert(sizeof(BlockQ4_K) == 4 + 12 + 128, "Q4_K layout");
static_assert(sizeof(BlockQ5_K) == 4 + 12 + 32 + 128, "Q5_K layout");
static_assert(sizeof(BlockQ6_K) == 128 + 64 + 16 + 2, "Q6_K layout");
static_assert(sizeof(BlockQ8_K) == 4 + 256 + 32, "Q8_K layout");
static_assert(sizeof(BlockIQ4_NL) == 2 + 16 && sizeof(BlockIQ4_XS) == 4 + 4 + 128, "IQ4 layout");
static_assert(sizeof(BlockIQ2_XXS) == 2 + 64 && sizeof(BlockIQ2_XS) == 2 + 64 + 8 &&
                  sizeof(BlockIQ2_S) == 2 + 32 + 32 + 8 + 8,
              "IQ2 layout");
static_assert(sizeof(BlockIQ3_XXS) == 2 + 64 + 32 && sizeof(BlockIQ3_S) == 2 + 64 + 8 + 32 + 4, "IQ3 layout");
static_assert(sizeof(BlockIQ1_S) == 2 + 32 + 16 && sizeof(BlockIQ1_M) == 32 + 16 + 8, "IQ1 layout");
static_assert(sizeof(BlockTQ1_0) == 48 + 4 + 2 && sizeof(BlockTQ2_0) == 64 + 2, "TQ layout");
static_assert(sizeof(BlockMXFP4) == 1 + 16 && sizeof(BlockNVFP4) == 4 + 32 && sizeof(BlockQ1_0) == 2 + 16,
              "fp4 and 1-bit layout");

// ---- reference decoders (quant_types.cpp: compiled once, no FMA
// contraction), bit-identical to gguf's numpy dequantizers. Each turns nb
// blocks at src into nb * block floats at out.
using DequantizeFn = void (*)(float* out, const uint8_t* src, int64_t nb);
void dequantize_f32_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_f16_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_bf16_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_q4_0_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_q4_1_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_q5_0_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_q5_1_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_q8_0_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_q2_k_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_q3_k_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_q4_k_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_q5_k_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_q6_k_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_iq4_nl_ref(float* out, const uint8_t* src, int64_t nb);
void dequantize_iq4_xs_ref(float* out, const uint8_t* src, int64_t nb);

// ---- file quantizers (quantize.cpp: baseline code, no FMA contraction),
// what `pyllm quantize` writes. Each turns nb blocks of floats at x into nb
// blocks at y: the 32-element types as gguf's numpy quantizers (bit for
// bit), the K and IQ4 types by a search over each sub-block's scale.
using QuantizeFn = void (*)(uint8_t* y, const float* x, int64_t nb);
void quantize_q4_0_file(uint8_t* y, const float* x, int64_t nb);
void quantize_q4_1_file(uint8_t* y, const float* x, int64_t nb);
void quantize_q5_0_file(uint8_t* y, const float* x, int64_t nb);
void quantize_q5_1_file(uint8_t* y, const float* x, int64_t nb);
void quantize_q8_0_file(uint8_t* y, const float* x, int64_t nb);
void quantize_q2_k_file(uint8_t* y, const float* x, int64_t nb);
void quantize_q3_k_file(uint8_t* y, const float* x, int64_t nb);
void quantize_q4_k_file(uint8_t* y, const float* x, int64_t nb);
void quantize_q5_k_file(uint8_t* y, const float* x, int64_t nb);
void quantize_q6_k_file(uint8_t* y, const float* x, int64_t nb);
void quantize_iq4_nl_file(uint8_t* y, const float* x, int64_t nb);
void quantize_iq4_xs_file(uint8_t* y, const float* x, int64_t nb);
// rows (rows, n) of floats -> rows * quant_row_bytes(type, n) bytes, rows
// split over `threads` threads; `type` has a quantize_file (checked by the caller)
void quantize_rows_file(int type, uint8_t* dst, const float* src, int64_t rows, int64_t n, int threads);

// ---- the table
struct QuantType {
    int id;                  // ggml type id
    const char* name;        // GGUF's name for it
    int64_t block;           // elements per block (1: a plain array)
    int64_t block_bytes;     // bytes per block
    DequantizeFn dequantize; // the reference decoder, or null: the runtime does not compute with it
    bool quantize;           // quantize_row (quant.cpp) writes it
    QuantizeFn quantize_file = nullptr;  // the file quantizer (quantize.cpp), or null: `pyllm quantize` does not write it
    constexpr bool computable() const { return dequantize != nullptr; }
};

// Every type GGUF defines, by id. A new type is one row here (and, if the
// runtime computes with it, its decoder in quant_types.cpp); tests/test_quant_types.py
// checks every row against the gguf package.
inline constexpr QuantType kQuantTypes[] = {
    // id          name       block          bytes                   reference decoder      quantize  file quantizer
    {kTypeF32,     "F32",     1,             4,                      dequantize_f32_ref,    false},
    {kTypeF16,     "F16",     1,             2,                      dequantize_f16_ref,    false},
    {kTypeQ4_0,    "Q4_0",    kQuantBlock,   sizeof(BlockQ4_0),      dequantize_q4_0_ref,   true, quantize_q4_0_file},
    {kTypeQ4_1,    "Q4_1",    kQuantBlock,   sizeof(BlockQ4_1),      dequantize_q4_1_ref,   true, quantize_q4_1_file},
    {kTypeQ5_0,    "Q5_0",    kQuantBlock,   sizeof(BlockQ5_0),      dequantize_q5_0_ref,   false, quantize_q5_0_file},
    {kTypeQ5_1,    "Q5_1",    kQuantBlock,   sizeof(BlockQ5_1),      dequantize_q5_1_ref,   false, quantize_q5_1_file},
    {kTypeQ8_0,    "Q8_0",    kQuantBlock,   sizeof(BlockQ8_0),      dequantize_q8_0_ref,   true, quantize_q8_0_file},
    {kTypeQ8_1,    "Q8_1",    kQuantBlock,   sizeof(BlockQ8_1),      nullptr,               false},
    {kTypeQ2_K,    "Q2_K",    kQuantBlockK,  sizeof(BlockQ2_K),      dequantize_q2_k_ref,   false, quantize_q2_k_file},
    {kTypeQ3_K,    "Q3_K",    kQuantBlockK,  sizeof(BlockQ3_K),      dequantize_q3_k_ref,   false, quantize_q3_k_file},
    {kTypeQ4_K,    "Q4_K",    kQuantBlockK,  sizeof(BlockQ4_K),      dequantize_q4_k_ref,   false, quantize_q4_k_file},
    {kTypeQ5_K,    "Q5_K",    kQuantBlockK,  sizeof(BlockQ5_K),      dequantize_q5_k_ref,   false, quantize_q5_k_file},
    {kTypeQ6_K,    "Q6_K",    kQuantBlockK,  sizeof(BlockQ6_K),      dequantize_q6_k_ref,   false, quantize_q6_k_file},
    {kTypeQ8_K,    "Q8_K",    kQuantBlockK,  sizeof(BlockQ8_K),      nullptr,               false},
    {kTypeIQ2_XXS, "IQ2_XXS", kQuantBlockK,  sizeof(BlockIQ2_XXS),   nullptr,               false},
    {kTypeIQ2_XS,  "IQ2_XS",  kQuantBlockK,  sizeof(BlockIQ2_XS),    nullptr,               false},
    {kTypeIQ3_XXS, "IQ3_XXS", kQuantBlockK,  sizeof(BlockIQ3_XXS),   nullptr,               false},
    {kTypeIQ1_S,   "IQ1_S",   kQuantBlockK,  sizeof(BlockIQ1_S),     nullptr,               false},
    {kTypeIQ4_NL,  "IQ4_NL",  kQuantBlock,   sizeof(BlockIQ4_NL),    dequantize_iq4_nl_ref, false, quantize_iq4_nl_file},
    {kTypeIQ3_S,   "IQ3_S",   kQuantBlockK,  sizeof(BlockIQ3_S),     nullptr,               false},
    {kTypeIQ2_S,   "IQ2_S",   kQuantBlockK,  sizeof(BlockIQ2_S),     nullptr,               false},
    {kTypeIQ4_XS,  "IQ4_XS",  kQuantBlockK,  sizeof(BlockIQ4_XS),    dequantize_iq4_xs_ref, false, quantize_iq4_xs_file},
    {kTypeI8,      "I8",      1,             1,                      nullptr,               false},
    {kTypeI16,     "I16",     1,             2,                      nullptr,               false},
    {kTypeI32,     "I32",     1,             4,                      nullptr,               false},
    {kTypeI64,     "I64",     1,             8,                      nullptr,               false},
    {kTypeF64,     "F64",     1,             8,                      nullptr,               false},
    {kTypeIQ1_M,   "IQ1_M",   kQuantBlockK,  sizeof(BlockIQ1_M),     nullptr,               false},
    {kTypeBF16,    "BF16",    1,             2,                      dequantize_bf16_ref,   false},
    {kTypeTQ1_0,   "TQ1_0",   kQuantBlockK,  sizeof(BlockTQ1_0),     nullptr,               false},
    {kTypeTQ2_0,   "TQ2_0",   kQuantBlockK,  sizeof(BlockTQ2_0),     nullptr,               false},
    {kTypeMXFP4,   "MXFP4",   kQuantBlock,   sizeof(BlockMXFP4),     nullptr,               false},
    {kTypeNVFP4,   "NVFP4",   64,            sizeof(BlockNVFP4),     nullptr,               false},
    {kTypeQ1_0,    "Q1_0",    128,           sizeof(BlockQ1_0),      nullptr,               false},
};

constexpr bool quant_table_is_sound() {
    // ids unique; blocks fit the scratch of one block; quantize only what is also read
    for (const QuantType& a : kQuantTypes) {
        if (a.block < 1 || a.block > kQuantMaxBlock || a.block_bytes < 1) return false;
        if ((a.quantize || a.quantize_file) && !a.computable()) return false;
        int same = 0;
        for (const QuantType& b : kQuantTypes) same += a.id == b.id;
        if (same != 1) return false;
    }
    return true;
}
static_assert(quant_table_is_sound(), "kQuantTypes: duplicate id or impossible row");

// ---- lookups (quant_types.cpp; baseline code, callable from every ISA's kernels)

// The row of ggml type `id`, or null when GGUF defines no such type.
const QuantType* quant_type(int64_t id);
// Elements per block of `type`, 0 for an unknown id.
int64_t quant_block_elems(int type);
// Bytes per block of `type`, 0 for an unknown id.
int64_t quant_block_bytes(int type);
// Bytes of a row of n elements (n a multiple of the block size), 0 for an unknown id.
int64_t quant_row_bytes(int type, int64_t n);
// Whether the runtime computes with `type` (it has a reference decoder).
bool quant_computable(int type);
// "F32, F16, ..." in table order: the types the runtime computes with, or
// (quantize) those quantize_row writes, for error messages.
const std::string& quant_type_list(bool quantize = false);

// ---- element formats
// fp16 bits -> fp32, exact. NaNs come out quiet with their payload, as F16C does.
static inline float fp16_to_f32_portable(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0u);
    } else if (exp) {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    } else {
        // zero or subnormal: man * 2^-24, exact in fp32
        const float f = float(man) * 5.9604644775390625e-8f;
        std::memcpy(&u, &f, 4);
        u |= sign;
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

}  // namespace pyllm
