// Softmax and log-softmax over the rows of a strided array, forward and backward.
//
// Math: forward  y = exp((x - m) - ls)   (LOG: y = (x - m) - ls),  m, ls as in
//       logsumexp.cu; a row holding nan or +inf, or only -inf, gives nan (torch),
//       a row of only -inf 0 with closed_zero (torch's _safe_softmax, attention's);
//       backward softmax:     gx = y * (g - sum_c g_c y_c)
//                log_softmax: gx = g - exp(y) * sum_c g_c
// Bytes: forward reads x once when a row group's rows fit in shared memory
//       (each lane keeps what it read: no barrier between the two passes), else
//       twice (the second mostly from L2), and writes y; backward reads y and g
//       once on the same condition and writes gx.  Only y is kept for backward.
// Launch: as logsumexp.cu (S = 1); dynamic shared memory = rows per block x
//       room for a row (common.cuh, row_room) when caching, up to the opt-in
//       limit.  On sm_90 rows beyond one block's shared memory, and few long
//       rows, go to a row cluster of S blocks along grid.y, each keeping its
//       chunk (cluster_merge), so that x (y and g) are read once at every length.
#include "common.cuh"

using namespace gpugrad;

// One row per row group (CLUSTER == 1), or chunks of a row per block of a row cluster along grid.y.
template <typename T, bool LOG, int CLUSTER>
__device__ __forceinline__ void softmax_forward_rows(
        const T* __restrict__ x, long long inner, long long so, long long si, long long sc, long long rows, int cols,
        T* __restrict__ y, long long y_so, long long y_si, long long y_sc, int use_cache,
        int closed_zero) {
    using A = Acc<T>;
    extern __shared__ __align__(16) unsigned char shared_rows[];
    __shared__ A scratch_m[32], scratch_s[32];
    const Rows layout{inner, so, si, sc};
    const Rows out_layout{inner, y_so, y_si, y_sc};
    const int chunk_cols = chunk_length<T>(cols, gridDim.y);
    const int begin = min(cols, static_cast<int>(blockIdx.y) * chunk_cols), end = min(cols, begin + chunk_cols);
    T* cache = use_cache && sc == 1 ? reinterpret_cast<T*>(shared_rows) + threadIdx.y * row_room<T>(chunk_cols)
                                    : nullptr;
    [[maybe_unused]] int merges = 0;          // cluster_merge's rounds
    for (long long group = static_cast<long long>(blockIdx.x) * blockDim.y; group < rows;
         group += static_cast<long long>(gridDim.x) * blockDim.y) {
        const long long row = group + threadIdx.y;
        const bool active = row < rows;
        const T* x_row = x + (active ? layout.base(row) + begin * sc : 0);
        MaxSum<A> st = empty_max_sum<A>();
        if (active) st = lane_stats(x_row, sc, end - begin, threadIdx.x, blockDim.x, cache);
        st = group_merge(st, scratch_m, scratch_s);
        if constexpr (CLUSTER > 1) {
            A unused = A(0);
            st = cluster_merge(st, unused, merges);
        }
        A m, ls;
        finish(st, m, ls);
        const bool special = !isfinite(ls);
        if (active)
            write_row<T>(x_row, sc, cache, y + out_layout.base(row) + begin * y_sc, y_sc, end - begin, threadIdx.x,
                         blockDim.x, [&](int, A v) {
                             if (special) return closed_zero && ls == neg_inf<A>() ? A(0) : quiet_nan<A>();
                             const A shifted = (v - m) - ls;
                             return LOG ? shifted : fast_exp(shifted);
                         });
        if (cache) group_barrier();
    }
    if constexpr (CLUSTER > 1) cluster_done();
}

template <typename T, bool LOG>
__global__ void __launch_bounds__(512, 1) softmax_forward(
        const T* __restrict__ x, long long inner, long long so, long long si, long long sc, long long rows, int cols,
        T* __restrict__ y, long long y_so, long long y_si, long long y_sc, int use_cache,
        int closed_zero) {
    softmax_forward_rows<T, LOG, 1>(x, inner, so, si, sc, rows, cols, y, y_so, y_si, y_sc, use_cache, closed_zero);
}

// A row cluster (sm_90): rows beyond one block's shared memory, and few long rows, in one launch.
template <typename T, bool LOG, int CLUSTER>
__global__ void __launch_bounds__(512, 1) ROW_CLUSTER(CLUSTER) softmax_forward(
        const T* __restrict__ x, long long inner, long long so, long long si, long long sc, long long rows, int cols,
        T* __restrict__ y, long long y_so, long long y_si, long long y_sc, int use_cache,
        int closed_zero) {
    softmax_forward_rows<T, LOG, CLUSTER>(x, inner, so, si, sc, rows, cols, y, y_so, y_si, y_sc, use_cache,
                                          closed_zero);
}

