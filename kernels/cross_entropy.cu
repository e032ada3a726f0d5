// Softmax cross-entropy with class-index targets over the rows of a strided
// array, forward (with the reduction, and optionally the gradient) and
// backward, with class weights w, ignore_index and label smoothing eps
// (torch.nn.functional.cross_entropy's semantics).
//
// Math, per row r with target t (rows with t == ignore_index give 0; a target
// outside [0, C) is recorded in the error word and the row treated as ignored):
//   lse  = m + ls (logsumexp.cu),  W = sum_c w_c (C without weights)
//   loss = (1 - eps) w_t (lse - x_t) + (eps / C) sum_c w_c (lse - x_c)
//   grad_c = G_r * (exp((x_c - m) - ls) * S - (eps / C) w_c - [c == t] (1 - eps) w_t)
//            with S = (1 - eps) w_t + (eps / C) W and G_r the upstream gradient
//            of the row (divided by the mean's denominator sum_r w_t).
//   sum_c w_c (lse - x_c) is accumulated as W (lse - p) - sum_c w_c (x_c - p)
//   with a pivot p = x_t, so that logits near 1e4 do not cancel.
//   A used row holding nan or +inf, or only -inf, gives nan (torch); an
//   ignored one a loss of 0 and a gradient of nan (torch's log_softmax
//   backward), and keeps its (m, ls) (an ignored row's are 0 otherwise).
// Reductions: 'sum' and 'mean' are done here, in a fixed order (each block
//   adds its rows, the last block adds the block partials; a grid of one row
//   cluster has them all in its first block, which writes the loss, with no
//   fence and no atomic): deterministic.
// Gradient in the forward: the forward writes dx while it holds the row, for
//   the upstream gradient the caller expects (`upstream`, one value: 1 for
//   loss.backward(), the last one seen for (2 * loss).backward() and
//   GradScaler): N*C read + N*C written.  The backward, given that value as
//   `applied`, compares it on the device with the gradient that came: equal,
//   every block returns at once (nothing read but two values); else dx is
//   computed again from x.  Under
//   'mean' every block first adds up the denominator itself (N targets read
//   per block, in the same order: all blocks agree), so the launcher asks for
//   this from 512 classes on, with no more blocks than keep those reads
//   within the logits' bytes (counted at 4 bytes an element at least).
// Bytes: forward reads N*C once (with dx, rows are kept in shared memory up
//   to the opt-in limit, and on sm_90 longer rows in the shared memory of a
//   row cluster; below sm_90 those are read twice), ignored rows included
//   (whether their gradient is nan); backward reads N*C and writes N*C.
// Loss: in the input dtype (torch), or in the accumulation dtype (loss_in_acc).
// Launch: as logsumexp.cu; forward (without dx) and backward split few long
//   rows over grid.y, the last block of a row merging its chunks in order.
//   On sm_90 the forward with dx takes rows beyond one block's shared memory,
//   and few long rows, over a row cluster of CLUSTER blocks along grid.y
//   (common.cuh, cluster_merge): each block writes its chunk's dx.  The row's
//   loads do not wait for its target: x_t is read after the row (from L2,
//   while the reductions run), except under label smoothing, whose pivot it is.
//   The forward with dx runs rows of a warp each 16 to a block (8 otherwise).
#include "common.cuh"

using namespace gpugrad;

constexpr long long CLASS_INDEX = 1;   // the error word's kind for a bad class index

// Vectors in flight per lane in the forward: common.cuh's forward_unroll, but 2 for float below sm_90,
// where 4 (3) spill 72 (16) bytes in the 64 registers of forward_min_blocks on sm_80: the same bytes in
// flight per SM as 4 at the 96 registers they take, over twice the warps (32 per SM against 16).
template <typename T> __host__ __device__ constexpr int cross_entropy_unroll() {
    return sizeof(T) == 4 && !GPUGRAD_CLUSTERS ? 2 : forward_unroll<T>();
}

