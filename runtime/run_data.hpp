#pragma once
// The images of a run, as its config names them: the training set and a held-out set for
// evaluation (Fashion-MNIST's test split, or a seeded fraction of an image folder), at the
// configured resolution and channel count.

#include <memory>
#include <string>
#include <vector>

#include "config/run_config.hpp"
#include "runtime/image_dataset.hpp"
#include "runtime/sd_examples.hpp"

namespace ddactor {

struct run_data {
  std::shared_ptr<const image_dataset> train;
  std::shared_ptr<const image_dataset> holdout;
  skipped_files skipped;
};

/// Loads both sets; throws with a message that says what to do when the data is not there.
/// Unreadable files of a folder are skipped, logged and counted in `skipped`.
run_data load_run_data(const run_config& config);

/// For a DDM expert (ddm.expert = k): keeps the training images of cluster k. For the router
/// (run.mode = "router"): gives every training image its cluster (image_dataset::clusters). Reads the assignment
/// file and refuses one made for other data. Called by load_run_data.
void apply_ddm_split(const run_config& config, run_data& data);

/// The same for a latent model's examples (model.latent): a DDM expert keeps the examples of
/// its cluster; anything else gets `examples` back.
std::shared_ptr<const sd_example_set> apply_ddm_split(
  const run_config& config, std::shared_ptr<const sd_example_set> examples);

/// Names of the classes 0..num_classes-1 of the run's data, for labels on sample grids:
/// Fashion-MNIST's own names, "class N" for other data.
std::vector<std::string> class_label_names(const run_config& config, int64_t num_classes);

/// Row labels of a grid of prompts: the prompt, or "(no prompt)" for the unconditional row.
std::vector<std::string> prompt_labels(const std::vector<std::string>& prompts);

/// Resizes every image of a data set (used when a run asks Fashion-MNIST at another resolution).
image_dataset resize_dataset(const image_dataset& data, int resolution, int channels);

} // namespace ddactor
