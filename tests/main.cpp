// The test runner's entry point (Catch2 v2 or v3). Run one chapter with a tag:
//   build/tests/attend_tests "[ch02]"     (or: make test CH=02)
#if __has_include(<catch2/catch_session.hpp>)
#include <catch2/catch_session.hpp>
#else
// GCC 12 with -O1 and the sanitizers warns "maybe-uninitialized" inside the
// standard library's <regex>, which Catch2 v2 includes: not our code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

int main(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }
