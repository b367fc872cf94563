#include "app/torch_setup.hpp"

#include <algorithm>

#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <optional>
#include <stdexcept>
#include <thread>

namespace ddactor {

void use_passive_openmp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr)
    return;
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::execv("/proc/self/exe", argv);
  // exec failed (no /proc): go on with the default policy.
}

void keep_freed_memory() {
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);  // the largest glibc allows
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
  mallopt(M_TOP_PAD, 256 * 1024 * 1024);
}

int configure_torch_threads(int requested, int trainers) {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  int n = requested > 0 ? requested : cores;
  if (n <= 0)
    n = 1;
  if (cores > 0 && n > 2 * cores)
    spdlog::warn("run.threads = {} on a machine with {} cores: threads beyond the cores take "
                 "turns and slow each step down (0 uses one per core)",
                 n, cores);
  const int per_trainer = std::max(1, n / std::max(1, trainers));
  torch::set_num_threads(per_trainer);
  configure_blas_threads(per_trainer);
  return torch::get_num_threads();
}

namespace {

// Looked up at run time: LibTorch reaches BLAS through libblas.so.3, which Debian's alternatives
// point at OpenBLAS (with its own thread pool), BLIS or the reference BLAS.
template <typename Function>
Function openblas_function(const char* name) {
  return reinterpret_cast<Function>(::dlsym(RTLD_DEFAULT, name));
}

} // namespace

std::optional<int> blas_threads() {
  auto get = openblas_function<int (*)()>("openblas_get_num_threads");
  if (get == nullptr)
    return std::nullopt;
  return get();
}

std::optional<int> configure_blas_threads(int threads) {
  auto set = openblas_function<void (*)(int)>("openblas_set_num_threads");
  if (set != nullptr && std::getenv("OPENBLAS_NUM_THREADS") == nullptr)
    set(std::max(1, threads));
  return blas_threads();
}

void check_device(const std::string& device) {
  if (device == "cpu")
    return;
#ifdef DDACTOR_WITH_CUDA
  if (!torch::cuda::is_available())
    throw std::invalid_argument("run.device = \"" + device +
                                "\": no CUDA device is visible to this process (driver, "
                                "CUDA_VISIBLE_DEVICES?); use \"cpu\"");
  const auto colon = device.find(':');
  const int64_t index = colon == std::string::npos ? 0 : std::stoll(device.substr(colon + 1));
  if (index >= static_cast<int64_t>(torch::cuda::device_count()))
    throw std::invalid_argument("run.device = \"" + device + "\": this machine has " +
                                std::to_string(torch::cuda::device_count()) + " CUDA device(s)");
#else
  throw std::invalid_argument("run.device = \"" + device +
                              "\": this ddactor was built without CUDA (configure with "
                              "-DDDACTOR_CUDA=ON and a CUDA LibTorch); use \"cpu\"");
#endif
}

} // namespace ddactor

namespace ddactor {

void run_on_worker_thread(const std::function<void()>& work) {
  std::exception_ptr failure;
  std::thread([&] {
    try {
      work();
    } catch (...) {
      failure = std::current_exception();
    }
  }).join();
  if (failure)
    std::rethrow_exception(failure);
}

} // namespace ddactor
