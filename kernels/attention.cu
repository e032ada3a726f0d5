// Attention's softmax: the scale, the mask, the softmax and the dropout of
// scaled_dot_product_attention's scores in one launch forward and one backward.
//
// Math: the scores s (..., L, S) = q k^T are rows r = (b, i) of S elements (i = r % L, b = r / L,
//       b = (b0, b1) over two merged batch dims of the mask); in A = Acc<T>:
//   v_j = scale * s_j  [+ mask[b0, b1, i, j]  (MASK 1, additive)]
//                      [+ -inf where !mask[b0, b1, i, j]  (MASK 2, bool)]
//                      [+ -inf where j > i   (causal: torch's is_causal, aligned top-left)]
//         (the -inf added as torch's math path adds its bias: a nan or +inf score under it is nan);
//   y = softmax(v) (softmax.cu's forward with closed_zero: a row of only -inf gives 0, torch's
//       _safe_softmax; a row holding nan or +inf gives nan), written in T;
//   with dropout z = y * (keep_j ? dscale : 0), keep_j = philox_uniform(word f % 4 of counter
//       offset + f / 4) >= p at the flat index f = r * S + j: elementwise.cu's dropout_apply of the
//       contiguous y, the same mask and the same rounding;
//   backward: g' = g (under dropout: g * (keep_j ? dscale : 0), rounded to T as dropout_apply's);
//       ds_j = (y_j * (g'_j - sum_k g'_k y_k)) * scale  (the mask's gradient is not taken here).
// Bytes: forward reads s once when a row group's rows fit in shared memory (each lane keeps what it
//       read), else twice (the second mostly from L2), the mask row once (broadcast rows from L2),
//       and writes y (and z); backward reads y and g once on the same condition (g' is what is kept)
//       and writes ds.
// Launch: softmax.cu's shape (launch.launch_shape, rows never split, no clusters): G lanes per row,
//       blockDim.y rows per block, the grid striding over row groups; dynamic shared memory = rows
//       per block x row_room (x 2 backward) when caching.
#include "common.cuh"

using namespace gpugrad;

namespace {

constexpr int MASK_NONE = 0, MASK_ADD = 1, MASK_BOOL = 2;

// The mask's element strides over (b0, b1, i, j), b1 taking n1 values (0 strides: broadcast).
struct MaskLayout {
    long long n1, s0, s1, si, sj;
    __device__ __forceinline__ long long base(long long b, long long i) const {
        return (b / n1) * s0 + (b % n1) * s1 + i * si;
    }
};

// keep ? dscale : 0 for the element at flat index f, one Philox call per group of four.
template <typename A> struct DropMask {
    unsigned long long seed, offset;
    float p;
    A kept;
    long long group = -1;
    unsigned int words[4];
    __device__ __forceinline__ A factor(long long f) {
        if (f / 4 != group) {
            group = f / 4;
            philox(seed, offset + static_cast<unsigned long long>(group), words);
        }
        const int k = static_cast<int>(f % 4);      // selected, not indexed: words stays in registers
        const unsigned int word = k == 0 ? words[0] : k == 1 ? words[1] : k == 2 ? words[2] : words[3];
        return philox_uniform(word) >= p ? kept : A(0);
    }
};

}  // namespace

