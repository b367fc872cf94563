#pragma once
// A peer's link rate as its own averaging rounds measure it, for the leader's cut of the vector
// (bandwidth_shares.hpp). Each round gives a sample per direction: the bytes that arrived over the
// time from the round's start to its last chunk (download), and the rates at which the other
// members received this peer's chunks since their start, added up (upload: its streams share the
// uplink). A sample is a
// lower bound of the link (the other end or the round's rhythm may have been slower); rounds that
// moved too little to measure are ignored; the estimate is a moving average of the samples.
//
// Pure code: no actors, no clock.

#include <cstdint>

namespace ddactor {

class link_rate_estimate {
 public:
  /// Rounds that moved fewer bytes than this in a direction say more about latency than rate.
  static constexpr double min_sample_bytes = 1 << 20;

  /// `bytes` moved in `seconds` in one direction.
  void add_download(double bytes, double seconds);
  void add_upload(double bytes_per_second, double bytes);

  /// Bytes per second each way (0: not measured yet).
  double download() const { return download_; }
  double upload() const { return upload_; }
  /// The rate a round's transfers are limited by: the smaller of the two measured directions
  /// (the one measured when only one is), 0 when none is.
  double limiting() const;

 private:
  static void blend(double& estimate, double sample);

  double download_ = 0;
  double upload_ = 0;
};

} // namespace ddactor
