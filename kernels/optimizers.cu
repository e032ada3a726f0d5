// Optimizer steps over every parameter of a dtype in one launch (torch's
// fused / foreach optimizers, chunked as its multi_tensor_apply).
//
// Math, per element, in A = float for __half / __nv_bfloat16 / float and double
// for double, in the order of torch's single-tensor updates (g = -grad when
// maximize; "wd" = weight decay; every hyper-parameter is per tensor, so the
// parameter groups of an optimizer share a launch):
//   SGD:     g += wd p;  b = g (first step) or momentum b + (1 - dampening) g;
//            g = g + momentum b (nesterov) or b;  p -= lr g
//   Adam:    p *= 1 - lr wd (decoupled, AdamW) or g += wd p;  m = lerp(m, g, 1 - beta1);
//            v = beta2 v + (1 - beta2) g g;  vmax = max(vmax, v) (amsgrad);
//            p -= lr / (1 - beta1^t) * m / (sqrt(v or vmax) / sqrt(1 - beta2^t) + eps)
//   RMSprop: g += wd p;  v = alpha v + (1 - alpha) g g;  centered: ga = lerp(ga, g, 1 - alpha),
//            d = sqrt(v - ga ga) + eps, else d = sqrt(v) + eps;
//            momentum: b = momentum b + g / d, p -= lr b;  else p -= lr g / d
//   Adagrad: g += wd p;  s += g g;  p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)
// The step t is a per-tensor number, or read from the tensor's device step
// counter (GradScaler on the GPU: increment_steps runs first).  The whole
// launch does nothing when *found_inf != 0 (GradScaler met inf or nan; the
// flag is read on the device, no host sync).
// Bytes: each element's gradient, parameter and state are read once and the
// parameter and state written once (Adam, float32: 16 bytes read, 12 written).
// Launch: blocks of 512 threads stride over the chunks of all the tensors
// (multi_tensor.cuh), a thread per element.
#include "common.cuh"
#include "multi_tensor.cuh"

using namespace gpugrad;

namespace {

__device__ __forceinline__ bool skipped(const float* found_inf) { return found_inf != nullptr && *found_inf != 0.0f; }

// torch's lerp: self + w (end - self) for w < 0.5, else end - (end - self)(1 - w)
template <typename A> __device__ __forceinline__ A lerp(A self, A end, A weight) {
    return weight < A(0.5) ? self + weight * (end - self) : end - (end - self) * (A(1) - weight);
}

// beta^t for a device step count t (the host computes it with Python's pow otherwise)
__device__ __forceinline__ double power(double beta, double t) { return beta == 0.0 ? 0.0 : exp(t * log(beta)); }

}  // namespace

// arrays: param, grad, momentum buffer (0: no momentum)
// numbers: lr, momentum, dampening, weight_decay, nesterov, maximize, first step
template <typename T>
__global__ void __launch_bounds__(512) sgd_step(const long long* __restrict__ words, int tensors, long long chunk_size,
                                                long long chunks, const float* __restrict__ found_inf) {
    using A = Acc<T>;
    if (skipped(found_inf)) return;
    const TensorTable<3, 7> table{words, tensors, chunk_size};
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long* row = table.row_of(c);
        long long begin, end;
        table.bounds(row, c, begin, end);
        T* __restrict__ p = table.array<T>(row, 0);
        const T* __restrict__ grad = table.array<const T>(row, 1);
        T* __restrict__ buf = table.array<T>(row, 2);
        const A lr = A(table.number(row, 0)), momentum = A(table.number(row, 1));
        const A keep = A(1.0 - table.number(row, 2)), wd = A(table.number(row, 3));
        const bool nesterov = table.number(row, 4) != 0.0, maximize = table.number(row, 5) != 0.0;
        const bool first = table.number(row, 6) != 0.0;
        for (long long i = begin + threadIdx.x; i < end; i += blockDim.x) {
            const A x = to_acc(p[i]);
            A g = to_acc(grad[i]);
            if (maximize) g = -g;
            if (wd != A(0)) g = g + wd * x;
            if (buf != nullptr) {
                const A b = first ? g : to_acc(buf[i]) * momentum + keep * g;
                const T stored = Store<T>::of(b);
                buf[i] = stored;
                g = nesterov ? g + momentum * to_acc(stored) : to_acc(stored);
            }
            p[i] = Store<T>::of(x - lr * g);
        }
    }
}

