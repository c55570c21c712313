// The pybind11 module pyllm._C: checks and converts numpy buffers, allocates
// outputs, releases the GIL around kernel calls. No arithmetic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cxxabi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "runtime/dispatch.h"
#include "runtime/gguf.h"
#include "runtime/decoder.h"
#include "runtime/workspace.h"

namespace py = pybind11;
using pyllm::kernels;

namespace {

using F32 = py::array_t<float, py::array::c_style>;
using I64 = py::array_t<int64_t, py::array::c_style>;

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); i++) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// Checks that `obj` is a C-contiguous numpy array of T with `ndim` dimensions
// (any number when ndim < 0); `dtype` names T in the error message.
template <typename T>
py::array_t<T, py::array::c_style> checked(const py::object& obj, const char* name, int ndim,
                                           const char* dtype) {
    if (!py::isinstance<py::array>(obj))
        throw py::value_error(std::string(name) + " must be a numpy array");
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().is(py::dtype::of<T>()))
        throw py::value_error(std::string(name) + " must be " + dtype + ", got " +
                              std::string(py::str(a.dtype())));
    if (ndim >= 0 && a.ndim() != ndim)
        throw py::value_error(std::string(name) + " must have " + std::to_string(ndim) +
                              " dimensions, got shape " + shape_str(a));
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + " must be C-contiguous");
    return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(a);
}

F32 f32(const py::object& obj, const char* name, int ndim) { return checked<float>(obj, name, ndim, "float32"); }
I64 i64(const py::object& obj, const char* name, int ndim) { return checked<int64_t>(obj, name, ndim, "int64"); }

// A C++ call without the GIL. The thread count is read once, here, and every
// kernel of the call sees that one value (ScopedThreads): the scratch sized
// for it and the threads started are the same count, whatever
// set_num_threads does meanwhile on another thread.
class Released {
public:
    Released() : state_(PyEval_SaveThread()) {}
    Released(const Released&) = delete;
    Released& operator=(const Released&) = delete;
    ~Released() {
#if defined(__GLIBCXX__)
        try {
            PyEval_RestoreThread(state_);
        } catch (abi::__forced_unwind&) {
            // The interpreter is finalizing and ends this thread (a daemon
            // thread whose call outlived the main thread) by unwinding its
            // stack, which std::terminate()s through this destructor, and whose
            // frames hold Python objects nothing may touch now. Park the
            // thread instead until the process exits, as Python 3.14 does.
            for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
        }
#else
        PyEval_RestoreThread(state_);
#endif
    }

private:
    PyThreadState* state_;
    pyllm::ScopedThreads threads_{pyllm::num_threads()};
};

void expect(bool ok, const std::string& msg) {
    if (!ok) throw py::value_error(msg);
}

