// Log-sum-exp over the rows of an (N, C) array, forward and backward.
//
// Math: lse_i = log(sum_j exp(x_ij)), kept as (m_i, ls_i) with lse_i = m_i + ls_i
//       (m = row max, ls = log(sum_j exp(x_ij - m))); the backward is
//       grad_ij = g_i * exp((x_ij - m_i) - ls_i).
// Bytes: forward reads N*C elements once and writes 2N accumulators (no N x C
//       buffer is kept); backward reads N*C and writes N*C.
// Launch: block = (threads per row, rows per block); a warp per row for short
//       rows (several rows per block), a block per row (blockDim.y == 1) for long
//       ones; rows grid-strided.  Row r starts at x + r * stride (unit stride
//       along the row).
#include "common.cuh"

using namespace gpugrad;

template <typename T>
__global__ void __launch_bounds__(512, 1) logsumexp_forward(const T* __restrict__ x, long long stride, long long rows, int cols,
                                  Acc<T>* __restrict__ max_out, Acc<T>* __restrict__ logsum_out) {
    using A = Acc<T>;
    __shared__ A scratch_m[32], scratch_s[32];
    for (long long base = static_cast<long long>(blockIdx.x) * blockDim.y; base < rows;
         base += static_cast<long long>(gridDim.x) * blockDim.y) {
        const long long row = base + threadIdx.y;
        const bool active = row < rows;
        A m, ls;
        row_logsumexp(x + row * stride, cols, active, scratch_m, scratch_s, m, ls);
        if (active && threadIdx.x == 0) {
            max_out[row] = m;
            logsum_out[row] = ls;
        }
    }
}

template <typename T>
__global__ void __launch_bounds__(512, 1) logsumexp_backward(const T* __restrict__ x, long long stride, long long rows, int cols,
                                   const Acc<T>* __restrict__ max_in, const Acc<T>* __restrict__ logsum_in,
                                   const Acc<T>* __restrict__ grad, T* __restrict__ out, long long out_stride) {
    using A = Acc<T>;
    for (long long row = static_cast<long long>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
         row += static_cast<long long>(gridDim.x) * blockDim.y) {
        const A m = max_in[row], ls = logsum_in[row], g = grad[row];
        transform_row<T>(x + row * stride, nullptr, out + row * out_stride, cols, threadIdx.x, blockDim.x,
                         [&](int, A v, A) { return g * fast_exp((v - m) - ls); });
    }
}
