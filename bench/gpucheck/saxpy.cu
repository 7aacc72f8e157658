// A plain CUDA C++ program for the GPU check (bench/gpucheck): NVBit is first tried on an
// executable that is not python3, since a public report finds that on driver 580 NVBit
// instruments C executables while its callbacks never fire inside a python3 process.
//
//   saxpy OUT.bin     runs six launches of three fp32 kernels and writes the final vector
//
// The output is deterministic (no atomics, fixed launch sequence), so a run under the DUMMY
// injector must write the same bytes as the native run. The kernels use FFMA, FMUL and FADD
// (group fp32), predicated tails (n is not a multiple of the block) and a device function.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

static const int N = 5000;

__device__ __noinline__ float poly(float x) { return (0.25f * x + 0.5f) * x + 1.0f; }

__global__ void saxpy(int n, float a, const float* x, float* y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}

__global__ void smooth(int n, const float* x, float* y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float acc = 0.0f;
        for (int k = 0; k < 8; k++) acc = fmaf(x[(i + k) % n], 0.125f, acc);
        y[i] = poly(acc);
    }
}

__global__ void scale(int n, float s, float* y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = y[i] * s - 0.5f;
}

static void check(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return;
    fprintf(stderr, "saxpy: %s failed: %s\n", what, cudaGetErrorString(e));
    exit(3);
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: saxpy OUT.bin\n");
        return 2;
    }
    float* host = (float*)malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) host[i] = (float)(i % 97) / 7.0f - 3.0f;
    float *x, *y;
    check(cudaMalloc(&x, N * sizeof(float)), "cudaMalloc");
    check(cudaMalloc(&y, N * sizeof(float)), "cudaMalloc");
    check(cudaMemcpy(x, host, N * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
    check(cudaMemcpy(y, host, N * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
    int threads = 128, blocks = (N + threads - 1) / threads;
    saxpy<<<blocks, threads>>>(N, 2.0f, x, y);
    smooth<<<blocks, threads>>>(N, y, x);
    scale<<<blocks, threads>>>(N, 0.75f, x);
    saxpy<<<blocks, threads>>>(N, -1.5f, x, y);
    smooth<<<blocks, threads>>>(N, y, x);
    scale<<<blocks, threads>>>(N, 1.25f, x);
    check(cudaGetLastError(), "a launch");
    check(cudaMemcpy(host, x, N * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy back");
    FILE* f = fopen(argv[1], "wb");
    if (!f || fwrite(host, sizeof(float), N, f) != (size_t)N) {
        fprintf(stderr, "saxpy: cannot write %s\n", argv[1]);
        return 4;
    }
    fclose(f);
    double sum = 0;
    for (int i = 0; i < N; i++) sum += host[i];
    printf("saxpy: %d values, sum %.6f\n", N, sum);
    return 0;
}
