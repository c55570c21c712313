// pyllm._C.EncoderModel: the BERT encoder runtime bound for Python, every buffer
// checked (dtype, shape, id and mask values) and the GIL released around the work. No math.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "runtime/dispatch.h"
#include "runtime/encoder.h"
#include "runtime/workspace.h"

namespace py = pybind11;

namespace {

using F32 = py::array_t<float, py::array::c_style>;
using I64 = py::array_t<int64_t, py::array::c_style>;
using EncoderPtr = std::shared_ptr<pyllm::EncoderModel>;

void expect(bool ok, const std::string& msg) {
    if (!ok) throw py::value_error(msg);
}

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); i++) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

template <typename T>
py::array_t<T, py::array::c_style> checked(const py::object& obj, const char* name, int ndim, const char* dtype) {
    expect(py::isinstance<py::array>(obj), std::string(name) + " must be a numpy array");
    py::array a = py::reinterpret_borrow<py::array>(obj);
    expect(a.dtype().is(py::dtype::of<T>()),
           std::string(name) + " must be " + dtype + ", got " + std::string(py::str(a.dtype())));
    expect(a.ndim() == ndim, std::string(name) + " must have " + std::to_string(ndim) + " dimensions, got shape " +
                                 shape_str(a));
    expect((a.flags() & py::array::c_style) != 0, std::string(name) + " must be C-contiguous");
    return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(a);
}

F32 flat(const py::object& obj, const char* name, int64_t n) {
    F32 a = checked<float>(obj, name, 1, "float32");
    expect(a.shape(0) == n, std::string(name) + " has " + std::to_string(a.shape(0)) + " floats; the model has " +
                                std::to_string(n) + " parameters");
    return a;
}

// ids (B,T) in [0, limit): the first offender named
void check_range(const I64& a, const char* name, int64_t limit) {
    const int64_t* p = a.data();
    const int64_t T = a.shape(1);
    for (int64_t i = 0; i < a.size(); i++)
        expect(p[i] >= 0 && p[i] < limit, std::string(name) + ": " + std::to_string(p[i]) + " at row " +
                                              std::to_string(i / T) + ", position " + std::to_string(i % T) +
                                              " is outside [0, " + std::to_string(limit) + ")");
}

void encoder_forward(pyllm::EncoderModel& m, const py::object& params, const py::object& ids_obj,
                     const py::object& types_obj, const py::object& mask_obj, float p_hidden, float p_attention,
                     float p_classifier, uint64_t seed, bool pad_rows) {
    const pyllm::EncoderConfig& c = m.config();
    F32 P = flat(params, "params", m.num_parameters());
    I64 ids = checked<int64_t>(ids_obj, "input_ids", 2, "int64");
    I64 types = checked<int64_t>(types_obj, "token_type_ids", 2, "int64");
    I64 mask = checked<int64_t>(mask_obj, "attention_mask", 2, "int64");
    const int64_t B = ids.shape(0), T = ids.shape(1);
    expect(B > 0 && T > 0, "input_ids must hold at least one token, got shape " + shape_str(ids));
    expect(types.shape(0) == B && types.shape(1) == T,
           "token_type_ids has shape " + shape_str(types) + ", input_ids " + shape_str(ids));
    expect(mask.shape(0) == B && mask.shape(1) == T,
           "attention_mask has shape " + shape_str(mask) + ", input_ids " + shape_str(ids));
    expect(T <= c.max_positions, "sequence length " + std::to_string(T) + " exceeds max_position_embeddings=" +
                                     std::to_string(c.max_positions));
    check_range(ids, "input_ids", c.vocab_size);
    check_range(types, "token_type_ids", c.type_vocab);
    const int64_t* mp = mask.data();
    for (int64_t b = 0; b < B; b++) {
        bool any = false;
        for (int64_t t = 0; t < T; t++) {
            expect(mp[b * T + t] == 0 || mp[b * T + t] == 1, "attention_mask must hold 0 and 1 only, got " +
                                                                  std::to_string(mp[b * T + t]) + " at row " +
                                                                  std::to_string(b));
            any = any || mp[b * T + t];
        }
        expect(any, "attention_mask row " + std::to_string(b) + " masks every position: nothing to attend to");
    }
    for (float p : {p_hidden, p_attention, p_classifier})
        expect(p >= 0.0f && p < 1.0f, "dropout probabilities must be in [0, 1), got " + std::to_string(p));
    pyllm::EncoderDropout d{p_hidden, p_attention, p_classifier, seed};
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(m.mutex());
    m.forward(P.data(), ids.data(), types.data(), mask.data(), B, T, d, pad_rows);
}

