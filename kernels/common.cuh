// gpugrad kernels: shared helpers.
//
// * Element types: __half, __nv_bfloat16, float, double; Acc<T> is the
//   accumulation type (float for the first three, double for double).
// * Rows: a row-wise op sees its input as R = outer * inner rows of C
//   elements; element c of row r = (o, i) sits at o*so + i*si + c*sc (in
//   elements).  sc == 1 is a contiguous row (16-byte vector loads); otherwise
//   (the class dim of an (N, C, d...) tensor, or a transposed matrix) each
//   row is read element by element, one thread per row, so that neighbouring
//   threads read neighbouring addresses.
// * Row groups: G lanes work on one row.  G <= 32 lanes are a slice of a
//   warp (several rows per warp for short rows, reduced with shuffles of
//   width G); G > 32 is a whole block per row (warp shuffles, then shared
//   memory).  All lanes of a warp must reach a group reduction.
// * The online log-sum-exp state (m, s) = (running max, sum of exp(x - m)).
//   The max propagates nan (fmaxf would drop it), and once it is not finite
//   (nan, +inf, or -inf for a row of -inf only) the row's statistics are
//   special and s is not used: torch gives nan for softmax, log_softmax and
//   cross-entropy there, and +inf / -inf / nan for log-sum-exp.
//
// * Row clusters (sm_90): a row too long for one block's shared memory, or
//   one of few long rows, is split over the S blocks of a thread-block
//   cluster along grid.y (ROW_CLUSTER(S)); each block keeps its chunk on chip
//   and the blocks merge their (m, s) through distributed shared memory
//   (cluster_merge: one round trip for all S blocks, one cluster.sync() per
//   row).  Few long rows take blocks of up to CLUSTER_THREADS in the forwards
//   of log-sum-exp and cross-entropy.  Below sm_90 the attribute and the merge
//   compile away and the launchers never launch those instantiations.
//
// Compiled by NVRTC (cupy.RawModule): no host headers; cuda_fp16.h,
// cuda_bf16.h and cooperative_groups.h come from the CUDA runtime headers directory.
#pragma once
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define GPUGRAD_CLUSTERS 1
#define ROW_CLUSTER(blocks) __cluster_dims__(1, blocks, 1)
#else
#define GPUGRAD_CLUSTERS 0
#define ROW_CLUSTER(blocks)
#endif

