// An example of "your own program" for fi-campaign (docs/NVBITFI.md, "Your own program"):
// a small fp32 CUDA program laid out as an NVBitFI test-app folder (run.sh, sdc_check.sh).
//
// It runs ROUNDS launches of one kernel, y = a * x + y over N floats (an FFMA per element,
// the fp32 group's instruction), then writes every 64th value of y to output.txt (one number a
// line, for workload.critical: {relative_error: X}) and a checksum to stdout. Everything it
// prints is deterministic: the checksum is summed on the host in a fixed order, so golden runs
// agree bit for bit. A CUDA error is printed to stderr and ends the program with exit code 1,
// which fi-campaign counts as a DUE.
//
// Build: make (nvcc -arch=native), or make ARCH=sm_90.

#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cuda_runtime.h>

static const int N = 1 << 16;
static const int ROUNDS = 4;
static const int STRIDE = 64;

#define CHECK(call)                                                                  \
    do {                                                                             \
        cudaError_t err_ = (call);                                                   \
        if (err_ != cudaSuccess) {                                                   \
            fprintf(stderr, "CUDA error: %s at %s:%d\n", cudaGetErrorString(err_),   \
                    __FILE__, __LINE__);                                             \
            return 1;                                                                \
        }                                                                            \
    } while (0)

__global__ void axpy(int n, float a, const float *x, float *y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = a * x[i] + y[i];
    }
}

int main(int argc, char **argv) {
    const char *out_path = argc > 1 ? argv[1] : "output.txt";
    std::vector<float> x(N), y(N);
    for (int i = 0; i < N; ++i) {
        x[i] = 1.0f + (float)(i % 97) / 97.0f;
        y[i] = (float)(i % 13) - 6.0f;
    }
    float *dx = nullptr, *dy = nullptr;
    CHECK(cudaMalloc(&dx, N * sizeof(float)));
    CHECK(cudaMalloc(&dy, N * sizeof(float)));
    CHECK(cudaMemcpy(dx, x.data(), N * sizeof(float), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dy, y.data(), N * sizeof(float), cudaMemcpyHostToDevice));
    const int threads = 256;
    const int blocks = (N + threads - 1) / threads;
    for (int r = 0; r < ROUNDS; ++r) {
        axpy<<<blocks, threads>>>(N, 0.5f + 0.25f * (float)r, dx, dy);
        CHECK(cudaGetLastError());
    }
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaMemcpy(y.data(), dy, N * sizeof(float), cudaMemcpyDeviceToHost));
    CHECK(cudaFree(dx));
    CHECK(cudaFree(dy));

    FILE *out = fopen(out_path, "w");
    if (out == nullptr) {
        fprintf(stderr, "cannot write %s\n", out_path);
        return 1;
    }
    double checksum = 0.0;
    for (int i = 0; i < N; ++i) {
        checksum += (double)y[i];
        if (i % STRIDE == 0) {
            fprintf(out, "%.9g\n", y[i]);
        }
    }
    fclose(out);
    printf("checksum: %.17g\n", checksum);
    return 0;
}