std::vector<py::ssize_t> shape_of(const py::array& a) {
    return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// ---- matmul

F32 matmul(const py::object& a_obj, const py::object& b_obj, bool trans_a, bool trans_b) {
    F32 a = f32(a_obj, "a", 2), b = f32(b_obj, "b", 2);
    const int64_t M = trans_a ? a.shape(1) : a.shape(0), K = trans_a ? a.shape(0) : a.shape(1);
    const int64_t Kb = trans_b ? b.shape(1) : b.shape(0), N = trans_b ? b.shape(0) : b.shape(1);
    expect(K == Kb, "matmul: inner dimensions differ: a is " + shape_str(a) + ", b is " +
                        shape_str(b) + (trans_b ? " (transposed)" : ""));
    F32 c({M, N});
    {
        Released nogil;
        float* work = pyllm::thread_workspace(pyllm::sgemm_work_floats(pyllm::num_threads()));
        kernels().sgemm(c.mutable_data(), a.data(), b.data(), M, N, K, trans_a, trans_b, false,
                        work);
    }
    return c;
}

F32 matmul_batched(const py::object& a_obj, const py::object& b_obj, const py::object& ia_obj,
                   const py::object& ib_obj) {
    // a (Ba,M,K), b (Bb,K,N), a_index/b_index (Bt,) -> (Bt,M,N): batch i is a[a_index[i]] @ b[b_index[i]]
    F32 a = f32(a_obj, "a", 3), b = f32(b_obj, "b", 3);
    I64 ia = i64(ia_obj, "a_index", 1), ib = i64(ib_obj, "b_index", 1);
    const int64_t Ba = a.shape(0), M = a.shape(1), K = a.shape(2), Bb = b.shape(0), N = b.shape(2);
    expect(b.shape(1) == K,
           "matmul: shapes " + shape_str(a) + " and " + shape_str(b) + " do not match");
    const int64_t Bt = ia.shape(0);
    expect(ib.shape(0) == Bt, "matmul: a_index " + shape_str(ia) + " and b_index " + shape_str(ib) +
                                  " must have the same length");
    const int64_t* pa = ia.data();
    const int64_t* pb = ib.data();
    for (int64_t i = 0; i < Bt; i++) {
        expect(pa[i] >= 0 && pa[i] < Ba, "matmul: a_index[" + std::to_string(i) + "] = " +
                                              std::to_string(pa[i]) + " is outside [0, " + std::to_string(Ba) + ")");
        expect(pb[i] >= 0 && pb[i] < Bb, "matmul: b_index[" + std::to_string(i) + "] = " +
                                              std::to_string(pb[i]) + " is outside [0, " + std::to_string(Bb) + ")");
    }
    F32 c({Bt, M, N});
    if (c.size() == 0) return c;
    {
        Released nogil;
        float* work = pyllm::thread_workspace(pyllm::sgemm_work_floats(pyllm::num_threads()));
        for (int64_t i = 0; i < Bt; i++)
            kernels().sgemm(c.mutable_data() + i * M * N, a.data() + pa[i] * M * K,
                            b.data() + pb[i] * K * N, M, N, K, false, false, false, work);
    }
    return c;
}

F32 matmul_ref(const py::object& a_obj, const py::object& b_obj, bool trans_a, bool trans_b) {
    F32 a = f32(a_obj, "a", 2), b = f32(b_obj, "b", 2);
    const int64_t M = trans_a ? a.shape(1) : a.shape(0), K = trans_a ? a.shape(0) : a.shape(1);
    const int64_t Kb = trans_b ? b.shape(1) : b.shape(0), N = trans_b ? b.shape(0) : b.shape(1);
    expect(K == Kb, "matmul_ref: inner dimensions differ");
    F32 c({M, N});
    Released nogil;
    kernels().matmul_ref(c.mutable_data(), a.data(), b.data(), M, N, K, trans_a, trans_b, false);
    return c;
}

F32 linear(const py::object& x_obj, const py::object& w_obj, const py::object& bias_obj) {
    // x (M,IN), weight (OUT,IN), bias (OUT) or None -> (M,OUT)
    F32 x = f32(x_obj, "input", 2), w = f32(w_obj, "weight", 2);
    const int64_t M = x.shape(0), K = x.shape(1), N = w.shape(0);
    expect(w.shape(1) == K, "linear: weight must be (out_features, " + std::to_string(K) +
                                ") for input " + shape_str(x) + ", got " + shape_str(w));
    const float* bias = nullptr;
    F32 bias_arr;
    if (!bias_obj.is_none()) {
        bias_arr = f32(bias_obj, "bias", 1);
        expect(bias_arr.shape(0) == N, "linear: bias must be (" + std::to_string(N) +
                                           ",), got " + shape_str(bias_arr));
        bias = bias_arr.data();
    }
    F32 out({M, N});
    {
        Released nogil;
        float* o = out.mutable_data();
        if (bias)
            for (int64_t i = 0; i < M; i++)
                std::copy(bias, bias + N, o + i * N);
        float* work = pyllm::thread_workspace(pyllm::sgemm_work_floats(pyllm::num_threads()));
        kernels().sgemm(o, x.data(), w.data(), M, N, K, false, true, bias != nullptr, work);
    }
    return out;
}

// ---- row-wise ops over a 2-D (rows, cols) view

template <typename Fn>
F32 rowwise(const py::object& x_obj, const char* name, Fn fn) {
    F32 x = f32(x_obj, name, 2);
    F32 out(shape_of(x));
    const int64_t rows = x.shape(0), cols = x.shape(1);
    if (out.size() == 0) return out;  // no element to write: no pass over (maybe 2**40) empty rows
    Released nogil;
    fn(out.mutable_data(), x.data(), rows, cols);
    return out;
}

F32 softmax(const py::object& x) {
    return rowwise(x, "x", [](float* o, const float* i, int64_t r, int64_t c) {
        kernels().softmax_forward(o, i, r, c);
    });
}

F32 log_softmax(const py::object& x) {
    return rowwise(x, "x", [](float* o, const float* i, int64_t r, int64_t c) {
        kernels().log_softmax_forward(o, i, r, c);
    });
}

F32 rms_norm(const py::object& x_obj, const py::object& w_obj, float eps) {
    F32 w = f32(w_obj, "weight", 1);
    F32 x = f32(x_obj, "x", 2);
    expect(w.shape(0) == x.shape(1), "rms_norm: weight must be (" + std::to_string(x.shape(1)) +
                                         ",), got " + shape_str(w));
    return rowwise(x, "x", [&](float* o, const float* i, int64_t r, int64_t c) {
        kernels().rmsnorm_forward(o, i, w.data(), r, c, eps);
    });
}

F32 layer_norm(const py::object& x_obj, const py::object& w_obj, const py::object& b_obj,
               float eps) {
    F32 x = f32(x_obj, "x", 2);
    F32 w, b;
    const float* wp = nullptr;
    const float* bp = nullptr;
    if (!w_obj.is_none()) {
        w = f32(w_obj, "weight", 1);
        expect(w.shape(0) == x.shape(1), "layer_norm: weight must be (" +
                                             std::to_string(x.shape(1)) + ",), got " + shape_str(w));
        wp = w.data();
    }
    if (!b_obj.is_none()) {
        b = f32(b_obj, "bias", 1);
        expect(b.shape(0) == x.shape(1), "layer_norm: bias must be (" +
                                             std::to_string(x.shape(1)) + ",), got " + shape_str(b));
        bp = b.data();
    }
    return rowwise(x, "x", [&](float* o, const float* i, int64_t r, int64_t c) {
        kernels().layernorm_forward(o, nullptr, nullptr, i, wp, bp, r, c, eps);
    });
}

// ---- element-wise

F32 gelu(const py::object& x_obj, bool tanh_approx) {
    F32 x = f32(x_obj, "x", -1);
    F32 out(shape_of(x));
    Released nogil;
    kernels().gelu_forward(out.mutable_data(), x.data(), x.size(), tanh_approx);
    return out;
}

F32 silu(const py::object& x_obj) {
    F32 x = f32(x_obj, "x", -1);
    F32 out(shape_of(x));
    Released nogil;
    kernels().silu_forward(out.mutable_data(), x.data(), x.size());
    return out;
}

double sum(const py::object& x_obj) {
    F32 x = f32(x_obj, "x", -1);
    Released nogil;
    return kernels().sum_forward(x.data(), x.size());
}

F32 rope(const py::object& x_obj, const py::object& pos_obj, float theta, bool interleaved) {
    // x (N,T,HS), positions (T,) -> (N,T,HS)
    F32 x = f32(x_obj, "x", 3);
    I64 pos = i64(pos_obj, "positions", 1);
    const int64_t N = x.shape(0), T = x.shape(1), HS = x.shape(2);
    expect(pos.shape(0) == T, "rope: positions must have one entry per time step (" +
                                  std::to_string(T) + "), got " + shape_str(pos));
    expect(HS % 2 == 0, "rope: head size must be even, got " + std::to_string(HS));
    expect(theta > 0.0f, "rope: theta must be positive");
    F32 out(shape_of(x));
    if (out.size() == 0) return out;  // no element to write: no pass over empty heads
    std::vector<float> cos_t(size_t(T * HS / 2)), sin_t(size_t(T * HS / 2));
    Released nogil;
    kernels().rope_cache(cos_t.data(), sin_t.data(), pos.data(), T, HS, theta);
    kernels().rope_forward(out.mutable_data(), x.data(), cos_t.data(), sin_t.data(), N, T, 1, HS, HS,
                           interleaved);
    return out;
}

F32 embedding(const py::object& ids_obj, const py::object& table_obj) {
    // ids (n,), table (V,C) -> (n,C)
    I64 ids = i64(ids_obj, "ids", 1);
    F32 table = f32(table_obj, "table", 2);
    const int64_t n = ids.shape(0), V = table.shape(0), C = table.shape(1);
    const int64_t* p = ids.data();
    for (int64_t i = 0; i < n; i++)
        expect(p[i] >= 0 && p[i] < V, "embedding: id " + std::to_string(p[i]) + " at position " +
                                          std::to_string(i) + " is out of range [0, " +
                                          std::to_string(V) + ")");
    F32 out({n, C});
    Released nogil;
    kernels().embedding_forward(out.mutable_data(), p, table.data(), n, C);
    return out;
}

// ---- attention

std::vector<int64_t> row_strides(const py::array& a) {
    // strides in floats of dims 0..2 of a 4-D array whose last dim is contiguous
    return {int64_t(a.strides(0) / 4), int64_t(a.strides(1) / 4), int64_t(a.strides(2) / 4)};
}

F32 attention(const py::object& q_obj, const py::object& k_obj, const py::object& v_obj,
              const py::object& mask_obj, bool causal, float scale, int64_t q_offset, float softcap,
              int64_t window) {
    F32 q = f32(q_obj, "query", 4), k = f32(k_obj, "key", 4), v = f32(v_obj, "value", 4);
    const int64_t B = q.shape(0), NH = q.shape(1), T = q.shape(2), HS = q.shape(3);
    const int64_t NKV = k.shape(1), S = k.shape(2);
    expect(k.shape(0) == B && k.shape(3) == HS,
           "attention: key must be (B, NKV, S, HS) matching query " + shape_str(q) + ", got " +
               shape_str(k));
    expect(shape_of(v) == shape_of(k), "attention: value must have the shape of key " +
                                           shape_str(k) + ", got " + shape_str(v));
    expect(NKV > 0 && NH % NKV == 0, "attention: query heads (" + std::to_string(NH) +
                                         ") must be a multiple of key/value heads (" +
                                         std::to_string(NKV) + ")");
    expect(softcap >= 0.0f && std::isfinite(softcap), "attention: softcap must be finite and >= 0 (0: none)");
    expect(window >= 0, "attention: window must be >= 0 (0: none)");
    const float* mask = nullptr;
    std::vector<int64_t> ms{0, 0, 0};
    py::array m;
    if (!mask_obj.is_none()) {
        // a broadcast view: any strides on dims 0..2, contiguous along keys
        m = py::reinterpret_borrow<py::array>(mask_obj);
        expect(m.dtype().is(py::dtype::of<float>()), "attn_mask must be float32 here");
        expect(m.ndim() == 4 && m.shape(0) == B && m.shape(1) == NH && m.shape(2) == T &&
                   m.shape(3) == S,
               "attn_mask must broadcast to (B, NH, T, S), got " + shape_str(m));
        expect(m.strides(3) == 4, "attn_mask must be contiguous along the key dimension");
        for (int i = 0; i < 3; i++) expect(m.strides(i) % 4 == 0, "attn_mask strides must be whole floats");
        ms = row_strides(m);
        mask = static_cast<const float*>(m.data());
    }
    F32 out({B, NH, T, HS});
    if (out.size() == 0) return out;
    const auto os = row_strides(out), qs = row_strides(q), ks = row_strides(k), vs = row_strides(v);
    Released nogil;
    float* work = pyllm::thread_workspace(pyllm::attention_work_floats(HS, pyllm::num_threads()));
    kernels().attention_forward(out.mutable_data(), q.data(), k.data(), v.data(), mask, os.data(),
                                qs.data(), ks.data(), vs.data(), ms.data(), B, NH, NKV, T, S, HS,
                                scale, causal, q_offset, softcap, window, work);
    return out;
}

// ---- GGUF files

py::str utf8(const std::string& s, const std::string& where) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), Py_ssize_t(s.size()), "strict");
    if (!o) {
        PyErr_Clear();
        throw py::value_error("corrupt GGUF file: " + where + " is not valid UTF-8");
    }
    return py::reinterpret_steal<py::str>(o);
}

py::object numeric_array(const pyllm::GGUFFile& f, const pyllm::GGUFValue& v) {
    using T = pyllm::GGUFType;
    const char* dt = nullptr;
    switch (v.elem) {
        case T::UINT8: dt = "u1"; break;
        case T::INT8: dt = "i1"; break;
        case T::UINT16: dt = "<u2"; break;
        case T::INT16: dt = "<i2"; break;
        case T::UINT32: dt = "<u4"; break;
        case T::INT32: dt = "<i4"; break;
        case T::FLOAT32: dt = "<f4"; break;
        case T::BOOL: dt = "?"; break;
        case T::UINT64: dt = "<u8"; break;
        case T::INT64: dt = "<i8"; break;
        case T::FLOAT64: dt = "<f8"; break;
        default: throw py::value_error("not a numeric array");
    }
    py::array out(py::dtype::from_args(py::str(dt)), std::vector<py::ssize_t>{py::ssize_t(v.count)});
    std::memcpy(out.mutable_data(), f.base() + v.data_offset, size_t(out.nbytes()));
    return std::move(out);
}

py::object gguf_value(const pyllm::GGUFFile& f, const pyllm::GGUFValue& v, const std::string& key) {
    using T = pyllm::GGUFType;
    switch (v.type) {
        case T::UINT8: case T::UINT16: case T::UINT32: case T::UINT64: return py::int_(v.u);
        case T::INT8: case T::INT16: case T::INT32: case T::INT64: return py::int_(v.i);
        case T::FLOAT32: case T::FLOAT64: return py::float_(v.f);
        case T::BOOL: return py::bool_(v.u != 0);
        case T::STRING: return utf8(v.str, "the value of " + key);
        case T::ARRAY: {
            if (v.elem == T::STRING) {
                py::list out(v.strs.size());
                for (size_t k = 0; k < v.strs.size(); k++)
                    out[k] = utf8(v.strs[k], "element " + std::to_string(k) + " of " + key);
                return std::move(out);
            }
            if (v.elem == T::ARRAY) {
                py::list out(v.items.size());
                for (size_t k = 0; k < v.items.size(); k++) out[k] = gguf_value(f, v.items[k], key);
                return std::move(out);
            }
            return numeric_array(f, v);
        }
    }
    return py::none();
}

