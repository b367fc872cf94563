#pragma once
// One model-sized float buffer reused from round to round. A round's result is as large as the
// model; allocated fresh every round, its pages are faulted in and zeroed by the kernel each time
// (on loopback that cost as much as copying the vector twice). The averager hands out each result
// as a shared, read-only vector; when its last reader lets go, the storage comes back here and the
// next round writes into pages that are already mapped.
//
// Memory: between rounds one spare buffer (the size of the last result) stays allocated. A round
// whose previous result is still held (e.g. by a trainer applying it late) allocates a new one.
//
// Thread-safe: readers drop results on their own threads.

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace ddactor {

class recycled_floats {
public:
  recycled_floats();

  /// `n` floats to overwrite: the spare buffer when it is large enough, its old values kept
  /// (zero-filling 100 MB costs a pass through memory the caller's writes make unnecessary).
  std::vector<float> take(std::size_t n);
  /// `values` as a shared read-only vector whose storage comes back as the spare once the last
  /// copy is gone (dropped if this recycler is gone by then).
  std::shared_ptr<const std::vector<float>> share(std::vector<float> values);

private:
  struct slot {
    std::mutex mutex;
    std::vector<float> spare;
  };
  std::shared_ptr<slot> slot_;
};

} // namespace ddactor
