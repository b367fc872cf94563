// Scanning the folder (single-threaded, sorted), decoding and fitting the images (a pool of
// std::threads over an atomic work index, each writing its own slot), then assembling,
// logging and counting in path order so that nothing depends on the threads' timing.
#include "runtime/image_folder_dataset.hpp"

#include "runtime/image_io.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <optional>
#include <thread>

namespace ddactor {

namespace {

constexpr uintmax_t max_caption_bytes = uintmax_t{1} << 20;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool is_image_extension(const std::string& ext) {
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

bool is_hidden(const std::filesystem::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int extra;
    uint32_t code, minimum;
    if ((c >> 5) == 0x6) {
      extra = 1, code = c & 0x1f, minimum = 0x80;
    } else if ((c >> 4) == 0xe) {
      extra = 2, code = c & 0x0f, minimum = 0x800;
    } else if ((c >> 3) == 0x1e) {
      extra = 3, code = c & 0x07, minimum = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i <= static_cast<size_t>(extra)) return false;
    for (int k = 1; k <= extra; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xc0) != 0x80) return false;
      code = (code << 6) | (b & 0x3f);
    }
    if (code < minimum || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    i += static_cast<size_t>(extra) + 1;
  }
  return true;
}

using skip_record = image_folder_skip;
using work_item = image_folder_entry;

struct work_result {
  bool loaded = false;
  std::string caption;
  std::optional<skip_record> skip;
};

work_result skip_result(std::filesystem::path file, int64_t skipped_files::*counter, std::string why) {
  return {false, {}, skip_record{std::move(file), counter, std::move(why)}};
}

// Decodes and fits one image (into `pixels`) and reads its caption; never throws.
work_result load_one(const work_item& item, int resolution, int channels, uint8_t* pixels) {
  work_result result;
  try {
    if (item.caption)
      if (auto skip = read_caption_file(*item.caption, result.caption))
        return {false, {}, std::move(skip)};
    std::vector<uint8_t> bytes;
    try {
      bytes = read_file_bytes(item.image);
    } catch (const image_error& e) {
      return skip_result(item.image, &skipped_files::unreadable,
                     "cannot be read (" + e.reason() + ")");
    }
    decoded_image image;
    try {
      image = decode_image_bytes(bytes, item.image.string());
    } catch (const image_error& e) {
      // Content that does not even start like a PNG or JPEG is another kind of file named as
      // an image; a real PNG/JPEG that fails is damaged.
      if (detect_image_format(bytes) == image_format::other)
        return skip_result(item.image, &skipped_files::wrong_format, "not a PNG or JPEG image");
      return skip_result(item.image, &skipped_files::unreadable,
                     "damaged image (" + e.reason() + ")");
    }
    const std::vector<uint8_t> fitted = fit_image(image, resolution, channels);
    std::memcpy(pixels, fitted.data(), fitted.size());
    result.loaded = true;
  } catch (const std::exception& e) {
    return skip_result(item.image, &skipped_files::unreadable, e.what());
  }
  return result;
}

} // namespace

bool clean_caption(std::string_view bytes, std::string& out) {
  if (!valid_utf8(bytes)) return false;
  if (bytes.substr(0, 3) == "\xef\xbb\xbf") bytes.remove_prefix(3);
  constexpr std::string_view whitespace = " \t\r\n\f\v";
  const size_t begin = bytes.find_first_not_of(whitespace);
  if (begin == std::string_view::npos) {
    out.clear();
    return true;
  }
  const size_t end = bytes.find_last_not_of(whitespace);
  out.assign(bytes.substr(begin, end - begin + 1));
  return true;
}

image_folder_scan scan_image_folder(const std::filesystem::path& dir, bool require_captions) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::is_directory(dir, error))
    throw image_folder_error("image folder " + dir.string() + " does not exist or is no folder");
  // Scan. Keys are paths without extension, so `a/cat.png` and `a/cat.txt` meet.
  struct stem_files {
    std::vector<fs::path> images;
    std::vector<fs::path> captions;
  };
  std::map<std::string, stem_files> stems;
  std::vector<skip_record> skips;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, error);
  if (error)
    throw image_folder_error("image folder " + dir.string() + " cannot be listed: " +
                             error.message());
  for (; it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (error) {
      spdlog::warn("image folder {}: listing stopped early: {}", dir.string(), error.message());
      break;
    }
    const fs::path& path = it->path();
    if (is_hidden(path)) {
      if (it->is_directory(error)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(error)) continue;
    const std::string ext = lower(path.extension().string());
    const bool image = is_image_extension(ext);
    if (!image && ext != ".txt") continue;
    auto stem = path;
    stem.replace_extension();
    auto& files = stems[stem.string()];
    (image ? files.images : files.captions).push_back(path);
  }

  std::vector<work_item> work;
  for (auto& [stem, files] : stems) {
    std::sort(files.images.begin(), files.images.end());
    std::sort(files.captions.begin(), files.captions.end());
    const std::optional<fs::path> caption =
        files.captions.empty() ? std::nullopt : std::optional<fs::path>(files.captions.front());
    if (files.images.empty()) {
      for (const auto& c : files.captions)
        skips.push_back({c, &skipped_files::missing_image, "a caption without an image"});
      continue;
    }
    for (const auto& image : files.images) {
      if (require_captions && !caption) {
        skips.push_back({image, &skipped_files::missing_caption,
                         "no caption (" + fs::path(stem).filename().string() + ".txt is missing)"});
        continue;
      }
      work.push_back({image, caption});
    }
  }
  // The map orders by stem; the data set is in order of the image paths themselves.
  std::sort(work.begin(), work.end(),
            [](const work_item& a, const work_item& b) { return a.image < b.image; });

  return {std::move(work), std::move(skips)};
}