// The forward over one row per block group (CLUSTER == 1: the whole row, or a chunk merged by the
// row's last block), or over the chunks of a row cluster of CLUSTER blocks along grid.y.
template <typename T, typename TI, int CLUSTER>
__device__ __forceinline__ void cross_entropy_forward_rows(
        const T* __restrict__ x, long long inner, long long so, long long si, long long sc, long long rows, int cols,
        const TI* __restrict__ target, const Acc<T>* __restrict__ weight, const Acc<T>* __restrict__ weight_sum,
        long long ignore_index, Acc<T> smoothing, int reduction, void* __restrict__ loss, int loss_in_acc,
        Acc<T>* __restrict__ m_out, Acc<T>* __restrict__ ls_out, Acc<T>* __restrict__ row_weight,
        T* __restrict__ dx, long long dx_so, long long dx_si, long long dx_sc,
        Acc<T>* __restrict__ denominator_out, Acc<T>* __restrict__ partials, unsigned int* __restrict__ counter,
        long long* __restrict__ error, int use_cache, Acc<T>* __restrict__ partial_m, Acc<T>* __restrict__ partial_s,
        Acc<T>* __restrict__ partial_x, unsigned int* __restrict__ row_counters,
        const T* __restrict__ upstream) {
    using A = Acc<T>;
    extern __shared__ __align__(16) unsigned char shared_rows[];
    __shared__ A scratch_m[32], scratch_s[32], scratch_x[32];
    __shared__ A scratch_block[MAX_THREADS];
    const Rows layout{inner, so, si, sc};
    const Rows dx_layout{inner, dx_so, dx_si, dx_sc};
    const A total_weight = weight != nullptr ? *weight_sum : A(cols);
    const A smooth = smoothing / A(cols);
    // the mean's denominator, when dx is written here: sum of w_t over the used rows, in a fixed order
    A denominator = A(0);
    if (dx != nullptr && reduction == 2) {
        const int flat = threadIdx.y * blockDim.x + threadIdx.x, threads = blockDim.x * blockDim.y;
        for (long long r = flat; r < rows; r += threads) {
            const long long t = static_cast<long long>(target[r]);
            if (t != ignore_index && t >= 0 && t < cols) denominator += weight != nullptr ? weight[t] : A(1);
        }
        // a row cluster's blocks (blockDim.y == 1, up to CLUSTER_THREADS threads): group_sum's fixed order
        if constexpr (CLUSTER > 1) denominator = group_sum(denominator, scratch_block);
        else denominator = block_tree_sum(denominator, scratch_block);
    }
    // the upstream gradient dx is written for (the one the caller expects, else 1), over the mean's
    // denominator: the backward's G = g * (1 / denominator), in the same order
    const A grad_scale = (upstream != nullptr ? to_acc(*upstream) : A(1)) *
                         (dx != nullptr && reduction == 2 ? A(1) / denominator : A(1));
    // grid.y > 1: each row split into chunks, one per block: merged by the row's last block (never with
    // dx), or through distributed shared memory by the blocks of a row cluster (each writes its chunk's dx)
    const int splits = gridDim.y, chunk = blockIdx.y;
    const int chunk_cols = chunk_length<T>(cols, splits);
    const int begin = min(cols, chunk * chunk_cols), end = min(cols, begin + chunk_cols);
    T* cache = dx != nullptr && use_cache && sc == 1
                   ? reinterpret_cast<T*>(shared_rows) + threadIdx.y * row_room<T>(chunk_cols) : nullptr;
    A block_loss = A(0), block_weight = A(0);
    [[maybe_unused]] int merges = 0;         // cluster_merge's rounds
    for (long long group = static_cast<long long>(blockIdx.x) * blockDim.y; group < rows;
         group += static_cast<long long>(gridDim.x) * blockDim.y) {
        const long long row = group + threadIdx.y;
        const bool active = row < rows;
        const long long t = active ? static_cast<long long>(target[row]) : ignore_index;
        const bool in_range = t != ignore_index && t >= 0 && t < cols;
        // Every lane of the group goes on to the reductions below (shuffles of
        // a warp, barriers of a block), used row or not.
        const T* x_row = x + (active ? layout.base(row) : 0);
        // The row's loads do not wait for the target: only label smoothing needs x_t (its pivot) while the
        // row is read; otherwise x_t is read after the row (from L2), while the reductions run.
        A pivot = A(0);
        if (smoothing != A(0) && active && in_range) {
            const A v = to_acc(x_row[t * sc]);
            pivot = isfinite(v) ? v : A(0);
        }
        MaxSum<A> st = empty_max_sum<A>();
        A weighted = A(0);                       // sum_c w_c (x_c - pivot), for smoothing only
        // ignored rows are read too: their gradient is nan where their statistics are not finite (torch)
        if (active)
            st = lane_stats<T, cross_entropy_unroll<T>()>(x_row + begin * sc, sc, end - begin, threadIdx.x,
                                                          blockDim.x, cache, [&](int j0, const auto& v, int count) {
                if (smoothing == A(0)) return;
#pragma unroll
                for (int k = 0; k < static_cast<int>(sizeof(v) / sizeof(A)); ++k)
                    if (k < count) weighted += (weight ? weight[begin + j0 + k] : A(1)) * (v[k] - pivot);
            });
        bool used = active && t != ignore_index;
        if (used && !in_range) {
            if (threadIdx.x == 0 && chunk == 0) record_bad_index(error, CLASS_INDEX, t, cols);
            used = false;
        }
        const A x_t = used ? to_acc(x_row[t * sc]) : A(0);
        st = group_merge(st, scratch_m, scratch_s);
        if (smoothing != A(0)) weighted = group_sum(weighted, scratch_x);
        if constexpr (CLUSTER > 1) {
            st = cluster_merge(st, weighted, merges);
        } else if (splits > 1 && !merge_split_row(st, weighted, partial_m, partial_s,
                                                  smoothing != A(0) ? partial_x : static_cast<A*>(nullptr),
                                                  row_counters, row)) {
            continue;                            // another block of this row merges it
        }
        A m, ls;
        finish(st, m, ls);
        const bool special = !isfinite(ls);
        const A w_t = used ? (weight ? weight[t] : A(1)) : A(0);
        A value = A(0);
        if (used) {
            if (special) {
                value = quiet_nan<A>();
            } else {
                value = (A(1) - smoothing) * w_t * ((m - x_t) + ls);
                if (smoothing != A(0)) value += smooth * (total_weight * ((m - pivot) + ls) - weighted);
            }
        }
        if (active && threadIdx.x == 0 && (CLUSTER == 1 || chunk == 0)) {
            if (reduction == 0) {
                if (loss_in_acc) static_cast<A*>(loss)[row] = value;
                else static_cast<T*>(loss)[row] = Store<T>::of(value);
            }
            block_loss += value;
            block_weight += w_t;
            if (m_out != nullptr) {
                // an ignored row: 0, or its statistics when they are not finite (its gradient is nan)
                m_out[row] = used || special ? m : A(0);
                ls_out[row] = used || special ? ls : A(0);
            }
            if (row_weight != nullptr) row_weight[row] = w_t;
        }
        if (dx != nullptr && active) {
            T* d_row = dx + dx_layout.base(row);
            if (!used) {
                // torch's log_softmax backward: 0 * exp(nan) in a row without finite statistics
                const A fill = special ? quiet_nan<A>() : A(0);
                for (int j = begin + threadIdx.x; j < end; j += blockDim.x) d_row[j * dx_sc] = Store<T>::of(fill);
            } else {
                const A scale = grad_scale * ((A(1) - smoothing) * w_t + smooth * total_weight);
                const A g_smooth = grad_scale * smooth;
                const A g_target = grad_scale * (A(1) - smoothing) * w_t;
                write_row<T, cross_entropy_unroll<T>()>(x_row + begin * sc, sc, cache, d_row + begin * dx_sc,
                                                        dx_sc, end - begin, threadIdx.x, blockDim.x, [&](int k, A v) {
                    if (special) return quiet_nan<A>();
                    const int j = begin + k;
                    A out = scale * fast_exp((v - m) - ls);
                    if (smoothing != A(0)) out -= g_smooth * (weight ? weight[j] : A(1));
                    if (j == t) out -= g_target;
                    return out;
                });
            }
        }
        if (cache) group_barrier();
    }
    auto write_loss = [&](A total, A weights) {
        // with dx written here, the denominator every block used (the same value), else the partials' sum
        const A mean_denominator = dx != nullptr && reduction == 2 ? denominator : weights;
        const A result = reduction == 2 ? total / mean_denominator : total;
        if (loss_in_acc) *static_cast<A*>(loss) = result;
        else *static_cast<T*>(loss) = Store<T>::of(result);
        if (denominator_out != nullptr) *denominator_out = mean_denominator;
    };
    if constexpr (CLUSTER > 1) {
        cluster_done();
        if (gridDim.x == 1) {
            // the grid is one cluster: its first block's thread 0 added every row's loss, in row order
            if (reduction != 0 && chunk == 0 && threadIdx.x == 0) write_loss(block_loss, block_weight);
            return;
        }
    }
    if (reduction != 0)
        last_block_sum2<CLUSTER == 1>(block_loss, block_weight, partials, counter, scratch_block, write_loss);
}