namespace gpugrad {

template <typename T> struct AccT { using type = float; };
template <> struct AccT<double> { using type = double; };
template <typename T> using Acc = typename AccT<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ double to_acc(double v) { return v; }

template <typename T> struct Store;
template <> struct Store<float> { __device__ static float of(float v) { return v; } };
template <> struct Store<__half> { __device__ static __half of(float v) { return __float2half_rn(v); } };
template <> struct Store<__nv_bfloat16> {
    __device__ static __nv_bfloat16 of(float v) { return __float2bfloat16_rn(v); }
};
template <> struct Store<double> { __device__ static double of(double v) { return v; } };

// exp through exp2 of a pre-scaled argument (one MUFU op) in float; exp in double.
__device__ __forceinline__ float fast_exp(float a) { return exp2f(a * 1.4426950408889634f); }
__device__ __forceinline__ double fast_exp(double a) { return exp(a); }
__device__ __forceinline__ float fast_log(float a) { return logf(a); }
__device__ __forceinline__ double fast_log(double a) { return log(a); }

template <typename A> __device__ __forceinline__ A neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double neg_inf<double>() {
    return __longlong_as_double(static_cast<long long>(0xfff0000000000000ULL));
}
template <typename A> __device__ __forceinline__ A pos_inf() { return -neg_inf<A>(); }
template <typename A> __device__ __forceinline__ A quiet_nan() { return pos_inf<A>() - pos_inf<A>(); }

// a == b with the sign of a zero (-0 != +0); nan is never the same value
template <typename A> __device__ __forceinline__ bool same_value(A a, A b) {
    return a == b && (a != A(0) || A(1) / a == A(1) / b);
}

// max that propagates nan from either side
template <typename A> __device__ __forceinline__ A nan_max(A a, A b) { return (a > b || a != a) ? a : b; }

// ---------------------------------------------------------------------------
// Row layouts.

struct Rows {
    long long inner;       // rows r = o * inner + i
    long long so, si, sc;  // element strides of o, i and the class index c
    __device__ __forceinline__ long long base(long long r) const { return (r / inner) * so + (r % inner) * si; }
};

// ---------------------------------------------------------------------------
// Online log-sum-exp.

template <typename A> struct MaxSum {
    A m;   // running max (nan if a nan was seen)
    A s;   // sum of exp(x - m); meaningful only while m is finite
};

template <typename A> __device__ __forceinline__ MaxSum<A> empty_max_sum() { return MaxSum<A>{neg_inf<A>(), A(0)}; }

template <typename A> __device__ __forceinline__ MaxSum<A> merge(MaxSum<A> a, MaxSum<A> b) {
    const A m = nan_max(a.m, b.m);
    if (!isfinite(m)) return MaxSum<A>{m, A(0)};
    // a.m, b.m are finite or -inf here: exp(-inf) = 0 drops an empty side
    return MaxSum<A>{m, a.s * fast_exp(a.m - m) + b.s * fast_exp(b.m - m)};
}

// Fold `count` values (count <= N) into the running state: one rescale per call.
template <typename A, int N>
__device__ __forceinline__ void accumulate(MaxSum<A>& st, const A (&v)[N], int count) {
    A chunk_max = neg_inf<A>();
#pragma unroll
    for (int k = 0; k < N; ++k)
        if (k < count) chunk_max = nan_max(chunk_max, v[k]);
    const A m = nan_max(st.m, chunk_max);
    if (!isfinite(m)) {
        st.m = m;
        st.s = A(0);
        return;
    }
    A s = st.s * fast_exp(st.m - m);
#pragma unroll
    for (int k = 0; k < N; ++k)
        if (k < count) s += fast_exp(v[k] - m);
    st.m = m;
    st.s = s;
}

// The row's statistics for the backward and for softmax: (m, ls) with
// exp(x - lse) = exp((x - m) - ls), accurate for large |lse|.  torch's
// log-sum-exp rule for an infinite max (shift by 0 instead) gives (0, +inf)
// and (0, -inf); a nan row gives (nan, nan).
template <typename A> __device__ __forceinline__ void finish(MaxSum<A> st, A& m, A& ls) {
    if (st.m != st.m) { m = st.m; ls = st.m; }
    else if (st.m == neg_inf<A>()) { m = A(0); ls = neg_inf<A>(); }
    else if (st.m == pos_inf<A>()) { m = A(0); ls = pos_inf<A>(); }
    else { m = st.m; ls = fast_log(st.s); }
}

// ---------------------------------------------------------------------------
// Reductions over the G lanes of a row group.  G = blockDim.x.  For G <= 32
// the block holds blockDim.y groups and lanes reduce with shuffles of width G
// (every lane of the warp must call); for G > 32 the block is one group and
// the call holds __syncthreads (every thread of the block must call).

constexpr unsigned FULL_MASK = 0xffffffffu;

template <typename A> __device__ __forceinline__ A warp_sum(A v, int width) {
    for (int offset = (width < 32 ? width : 32) >> 1; offset > 0; offset >>= 1)
        v += __shfl_xor_sync(FULL_MASK, v, offset);
    return v;
}

template <typename A> __device__ __forceinline__ MaxSum<A> warp_merge(MaxSum<A> v, int width) {
    for (int offset = (width < 32 ? width : 32) >> 1; offset > 0; offset >>= 1) {
        MaxSum<A> other{__shfl_xor_sync(FULL_MASK, v.m, offset), __shfl_xor_sync(FULL_MASK, v.s, offset)};
        v = merge(v, other);
    }
    return v;
}

// __syncthreads() after code where the lanes of a warp may have parted (one thread's atomic or
// volatile read, a loop whose trip count differs by lane).  bar.sync is an aligned barrier: every
// lane of a warp must reach it together, and ptxas does not always reconverge a warp before it (on
// an H200, cross_entropy_span_forward's warp 0 reached a barrier in two parts after thread 0 alone
// read the arrival word; from then on each barrier of the block let the other warps go one barrier
// early, and they stored a span before warp 0 had written its gradient).  __syncwarp() first makes
// the warp whole.
__device__ __forceinline__ void converged_sync() {
    __syncwarp();
    __syncthreads();
}

template <typename A> __device__ __forceinline__ A group_sum(A v, A* scratch) {
    v = warp_sum(v, blockDim.x);
    if (blockDim.x <= 32) return v;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : A(0);
    v = warp_sum(v, 32);
    __syncthreads();                          // scratch may be reused after return
    return v;
}

template <typename A> __device__ __forceinline__ MaxSum<A> group_merge(MaxSum<A> v, A* scratch_m, A* scratch_s) {
    v = warp_merge(v, blockDim.x);
    if (blockDim.x <= 32) return v;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if (lane == 0) { scratch_m[warp] = v.m; scratch_s[warp] = v.s; }
    __syncthreads();
    v = lane < warps ? MaxSum<A>{scratch_m[lane], scratch_s[lane]} : empty_max_sum<A>();
    v = warp_merge(v, 32);
    __syncthreads();
    return v;
}

// ---------------------------------------------------------------------------
// Traversal of one row by the G lanes of its group.
//
// Contiguous rows (sc == 1) go by 16-byte vectors (4 floats, 8 halves, 2
// doubles): a scalar head up to the first 16-byte boundary, UNROLL vectors in
// flight per lane, a scalar tail.  Strided rows go element by element.  The
// same lane visits the same elements in every pass, so a lane may keep what
// it read in a private cache (shared memory) and read it back without a barrier.

template <typename T> struct alignas(16) Vec {
    static constexpr int N = 16 / sizeof(T);
    T v[N];
};

constexpr int UNROLL = 4;

template <typename T> __device__ __forceinline__ int head_length(const T* p, int n) {
    const unsigned long long address = reinterpret_cast<unsigned long long>(p);
    const int head = static_cast<int>(((16 - (address & 15)) & 15) / sizeof(T));
    return head < n ? head : n;
}

// Shared-memory room for one cached row of n elements whose global start has
// `head` elements before its first 16-byte boundary: element j lives at j + shift.
template <typename T> __device__ __forceinline__ int cache_shift(int head) {
    constexpr int N = Vec<T>::N;
    return (N - head) % N;
}
// Room for one cached row in shared memory, a whole number of vectors (so that the
// next row's cache starts 16-byte aligned).
template <typename T> __device__ __forceinline__ int row_room(int n) {
    constexpr int N = Vec<T>::N;
    return (n + N + N - 1) / N * N;
}

// Elements of a row per chunk when it is split into `splits` chunks (grid.y):
// whole 16-byte vectors, so that every chunk starts at the row's 16-byte phase.
template <typename T> __device__ __forceinline__ int chunk_length(int cols, int splits) {
    constexpr int N = Vec<T>::N;
    const int per = (cols + splits - 1) / splits;
    return splits == 1 ? cols : (per + N - 1) / N * N;
}

// Calls scalar(j, value) and pack(j0, vec) over this lane's share of row
// `src` (element j at src[j * sc], or for a cache at src[j + shift]).
template <typename T, int U = UNROLL, typename Scalar, typename Pack>
__device__ __forceinline__ void traverse(const T* __restrict__ src, long long sc, int n, int head, int lane,
                                         int lanes, Scalar&& scalar, Pack&& pack) {
    if (sc != 1) {
        for (int j = lane; j < n; j += lanes) scalar(j, src[j * sc]);
        return;
    }
    constexpr int N = Vec<T>::N;
    for (int j = lane; j < head; j += lanes) scalar(j, src[j]);      // a group may have fewer lanes than the head
    const Vec<T>* vectors = reinterpret_cast<const Vec<T>*>(src + head);
    const int count = (n - head) / N;
    int i = lane;
    for (; i + (U - 1) * lanes < count; i += U * lanes) {
        Vec<T> packs[U];
#pragma unroll
        for (int u = 0; u < U; ++u) packs[u] = vectors[i + u * lanes];
#pragma unroll
        for (int u = 0; u < U; ++u) pack(head + (i + u * lanes) * N, packs[u]);
    }
    for (; i < count; i += lanes) pack(head + i * N, vectors[i]);
    for (int j = head + count * N + lane; j < n; j += lanes) scalar(j, src[j]);
}

// The row forwards that keep a row in shared memory and write its gradient (cross_entropy.cu,
// logsumexp.cu): vectors in flight per lane, 2 for half and bfloat16 (8 elements each), which then fit
// in 64 registers without spills (forward_min_blocks); UNROLL (4) for the others.
template <typename T> __host__ __device__ constexpr int forward_unroll() { return sizeof(T) == 2 ? 2 : UNROLL; }

// Blocks of 512 threads per SM those forwards are compiled for: 2 (at most 64 registers: warp-per-row
// launches hold 32 warps per SM) for float, half and bfloat16 on sm_80 and sm_90, which fit there without
// spills (cross-entropy's float forward below sm_90 with 2 vectors in flight: cross_entropy_unroll);
// 1 for double (it would spill).
template <typename T> __host__ __device__ constexpr int forward_min_blocks() { return sizeof(T) <= 4 ? 2 : 1; }

struct NoExtra {
    template <typename A, int N> __device__ __forceinline__ void operator()(int, const A (&)[N], int) const {}
};

// The online (m, s) of this lane's share of a row, keeping what it read in
// `cache` (when not null, contiguous rows only); extra(j0, values, count)
// sees the same values (cross-entropy's weighted sum for label smoothing).
template <typename T, int U = UNROLL, typename Extra = NoExtra>
__device__ __forceinline__ MaxSum<Acc<T>> lane_stats(const T* __restrict__ row, long long sc, int n, int lane,
                                                     int lanes, T* cache, Extra&& extra = Extra()) {
    using A = Acc<T>;
    constexpr int N = Vec<T>::N;
    MaxSum<A> st = empty_max_sum<A>();
    const int head = sc == 1 ? head_length(row, n) : 0;
    const int shift = cache_shift<T>(head);
    traverse<T, U>(row, sc, n, head, lane, lanes,
                [&](int j, T value) {
                    if (cache) cache[j + shift] = value;
                    const A v[1] = {to_acc(value)};
                    accumulate(st, v, 1);
                    extra(j, v, 1);
                },
                [&](int j0, const Vec<T>& p) {
                    if (cache) *reinterpret_cast<Vec<T>*>(cache + j0 + shift) = p;
                    A v[N];
#pragma unroll
                    for (int k = 0; k < N; ++k) v[k] = to_acc(p.v[k]);
                    accumulate(st, v, N);
                    extra(j0, v, N);
                });
    return st;
}

// out[j] = op(j, x[j]) over this lane's share of a row: x from the cache
// when there is one, else from global memory; vector stores where out and x
// share their 16-byte phase (and both are contiguous).
template <typename T, int U = UNROLL, typename Op>
__device__ __forceinline__ void write_row(const T* __restrict__ row, long long sc, const T* cache, T* __restrict__ out,
                                          long long out_sc, int n, int lane, int lanes, Op&& op) {
    constexpr int N = Vec<T>::N;
    const bool contiguous = sc == 1 && out_sc == 1;
    const int head = sc == 1 ? head_length(row, n) : 0;
    const bool same_phase = contiguous && ((reinterpret_cast<unsigned long long>(out) & 15) ==
                                           (reinterpret_cast<unsigned long long>(row) & 15));
    const int shift = cache_shift<T>(head);
    auto scalar = [&](int j, T value) { out[j * out_sc] = Store<T>::of(op(j, to_acc(value))); };
    auto pack = [&](int j0, const Vec<T>& p) {
        Vec<T> r;
#pragma unroll
        for (int k = 0; k < N; ++k) r.v[k] = Store<T>::of(op(j0 + k, to_acc(p.v[k])));
        if (same_phase) {
            *reinterpret_cast<Vec<T>*>(out + j0) = r;
        } else {
#pragma unroll
            for (int k = 0; k < N; ++k) out[(j0 + k) * out_sc] = r.v[k];
        }
    };
    if (cache && sc == 1) traverse<T, U>(cache + shift, 1, n, head, lane, lanes, scalar, pack);
    else traverse<T, U>(row, sc, n, head, lane, lanes, scalar, pack);
}

// Two rows read together (softmax backward's y and g): scalar(j, a_j, b_j)
// and pack(j0, va, vb) over this lane's share.  Vector loads when `vector`
// (both contiguous, same 16-byte phase; head = a's head), else element by element.
template <typename T, typename Scalar, typename Pack>
__device__ __forceinline__ void traverse2(const T* __restrict__ a, long long sa, const T* __restrict__ b, long long sb,
                                          int n, bool vector, int head, int lane, int lanes, Scalar&& scalar,
                                          Pack&& pack) {
    if (!vector) {
        for (int j = lane; j < n; j += lanes) scalar(j, a[j * sa], b[j * sb]);
        return;
    }
    constexpr int N = Vec<T>::N;
    for (int j = lane; j < head; j += lanes) scalar(j, a[j], b[j]);
    const Vec<T>* va = reinterpret_cast<const Vec<T>*>(a + head);
    const Vec<T>* vb = reinterpret_cast<const Vec<T>*>(b + head);
    const int count = (n - head) / N;
    int i = lane;
    for (; i + (UNROLL - 1) * lanes < count; i += UNROLL * lanes) {
        Vec<T> pa[UNROLL], pb[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            pa[u] = va[i + u * lanes];
            pb[u] = vb[i + u * lanes];
        }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) pack(head + (i + u * lanes) * N, pa[u], pb[u]);
    }
    for (; i < count; i += lanes) pack(head + i * N, va[i], vb[i]);
    for (int j = head + count * N + lane; j < n; j += lanes) scalar(j, a[j], b[j]);
}