std::optional<image_folder_skip> read_caption_file(const std::filesystem::path& file,
                                                   std::string& caption) {
  std::error_code error;
  const auto size = std::filesystem::file_size(file, error);
  if (error)
    return image_folder_skip{file, &skipped_files::unreadable,
                             "caption cannot be read (" + error.message() + ")"};
  if (size > max_caption_bytes)
    return image_folder_skip{file, &skipped_files::wrong_format,
                             "caption of " + std::to_string(size) + " bytes is too long"};
  std::vector<uint8_t> bytes;
  try {
    bytes = read_file_bytes(file);
  } catch (const image_error& e) {
    return image_folder_skip{file, &skipped_files::unreadable,
                             "caption cannot be read (" + e.reason() + ")"};
  }
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (!clean_caption(text, caption))
    return image_folder_skip{file, &skipped_files::wrong_format, "caption is not valid UTF-8"};
  return std::nullopt;
}

skipped_files count_and_log_skips(std::vector<image_folder_skip> skips) {
  // Count and log in path order, so the log reads the same on every run.
  std::stable_sort(skips.begin(), skips.end(),
                   [](const skip_record& a, const skip_record& b) { return a.file < b.file; });
  skipped_files skipped;
  for (const auto& skip : skips) {
    ++(skipped.*skip.counter);
    std::string line = skip.file.string() + ": " + skip.why;
    spdlog::warn("image folder: skipping {}", line);
    skipped.add_example(std::move(line));
  }
  return skipped;
}

image_dataset load_image_folder(const std::filesystem::path& dir, int resolution, int channels,
                                bool require_captions, skipped_files& total_skipped,
                                int threads) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::is_directory(dir, error))
    throw image_folder_error("image folder " + dir.string() + " does not exist or is no folder");
  if (channels != 1 && channels != 3)
    throw image_folder_error("image folder " + dir.string() + ": " + std::to_string(channels) +
                             " channels requested, only 1 or 3 are supported");
  if (resolution < 1)
    throw image_folder_error("image folder " + dir.string() + ": resolution " +
                             std::to_string(resolution) + " is not positive");

  // Named references, not a structured binding: the decoding threads' lambda captures them.
  auto scan = scan_image_folder(dir, require_captions);
  auto& work = scan.images;
  auto& skips = scan.skipped;

  // Decode in parallel; slot i of `results` and of `pixels` belongs to work[i] alone.
  const size_t image_size = static_cast<size_t>(channels) * resolution * resolution;
  std::vector<uint8_t> pixels(work.size() * image_size);
  std::vector<work_result> results(work.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next.fetch_add(1); i < work.size(); i = next.fetch_add(1))
      results[i] = load_one(work[i], resolution, channels, pixels.data() + i * image_size);
  };
  unsigned pool = threads > 0 ? static_cast<unsigned>(threads) : std::thread::hardware_concurrency();
  pool = std::clamp<unsigned>(pool, 1, static_cast<unsigned>(std::max<size_t>(work.size(), 1)));
  {
    std::vector<std::jthread> running;
    for (unsigned t = 1; t < pool; ++t) running.emplace_back(worker);
    worker();
  }

  // Assemble in order, moving kept images down over the skipped ones.
  image_dataset data;
  data.channels = channels;
  data.height = resolution;
  data.width = resolution;
  bool any_caption = false;
  size_t kept = 0;
  for (size_t i = 0; i < work.size(); ++i) {
    work_result& r = results[i];
    if (!r.loaded) {
      skips.push_back(std::move(*r.skip));
      continue;
    }
    if (kept != i)
      std::memmove(pixels.data() + kept * image_size, pixels.data() + i * image_size, image_size);
    any_caption = any_caption || work[i].caption.has_value();
    data.captions.push_back(std::move(r.caption));
    ++kept;
  }
  pixels.resize(kept * image_size);
  pixels.shrink_to_fit();
  data.pixels = std::move(pixels);
  data.count = static_cast<int64_t>(kept);
  if (!any_caption) data.captions.clear();

  const skipped_files skipped = count_and_log_skips(std::move(skips));
  spdlog::info("image folder {}: {} images loaded at {}x{}x{}; skipped {} unreadable, {} wrong "
               "format, {} without caption, {} captions without image",
               dir.string(), kept, channels, resolution, resolution, skipped.unreadable,
               skipped.wrong_format, skipped.missing_caption, skipped.missing_image);
  total_skipped.add(skipped);
  if (kept == 0)
    throw image_folder_error("image folder " + dir.string() + " has no usable image (" +
                             std::to_string(skipped.total()) + " files skipped)");
  data.check_consistent();
  return data;
}

} // namespace ddactor
