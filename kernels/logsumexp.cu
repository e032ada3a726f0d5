// Log-sum-exp over the rows of a strided array, forward (with the gradient,
// when asked), and the kernel that applies a row's statistics elementwise
// (log-sum-exp backward, and softmax / log_softmax from statistics for rows
// split over several blocks).
//
// Math: lse_r = log(sum_c exp(x_rc)), kept as (m_r, ls_r) with lse = m + ls
//       (m = row max, ls = log(sum_c exp(x_rc - m))); torch's rules for nan
//       and infinities (common.cuh, finish).
//       the gradient: dx = g_r * exp((x - m) - ls)  (forward, and apply_stats MODE 0)
//       apply_stats MODE 1: out = exp((x - m) - ls)          (softmax)
//                   MODE 2: out = (x - m) - ls               (log_softmax)
//       (modes 1 and 2 give nan on a row whose statistics are not finite, as torch).
// Gradient in the forward: as cross_entropy.cu's, the forward writes dx while
//       it holds the row, for the upstream gradient the caller expects
//       (`upstream`, one value for every row: 1 for lse.sum().backward());
//       apply_stats MODE 0, given that value as `applied` and the forward's
//       dx as out, keeps each row whose upstream gradient is that value
//       (compared on the device) and computes the others again from x.
// Bytes: forward reads R*C elements once and writes 2R accumulators and R
//       results (lse in the input dtype), and with dx R*C more (a row group's
//       rows kept in shared memory up to the opt-in limit, on sm_90 longer rows
//       and few long rows in the shared memory of a row cluster; otherwise the
//       second pass reads x again, mostly from L2); apply_stats reads R*C and
//       writes R*C (MODE 0 with `applied`: the R upstream values, or one, when
//       they are all the applied one).
// Launch: block = (G lanes per row, rows per block); grid.x strides over the
//       row groups; grid.y = S > 1 splits each row into S chunks (few, long
//       rows: every SM gets work), and the last block of a row (atomic counter
//       per row) merges the S partial states in chunk order (never with dx);
//       or, on sm_90, a row cluster of S blocks along grid.y (cluster_merge).
//       Short rows one after another (under 64 elements): logsumexp_span_forward, a block's rows
//       read as one span of aligned 16-byte vectors into shared memory, a thread per row.
#include "common.cuh"

using namespace gpugrad;