template <typename T, typename TI>
__global__ void __launch_bounds__(512, forward_min_blocks<T>()) cross_entropy_forward(
        const T* __restrict__ x, long long inner, long long so, long long si, long long sc, long long rows, int cols,
        const TI* __restrict__ target, const Acc<T>* __restrict__ weight, const Acc<T>* __restrict__ weight_sum,
        long long ignore_index, Acc<T> smoothing, int reduction, void* __restrict__ loss, int loss_in_acc,
        Acc<T>* __restrict__ m_out, Acc<T>* __restrict__ ls_out, Acc<T>* __restrict__ row_weight,
        T* __restrict__ dx, long long dx_so, long long dx_si, long long dx_sc,
        Acc<T>* __restrict__ denominator_out, Acc<T>* __restrict__ partials, unsigned int* __restrict__ counter,
        long long* __restrict__ error, int use_cache, Acc<T>* __restrict__ partial_m, Acc<T>* __restrict__ partial_s,
        Acc<T>* __restrict__ partial_x, unsigned int* __restrict__ row_counters,
        const T* __restrict__ upstream) {
    cross_entropy_forward_rows<T, TI, 1>(
        x, inner, so, si, sc, rows, cols, target, weight, weight_sum, ignore_index, smoothing, reduction, loss,
        loss_in_acc, m_out, ls_out, row_weight, dx, dx_so, dx_si, dx_sc, denominator_out, partials, counter, error,
        use_cache, partial_m, partial_s, partial_x, row_counters, upstream);
}

