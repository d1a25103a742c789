// The extension module epcomm._C: the torch.distributed backend class (and, as they come,
// the other Python-facing pieces). The Python package (python/epcomm) registers it.
#include <pybind11/chrono.h>
#include <pybind11/pybind11.h>
#include <torch/csrc/utils/pybind.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include "python/src/process_group.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "epcomm's torch bindings (use the epcomm package, not this module)";
  // torch's ProcessGroup and Store types must be registered before ours refers to them.
  py::module::import("torch.distributed");
  using epcomm::python::ProcessGroupEpcomm;
  py::class_<ProcessGroupEpcomm, c10d::ProcessGroup, c10::intrusive_ptr<ProcessGroupEpcomm>>(
      m, "ProcessGroupEpcomm")
      .def(py::init([](const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                       std::chrono::milliseconds timeout) {
             return c10::make_intrusive<ProcessGroupEpcomm>(store, rank, size, timeout);
           }),
           py::arg("store"), py::arg("rank"), py::arg("size"), py::arg("timeout"),
           py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("backend",
                             [](ProcessGroupEpcomm& pg) { return pg.communicator().backendName(); })
      .def_property_readonly("last_algorithm", [](ProcessGroupEpcomm& pg) {
        return pg.communicator().lastAlgorithm();
      });
}
