# libFuzzer harnesses for medseg's parsers of untrusted files (tests/fuzz/README.md).
# Included from the top-level CMakeLists.txt after the library target is defined:
#   include(tests/fuzz/fuzz.cmake)
# With -DMEDSEG_FUZZ=ON (clang only) it adds one executable per target, fuzz_<target>, linked with
# -fsanitize=fuzzer,address,undefined against a coverage-instrumented copy of the library
# (medseg_fuzzlib; the normal medseg_static is left as it is). Off by default: CI compilers need
# not have libFuzzer. The replay of the stored corpus (tests/test_fuzz_replay.c) is an ordinary
# test and does not depend on this option.
option(MEDSEG_FUZZ "Build the libFuzzer harnesses in tests/fuzz (needs clang with libFuzzer)" OFF)

set(MEDSEG_FUZZ_TARGETS image npy safetensors pickle pth onnx npm_tarball)
list(APPEND MEDSEG_FUZZ_TARGETS volume)  # NIfTI, NRRD, npz readers (tests/fuzz/fuzz_volume.c)
list(APPEND MEDSEG_FUZZ_TARGETS dicom)  # DICOM reader: parser, codecs, geometry (tests/fuzz/fuzz_dicom.c)

if(MEDSEG_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "MEDSEG_FUZZ needs clang (configure with -DCMAKE_C_COMPILER=clang); "
                        "the compiler is ${CMAKE_C_COMPILER_ID}")
  endif()
  include(CheckCSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer,address,undefined")
  set(CMAKE_REQUIRED_LINK_OPTIONS "-fsanitize=fuzzer,address,undefined")
  check_c_source_compiles("
    #include <stddef.h>
    #include <stdint.h>
    int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }"
    MEDSEG_HAVE_LIBFUZZER)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(NOT MEDSEG_HAVE_LIBFUZZER)
    message(FATAL_ERROR "MEDSEG_FUZZ: ${CMAKE_C_COMPILER} cannot link -fsanitize=fuzzer "
                        "(Debian: apt-get install clang libclang-rt-14-dev)")
  endif()

  set(MEDSEG_FUZZ_SAN -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1)
  # The library again, with coverage feedback (fuzzer-no-link) and the sanitizers.
  add_library(medseg_fuzzlib STATIC EXCLUDE_FROM_ALL ${MEDSEG_LIB_SOURCES})
  target_include_directories(medseg_fuzzlib PUBLIC ${CMAKE_SOURCE_DIR}/include PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(medseg_fuzzlib PRIVATE ${MEDSEG_FUZZ_SAN} -fsanitize=fuzzer-no-link)
  target_include_directories(medseg_fuzzlib PRIVATE ${NIFTI_INCLUDE_DIR})
  target_link_libraries(medseg_fuzzlib PUBLIC PkgConfig::DEPS ${NIFTI2_LIBRARY} ${ZNZ_LIBRARY} DNNL::dnnl Threads::Threads m)

  add_custom_target(fuzz)
  foreach(t ${MEDSEG_FUZZ_TARGETS})
    add_executable(fuzz_${t} EXCLUDE_FROM_ALL ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_${t}.c)
    target_include_directories(fuzz_${t} PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR}/tests/fuzz)
    target_compile_options(fuzz_${t} PRIVATE ${MEDSEG_FUZZ_SAN} -fsanitize=fuzzer)
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_${t} PRIVATE medseg_fuzzlib)
    add_dependencies(fuzz fuzz_${t})
  endforeach()
  message(STATUS "MEDSEG_FUZZ: `make fuzz` builds fuzz_{${MEDSEG_FUZZ_TARGETS}}")
endif()