// Keep the lanes of a row group in step before a lane's private cache is
// reused for the next row (rows of another phase map elements to other lanes).
__device__ __forceinline__ void group_barrier() {
    if (blockDim.x > 32) __syncthreads();
    else __syncwarp(FULL_MASK);
}

// A bad index: [kind, value, bound] in the error word, which is pinned host
// memory the GPU writes directly (common.cuh's callers get its address); the
// host reads it lazily and raises.  No device assert, so the CUDA context stays
// usable.  Racing reports all name bad indices, so plain stores will do; kind
// is written last, after a system-wide fence.
__device__ __forceinline__ void record_bad_index(long long* error, long long kind, long long value, long long bound) {
    volatile long long* word = error;
    if (word[0] == 0) {
        word[1] = value;
        word[2] = bound;
        __threadfence_system();
        word[0] = kind;
    }
}

constexpr int MAX_THREADS = 512;   // the kernels' __launch_bounds__ and the launchers' largest block
// The row cluster forwards of log-sum-exp and cross-entropy (sm_90): blocks of up to 1024 threads, so that
// few long rows spread over twice the threads of MAX_THREADS blocks (launch.py, cluster_threads); they
// never call block_tree_sum (which holds MAX_THREADS values).
constexpr int CLUSTER_THREADS = 1024;

