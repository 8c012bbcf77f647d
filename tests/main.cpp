// The test runner's entry point (Catch2 v2 or v3). Run one chapter with a tag:
//   build/tests/attend_tests "[ch02]"     (or: make test CH=02)
#if __has_include(<catch2/catch_session.hpp>)
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

int main(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }
