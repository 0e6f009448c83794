# BALLISTICS_FUZZ=ON: a clang build of only what the libFuzzer harnesses in
# tests/fuzz/ reach (core, io, preprocess, correlate, index, store, ingest and
# the generated protobuf messages), not the server, CLI, tests or benchmarks,
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

add_subdirectory(proto)
foreach(stage core io preprocess correlate index store ingest)
  add_subdirectory(src/${stage})
endforeach()
enable_testing()
add_subdirectory(tests/fuzz)