// A row cluster of CLUSTER blocks per row (sm_90): rows longer than one block's shared memory keep the
// gradient in the forward, and few long rows spread over CLUSTER SMs in one launch (blocks of up to
// CLUSTER_THREADS threads).
template <typename T, typename TI, int CLUSTER>
__global__ void __launch_bounds__(CLUSTER_THREADS, 1) ROW_CLUSTER(CLUSTER) cross_entropy_forward(
        const T* __restrict__ x, long long inner, long long so, long long si, long long sc, long long rows, int cols,
        const TI* __restrict__ target, const Acc<T>* __restrict__ weight, const Acc<T>* __restrict__ weight_sum,
        long long ignore_index, Acc<T> smoothing, int reduction, void* __restrict__ loss, int loss_in_acc,
        Acc<T>* __restrict__ m_out, Acc<T>* __restrict__ ls_out, Acc<T>* __restrict__ row_weight,
        T* __restrict__ dx, long long dx_so, long long dx_si, long long dx_sc,
        Acc<T>* __restrict__ denominator_out, Acc<T>* __restrict__ partials, unsigned int* __restrict__ counter,
        long long* __restrict__ error, int use_cache, Acc<T>* __restrict__ partial_m, Acc<T>* __restrict__ partial_s,
        Acc<T>* __restrict__ partial_x, unsigned int* __restrict__ row_counters,
        const T* __restrict__ upstream) {
    cross_entropy_forward_rows<T, TI, CLUSTER>(
        x, inner, so, si, sc, rows, cols, target, weight, weight_sum, ignore_index, smoothing, reduction, loss,
        loss_in_acc, m_out, ls_out, row_weight, dx, dx_so, dx_si, dx_sc, denominator_out, partials, counter, error,
        use_cache, partial_m, partial_s, partial_x, row_counters, upstream);
}

template <typename T, typename TI>
__global__ void __launch_bounds__(512, 1) cross_entropy_backward(
        const T* __restrict__ x, long long inner, long long so, long long si, long long sc, long long rows, int cols,
        const TI* __restrict__ target, const Acc<T>* __restrict__ weight, const Acc<T>* __restrict__ weight_sum,
        long long ignore_index, Acc<T> smoothing, const Acc<T>* __restrict__ m_in, const Acc<T>* __restrict__ ls_in,
        const T* __restrict__ grad, long long grad_stride, const Acc<T>* __restrict__ denominator,
        T* __restrict__ dx, long long dx_so, long long dx_si, long long dx_sc, const T* __restrict__ applied,
        T* __restrict__ next_upstream) {
    using A = Acc<T>;
    // dx holds the forward's gradient, written for the upstream gradient `applied` (one value for all
    // rows): kept when grad is the same value; the value is handed on to the next forward
    if (next_upstream != nullptr && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 && threadIdx.y == 0)
        *next_upstream = grad[0];
    if (applied != nullptr && same_value(to_acc(grad[0]), to_acc(*applied))) return;
    const Rows layout{inner, so, si, sc};
    const Rows dx_layout{inner, dx_so, dx_si, dx_sc};
    const A total_weight = weight != nullptr ? *weight_sum : A(cols);
    const A smooth = smoothing / A(cols);
    const A inverse_denominator = denominator != nullptr ? A(1) / *denominator : A(1);
    const int splits = gridDim.y, chunk = blockIdx.y;
    const int chunk_cols = chunk_length<T>(cols, splits);
    const int begin = min(cols, chunk * chunk_cols), end = min(cols, begin + chunk_cols);
    for (long long row = static_cast<long long>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
         row += static_cast<long long>(gridDim.x) * blockDim.y) {
        T* d_row = dx + dx_layout.base(row);
        const long long t = static_cast<long long>(target[row]);
        const A m = m_in[row], ls = ls_in[row];
        const bool special = !isfinite(ls);
        if (t == ignore_index || t < 0 || t >= cols) {
            // ignored (a bad target was recorded by the forward): zeros, nan in a row without finite
            // statistics (torch's log_softmax backward: 0 * exp(nan))
            const A fill = special ? quiet_nan<A>() : A(0);
            for (int j = begin + threadIdx.x; j < end; j += blockDim.x) d_row[j * dx_sc] = Store<T>::of(fill);
            continue;
        }
        const A g = to_acc(grad[row * grad_stride]) * inverse_denominator;
        const A w_t = weight != nullptr ? weight[t] : A(1);
        const A scale = g * ((A(1) - smoothing) * w_t + smooth * total_weight);
        const A g_smooth = g * smooth;
        const A g_target = g * (A(1) - smoothing) * w_t;
        write_row<T>(x + layout.base(row) + begin * sc, sc, static_cast<const T*>(nullptr), d_row + begin * dx_sc,
                     dx_sc, end - begin, threadIdx.x, blockDim.x, [&](int k, A v) {
                         if (special) return quiet_nan<A>();
                         const int j = begin + k;
                         A out = scale * fast_exp((v - m) - ls);
                         if (smoothing != A(0)) out -= g_smooth * (weight ? weight[j] : A(1));
                         if (j == t) out -= g_target;
                         return out;
                     });
    }
}