// A fixed-shape tree sum over the threads of a block (deterministic); every
// thread must call; thread 0 gets the total.  scratch holds blockDim.x*y values.
template <typename A> __device__ __forceinline__ A block_tree_sum(A v, A* scratch) {
    const int flat = threadIdx.y * blockDim.x + threadIdx.x;
    const int threads = blockDim.x * blockDim.y;
    scratch[flat] = v;
    __syncthreads();
    for (int half = MAX_THREADS / 2; half > 0; half >>= 1) {
        if (half < threads && flat < half && flat + half < threads) scratch[flat] += scratch[flat + half];
        __syncthreads();
    }
    const A total = scratch[0];
    __syncthreads();
    return total;
}

// Two grid-wide sums with a fixed order (deterministic): each block adds up
// its threads' values and writes its partials; the last block to finish
// (atomic counter) adds the partials up in block order, calls done(a, b), and
// resets the counter for the next launch.  Every thread of every block must call.
// Two sums over the G lanes of a group at once (group_sum's order for each; the shuffles of the
// two interleave).  scratch holds 64 values.
template <typename A> __device__ __forceinline__ void group_sum2(A& a, A& b, A* scratch) {
    for (int offset = (blockDim.x < 32 ? blockDim.x : 32) >> 1; offset > 0; offset >>= 1) {
        a += __shfl_xor_sync(FULL_MASK, a, offset);
        b += __shfl_xor_sync(FULL_MASK, b, offset);
    }
    if (blockDim.x <= 32) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if (lane == 0) { scratch[warp] = a; scratch[32 + warp] = b; }
    __syncthreads();
    a = lane < warps ? scratch[lane] : A(0);
    b = lane < warps ? scratch[32 + lane] : A(0);
    for (int offset = 16; offset > 0; offset >>= 1) {
        a += __shfl_xor_sync(FULL_MASK, a, offset);
        b += __shfl_xor_sync(FULL_MASK, b, offset);
    }
    __syncthreads();
}

