// Attend: everything in one include, in the order of the chapters.
#pragma once

#include "attend/shape.hpp"      // ch01 tensors
#include "attend/random.hpp"
#include "attend/strided.hpp"
#include "attend/tensor.hpp"
#include "attend/autograd.hpp"   // ch02 autograd
#include "attend/gradcheck.hpp"
#include "attend/dot.hpp"
#include "attend/kernels.hpp"    // ch03 operations
#include "attend/ops.hpp"
#include "attend/nn.hpp"         // ch04 modules, optimizers, checkpoints
#include "attend/optim.hpp"
#include "attend/safetensors.hpp"
#include "attend/checkpoint.hpp"
#include "attend/svg.hpp"
#include "attend/heatmap.hpp"
#include "attend/attention.hpp"  // ch05 attention
#include "attend/multihead_attention.hpp"  // ch06
#include "attend/transformer.hpp"          // ch07
#include "attend/data.hpp"       // ch08 translation
#include "attend/metrics.hpp"
#include "attend/train.hpp"
#include "attend/decode.hpp"     // ch08 greedy, ch09 beam search and the KV cache
#include "attend/parallel.hpp"   // ch10 loops shared among threads, one thread team per training step
#include "attend/gpu_kernels.hpp"  // ch11 CUDA kernels (on a GPU with make CUDA=1, else the emulator)
#include "attend/optimizer_kernels.hpp"  // ch11 the optimizers' arithmetic, on either device
#include "attend/attention_kernels.hpp"  // ch12 scaling attention
#include "attend/tiled_attention.hpp"