py::object optional_f32(const py::object& obj, const char* name, std::vector<int64_t> shape) {
    if (obj.is_none()) return obj;
    F32 a = checked<float>(obj, name, int(shape.size()), "float32");
    for (size_t i = 0; i < shape.size(); i++)
        expect(a.shape(i) == shape[i], std::string(name) + " has shape " + shape_str(a) +
                                           " but the last forward needs " + std::to_string(shape[i]) + " along axis " +
                                           std::to_string(i));
    return std::move(a);
}

void encoder_backward(pyllm::EncoderModel& m, const py::object& params, const py::object& grads,
                      const py::object& dlogits, const py::object& dpooled, const py::object& dlast) {
    const pyllm::EncoderConfig& c = m.config();
    F32 P = flat(params, "params", m.num_parameters());
    F32 G = flat(grads, "grads", m.num_parameters());
    expect(m.batch() > 0, "backward needs a forward first");
    const int64_t B = m.batch(), T = m.time();
    expect(dlogits.is_none() || c.num_labels > 0, "dlogits given to a model without a classifier");
    expect(dpooled.is_none() || c.pooler, "dpooled given to a model without a pooler");
    py::object dl = optional_f32(dlogits, "dlogits", {B, c.num_labels});
    py::object dp = optional_f32(dpooled, "dpooled", {B, c.hidden});
    py::object dh = optional_f32(dlast, "dlast", {B, T, c.hidden});
    auto ptr = [](const py::object& o) -> const float* {
        return o.is_none() ? nullptr : py::reinterpret_borrow<F32>(o).data();
    };
    const float *a = ptr(dl), *b = ptr(dp), *h = ptr(dh);
    float* g = G.mutable_data();
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(m.mutex());
    m.backward(P.data(), g, a, b, h);
}

F32 copy_out(pyllm::EncoderModel& m, const float* src, std::vector<py::ssize_t> shape) {
    F32 out(shape);
    std::memcpy(out.mutable_data(), src, sizeof(float) * size_t(out.size()));
    return out;
}

// The encoder's attention over sequences packed one after another (rows
// [seq[b], seq[b+1]) of qkv (N,3C) and the additive key mask (N)): out (N,C)
// and the probabilities, each sequence's (heads,n,n) in turn. packed: the one
// kernel over all sequences, else attention_masked_forward on each alone.
py::tuple encoder_attention(const py::object& qkv_obj, const py::object& kmask_obj, const py::object& seq_obj,
                            int64_t heads, bool packed) {
    F32 qkv = checked<float>(qkv_obj, "qkv", 2, "float32");
    F32 kmask = checked<float>(kmask_obj, "kmask", 1, "float32");
    I64 seq = checked<int64_t>(seq_obj, "seq", 1, "int64");
    const int64_t N = qkv.shape(0), C = qkv.shape(1) / 3, B = seq.shape(0) - 1;
    expect(qkv.shape(1) % 3 == 0 && C > 0 && heads > 0 && C % heads == 0,
           "qkv must be (N, 3C) with C a multiple of heads");
    expect(kmask.shape(0) == N, "kmask must have one value per row of qkv");
    expect(B >= 1 && seq.data()[0] == 0 && seq.data()[B] == N, "seq must run from 0 to the rows of qkv");
    std::vector<int64_t> att_off(B + 1, 0);
    int64_t T = 0;
    for (int64_t b = 0; b < B; b++) {
        const int64_t n = seq.data()[b + 1] - seq.data()[b];
        expect(n > 0, "seq must be increasing");
        att_off[b + 1] = att_off[b] + heads * n * n;
        T = std::max(T, n);
    }
    F32 out({py::ssize_t(N), py::ssize_t(C)});
    F32 att({py::ssize_t(att_off[B])});
    {
        py::gil_scoped_release nogil;
        const auto& k = pyllm::kernels();
        const int nt = pyllm::max_threads();
        float* gw = pyllm::thread_workspace(std::max(pyllm::attention_masked_work_floats(T, nt),
                                                     pyllm::attention_packed_work_floats(T, C / heads, nt)));
        const int64_t* sq = seq.data();
        if (packed) {
            k.attention_packed_forward(out.mutable_data(), att.mutable_data(), qkv.data(), kmask.data(), sq,
                                       att_off.data(), B, C, heads, gw);
        } else {
            for (int64_t b = 0; b < B; b++)
                k.attention_masked_forward(out.mutable_data() + sq[b] * C, att.mutable_data() + att_off[b],
                                           qkv.data() + sq[b] * 3 * C, kmask.data() + sq[b], 1, sq[b + 1] - sq[b],
                                           C, heads, 0.0f, 0, gw);
        }
    }
    return py::make_tuple(out, att);
}

}  // namespace

