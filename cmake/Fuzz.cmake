# BALLISTICS_FUZZ=ON: a clang build of only what the libFuzzer harnesses in
# tests/fuzz/ link (io, preprocess, ingest, index and what they depend on, the
# generated protobuf messages), not the server, CLI, tests or benchmarks,
# so that CI builds it in a few minutes. Everything is compiled with coverage
# instrumentation for libFuzzer plus ASan and UBSan; the harnesses link the
# libFuzzer driver. Run: tests/fuzz/run_fuzz.sh (docs/reliability.md).
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "BALLISTICS_FUZZ needs clang (Debian package clang): "
                      "cmake -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DBALLISTICS_FUZZ=ON ...")
endif()
if(NOT BALLISTICS_SANITIZE)
  set(BALLISTICS_FUZZ_SANITIZERS address,undefined)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined -fno-sanitize-recover=all)
endif()
add_compile_options(-fsanitize=fuzzer-no-link)

# Every library is defined, but EXCLUDE_FROM_ALL: only what a harness links is built.
add_subdirectory(proto EXCLUDE_FROM_ALL)
add_subdirectory(src EXCLUDE_FROM_ALL)
enable_testing()
add_subdirectory(tests/fuzz)