// Range check of indices without a fused kernel (nll_loss's targets,
// embedding and gather positions): records the first value outside [low, high)
// (other than ignore_index, when use_ignore) in the error word.
template <typename TI>
__global__ void __launch_bounds__(512, 1) check_indices(
        const TI* __restrict__ index, long long count, long long low, long long high, long long ignore_index,
        int use_ignore, long long kind, long long bound, long long* __restrict__ error) {
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        const long long v = static_cast<long long>(index[i]);
        if ((v < low || v >= high) && !(use_ignore && v == ignore_index)) record_bad_index(error, kind, v, bound);
    }
}

// ---------------------------------------------------------------------------
// Short rows of a row-contiguous array (small C, many rows): a block's blockDim.x rows are one
// span (common.cuh, SpanLoad), one thread per row in shared memory, the gradient written back
// over the span with aligned vector stores.  Same math as above.  The forward keeps no row
// statistics unless m_out is given (the backward recomputes them from the row it reads anyway).
//
// Cross-block exchanges, in one launch, with no co-residency of the blocks assumed: block b owns
// slot b, which stands for its spans (b, b + gridDim.x, ...).
// * The loss ('sum', 'mean'): each block publishes its partial (loss, weight) in its slot and takes
//   a ticket (an atomic counter); the last block adds the slots up in slot order (deterministic).
// * The mean's denominator when dx is written here: each block publishes the used targets of its
//   spans (their count in the arrival word's low half, the slot count in its high half, one atomic;
//   with weights, their sum in the slot); a block waits until every slot is in before it writes dx.
//   A block claims its own slot as it starts; a waiting block claims and counts (targets only) any
//   slot not claimed yet, whose block has not started, so a block waits only for slots claimed by
//   running blocks that publish before they wait: no deadlock whatever the blocks resident.
// `exchange` is the launcher's buffer of 64-bit words for this device and stream, zeroed when made;
// `generation` numbers the launches that use it (1, 2, ..., one more each launch, a new buffer
// before it wraps).  A published value carries the generation in its high 32 bits (a float: its
// bits in the low half; a double: in a word of its own, written before the tag behind a fence), so
// a reader knows a value of this launch and a float partial needs no fence before its atomic.
struct SpanExchange {
    unsigned long long* words;
    unsigned int generation;
    int slots;
    // the denominator's arrival word of this launch (odd / even generations alternate: block 0 clears
    // the other one, the last launch's, for the next)
    __device__ __forceinline__ unsigned long long* arrival(unsigned int of) const { return words + (of & 1u); }
    __device__ __forceinline__ unsigned int* tickets() const { return reinterpret_cast<unsigned int*>(words + 2); }
    // the claims: per slot the generation that claimed it (32 bits each, in `slots` words)
    __device__ __forceinline__ unsigned int* claim(int slot) const {
        return reinterpret_cast<unsigned int*>(words + 3) + slot;
    }
    // per value and slot: the tagged word (one after another, slot by slot), and a double's value
    __device__ __forceinline__ unsigned long long* value(int which, int slot) const {
        return words + 3 + slots + 2 * static_cast<long long>(which) * slots + slot;
    }
};
constexpr int SLOT_LOSS = 0, SLOT_LOSS_WEIGHT = 1, SLOT_DENOMINATOR_WEIGHT = 2;

// A value for the other blocks at `at` (SpanExchange::value; a double's value `slots` words on).
template <typename A>
__device__ __forceinline__ void publish(unsigned long long* at, int slots, A v, unsigned int generation) {
    volatile unsigned long long* word = at;
    const unsigned long long tag = static_cast<unsigned long long>(generation) << 32;
    if constexpr (sizeof(A) == 4) {
        word[0] = tag | __float_as_uint(v);
    } else {
        *reinterpret_cast<volatile A*>(word + slots) = v;
        __threadfence();
        word[0] = tag;
    }
}

// The value published at `at` by this launch, once it is visible.
template <typename A>
__device__ __forceinline__ A take(const unsigned long long* at, int slots, unsigned int generation) {
    const volatile unsigned long long* word = at;
    unsigned long long seen = word[0];
    while (static_cast<unsigned int>(seen >> 32) != generation) seen = word[0];
    if constexpr (sizeof(A) == 4) {
        return __uint_as_float(static_cast<unsigned int>(seen));
    } else {
        __threadfence();
        return *reinterpret_cast<const volatile A*>(word + slots);
    }
}

template <typename TI>
__device__ __forceinline__ bool used_target(TI target, long long ignore_index, int cols) {
    const long long t = static_cast<long long>(target);
    return t != ignore_index && t >= 0 && t < cols;
}

