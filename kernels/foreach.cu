// Operations over many tensors in one launch each (torch's _foreach_* and
// gradient clipping), on the multi-tensor table of multi_tensor.cuh with one
// array per tensor.
//
// Math:
//   norm_partials:   partial[c] = sum |x|^p over chunk c (kind 0: p = 2, sum x^2; 1: p = 1;
//                    4: any other p), max |x| (2: p = inf) or min |x| (3: p = -inf), in A
//                    per thread and double across the block; nan propagates.
//   scale_by_norm:   total = (reduction of the partials)^(1/p) (every block reduces them
//                    in the same order, so all agree; block 0 writes it to total_out);
//                    coef = min(max_norm / (total + 1e-6), 1); x *= coef (not written
//                    where coef == 1, which changes nothing).  With error_if_nonfinite
//                    a non-finite total is recorded in the error word (kind 3, the
//                    norm type's bits) and nothing is scaled.  Without partials the
//                    total is read from total_in (clip_grads_with_norm_).
//   unscale_check:   found_inf = 1 if x is not finite; x *= inv_scale, the float of 1 / scale
//                    computed in double (GradScaler.unscale_,
//                    torch's _amp_foreach_non_finite_check_and_unscale_).
//   clamp_values:    x = min(max(x, low), high), nan kept (clip_grad_value_).
// Bytes: norm_partials reads each element once and writes a double per chunk;
//   scale_by_norm reads the partials once per block, and each element is read
//   and written once (when scaled); unscale_check and clamp_values read and
//   write each element once.
// Launch: blocks of 512 threads stride over the chunks of all the tensors, a
// thread per element; norm_partials reduces a chunk per block.
#include "common.cuh"
#include "multi_tensor.cuh"

using namespace gpugrad;

namespace {

constexpr long long NONFINITE_NORM = 3;     // the error word's kind (gpugrad/cuda/errors.py)
enum NormKind { SQUARES = 0, ABSOLUTE = 1, MAXIMUM = 2, MINIMUM = 3, POWER = 4 };

template <typename A> __device__ __forceinline__ A norm_start(int kind) {
    return kind == MAXIMUM ? A(0) : kind == MINIMUM ? pos_inf<A>() : A(0);
}

template <typename A> __device__ __forceinline__ A nan_min(A a, A b) { return (a < b || a != a) ? a : b; }

template <typename A> __device__ __forceinline__ A norm_fold(int kind, A acc, A v) {
    switch (kind) {
        case MAXIMUM: return nan_max(acc, v);
        case MINIMUM: return nan_min(acc, v);
        default: return acc + v;
    }
}

template <typename A> __device__ __forceinline__ A norm_term(int kind, A x, A p) {
    const A a = fabs(x);
    switch (kind) {
        case SQUARES: return x * x;
        case POWER: return pow(a, p);
        default: return a;
    }
}

// Fold v over the block (every thread must call; the result is in every thread).
__device__ __forceinline__ double block_fold(int kind, double v, double* scratch) {
    for (int offset = 16; offset > 0; offset >>= 1) v = norm_fold(kind, v, __shfl_xor_sync(FULL_MASK, v, offset));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = scratch[0];
    for (int w = 1; w < warps; ++w) v = norm_fold(kind, v, scratch[w]);
    __syncthreads();                          // scratch may be reused after return
    return v;
}

__device__ __forceinline__ double norm_finish(int kind, double folded, double p) {
    switch (kind) {
        case SQUARES: return sqrt(folded);
        case ABSOLUTE: case MAXIMUM: case MINIMUM: return folded;
        default: return pow(folded, 1.0 / p);
    }
}

}  // namespace