using GGUFPtr = std::shared_ptr<pyllm::GGUFFile>;

py::dict gguf_metadata(const GGUFPtr& f) {
    py::dict d;
    for (const auto& kv : f->metadata()) d[utf8(kv.first, "a metadata key")] = gguf_value(*f, kv.second, kv.first);
    return d;
}

py::list gguf_tensors(const GGUFPtr& f) {
    py::list out;
    for (const auto& t : f->tensors()) {
        py::dict d;
        d["name"] = utf8(t.name, "a tensor name");
        d["type"] = t.type;
        d["type_name"] = pyllm::quant_type(t.type)->name;  // the reader admits known types only
        py::tuple shape(t.ne.size());  // numpy order: the contiguous dimension last
        for (size_t k = 0; k < t.ne.size(); k++) shape[k] = t.ne[t.ne.size() - 1 - k];
        d["shape"] = shape;
        d["offset"] = t.offset;
        d["nbytes"] = t.nbytes;
        out.append(d);
    }
    return out;
}

py::array gguf_tensor_bytes(const GGUFPtr& f, const std::string& name) {
    const pyllm::GGUFTensor* t = f->tensor(name);
    if (!t) throw py::key_error("no tensor named '" + name + "' in " + f->path());
    // a read-only view of the mapped file that keeps the file object alive
    py::array out(py::dtype::of<uint8_t>(), std::vector<py::ssize_t>{py::ssize_t(t->nbytes)},
                  std::vector<py::ssize_t>{1}, f->data(*t), py::cast(f));
    py::detail::array_proxy(out.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    return out;
}

// ---- the decoder runtime

using DecoderPtr = std::shared_ptr<pyllm::DecoderModel>;

template <typename T>
T spec_get(const py::dict& d, const char* key) {
    if (!d.contains(key)) throw py::value_error(std::string("decoder spec lacks '") + key + "'");
    return d[key].cast<T>();
}

template <typename E>
E spec_enum(const py::dict& d, const char* key, std::initializer_list<std::pair<const char*, E>> names) {
    const std::string v = spec_get<std::string>(d, key);
    std::string known;
    for (const auto& n : names) {
        if (v == n.first) return n.second;
        known += (known.empty() ? "" : ", ") + std::string(n.first);
    }
    throw py::value_error("decoder spec: " + std::string(key) + " '" + v + "' is not one of " + known);
}

pyllm::DecoderSpec decoder_spec(const py::dict& d) {
    using namespace pyllm;
    DecoderSpec s;
    s.vocab_size = spec_get<int64_t>(d, "vocab_size");
    s.hidden_size = spec_get<int64_t>(d, "hidden_size");
    s.n_layer = spec_get<int64_t>(d, "n_layer");
    s.n_head = spec_get<int64_t>(d, "n_head");
    s.n_kv_head = spec_get<int64_t>(d, "n_kv_head");
    s.head_dim = spec_get<int64_t>(d, "head_dim");
    s.ffn_size = spec_get<int64_t>(d, "ffn_size");
    s.n_ctx = spec_get<int64_t>(d, "n_ctx");
    s.norm = spec_enum<NormKind>(d, "norm", {{"rms", NormKind::RMS}, {"layer", NormKind::Layer}});
    s.norm_eps = spec_get<float>(d, "norm_eps");
    s.act = spec_enum<Activation>(
        d, "act", {{"silu_glu", Activation::SiluGLU}, {"gelu_glu", Activation::GeluGLU}, {"gelu", Activation::Gelu}});
    s.rope = spec_enum<RopeKind>(
        d, "rope", {{"none", RopeKind::None}, {"interleaved", RopeKind::Interleaved}, {"neox", RopeKind::Neox}});
    s.rope_dim = spec_get<int64_t>(d, "rope_dim");
    s.attn_scale = spec_get<float>(d, "attn_scale");
    s.attn_softcap = spec_get<float>(d, "attn_softcap");
    s.final_softcap = spec_get<float>(d, "final_softcap");
    s.embed_scale = spec_get<float>(d, "embed_scale");
    s.window = spec_get<std::vector<int64_t>>(d, "window");
    s.rope_table = spec_get<std::vector<int>>(d, "rope_table");
    return s;
}

// The runtime's weight slots: per layer "blk.N.<slot>", and the model's own.
const char* const kLayerMatrices[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
const char* const kLayerVectors[] = {"attn_norm", "attn_norm.bias", "post_attention_norm", "attn_q_norm",
                                     "attn_k_norm", "attn_q.bias", "attn_k.bias", "attn_v.bias",
                                     "attn_output.bias", "ffn_norm", "ffn_norm.bias", "post_ffw_norm",
                                     "ffn_gate.bias", "ffn_up.bias", "ffn_down.bias"};

// (array, type id, rows, cols): rows of quant_row_bytes(type, cols) bytes
pyllm::Weight matrix_arg(const py::handle& v, const std::string& name) {
    py::tuple t;
    if (!py::isinstance<py::tuple>(v) || (t = py::reinterpret_borrow<py::tuple>(v)).size() != 4)
        throw py::value_error("weight '" + name + "' must be (array, type, rows, cols)");
    if (!py::isinstance<py::array>(t[0])) throw py::value_error("weight '" + name + "': not a numpy array");
    py::array a = py::reinterpret_borrow<py::array>(t[0]);
    if (!(a.flags() & py::array::c_style)) throw py::value_error("weight '" + name + "' must be C-contiguous");
    pyllm::Weight w;
    const int type = t[1].cast<int>();
    w.rows = t[2].cast<int64_t>();
    w.cols = t[3].cast<int64_t>();
    if (w.rows <= 0 || w.cols <= 0) throw py::value_error("weight '" + name + "' must have positive rows and cols");
    // any known type sizes here; whether the runtime computes with it is the runtime's check
    const pyllm::QuantType* qt = pyllm::quant_type(type);
    if (!qt) throw py::value_error("unknown tensor type id " + std::to_string(type) + " in '" + name + "'");
    if (w.cols % qt->block != 0)
        throw py::value_error("weight '" + name + "' has " + std::to_string(w.cols) + " columns, not a multiple of " +
                              qt->name + "'s block of " + std::to_string(qt->block));
    w.type = uint32_t(type);
    w.row_bytes = pyllm::quant_row_bytes(type, w.cols);
    if (int64_t(a.nbytes()) != w.rows * w.row_bytes)
        throw py::value_error("weight '" + name + "' holds " + std::to_string(a.nbytes()) + " bytes, (" +
                              std::to_string(w.rows) + ", " + std::to_string(w.cols) + ") of its type needs " +
                              std::to_string(w.rows * w.row_bytes));
    w.data = a.data();
    return w;
}

pyllm::Vector vector_weight(const py::handle& v, const std::string& name) {
    if (!py::isinstance<py::array>(v)) throw py::value_error("vector '" + name + "' must be a numpy array");
    py::array a = py::reinterpret_borrow<py::array>(v);
    if (!a.dtype().is(py::dtype::of<float>()) || a.ndim() != 1 || !(a.flags() & py::array::c_style))
        throw py::value_error("vector '" + name + "' must be a C-contiguous 1-D float32 array");
    return pyllm::Vector{static_cast<const float*>(a.data()), int64_t(a.shape(0))};
}

DecoderPtr make_decoder(const py::dict& spec_d, const py::dict& tensors, const py::list& rope, bool release_source) {
    using namespace pyllm;
    const DecoderSpec spec = decoder_spec(spec_d);
    if (spec.n_layer <= 0 || spec.n_layer > 100000) throw py::value_error("decoder spec: bad n_layer");
    DecoderWeights w;
    w.release_packed_source = release_source;
    w.layers.resize(size_t(spec.n_layer));
    py::list keep;
    size_t used = 0;
    const auto take = [&](const std::string& key) -> py::object {
        if (!tensors.contains(key)) return py::none();
        used++;
        py::object v = tensors[py::str(key)];
        keep.append(v);
        return v;
    };
    const auto matrix = [&](const std::string& key, Weight& dst) {
        py::object v = take(key);
        if (!v.is_none()) dst = matrix_arg(v, key);
    };
    const auto vec = [&](const std::string& key, Vector& dst) {
        py::object v = take(key);
        if (!v.is_none()) dst = vector_weight(v, key);
    };
    matrix("token_embd", w.tok_embd);
    matrix("position_embd", w.pos_embd);
    matrix("output", w.output);
    vec("output_norm", w.output_norm);
    vec("output_norm.bias", w.output_norm_b);
    for (int64_t l = 0; l < spec.n_layer; l++) {
        DecoderLayer& L = w.layers[size_t(l)];
        const std::string p = "blk." + std::to_string(l) + ".";
        Weight* ms[] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down};
        for (size_t i = 0; i < 7; i++) matrix(p + kLayerMatrices[i], *ms[i]);
        Vector* vs[] = {&L.attn_norm, &L.attn_norm_b, &L.attn_post_norm, &L.q_norm, &L.k_norm, &L.bq, &L.bk, &L.bv,
                        &L.bo, &L.ffn_norm, &L.ffn_norm_b, &L.ffn_post_norm, &L.b_gate, &L.b_up, &L.b_down};
        for (size_t i = 0; i < 15; i++) vec(p + kLayerVectors[i], *vs[i]);
    }
    if (used != size_t(py::len(tensors))) {
        // name the first key the runtime has no slot for
        for (auto item : tensors) {
            const std::string key = item.first.cast<std::string>();
            bool known = key == "token_embd" || key == "position_embd" || key == "output" || key == "output_norm" ||
                         key == "output_norm.bias";
            for (int64_t l = 0; l < spec.n_layer && !known; l++) {
                const std::string p = "blk." + std::to_string(l) + ".";
                for (const char* m : kLayerMatrices) known = known || key == p + m;
                for (const char* v : kLayerVectors) known = known || key == p + v;
            }
            if (!known) throw py::value_error("the decoder runtime has no slot for '" + key + "'");
        }
    }
    const size_t half = size_t(spec.rope_dim > 0 ? spec.rope_dim / 2 : 0);
    for (const py::handle& t : rope) {
        py::tuple cs = t.cast<py::tuple>();
        if (cs.size() != 2) throw py::value_error("each rope table must be (cos, sin)");
        std::vector<float> tabs[2];
        for (int i = 0; i < 2; i++) {
            F32 a = f32(cs[size_t(i)], i ? "rope sin" : "rope cos", 2);
            if (a.shape(0) != spec.n_ctx || size_t(a.shape(1)) != half)
                throw py::value_error("rope tables must be (n_ctx, rope_dim / 2) = (" + std::to_string(spec.n_ctx) +
                                      ", " + std::to_string(half) + "), got " + shape_str(a));
            tabs[i].assign(a.data(), a.data() + a.size());
        }
        w.rope_cos.push_back(std::move(tabs[0]));
        w.rope_sin.push_back(std::move(tabs[1]));
    }
    auto* held = new py::list(std::move(keep));
    std::shared_ptr<void> owner(held, [](void* p) {
        py::gil_scoped_acquire gil;
        delete static_cast<py::list*>(p);
    });
    DecoderPtr model;
    {
        Released nogil;
        model = std::make_shared<DecoderModel>(spec, std::move(w), std::move(owner));
    }
    // arrays whose matrices were repacked are read no more: let them go (a
    // trained model's transposed copies), keeping those still read
    std::vector<const void*> read;
    const DecoderWeights& mw = model->weights();
    const auto still_read = [&](const Weight& x) {
        if (x.data && !x.packed) read.push_back(x.data);
    };
    const auto vector_read = [&](const Vector& x) {
        if (x.data) read.push_back(x.data);
    };
    read.push_back(mw.tok_embd.data);
    still_read(mw.pos_embd);
    still_read(mw.output);
    vector_read(mw.output_norm);
    vector_read(mw.output_norm_b);
    for (const DecoderLayer& L : mw.layers) {
        for (const Weight* x : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) still_read(*x);
        for (const Vector* x : {&L.attn_norm, &L.attn_norm_b, &L.attn_post_norm, &L.q_norm, &L.k_norm, &L.bq,
                                &L.bk, &L.bv, &L.bo, &L.ffn_norm, &L.ffn_norm_b, &L.ffn_post_norm, &L.b_gate, &L.b_up,
                                &L.b_down})
            vector_read(*x);
    }
    std::sort(read.begin(), read.end());
    py::list kept;
    for (const py::handle& h : *held) {
        // a vector is an array, a matrix an (array, type, rows, cols) tuple
        py::handle a = py::isinstance<py::tuple>(h) ? py::reinterpret_borrow<py::tuple>(h)[0] : h;
        const void* data = py::reinterpret_borrow<py::array>(a).data();
        if (std::binary_search(read.begin(), read.end(), data)) kept.append(h);
    }
    *held = std::move(kept);
    return model;
}

// a C-contiguous 1-D array of dtype T, else ValueError naming it
template <typename T>
py::array vector_arg(const py::object& obj, const char* what) {
    if (!py::isinstance<py::array>(obj)) throw py::value_error(std::string(what) + " must be a numpy array");
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().is(py::dtype::of<T>()) || a.ndim() != 1 || !(a.flags() & py::array::c_style))
        throw py::value_error(std::string(what) + " must be a C-contiguous 1-D " +
                              std::string(py::str(py::dtype::of<T>())) + " array");
    return a;
}