// The used targets of slot `slot`'s spans and their weights, summed over the block (every thread
// gets them; group_sum2's order).
template <typename A, typename TI>
__device__ __forceinline__ void slot_targets(const TI* __restrict__ target, long long rows, int cols,
                                             const A* __restrict__ weight, long long ignore_index, int slot,
                                             int slots, A& count, A& weights, A* scratch) {
    const long long per_span = blockDim.x;
    count = A(0);
    weights = A(0);
    for (long long row = slot * per_span + threadIdx.x; row < rows; row += slots * per_span) {
        const TI t = target[row];
        if (used_target(t, ignore_index, cols)) {
            count += A(1);
            weights += weight != nullptr ? weight[static_cast<long long>(t)] : A(1);
        }
    }
    group_sum2(count, weights, scratch);
}

// Publishes the denominator's share of a slot the caller (thread 0) owns.
template <typename A>
__device__ __forceinline__ void publish_share(const SpanExchange& ex, int slot, A count, A weights, bool weighted) {
    if (weighted) publish(ex.value(SLOT_DENOMINATOR_WEIGHT, slot), ex.slots, weights, ex.generation);
    atomicAdd(ex.arrival(ex.generation), (1ull << 32) | static_cast<unsigned long long>(count));
}

// The values `which` of every slot added up in slot order (every thread gets the sum; group_sum's order).
template <typename A> __device__ __noinline__ A slot_sum(const SpanExchange ex, int which, A* scratch) {
    A total = A(0);
    for (int k = threadIdx.x; k < ex.slots; k += blockDim.x)
        total += take<A>(ex.value(which, k), ex.slots, ex.generation);
    return group_sum(total, scratch);
}

// A slot whose block has not claimed it yet, claimed and published by this block (the slow path of
// span_denominator: out of line, so that its registers do not add to the kernel's).
template <typename A, typename TI>
__device__ __noinline__ void take_over_slot(const SpanExchange ex, int slot, const TI* __restrict__ target,
                                            long long rows, int cols, const A* __restrict__ weight,
                                            long long ignore_index, A* scratch) {
    __shared__ bool stolen;
    if (threadIdx.x == 0) stolen = atomicExch(ex.claim(slot), ex.generation) != ex.generation;
    converged_sync();
    if (stolen) {                             // (block-uniform)
        A count, weights;
        slot_targets(target, rows, cols, weight, ignore_index, slot, ex.slots, count, weights, scratch);
        if (threadIdx.x == 0) publish_share(ex, slot, count, weights, weight != nullptr);
    }
}

// The mean's denominator, once every slot is in (every thread of the block calls): the used targets
// counted, or their weights added in slot order.  Meanwhile, slots nobody claimed are claimed and
// counted here.  Thread 0 reads the arrival word and hands it to the block through shared memory,
// so that every thread leaves the loop at the same barrier.
template <typename A, typename TI>
__device__ __forceinline__ A span_denominator(const SpanExchange& ex, const TI* __restrict__ target,
                                              long long rows, int cols, const A* __restrict__ weight,
                                              long long ignore_index, A* scratch) {
    __shared__ unsigned long long arrived;
    __shared__ int unclaimed;
    const int tid = threadIdx.x, threads = blockDim.x;
    for (;;) {
        if (tid == 0) arrived = *static_cast<const volatile unsigned long long*>(ex.arrival(ex.generation));
        converged_sync();
        const unsigned long long word = arrived;
        if (static_cast<int>(word >> 32) == ex.slots) {      // (arrived is not written again this launch)
            if (weight == nullptr) return A(static_cast<unsigned int>(word));
            return slot_sum(ex, SLOT_DENOMINATOR_WEIGHT, scratch);
        }
        if (tid == 0) unclaimed = -1;
        converged_sync();
        for (int k = tid; k < ex.slots; k += threads)
            if (*static_cast<const volatile unsigned int*>(ex.claim(k)) != ex.generation) unclaimed = k;
        converged_sync();
        const int slot = unclaimed;
        if (slot >= 0) take_over_slot(ex, slot, target, rows, cols, weight, ignore_index, scratch);
        converged_sync();                     // the shared words are rewritten next
    }
}

// The loss terms and the gradient of one used row in shared memory (cross_entropy_forward's).
template <typename T> struct SpanRowGrad {
    using A = Acc<T>;
    A m, ls, scale, g_smooth, g_target;
    const A* weight;
    bool smoothing, special;
    long long t;
    __device__ __forceinline__ A operator()(int c, A v) const {
        if (special) return quiet_nan<A>();
        A out = scale * fast_exp((v - m) - ls);
        if (smoothing) out -= g_smooth * (weight ? weight[c] : A(1));
        if (c == t) out -= g_target;
        return out;
    }
};