// Two sums over the threads of a block in a fixed order (deterministic): block_tree_sum's (any
// blockDim), or with TREE false group_sum2's warp shuffles (blockDim.y == 1; fewer barriers).
template <bool TREE, typename A> __device__ __forceinline__ void fixed_block_sum2(A& a, A& b, A* scratch) {
    if constexpr (TREE) {
        a = block_tree_sum(a, scratch);
        b = block_tree_sum(b, scratch);
    } else {
        group_sum2(a, b, scratch);
    }
}

template <bool TREE = true, typename A, typename Done>
__device__ __forceinline__ void last_block_sum2(A a, A b, A* partials, unsigned int* counter, A* scratch, Done&& done) {
    // every block of the grid (grid.y too) adds its (a, b); the last one to finish adds the
    // partials in block order (deterministic) and calls done(sum a, sum b) in its thread 0
    __shared__ bool is_last;
    const int flat = threadIdx.y * blockDim.x + threadIdx.x;
    const int threads = blockDim.x * blockDim.y;
    const int blocks = gridDim.x * gridDim.y, block = blockIdx.y * gridDim.x + blockIdx.x;
    fixed_block_sum2<TREE>(a, b, scratch);
    if (flat == 0) {
        partials[block] = a;
        partials[blocks + block] = b;
        __threadfence();
        is_last = atomicAdd(counter, 1u) == static_cast<unsigned int>(blocks - 1);
    }
    converged_sync();
    if (!is_last) return;
    __threadfence();
    const volatile A* seen = partials;
    A sa = A(0), sb = A(0);
    for (int k = flat; k < blocks; k += threads) {
        sa += seen[k];
        sb += seen[blocks + k];
    }
    fixed_block_sum2<TREE>(sa, sb, scratch);
    if (flat == 0) {
        done(sa, sb);
        *counter = 0u;
    }
}

