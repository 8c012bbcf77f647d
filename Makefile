# Attend's build: one static library, the tutorials and the Catch2 tests.
#
#   make                 build everything into build/ (-O2, OpenMP, warnings are errors)
#   make test [CH=02]    build and run every test, or only chapter 02's ([ch02])
#   make debug           build everything with -O0 -g into build/debug/ (for gdb)
#   make sanitize        run every test under AddressSanitizer + UBSan (build/sanitize/)
#   make CUDA=1 [test]   the same with the CUDA kernels (src/kernels/*.cu) compiled by
#                        nvcc for a real GPU, into build/cuda/ (default: the emulator)
#   make train [DEVICE=cuda]  train the toy-French model and show it (cuda: with CUDA=1)
#   make tutorials       build the tutorial programs (build/tutorials/NN-name)
#   make run-tutorials   build and run every tutorial
#   make exercise CH=05  a learner's copy with chapter 05's exercises to write
#                        (EXERCISE_DIR, default ../<this folder>-exercises);
#                        make exercises: every chapter's; RESET=1 overwrites
#   make check-exercises [CH=05]  every exercise is graded by its chapter's tests
#   make compile_commands  compile_commands.json for clangd / VS Code / CLion
#   make check-gdb       the gdb pretty-printer (tests/gdb/) prints what it should
#   make clean
#
# Header dependencies are tracked (-MMD -MP), so only what changed is rebuilt.

CXX      ?= g++   # GNU make's default; `make CXX=clang++` overrides
ifeq ($(CUDA),1)
BUILD    ?= build/cuda
else
BUILD    ?= build
endif
OPT      ?= -O2
SANFLAGS ?=
WARN     := -Wall -Wextra -Wpedantic -Werror
# A learner's copy (`make exercise` writes EXERCISES.md at its top) has bodies
# that are one `throw` until written: their parameters and helpers are unused
# meanwhile, which is not an error there.
ifneq ($(wildcard EXERCISES.md),)
WARN     += -Wno-unused -Wno-unused-parameter
endif
# -fno-math-errno: Attend never reads errno after a math function, and
# without this flag std::sqrt keeps a library call for negative inputs
# (to set errno) that stops a loop from being vectorized (Adam's update).
# It changes no result.
MATH     := -fno-math-errno
CXXFLAGS_ALL = -std=c++20 $(OPT) $(MATH) -fopenmp $(WARN) $(SANFLAGS) -Iinclude -MMD -MP $(CUDA_DEFINES) $(EXTRA_CXXFLAGS) $(CXXFLAGS)
LDFLAGS_ALL  = -fopenmp $(SANFLAGS) $(LDFLAGS) $(CUDA_LIBS) $(EXTRA_LIBS)

# CUDA kernels (src/kernels/*.cu, chapter 11). By default the host compiler
# builds them as C++ against the emulator (attend/cuda_emulator.hpp), so
# nothing needs CUDA. With CUDA=1, nvcc compiles them for sm_90 (H100) plus
# PTX that newer GPUs compile when they load it, and the CUDA runtime is linked.
ifeq ($(CUDA),1)
NVCC      ?= $(or $(shell command -v nvcc 2>/dev/null),/usr/local/cuda/bin/nvcc)
CUDA_HOME ?= $(abspath $(dir $(NVCC))..)
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS_ALL = -std=c++20 $(OPT) $(CUDA_ARCH) -ccbin $(firstword $(CXX)) -Iinclude -DATTEND_CUDA \
  -Werror all-warnings -Xcompiler -fopenmp,-Wall,-Wextra,-Werror -MMD -MP $(NVCCFLAGS)
CUDA_DEFINES = -DATTEND_CUDA
CUDA_LIBS = -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart
endif

# src/cli/ holds the `attend` program's main(); everything else is the library.
# OpenMP threads that wait for work spin by default. On a machine with as many
# threads as cores and anything else running, a spinning thread takes the
# time slice its partner needs, and each parallel region can cost
# milliseconds instead of microseconds (docs/10-speed.md, "OpenMP's wait
# policy", measures both policies on an idle and on a busy machine). Every
# program run by this Makefile waits passively unless you say otherwise.
export OMP_WAIT_POLICY ?= passive

