// pyllm._C's handle on the runtime's thread policy for loops Python drives (a
// training step is many kernel calls): ThreadChooser and ScopedThreads. Not a pool.
#include <pybind11/pybind11.h>

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "runtime/dispatch.h"
#include "runtime/threadpool.h"

namespace py = pybind11;

namespace {

// ThreadChooser with its calls checked: record(n, ...) follows the pick()
// that returned n, once.
class Chooser {
public:
    int pick() {
        picked_ = chooser_.pick(pyllm::max_threads());
        return picked_;
    }

    void record(int n, double seconds, double units) {
        if (picked_ == 0)
            throw std::runtime_error("ThreadChooser.record: call pick() first (one record per pick)");
        if (n != picked_)
            throw py::value_error("ThreadChooser.record: n=" + std::to_string(n) +
                                  " is not the count the last pick() returned (" + std::to_string(picked_) + ")");
        if (!std::isfinite(seconds) || seconds < 0.0)
            throw py::value_error("ThreadChooser.record: seconds must be a finite number >= 0, got " +
                                  std::to_string(seconds));
        if (!std::isfinite(units) || units <= 0.0)
            throw py::value_error("ThreadChooser.record: units must be a finite number > 0, got " +
                                  std::to_string(units));
        chooser_.record(n, seconds, units);
        picked_ = 0;
    }

private:
    pyllm::ThreadChooser chooser_;
    int picked_ = 0;  // what the last pick() returned, 0 once recorded
};

// A context manager over pyllm::ScopedThreads: between __enter__ and __exit__
// kernels called from the entering thread use n threads. Entered once, left
// on the thread that entered it.
class Scoped {
public:
    explicit Scoped(int n) : n_(n) {
        const int max = pyllm::max_threads();
        if (n < 1 || n > max)
            throw py::value_error("ScopedThreads: n must be between 1 and the thread count " + std::to_string(max) +
                                  " (set_num_threads), got " + std::to_string(n));
    }

    Scoped& enter() {
        if (used_) throw std::runtime_error("ScopedThreads: this object was already entered; make a new one");
        used_ = true;
        owner_ = std::this_thread::get_id();
        scope_ = std::make_unique<pyllm::ScopedThreads>(n_);
        return *this;
    }

    void exit() {
        if (!scope_) throw std::runtime_error("ScopedThreads: __exit__ without __enter__");
        if (std::this_thread::get_id() != owner_)
            throw std::runtime_error("ScopedThreads: left on another thread than the one that entered it");
        scope_.reset();
    }

    int n() const { return n_; }

private:
    int n_;
    bool used_ = false;
    std::thread::id owner_;
    std::unique_ptr<pyllm::ScopedThreads> scope_;
};

}  // namespace

void bind_threads(py::module_& m) {
    py::class_<Chooser>(m, "ThreadChooser")
        .def(py::init<>())
        .def("pick", &Chooser::pick)
        .def("record", &Chooser::record, py::arg("n"), py::arg("seconds"), py::arg("units"));
    py::class_<Scoped>(m, "ScopedThreads")
        .def(py::init<int>(), py::arg("n"))
        .def("__enter__", &Scoped::enter, py::return_value_policy::reference_internal)
        .def("__exit__", [](Scoped& s, const py::args&) { s.exit(); })
        .def_property_readonly("n", &Scoped::n);
}