template <typename T, typename TI>
__global__ void __launch_bounds__(512, 1) cross_entropy_span_forward(
        const T* __restrict__ x, long long rows, int cols, const TI* __restrict__ target,
        const Acc<T>* __restrict__ weight, const Acc<T>* __restrict__ weight_sum, long long ignore_index,
        Acc<T> smoothing, int reduction, void* __restrict__ loss, int loss_in_acc, Acc<T>* __restrict__ m_out,
        Acc<T>* __restrict__ ls_out, T* __restrict__ dx, Acc<T>* __restrict__ denominator_out,
        unsigned long long* __restrict__ exchange, unsigned int generation, long long* __restrict__ error,
        const T* __restrict__ upstream) {
    using A = Acc<T>;
    extern __shared__ __align__(16) unsigned char shared_rows[];
    __shared__ A scratch_block[64];
    __shared__ bool last_block;
    T* span = reinterpret_cast<T*>(shared_rows);
    const int per_span = blockDim.x, r = threadIdx.x, slot = blockIdx.x;
    const long long stride = static_cast<long long>(gridDim.x) * per_span;
    const SpanExchange ex{exchange, generation, static_cast<int>(gridDim.x)};
    const A total_weight = weight != nullptr ? *weight_sum : A(cols);
    const A smooth = smoothing / A(cols);
    const bool mean_here = dx != nullptr && reduction == 2;
    // the block's own slot, claimed as it starts (the answer is needed only when it publishes)
    unsigned int claimed_before = 0u;
    if (mean_here && r == 0) claimed_before = atomicExch(ex.claim(slot), generation);
    if (reduction != 0 && slot == 0 && r == 0)
        *static_cast<volatile unsigned long long*>(ex.arrival(generation + 1u)) = 0ull;
    A denominator = A(0), grad_scale = (upstream != nullptr ? to_acc(*upstream) : A(1));
    A block_loss = A(0), block_weight = A(0);
    for (long long first = static_cast<long long>(slot) * per_span; first < rows; first += stride) {
        const bool first_span = first < per_span * static_cast<long long>(gridDim.x);
        const bool last_span = first + stride >= rows;
        const int count = static_cast<int>(min(static_cast<long long>(per_span), rows - first)) * cols;
        const long long row = first + r;
        const bool active = row < rows;
        const long long t = active ? static_cast<long long>(target[row]) : ignore_index;
        SpanLoad<T> load;
        load.issue(x + first * cols, count);
        load.commit(span);
        if (mean_here && first_span) {
            // the denominator's share of this block's spans, published unless another block took the slot
            A share_count, share_weights = A(0);
            if (last_span && weight == nullptr) {
                // one span: its used rows, counted by the barrier that makes the span visible
                share_count = A(__syncthreads_count(active && used_target(t, ignore_index, cols)));
            } else {
                __syncthreads();
                slot_targets(target, rows, cols, weight, ignore_index, slot, ex.slots, share_count, share_weights,
                             scratch_block);
            }
            if (r == 0 && claimed_before != generation) publish_share(ex, slot, share_count, share_weights,
                                                                     weight != nullptr);
        } else {
            __syncthreads();
        }
        const int shift = load.shift;
        A m = A(0), ls = A(0), w_t = A(0);
        bool used = false, special = false;
        if (active) {
            used = t != ignore_index;
            if (used && (t < 0 || t >= cols)) {
                record_bad_index(error, CLASS_INDEX, t, cols);
                used = false;
            }
            T* x_row = span + shift + r * cols;
            const A x_t = used ? to_acc(x_row[t]) : A(0);
            const A pivot = isfinite(x_t) ? x_t : A(0);
            A weighted = A(0);                   // sum_c w_c (x_c - pivot), for smoothing only
            finish(span_row_stats<T>(x_row, cols, r, [&](int c, A v) {
                       if (smoothing != A(0)) weighted += (weight ? weight[c] : A(1)) * (v - pivot);
                   }), m, ls);
            special = !isfinite(ls);
            w_t = used ? (weight ? weight[t] : A(1)) : A(0);
            A value = A(0);
            if (used) {
                if (special) {
                    value = quiet_nan<A>();
                } else {
                    value = (A(1) - smoothing) * w_t * ((m - x_t) + ls);
                    if (smoothing != A(0)) value += smooth * (total_weight * ((m - pivot) + ls) - weighted);
                }
            }
            if (reduction == 0) {
                if (loss_in_acc) static_cast<A*>(loss)[row] = value;
                else static_cast<T*>(loss)[row] = Store<T>::of(value);
            }
            block_loss += value;
            block_weight += w_t;
            if (m_out != nullptr) {
                m_out[row] = used || special ? m : A(0);
                ls_out[row] = used || special ? ls : A(0);
            }
        }
        if (reduction != 0 && last_span) {
            // the block's loss partial into its slot, and a ticket: the last block adds the slots up
            A part_loss = block_loss, part_weight = block_weight;
            group_sum2(part_loss, part_weight, scratch_block);
            if (r == 0) {
                publish(ex.value(SLOT_LOSS, slot), ex.slots, part_loss, generation);
                publish(ex.value(SLOT_LOSS_WEIGHT, slot), ex.slots, part_weight, generation);
                last_block = atomicAdd(ex.tickets(), 1u) == static_cast<unsigned int>(gridDim.x - 1);
            }
        }
        if (mean_here && first_span) {
            denominator = span_denominator(ex, target, rows, cols, weight, ignore_index, scratch_block);
            grad_scale *= A(1) / denominator;
        }
        if (dx != nullptr) {
            if (active) {
                T* x_row = span + shift + r * cols;
                const SpanRowGrad<T> grad{m, ls, grad_scale * ((A(1) - smoothing) * w_t + smooth * total_weight),
                                          grad_scale * smooth, grad_scale * (A(1) - smoothing) * w_t, weight,
                                          smoothing != A(0), special, t};
                // an ignored row: zeros, nan without finite statistics (torch's log_softmax backward)
                const A fill = special ? quiet_nan<A>() : A(0);
                RowWalk walk(r, cols);
                for (int k = 0; k < cols; ++k) {
                    const int c = walk.next();
                    x_row[c] = Store<T>::of(used ? grad(c, to_acc(x_row[c])) : fill);
                }
            }
            converged_sync();                 // (after thread 0's ticket too, where there is no mean)
            store_span(dx + first * cols, count, span, shift);
        }
        __syncthreads();                      // the span (and last_block) are rewritten next
    }
    // (every block has a span: the launcher's grid has no more blocks than spans)
    if (reduction != 0 && last_block) {
        A total = A(0), weights = A(0);
        for (int k = r; k < ex.slots; k += per_span) {
            total += take<A>(ex.value(SLOT_LOSS, k), ex.slots, generation);
            weights += take<A>(ex.value(SLOT_LOSS_WEIGHT, k), ex.slots, generation);
        }
        group_sum2(total, weights, scratch_block);
        if (r == 0) {
            const A mean_denominator = mean_here ? denominator : weights;
            const A result = reduction == 2 ? total / mean_denominator : total;
            if (loss_in_acc) *static_cast<A*>(loss) = result;
            else *static_cast<T*>(loss) = Store<T>::of(result);
            if (denominator_out != nullptr) *denominator_out = mean_denominator;
            *ex.tickets() = 0u;               // every ticket is taken: left at zero for the next launch
        }
    }
}

