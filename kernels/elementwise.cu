// gpugrad kernels: elementwise ops of a transformer in one launch each.
//
// Math (A = Acc<T>; K = sqrt(2/pi), C = 0.044715, constants rounded to A):
//   gelu_forward<T, TANH>:   tanh: y = ((tanh(K * (x + C*x*x*x)) + 1) * 0.5) * x
//                            erf:  y = ((erf(x * (1/sqrt 2)) + 1) * 0.5) * x
//   gelu_backward<T, TANH>:  dx = g * gelu'(x):
//                            tanh: t = tanh(K * (x + C*x^2*x));
//                                  gelu' = 0.5 (1 + t) + 0.5 x (1 - t^2) K (1 + 3C x^2)
//                            erf:  gelu' = (erf(x/sqrt 2) + 1) * 0.5 + x exp(-x^2/2) / sqrt(2 pi)
//   (the same operations in the same order as the NumPy twins in gpugrad/ops/elementwise.py)
//   gelu_backward_bias<T, TANH>: dx as gelu_backward's, over rows x cols (the GELU of a Linear's
//                            output, cols its features), and the column sums of dx as stored (rounded
//                            to T), summed in A: the gradient of the Linear's bias, in the same launch
//                            (no separate reduction over the rows, nor a cast after it in bfloat16)
//   column_sums<T>:          sums[c] = sum over r of x[r, c], in A, rounded to T once (a half-type
//                            sum over the leading dims in one launch: no float32 result to cast)
//   sigmoid_forward<T>:      y = 1 / (1 + exp(-x))            (torch's formula; exp(-x) = inf gives 0)
//   output_backward<T, SIGMOID>: sigmoid: dx = g * (y * (1 - y)); tanh: dx = g * (1 - y * y)
//                            (y the forward's output)
//                            g[i * g_step]: g_step 0 for one upstream value (sum's broadcast), else 1
//   dropout_apply<T>:        y = x * (u >= p ? scale : 0), where u in [0, 1) comes from
//                            Philox4x32-10 (a counter-based generator: the words of
//                            counter offset + i/4 under the 64-bit key `seed`, word i % 4,
//                            its top 24 bits) and scale = 1/(1-p) rounded to T; the
//                            mask is never stored: the backward reruns the kernel on the
//                            gradient with the same seed and offset.
// Layout: contiguous arrays of n elements.
// Launch: a grid-stride loop, a thread per element (four per thread for dropout,
// one Philox call each); any grid gives the same result.  gelu_backward_bias, column_sums: block b takes
// rows [b * rows_per_block, +rows_per_block), a thread per column (coalesced along the row),
// its sum over those rows to partials[b * cols + c]; the last block to finish (counter) adds
// the blocks' partials in block order, so the sums do not depend on the blocks' timing.
// Bytes: each element read once and written once (gelu_backward_bias: plus 4 or 8 bytes per
// column and block of partials, and cols sums; column_sums: x read once).
#include "common.cuh"

using namespace gpugrad;

namespace {

constexpr double SQRT_2_OVER_PI = 0.7978845608028654;
constexpr double GELU_C = 0.044715;
constexpr double INV_SQRT_2 = 0.7071067811865476;
constexpr double INV_SQRT_2PI = 0.3989422804014327;

template <typename A> __device__ __forceinline__ A gelu_value(A v, bool tanh_form) {
    A inner;
    if (tanh_form) inner = tanh(static_cast<A>(SQRT_2_OVER_PI) * (v + static_cast<A>(GELU_C) * v * v * v));
    else inner = erf(v * static_cast<A>(INV_SQRT_2));
    inner += A(1);
    inner *= A(0.5);
    return inner * v;
}

template <typename A> __device__ __forceinline__ A gelu_slope(A v, bool tanh_form) {
    if (tanh_form) {
        const A x2 = v * v;
        const A t = tanh(static_cast<A>(SQRT_2_OVER_PI) * (v + static_cast<A>(GELU_C) * x2 * v));
        return A(0.5) * (A(1) + t)
               + A(0.5) * v * (A(1) - t * t) * static_cast<A>(SQRT_2_OVER_PI) * (A(1) + static_cast<A>(3 * GELU_C) * x2);
    }
    A slope = erf(v * static_cast<A>(INV_SQRT_2));
    slope += A(1);
    slope *= A(0.5);
    A pdf = exp(A(-0.5) * v * v);
    pdf *= static_cast<A>(INV_SQRT_2PI);
    pdf *= v;
    return slope + pdf;
}

}  // namespace

template <typename T, bool TANH>
__global__ void __launch_bounds__(MAX_THREADS) gelu_forward(const T* __restrict__ x, T* __restrict__ out,
                                                             long long n) {
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<long long>(gridDim.x) * blockDim.x)
        out[i] = Store<T>::of(gelu_value(to_acc(x[i]), TANH));
}

