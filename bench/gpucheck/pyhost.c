/* A C host that runs a Python command line, prepared for the GPU check (bench/gpucheck).
 *
 * A public report finds that on driver 580 NVBit instruments C executables while its
 * callbacks never fire inside a python3 process. This host is a C executable: it initialises
 * CUDA itself (cuInit and the primary context of device 0, through libcuda.so.1 opened at run
 * time, so no CUDA library is needed to link it), then embeds the interpreter and runs its
 * arguments as a python3 command line:
 *
 *   FI_PYHOST_PYTHON=/path/to/python3 pyhost -m fi_campaign.workload.program ROOT --out x.npy
 *
 * FI_PYHOST_PYTHON names the interpreter whose installation (a virtual environment included)
 * the embedded one takes as its own: its standard library and site-packages. A campaign runs
 * its workload processes through it with FI_WORKLOAD_PYTHON=/path/to/pyhost.
 * FI_PYHOST_NO_CUDA=1 skips the CUDA part, so the embedding can be rehearsed without a GPU.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*cu_init_t)(unsigned int);
typedef int (*cu_device_get_t)(int*, int);
typedef int (*cu_retain_t)(void**, int);
typedef int (*cu_set_current_t)(void*);

static int cuda_first(void) {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        fprintf(stderr, "pyhost: cannot open libcuda.so.1: %s\n", dlerror());
        return 1;
    }
    cu_init_t cu_init = (cu_init_t)dlsym(lib, "cuInit");
    cu_device_get_t cu_device_get = (cu_device_get_t)dlsym(lib, "cuDeviceGet");
    cu_retain_t cu_retain = (cu_retain_t)dlsym(lib, "cuDevicePrimaryCtxRetain");
    cu_set_current_t cu_set_current = (cu_set_current_t)dlsym(lib, "cuCtxSetCurrent");
    if (!cu_init || !cu_device_get || !cu_retain || !cu_set_current) {
        fprintf(stderr, "pyhost: libcuda.so.1 lacks a driver entry point\n");
        return 1;
    }
    int dev = 0, rc;
    void* ctx = NULL;
    if ((rc = cu_init(0)) != 0 || (rc = cu_device_get(&dev, 0)) != 0 || (rc = cu_retain(&ctx, dev)) != 0 ||
        (rc = cu_set_current(ctx)) != 0) {
        fprintf(stderr, "pyhost: CUDA initialisation failed (CUresult %d)\n", rc);
        return 1;
    }
    return 0;
}

int main(int argc, char** argv) {
    const char* python = getenv("FI_PYHOST_PYTHON");
    if (!python || !*python) {
        fprintf(stderr, "pyhost: set FI_PYHOST_PYTHON to the python3 whose installation to use\n");
        return 2;
    }
    const char* no_cuda = getenv("FI_PYHOST_NO_CUDA");
    if (!(no_cuda && *no_cuda == '1') && cuda_first() != 0) return 3;
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, python);
    if (!PyStatus_Exception(status)) status = PyConfig_SetBytesString(&config, &config.executable, python);
    argv[0] = (char*)python;
    if (!PyStatus_Exception(status)) status = PyConfig_SetBytesArgv(&config, argc, argv);
    if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) Py_ExitStatusException(status);
    return Py_RunMain();
}