// One row per row group (CLUSTER == 1: the whole row, or a chunk merged by the row's last block), or the
// chunks of a row over a row cluster of CLUSTER blocks along grid.y (sm_90; each block writes its chunk's dx).
template <typename T, int CLUSTER>
__device__ __forceinline__ void logsumexp_forward_rows(
        const T* __restrict__ x, long long inner, long long so, long long si, long long sc, long long rows, int cols,
        Acc<T>* __restrict__ m_out, Acc<T>* __restrict__ ls_out, T* __restrict__ out,
        Acc<T>* __restrict__ partial_m, Acc<T>* __restrict__ partial_s, unsigned int* __restrict__ row_counters,
        T* __restrict__ dx, long long dx_so, long long dx_si, long long dx_sc, const T* __restrict__ upstream,
        int use_cache) {
    using A = Acc<T>;
    extern __shared__ __align__(16) unsigned char shared_rows[];
    __shared__ A scratch_m[32], scratch_s[32];
    const Rows layout{inner, so, si, sc};
    const Rows dx_layout{inner, dx_so, dx_si, dx_sc};
    const int splits = gridDim.y, chunk = blockIdx.y;
    const int chunk_cols = chunk_length<T>(cols, splits);
    const int begin = min(cols, chunk * chunk_cols), end = min(cols, begin + chunk_cols);
    // the upstream gradient dx is written for (one value for every row: the one the caller expects)
    const A g = dx != nullptr && upstream != nullptr ? to_acc(*upstream) : A(1);
    T* cache = dx != nullptr && use_cache && sc == 1
                   ? reinterpret_cast<T*>(shared_rows) + threadIdx.y * row_room<T>(chunk_cols) : nullptr;
    [[maybe_unused]] int merges = 0;          // cluster_merge's rounds
    for (long long group = static_cast<long long>(blockIdx.x) * blockDim.y; group < rows;
         group += static_cast<long long>(gridDim.x) * blockDim.y) {
        const long long row = group + threadIdx.y;
        const bool active = row < rows;
        const T* x_row = x + (active ? layout.base(row) + begin * sc : 0);
        MaxSum<A> st = empty_max_sum<A>();
        if (active) st = lane_stats<T, forward_unroll<T>()>(x_row, sc, end - begin, threadIdx.x, blockDim.x, cache);
        st = group_merge(st, scratch_m, scratch_s);
        if constexpr (CLUSTER > 1) {
            A unused = A(0);
            st = cluster_merge(st, unused, merges);
        } else if (splits > 1) {              // (never with dx)
            A unused = A(0);
            if (!merge_split_row(st, unused, partial_m, partial_s, static_cast<A*>(nullptr), row_counters, row))
                continue;                     // another block of this row merges it
        }
        A m, ls;
        finish(st, m, ls);
        if (active && threadIdx.x == 0 && (CLUSTER == 1 || chunk == 0)) {
            m_out[row] = m;
            ls_out[row] = ls;
            // torch's logsumexp: +inf / -inf rows give +inf / -inf (m = 0 then), nan gives nan
            if (out != nullptr) out[row] = Store<T>::of(m + ls);
        }
        if (dx != nullptr && active)
            // torch's gradient g * exp(x - lse): nan for a row of -inf only and at a +inf (0 elsewhere in
            // its row), nan for a nan row
            write_row<T, forward_unroll<T>()>(x_row, sc, cache, dx + dx_layout.base(row) + begin * dx_sc, dx_sc,
                                              end - begin, threadIdx.x, blockDim.x,
                                              [&](int, A v) { return g * fast_exp((v - m) - ls); });
        if (cache) group_barrier();
    }
    if constexpr (CLUSTER > 1) cluster_done();
}

template <typename T>
__global__ void __launch_bounds__(512, forward_min_blocks<T>()) logsumexp_forward(
        const T* __restrict__ x, long long inner, long long so, long long si, long long sc, long long rows, int cols,
        Acc<T>* __restrict__ m_out, Acc<T>* __restrict__ ls_out, T* __restrict__ out,
        Acc<T>* __restrict__ partial_m, Acc<T>* __restrict__ partial_s, unsigned int* __restrict__ row_counters,
        T* __restrict__ dx, long long dx_so, long long dx_si, long long dx_sc, const T* __restrict__ upstream,
        int use_cache) {
    logsumexp_forward_rows<T, 1>(x, inner, so, si, sc, rows, cols, m_out, ls_out, out, partial_m, partial_s,
                                 row_counters, dx, dx_so, dx_si, dx_sc, upstream, use_cache);
}

// A row cluster (sm_90): rows beyond one block's shared memory, and few long rows, with dx in one launch
// (blocks of up to CLUSTER_THREADS threads).
template <typename T, int CLUSTER>
__global__ void __launch_bounds__(CLUSTER_THREADS, 1) ROW_CLUSTER(CLUSTER) logsumexp_forward(
        const T* __restrict__ x, long long inner, long long so, long long si, long long sc, long long rows, int cols,
        Acc<T>* __restrict__ m_out, Acc<T>* __restrict__ ls_out, T* __restrict__ out,
        Acc<T>* __restrict__ partial_m, Acc<T>* __restrict__ partial_s, unsigned int* __restrict__ row_counters,
        T* __restrict__ dx, long long dx_so, long long dx_si, long long dx_sc, const T* __restrict__ upstream,
        int use_cache) {
    logsumexp_forward_rows<T, CLUSTER>(x, inner, so, si, sc, rows, cols, m_out, ls_out, out, partial_m, partial_s,
                                       row_counters, dx, dx_so, dx_si, dx_sc, upstream, use_cache);
}

