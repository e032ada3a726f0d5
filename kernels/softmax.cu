// Softmax and log-softmax over the rows of an (N, C) array, forward and backward.
//
// Math: forward  y = exp((x - m) - ls)   (LOG: y = (x - m) - ls),  m, ls as in logsumexp.cu;
//       backward softmax:     gx = y * (g - sum_j g_j y_j)
//                log_softmax: gx = g - exp(y) * sum_j g_j
// Bytes: forward reads x twice (the second pass mostly from L1/L2: a block works
//       on one row at a time) and writes y; backward reads y and g twice and
//       writes gx.  Only y is kept for backward.
// Launch: as logsumexp.cu.
#include "common.cuh"

using namespace gpugrad;

template <typename T, bool LOG>
__global__ void __launch_bounds__(512, 1) softmax_forward(const T* __restrict__ x, long long stride, long long rows, int cols,
                                T* __restrict__ y, long long y_stride) {
    using A = Acc<T>;
    __shared__ A scratch_m[32], scratch_s[32];
    for (long long base = static_cast<long long>(blockIdx.x) * blockDim.y; base < rows;
         base += static_cast<long long>(gridDim.x) * blockDim.y) {
        const long long row = base + threadIdx.y;
        const bool active = row < rows;
        A m, ls;
        row_logsumexp(x + row * stride, cols, active, scratch_m, scratch_s, m, ls);
        if (active)
            transform_row<T>(x + row * stride, nullptr, y + row * y_stride, cols, threadIdx.x, blockDim.x,
                             [&](int, A v, A) {
                                 const A shifted = (v - m) - ls;
                                 return LOG ? shifted : fast_exp(shifted);
                             });
    }
}

template <typename T, bool LOG>
__global__ void __launch_bounds__(512, 1) softmax_backward(const T* __restrict__ y, long long y_stride, const T* __restrict__ g,
                                 long long g_stride, long long rows, int cols, T* __restrict__ out,
                                 long long out_stride) {
    using A = Acc<T>;
    __shared__ A scratch[32];
    for (long long base = static_cast<long long>(blockIdx.x) * blockDim.y; base < rows;
         base += static_cast<long long>(gridDim.x) * blockDim.y) {
        const long long row = base + threadIdx.y;
        const bool active = row < rows;
        A partial = A(0);
        if (active) {
            const T* y_row = y + row * y_stride;
            const T* g_row = g + row * g_stride;
            // sum_j g_j (LOG) or sum_j g_j y_j: g is read through the same vector path.
            visit_row(g_row, cols, threadIdx.x, blockDim.x, [&](int j, const A (&v)[Vec<T>::N], int count) {
#pragma unroll
                for (int k = 0; k < Vec<T>::N; ++k)
                    if (k < count) partial += LOG ? v[k] : v[k] * to_acc(y_row[j + k]);
            });
        }
        const A dot = row_sum(partial, scratch);
        if (active)
            transform_row<T>(y + row * y_stride, g + row * g_stride, out + row * out_stride, cols, threadIdx.x,
                             blockDim.x, [&](int, A yv, A gv) {
                                 return LOG ? gv - fast_exp(yv) * dot : yv * (gv - dot);
                             });
    }
}