template <typename T, int MASK>
__global__ void __launch_bounds__(512, 1) attention_softmax_forward(
        const T* __restrict__ s, long long so, long long sc, long long rows, int length, int cols, double scale,
        const T* __restrict__ add_mask, const bool* __restrict__ bool_mask, long long m_n1, long long m_s0,
        long long m_s1, long long m_si, long long m_sj, int causal,
        T* __restrict__ y, T* __restrict__ z, unsigned long long seed, unsigned long long offset, float p,
        double dscale, int use_cache) {
    using A = Acc<T>;
    constexpr int N = Vec<T>::N;
    extern __shared__ __align__(16) unsigned char shared_rows[];
    __shared__ A scratch_m[32], scratch_s[32];
    const MaskLayout mask_layout{m_n1, m_s0, m_s1, m_si, m_sj};
    const A a_scale = static_cast<A>(scale);
    T* cache = use_cache && sc == 1 ? reinterpret_cast<T*>(shared_rows) + threadIdx.y * row_room<T>(cols) : nullptr;
    for (long long group = static_cast<long long>(blockIdx.x) * blockDim.y; group < rows;
         group += static_cast<long long>(gridDim.x) * blockDim.y) {
        const long long row = group + threadIdx.y;
        const bool active = row < rows;
        const long long b = row / length, i = row % length;
        const T* s_row = s + (active ? row * so : 0);
        const long long mask_row = MASK == MASK_NONE || !active ? 0 : mask_layout.base(b, i);
        auto value = [&](int j, A v) {
            v *= a_scale;
            if constexpr (MASK == MASK_ADD) v += to_acc(add_mask[mask_row + j * m_sj]);
            if constexpr (MASK == MASK_BOOL) if (!bool_mask[mask_row + j * m_sj]) v += neg_inf<A>();
            if (causal && j > i) v += neg_inf<A>();
            return v;
        };
        const int head = sc == 1 ? head_length(s_row, cols) : 0;
        const int shift = cache_shift<T>(head);
        MaxSum<A> st = empty_max_sum<A>();
        if (active)
            traverse<T, 2>(s_row, sc, cols, head, threadIdx.x, blockDim.x,     // 2 in flight: registers
                        [&](int j, T raw) {
                            if (cache) cache[j + shift] = raw;
                            const A v[1] = {value(j, to_acc(raw))};
                            accumulate(st, v, 1);
                        },
                        [&](int j0, const Vec<T>& pack) {
                            if (cache) *reinterpret_cast<Vec<T>*>(cache + j0 + shift) = pack;
                            A v[N];
#pragma unroll
                            for (int k = 0; k < N; ++k) v[k] = value(j0 + k, to_acc(pack.v[k]));
                            accumulate(st, v, N);
                        });
        st = group_merge(st, scratch_m, scratch_s);
        A m, ls;
        finish(st, m, ls);
        const bool special = !isfinite(ls);
        if (active) {
            T* y_row = y + row * cols;
            T* z_row = z ? z + row * cols : nullptr;
            DropMask<A> drop{seed, offset, p, static_cast<A>(dscale)};
            const bool same_phase = sc == 1 && (reinterpret_cast<unsigned long long>(y_row) & 15) ==
                                                   (reinterpret_cast<unsigned long long>(s_row) & 15);
            auto probability = [&](int j, A raw) -> T {
                if (special) return Store<T>::of(ls == neg_inf<A>() ? A(0) : quiet_nan<A>());
                return Store<T>::of(fast_exp((value(j, raw) - m) - ls));
            };
            auto dropped = [&](int j, T yv) { return Store<T>::of(to_acc(yv) * drop.factor(row * cols + j)); };
            auto scalar = [&](int j, T raw) {
                const T yv = probability(j, to_acc(raw));
                y_row[j] = yv;
                if (z_row) z_row[j] = dropped(j, yv);
            };
            auto pack = [&](int j0, const Vec<T>& p_in) {
                Vec<T> r;
#pragma unroll
                for (int k = 0; k < N; ++k) r.v[k] = probability(j0 + k, to_acc(p_in.v[k]));
                if (same_phase) *reinterpret_cast<Vec<T>*>(y_row + j0) = r;
                else
#pragma unroll
                    for (int k = 0; k < N; ++k) y_row[j0 + k] = r.v[k];
                if (z_row) {
#pragma unroll
                    for (int k = 0; k < N; ++k) r.v[k] = dropped(j0 + k, r.v[k]);
                    if (same_phase) *reinterpret_cast<Vec<T>*>(z_row + j0) = r;
                    else
#pragma unroll
                        for (int k = 0; k < N; ++k) z_row[j0 + k] = r.v[k];
                }
            };
            // one vector in flight per lane here (the values, the mask, Philox and two stores: registers)
            if (cache) traverse<T, 1>(cache + shift, 1, cols, head, threadIdx.x, blockDim.x, scalar, pack);
            else traverse<T, 1>(s_row, sc, cols, head, threadIdx.x, blockDim.x, scalar, pack);
        }
        if (cache) group_barrier();
    }
}