template <typename T>
__global__ void __launch_bounds__(512) norm_partials(const long long* __restrict__ words, int tensors,
                                                     long long chunk_size, long long chunks, int kind, double p,
                                                     double* __restrict__ partials) {
    using A = Acc<T>;
    __shared__ double scratch[32];
    const TensorTable<1, 0> table{words, tensors, chunk_size};
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long* row = table.row_of(c);
        long long begin, end;
        table.bounds(row, c, begin, end);
        const T* __restrict__ x = table.array<const T>(row, 0);
        A acc = norm_start<A>(kind);
        for (long long i = begin + threadIdx.x; i < end; i += blockDim.x)
            acc = norm_fold(kind, acc, norm_term(kind, to_acc(x[i]), A(p)));
        const double folded = block_fold(kind, static_cast<double>(acc), scratch);
        if (threadIdx.x == 0) partials[c] = folded;
    }
}

template <typename T>
__global__ void __launch_bounds__(512) scale_by_norm(const long long* __restrict__ words, int tensors,
                                                     long long chunk_size, long long chunks,
                                                     const double* __restrict__ partials, long long count,
                                                     const double* __restrict__ total_in, int kind, double p,
                                                     double max_norm, T* __restrict__ total_out,
                                                     int error_if_nonfinite, double norm_type,
                                                     long long* __restrict__ error) {
    using A = Acc<T>;
    __shared__ double scratch[32];
    double total;
    if (partials != nullptr) {
        double acc = norm_start<double>(kind);
        for (long long i = threadIdx.x; i < count; i += blockDim.x) acc = norm_fold(kind, acc, partials[i]);
        total = norm_finish(kind, block_fold(kind, acc, scratch), p);
    } else {
        total = *total_in;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0 && total_out != nullptr) *total_out = Store<T>::of(A(total));
    if (error_if_nonfinite && !isfinite(total)) {
        if (blockIdx.x == 0 && threadIdx.x == 0)
            record_bad_index(error, NONFINITE_NORM, __double_as_longlong(norm_type), 0);
        return;
    }
    // torch's clamp(max_norm / (total + 1e-6), max=1), in the gradients' precision; nan stays nan
    const A factor = to_acc(Store<T>::of(A(max_norm) / (A(total) + A(1e-6))));
    if (factor == A(1) || factor > A(1)) return;
    const TensorTable<1, 0> table{words, tensors, chunk_size};
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long* row = table.row_of(c);
        long long begin, end;
        table.bounds(row, c, begin, end);
        T* __restrict__ x = table.array<T>(row, 0);
        for (long long i = begin + threadIdx.x; i < end; i += blockDim.x) x[i] = Store<T>::of(to_acc(x[i]) * factor);
    }
}

template <typename T>
__global__ void __launch_bounds__(512) unscale_check(const long long* __restrict__ words, int tensors,
                                                     long long chunk_size, long long chunks,
                                                     const float* __restrict__ scale,
                                                     float* __restrict__ found_inf) {
    using A = Acc<T>;
    const TensorTable<1, 0> table{words, tensors, chunk_size};
    const float inv = static_cast<float>(1.0 / static_cast<double>(*scale));   // torch's inv_scale
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long* row = table.row_of(c);
        long long begin, end;
        table.bounds(row, c, begin, end);
        T* __restrict__ x = table.array<T>(row, 0);
        bool bad = false;
        for (long long i = begin + threadIdx.x; i < end; i += blockDim.x) {
            const A v = to_acc(x[i]);
            bad |= !isfinite(v);
            if (inv != 1.0f) x[i] = Store<T>::of(v * A(inv));
        }
        if (bad) *found_inf = 1.0f;
    }
}

template <typename T>
__global__ void __launch_bounds__(512) clamp_values(const long long* __restrict__ words, int tensors,
                                                    long long chunk_size, long long chunks, double low, double high) {
    using A = Acc<T>;
    const TensorTable<1, 0> table{words, tensors, chunk_size};
    const A lo = A(low), hi = A(high);
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long* row = table.row_of(c);
        long long begin, end;
        table.bounds(row, c, begin, end);
        T* __restrict__ x = table.array<T>(row, 0);
        for (long long i = begin + threadIdx.x; i < end; i += blockDim.x) {
            const A v = to_acc(x[i]);
            x[i] = Store<T>::of(v != v ? v : (v < lo ? lo : (v > hi ? hi : v)));
        }
    }
}
