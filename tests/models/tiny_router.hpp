#pragma once
// A DDM router small enough for unit tests: 8x8 grey images, 2 experts, no classes.
#include "models/router.hpp"

namespace ddactor::tiny_router {

inline router_options options() {
  router_options o;
  o.image_size = 8;
  o.patch_size = 4;
  o.hidden_size = 16;
  o.depth = 1;
  o.num_heads = 2;
  o.num_experts = 2;
  return o;
}

} // namespace ddactor::tiny_router