template <typename T>
__global__ void __launch_bounds__(512, 1) attention_softmax_backward(
        const T* __restrict__ y, const T* __restrict__ g, long long g_so, long long g_sc, long long rows, int cols,
        double scale, int dropout, unsigned long long seed, unsigned long long offset, float p, double dscale,
        T* __restrict__ out, int use_cache) {
    using A = Acc<T>;
    constexpr int N = Vec<T>::N;
    extern __shared__ __align__(16) unsigned char shared_rows[];
    __shared__ A scratch[32];
    const A a_scale = static_cast<A>(scale);
    for (long long group = static_cast<long long>(blockIdx.x) * blockDim.y; group < rows;
         group += static_cast<long long>(gridDim.x) * blockDim.y) {
        const long long row = group + threadIdx.y;
        const bool active = row < rows;
        const T* y_row = y + (active ? row * cols : 0);
        const T* g_row = g + (active ? row * g_so : 0);
        T* out_row = out + (active ? row * cols : 0);
        DropMask<A> drop{seed, offset, p, static_cast<A>(dscale)};
        auto upstream = [&](int j, T gv) { return dropout ? Store<T>::of(to_acc(gv) * drop.factor(row * cols + j)) : gv; };
        const bool vector = g_sc == 1 && (reinterpret_cast<unsigned long long>(y_row) & 15) ==
                                             (reinterpret_cast<unsigned long long>(g_row) & 15);
        const int head = vector ? head_length(y_row, cols) : 0;
        const int shift = cache_shift<T>(head);
        T* cache_y = use_cache && vector
                         ? reinterpret_cast<T*>(shared_rows) + threadIdx.y * 2 * row_room<T>(cols) : nullptr;
        T* cache_g = cache_y ? cache_y + row_room<T>(cols) : nullptr;
        A partial = A(0);
        if (active)
            traverse2<T>(y_row, 1, g_row, g_sc, cols, vector, head, threadIdx.x, blockDim.x,
                         [&](int j, T yv, T gv) {
                             gv = upstream(j, gv);
                             if (cache_y) { cache_y[j + shift] = yv; cache_g[j + shift] = gv; }
                             partial += to_acc(gv) * to_acc(yv);
                         },
                         [&](int j0, const Vec<T>& py, const Vec<T>& pg_in) {
                             Vec<T> pg;
#pragma unroll
                             for (int k = 0; k < N; ++k) pg.v[k] = upstream(j0 + k, pg_in.v[k]);
                             if (cache_y) {
                                 *reinterpret_cast<Vec<T>*>(cache_y + j0 + shift) = py;
                                 *reinterpret_cast<Vec<T>*>(cache_g + j0 + shift) = pg;
                             }
#pragma unroll
                             for (int k = 0; k < N; ++k) partial += to_acc(pg.v[k]) * to_acc(py.v[k]);
                         });
        const A dot = group_sum(partial, scratch);
        if (active) {
            auto value = [&](T yv, T gv) { return Store<T>::of((to_acc(yv) * (to_acc(gv) - dot)) * a_scale); };
            auto scalar = [&](int j, T yv, T gv) { out_row[j] = value(yv, gv); };
            auto pack = [&](int j0, const Vec<T>& py, const Vec<T>& pg) {
                Vec<T> r;
#pragma unroll
                for (int k = 0; k < N; ++k) r.v[k] = value(py.v[k], pg.v[k]);
                *reinterpret_cast<Vec<T>*>(out_row + j0) = r;     // out and y: one layout, one phase
            };
            if (cache_y) {
                traverse2<T>(cache_y + shift, 1, cache_g + shift, 1, cols, true, head, threadIdx.x, blockDim.x,
                             scalar, pack);
            } else {
                traverse2<T>(y_row, 1, g_row, g_sc, cols, vector, head, threadIdx.x, blockDim.x,
                             [&](int j, T yv, T gv) { scalar(j, yv, upstream(j, gv)); },
                             [&](int j0, const Vec<T>& py, const Vec<T>& pg_in) {
                                 Vec<T> pg;
#pragma unroll
                                 for (int k = 0; k < N; ++k) pg.v[k] = upstream(j0 + k, pg_in.v[k]);
                                 pack(j0, py, pg);
                             });
            }
        }
        if (use_cache) group_barrier();
    }
}
