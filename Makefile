# llmlab — plain make. `make` builds the library and the command for this machine's ISA and says what it chose;
# `make PORTABLE=1` builds a scalar-only portable binary; `make CROSS=aarch64-linux-gnu-` cross-builds for arm64.
# Variants are targets: test, run, fuzz, test-aarch64, clean.

SHARED ?= ../shared
BUILD ?= build
CROSS ?=
ifneq ($(CROSS),)
  CC := $(CROSS)gcc
  BUILD := build-$(patsubst %-,%,$(CROSS))
endif
CC ?= cc

WARN := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes -Wvla -Wno-format-truncation -Werror=implicit-function-declaration
OPT ?= -O2
ifeq ($(PORTABLE),1)
  ARCHFLAGS := -DLL_PORTABLE=1
  BUILD := $(BUILD)-portable
else ifneq ($(CROSS),)
  ARCHFLAGS := -march=armv8.2-a+fp16+dotprod
else
  ARCHFLAGS := -march=native
endif
CFLAGS ?= $(OPT) -g
CFLAGS += -std=c11 -D_GNU_SOURCE -fPIC -pthread $(WARN) $(ARCHFLAGS) -Iinclude -Isrc $(EXTRA_CFLAGS)
LDLIBS := -lm -lpthread
TEST_LDLIBS := -lcmocka -lcjson $(LDLIBS)

# What the compiler will use for this target, read off its predefined macros.
ISA := $(shell $(CC) $(ARCHFLAGS) -dM -E - </dev/null 2>/dev/null | grep -oE '__(AVX2|F16C|FMA|AVX512F|AVX512BW|AVX512VL|AVX512BF16|AVX512VNNI|AVXVNNI)__|__ARM_NEON |__ARM_FEATURE_(DOTPROD|FP16_VECTOR_ARITHMETIC) ' | sed 's/^__//; s/__$$//; s/ $$//; s/ARM_FEATURE_//' | sort -u | tr '\n' ' ')

LIB_SRC := $(filter-out src/serve/%,$(shell find src -name '*.c' | sort))
CLI_SRC := $(shell find cli -name '*.c' | sort)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
DEPS := $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:=.d)

