#pragma once
// Process-wide LibTorch settings that must be made once, before any model runs.

#include <functional>
#include <optional>
#include <string>
namespace ddactor {

/// Makes OpenMP threads sleep instead of spin while they wait (OMP_WAIT_POLICY=PASSIVE), unless
/// the user set a policy: LibTorch's OpenMP team spinning beside OpenBLAS's own threads made
/// training 40% slower on a 2-core machine. libgomp reads the variable only when it loads, so
/// this re-executes the program once with it set; call it first thing in main().
void use_passive_openmp_wait(char** argv);

/// Keeps freed memory in the heap instead of returning it to the kernel after every tensor:
/// LibTorch frees and reallocates the same large buffers every step, and the page faults of
/// fresh mmaps cost 25% of a sampling run here (measured: sys time 27 s -> 13 s).
void keep_freed_memory();

/// Sets LibTorch's intra-op thread count; 0 means one per core. More threads than cores only
/// slow a step down (they take turns): it says so. With several trainers (run.trainers) each
/// gets its share, at least 1: the count is per calling thread, and each trainer has its own.
/// Returns the count in effect (per trainer).
int configure_torch_threads(int requested, int trainers = 1);

/// Gives OpenBLAS's own thread pool the same count (configure_torch_threads does): LibTorch's
/// setting does not reach it, so each process kept one BLAS thread per core, and peers or
/// trainers sharing a machine took turns, their idle BLAS threads yielding in a loop (two
/// peers of run.threads = 1 on 2 cores: 279 samples/s, 394 with one BLAS thread each). An
/// OPENBLAS_NUM_THREADS the user set wins. Returns OpenBLAS's count in effect; nullopt where
/// LibTorch's BLAS is not OpenBLAS (nothing to set).
std::optional<int> configure_blas_threads(int threads);

/// OpenBLAS's thread count now; nullopt where LibTorch's BLAS is not OpenBLAS.
std::optional<int> blas_threads();

/// Refuses, with one clear line naming run.device, a device this build or machine cannot use
/// (CUDA on a CPU-only build or a machine without that GPU) instead of quietly using the CPU.
void check_device(const std::string& device);

/// Runs `work` on a fresh thread and waits for it (rethrowing its exception). Heavy LibTorch work
/// runs there: on the process's main thread, OpenBLAS's thread pool and LibTorch's OpenMP team
/// contend for the cores (measured 30-40% slower on a 2-core machine).
void run_on_worker_thread(const std::function<void()>& work);

} // namespace ddactor
