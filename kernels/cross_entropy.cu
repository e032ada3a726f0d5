// Softmax cross-entropy with class-index targets over the rows of an (N, C)
// array, forward and backward, with class weights w, ignore_index and label
// smoothing eps (torch.nn.functional.cross_entropy's semantics).
//
// Math, per row i with target t (rows with t == ignore_index give 0; a target
// outside [0, C) is recorded in the error word and the row treated as ignored):
//   lse  = m + ls (as in logsumexp.cu),  W = sum_j w_j (C without weights)
//   loss = (1 - eps) w_t (lse - x_t) + (eps / C) sum_j w_j (lse - x_j)
//   grad_j = G_i * (exp((x_j - m) - ls) * S - (eps / C) w_j - [j == t] (1 - eps) w_t)
//            with S = (1 - eps) w_t + (eps / C) W and G_i the upstream gradient of
//            the row (already divided by the mean's denominator).
//   sum_j w_j (lse - x_j) is accumulated as W (lse - p) - sum_j w_j (x_j - p) with
//   a pivot p = x_t, so that logits near 1e4 do not cancel.
// Bytes: forward reads N*C once (ignored rows are not read) and writes 4N
//   accumulators (loss, row weight w_t, m, ls); backward reads N*C and writes N*C.
// Launch: as logsumexp.cu.
#include "common.cuh"

using namespace gpugrad;

template <typename TI>
__device__ __forceinline__ bool usable_target(TI t, long long ignore_index, int cols, long long* error) {
    const long long target = static_cast<long long>(t);
    if (target == ignore_index) return false;
    if (target < 0 || target >= cols) {
        if (error != nullptr) record_bad_target(error, target, cols);
        return false;
    }
    return true;
}

template <typename T, typename TI>
__global__ void __launch_bounds__(512, 1) cross_entropy_forward(const T* __restrict__ x, long long stride, long long rows, int cols,
                                      const TI* __restrict__ target, const Acc<T>* __restrict__ weight,
                                      int has_weight, const Acc<T>* __restrict__ weight_sum,
                                      long long ignore_index, Acc<T> smoothing,
                                      Acc<T>* __restrict__ loss, Acc<T>* __restrict__ row_weight,
                                      Acc<T>* __restrict__ max_out, Acc<T>* __restrict__ logsum_out,
                                      long long* __restrict__ error) {
    using A = Acc<T>;
    __shared__ A scratch_m[32], scratch_s[32], scratch_x[32];
    for (long long base = static_cast<long long>(blockIdx.x) * blockDim.y; base < rows;
         base += static_cast<long long>(gridDim.x) * blockDim.y) {
        const long long row = base + threadIdx.y;
        // Whether a row is used is the same for all threads of the row, and a
        // block of more than one warp holds a single row: skipping stays uniform.
        const int t = row < rows ? static_cast<int>(target[row]) : 0;
        const bool used = row < rows && usable_target(target[row], ignore_index, cols,
                                                      threadIdx.x == 0 ? error : nullptr);
        if (!used) {
            if (row < rows && threadIdx.x == 0) {
                loss[row] = A(0);
                row_weight[row] = A(0);
                max_out[row] = A(0);
                logsum_out[row] = A(0);
            }
            if (blockDim.x > 32) continue;      // whole block skips; a warp row joins no block sync
        }
        const T* x_row = x + row * stride;
        const A x_t = used ? to_acc(x_row[t]) : A(0);
        const A pivot = isfinite(x_t) ? x_t : A(0);
        MaxSum<A> state = empty_max_sum<A>();
        A weighted = A(0);                       // sum_j w_j (x_j - pivot), for smoothing only
        if (used) {
            visit_row(x_row, cols, threadIdx.x, blockDim.x, [&](int j, const A (&v)[Vec<T>::N], int count) {
                accumulate(state, v, count);
                if (smoothing != A(0)) {
#pragma unroll
                    for (int k = 0; k < Vec<T>::N; ++k)
                        if (k < count) weighted += (has_weight ? weight[j + k] : A(1)) * (v[k] - pivot);
                }
            });
        }
        state = row_merge(state, scratch_m, scratch_s);
        if (smoothing != A(0)) weighted = row_sum(weighted, scratch_x);
        if (used && threadIdx.x == 0) {
            A m, ls;
            finish(state, m, ls);
            const A w_t = has_weight ? weight[t] : A(1);
            const A total_weight = has_weight ? *weight_sum : A(cols);
            const A lse_minus_pivot = (m - pivot) + ls;
            A value = (A(1) - smoothing) * w_t * ((m - x_t) + ls);
            if (smoothing != A(0))
                value += smoothing / A(cols) * (total_weight * lse_minus_pivot - weighted);
            loss[row] = value;
            row_weight[row] = w_t;
            max_out[row] = m;
            logsum_out[row] = ls;
        }
    }
}

template <typename T, typename TI>
__global__ void __launch_bounds__(512, 1) cross_entropy_backward(const T* __restrict__ x, long long stride, long long rows, int cols,
                                       const TI* __restrict__ target, const Acc<T>* __restrict__ weight,
                                       int has_weight, const Acc<T>* __restrict__ weight_sum,
                                       long long ignore_index, Acc<T> smoothing,
                                       const Acc<T>* __restrict__ max_in, const Acc<T>* __restrict__ logsum_in,
                                       const Acc<T>* __restrict__ grad, long long grad_stride,
                                       T* __restrict__ out, long long out_stride) {
    using A = Acc<T>;
    for (long long row = static_cast<long long>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
         row += static_cast<long long>(gridDim.x) * blockDim.y) {
        T* out_row = out + row * out_stride;
        const long long target_value = static_cast<long long>(target[row]);
        if (target_value == ignore_index || target_value < 0 || target_value >= cols) {
            // ignored (bad targets were recorded by the forward): a zero row
            for (int j = threadIdx.x; j < cols; j += blockDim.x) out_row[j] = Store<T>::of(A(0));
            continue;
        }
        const int t = static_cast<int>(target_value);
        const A m = max_in[row], ls = logsum_in[row], g = grad[row * grad_stride];
        const A w_t = has_weight ? weight[t] : A(1);
        const A total_weight = has_weight ? *weight_sum : A(cols);
        const A smooth = smoothing / A(cols);
        const A scale = g * ((A(1) - smoothing) * w_t + smooth * total_weight);
        const A g_smooth = g * smooth;
        const A g_target = g * (A(1) - smoothing) * w_t;
        transform_row<T>(x + row * stride, nullptr, out_row, cols, threadIdx.x, blockDim.x, [&](int j, A v, A) {
            A value = scale * fast_exp((v - m) - ls);
            if (smoothing != A(0)) value -= g_smooth * (has_weight ? weight[j] : A(1));
            if (j == t) value -= g_target;
            return value;
        });
    }
}

// Range check of class indices for ops that gather by target without a fused
// kernel (nll_loss): records the first bad value in the error word.
template <typename TI>
__global__ void __launch_bounds__(512, 1) check_targets(const TI* __restrict__ target, long long count, int cols, long long ignore_index,
                              long long* __restrict__ error) {
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
         i += static_cast<long long>(gridDim.x) * blockDim.x)
        usable_target(target[i], ignore_index, cols, error);
}
