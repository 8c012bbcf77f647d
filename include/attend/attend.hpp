// Attend: everything in one include. Chapters 1-3.
#pragma once

#include "attend/autograd.hpp"
#include "attend/dot.hpp"
#include "attend/gradcheck.hpp"
#include "attend/kernels.hpp"
#include "attend/ops.hpp"
#include "attend/random.hpp"
#include "attend/shape.hpp"
#include "attend/tensor.hpp"