// arrays: param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (0: no amsgrad), step counter (0: numbers 5, 6)
// numbers: lr, beta1, beta2, eps, weight_decay, 1 - beta1^t, sqrt(1 - beta2^t), decoupled, maximize
template <typename T>
__global__ void __launch_bounds__(512) adam_step(const long long* __restrict__ words, int tensors, long long chunk_size,
                                                 long long chunks, const float* __restrict__ found_inf) {
    using A = Acc<T>;
    if (skipped(found_inf)) return;
    const TensorTable<6, 9> table{words, tensors, chunk_size};
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long* row = table.row_of(c);
        long long begin, end;
        table.bounds(row, c, begin, end);
        T* __restrict__ p = table.array<T>(row, 0);
        const T* __restrict__ grad = table.array<const T>(row, 1);
        T* __restrict__ m = table.array<T>(row, 2);
        T* __restrict__ v = table.array<T>(row, 3);
        T* __restrict__ vmax = table.array<T>(row, 4);
        const double lr = table.number(row, 0), beta1 = table.number(row, 1), beta2 = table.number(row, 2);
        const double wd = table.number(row, 4);
        const float* counter = table.array<const float>(row, 5);
        const double correction1 = counter ? 1.0 - power(beta1, *counter) : table.number(row, 5);
        const A correction2_sqrt = A(counter ? sqrt(1.0 - power(beta2, *counter)) : table.number(row, 6));
        const bool decoupled = table.number(row, 7) != 0.0, maximize = table.number(row, 8) != 0.0;
        const A step_size = A(lr / correction1);
        const A eps = A(table.number(row, 3)), decay = A(1.0 - lr * wd), l2 = A(wd);
        const A weight1 = A(1.0 - beta1), b2 = A(beta2), weight2 = A(1.0 - beta2);
        for (long long i = begin + threadIdx.x; i < end; i += blockDim.x) {
            A x = to_acc(p[i]);
            A g = to_acc(grad[i]);
            if (maximize) g = -g;
            if (wd != 0.0) {
                if (decoupled) x = to_acc(Store<T>::of(x * decay));
                else g = g + l2 * x;
            }
            const A mi = to_acc(Store<T>::of(lerp(to_acc(m[i]), g, weight1)));
            const A vi = to_acc(Store<T>::of(to_acc(v[i]) * b2 + weight2 * g * g));
            m[i] = Store<T>::of(mi);
            v[i] = Store<T>::of(vi);
            A second = vi;
            if (vmax != nullptr) {
                second = nan_max(to_acc(vmax[i]), vi);
                vmax[i] = Store<T>::of(second);
            }
            const A denom = sqrt(second) / correction2_sqrt + eps;
            p[i] = Store<T>::of(x - step_size * (mi / denom));
        }
    }
}

