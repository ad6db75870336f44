# The one way a component becomes a target (one helper per kind, so every target is made alike):
# the dependency graph is the DEPS lists, nothing else.
#
#   imlog_library(NAME engine SRCS a.cpp b.cpp DEPS imlog::core PUBLIC_DEPS RocksDB::rocksdb)
#   imlog_test(NAME engine_test LABEL unit SRCS x_test.cpp DEPS imlog::engine)

set(IMLOG_WARNINGS -Wall -Wextra -Wpedantic -Wno-unused-parameter)

function(imlog_library)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS;PUBLIC_DEPS" ${ARGN})
  add_library(imlog_${A_NAME} STATIC ${A_SRCS})
  add_library(imlog::${A_NAME} ALIAS imlog_${A_NAME})
  target_include_directories(imlog_${A_NAME} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_link_libraries(imlog_${A_NAME} PUBLIC ${A_PUBLIC_DEPS} PRIVATE ${A_DEPS})
  target_compile_options(imlog_${A_NAME} PRIVATE ${IMLOG_WARNINGS})
endfunction()

function(imlog_executable)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${A_NAME} ${A_SRCS} ${IMLOG_SANITIZER_SRCS})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS})
  target_compile_options(${A_NAME} PRIVATE ${IMLOG_WARNINGS})
endfunction()

# A GoogleTest binary registered with ctest under a label (unit, integration, e2e).
function(imlog_test)
  cmake_parse_arguments(A "" "NAME;LABEL;TIMEOUT" "SRCS;DEPS" ${ARGN})
  add_executable(${A_NAME} ${A_SRCS} ${IMLOG_SANITIZER_SRCS})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS} GTest::gtest GTest::gmock)
  target_compile_options(${A_NAME} PRIVATE ${IMLOG_WARNINGS})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 600)
  endif()
  include(GoogleTest)
  # No test is ever skipped: GoogleTest skips every test of a fixture whose SetUpTestSuite()
  # failed, and CMake's default regex would report those to ctest as skipped, not failed.
  gtest_discover_tests(${A_NAME}
    PROPERTIES LABELS ${A_LABEL} TIMEOUT ${A_TIMEOUT}
      SKIP_REGULAR_EXPRESSION "imlog-tests-are-never-skipped"
      FAIL_REGULAR_EXPRESSION "\\[  SKIPPED \\]"
    DISCOVERY_TIMEOUT 60)
endfunction()
