// The thin vector layer: an 8-lane float vector `vf` and its operations, for
// the ISA this translation unit is compiled for. Not a general SIMD library.
//
// Each kernel source is compiled once per ISA with PYLLM_ISA set to the
// namespace of that build (scalar, avx2, avx512, neon) and one of
// PYLLM_ISA_SCALAR, PYLLM_ISA_AVX2, PYLLM_ISA_NEON defined; the avx512 build
// defines PYLLM_ISA_AVX512 as well as PYLLM_ISA_AVX2, so every AVX2 path
// compiles there unchanged and avx512.h adds a 16-float `vf16`. Everything
// here lives in pyllm::PYLLM_ISA, so the AVX2 copy of an inline helper can
// never be the one the linker keeps for baseline code.
#pragma once

#include <cstdint>

#ifndef PYLLM_ISA
#error "PYLLM_ISA must name the ISA namespace of this build (scalar, avx2, avx512, neon)"
#endif

#if defined(PYLLM_ISA_AVX512)
#include "avx512.h"
#elif defined(PYLLM_ISA_AVX2)
#include "avx2.h"
#elif defined(PYLLM_ISA_NEON)
#include "neon.h"
#elif defined(PYLLM_ISA_SCALAR)
#include "scalar.h"
#else
#error "define one of PYLLM_ISA_AVX2, PYLLM_ISA_NEON, PYLLM_ISA_SCALAR"
#endif