template <typename T, typename TI>
__global__ void __launch_bounds__(512, 1) cross_entropy_span_backward(
        const T* __restrict__ x, long long rows, int cols, const TI* __restrict__ target,
        const Acc<T>* __restrict__ weight, const Acc<T>* __restrict__ weight_sum, long long ignore_index,
        Acc<T> smoothing, const Acc<T>* __restrict__ m_in, const Acc<T>* __restrict__ ls_in,
        const T* __restrict__ grad, long long grad_stride, const Acc<T>* __restrict__ denominator,
        T* __restrict__ dx, const T* __restrict__ applied, T* __restrict__ next_upstream) {
    using A = Acc<T>;
    extern __shared__ __align__(16) unsigned char shared_rows[];
    if (next_upstream != nullptr && blockIdx.x == 0 && threadIdx.x == 0) *next_upstream = grad[0];
    if (applied != nullptr && same_value(to_acc(grad[0]), to_acc(*applied))) return;
    T* span = reinterpret_cast<T*>(shared_rows);
    const int per_span = blockDim.x, r = threadIdx.x;
    const A total_weight = weight != nullptr ? *weight_sum : A(cols);
    const A smooth = smoothing / A(cols);
    const A inverse_denominator = denominator != nullptr ? A(1) / *denominator : A(1);
    for (long long first = static_cast<long long>(blockIdx.x) * per_span; first < rows;
         first += static_cast<long long>(gridDim.x) * per_span) {
        const int count = static_cast<int>(min(static_cast<long long>(per_span), rows - first)) * cols;
        const long long row = first + r;
        const bool active = row < rows;
        const long long t = active ? static_cast<long long>(target[row]) : ignore_index;
        const A g = active ? to_acc(grad[row * grad_stride]) * inverse_denominator : A(0);
        SpanLoad<T> load;
        load.issue(x + first * cols, count);
        load.commit(span);
        const int shift = load.shift;
        __syncthreads();
        if (active) {
            T* x_row = span + shift + r * cols;
            A m, ls;
            if (m_in != nullptr) {
                m = m_in[row];
                ls = ls_in[row];
            } else {
                finish(span_row_stats<T>(x_row, cols, r, [](int, A) {}), m, ls);
            }
            const bool special = !isfinite(ls);
            // ignored (a bad target was recorded by the forward): zeros, nan without finite statistics
            const bool used = t != ignore_index && t >= 0 && t < cols;
            const A w_t = used ? (weight != nullptr ? weight[t] : A(1)) : A(0);
            const SpanRowGrad<T> grad_of{m, ls, g * ((A(1) - smoothing) * w_t + smooth * total_weight), g * smooth,
                                         g * (A(1) - smoothing) * w_t, weight, smoothing != A(0), special, t};
            const A fill = special ? quiet_nan<A>() : A(0);
            RowWalk walk(r, cols);
            for (int k = 0; k < cols; ++k) {
                const int c = walk.next();
                x_row[c] = Store<T>::of(used ? grad_of(c, to_acc(x_row[c])) : fill);
            }
        }
        __syncthreads();
        store_span(dx + first * cols, count, span, shift);
        __syncthreads();
    }
}
