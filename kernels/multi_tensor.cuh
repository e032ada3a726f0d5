// gpugrad kernels: one launch over many tensors (torch's multi_tensor_apply).
//
// The tensors of a launch are described by a table in device memory, one row
// of STRIDE = LISTS + 2 + NUMBERS 64-bit words per tensor:
//   [0, LISTS)              addresses of the tensor's arrays (parameter, gradient,
//                           state...; 0 where one is absent)
//   LISTS                   its number of elements (> 0)
//   LISTS + 1               the index of its first chunk: the launch's chunks are
//                           numbered tensor after tensor, CHUNK elements each
//   LISTS + 2 + k           per-tensor number k (a double, bit for bit): learning
//                           rates and the like, so that parameter groups share a launch
// A block takes chunks blockIdx.x, blockIdx.x + gridDim.x, ... and finds the
// tensor of each by a binary search of the first-chunk column.  All arrays of a
// tensor have its number of elements and are contiguous.
#pragma once

namespace gpugrad {

template <int LISTS, int NUMBERS> struct TensorTable {
    static constexpr int STRIDE = LISTS + 2 + NUMBERS;
    const long long* __restrict__ words;
    int tensors;
    long long chunk_size;

    // The row of the tensor holding chunk c (the last row whose first chunk is <= c).
    __device__ __forceinline__ const long long* row_of(long long c) const {
        int low = 0, high = tensors - 1;
        while (low < high) {
            const int middle = (low + high + 1) >> 1;
            if (words[static_cast<long long>(middle) * STRIDE + LISTS + 1] <= c) low = middle;
            else high = middle - 1;
        }
        return words + static_cast<long long>(low) * STRIDE;
    }
    __device__ __forceinline__ static long long numel(const long long* row) { return row[LISTS]; }
    // [begin, end) of chunk c within its tensor
    __device__ __forceinline__ void bounds(const long long* row, long long c, long long& begin, long long& end) const {
        begin = (c - row[LISTS + 1]) * chunk_size;
        end = min(begin + chunk_size, row[LISTS]);
    }
    template <typename T> __device__ __forceinline__ static T* array(const long long* row, int k) {
        return reinterpret_cast<T*>(row[k]);
    }
    __device__ __forceinline__ static double number(const long long* row, int k) {
        return __longlong_as_double(row[LISTS + 2 + k]);
    }
};

}  // namespace gpugrad
