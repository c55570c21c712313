// CPU feature detection and the per-ISA kernel tables. Compiled for the
// baseline target: nothing here may use an instruction beyond it.
#include "dispatch.h"

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <set>
#include <stdexcept>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace pyllm {

#if defined(PYLLM_HAVE_AVX2)
namespace avx2 {
#include "../kernels/kernels.inc"
}
#endif
#if defined(PYLLM_HAVE_AVX512)
namespace avx512 {
#include "../kernels/kernels.inc"
}
#endif
#if defined(PYLLM_HAVE_NEON)
namespace neon {
#include "../kernels/kernels.inc"
}
#endif

namespace {

#define PYLLM_ENTRY_SCALAR(name) &scalar::name,
const KernelTable kScalar{"scalar", PYLLM_KERNEL_LIST(PYLLM_ENTRY_SCALAR)};
#if defined(PYLLM_HAVE_AVX2)
#define PYLLM_ENTRY_AVX2(name) &avx2::name,
const KernelTable kAvx2{"avx2", PYLLM_KERNEL_LIST(PYLLM_ENTRY_AVX2)};
#endif
#if defined(PYLLM_HAVE_AVX512)
#define PYLLM_ENTRY_AVX512(name) &avx512::name,
const KernelTable kAvx512{"avx512", PYLLM_KERNEL_LIST(PYLLM_ENTRY_AVX512)};
#endif
#if defined(PYLLM_HAVE_NEON)
#define PYLLM_ENTRY_NEON(name) &neon::name,
const KernelTable kNeon{"neon", PYLLM_KERNEL_LIST(PYLLM_ENTRY_NEON)};
#endif

#if defined(__x86_64__) || defined(__i386__)
// Whether the OS saves the opmask and full zmm state on context switch
// (XCR0 bits 1, 2, 5, 6, 7): without it AVX-512 code faults or corrupts
// registers even on a CPU that has the instructions.
bool os_saves_zmm() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return false;  // OSXSAVE
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xe6u) == 0xe6u;
}
#endif

bool cpu_has(const char* feature) {
#if defined(__x86_64__) || defined(__i386__)
    // __builtin_cpu_supports also checks that the OS saves the ymm state; for
    // AVX-512 we check the zmm state ourselves rather than rely on the
    // compiler runtime's version doing so
    const std::string f(feature);
    if (f == "avx2") return __builtin_cpu_supports("avx2");
    if (f == "fma") return __builtin_cpu_supports("fma");
    if (f == "avx") return __builtin_cpu_supports("avx");
    if (f == "f16c") {  // CPUID.1:ECX[29]; not every compiler's builtin knows the name
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        return __builtin_cpu_supports("avx") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) &&
               (ecx & (1u << 29));
    }
    if (f == "sse4.2") return __builtin_cpu_supports("sse4.2");
    static const bool zmm = os_saves_zmm();
    if (f == "avx512f") return zmm && __builtin_cpu_supports("avx512f");
    if (f == "avx512bw") return zmm && __builtin_cpu_supports("avx512bw");
    if (f == "avx512dq") return zmm && __builtin_cpu_supports("avx512dq");
    if (f == "avx512vl") return zmm && __builtin_cpu_supports("avx512vl");
    return false;
#elif defined(__aarch64__)
    return std::string(feature) == "neon";
#else
    (void)feature;
    return false;
#endif
}

// PYLLM_FAKE_CPU_FEATURES="sse4.2,avx" (tests only): pretend the CPU has
// exactly these features, to exercise dispatch on machines that have more.
bool has_feature(const char* feature) {
    const char* fake = std::getenv("PYLLM_FAKE_CPU_FEATURES");
    if (!fake) return cpu_has(feature);
    const std::string list = std::string(",") + fake + ",";
    return list.find(std::string(",") + feature + ",") != std::string::npos;
}

bool can_run(const std::string& isa) {
    if (isa == "scalar") return true;
#if defined(PYLLM_HAVE_AVX2)
    if (isa == "avx2") return has_feature("avx2") && has_feature("fma");
#endif
#if defined(PYLLM_HAVE_AVX512)
    if (isa == "avx512")
        return has_feature("avx512f") && has_feature("avx512bw") && has_feature("avx512dq") &&
               has_feature("avx512vl") && has_feature("avx2") && has_feature("fma") &&
               has_feature("f16c");
#endif
#if defined(PYLLM_HAVE_NEON)
    if (isa == "neon") return true;
#endif
    return false;
}

const KernelTable* table_for(const std::string& isa) {
    if (isa == "scalar") return &kScalar;
#if defined(PYLLM_HAVE_AVX2)
    if (isa == "avx2") return &kAvx2;
#endif
#if defined(PYLLM_HAVE_AVX512)
    if (isa == "avx512") return &kAvx512;
#endif
#if defined(PYLLM_HAVE_NEON)
    if (isa == "neon") return &kNeon;
#endif
    return nullptr;
}