py::array decoder_forward(pyllm::DecoderModel& m, const py::object& tokens_obj, bool all_logits, int64_t seq) {
    py::array a = vector_arg<int32_t>(tokens_obj, "tokens");
    const int64_t T = a.shape(0), V = m.spec().vocab_size;
    py::array_t<float> out = all_logits ? py::array_t<float>(std::vector<py::ssize_t>{T, V})
                                        : py::array_t<float>(std::vector<py::ssize_t>{V});
    const int32_t* tokens = static_cast<const int32_t*>(a.data());
    float* logits = out.mutable_data();
    {
        Released nogil;
        std::lock_guard<std::mutex> lock(m.mutex());
        m.select_seq(seq);
        m.forward(tokens, T, logits, all_logits);
    }
    return std::move(out);
}

// (logits (T, V) or None, hidden states (L + 1, T, C), or the last layer's (T, C) unless all_layers) of
// tokens appended to sequence seq
py::tuple decoder_forward_hidden(pyllm::DecoderModel& m, const py::object& tokens_obj, bool logits, int64_t seq,
                                 bool all_layers) {
    py::array a = vector_arg<int32_t>(tokens_obj, "tokens");
    const pyllm::DecoderSpec& s = m.spec();
    const int64_t T = a.shape(0);
    std::vector<py::ssize_t> shape{T, s.hidden_size};
    if (all_layers) shape.insert(shape.begin(), s.n_layer + 1);
    py::array_t<float> hidden(shape);
    py::object out_logits = py::none();
    float* lp = nullptr;
    if (logits) {
        py::array_t<float> l(std::vector<py::ssize_t>{T, s.vocab_size});
        lp = l.mutable_data();
        out_logits = std::move(l);
    }
    const int32_t* tokens = static_cast<const int32_t*>(a.data());
    float* hp = hidden.mutable_data();
    {
        Released nogil;
        std::lock_guard<std::mutex> lock(m.mutex());
        m.select_seq(seq);
        m.forward_hidden(tokens, T, lp, true, hp, all_layers);
    }
    return py::make_tuple(out_logits, hidden);
}

py::array decoder_decode_batch(pyllm::DecoderModel& m, const py::object& tokens_obj, const py::object& seqs_obj) {
    py::array a = vector_arg<int32_t>(tokens_obj, "tokens");
    py::array s = vector_arg<int64_t>(seqs_obj, "seqs");
    const int64_t B = a.shape(0), V = m.spec().vocab_size;
    if (s.shape(0) != B)
        throw py::value_error("seqs has " + std::to_string(s.shape(0)) + " entries, tokens " + std::to_string(B));
    py::array_t<float> out(std::vector<py::ssize_t>{B, V});
    const int32_t* tokens = static_cast<const int32_t*>(a.data());
    const int64_t* seqs = static_cast<const int64_t*>(s.data());
    float* logits = out.mutable_data();
    {
        Released nogil;
        std::lock_guard<std::mutex> lock(m.mutex());
        m.decode_batch(tokens, seqs, B, logits);
    }
    return std::move(out);
}

// ---- quantized weights: GGUF block types (see kernels/common.h)

using U8 = py::array_t<uint8_t, py::array::c_style>;

U8 u8(const py::object& obj, const char* name, int ndim) {
    return checked<uint8_t>(obj, name, ndim, "uint8 (raw tensor bytes)");
}

// Throws unless `type` is one the kernels read (or, quantized_only, write).
void check_qtype(int type, bool quantized_only) {
    const pyllm::QuantType* t = pyllm::quant_type(type);
    if (!t) throw py::value_error("unknown tensor type id " + std::to_string(type));
    if (!t->computable() || (quantized_only && !t->quantize))
        throw py::value_error("unsupported tensor type " + std::string(t->name) + " (id " + std::to_string(type) +
                              "); supported: " + pyllm::quant_type_list(quantized_only));
}

// The type table (kernels/quant_types.h), one dict per row, for pyllm.quant.
py::list quant_types() {
    py::list out;
    for (const pyllm::QuantType& t : pyllm::kQuantTypes) {
        py::dict d;
        d["id"] = t.id;
        d["name"] = t.name;
        d["block"] = t.block;
        d["block_bytes"] = t.block_bytes;
        d["computable"] = t.computable();
        d["quantizable"] = t.quantize;
        d["file_quantizable"] = t.quantize_file != nullptr;  // `pyllm quantize` writes it
        d["packed"] = pyllm::qpack_supported(t.id);  // repacked at load for the packed products
        out.append(d);
    }
    return out;
}

