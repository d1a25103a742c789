// The extension module epcomm._C: the torch.distributed backend class (and, as they come,
// the other Python-facing pieces). The Python package (python/epcomm) registers it.
#include <pybind11/chrono.h>
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include "comm/unique_id.h"
#include "comm/workers.h"
#include "python/src/ep_buffer.h"
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
      .def("_registered_bytes", &ProcessGroupEpcomm::registeredBytes,
           py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("last_algorithm", [](ProcessGroupEpcomm& pg) {
        return pg.communicator().lastAlgorithm();
      });

  // This process's worker threads (comm/workers.h), e.g. torch.get_num_threads().
  m.def("set_threads", &epcomm::setThreads, py::arg("threads"));
  m.def("threads", &epcomm::threads);

  // A UniqueId for groups of other backends: rank 0 makes it, the group carries it.
  m.def("unique_id", [] {
    const epcomm::UniqueId id = epcomm::UniqueId::create();
    return py::bytes(reinterpret_cast<const char*>(id.bytes.data()), id.bytes.size());
  });

  using epcomm::python::EpBuffer;
  using epcomm::python::NormalHandle;
  py::class_<NormalHandle, std::shared_ptr<NormalHandle>>(m, "_NormalHandle")
      .def_property_readonly("num_recv_tokens",
                             [](const NormalHandle& h) { return h.handle.numRecvTokens; })
      .def_property_readonly("recv_src_idx",
                             [](const NormalHandle& h) {
                               at::Tensor t = at::empty({h.handle.numRecvTokens}, at::kInt);
                               std::copy(h.handle.recvSrcIdx.begin(), h.handle.recvSrcIdx.end(),
                                         t.data_ptr<int32_t>());
                               return t;
                             })
      .def_property_readonly("is_token_in_rank", [](const NormalHandle& h) {
        at::Tensor t = at::empty({h.handle.numTokens, h.handle.numRanks}, at::kBool);
        std::copy(h.handle.isTokenInRank.begin(), h.handle.isTokenInRank.end(),
                  static_cast<uint8_t*>(t.data_ptr()));
        return t;
      });
  py::class_<epcomm::ep::LowLatencyHandle>(m, "_LowLatencyHandle");
  py::class_<EpBuffer>(m, "_EpBuffer")
      .def(py::init([](const c10::intrusive_ptr<ProcessGroupEpcomm>& pg) {
             // The group lends its communicator; the Buffer holds the group until it is gone.
             std::shared_ptr<void> lender(static_cast<void*>(nullptr),
                                          [keep = pg](void*) mutable { keep.reset(); });
             return std::make_unique<EpBuffer>(&pg->communicator(), nullptr, std::move(lender));
           }),
           py::call_guard<py::gil_scoped_release>())
      .def(py::init([](const py::bytes& id, int rank, int size) {
        epcomm::UniqueId uid;
        const std::string bytes = id;
        if (bytes.size() != uid.bytes.size()) throw std::invalid_argument("bad unique id");
        std::copy(bytes.begin(), bytes.end(), uid.bytes.begin());
        py::gil_scoped_release release;
        auto comm = epcomm::Communicator::init(uid, rank, size);
        epcomm::Communicator* raw = comm.get();
        return std::make_unique<EpBuffer>(raw, std::move(comm));
      }))
      .def_property_readonly("rank", &EpBuffer::rank)
      .def_property_readonly("num_ranks", &EpBuffer::numRanks)
      .def_property_readonly("low_latency_capacity", &EpBuffer::lowLatencyCapacity)
      .def("get_dispatch_layout", &EpBuffer::getDispatchLayout,
           py::call_guard<py::gil_scoped_release>())
      .def(
          "dispatch",
          [](EpBuffer& b, const at::Tensor& x, const std::optional<at::Tensor>& xScales,
             const std::optional<at::Tensor>& topkIdx, const std::optional<at::Tensor>& topkWeights,
             int numExperts, const std::shared_ptr<NormalHandle>& cached, int alignment, int worst,
             const std::optional<at::Tensor>& inRank, const std::optional<at::Tensor>& perExpert) {
            EpBuffer::Dispatched d;
            {
              py::gil_scoped_release release;
              d = b.dispatch(x, xScales, topkIdx, topkWeights, numExperts, cached, alignment, worst,
                             inRank, perExpert);
            }
            py::object recv = d.recvScales ? py::object(py::make_tuple(d.recvX, *d.recvScales))
                                           : py::object(py::cast(d.recvX));
            return py::make_tuple(recv, d.recvTopkIdx, d.recvTopkWeights, d.numRecvTokensPerExpert,
                                  d.handle);
          })
      .def("combine", &EpBuffer::combine, py::call_guard<py::gil_scoped_release>())
      .def("low_latency_dispatch",
           [](EpBuffer& b, const at::Tensor& x, const at::Tensor& topkIdx, int maxTokens,
              int numExperts, bool int8, bool hook) {
             EpBuffer::LowLatencyDispatched d;
             {
               py::gil_scoped_release release;
               d = b.lowLatencyDispatch(x, topkIdx, maxTokens, numExperts, int8, hook);
             }
             py::object recv = int8 ? py::object(py::make_tuple(d.recvXInt8, d.recvScales))
                                    : py::object(py::cast(d.recvX));
             py::object hookObj = py::none();
             if (d.hook) {
               hookObj = py::cpp_function([h = std::move(d.hook)] {
                 py::gil_scoped_release release;
                 h();
               });
             }
             return py::make_tuple(recv, d.recvCount, d.srcInfo, d.layoutRange, d.handle, hookObj);
           })
      .def("low_latency_combine",
           [](EpBuffer& b, const std::optional<at::Tensor>& x, const at::Tensor& topkIdx,
              const at::Tensor& topkWeights, const epcomm::ep::LowLatencyHandle& handle,
              bool zeroCopy, bool hook, const std::optional<at::Tensor>& out) {
             at::Tensor combined;
             std::function<void()> h;
             {
               py::gil_scoped_release release;
               std::tie(combined, h) =
                   b.lowLatencyCombine(x, topkIdx, topkWeights, handle, zeroCopy, hook, out);
             }
             py::object hookObj = py::none();
             if (h) {
               hookObj = py::cpp_function([h = std::move(h)] {
                 py::gil_scoped_release release;
                 h();
               });
             }
             return py::make_tuple(combined, hookObj);
           })
      .def("low_latency_combine_buffer", &EpBuffer::lowLatencyCombineBuffer)
      .def("_time_normal_dispatch", &EpBuffer::timeNormalDispatch,
           py::call_guard<py::gil_scoped_release>())
      .def("_time_low_latency", &EpBuffer::timeLowLatency, py::call_guard<py::gil_scoped_release>())
      .def("rank_prefix_matrix", &EpBuffer::rankPrefixMatrix,
           py::call_guard<py::gil_scoped_release>());
}