// A row split over grid.y = splits blocks (one row per block, blockDim.y == 1):
// each block hands in the state of its chunk (st, and one more sum, `extra`,
// when partial_x is given) from thread 0; the last block of the row to arrive
// (an atomic counter per row, left at zero) merges all chunks in chunk order
// (deterministic) into thread 0's st and extra.  Called by every thread of the
// block; returns, in every thread, whether this block holds the merged row.
template <typename A>
__device__ __forceinline__ bool merge_split_row(MaxSum<A>& st, A& extra, A* partial_m, A* partial_s, A* partial_x,
                                                unsigned int* row_counters, long long row) {
    __shared__ bool last_chunk;
    const int splits = gridDim.y;
    const long long at = row * splits + blockIdx.y;
    if (threadIdx.x == 0) {
        partial_m[at] = st.m;
        partial_s[at] = st.s;
        if (partial_x != nullptr) partial_x[at] = extra;
        __threadfence();
        last_chunk = atomicAdd(row_counters + row, 1u) == static_cast<unsigned int>(splits - 1);
    }
    converged_sync();
    const bool merge_here = last_chunk;
    __syncthreads();                      // last_chunk is rewritten for the next row
    if (merge_here && threadIdx.x == 0) {
        __threadfence();
        st = empty_max_sum<A>();
        extra = A(0);
        for (int k = 0; k < splits; ++k) {
            const volatile A* pm = partial_m + row * splits + k;
            const volatile A* ps = partial_s + row * splits + k;
            st = merge(st, MaxSum<A>{*pm, *ps});
            if (partial_x != nullptr) extra += *(static_cast<const volatile A*>(partial_x) + row * splits + k);
        }
        row_counters[row] = 0u;
    }
    return merge_here;
}

// The S blocks of a row cluster (grid.y = S, one row per block at a time)
// merge the states of their chunks, st and one more sum `extra`, through
// distributed shared memory: each block's thread 0 puts its (m, s, extra) in
// its slot, one cluster.sync(), then lane k of warp 0 reads block k's slot
// (one distributed-shared-memory round trip for all S, not a chain), warp 0
// merges them with shuffles (the same fixed tree in every block: every block
// gets the same merged row, deterministic) and hands the result to the block
// through shared memory.  The slots alternate by `round` (the caller's count
// of merges, starting at 0), so the next row's writes need no second
// cluster.sync(): a block rewrites a slot only after the next merge's sync,
// which every block reaches after its reads.  cluster_done() at the end of
// the kernel keeps every block's slots alive until the last read.  Every thread
// of every block of the cluster must call, with its group's merged st and extra
// (group_merge, group_sum); S <= 32.
template <typename A> __device__ __forceinline__ MaxSum<A> cluster_merge(MaxSum<A> st, A& extra, int& round) {
#if GPUGRAD_CLUSTERS
    namespace cg = cooperative_groups;
    __shared__ A slot[2][3];
    __shared__ A merged[3];
    cg::cluster_group cluster = cg::this_cluster();
    A* mine = slot[round & 1];
    ++round;
    if (threadIdx.x == 0) {
        mine[0] = st.m;
        mine[1] = st.s;
        mine[2] = extra;
    }
    cluster.sync();
    if (threadIdx.x < 32) {
        const int blocks = static_cast<int>(cluster.num_blocks());
        MaxSum<A> total = empty_max_sum<A>();
        A sum = A(0);
        if (static_cast<int>(threadIdx.x) < blocks) {
            const A* other = cluster.map_shared_rank(mine, static_cast<int>(threadIdx.x));
            total = MaxSum<A>{other[0], other[1]};
            sum = other[2];
        }
        total = warp_merge(total, 32);
        sum = warp_sum(sum, 32);
        if (threadIdx.x == 0) {
            merged[0] = total.m;
            merged[1] = total.s;
            merged[2] = sum;
        }
    }
    __syncthreads();
    const MaxSum<A> total{merged[0], merged[1]};
    extra = merged[2];
    __syncthreads();                      // merged is rewritten by the next merge
    return total;
#else
    __trap();                             // never launched below sm_90
    return st;
#endif
}