template <typename T, int MODE>
__global__ void __launch_bounds__(512, 1) apply_stats(
        const T* __restrict__ x, long long inner, long long so, long long si, long long sc, long long rows, int cols,
        const Acc<T>* __restrict__ m_in, const Acc<T>* __restrict__ ls_in, const T* __restrict__ grad,
        long long grad_stride, T* __restrict__ out, long long out_so, long long out_si, long long out_sc,
        const T* __restrict__ applied, T* __restrict__ next_upstream) {
    using A = Acc<T>;
    // MODE 0 with `applied`: out holds the forward's gradient, written for the upstream gradient `applied`
    // (one value for every row); a row whose gradient is that value keeps it (every block returns at once
    // when one value comes for all rows), the others are computed again.  grad[0] is handed on to the
    // next forward.
    if (MODE == 0 && next_upstream != nullptr && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 &&
        threadIdx.y == 0)
        *next_upstream = grad[0];
    const A kept = MODE == 0 && applied != nullptr ? to_acc(*applied) : quiet_nan<A>();
    if (MODE == 0 && applied != nullptr && grad_stride == 0 && same_value(to_acc(grad[0]), kept)) return;
    const Rows layout{inner, so, si, sc};
    const Rows out_layout{inner, out_so, out_si, out_sc};
    const int splits = gridDim.y, chunk = blockIdx.y;
    const int chunk_cols = chunk_length<T>(cols, splits);
    const int begin = min(cols, chunk * chunk_cols), end = min(cols, begin + chunk_cols);
    for (long long row = static_cast<long long>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
         row += static_cast<long long>(gridDim.x) * blockDim.y) {
        const A g = MODE == 0 ? to_acc(grad[row * grad_stride]) : A(1);
        if (MODE == 0 && applied != nullptr && same_value(g, kept)) continue;
        const A m = m_in[row], ls = ls_in[row];
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

// Short rows of a row-contiguous array (small C, many rows): a block's blockDim.x rows are one span
// (common.cuh, SpanLoad), one thread per row in shared memory; with dx, the gradient is written over
// the span in shared memory and back with aligned vector stores (store_span).  Same math and outputs
// as logsumexp_forward: (m, ls) and lse per row, dx for the upstream gradient `upstream`.
// Bytes: R*C read once, 2R accumulators and R results written, and with dx R*C more.
template <typename T>
__global__ void __launch_bounds__(512, 1) logsumexp_span_forward(
        const T* __restrict__ x, long long rows, int cols, Acc<T>* __restrict__ m_out, Acc<T>* __restrict__ ls_out,
        T* __restrict__ out, T* __restrict__ dx, const T* __restrict__ upstream) {
    using A = Acc<T>;
    extern __shared__ __align__(16) unsigned char shared_rows[];
    T* span = reinterpret_cast<T*>(shared_rows);
    const int per_span = blockDim.x, r = threadIdx.x;
    const A g = dx != nullptr && upstream != nullptr ? to_acc(*upstream) : A(1);
    for (long long first = static_cast<long long>(blockIdx.x) * per_span; first < rows;
         first += static_cast<long long>(gridDim.x) * per_span) {
        const int count = static_cast<int>(min(static_cast<long long>(per_span), rows - first)) * cols;
        const long long row = first + r;
        SpanLoad<T> load;
        load.issue(x + first * cols, count);
        load.commit(span);
        const int shift = load.shift;
        __syncthreads();
        if (row < rows) {
            T* x_row = span + shift + r * cols;
            A m, ls;
            finish(span_row_stats<T>(x_row, cols, r, [](int, A) {}), m, ls);
            m_out[row] = m;
            ls_out[row] = ls;
            // torch's logsumexp: +inf / -inf rows give +inf / -inf (m = 0 then), nan gives nan
            if (out != nullptr) out[row] = Store<T>::of(m + ls);
            if (dx != nullptr) {
                // g * exp(x - lse): nan for a row of -inf only and at a +inf (0 elsewhere in its row), nan
                // for a nan row (as logsumexp_forward)
                RowWalk walk(r, cols);
                for (int k = 0; k < cols; ++k) {
                    const int c = walk.next();
                    x_row[c] = Store<T>::of(g * fast_exp((to_acc(x_row[c]) - m) - ls));
                }
            }
        }
        __syncthreads();
        if (dx != nullptr) {
            store_span(dx + first * cols, count, span, shift);
            __syncthreads();                  // the span is reloaded next
        }
    }
}