void bind_encoder(py::module_& m) {
    m.def("encoder_attention", &encoder_attention, py::arg("qkv"), py::arg("kmask"), py::arg("seq"),
          py::arg("heads"), py::arg("packed"));
    py::class_<pyllm::EncoderModel, EncoderPtr>(m, "EncoderModel")
        .def(py::init([](int64_t vocab_size, int64_t max_positions, int64_t type_vocab, int64_t hidden,
                         int64_t layers, int64_t heads, int64_t intermediate, float eps, bool pooler,
                         int64_t num_labels) {
                 pyllm::EncoderConfig c{vocab_size, max_positions, type_vocab, hidden, layers, heads,
                                        intermediate, eps, pooler, num_labels};
                 try {
                     return std::make_shared<pyllm::EncoderModel>(c);
                 } catch (const std::invalid_argument& e) {
                     throw py::value_error(e.what());
                 }
             }),
             py::arg("vocab_size"), py::arg("max_positions"), py::arg("type_vocab"), py::arg("hidden"),
             py::arg("layers"), py::arg("heads"), py::arg("intermediate"), py::arg("eps"), py::arg("pooler"),
             py::arg("num_labels"))
        .def("layout", [](const pyllm::EncoderModel& mm) {
            py::list out;
            for (const auto& p : mm.layout()) out.append(py::make_tuple(p.name, py::tuple(py::cast(p.shape)), p.offset));
            return out;
        })
        .def_property_readonly("num_parameters", &pyllm::EncoderModel::num_parameters)
        .def("forward", &encoder_forward, py::arg("params"), py::arg("input_ids"), py::arg("token_type_ids"),
             py::arg("attention_mask"), py::arg("p_hidden") = 0.0f, py::arg("p_attention") = 0.0f,
             py::arg("p_classifier") = 0.0f, py::arg("seed") = 0, py::arg("pad_rows") = false)
        .def("backward", &encoder_backward, py::arg("params"), py::arg("grads"), py::arg("dlogits") = py::none(),
             py::arg("dpooled") = py::none(), py::arg("dlast") = py::none())
        .def("hidden", [](pyllm::EncoderModel& mm, int64_t l) {
            std::lock_guard<std::mutex> lock(mm.mutex());
            expect(mm.batch() > 0, "no forward has run");
            expect(l >= 0 && l <= mm.config().layers, "hidden: layer index out of range");
            F32 out({py::ssize_t(mm.batch()), py::ssize_t(mm.time()), py::ssize_t(mm.config().hidden)});
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                mm.hidden_into(l, dst);
            }
            return out;
        }, py::arg("layer"))
        .def("mean_pooled", [](pyllm::EncoderModel& mm) {
            std::lock_guard<std::mutex> lock(mm.mutex());
            expect(mm.batch() > 0, "no forward has run");
            F32 out({py::ssize_t(mm.batch()), py::ssize_t(mm.config().hidden)});
            mm.mean_pool_into(out.mutable_data());
            return out;
        })
        .def_property_readonly("rows", [](pyllm::EncoderModel& mm) {
            std::lock_guard<std::mutex> lock(mm.mutex());
            return mm.rows();
        })
        .def("pooled", [](pyllm::EncoderModel& mm) {
            std::lock_guard<std::mutex> lock(mm.mutex());
            expect(mm.batch() > 0 && mm.config().pooler, "no pooled output (no forward yet, or no pooler)");
            return copy_out(mm, mm.pooled(), {py::ssize_t(mm.batch()), py::ssize_t(mm.config().hidden)});
        })
        .def("logits", [](pyllm::EncoderModel& mm) {
            std::lock_guard<std::mutex> lock(mm.mutex());
            expect(mm.batch() > 0 && mm.config().num_labels > 0, "no logits (no forward yet, or no classifier)");
            return copy_out(mm, mm.logits(), {py::ssize_t(mm.batch()), py::ssize_t(mm.config().num_labels)});
        });
}
