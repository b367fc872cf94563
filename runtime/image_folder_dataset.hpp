#pragma once
// The seed format: a folder, searched recursively, of images (.png, .jpg, .jpeg, any case),
// each with a caption of the same name (`cat.png` + `cat.txt`, UTF-8). Loading decodes every
// image in parallel, fits it to a square of the training resolution (image_io's fit_image) and
// keeps it in memory as an image_dataset, in the sorted order of the paths, whatever the
// threads did.
//
// Bad files are skipped, logged once each (spdlog) and counted in skipped_files; only a folder
// with no usable image at all is an error.
//
//   unreadable       the file cannot be read, or it starts like a PNG/JPEG but does not decode
//   wrong_format     an image name whose content is no image; a caption that is not UTF-8
//   missing_caption  an image without a caption, when captions are required
//   missing_image    a .txt without an image of the same name
//
// Hidden files and folders (name starting with '.', such as macOS's `._cat.png` or `.git`)
// are not looked at; other extensions are ignored without a count. An image with several
// extensions for one name (`cat.png`, `cat.jpg`) shares that name's caption.

#include "runtime/image_dataset.hpp"

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ddactor {

// The folder is missing, is no folder, or holds no usable image. The message names it.
class image_folder_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Loads `dir` as resolution x resolution images with `channels` (1 or 3) channels. With
// require_captions, images without a caption are skipped; without it they are kept, and
// `captions` holds one entry per image (empty where there is none) if any image has one.
// Adds what it skipped to `skipped`. `threads` = 0 uses std::thread::hardware_concurrency().
image_dataset load_image_folder(const std::filesystem::path& dir, int resolution, int channels,
                                bool require_captions, skipped_files& skipped, int threads = 0);

// One image of a folder with its caption file, if it has one.
struct image_folder_entry {
  std::filesystem::path image;
  std::optional<std::filesystem::path> caption;
};

// A file left out: which one, under which count, and why (logged as "<file>: <why>").
struct image_folder_skip {
  std::filesystem::path file;
  int64_t skipped_files::*counter;
  std::string why;
};

// What a folder holds, before anything is decoded: the images (sorted by path) and the files
// passed over (captions without an image; images without a caption when captions are required).
struct image_folder_scan {
  std::vector<image_folder_entry> images;
  std::vector<image_folder_skip> skipped;
};

// Scans `dir` as load_image_folder does. Throws image_folder_error for a missing folder.
image_folder_scan scan_image_folder(const std::filesystem::path& dir, bool require_captions);

// Reads and cleans a caption file into `caption`; the reason it cannot be used otherwise.
std::optional<image_folder_skip> read_caption_file(const std::filesystem::path& file,
                                                   std::string& caption);

// Counts the skips and logs them in path order (one warning each); returns the counts.
skipped_files count_and_log_skips(std::vector<image_folder_skip> skips);

// Caption text as stored: without a UTF-8 byte-order mark and surrounding ASCII whitespace.
// Returns false (and leaves `out` alone) if `bytes` is not valid UTF-8.
bool clean_caption(std::string_view bytes, std::string& out);

} // namespace ddactor