// arrays: param, grad, square_avg, momentum buffer (0: no momentum), grad_avg (0: not centered),
//         step counter (0 or a device counter, which only increment_steps touches)
// numbers: lr, alpha, eps, weight_decay, momentum, maximize
template <typename T>
__global__ void __launch_bounds__(512) rmsprop_step(const long long* __restrict__ words, int tensors,
                                                    long long chunk_size, long long chunks,
                                                    const float* __restrict__ found_inf) {
    using A = Acc<T>;
    if (skipped(found_inf)) return;
    const TensorTable<6, 6> table{words, tensors, chunk_size};
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long* row = table.row_of(c);
        long long begin, end;
        table.bounds(row, c, begin, end);
        T* __restrict__ p = table.array<T>(row, 0);
        const T* __restrict__ grad = table.array<const T>(row, 1);
        T* __restrict__ square_avg = table.array<T>(row, 2);
        T* __restrict__ buf = table.array<T>(row, 3);
        T* __restrict__ grad_avg = table.array<T>(row, 4);
        const A lr = A(table.number(row, 0)), alpha = A(table.number(row, 1)), weight = A(1.0 - table.number(row, 1));
        const A eps = A(table.number(row, 2)), wd = A(table.number(row, 3)), momentum = A(table.number(row, 4));
        const bool maximize = table.number(row, 5) != 0.0;
        for (long long i = begin + threadIdx.x; i < end; i += blockDim.x) {
            const A x = to_acc(p[i]);
            A g = to_acc(grad[i]);
            if (maximize) g = -g;
            if (wd != A(0)) g = g + wd * x;
            const A sq = to_acc(Store<T>::of(to_acc(square_avg[i]) * alpha + weight * g * g));
            square_avg[i] = Store<T>::of(sq);
            A avg;
            if (grad_avg != nullptr) {
                const A ga = to_acc(Store<T>::of(lerp(to_acc(grad_avg[i]), g, weight)));
                grad_avg[i] = Store<T>::of(ga);
                avg = to_acc(Store<T>::of(sqrt(to_acc(Store<T>::of(sq + A(-1) * ga * ga)))));
            } else {
                avg = to_acc(Store<T>::of(sqrt(sq)));
            }
            avg = to_acc(Store<T>::of(avg + eps));
            if (buf != nullptr) {
                const A b = to_acc(Store<T>::of(to_acc(buf[i]) * momentum + g / avg));
                buf[i] = Store<T>::of(b);
                p[i] = Store<T>::of(x - lr * b);
            } else {
                p[i] = Store<T>::of(x - lr * (g / avg));
            }
        }
    }
}

// arrays: param, grad, sum, step counter (0: number 4)
// numbers: lr, lr_decay, weight_decay, eps, lr / (1 + (t - 1) lr_decay), maximize
template <typename T>
__global__ void __launch_bounds__(512) adagrad_step(const long long* __restrict__ words, int tensors,
                                                    long long chunk_size, long long chunks,
                                                    const float* __restrict__ found_inf) {
    using A = Acc<T>;
    if (skipped(found_inf)) return;
    const TensorTable<4, 6> table{words, tensors, chunk_size};
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long* row = table.row_of(c);
        long long begin, end;
        table.bounds(row, c, begin, end);
        T* __restrict__ p = table.array<T>(row, 0);
        const T* __restrict__ grad = table.array<const T>(row, 1);
        T* __restrict__ total = table.array<T>(row, 2);
        const float* counter = table.array<const float>(row, 3);
        const A clr = A(counter ? table.number(row, 0) / (1.0 + (*counter - 1.0) * table.number(row, 1))
                                : table.number(row, 4));
        const A wd = A(table.number(row, 2)), eps = A(table.number(row, 3));
        const bool maximize = table.number(row, 5) != 0.0;
        for (long long i = begin + threadIdx.x; i < end; i += blockDim.x) {
            const A x = to_acc(p[i]);
            A g = to_acc(grad[i]);
            if (maximize) g = -g;
            if (wd != A(0)) g = g + wd * x;
            const A s = to_acc(Store<T>::of(to_acc(total[i]) + g * g));
            total[i] = Store<T>::of(s);
            const A std = to_acc(Store<T>::of(sqrt(s))) + eps;
            p[i] = Store<T>::of(x - clr * (g / to_acc(Store<T>::of(std))));
        }
    }
}

// The device step counters (float32, column `list` of the table) += 1, unless *found_inf != 0.
// One thread per tensor; runs before the step that reads them.
__global__ void __launch_bounds__(512) increment_steps(const long long* __restrict__ words, int tensors, int stride,
                                                       int list, const float* __restrict__ found_inf) {
    if (skipped(found_inf)) return;
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < tensors; t += gridDim.x * blockDim.x) {
        float* counter = reinterpret_cast<float*>(words[static_cast<long long>(t) * stride + list]);
        if (counter != nullptr) *counter += 1.0f;
    }
}
