// gpugrad kernels: layer normalisation over the trailing dims, forward and
// backward, one launch each (torch's native_layer_norm and its backward).
//
// Math (A = Acc<T>: float for half, bfloat16 and float, double for double;
// n = cols, inv = 1/n rounded once to A on the host):
//   forward:  mean = (sum x) * inv; var = (sum (x - mean)^2) * inv (two passes over
//             the row, the biased variance); rstd = 1 / sqrt(var + eps);
//             y = (x - mean) * rstd [* w] [+ b], rounded once to T; mean and rstd
//             kept per row in A for the backward.
//   backward: xhat = (x - mean) * rstd, dxhat = g [* w];
//             dx = ((dxhat - (sum dxhat) * inv) - xhat * ((sum dxhat * xhat) * inv)) * rstd;
//             dw = sum over rows of g * xhat, db = sum over rows of g.
// Layout: x, y, g and dx are rows of `cols` contiguous elements; w, b, dw and db
// have `cols` elements; mean and rstd one value per row.
// Launch: blocks of (32, WARPS) threads, a warp per row (rows of one block
// taken as blockIdx.x * WARPS + warp, striding by the grid).  The backward
// gives each block a contiguous range of rows_per_block rows: its warps write
// dx row by row, then its threads add the column sums of its rows (a thread per
// column, coalesced) into partials[block] and partials[grid + block]; the last
// block to finish (an atomic counter, left at zero) adds the partials in block
// order (deterministic) and writes dw and db.
// Bytes: forward reads x twice (the second pass from L1/L2 for rows of a few
// KB) and writes y; backward reads g and x (twice: rows, then columns) and
// writes dx, plus the partials (2 * grid * cols values of A).
#include "common.cuh"

using namespace gpugrad;

template <typename T>
__global__ void __launch_bounds__(MAX_THREADS) layer_norm_forward(
        const T* __restrict__ x, const T* __restrict__ weight, const T* __restrict__ bias, T* __restrict__ out,
        Acc<T>* __restrict__ mean_out, Acc<T>* __restrict__ rstd_out, long long rows, long long cols, double inv_count,
        double eps) {
    using A = Acc<T>;
    const int lane = threadIdx.x;
    const A inv = static_cast<A>(inv_count);
    for (long long r = static_cast<long long>(blockIdx.x) * blockDim.y + threadIdx.y; r < rows;
         r += static_cast<long long>(gridDim.x) * blockDim.y) {
        const T* row = x + r * cols;
        A s = A(0);
        for (long long c = lane; c < cols; c += 32) s += to_acc(row[c]);
        const A mean = warp_sum(s, 32) * inv;
        A q = A(0);
        for (long long c = lane; c < cols; c += 32) {
            const A d = to_acc(row[c]) - mean;
            q += d * d;
        }
        const A var = warp_sum(q, 32) * inv;
        const A rstd = A(1) / sqrt(var + static_cast<A>(eps));
        if (lane == 0) {
            mean_out[r] = mean;
            rstd_out[r] = rstd;
        }
        T* dst = out + r * cols;
        for (long long c = lane; c < cols; c += 32) {
            A v = (to_acc(row[c]) - mean) * rstd;
            if (weight != nullptr) v *= to_acc(weight[c]);
            if (bias != nullptr) v += to_acc(bias[c]);
            dst[c] = Store<T>::of(v);
        }
    }
}

template <typename T>
__global__ void __launch_bounds__(MAX_THREADS) layer_norm_backward(
        const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ weight,
        const Acc<T>* __restrict__ mean, const Acc<T>* __restrict__ rstd, T* __restrict__ dx, T* __restrict__ dweight,
        T* __restrict__ dbias, Acc<T>* __restrict__ partials, unsigned int* __restrict__ counter, long long rows,
        long long cols, double inv_count, long long rows_per_block) {
    using A = Acc<T>;
    const int lane = threadIdx.x;
    const long long first = static_cast<long long>(blockIdx.x) * rows_per_block;
    const long long last = min(rows, first + rows_per_block);
    const A inv = static_cast<A>(inv_count);
    if (dx != nullptr) {
        for (long long r = first + threadIdx.y; r < last; r += blockDim.y) {
            const T* gr = g + r * cols;
            const T* xr = x + r * cols;
            const A m = mean[r], s = rstd[r];
            A s1 = A(0), s2 = A(0);
            for (long long c = lane; c < cols; c += 32) {
                A d = to_acc(gr[c]);
                if (weight != nullptr) d *= to_acc(weight[c]);
                s1 += d;
                s2 += d * ((to_acc(xr[c]) - m) * s);
            }
            s1 = warp_sum(s1, 32) * inv;
            s2 = warp_sum(s2, 32) * inv;
            T* dst = dx + r * cols;
            for (long long c = lane; c < cols; c += 32) {
                A d = to_acc(gr[c]);
                if (weight != nullptr) d *= to_acc(weight[c]);
                const A xhat = (to_acc(xr[c]) - m) * s;
                dst[c] = Store<T>::of(((d - s1) - xhat * s2) * s);
            }
        }
    }
    if (dweight == nullptr && dbias == nullptr) return;
    const int flat = threadIdx.y * blockDim.x + threadIdx.x;
    const int threads = blockDim.x * blockDim.y;
    const long long blocks = gridDim.x;
    for (long long c = flat; c < cols; c += threads) {
        A sw = A(0), sb = A(0);
        for (long long r = first; r < last; ++r) {
            const A gv = to_acc(g[r * cols + c]);
            sw += gv * ((to_acc(x[r * cols + c]) - mean[r]) * rstd[r]);
            sb += gv;
        }
        partials[blockIdx.x * cols + c] = sw;
        partials[(blocks + blockIdx.x) * cols + c] = sb;
    }
    __threadfence();
    __shared__ bool is_last;
    __syncthreads();
    if (flat == 0) is_last = atomicAdd(counter, 1u) == static_cast<unsigned int>(blocks - 1);
    converged_sync();
    if (!is_last) return;
    __threadfence();
    const volatile A* seen = partials;
    for (long long c = flat; c < cols; c += threads) {
        A sw = A(0), sb = A(0);
        for (long long b = 0; b < blocks; ++b) {
            sw += seen[b * cols + c];
            sb += seen[(blocks + b) * cols + c];
        }
        if (dweight != nullptr) dweight[c] = Store<T>::of(sw);
        if (dbias != nullptr) dbias[c] = Store<T>::of(sb);
    }
    if (flat == 0) *counter = 0u;
}
