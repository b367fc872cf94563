# Every dependency comes from Debian 12's packages (see README.md for the list).
find_package(Threads REQUIRED)
find_package(Torch REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(CLI11 REQUIRED)
find_package(ZLIB REQUIRED)
find_package(OpenSSL REQUIRED)  # TLS for the HTTP endpoints (runtime/tls_server_context)

# CAF 0.17.6 ships no CMake config file: wrap the libraries in one imported target.
find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
find_library(CAF_CORE_LIBRARY caf_core REQUIRED)
find_library(CAF_IO_LIBRARY caf_io REQUIRED)
add_library(ddactor::caf INTERFACE IMPORTED)
target_include_directories(ddactor::caf INTERFACE ${CAF_INCLUDE_DIR})
target_link_libraries(ddactor::caf INTERFACE ${CAF_IO_LIBRARY} ${CAF_CORE_LIBRARY} Threads::Threads)

# stb (libstb-dev): image decoding (PNG, JPEG) and PNG writing, compiled into libstb.
find_path(STB_INCLUDE_DIR stb/stb_image.h REQUIRED)
find_library(STB_LIBRARY stb REQUIRED)
add_library(ddactor::stb INTERFACE IMPORTED)
target_include_directories(ddactor::stb INTERFACE ${STB_INCLUDE_DIR})
target_link_libraries(ddactor::stb INTERFACE ${STB_LIBRARY})

find_path(ZSTD_INCLUDE_DIR zstd.h REQUIRED)
find_library(ZSTD_LIBRARY zstd REQUIRED)
add_library(ddactor::zstd INTERFACE IMPORTED)
target_include_directories(ddactor::zstd INTERFACE ${ZSTD_INCLUDE_DIR})
target_link_libraries(ddactor::zstd INTERFACE ${ZSTD_LIBRARY})

# libsodium (libsodium-dev): peer keys, the link handshake and sealed frames (runtime/secure).
find_path(SODIUM_INCLUDE_DIR sodium.h REQUIRED)
find_library(SODIUM_LIBRARY sodium REQUIRED)
add_library(ddactor::sodium INTERFACE IMPORTED)
target_include_directories(ddactor::sodium INTERFACE ${SODIUM_INCLUDE_DIR})
target_link_libraries(ddactor::sodium INTERFACE ${SODIUM_LIBRARY})

# cpp-httplib (libcpp-httplib-dev) is a compiled library in Debian, built with TLS, zlib and
# brotli support: code that includes httplib.h must see the same switches (its cpp-httplib.pc
# says so), or the classes it compiles differ from the library's (a double free, seen here).
find_path(HTTPLIB_INCLUDE_DIR httplib.h REQUIRED)
find_library(HTTPLIB_LIBRARY cpp-httplib REQUIRED)
add_library(ddactor::httplib INTERFACE IMPORTED)
target_include_directories(ddactor::httplib INTERFACE ${HTTPLIB_INCLUDE_DIR})
target_compile_definitions(ddactor::httplib INTERFACE
  CPPHTTPLIB_OPENSSL_SUPPORT CPPHTTPLIB_ZLIB_SUPPORT CPPHTTPLIB_BROTLI_SUPPORT)
target_link_libraries(ddactor::httplib INTERFACE ${HTTPLIB_LIBRARY} Threads::Threads)

# Gloo (libgloo-dev): LibTorch's c10d ProcessGroupGloo, which reduces the trainers of one node
# (models/node_reducer), is compiled into libtorch_cpu, but its header includes Gloo's headers.
find_path(GLOO_INCLUDE_DIR gloo/context.h REQUIRED)
find_library(GLOO_LIBRARY gloo REQUIRED)
add_library(ddactor::gloo INTERFACE IMPORTED)
target_include_directories(ddactor::gloo INTERFACE ${GLOO_INCLUDE_DIR})
target_link_libraries(ddactor::gloo INTERFACE ${GLOO_LIBRARY})