# The server (src/serve, `llmlab serve`) is not in the library: it and libmicrohttpd (found by pkg-config) are
# linked into the llmlab binary only. Without libmicrohttpd (or in a cross build) the rest builds and
# `llmlab serve` says how to install it.
SERVE_SRC := $(sort $(wildcard src/serve/*.c))
MHD := $(if $(CROSS),,$(shell pkg-config --exists libmicrohttpd 2>/dev/null && echo 1))
ifeq ($(MHD),1)
  SERVE_OBJ := $(SERVE_SRC:%.c=$(BUILD)/%.o)
  MHD_LIBS := $(shell pkg-config --libs libmicrohttpd)
  $(SERVE_OBJ) $(BUILD)/cli/cmd_serve.o: CFLAGS += $(shell pkg-config --cflags libmicrohttpd) -DLL_HAVE_MHD=1
  DEPS += $(SERVE_OBJ:.o=.d)
endif

# CUDA (optional). When nvcc is found (or CUDA=1) the .cu files under src/ join the library, C files see
# LL_HAVE_CUDA=1 and programs link the CUDA runtime (--as-needed: only programs that use it load it); cuBLAS and
# cuBLASLt are dlopen'ed when a GPU section first needs them, since linking them adds 0.2 s (warm) to seconds
# (cold) to every start of llmlab. CUDA=0 turns it off; cross builds never use it. Without a GPU at run time
# the GPU parts say so and skip. C files never include CUDA headers: src/bench/hw_cuda.h is their C face.
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard $(CUDA_HOME)/bin/nvcc))
ifneq ($(CROSS),)
  CUDA := 0
endif
CUDA ?= $(if $(NVCC),1,0)
ifeq ($(CUDA),1)
  CU_SRC := $(shell find src -name '*.cu' | sort)
  CU_OBJ := $(CU_SRC:%.cu=$(BUILD)/%.cu.o)
  NVCC_ARCH ?= -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90 -gencode=arch=compute_80,code=sm_80
  NVCCFLAGS ?= -O3 -std=c++17 $(NVCC_ARCH)
  NVCCFLAGS += -Xcompiler -fPIC -Iinclude -Isrc -DLL_HAVE_CUDA=1
  CFLAGS += -DLL_HAVE_CUDA=1
  CUDA_LDLIBS := -L$(CUDA_HOME)/lib64 -Wl,--as-needed -lcudart -lstdc++ -ldl -Wl,--no-as-needed
  LDLIBS += $(CUDA_LDLIBS)
  TEST_LDLIBS += $(CUDA_LDLIBS)
  LIB_OBJ += $(CU_OBJ)
  DEPS += $(CU_OBJ:.o=.d)
endif

.PHONY: all test run fuzz test-aarch64 clean isa
all: isa $(BUILD)/llmlab $(BUILD)/libllmlab.so

isa:
	@echo "llmlab: CC=$(CC) build=$(BUILD) flags=$(ARCHFLAGS) -> ISA: $(if $(strip $(ISA)),$(ISA),scalar only)"

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libllmlab.a: $(LIB_OBJ)
	@rm -f $@
	$(CROSS)ar rcs $@ $^

$(BUILD)/libllmlab.so: $(LIB_OBJ)
	$(CC) -shared $(filter -L%,$(EXTRA_CFLAGS)) -o $@ $^ -lcjson $(LDLIBS)

$(BUILD)/llmlab: $(CLI_OBJ) $(SERVE_OBJ) $(BUILD)/libllmlab.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(SERVE_OBJ) $(BUILD)/libllmlab.a -lcjson $(MHD_LIBS) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libllmlab.a tests/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -MMD -MP -o $@ $< $(BUILD)/libllmlab.a $(TEST_LDLIBS)

# The server's request layer is not in the library: its test links it (no HTTP library needed).
$(BUILD)/tests/test_serve_request: tests/test_serve_request.c $(BUILD)/src/serve/request.o $(BUILD)/libllmlab.a tests/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -MMD -MP -o $@ $< $(BUILD)/src/serve/request.o $(BUILD)/libllmlab.a $(TEST_LDLIBS)

# The test programs alone (built, not run).
.PHONY: tests
tests: $(TEST_BIN)

# The whole suite: unit, kernel, golden and command tests. Last line: "N passed, N failed, N skipped".
test: all $(TEST_BIN)
	@LLMLAB_SHARED=$(SHARED) LLMLAB_BIN=$(BUILD)/llmlab sh tests/run.sh $(BUILD)/tests $(TEST_RUNNER)

# The main job on the embedded default (see README).
run: all
	@sh tools/main-job.sh $(BUILD)/llmlab "$(SHARED)"

# The fuzz targets under libFuzzer + ASan/UBSan (clang needed), FUZZ_SECONDS in all split evenly between the 7
# targets (fuzz/README.md): the GGUF parser, the server's request path, the llama2.c importer, model load + eval,
# the tokenizers on the real vocabularies, the chat templates, and the lab report's JSON inputs. The library is
# built once into build-fuzz/lib (CPU only, instrumented) for the targets that need more than a few files.
FUZZ_SECONDS ?= 180
FUZZ_EACH = $$(( $(FUZZ_SECONDS) / 7 > 0 ? $(FUZZ_SECONDS) / 7 : 1 ))
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iinclude -Isrc
FUZZ_LIB_FLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Iinclude -Isrc -march=native -pthread
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=build-fuzz/lib/%.o)
FUZZ_CORPORA := corpus corpus-request corpus-llama2c corpus-model corpus-tokenizer corpus-chat corpus-report

build-fuzz/lib/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_LIB_FLAGS) -MMD -MP -c $< -o $@

build-fuzz/libllmlab-fuzz.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

-include $(FUZZ_LIB_OBJ:.o=.d)

build-fuzz/fuzz_%: fuzz/fuzz_%.c build-fuzz/libllmlab-fuzz.a
	clang $(FUZZ_FLAGS) -march=native -o $@ $< build-fuzz/libllmlab-fuzz.a -lcjson -lm -lpthread

fuzz: build-fuzz/fuzz_model build-fuzz/fuzz_tokenizer build-fuzz/fuzz_chat build-fuzz/fuzz_report
	@for c in $(FUZZ_CORPORA); do mkdir -p build-fuzz/$$c; cp -n fuzz/$$c/* build-fuzz/$$c/ 2>/dev/null || true; done
	clang $(FUZZ_FLAGS) -o build-fuzz/fuzz_gguf fuzz/fuzz_gguf.c $(filter src/core/% src/formats/% src/types/%,$(LIB_SRC)) -lm -lpthread
	clang $(FUZZ_FLAGS) -o build-fuzz/fuzz_request fuzz/fuzz_request.c src/serve/request.c src/serve/shape.c -lcjson -lm
	clang $(FUZZ_FLAGS) -o build-fuzz/fuzz_llama2c fuzz/fuzz_llama2c.c \
	  $(filter src/core/% src/formats/% src/types/% src/tokenizer/%,$(LIB_SRC)) -lm -lpthread
	build-fuzz/fuzz_gguf -max_total_time=$(FUZZ_EACH) -max_len=65536 -timeout=10 build-fuzz/corpus
	build-fuzz/fuzz_request -max_total_time=$(FUZZ_EACH) -max_len=65536 -timeout=10 -dict=fuzz/request.dict build-fuzz/corpus-request
	build-fuzz/fuzz_llama2c -max_total_time=$(FUZZ_EACH) -max_len=16384 -timeout=10 build-fuzz/corpus-llama2c
	build-fuzz/fuzz_model -max_total_time=$(FUZZ_EACH) -max_len=262144 -timeout=10 -rss_limit_mb=3072 build-fuzz/corpus-model
	LLMLAB_SHARED=$(SHARED) build-fuzz/fuzz_tokenizer -max_total_time=$(FUZZ_EACH) -max_len=4096 -timeout=10 build-fuzz/corpus-tokenizer
	build-fuzz/fuzz_chat -max_total_time=$(FUZZ_EACH) -max_len=8192 -timeout=10 build-fuzz/corpus-chat
	build-fuzz/fuzz_report -max_total_time=$(FUZZ_EACH) -max_len=65536 -timeout=10 -dict=fuzz/report.dict build-fuzz/corpus-report
	@echo "fuzz: $(FUZZ_SECONDS) s over 7 targets clean"

# arm64: cross-build and run the suite under qemu-user (NEON paths really executed). The runtime libraries are
# Debian's multiarch arm64 ones (-L /): threads hang under qemu with the cross toolchain's own libc copy.
test-aarch64:
	$(MAKE) CROSS=aarch64-linux-gnu- TEST_RUNNER="qemu-aarch64 -L /" test

clean:
	rm -rf build build-* 

# CUDA objects (see the CUDA variables above) and what the build chose.
$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

.PHONY: isa-cuda
isa: isa-cuda
isa-cuda:
	@echo "llmlab: CUDA $(if $(filter 1,$(CUDA)),on: $(NVCC) $(NVCC_ARCH),off$(if $(CROSS), (cross build),$(if $(NVCC), (CUDA=0), (no nvcc found))))"

-include $(DEPS)

# Benchmark programs (not tests): bench/*.c linked against the library.
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
.PHONY: bench
bench: $(BENCH_BIN)
$(BUILD)/bench/%: bench/%.c $(BUILD)/libllmlab.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O3 -o $@ $< $(BUILD)/libllmlab.a $(LDLIBS)