LIB_SRCS  := $(sort $(shell find src -name '*.cpp' -not -path 'src/cli/*'))
CU_SRCS   := $(sort $(shell find src -name '*.cu'))
LIB_OBJS  := $(LIB_SRCS:%.cpp=$(BUILD)/obj/%.o) $(CU_SRCS:%.cu=$(BUILD)/obj/%.cu.o)
LIB       := $(BUILD)/libattend.a

CLI_SRCS  := $(sort $(wildcard src/cli/*.cpp))
CLI_OBJS  := $(CLI_SRCS:%.cpp=$(BUILD)/obj/%.o)
CLI       := $(BUILD)/attend

TUTORIAL_DIRS := $(sort $(patsubst %/main.cpp,%,$(wildcard tutorials/*/main.cpp)))
TUTORIALS     := $(TUTORIAL_DIRS:tutorials/%=$(BUILD)/tutorials/%)

TEST_SRCS ?= $(sort $(wildcard tests/*.cpp))
TEST_CU_SRCS ?= $(sort $(wildcard tests/*.cu))  # deliberately broken kernels (chapter 11)
TEST_OBJS := $(TEST_SRCS:%.cpp=$(BUILD)/obj/%.o) $(TEST_CU_SRCS:%.cu=$(BUILD)/obj/%.cu.o)
TEST_BIN  := $(BUILD)/tests/attend_tests

# Catch2: v2 is one header (catch2/catch.hpp, Debian's `catch2` package);
# v3 is headers plus a library (-lCatch2). tests/catch.hpp picks whichever is
# installed; CATCH_CFLAGS / CATCH_LIBS may point elsewhere (e.g. Homebrew).
CATCH_CFLAGS ?= $(shell pkg-config --cflags catch2 2>/dev/null)
HASH := \#
catch_header_found = $(shell printf '$(HASH)include <catch2/$(1)>\n' | $(CXX) -std=c++20 $(CATCH_CFLAGS) -E -x c++ - >/dev/null 2>&1 && echo yes)
CATCH_VERSION := $(if $(call catch_header_found,catch_test_macros.hpp),3,$(if $(call catch_header_found,catch.hpp),2))
ifeq ($(CATCH_VERSION),3)
CATCH_LIBS ?= $(or $(shell pkg-config --libs catch2 2>/dev/null),-lCatch2)
endif

.PHONY: all lib cli tutorials tests test debug sanitize run-tutorials clean check-catch2 train \
  exercise exercises check-exercises compile_commands check-gdb
# Keep every object file make builds on the way (a tutorial's main.o is an
# intermediate file to make, which would delete it and rebuild it next time).
.SECONDARY:
.DEFAULT_GOAL := all

all: lib cli tutorials $(if $(CATCH_VERSION),tests)
lib: $(LIB)
cli: $(CLI)
tutorials: $(TUTORIALS)
tests: check-catch2 $(TEST_BIN) $(CLI)  # the CLI tests run the attend program

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS_ALL) $(if $(filter tests/%,$<),$(CATCH_CFLAGS) -DATTEND_SOURCE_DIR='"$(CURDIR)"' -DATTEND_PROGRAM='"$(abspath $(CLI))"') -c $< -o $@

# A .cu file: nvcc with CUDA=1, else the host compiler as C++ (the emulator).
$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
ifeq ($(CUDA),1)
	$(NVCC) $(NVCCFLAGS_ALL) -c $< -o $@
else
	$(CXX) $(CXXFLAGS_ALL) -x c++ -c $< -o $@
endif

# The chapter-11 tutorial measures cuBLAS beside the ladder in the CUDA build
# (the benchmark's yardstick only: the library never uses cuBLAS).
ifeq ($(CUDA),1)
$(BUILD)/obj/tutorials/11-cuda/main.o: EXTRA_CXXFLAGS = -isystem $(CUDA_HOME)/include
$(BUILD)/tutorials/11-cuda: EXTRA_LIBS = -lcublas
endif

$(CLI): $(CLI_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(CLI_OBJS) $(LIB) $(LDFLAGS_ALL) -o $@

$(BUILD)/tutorials/%: $(BUILD)/obj/tutorials/%/main.o $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $< $(LIB) $(LDFLAGS_ALL) -o $@

$(TEST_BIN): $(TEST_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(TEST_OBJS) $(LIB) $(CATCH_LIBS) $(LDFLAGS_ALL) -o $@

check-catch2:
	@if [ -z "$(CATCH_VERSION)" ]; then \
	  echo "Catch2 is not installed: run 'sudo apt-get install catch2' (Debian/Ubuntu) or 'brew install catch2' (macOS), then 'make test' again."; \
	  exit 1; fi

# Build on every core unless the caller already chose (make -jN ...).
NPROC := $(shell nproc 2>/dev/null || echo 2)
PARALLEL = $(if $(findstring -j,$(MAKEFLAGS)),,-j$(NPROC))

# `make test CH=02` runs only the test cases tagged [ch02].
test:
	@$(MAKE) --no-print-directory $(PARALLEL) tests
	$(TEST_BIN) $(if $(CH),"[ch$(CH)]")

# `make train`: train the default toy-French model, then show what it learned.
# `make CUDA=1 train DEVICE=cuda`: the same on the GPU (train, translate and eval
# get --device cuda; chapter 11, docs/11-cuda.md, "Training on the device").
DEVICE_FLAGS = $(if $(DEVICE),--device $(DEVICE))
TRAIN_MODEL := $(BUILD)/toy-french.safetensors
TRAIN_PLOT  := $(BUILD)/toy-french-loss.svg
TRAIN_TEST  := $(BUILD)/toy-french-test.tsv
TRAIN_FLAGS ?= --steps 1200
train:
	@$(MAKE) --no-print-directory $(PARALLEL) lib cli
	$(CLI) train --task toy-french $(TRAIN_FLAGS) $(DEVICE_FLAGS) --out $(TRAIN_MODEL) --plot $(TRAIN_PLOT)
	@echo
	@echo "Sample translations (the bank is a 'rive' only when a river is in the sentence):"
	@printf '%s\n' "the small cat sees the red car ." "we eat the bank near the river ." \
	  "the boats do not follow the old bank near the river ." "she likes the green banks with a happy teacher ." \
	  > $(BUILD)/toy-french-samples.txt
	@$(CLI) translate --model $(TRAIN_MODEL) $(DEVICE_FLAGS) < $(BUILD)/toy-french-samples.txt > $(BUILD)/toy-french-samples.out
	@paste $(BUILD)/toy-french-samples.txt $(BUILD)/toy-french-samples.out | sed 's/^/  /; s/\t/\n    -> /'
	@echo
	@echo "Test split (1000 sentences never seen in training):"
	@$(CLI) data --task toy-french --split test --n 1000 --seed 2 > $(TRAIN_TEST)
	@$(CLI) eval --model $(TRAIN_MODEL) --data $(TRAIN_TEST) $(DEVICE_FLAGS)
	@echo
	@echo "Model: $(TRAIN_MODEL)   loss plot: $(TRAIN_PLOT)"
	@echo "Translate your own: $(CLI) translate --model $(TRAIN_MODEL) \"the dog sees a boat .\""

# Tutorials run inside build/tutorial-output/, where they write their pictures and files.
run-tutorials: tutorials
	@mkdir -p $(BUILD)/tutorial-output
	@set -e; for t in $(abspath $(TUTORIALS)); do echo "=== $$t"; (cd $(BUILD)/tutorial-output && $$t > /dev/null); done; echo "all tutorials ran"

debug:
	$(MAKE) all BUILD=build/debug OPT="-O0 -g"

sanitize:
	$(MAKE) test BUILD=build/sanitize OPT="-O1 -g -fno-omit-frame-pointer" \
	  SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  CH="$(CH)"

# --- exercises (README, "Exercises") ---
# `make exercise CH=05` writes a copy of the repository to EXERCISE_DIR in
# which chapter 05's marked regions throw "exercise 5.N: ..."; there, `make
# test CH=05` names the exercises still to write. RESET=1 overwrites an
# existing copy (the files that differ from a fresh one: answers are lost).
EXERCISE_DIR ?= ../$(notdir $(CURDIR))-exercises
exercise:
	@if [ -z "$(CH)" ]; then echo "usage: make exercise CH=05 [EXERCISE_DIR=...] [RESET=1]; make exercises for every chapter"; exit 2; fi
	@sh tests/exercises/make_copy.sh $(if $(RESET),--force) "$(EXERCISE_DIR)" $(CH)
	@echo "next: cd $(EXERCISE_DIR) && make test CH=$(CH)"
exercises:
	@sh tests/exercises/make_copy.sh $(if $(RESET),--force) "$(EXERCISE_DIR)" all
	@echo "next: cd $(EXERCISE_DIR) && make test CH=01"

# Proves that every exercise is graded: with a chapter's exercises stripped
# the copy compiles and the chapter's tests fail, naming each exercise
# (tests/exercises/check.sh; a copy in build/exercise-check, rebuilt
# incrementally chapter after chapter: 7 minutes for all 43 exercises on 2
# busy cores once the copy is built, plus one full build the first time).
check-exercises:
	@sh tests/exercises/check.sh "$(CH)"

# --- editors and debuggers ---
# compile_commands.json: how make compiles every file (the same flags), for
# clangd, VS Code's C++ extension or CLion to jump to definitions.
comma := ,
json_string = "$(subst ",\",$(1))"
json_args = $(foreach a,$(filter-out -MMD -MP,$(1)),$(call json_string,$(a))$(comma))
compile_command = {"directory": "$(CURDIR)", "file": "$(CURDIR)/$(1)", "arguments": [$(call json_args,$(strip $(CXX)) $(CXXFLAGS_ALL) $(2)) "-c", "$(1)", "-o", "$(BUILD)/obj/$(if $(filter %.cu,$(1)),$(1),$(basename $(1))).o"]}
TEST_FLAGS_JSON = $(CATCH_CFLAGS) -DATTEND_SOURCE_DIR="$(CURDIR)" -DATTEND_PROGRAM="$(abspath $(CLI))"
define newline


endef
compile_commands:
	$(file >compile_commands.json,[$(foreach f,$(LIB_SRCS) $(CLI_SRCS) $(wildcard tutorials/*/main.cpp),$(newline)$(call compile_command,$(f)),)$(foreach f,$(CU_SRCS) $(TEST_CU_SRCS),$(newline)$(call compile_command,$(f),-x c++),)$(foreach f,$(TEST_SRCS),$(newline)$(call compile_command,$(f),$(TEST_FLAGS_JSON))$(if $(filter $(f),$(lastword $(TEST_SRCS))),,$(comma)))$(newline)])
	@echo "wrote compile_commands.json ($(words $(LIB_SRCS) $(CLI_SRCS) $(CU_SRCS) $(TEST_CU_SRCS) $(TEST_SRCS) $(wildcard tutorials/*/main.cpp)) files)"

# The gdb pretty-printer for tensors (tests/gdb/attend_printers.py): a small
# program built with -g, stopped in gdb, its tensors printed and compared
# with what they must show. Skipped where gdb is not installed.
GDB_CHECK := $(BUILD)/gdb/tensors_for_gdb
$(GDB_CHECK): tests/gdb/tensors_for_gdb.cpp $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(filter-out -O%,$(CXXFLAGS_ALL)) -O0 -g $< $(LIB) $(LDFLAGS_ALL) -o $@
check-gdb:
	@if ! command -v gdb >/dev/null 2>&1; then echo "gdb not found: skipping the pretty-printer check"; exit 0; fi; \
	$(MAKE) --no-print-directory $(PARALLEL) $(GDB_CHECK) && sh tests/gdb/check.sh $(GDB_CHECK)

clean:
	rm -rf build

-include $(CLI_OBJS:.o=.d) $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(TUTORIAL_DIRS:tutorials/%=$(BUILD)/obj/tutorials/%/main.d)
