// Lets the tests build with Catch2 v2 (one header, Debian's `catch2`) or v3
// (headers + library, e.g. Ubuntu 24.04 or Homebrew), plus small helpers
// shared by every chapter's tests.
#pragma once

#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_test_macros.hpp>
#else
#include <catch2/catch.hpp>
#endif

#include <cmath>
#include <string>

// Passes when `expr` throws a std::exception whose message contains every
// one of the given fragments (e.g. the op's name and both shapes).
#define REQUIRE_THROWS_MENTIONING(expr, ...)                                   \
  do {                                                                         \
    bool attend_threw_ = false;                                                \
    try {                                                                      \
      (void)(expr);                                                            \
    } catch (const std::exception& attend_error_) {                            \
      attend_threw_ = true;                                                    \
      const std::string attend_message_ = attend_error_.what();                \
      INFO("message: " << attend_message_);                                    \
      for (const char* attend_fragment_ : {__VA_ARGS__}) {                     \
        INFO("expected fragment: " << attend_fragment_);                       \
        CHECK(attend_message_.find(attend_fragment_) != std::string::npos);    \
      }                                                                        \
    }                                                                          \
    INFO("expression: " #expr);                                                \
    REQUIRE(attend_threw_);                                                    \
  } while (false)

// |actual - expected| <= tol, reporting both values when it fails.
#define CHECK_NEAR(actual, expected, tol)                                        \
  do {                                                                           \
    const double near_actual_ = static_cast<double>(actual);                     \
    const double near_expected_ = static_cast<double>(expected);                 \
    INFO(#actual " = " << near_actual_ << ", expected " << near_expected_);      \
    CHECK(std::fabs(near_actual_ - near_expected_) <= (tol));                    \
  } while (false)

namespace attend_test {

// True when `fragment` occurs somewhere in `text`.
inline bool contains(const std::string& text, const std::string& fragment) {
  return text.find(fragment) != std::string::npos;
}

}  // namespace attend_test