void check_qlength(int type, int64_t n, const char* what) {
    const pyllm::QuantType* t = pyllm::quant_type(type);  // check_qtype came first
    expect(n >= 0 && n % t->block == 0, std::string(what) + " must be a non-negative multiple of the block size " +
                                            std::to_string(t->block) + " for " + t->name + " (type id " +
                                            std::to_string(type) + "), got " + std::to_string(n));
}

F32 dequantize(const py::object& raw_obj, int type, int64_t n, bool ref) {
    // raw: quant_row_bytes(type, n) bytes -> (n,)
    check_qtype(type, false);
    check_qlength(type, n, "n");
    U8 raw = u8(raw_obj, "raw", -1);
    const int64_t want = pyllm::quant_row_bytes(type, n);
    expect(int64_t(raw.nbytes()) == want, "raw has " + std::to_string(raw.nbytes()) + " bytes; " +
                                              std::to_string(n) + " elements of type id " +
                                              std::to_string(type) + " take " + std::to_string(want));
    F32 out({n});
    Released nogil;
    if (ref)
        kernels().dequantize_row_ref(out.mutable_data(), raw.data(), n, type);
    else
        kernels().dequantize_row(out.mutable_data(), raw.data(), n, type);
    return out;
}

U8 quantize(const py::object& x_obj, int type) {
    // x (n,) -> quant_row_bytes(type, n) bytes
    check_qtype(type, true);
    F32 x = f32(x_obj, "x", 1);
    const int64_t n = x.shape(0);
    check_qlength(type, n, "x's length");
    U8 out({pyllm::quant_row_bytes(type, n)});
    Released nogil;
    kernels().quantize_row(out.mutable_data(), x.data(), n, type);
    return out;
}

U8 quantize_file(const py::object& x_obj, int type, int threads) {
    // x (rows, n) -> (rows, quant_row_bytes(type, n)) by the type's file quantizer, rows over threads
    const pyllm::QuantType* t = pyllm::quant_type(type);
    if (!t) throw py::value_error("unknown tensor type id " + std::to_string(type));
    if (!t->quantize_file) {
        std::string names;
        for (const pyllm::QuantType& r : pyllm::kQuantTypes)
            if (r.quantize_file) names += (names.empty() ? "" : ", ") + std::string(r.name);
        throw py::value_error(std::string("no file quantizer for ") + t->name + "; written: " + names);
    }
    F32 x = f32(x_obj, "x", 2);
    const int64_t rows = x.shape(0), n = x.shape(1);
    check_qlength(type, n, "x's row length");
    expect(threads >= 1, "threads must be >= 1, got " + std::to_string(threads));
    U8 out({rows, pyllm::quant_row_bytes(type, n)});
    py::gil_scoped_release nogil;
    pyllm::quantize_rows_file(type, out.mutable_data(), x.data(), rows, n, threads);
    return out;
}

F32 qmatmul(const py::object& x_obj, const py::object& w_obj, int type, int64_t K, bool ref, bool packed,
            bool decode_rows) {
    // x (M,K), w_raw (N, quant_row_bytes(type, K)) -> (M,N)
    check_qtype(type, false);
    check_qlength(type, K, "K");
    F32 x = f32(x_obj, "x", 2);
    U8 w = u8(w_obj, "w_raw", 2);
    const int64_t M = x.shape(0), N = w.shape(0), row_bytes = pyllm::quant_row_bytes(type, K);
    expect(x.shape(1) == K, "qmatmul: x must be (M, " + std::to_string(K) + "), got " + shape_str(x));
    expect(w.shape(1) == row_bytes, "qmatmul: w_raw must be (N, " + std::to_string(row_bytes) +
                                        ") for K=" + std::to_string(K) + " of type id " +
                                        std::to_string(type) + ", got " + shape_str(w));
    F32 out({M, N});
    // the types with a packed layout take the runtime's packed product, the others its unpacked one
    const bool block = pyllm::qpack_supported(type) && K % pyllm::kQuantBlock == 0;
    expect(!packed || block, "qmatmul: packed=True needs K a multiple of 32 and a type with a packed layout");
    Released nogil;
    if (ref) {
        kernels().qmatmul_ref(out.mutable_data(), x.data(), w.data(), M, N, K, type);
    } else if (block) {
        // block types: the load-time repacking (groups of 16 rows) and its product
        std::vector<float> wp(size_t((pyllm::qpack_bytes(type, N, K) + 3) / 4));
        kernels().qpack_weights(wp.data(), w.data(), N, K, type);
        if (decode_rows) {
            // the decode step's product: every row against all of W on one thread
            kernels().qpack_matvec(out.mutable_data(), N, x.data(), K, M, wp.data(), 0, N, N, K, type);
        } else {
            float* work = pyllm::thread_workspace(pyllm::qpack_work_floats(M, K, type, pyllm::num_threads()));
            kernels().qpack_matmul(out.mutable_data(), x.data(), wp.data(), M, N, K, type, work);
        }
    } else {
        float* work = pyllm::thread_workspace(pyllm::qmatmul_work_floats(K, pyllm::num_threads()));
        kernels().qmatmul(out.mutable_data(), x.data(), w.data(), M, N, K, type, work);
    }
    return out;
}

// ---- training kernels: in place over caller-allocated buffers (pyllm.training)

// A float32 C-contiguous buffer of any shape; `out` ones must be writeable.
F32 fbuf(const py::object& obj, const char* name, int ndim = -1) { return f32(obj, name, ndim); }

F32 fout(const py::object& obj, const char* name, int ndim = -1) {
    F32 a = f32(obj, name, ndim);
    expect(a.writeable(), std::string(name) + " must be writeable");
    return a;
}

std::string dims_str(std::initializer_list<int64_t> dims) {
    std::string s = "(";
    size_t i = 0;
    for (int64_t d : dims) s += (i++ ? ", " : "") + std::to_string(d);
    return s + (dims.size() == 1 ? ",)" : ")");
}

void expect_shape(const py::array& a, const char* name, std::initializer_list<int64_t> dims) {
    bool ok = a.ndim() == py::ssize_t(dims.size());
    size_t i = 0;
    for (int64_t d : dims) ok = ok && a.shape(py::ssize_t(i++)) == d;
    expect(ok, std::string(name) + " must have shape " + dims_str(dims) + ", got " + shape_str(a));
}

void expect_size(const py::array& a, const char* name, int64_t n, const std::string& what) {
    expect(int64_t(a.size()) == n, std::string(name) + " must have " + std::to_string(n) +
                                       " elements (" + what + "), got shape " + shape_str(a));
}

// rows of an array (..., cols): the product of its leading dimensions
int64_t rows_of(const py::array& a, const char* name, int64_t cols, const char* cols_name) {
    expect(a.ndim() >= 1 && a.shape(a.ndim() - 1) == cols,
           std::string(name) + " must have a last dimension of " + std::to_string(cols) + " (" +
               cols_name + "), got shape " + shape_str(a));
    return cols ? int64_t(a.size()) / cols : 0;
}