// The end of a row cluster kernel: no block exits while another may still read its slots.
__device__ __forceinline__ void cluster_done() {
#if GPUGRAD_CLUSTERS
    cooperative_groups::this_cluster().sync();
#endif
}

// ---------------------------------------------------------------------------
// Dropout's counter-based generator (elementwise.cu's dropout_apply, attention.cu).

// Philox4x32-10 (Salmon et al., 2011): four 32-bit words of counter (ctr, 0, 0) under key.
__device__ __forceinline__ void philox(unsigned long long key, unsigned long long ctr, unsigned int (&out)[4]) {
    unsigned int c0 = static_cast<unsigned int>(ctr), c1 = static_cast<unsigned int>(ctr >> 32), c2 = 0u, c3 = 0u;
    unsigned int k0 = static_cast<unsigned int>(key), k1 = static_cast<unsigned int>(key >> 32);
    for (int round = 0; round < 10; ++round) {
        const unsigned long long p0 = 0xD2511F53ull * c0, p1 = 0xCD9E8D57ull * c2;
        const unsigned int hi0 = static_cast<unsigned int>(p0 >> 32), lo0 = static_cast<unsigned int>(p0);
        const unsigned int hi1 = static_cast<unsigned int>(p1 >> 32), lo1 = static_cast<unsigned int>(p1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

// A word of philox as u in [0, 1): its top 24 bits times 2^-24.
__device__ __forceinline__ float philox_uniform(unsigned int word) {
    return static_cast<float>(word >> 8) * 5.9604644775390625e-08f;
}

// ---------------------------------------------------------------------------
// Spans of short rows (small C, many rows).
//
// The rows r0 .. r0 + R - 1 of a row-contiguous array (row r at r * C, elements
// contiguous) are ONE span of R * C elements: a block reads the span with 16-byte
// vector loads aligned across the whole span (scalar loads only for the elements
// before its first and after its last 16-byte boundary) into shared memory, where
// element k sits at k + shift (the span's 16-byte phase, so that the vectors
// land aligned there too); one thread then works on each row in shared memory and
// the block writes the span back the same way.  Each 16-byte sector of a row
// array is then read (written) whole, by full vectors, whatever the
// rows' length or phase: a row of 10 floats no longer splits into a scalar head,
// one vector and a scalar tail.

constexpr int SPAN_UNROLL = 4;     // vectors in flight per thread

// smem[k + shift] = src[k] for k < count (shift: the span's 16-byte phase), by the threads of the block
// (blockDim.x, blockDim.y == 1) in two steps: issue() starts the loads of the span's two
// scalar ends and of its first SPAN_UNROLL vectors per thread into registers, commit()
// stores them into shared memory and copies the rest (spans longer than that).  Work that
// does not need the span goes between the two (its loads are in flight meanwhile); the
// caller syncs after commit() before reading smem.
template <typename T> struct SpanLoad {
    static constexpr int N = Vec<T>::N;
    const T* src;
    int count, head, shift, vectors, tail_start;
    bool has_head, has_tail;
    T head_value, tail_value;
    Vec<T> batch[SPAN_UNROLL];

    __device__ __forceinline__ void issue(const T* __restrict__ from, int n) {
        src = from;
        count = n;
        head = head_length(from, n);
        shift = cache_shift<T>(head);
        vectors = (n - head) / N;
        tail_start = head + vectors * N;
        const int tid = threadIdx.x, threads = blockDim.x;
        // a head and a tail have fewer than N elements, and a block more than N threads
        has_head = tid < head;
        has_tail = tail_start + tid < n;
        head_value = has_head ? from[tid] : T();
        tail_value = has_tail ? from[tail_start + tid] : T();
        const Vec<T>* vec = reinterpret_cast<const Vec<T>*>(from + head);
#pragma unroll
        for (int u = 0; u < SPAN_UNROLL; ++u)
            if (tid + u * threads < vectors) batch[u] = vec[tid + u * threads];
    }

    __device__ __forceinline__ void commit(T* smem) {
        const int tid = threadIdx.x, threads = blockDim.x;
        const Vec<T>* vec = reinterpret_cast<const Vec<T>*>(src + head);
        Vec<T>* to = reinterpret_cast<Vec<T>*>(smem + head + shift);
#pragma unroll
        for (int u = 0; u < SPAN_UNROLL; ++u)
            if (tid + u * threads < vectors) to[tid + u * threads] = batch[u];
        if (has_head) smem[tid + shift] = head_value;
        if (has_tail) smem[tail_start + tid + shift] = tail_value;
        for (int i0 = tid + SPAN_UNROLL * threads; i0 < vectors; i0 += SPAN_UNROLL * threads) {
            Vec<T> p[SPAN_UNROLL];
#pragma unroll
            for (int u = 0; u < SPAN_UNROLL; ++u)
                if (i0 + u * threads < vectors) p[u] = vec[i0 + u * threads];
#pragma unroll
            for (int u = 0; u < SPAN_UNROLL; ++u)
                if (i0 + u * threads < vectors) to[i0 + u * threads] = p[u];
        }
    }
};

// dst[k] = smem[k + shift] for k < count (smem as SpanLoad left it, shift its shift),
// by the threads of the block: aligned 16-byte stores into dst, read from shared memory as
// vectors when dst has the source's 16-byte phase, else element by element.  The caller
// syncs before (smem written by other threads).
template <typename T>
__device__ __forceinline__ void store_span(T* __restrict__ dst, int count, const T* smem, int shift) {
    constexpr int N = Vec<T>::N;
    const int head = head_length(dst, count);
    const int own = cache_shift<T>(head);
    const int vectors = (count - head) / N;
    const int tail_start = head + vectors * N;
    const int tid = threadIdx.x, threads = blockDim.x;
    if (tid < head) dst[tid] = smem[tid + shift];
    if (tail_start + tid < count) dst[tail_start + tid] = smem[tail_start + tid + shift];
    Vec<T>* to = reinterpret_cast<Vec<T>*>(dst + head);
    if (own == shift) {
        const Vec<T>* from = reinterpret_cast<const Vec<T>*>(smem + head + shift);
        for (int i = tid; i < vectors; i += threads) to[i] = from[i];
    } else {
        for (int i = tid; i < vectors; i += threads) {
            Vec<T> p;
#pragma unroll
            for (int k = 0; k < N; ++k) p.v[k] = smem[head + i * N + k + shift];
            to[i] = p;
        }
    }
}

// Shared memory for one span of `rows` rows of `cols` elements (SpanLoad's shift included),
// a whole number of 16-byte vectors.
template <typename T> __host__ __device__ constexpr int span_room(int rows, int cols) {
    return (rows * cols + 2 * Vec<T>::N - 1) / Vec<T>::N * Vec<T>::N;
}

// The columns of a row in the order its thread visits them: starting at the row's index within
// the span, so that the threads of a warp reading their rows' c-th visit hit different banks.
struct RowWalk {
    int c, cols;
    __device__ __forceinline__ RowWalk(int row_in_span, int cols_) : c(row_in_span % cols_), cols(cols_) {}
    __device__ __forceinline__ int next() {
        const int at = c;
        c = c + 1 == cols ? 0 : c + 1;
        return at;
    }
};

// The (m, s) of one row of `cols` elements at row[0 .. cols) in shared memory, by its
// thread in two passes (the max, then the sum of exp(x - m)), as the NumPy twins'
// row_stats; `extra(c, value)` sees each value in the first pass.
template <typename T, typename Extra>
__device__ __forceinline__ MaxSum<Acc<T>> span_row_stats(const T* row, int cols, int row_in_span, Extra&& extra) {
    using A = Acc<T>;
    A m = neg_inf<A>();
    RowWalk walk(row_in_span, cols);
    for (int k = 0; k < cols; ++k) {
        const int c = walk.next();
        const A v = to_acc(row[c]);
        m = nan_max(m, v);
        extra(c, v);
    }
    if (!isfinite(m)) return MaxSum<A>{m, A(0)};
    A s = A(0);
    for (int k = 0; k < cols; ++k) {
        const int c = walk.next();
        s += fast_exp(to_acc(row[c]) - m);
    }
    return MaxSum<A>{m, s};
}

}  // namespace gpugrad