template <typename T, bool TANH>
__global__ void __launch_bounds__(MAX_THREADS) gelu_backward(const T* __restrict__ grad, const T* __restrict__ x,
                                                              T* __restrict__ out, long long n) {
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<long long>(gridDim.x) * blockDim.x)
        out[i] = Store<T>::of(gelu_slope(to_acc(x[i]), TANH) * to_acc(grad[i]));
}

template <typename T>
__global__ void __launch_bounds__(MAX_THREADS) sigmoid_forward(const T* __restrict__ x, T* __restrict__ out,
                                                                long long n) {
    using A = Acc<T>;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<long long>(gridDim.x) * blockDim.x)
        out[i] = Store<T>::of(A(1) / (A(1) + exp(-to_acc(x[i]))));
}

// SIGMOID: g * (y (1 - y)); else tanh's g * (1 - y^2); y the forward's output
template <typename T, bool SIGMOID>
__global__ void __launch_bounds__(MAX_THREADS) output_backward(const T* __restrict__ grad, const T* __restrict__ y,
                                                                T* __restrict__ out, long long n, long long g_step) {
    using A = Acc<T>;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        const A v = to_acc(y[i]);
        out[i] = Store<T>::of(to_acc(grad[i * g_step]) * (SIGMOID ? v * (A(1) - v) : A(1) - v * v));
    }
}

template <typename T>
__global__ void __launch_bounds__(MAX_THREADS) dropout_apply(const T* __restrict__ x, T* __restrict__ out, long long n,
                                                              unsigned long long seed, unsigned long long offset,
                                                              float p, double scale) {
    using A = Acc<T>;
    const A kept = static_cast<A>(scale);
    const long long groups = (n + 3) / 4;
    for (long long q = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; q < groups;
         q += static_cast<long long>(gridDim.x) * blockDim.x) {
        unsigned int words[4];
        philox(seed, offset + static_cast<unsigned long long>(q), words);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const long long i = q * 4 + k;
            if (i < n) {
                out[i] = Store<T>::of(to_acc(x[i]) * (philox_uniform(words[k]) >= p ? kept : A(0)));
            }
        }
    }
}

namespace {

// The end of a column-sums kernel: each block has written its sums over its rows to
// partials[blockIdx.x * cols + c]; the last block to finish (counter) adds them in block order.
template <typename T>
__device__ __forceinline__ void finish_column_sums(const Acc<T>* partials, unsigned int* counter, T* sums,
                                                   long long cols) {
    using A = Acc<T>;
    __threadfence();
    __shared__ bool is_last;
    __syncthreads();
    if (threadIdx.x == 0) is_last = atomicAdd(counter, 1u) == gridDim.x - 1;
    converged_sync();
    if (!is_last) return;
    __threadfence();
    const volatile A* seen = partials;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
        A sum = A(0);
        for (long long b = 0; b < gridDim.x; ++b) sum += seen[b * cols + c];
        sums[c] = Store<T>::of(sum);
    }
    if (threadIdx.x == 0) *counter = 0u;
}

}  // namespace

template <typename T, bool TANH>
__global__ void __launch_bounds__(MAX_THREADS) gelu_backward_bias(
        const T* __restrict__ grad, const T* __restrict__ x, T* __restrict__ out, T* __restrict__ sums,
        Acc<T>* __restrict__ partials, unsigned int* __restrict__ counter, long long rows, long long cols,
        long long rows_per_block) {
    using A = Acc<T>;
    const long long first = static_cast<long long>(blockIdx.x) * rows_per_block;
    const long long last = min(rows, first + rows_per_block);
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
        A sum = A(0);
        for (long long r = first; r < last; ++r) {
            const long long i = r * cols + c;
            const T d = Store<T>::of(gelu_slope(to_acc(x[i]), TANH) * to_acc(grad[i]));
            out[i] = d;
            sum += to_acc(d);
        }
        partials[blockIdx.x * cols + c] = sum;
    }
    finish_column_sums(partials, counter, sums, cols);
}

template <typename T>
__global__ void __launch_bounds__(MAX_THREADS) column_sums(
        const T* __restrict__ x, T* __restrict__ sums, Acc<T>* __restrict__ partials, unsigned int* __restrict__ counter,
        long long rows, long long cols, long long rows_per_block) {
    using A = Acc<T>;
    const long long first = static_cast<long long>(blockIdx.x) * rows_per_block;
    const long long last = min(rows, first + rows_per_block);
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
        A sum = A(0);
        for (long long r = first; r < last; ++r) sum += to_acc(x[r * cols + c]);
        partials[blockIdx.x * cols + c] = sum;
    }
    finish_column_sums(partials, counter, sums, cols);
}
