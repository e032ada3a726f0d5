// gpugrad kernels: shared helpers.
//
// * Acc<T>: the accumulation type (float for half and float, double for double).
// * The online log-sum-exp state (m, s) = (running max, sum of exp(x - m)) and
//   its merge, careful with -inf (no -inf - -inf = nan).
// * Reductions across the threads of one row: warp shuffles, then shared
//   memory across the warps of a block.  A row is handled by blockDim.x threads
//   (a multiple of 32); when blockDim.x > 32 the block holds one row
//   (blockDim.y == 1), so the block-level step may use __syncthreads.
// * Row traversal with 16-byte vector loads (4 floats, 8 halves, 2 doubles):
//   a scalar head up to the first 16-byte boundary, UNROLL vectors in flight
//   per thread, a scalar tail.
//
// Compiled by NVRTC (cupy.RawModule): no host headers; cuda_fp16.h comes from
// the CUDA runtime headers directory.
#pragma once
#include <cuda_fp16.h>

namespace gpugrad {

template <typename T> struct AccT { using type = float; };
template <> struct AccT<double> { using type = double; };
template <typename T> using Acc = typename AccT<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ double to_acc(double v) { return v; }

template <typename T> struct Store;
template <> struct Store<float> { __device__ static float of(float v) { return v; } };
template <> struct Store<__half> { __device__ static __half of(float v) { return __float2half_rn(v); } };
template <> struct Store<double> { __device__ static double of(double v) { return v; } };

// exp through exp2 of a pre-scaled argument (one MUFU op); accurate to a few
// ulp for the arguments that matter (|a| < ~30; smaller terms are negligible).
__device__ __forceinline__ float fast_exp(float a) { return exp2f(a * 1.4426950408889634f); }
__device__ __forceinline__ double fast_exp(double a) { return exp(a); }
__device__ __forceinline__ float fast_log(float a) { return logf(a); }
__device__ __forceinline__ double fast_log(double a) { return log(a); }
__device__ __forceinline__ float max_ignoring_nan(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double max_ignoring_nan(double a, double b) { return fmax(a, b); }

template <typename A> __device__ __forceinline__ A neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double neg_inf<double>() {
    return __longlong_as_double(static_cast<long long>(0xfff0000000000000ULL));
}
template <typename A> __device__ __forceinline__ A pos_inf() { return -neg_inf<A>(); }

// ---------------------------------------------------------------------------
// Online log-sum-exp.

template <typename A> struct MaxSum {
    A m;   // running max (NaNs ignored here; they reach s and poison the result)
    A s;   // sum of exp(x - m)
};

template <typename A> __device__ __forceinline__ MaxSum<A> empty_max_sum() {
    return MaxSum<A>{neg_inf<A>(), A(0)};
}

// (m1, s1) + (m2, s2) = (m, s1 e^(m1-m) + s2 e^(m2-m)) with m = max(m1, m2);
// when both are -inf the result stays (-inf, 0).
template <typename A> __device__ __forceinline__ MaxSum<A> merge(MaxSum<A> a, MaxSum<A> b) {
    A m = max_ignoring_nan(a.m, b.m);
    if (m == neg_inf<A>()) return MaxSum<A>{m, A(0)};
    return MaxSum<A>{m, a.s * fast_exp(a.m - m) + b.s * fast_exp(b.m - m)};
}

// Fold `count` values (count <= N) into the running state: one rescale per call.
template <typename A, int N>
__device__ __forceinline__ void accumulate(MaxSum<A>& st, const A (&v)[N], int count) {
    A chunk_max = neg_inf<A>();
#pragma unroll
    for (int k = 0; k < N; ++k)
        if (k < count) chunk_max = max_ignoring_nan(chunk_max, v[k]);
    A m = max_ignoring_nan(st.m, chunk_max);
    if (m == neg_inf<A>()) return;           // everything so far is -inf
    A s = st.s * fast_exp(st.m - m);
#pragma unroll
    for (int k = 0; k < N; ++k)
        if (k < count) s += fast_exp(v[k] - m);
    st.m = m;
    st.s = s;
}

// lse = m + ls, returned apart: exp(x - lse) = exp((x - m) - ls) stays accurate
// for large |lse|.  torch's rule for an infinite max: shift by 0 instead, so an
// all -inf row gives -inf and a row holding +inf gives +inf.
template <typename A> __device__ __forceinline__ void finish(MaxSum<A> st, A& m, A& ls) {
    if (st.m == neg_inf<A>()) { m = A(0); ls = neg_inf<A>(); }
    else if (st.m == pos_inf<A>()) { m = A(0); ls = pos_inf<A>(); }
    else { m = st.m; ls = fast_log(st.s); }
}

// ---------------------------------------------------------------------------
// Reductions over the blockDim.x threads of a row.  Every thread of the block
// must call these (they may hold __syncthreads); all get the result.

constexpr unsigned FULL_MASK = 0xffffffffu;

template <typename A> __device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(FULL_MASK, v, offset);
    return v;
}

template <typename A> __device__ __forceinline__ MaxSum<A> warp_merge(MaxSum<A> v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        MaxSum<A> other{__shfl_xor_sync(FULL_MASK, v.m, offset), __shfl_xor_sync(FULL_MASK, v.s, offset)};
        v = merge(v, other);
    }
    return v;
}

