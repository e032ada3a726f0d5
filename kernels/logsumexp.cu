// Log-sum-exp over the rows of a strided array, forward, and the kernel that
// applies a row's statistics elementwise (log-sum-exp backward, and softmax /
// log_softmax from statistics for rows split over several blocks).
//
// Math: lse_r = log(sum_c exp(x_rc)), kept as (m_r, ls_r) with lse = m + ls
//       (m = row max, ls = log(sum_c exp(x_rc - m))); torch's rules for nan
//       and infinities (common.cuh, finish).
//       apply_stats MODE 0: out = g_r * exp((x - m) - ls)   (the lse gradient)
//                   MODE 1: out = exp((x - m) - ls)          (softmax)
//                   MODE 2: out = (x - m) - ls               (log_softmax)
//       (modes 1 and 2 give nan on a row whose statistics are not finite, as torch).
// Bytes: forward reads R*C elements once and writes 2R accumulators and R
//       results (lse in the input dtype); apply_stats reads R*C and writes R*C.
// Launch: block = (G lanes per row, rows per block); grid.x strides over the
//       row groups; grid.y = S > 1 splits each row into S chunks (few, long
//       rows: every SM gets work), and the last block of a row (atomic counter
//       per row) merges the S partial states in chunk order.
#include "common.cuh"

using namespace gpugrad;

template <typename T>
__global__ void __launch_bounds__(512, 1) logsumexp_forward(
        const T* __restrict__ x, long long inner, long long so, long long si, long long sc, long long rows, int cols,
        Acc<T>* __restrict__ m_out, Acc<T>* __restrict__ ls_out, T* __restrict__ out,
        Acc<T>* __restrict__ partial_m, Acc<T>* __restrict__ partial_s, unsigned int* __restrict__ row_counters) {
    using A = Acc<T>;
    __shared__ A scratch_m[32], scratch_s[32];
    const Rows layout{inner, so, si, sc};
    const int splits = gridDim.y, chunk = blockIdx.y;
    const int chunk_cols = chunk_length<T>(cols, splits);
    const int begin = min(cols, chunk * chunk_cols), end = min(cols, begin + chunk_cols);
    for (long long group = static_cast<long long>(blockIdx.x) * blockDim.y; group < rows;
         group += static_cast<long long>(gridDim.x) * blockDim.y) {
        const long long row = group + threadIdx.y;
        const bool active = row < rows;
        MaxSum<A> st = empty_max_sum<A>();
        if (active)
            st = lane_stats(x + layout.base(row) + begin * sc, sc, end - begin, threadIdx.x, blockDim.x,
                            static_cast<T*>(nullptr));
        st = group_merge(st, scratch_m, scratch_s);
        if (splits > 1) {
            A unused = A(0);
            if (!merge_split_row(st, unused, partial_m, partial_s, static_cast<A*>(nullptr), row_counters, row))
                continue;
        }
        if (active && threadIdx.x == 0) {
            A m, ls;
            finish(st, m, ls);
            m_out[row] = m;
            ls_out[row] = ls;
            if (out != nullptr) {
                // torch's logsumexp: +inf / -inf rows give +inf / -inf (m = 0 then), nan gives nan
                out[row] = Store<T>::of(m + ls);
            }
        }
    }
}

template <typename T, int MODE>
__global__ void __launch_bounds__(512, 1) apply_stats(
        const T* __restrict__ x, long long inner, long long so, long long si, long long sc, long long rows, int cols,
        const Acc<T>* __restrict__ m_in, const Acc<T>* __restrict__ ls_in, const T* __restrict__ grad,
        long long grad_stride, T* __restrict__ out, long long out_so, long long out_si, long long out_sc) {
    using A = Acc<T>;
    const Rows layout{inner, so, si, sc};
    const Rows out_layout{inner, out_so, out_si, out_sc};
    const int splits = gridDim.y, chunk = blockIdx.y;
    const int chunk_cols = chunk_length<T>(cols, splits);
    const int begin = min(cols, chunk * chunk_cols), end = min(cols, begin + chunk_cols);
    for (long long row = static_cast<long long>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
         row += static_cast<long long>(gridDim.x) * blockDim.y) {
        const A m = m_in[row], ls = ls_in[row];
        const A g = MODE == 0 ? to_acc(grad[row * grad_stride]) : A(1);
        const bool special = !isfinite(ls);
        write_row<T>(x + layout.base(row) + begin * sc, sc, static_cast<const T*>(nullptr),
                     out + out_layout.base(row) + begin * out_sc, out_sc, end - begin, threadIdx.x, blockDim.x,
                     [&](int, A v) {
                         const A shifted = (v - m) - ls;
                         if (MODE == 0) return g * fast_exp(shifted);
                         if (special) return quiet_nan<A>();
                         return MODE == 1 ? fast_exp(shifted) : shifted;
                     });
    }
}
