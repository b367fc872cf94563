#pragma once
// Aspect-ratio buckets for training a latent diffusion model on images of many shapes (as
// NovelAI's and kohya's SD trainers do): instead of centre-cropping every image to a square, each
// image goes to the bucket whose aspect ratio is closest to its own, is resized to cover that
// bucket and centre-cropped to it; a batch holds images of one bucket.
//
// The buckets for a resolution r and a step s (64 px for SD: 8 latent pixels, which its UNet
// halves three times):
//
//   for every width w = r/2 .. 2r in steps of s (r/2 rounded up to a step):
//     h = the largest multiple of s with w * h <= r * r, at most 2r
//     (w, h) is a bucket if h >= r/2 (rounded up to a step)
//   and the transpose (h, w) of every bucket is one too
//
// so no bucket has more pixels than r x r (the memory of one square image), aspect ratios run
// from 1:4 to 4:1, and the square (r, r) is always one. Distances between aspect ratios are
// measured as |log(w/h) - log(W/H)|, so 2:1 and 1:2 are as far from 1:1.
//
// Plain functions, deterministic.

#include <cstdint>
#include <span>
#include <vector>

namespace ddactor {

struct bucket_shape {
  int width = 0;
  int height = 0;

  friend bool operator==(const bucket_shape&, const bucket_shape&) = default;
};

/// The buckets for resolution r (a positive multiple of `step`), ordered by aspect ratio
/// (width / height, the tallest first).
std::vector<bucket_shape> aspect_buckets(int resolution, int step = 64);

/// The index of the bucket whose aspect ratio is closest to width : height (ties: the one with
/// more pixels, then the first).
size_t nearest_bucket(std::span<const bucket_shape> buckets, int width, int height);

} // namespace ddactor