template <typename A> __device__ __forceinline__ A row_sum(A v, A* scratch) {
    v = warp_sum(v);
    if (blockDim.x == 32) return v;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : A(0);
    v = warp_sum(v);
    __syncthreads();                          // scratch may be reused after return
    return v;
}

template <typename A> __device__ __forceinline__ MaxSum<A> row_merge(MaxSum<A> v, A* scratch_m, A* scratch_s) {
    v = warp_merge(v);
    if (blockDim.x == 32) return v;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if (lane == 0) { scratch_m[warp] = v.m; scratch_s[warp] = v.s; }
    __syncthreads();
    v = lane < warps ? MaxSum<A>{scratch_m[lane], scratch_s[lane]} : empty_max_sum<A>();
    v = warp_merge(v);
    __syncthreads();
    return v;
}

// ---------------------------------------------------------------------------
// 16-byte vectors and row traversal.

template <typename T> struct alignas(16) Vec {
    static constexpr int N = 16 / sizeof(T);
    T v[N];
};

constexpr int UNROLL = 4;   // independent 16-byte loads in flight per thread

template <typename T> __device__ __forceinline__ int head_length(const T* p, int n) {
    const unsigned long long address = reinterpret_cast<unsigned long long>(p);
    const int head = static_cast<int>(((16 - (address & 15)) & 15) / sizeof(T));
    return head < n ? head : n;
}

// Calls f(j, v, count) with v[k] = row[j + k] (as Acc<T>) for k < count, over
// the whole row of n elements, this thread's share of it (thread `tid` of
// `threads`).  count is Vec<T>::N except for the scalar head and tail.
template <typename T, typename F>
__device__ __forceinline__ void visit_row(const T* __restrict__ row, int n, int tid, int threads, F&& f) {
    using A = Acc<T>;
    constexpr int N = Vec<T>::N;
    const int head = head_length(row, n);
    if (tid < head) {
        A v[N];
        v[0] = to_acc(row[tid]);
        f(tid, v, 1);
    }
    const Vec<T>* vectors = reinterpret_cast<const Vec<T>*>(row + head);
    const int count = (n - head) / N;
    int i = tid;
    for (; i + (UNROLL - 1) * threads < count; i += UNROLL * threads) {
        Vec<T> packs[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) packs[u] = vectors[i + u * threads];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            A v[N];
#pragma unroll
            for (int k = 0; k < N; ++k) v[k] = to_acc(packs[u].v[k]);
            f(head + (i + u * threads) * N, v, N);
        }
    }
    for (; i < count; i += threads) {
        const Vec<T> pack = vectors[i];
        A v[N];
#pragma unroll
        for (int k = 0; k < N; ++k) v[k] = to_acc(pack.v[k]);
        f(head + i * N, v, N);
    }
    const int tail = head + count * N + tid;
    if (tail < n) {
        A v[N];
        v[0] = to_acc(row[tail]);
        f(tail, v, 1);
    }
}