const KernelTable* initial_table() {
    const char* env = std::getenv("PYLLM_ISA");
    std::string want = env && *env ? env : "auto";
    if (want == "auto") want = available_isas().back();
    if (!can_run(want) || !table_for(want)) {
        std::string ok;
        for (const auto& s : available_isas()) ok += (ok.empty() ? "" : ", ") + s;
        throw std::invalid_argument("PYLLM_ISA=" + want +
                                    " cannot run here; this build and CPU support: auto, " + ok);
    }
    return table_for(want);
}

std::atomic<const KernelTable*> g_table{nullptr};

// Physical cores this process may run on: the CPUs in its affinity mask,
// counting hyperthread siblings once; the logical count when sysfs is absent.
int default_threads() {
    if (const char* env = std::getenv("OMP_NUM_THREADS")) {
        // OMP_NUM_THREADS=99999999999 is capped, not an overflowed atoi or a million threads
        const long long n = std::strtoll(env, nullptr, 10);
        if (n > 0) return int(n < kMaxThreads ? n : kMaxThreads);
    }
#if defined(__linux__)
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof(mask), &mask) == 0) {
        std::set<std::string> cores;
        int logical = 0;
        for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
            if (!CPU_ISSET(cpu, &mask)) continue;
            logical++;
            std::ifstream f("/sys/devices/system/cpu/cpu" + std::to_string(cpu) +
                            "/topology/thread_siblings_list");
            std::string siblings;
            if (f && std::getline(f, siblings))
                cores.insert(siblings);
            else
                cores.insert("cpu" + std::to_string(cpu));
        }
        if (!cores.empty()) return int(cores.size());
        if (logical > 0) return logical;
    }
#endif
    const unsigned hc = std::thread::hardware_concurrency();
    return hc > 0 ? int(hc) : 1;
}

std::atomic<int> g_threads{0};

}  // namespace

const KernelTable& kernels() {
    const KernelTable* t = g_table.load(std::memory_order_acquire);
    if (!t) {
        t = initial_table();
        g_table.store(t, std::memory_order_release);
    }
    return *t;
}

void set_isa(const std::string& isa) {
    const std::string want = isa == "auto" ? available_isas().back() : isa;
    const KernelTable* t = table_for(want);
    if (!t || !can_run(want)) {
        std::string ok;
        for (const auto& s : available_isas()) ok += (ok.empty() ? "" : ", ") + s;
        throw std::invalid_argument("ISA '" + isa + "' cannot run here; supported: auto, " + ok);
    }
    g_table.store(t, std::memory_order_release);
}

std::vector<std::string> available_isas() {
    std::vector<std::string> out{"scalar"};
#if defined(PYLLM_HAVE_NEON)
    out.push_back("neon");
#endif
#if defined(PYLLM_HAVE_AVX2)
    if (can_run("avx2")) out.push_back("avx2");
#endif
#if defined(PYLLM_HAVE_AVX512)
    if (can_run("avx512")) out.push_back("avx512");
#endif
    return out;
}

std::vector<std::string> cpu_features() {
    std::vector<std::string> out;
    for (const char* f : {"sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq",
                          "avx512vl", "neon"})
        if (has_feature(f)) out.push_back(f);
    return out;
}

namespace {
thread_local int t_threads = 0;  // ScopedThreads' count for this thread's calls, 0: none
}

ScopedThreads::ScopedThreads(int n) : saved_(t_threads) { t_threads = n; }
ScopedThreads::~ScopedThreads() { t_threads = saved_; }

int max_threads() {
    int n = g_threads.load(std::memory_order_relaxed);
    if (n <= 0) {
        n = default_threads();
        g_threads.store(n, std::memory_order_relaxed);
    }
    return n;
}

int num_threads() { return t_threads > 0 ? t_threads : max_threads(); }

namespace {
std::atomic<int> g_adaptive{-1};  // -1: not read from the environment yet
}

bool adaptive_threads() {
    int a = g_adaptive.load(std::memory_order_relaxed);
    if (a < 0) {
        const char* env = std::getenv("PYLLM_ADAPTIVE_THREADS");
        a = env && std::string(env) == "0" ? 0 : 1;
        g_adaptive.store(a, std::memory_order_relaxed);
    }
    return a != 0;
}

void set_adaptive_threads(bool on) { g_adaptive.store(on ? 1 : 0, std::memory_order_relaxed); }

void set_num_threads(int64_t n) {
    if (n < 1 || n > kMaxThreads)
        throw std::invalid_argument("set_num_threads: n must be an integer in [1, " + std::to_string(kMaxThreads) +
                                    "], got " + std::to_string(n));
    g_threads.store(int(n), std::memory_order_relaxed);
}

}  // namespace pyllm