bool overlap(const py::array& a, const py::array& b) {
    const char* a0 = static_cast<const char*>(a.data());
    const char* b0 = static_cast<const char*>(b.data());
    return a.nbytes() && b.nbytes() && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

void check_ids(const I64& ids, const char* name, int64_t V, const char* range_name) {
    const int64_t* p = ids.data();
    for (int64_t i = 0; i < int64_t(ids.size()); i++)
        expect(p[i] >= 0 && p[i] < V, std::string(name) + ": id " + std::to_string(p[i]) +
                                          " at flat position " + std::to_string(i) +
                                          " is out of range [0, " + std::to_string(V) + ") (" +
                                          range_name + ")");
}

void sgemm_into(const py::object& out_obj, const py::object& a_obj, const py::object& b_obj,
                bool trans_a, bool trans_b, bool accumulate, const py::object& bias_obj) {
    // out (M,N) (+)= op(a) @ op(b) [+ bias (N,)]: a (M,K) or (K,M), b (K,N) or (N,K)
    F32 out = fout(out_obj, "out", 2), a = fbuf(a_obj, "a", 2), b = fbuf(b_obj, "b", 2);
    const int64_t M = trans_a ? a.shape(1) : a.shape(0), K = trans_a ? a.shape(0) : a.shape(1);
    const int64_t Kb = trans_b ? b.shape(1) : b.shape(0), N = trans_b ? b.shape(0) : b.shape(1);
    expect(K == Kb, "sgemm: inner dimensions differ: a is " + shape_str(a) +
                        (trans_a ? " (transposed)" : "") + ", b is " + shape_str(b) +
                        (trans_b ? " (transposed)" : ""));
    expect_shape(out, "out", {M, N});
    expect(!overlap(out, a) && !overlap(out, b), "sgemm: out must not overlap a or b");
    F32 bias;
    if (!bias_obj.is_none()) {
        bias = fbuf(bias_obj, "bias", 1);
        expect_shape(bias, "bias", {N});
        expect(!overlap(out, bias), "sgemm: out must not overlap bias");
    }
    const float* bp = bias_obj.is_none() ? nullptr : bias.data();
    Released nogil;
    float* work = pyllm::thread_workspace(pyllm::sgemm_work_floats(pyllm::num_threads()));
    kernels().sgemm_bias(out.mutable_data(), a.data(), b.data(), bp, M, N, K, trans_a, trans_b,
                         accumulate, work);
}

void bias_add(const py::object& out_obj, const py::object& bias_obj) {
    F32 out = fout(out_obj, "out"), bias = fbuf(bias_obj, "bias", 1);
    const int64_t N = bias.shape(0), R = rows_of(out, "out", N, "N, the size of bias");
    Released nogil;
    kernels().bias_add(out.mutable_data(), bias.data(), R, N);
}

void bias_backward(const py::object& dbias_obj, const py::object& dout_obj) {
    F32 dbias = fout(dbias_obj, "dbias", 1), dout = fbuf(dout_obj, "dout");
    const int64_t N = dbias.shape(0), R = rows_of(dout, "dout", N, "N, the size of dbias");
    Released nogil;
    float* work = pyllm::thread_workspace(pyllm::bias_backward_work_floats(N, pyllm::num_threads()));
    kernels().bias_backward(dbias.mutable_data(), dout.data(), R, N, work);
}

void encoder_forward(const py::object& out_obj, const py::object& ids_obj,
                     const py::object& wte_obj, const py::object& wpe_obj) {
    // ids (B,T), wte (V,C), wpe (maxT,C) -> out (B,T,C)
    I64 ids = i64(ids_obj, "ids", 2);
    F32 wte = fbuf(wte_obj, "wte", 2), wpe = fbuf(wpe_obj, "wpe", 2);
    F32 out = fout(out_obj, "out", 3);
    const int64_t B = ids.shape(0), T = ids.shape(1), V = wte.shape(0), C = wte.shape(1);
    expect(wpe.shape(1) == C && wpe.shape(0) >= T,
           "wpe must be (maxT, " + std::to_string(C) + ") with maxT >= T=" + std::to_string(T) +
               ", got " + shape_str(wpe));
    expect_shape(out, "out", {B, T, C});
    check_ids(ids, "ids", V, "the rows of wte");
    Released nogil;
    kernels().encoder_forward(out.mutable_data(), ids.data(), wte.data(), wpe.data(), B, T, C);
}

void encoder_backward(const py::object& dwte_obj, const py::object& dwpe_obj,
                      const py::object& dout_obj, const py::object& ids_obj) {
    // dout (B,T,C), ids (B,T) -> dwte (V,C) +=, dwpe (maxT,C) +=
    I64 ids = i64(ids_obj, "ids", 2);
    F32 dwte = fout(dwte_obj, "dwte", 2), dwpe = fout(dwpe_obj, "dwpe", 2);
    F32 dout = fbuf(dout_obj, "dout", 3);
    const int64_t B = ids.shape(0), T = ids.shape(1), V = dwte.shape(0), C = dwte.shape(1);
    expect_shape(dout, "dout", {B, T, C});
    expect(dwpe.shape(1) == C && dwpe.shape(0) >= T,
           "dwpe must be (maxT, " + std::to_string(C) + ") with maxT >= T=" + std::to_string(T) +
               ", got " + shape_str(dwpe));
    expect(!overlap(dwte, dwpe), "encoder_backward: dwte and dwpe must not overlap");
    check_ids(ids, "ids", V, "the rows of dwte");
    Released nogil;
    kernels().encoder_backward(dwte.mutable_data(), dwpe.mutable_data(), dout.data(), ids.data(), B,
                               T, C);
}

void layernorm_fwd(const py::object& out_obj, const py::object& mean_obj,
                   const py::object& rstd_obj, const py::object& inp_obj,
                   const py::object& weight_obj, const py::object& bias_obj, float eps) {
    // inp (R,C), weight, bias (C) -> out (R,C), mean, rstd (R)
    F32 inp = fbuf(inp_obj, "inp"), weight = fbuf(weight_obj, "weight", 1),
        bias = fbuf(bias_obj, "bias", 1);
    const int64_t C = weight.shape(0), R = rows_of(inp, "inp", C, "C, the size of weight");
    expect_shape(bias, "bias", {C});
    F32 out = fout(out_obj, "out"), mean = fout(mean_obj, "mean"), rstd = fout(rstd_obj, "rstd");
    expect(shape_of(out) == shape_of(inp), "out must have the shape of inp " + shape_str(inp) +
                                               ", got " + shape_str(out));
    expect_size(mean, "mean", R, "one per row of inp");
    expect_size(rstd, "rstd", R, "one per row of inp");
    Released nogil;
    kernels().layernorm_forward(out.mutable_data(), mean.mutable_data(), rstd.mutable_data(),
                                inp.data(), weight.data(), bias.data(), R, C, eps);
}

void layernorm_bwd(const py::object& dinp_obj, const py::object& dweight_obj,
                   const py::object& dbias_obj, const py::object& dout_obj,
                   const py::object& inp_obj, const py::object& weight_obj,
                   const py::object& mean_obj, const py::object& rstd_obj) {
    // dout, inp (R,C), weight (C), mean, rstd (R) -> dinp (R,C) +=, dweight, dbias (C) +=
    F32 inp = fbuf(inp_obj, "inp"), weight = fbuf(weight_obj, "weight", 1);
    const int64_t C = weight.shape(0), R = rows_of(inp, "inp", C, "C, the size of weight");
    F32 dout = fbuf(dout_obj, "dout"), mean = fbuf(mean_obj, "mean"), rstd = fbuf(rstd_obj, "rstd");
    F32 dinp = fout(dinp_obj, "dinp"), dweight = fout(dweight_obj, "dweight", 1),
        dbias = fout(dbias_obj, "dbias", 1);
    expect(shape_of(dout) == shape_of(inp), "dout must have the shape of inp " + shape_str(inp) +
                                                ", got " + shape_str(dout));
    expect(shape_of(dinp) == shape_of(inp), "dinp must have the shape of inp " + shape_str(inp) +
                                                ", got " + shape_str(dinp));
    expect_shape(dweight, "dweight", {C});
    expect_shape(dbias, "dbias", {C});
    expect_size(mean, "mean", R, "one per row of inp");
    expect_size(rstd, "rstd", R, "one per row of inp");
    expect(!overlap(dweight, dbias), "layernorm_backward: dweight and dbias must not overlap");
    Released nogil;
    float* work = pyllm::thread_workspace(pyllm::layernorm_backward_work_floats(C, pyllm::num_threads()));
    kernels().layernorm_backward(dinp.mutable_data(), dweight.mutable_data(), dbias.mutable_data(),
                                 dout.data(), inp.data(), weight.data(), mean.data(), rstd.data(), R,
                                 C, work);
}

void layernorm_bwd_ref(const py::object& dinp_obj, const py::object& dweight_obj,
                       const py::object& dbias_obj, const py::object& dout_obj,
                       const py::object& inp_obj, const py::object& weight_obj,
                       const py::object& mean_obj, const py::object& rstd_obj) {
    F32 inp = fbuf(inp_obj, "inp", 2), weight = fbuf(weight_obj, "weight", 1);
    const int64_t R = inp.shape(0), C = inp.shape(1);
    F32 dout = fbuf(dout_obj, "dout", 2), mean = fbuf(mean_obj, "mean", 1),
        rstd = fbuf(rstd_obj, "rstd", 1);
    F32 dinp = fout(dinp_obj, "dinp", 2), dweight = fout(dweight_obj, "dweight", 1),
        dbias = fout(dbias_obj, "dbias", 1);
    expect_shape(weight, "weight", {C});
    expect_shape(dout, "dout", {R, C});
    expect_shape(dinp, "dinp", {R, C});
    expect_shape(dweight, "dweight", {C});
    expect_shape(dbias, "dbias", {C});
    expect_shape(mean, "mean", {R});
    expect_shape(rstd, "rstd", {R});
    Released nogil;
    kernels().layernorm_backward_ref(dinp.mutable_data(), dweight.mutable_data(),
                                     dbias.mutable_data(), dout.data(), inp.data(), weight.data(),
                                     mean.data(), rstd.data(), R, C);
}

// all arguments of an element-wise op hold the same number of floats
void expect_same_size(const py::array& a, const char* name, const py::array& ref, const char* ref_name) {
    expect(a.size() == ref.size(), std::string(name) + " must have as many elements as " + ref_name +
                                       " " + shape_str(ref) + ", got " + shape_str(a));
}

void gelu_fwd(const py::object& out_obj, const py::object& inp_obj) {
    F32 inp = fbuf(inp_obj, "inp"), out = fout(out_obj, "out");
    expect_same_size(out, "out", inp, "inp");
    Released nogil;
    kernels().gelu_forward(out.mutable_data(), inp.data(), inp.size(), true);
}

void gelu_bwd(const py::object& dinp_obj, const py::object& inp_obj, const py::object& dout_obj) {
    F32 inp = fbuf(inp_obj, "inp"), dout = fbuf(dout_obj, "dout"), dinp = fout(dinp_obj, "dinp");
    expect_same_size(dout, "dout", inp, "inp");
    expect_same_size(dinp, "dinp", inp, "inp");
    Released nogil;
    kernels().gelu_backward(dinp.mutable_data(), inp.data(), dout.data(), inp.size());
}

void residual_fwd(const py::object& out_obj, const py::object& a_obj, const py::object& b_obj) {
    F32 a = fbuf(a_obj, "a"), b = fbuf(b_obj, "b"), out = fout(out_obj, "out");
    expect_same_size(b, "b", a, "a");
    expect_same_size(out, "out", a, "a");
    Released nogil;
    kernels().residual_forward(out.mutable_data(), a.data(), b.data(), a.size());
}

// targets (R,) of logits (R,V): each in [0, V) or -100 (ignored)
void check_targets(const I64& targets, int64_t V) {
    const int64_t* p = targets.data();
    for (int64_t i = 0; i < int64_t(targets.size()); i++)
        expect(p[i] == -100 || (p[i] >= 0 && p[i] < V),
               "targets: " + std::to_string(p[i]) + " at row " + std::to_string(i) +
                   " is neither in [0, " + std::to_string(V) + ") nor the ignore index -100");
}

void crossentropy_fwd(const py::object& losses_obj, const py::object& logits_obj,
                      const py::object& targets_obj) {
    // logits (R,V), targets (R) -> losses (R)
    F32 logits = fbuf(logits_obj, "logits", 2), losses = fout(losses_obj, "losses", 1);
    I64 targets = i64(targets_obj, "targets", 1);
    const int64_t R = logits.shape(0), V = logits.shape(1);
    expect_shape(targets, "targets", {R});
    expect_shape(losses, "losses", {R});
    check_targets(targets, V);
    Released nogil;
    kernels().crossentropy_forward(losses.mutable_data(), logits.data(), targets.data(), R, V);
}

void crossentropy_bwd(const py::object& dlogits_obj, const py::object& logits_obj,
                      const py::object& targets_obj, float dloss) {
    // logits (R,V), targets (R) -> dlogits (R,V), written; may be logits itself
    F32 logits = fbuf(logits_obj, "logits", 2), dlogits = fout(dlogits_obj, "dlogits", 2);
    I64 targets = i64(targets_obj, "targets", 1);
    const int64_t R = logits.shape(0), V = logits.shape(1);
    expect_shape(targets, "targets", {R});
    expect_shape(dlogits, "dlogits", {R, V});
    expect(dlogits.data() == logits.data() || !overlap(dlogits, logits),
           "crossentropy_backward: dlogits must be logits itself or not overlap it");
    check_targets(targets, V);
    Released nogil;
    kernels().crossentropy_backward(dlogits.mutable_data(), logits.data(), targets.data(), dloss, R,
                                    V);
}

void adamw_step(const py::object& param_obj, const py::object& grad_obj, const py::object& m_obj,
                const py::object& v_obj, double lr, double beta1, double beta2, double eps,
                double weight_decay, int64_t step) {
    F32 param = fout(param_obj, "param"), grad = fbuf(grad_obj, "grad");
    F32 m = fout(m_obj, "m"), v = fout(v_obj, "v");
    expect_same_size(grad, "grad", param, "param");
    expect_same_size(m, "m", param, "param");
    expect_same_size(v, "v", param, "param");
    expect(!overlap(param, m) && !overlap(param, v) && !overlap(m, v) && !overlap(param, grad),
           "adamw_step: param, grad, m and v must be separate buffers");
    expect(step >= 1, "adamw_step: step must be >= 1 (1-based), got " + std::to_string(step));
    expect(lr >= 0.0, "adamw_step: lr must be >= 0, got " + std::to_string(lr));
    expect(eps >= 0.0, "adamw_step: eps must be >= 0, got " + std::to_string(eps));
    expect(beta1 >= 0.0 && beta1 < 1.0, "adamw_step: beta1 must be in [0, 1), got " + std::to_string(beta1));
    expect(beta2 >= 0.0 && beta2 < 1.0, "adamw_step: beta2 must be in [0, 1), got " + std::to_string(beta2));
    expect(weight_decay >= 0.0, "adamw_step: weight_decay must be >= 0, got " + std::to_string(weight_decay));
    Released nogil;
    kernels().adamw_step(param.mutable_data(), m.mutable_data(), v.mutable_data(), grad.data(),
                         param.size(), lr, beta1, beta2, eps, weight_decay, step);
}

double sumsq(const py::object& x_obj) {
    F32 x = fbuf(x_obj, "x");
    Released nogil;
    return kernels().sumsq_forward(x.data(), x.size());
}

void scale_inplace(const py::object& x_obj, float s) {
    F32 x = fout(x_obj, "x");
    Released nogil;
    kernels().scale_forward(x.mutable_data(), s, x.size());
}

// qkv (B,T,3C) with C a multiple of n_head: returns {B, T, C}
std::vector<int64_t> qkv_dims(const F32& qkv, int64_t n_head) {
    const int64_t B = qkv.shape(0), T = qkv.shape(1), C3 = qkv.shape(2);
    expect(n_head >= 1, "n_head must be >= 1, got " + std::to_string(n_head));
    expect(C3 % (3 * n_head) == 0, "qkv's last dimension must be 3*C with C a multiple of n_head=" +
                                       std::to_string(n_head) + ", got shape " + shape_str(qkv));
    return {B, T, C3 / 3};
}

void attention_fwd(const py::object& out_obj, const py::object& att_obj, const py::object& qkv_obj,
                   int64_t n_head, bool ref) {
    // qkv (B,T,3C) -> out (B,T,C), att (B,NH,T,T)
    F32 qkv = fbuf(qkv_obj, "qkv", 3), out = fout(out_obj, "out", 3), att = fout(att_obj, "att", 4);
    const auto d = qkv_dims(qkv, n_head);
    const int64_t B = d[0], T = d[1], C = d[2];
    expect_shape(out, "out", {B, T, C});
    expect_shape(att, "att", {B, n_head, T, T});
    expect(!overlap(out, qkv) && !overlap(att, qkv) && !overlap(out, att),
           "attention_forward: out, att and qkv must be separate buffers");
    Released nogil;
    if (ref) {
        kernels().attention_qkv_forward_ref(out.mutable_data(), att.mutable_data(), qkv.data(), B, T,
                                            C, n_head);
        return;
    }
    float* work = pyllm::thread_workspace(pyllm::attention_qkv_work_floats(T, pyllm::num_threads()));
    kernels().attention_qkv_forward(out.mutable_data(), att.mutable_data(), qkv.data(), B, T, C,
                                    n_head, work);
}

void attention_bwd(const py::object& dqkv_obj, const py::object& dout_obj, const py::object& qkv_obj,
                   const py::object& att_obj, int64_t n_head, bool ref) {
    // dout (B,T,C), qkv (B,T,3C), att (B,NH,T,T) -> dqkv (B,T,3C) +=
    F32 qkv = fbuf(qkv_obj, "qkv", 3), dout = fbuf(dout_obj, "dout", 3), att = fbuf(att_obj, "att", 4);
    F32 dqkv = fout(dqkv_obj, "dqkv", 3);
    const auto d = qkv_dims(qkv, n_head);
    const int64_t B = d[0], T = d[1], C = d[2];
    expect_shape(dqkv, "dqkv", {B, T, 3 * C});
    expect_shape(dout, "dout", {B, T, C});
    expect_shape(att, "att", {B, n_head, T, T});
    expect(!overlap(dqkv, qkv) && !overlap(dqkv, dout) && !overlap(dqkv, att),
           "attention_backward: dqkv must not overlap dout, qkv or att");
    Released nogil;
    if (ref) {
        kernels().attention_qkv_backward_ref(dqkv.mutable_data(), dout.data(), qkv.data(), att.data(),
                                             B, T, C, n_head);
        return;
    }
    float* work = pyllm::thread_workspace(pyllm::attention_qkv_work_floats(T, pyllm::num_threads()));
    kernels().attention_qkv_backward(dqkv.mutable_data(), dout.data(), qkv.data(), att.data(), B, T,
                                     C, n_head, work);
}

py::dict cpu_info() {
    py::dict d;
    d["isa"] = kernels().isa;
    d["available_isas"] = pyllm::available_isas();
    d["features"] = pyllm::cpu_features();
    d["num_threads"] = pyllm::num_threads();
    d["adaptive_threads"] = pyllm::adaptive_threads();
#if defined(_OPENMP)
    d["openmp"] = true;
#else
    d["openmp"] = false;
#endif
    return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
    m.doc() = "pyllm compiled kernels (private; use pyllm.ops)";
    m.def("cpu_info", &cpu_info);
    m.def("set_isa", [](const std::string& isa) { pyllm::set_isa(isa); }, py::arg("isa"));
    m.def("get_isa", []() { return std::string(kernels().isa); });
    m.def("set_num_threads", [](int64_t n) { pyllm::set_num_threads(n); }, py::arg("n"));
    m.attr("MAX_THREADS") = pyllm::kMaxThreads;
    m.def("set_adaptive_threads", &pyllm::set_adaptive_threads, py::arg("on"));
    m.def("get_num_threads", &pyllm::num_threads);
    void bind_threads(py::module_&); bind_threads(m);  // ThreadChooser, ScopedThreads (bind_threads.cpp)
    void bind_encoder(py::module_&); bind_encoder(m);  // EncoderModel, the BERT runtime (bind_encoder.cpp)

    m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
          py::arg("trans_b") = false);
    m.def("matmul_batched", &matmul_batched, py::arg("a"), py::arg("b"), py::arg("a_index"),
          py::arg("b_index"));
    m.def("matmul_ref", &matmul_ref, py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
          py::arg("trans_b") = false);
    m.def("linear", &linear, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none());
    m.def("softmax", &softmax, py::arg("x"));
    m.def("log_softmax", &log_softmax, py::arg("x"));
    m.def("rms_norm", &rms_norm, py::arg("x"), py::arg("weight"), py::arg("eps"));
    m.def("layer_norm", &layer_norm, py::arg("x"), py::arg("weight"), py::arg("bias"),
          py::arg("eps"));
    m.def("gelu", &gelu, py::arg("x"), py::arg("tanh_approx"));
    m.def("silu", &silu, py::arg("x"));
    m.def("sum", &sum, py::arg("x"));
    m.def("rope", &rope, py::arg("x"), py::arg("positions"), py::arg("theta"),
          py::arg("interleaved"));
    m.def("embedding", &embedding, py::arg("ids"), py::arg("table"));
    py::class_<pyllm::GGUFFile, GGUFPtr>(m, "GGUFFile")
        .def(py::init([](const std::string& path) {
                 Released nogil;
                 return std::make_shared<pyllm::GGUFFile>(path);
             }),
             py::arg("path"))
        .def_property_readonly("path", &pyllm::GGUFFile::path)
        .def_property_readonly("version", &pyllm::GGUFFile::version)
        .def_property_readonly("alignment", &pyllm::GGUFFile::alignment)
        .def_property_readonly("data_offset", &pyllm::GGUFFile::data_offset)
        .def_property_readonly("file_size", &pyllm::GGUFFile::file_size)
        .def("metadata", &gguf_metadata)
        .def("tensors", &gguf_tensors)
        .def("tensor_bytes", &gguf_tensor_bytes, py::arg("name"))
        .def("changed", &pyllm::GGUFFile::changed);
    py::class_<pyllm::DecoderModel, DecoderPtr>(m, "DecoderModel")
        .def(py::init(&make_decoder), py::arg("spec"), py::arg("tensors"), py::arg("rope"),
             py::arg("release_source") = false)
        .def("forward", &decoder_forward, py::arg("tokens"), py::arg("all_logits") = false, py::arg("seq") = 0)
        .def("forward_hidden", &decoder_forward_hidden, py::arg("tokens"), py::arg("logits") = false,
             py::arg("seq") = 0, py::arg("all_layers") = true)
        .def("decode_batch", &decoder_decode_batch, py::arg("tokens"), py::arg("seqs"))
        .def_property_readonly("decode_batch_supported", &pyllm::DecoderModel::decode_batch_supported)
        .def_property_readonly("n_past", [](pyllm::DecoderModel& mm) {
            std::lock_guard<std::mutex> lock(mm.mutex());
            mm.select_seq(0);
            return mm.n_past();
        })
        .def("seq_n_past", [](pyllm::DecoderModel& mm, int64_t seq) {
            std::lock_guard<std::mutex> lock(mm.mutex());
            mm.select_seq(seq);
            return mm.n_past();
        }, py::arg("seq"))
        .def_property_readonly("n_ctx", [](const pyllm::DecoderModel& mm) { return mm.spec().n_ctx; })
        .def_property_readonly("n_seq", [](pyllm::DecoderModel& mm) {
            std::lock_guard<std::mutex> lock(mm.mutex());
            return mm.n_seq();
        })
        .def("set_n_seq", [](pyllm::DecoderModel& mm, int64_t n) {
            Released nogil;
            std::lock_guard<std::mutex> lock(mm.mutex());
            mm.set_n_seq(n);
        }, py::arg("n"))
        .def("copy_seq", [](pyllm::DecoderModel& mm, int64_t src, int64_t dst) {
            Released nogil;
            std::lock_guard<std::mutex> lock(mm.mutex());
            mm.copy_seq(src, dst);
        }, py::arg("src"), py::arg("dst"))
        .def("truncate", [](pyllm::DecoderModel& mm, int64_t n, int64_t seq) {
            Released nogil;
            std::lock_guard<std::mutex> lock(mm.mutex());
            mm.select_seq(seq);
            mm.truncate(n);
        }, py::arg("n"), py::arg("seq") = 0);
    m.def("attention", &attention, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("mask"),
          py::arg("causal"), py::arg("scale"), py::arg("q_offset") = 0, py::arg("softcap") = 0.0f,
          py::arg("window") = 0);
    m.def("dequantize", &dequantize, py::arg("raw"), py::arg("type"), py::arg("n"),
          py::arg("ref") = false);
    m.def("quantize", &quantize, py::arg("x"), py::arg("type"));
    m.def("quant_types", &quant_types);
    m.def("quantize_file", &quantize_file, py::arg("x"), py::arg("type"), py::arg("threads") = 1,
          "(rows, n) float32 -> (rows, row bytes) uint8 by the type's file quantizer (pyllm quantize), GIL released");
    m.def("qmatmul", &qmatmul, py::arg("x"), py::arg("w_raw"), py::arg("type"), py::arg("K"),
          py::arg("ref") = false, py::arg("packed") = false, py::arg("decode_rows") = false);

    // training kernels: in place over caller buffers; backward ones add into gradients
    m.def("sgemm", &sgemm_into, py::arg("out"), py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
          py::arg("trans_b") = false, py::arg("accumulate") = false, py::arg("bias") = py::none());
    m.def("bias_add", &bias_add, py::arg("out"), py::arg("bias"));
    m.def("bias_backward", &bias_backward, py::arg("dbias"), py::arg("dout"));
    m.def("encoder_forward", &encoder_forward, py::arg("out"), py::arg("ids"), py::arg("wte"),
          py::arg("wpe"));
    m.def("encoder_backward", &encoder_backward, py::arg("dwte"), py::arg("dwpe"), py::arg("dout"),
          py::arg("ids"));
    m.def("layernorm_forward", &layernorm_fwd, py::arg("out"), py::arg("mean"), py::arg("rstd"),
          py::arg("inp"), py::arg("weight"), py::arg("bias"), py::arg("eps"));
    m.def("layernorm_backward", &layernorm_bwd, py::arg("dinp"), py::arg("dweight"), py::arg("dbias"),
          py::arg("dout"), py::arg("inp"), py::arg("weight"), py::arg("mean"), py::arg("rstd"));
    m.def("layernorm_backward_ref", &layernorm_bwd_ref, py::arg("dinp"), py::arg("dweight"),
          py::arg("dbias"), py::arg("dout"), py::arg("inp"), py::arg("weight"), py::arg("mean"),
          py::arg("rstd"));
    m.def("gelu_forward", &gelu_fwd, py::arg("out"), py::arg("inp"));
    m.def("gelu_backward", &gelu_bwd, py::arg("dinp"), py::arg("inp"), py::arg("dout"));
    m.def("residual_forward", &residual_fwd, py::arg("out"), py::arg("a"), py::arg("b"));
    m.def("crossentropy_forward", &crossentropy_fwd, py::arg("losses"), py::arg("logits"),
          py::arg("targets"));
    m.def("crossentropy_backward", &crossentropy_bwd, py::arg("dlogits"), py::arg("logits"),
          py::arg("targets"), py::arg("dloss"));
    m.def("adamw_step", &adamw_step, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
          py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
          py::arg("step"));
    m.def("attention_forward", [](const py::object& out, const py::object& att, const py::object& qkv,
                                  int64_t n_head) { attention_fwd(out, att, qkv, n_head, false); },
          py::arg("out"), py::arg("att"), py::arg("qkv"), py::arg("n_head"));
    m.def("attention_backward", [](const py::object& dqkv, const py::object& dout, const py::object& qkv,
                                   const py::object& att, int64_t n_head) {
              attention_bwd(dqkv, dout, qkv, att, n_head, false);
          },
          py::arg("dqkv"), py::arg("dout"), py::arg("qkv"), py::arg("att"), py::arg("n_head"));
    m.def("attention_forward_ref", [](const py::object& out, const py::object& att, const py::object& qkv,
                                      int64_t n_head) { attention_fwd(out, att, qkv, n_head, true); },
          py::arg("out"), py::arg("att"), py::arg("qkv"), py::arg("n_head"));
    m.def("attention_backward_ref", [](const py::object& dqkv, const py::object& dout,
                                       const py::object& qkv, const py::object& att, int64_t n_head) {
              attention_bwd(dqkv, dout, qkv, att, n_head, true);
          },
          py::arg("dqkv"), py::arg("dout"), py::arg("qkv"), py::arg("att"), py::arg("n_head"));
    m.def("sumsq", &sumsq, py::arg("x"));
    m.def("scale_", &scale_inplace, py::arg("x"), py::arg("s"));
}