// out[j] = op(j, a[j], b[j]) over a row (b may be null: op then gets 0).
// Vector loads and stores where a, b and out share their 16-byte alignment.
template <typename T, typename Op>
__device__ __forceinline__ void transform_row(const T* __restrict__ a, const T* __restrict__ b,
                                              T* __restrict__ out, int n, int tid, int threads, Op&& op) {
    using A = Acc<T>;
    constexpr int N = Vec<T>::N;
    const unsigned long long misalign = reinterpret_cast<unsigned long long>(a) & 15;
    const bool vectorised = (reinterpret_cast<unsigned long long>(out) & 15) == misalign &&
                            (b == nullptr || (reinterpret_cast<unsigned long long>(b) & 15) == misalign);
    const int head = vectorised ? head_length(a, n) : n;
    for (int j = tid; j < head; j += threads)
        out[j] = Store<T>::of(op(j, to_acc(a[j]), b ? to_acc(b[j]) : A(0)));
    if (!vectorised) return;
    const Vec<T>* va = reinterpret_cast<const Vec<T>*>(a + head);
    const Vec<T>* vb = reinterpret_cast<const Vec<T>*>(b ? b + head : a + head);
    Vec<T>* vout = reinterpret_cast<Vec<T>*>(out + head);
    const int count = (n - head) / N;
    int i = tid;
    for (; i + (UNROLL - 1) * threads < count; i += UNROLL * threads) {
        Vec<T> pa[UNROLL], pb[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            pa[u] = va[i + u * threads];
            if (b) pb[u] = vb[i + u * threads];
        }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            Vec<T> r;
            const int j0 = head + (i + u * threads) * N;
#pragma unroll
            for (int k = 0; k < N; ++k)
                r.v[k] = Store<T>::of(op(j0 + k, to_acc(pa[u].v[k]), b ? to_acc(pb[u].v[k]) : A(0)));
            vout[i + u * threads] = r;
        }
    }
    for (; i < count; i += threads) {
        const Vec<T> pa = va[i];
        Vec<T> pb;
        if (b) pb = vb[i];
        Vec<T> r;
        const int j0 = head + i * N;
#pragma unroll
        for (int k = 0; k < N; ++k)
            r.v[k] = Store<T>::of(op(j0 + k, to_acc(pa.v[k]), b ? to_acc(pb.v[k]) : A(0)));
        vout[i] = r;
    }
    for (int j = head + count * N + tid; j < n; j += threads)
        out[j] = Store<T>::of(op(j, to_acc(a[j]), b ? to_acc(b[j]) : A(0)));
}

// log-sum-exp of one row, over the blockDim.x threads of the row, as (m, ls)
// with lse = m + ls: one online pass (every thread of the block must call it).
template <typename T>
__device__ __forceinline__ void row_logsumexp(const T* __restrict__ row, int cols, bool active,
                                              Acc<T>* scratch_m, Acc<T>* scratch_s, Acc<T>& m, Acc<T>& ls) {
    using A = Acc<T>;
    MaxSum<A> state = empty_max_sum<A>();
    if (active)
        visit_row(row, cols, threadIdx.x, blockDim.x,
                  [&](int, const A (&v)[Vec<T>::N], int count) { accumulate(state, v, count); });
    state = row_merge(state, scratch_m, scratch_s);
    finish(state, m, ls);
}

// A bad class index: the first one is kept in error[1..2], error[0] becomes 1.
// The Python side reads the word lazily and raises; no device assert, so the
// CUDA context stays usable.
__device__ __forceinline__ void record_bad_target(long long* error, long long target, long long classes) {
    if (atomicCAS(reinterpret_cast<unsigned long long*>(error), 0ULL, 1ULL) == 0ULL) {
        error[1] = target;
        error[2] = classes;
    }
}

}  // namespace gpugrad