template <typename T, bool LOG, int CLUSTER>
__device__ __forceinline__ void softmax_backward_rows(
        const T* __restrict__ y, long long y_so, long long y_si, long long y_sc,
        const T* __restrict__ g, long long g_so, long long g_si, long long g_sc,
        long long inner, long long rows, int cols,
        T* __restrict__ out, long long out_so, long long out_si, long long out_sc, int use_cache) {
    using A = Acc<T>;
    constexpr int N = Vec<T>::N;
    extern __shared__ __align__(16) unsigned char shared_rows[];
    __shared__ A scratch[32];
    const Rows y_layout{inner, y_so, y_si, y_sc}, g_layout{inner, g_so, g_si, g_sc};
    const Rows out_layout{inner, out_so, out_si, out_sc};
    const int chunk_cols = chunk_length<T>(cols, gridDim.y);
    const int begin = min(cols, static_cast<int>(blockIdx.y) * chunk_cols), end = min(cols, begin + chunk_cols);
    const int n = end - begin;
    [[maybe_unused]] int merges = 0;          // cluster_merge's rounds
    for (long long group = static_cast<long long>(blockIdx.x) * blockDim.y; group < rows;
         group += static_cast<long long>(gridDim.x) * blockDim.y) {
        const long long row = group + threadIdx.y;
        const bool active = row < rows;
        const T* y_row = y + (active ? y_layout.base(row) + begin * y_sc : 0);
        const T* g_row = g + (active ? g_layout.base(row) + begin * g_sc : 0);
        T* out_row = out + (active ? out_layout.base(row) + begin * out_sc : 0);
        const bool vector = y_sc == 1 && g_sc == 1 &&
                            (reinterpret_cast<unsigned long long>(y_row) & 15) ==
                                (reinterpret_cast<unsigned long long>(g_row) & 15);
        const int head = vector ? head_length(y_row, n) : 0;
        const int shift = cache_shift<T>(head);
        T* cache_y = use_cache && vector
                         ? reinterpret_cast<T*>(shared_rows) + threadIdx.y * 2 * row_room<T>(chunk_cols) : nullptr;
        T* cache_g = cache_y ? cache_y + row_room<T>(chunk_cols) : nullptr;
        A partial = A(0);
        if (active)
            traverse2<T>(y_row, y_sc, g_row, g_sc, n, vector, head, threadIdx.x, blockDim.x,
                         [&](int j, T yv, T gv) {
                             if (cache_y) { cache_y[j + shift] = yv; cache_g[j + shift] = gv; }
                             partial += LOG ? to_acc(gv) : to_acc(gv) * to_acc(yv);
                         },
                         [&](int j0, const Vec<T>& py, const Vec<T>& pg) {
                             if (cache_y) {
                                 *reinterpret_cast<Vec<T>*>(cache_y + j0 + shift) = py;
                                 *reinterpret_cast<Vec<T>*>(cache_g + j0 + shift) = pg;
                             }
#pragma unroll
                             for (int k = 0; k < N; ++k)
                                 partial += LOG ? to_acc(pg.v[k]) : to_acc(pg.v[k]) * to_acc(py.v[k]);
                         });
        A dot = group_sum(partial, scratch);
        if constexpr (CLUSTER > 1) cluster_merge(empty_max_sum<A>(), dot, merges);
        if (active) {
            const bool same_phase = vector && out_sc == 1 &&
                                    (reinterpret_cast<unsigned long long>(out_row) & 15) ==
                                        (reinterpret_cast<unsigned long long>(y_row) & 15);
            auto value = [&](A yv, A gv) { return LOG ? gv - fast_exp(yv) * dot : yv * (gv - dot); };
            auto scalar = [&](int j, T yv, T gv) { out_row[j * out_sc] = Store<T>::of(value(to_acc(yv), to_acc(gv))); };
            auto pack = [&](int j0, const Vec<T>& py, const Vec<T>& pg) {
                Vec<T> r;
#pragma unroll
                for (int k = 0; k < N; ++k) r.v[k] = Store<T>::of(value(to_acc(py.v[k]), to_acc(pg.v[k])));
                if (same_phase) {
                    *reinterpret_cast<Vec<T>*>(out_row + j0) = r;
                } else {
#pragma unroll
                    for (int k = 0; k < N; ++k) out_row[(j0 + k) * out_sc] = r.v[k];
                }
            };
            if (cache_y) traverse2<T>(cache_y + shift, 1, cache_g + shift, 1, n, true, head, threadIdx.x,
                                      blockDim.x, scalar, pack);
            else traverse2<T>(y_row, y_sc, g_row, g_sc, n, vector, head, threadIdx.x, blockDim.x, scalar, pack);
        }
        if (use_cache) group_barrier();
    }
    if constexpr (CLUSTER > 1) cluster_done();
}

template <typename T, bool LOG>
__global__ void __launch_bounds__(512, 1) softmax_backward(
        const T* __restrict__ y, long long y_so, long long y_si, long long y_sc,
        const T* __restrict__ g, long long g_so, long long g_si, long long g_sc,
        long long inner, long long rows, int cols,
        T* __restrict__ out, long long out_so, long long out_si, long long out_sc, int use_cache) {
    softmax_backward_rows<T, LOG, 1>(y, y_so, y_si, y_sc, g, g_so, g_si, g_sc, inner, rows, cols, out, out_so,
                                     out_si, out_sc, use_cache);
}

// A row cluster (sm_90): the row's dot product merged through distributed shared memory.
template <typename T, bool LOG, int CLUSTER>
__global__ void __launch_bounds__(512, 1) ROW_CLUSTER(CLUSTER) softmax_backward(
        const T* __restrict__ y, long long y_so, long long y_si, long long y_sc,
        const T* __restrict__ g, long long g_so, long long g_si, long long g_sc,
        long long inner, long long rows, int cols,
        T* __restrict__ out, long long out_so, long long out_si, long long out_sc, int use_cache) {
    softmax_backward_rows<T, LOG, CLUSTER>(y, y_so, y_si, y_sc, g, g_so, g_si, g_sc, inner, rows, cols, out, out_so,
                                           out_si, out_sc, use_cache);
}

// Short rows of a row-contiguous array (small C, many rows): a block's blockDim.x rows
// are one span (common.cuh, SpanLoad), one thread per row in shared memory, the span
// written back with aligned vector stores.  Same math as above; y must be row-contiguous
// too (rows of cols elements one after another, any 16-byte phase).
template <typename T, bool LOG>
__global__ void __launch_bounds__(512, 1) softmax_span_forward(
        const T* __restrict__ x, long long rows, int cols, T* __restrict__ y, int closed_zero) {
    using A = Acc<T>;
    extern __shared__ __align__(16) unsigned char shared_rows[];
    T* span = reinterpret_cast<T*>(shared_rows);
    const int per_span = blockDim.x;
    for (long long first = static_cast<long long>(blockIdx.x) * per_span; first < rows;
         first += static_cast<long long>(gridDim.x) * per_span) {
        const int count = static_cast<int>(min(static_cast<long long>(per_span), rows - first)) * cols;
        SpanLoad<T> load;
        load.issue(x + first * cols, count);
        load.commit(span);
        const int shift = load.shift;
        __syncthreads();
        const int r = threadIdx.x;
        if (static_cast<long long>(r) * cols < count) {
            T* row = span + shift + r * cols;
            A m, ls;
            finish(span_row_stats<T>(row, cols, r, [](int, A) {}), m, ls);
            const bool special = !isfinite(ls);
            RowWalk walk(r, cols);
            for (int k = 0; k < cols; ++k) {
                const int c = walk.next();
                A out;
                if (special) {
                    out = closed_zero && ls == neg_inf<A>() ? A(0) : quiet_nan<A>();
                } else {
                    const A shifted = (to_acc(row[c]) - m) - ls;
                    out = LOG ? shifted : fast_exp(shifted);
                }
                row[c] = Store<T>::of(out);
            }
        }
        __syncthreads();
        store_span(y + first * cols, count, span, shift);
        __syncthreads();                  // the span is reloaded next
    }
}

template <typename T, bool LOG>
__global__ void __launch_bounds__(512, 1) softmax_span_backward(
        const T* __restrict__ y, const T* __restrict__ g, long long rows, int cols, T* __restrict__ out) {
    using A = Acc<T>;
    extern __shared__ __align__(16) unsigned char shared_rows[];
    const int per_span = blockDim.x;
    T* span_y = reinterpret_cast<T*>(shared_rows);
    T* span_g = span_y + span_room<T>(per_span, cols);
    for (long long first = static_cast<long long>(blockIdx.x) * per_span; first < rows;
         first += static_cast<long long>(gridDim.x) * per_span) {
        const int count = static_cast<int>(min(static_cast<long long>(per_span), rows - first)) * cols;
        SpanLoad<T> load_y, load_g;           // both spans' loads in flight together
        load_y.issue(y + first * cols, count);
        load_g.issue(g + first * cols, count);
        load_y.commit(span_y);
        load_g.commit(span_g);
        const int y_shift = load_y.shift, g_shift = load_g.shift;
        __syncthreads();
        const int r = threadIdx.x;
        if (static_cast<long long>(r) * cols < count) {
            T* row_y = span_y + y_shift + r * cols;
            const T* row_g = span_g + g_shift + r * cols;
            A dot = A(0);
            RowWalk walk(r, cols);
            for (int k = 0; k < cols; ++k) {
                const int c = walk.next();
                dot += LOG ? to_acc(row_g[c]) : to_acc(row_g[c]) * to_acc(row_y[c]);
            }
            for (int k = 0; k < cols; ++k) {
                const int c = walk.next();
                const A yv = to_acc(row_y[c]), gv = to_acc(row_g[c]);
                row_y[c] = Store<T>::of(LOG ? gv - fast_exp(yv) * dot : yv * (gv - dot));
            }
        }
        __syncthreads();
        store_span(out + first * cols, count, span_y, y_shift);
        __syncthreads();
    }
}
