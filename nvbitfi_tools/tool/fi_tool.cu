// fi-campaign's NVBit tool, host side: launch callbacks, instrumentation, the device buffer and
// the files. One source, built three times by CMakeLists.txt: profiler.so (FI_MODE_PROFILE),
// injector.so and injector-dummy.so (FI_DUMMY: the whole path, no register write).
//
// Files, in the process's working directory as stock NVBitFI uses them:
//   nvbitfi-injection-info.txt     read by the injector (key: value lines, format fi-campaign/1)
//   nvbitfi-injection-log-temp.txt written by both: profile lines, or the injector's report
//
// Rules of NVBit >= 1.7 kept here: no CUDA call in nvbit_at_ctx_init (the buffer is allocated
// in nvbit_tool_init), nothing overrides NVBit's module-loading choice, and the injected
// functions (inject_funcs.cu) report through the buffer, never with printf.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <unordered_set>
#include <vector>

#include "nvbit.h"
#include "nvbit_tool.h"

#include "fi_logic.h"

#if defined(FI_MODE_PROFILE)
static const bool kInject = false;
#else
static const bool kInject = true;
#endif
#if defined(FI_DUMMY)
static const bool kDummy = true;
#else
static const bool kDummy = false;
#endif

static const char* kInfoFile = "nvbitfi-injection-info.txt";
static const char* kLogFile = "nvbitfi-injection-log-temp.txt";

struct StaticInstr {
    std::string opcode;
    uint32_t pc;
};

static pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
static bool g_skip = false;  // our own CUDA calls trigger callbacks too
static int g_log = -1;
static int g_sm = 0;
static long long g_launch = 0;  // global launch index over every handled launch
static FiState* g_state = NULL;
static FiParams g_params;
static bool g_params_ok = false;
static char g_params_err[256] = "";
static bool g_selected_active = false;
static bool g_reported = false;
static bool g_any_instrumented = false;
static std::unordered_set<CUfunction> g_instrumented;
static std::vector<StaticInstr> g_instrs;

static void put(const char* text) {
    if (g_log < 0) return;
    size_t n = strlen(text);
    while (n > 0) {
        ssize_t w = write(g_log, text, n);
        if (w <= 0) return;
        text += w;
        n -= (size_t)w;
    }
}

static void on_signal(int sig) {
    // async-signal-safe: a fixed text and write(2) only
    char msg[] = "error: signal 00\n";
    msg[14] = (char)('0' + (sig / 10) % 10);
    msg[15] = (char)('0' + sig % 10);
    if (g_log >= 0) {
        ssize_t ignored = write(g_log, msg, sizeof(msg) - 1);
        (void)ignored;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static std::string without_spaces(const char* name) {
    std::string out;
    for (const char* c = name; *c; c++)
        if (*c != ' ' && *c != '\t' && *c != '\n') out.push_back(*c);
    return out;
}

static std::string read_file(const char* path, bool* ok) {
    std::string text;
    FILE* f = fopen(path, "rb");
    *ok = f != NULL;
    if (!f) return text;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
    fclose(f);
    return text;
}

void nvbit_at_init() {
    setenv("CUDA_MANAGED_FORCE_DEVICE_ALLOC", "1", 1);
    g_log = open(kLogFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (!kInject) return;
    char line[512];
    snprintf(line, sizeof(line), "format: %s\nmode: inject%s\n", FI_LOG_FORMAT, kDummy ? "\ndummy: true" : "");
    put(line);
    bool found = false;
    std::string text = read_file(kInfoFile, &found);
    if (!found) {
        snprintf(g_params_err, sizeof(g_params_err), "there is no %s in the working directory", kInfoFile);
    } else if (fi_parse_params(text.c_str(), &g_params, g_params_err, sizeof(g_params_err)) == 0) {
        g_params_ok = true;
        snprintf(line, sizeof(line), "site: model %s; group %s; kernel %s; kcount %lld; iid %llu\n",
                 FI_MODEL_NAMES[g_params.model], FI_GROUP_NAMES[g_params.group], g_params.kernel,
                 g_params.kcount, g_params.iid);
        put(line);
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
}

void nvbit_at_ctx_init(CUcontext ctx) { (void)ctx; }

void nvbit_tool_init(CUcontext ctx) {
    g_skip = true;
    CUdevice dev;
    int major = 0, minor = 0;
    if (cuCtxGetDevice(&dev) == CUDA_SUCCESS) {
        cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
        cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
    }
    g_sm = major * 10 + minor;
    if (cudaMallocManaged(&g_state, sizeof(FiState)) != cudaSuccess) g_state = NULL;
    if (g_state) {
        memset(g_state, 0, sizeof(FiState));
        g_state->target = kInject && g_params_ok ? g_params.group : -1;
        g_state->model = g_params.model;
        g_state->iid = g_params.iid;
        g_state->value_seed = g_params.value_seed;
        g_state->x_min = g_params.x_min;
        g_state->alpha = g_params.alpha;
        g_state->bit_seed = g_params.bit_seed;
        g_state->dummy = kDummy;
    }
    g_skip = false;
    (void)ctx;
}

static void instrument(CUcontext ctx, CUfunction func) {
    std::vector<CUfunction> funcs = nvbit_get_related_functions(ctx, func);
    funcs.push_back(func);
    for (CUfunction f : funcs) {
        if (!g_instrumented.insert(f).second) continue;
        for (Instr* instr : nvbit_get_instrs(ctx, f)) {
            uint32_t id = (uint32_t)g_instrs.size();
            g_instrs.push_back({instr->getOpcode(), instr->getOffset()});
            int opcode_id = fi_opcode_id(instr->getOpcodeShort(), g_sm);
            const InstrType::operand_t* dst = instr->getNumOperands() > 0 ? instr->getOperand(0) : NULL;
            bool gpr = dst && dst->type == InstrType::OperandType::REG && dst->u.reg.num != InstrType::RZ;
            int group = fi_classify(fi_opcode_group(opcode_id), gpr);
            nvbit_insert_call(instr, kInject ? "fi_inject_count" : "fi_profile_count", IPOINT_BEFORE);
            nvbit_add_call_arg_guard_pred_val(instr);
            nvbit_add_call_arg_const_val32(instr, (uint32_t)opcode_id);
            nvbit_add_call_arg_const_val32(instr, (uint32_t)group);
            if (kInject) nvbit_add_call_arg_const_val32(instr, id);
            nvbit_add_call_arg_const_val64(instr, (uint64_t)(uintptr_t)g_state);
            if (kInject && fi_in_target(group, g_params.group)) {
                int ndest = fi_dest_regs(instr->getOpcode(), group, instr->isLoad() ? instr->getSize() : 0);
                int reg = dst->u.reg.num + fi_dest_index(g_params.op_seed, ndest);
                if (reg >= InstrType::RZ) reg = dst->u.reg.num;
                nvbit_insert_call(instr, "fi_inject_apply", IPOINT_AFTER);
                nvbit_add_call_arg_const_val32(instr, id);
                nvbit_add_call_arg_const_val32(instr, (uint32_t)reg);
                nvbit_add_call_arg_const_val64(instr, (uint64_t)(uintptr_t)g_state);
            }
        }
    }
    g_any_instrumented = true;
}

static bool launch_of(nvbit_api_cuda_t cbid, void* params, CUfunction* f, unsigned long long* ctas) {
    switch (cbid) {
        case API_CUDA_cuLaunch: {
            *f = ((cuLaunch_params*)params)->f;
            *ctas = 1;
            return true;
        }
        case API_CUDA_cuLaunchGrid: {
            cuLaunchGrid_params* p = (cuLaunchGrid_params*)params;
            *f = p->f;
            *ctas = (unsigned long long)p->grid_width * p->grid_height;
            return true;
        }
        case API_CUDA_cuLaunchGridAsync: {
            cuLaunchGridAsync_params* p = (cuLaunchGridAsync_params*)params;
            *f = p->f;
            *ctas = (unsigned long long)p->grid_width * p->grid_height;
            return true;
        }
        case API_CUDA_cuLaunchKernel:
        case API_CUDA_cuLaunchKernel_ptsz: {
            cuLaunchKernel_params* p = (cuLaunchKernel_params*)params;
            *f = p->f;
            *ctas = (unsigned long long)p->gridDimX * p->gridDimY * p->gridDimZ;
            return true;
        }
        case API_CUDA_cuLaunchKernelEx:
        case API_CUDA_cuLaunchKernelEx_ptsz: {
            cuLaunchKernelEx_params* p = (cuLaunchKernelEx_params*)params;
            *f = p->f;
            *ctas = (unsigned long long)p->config->gridDimX * p->config->gridDimY * p->config->gridDimZ;
            return true;
        }
        default:
            return false;
    }
}

static std::string g_name;
static unsigned long long g_ctas = 0;

static void report_selected(CUcontext ctx) {
    (void)ctx;
    static char line[1 << 12];
    snprintf(line, sizeof(line), "launch: index %lld; kernel_name: %s; ctas: %llu\n", g_launch, g_name.c_str(), g_ctas);
    put(line);
    fi_counts_line(line, sizeof(line), g_state->counters);
    put(line);
    unsigned int n = 0;
    for (int lane = 0; lane < FI_WARP; lane++) {
        const FiLane* l = &g_state->lanes[lane];
        if (!l->valid) continue;
        const StaticInstr& s = g_instrs[l->instr];
        fi_lane_record(line, sizeof(line), lane, l, s.opcode.c_str(), s.pc);
        put(line);
        n++;
    }
    unsigned long long total = g_state->counters[fi_group_counter(g_params.group)];
    if (n > 0) {
        snprintf(line, sizeof(line), "result: injected; %u of %d lanes\n", n, fi_popc(g_state->hit_lanes));
    } else if (g_state->armed == 0) {
        snprintf(line, sizeof(line), "result: not_injected; launch %lld has %llu %s thread-instructions, so index %llu "
                 "was never reached\n", g_launch, total, FI_GROUP_NAMES[g_params.group], g_params.iid);
    } else {
        snprintf(line, sizeof(line), "result: not_injected; the selected thread-instruction never reached the point "
                 "after it\n");
    }
    put(line);
    g_reported = true;
}

void nvbit_at_cuda_event(CUcontext ctx, int is_exit, nvbit_api_cuda_t cbid, const char* name, void* params,
                         CUresult* status) {
    (void)name;
    (void)status;
    if (g_skip) return;
    CUfunction f;
    unsigned long long ctas = 0;
    if (!launch_of(cbid, params, &f, &ctas)) return;
    if (!is_exit) {
        pthread_mutex_lock(&g_mutex);
        g_name = without_spaces(nvbit_get_func_name(ctx, f));
        g_ctas = ctas;
        g_selected_active = false;
        if (!kInject && g_state) {
            instrument(ctx, f);
            nvbit_enable_instrumented(ctx, f, true);
        } else if (g_params_ok && g_state && g_launch == g_params.kcount) {
            if (g_name == g_params.kernel) {
                instrument(ctx, f);
                nvbit_enable_instrumented(ctx, f, true);
                g_selected_active = true;
            } else {
                static char line[2400];
                snprintf(line, sizeof(line), "launch: index %lld; kernel_name: %s; ctas: %llu\nresult: not_injected; "
                         "launch %lld is %.900s, not the planned kernel: the launch sequence differs from the "
                         "profile\n", g_launch, g_name.c_str(), ctas, g_launch, g_name.c_str());
                put(line);
                g_reported = true;
                if (g_any_instrumented) nvbit_enable_instrumented(ctx, f, false);
            }
        } else if (g_any_instrumented) {
            nvbit_enable_instrumented(ctx, f, false);
        }
        return;
    }
    g_skip = true;
    cudaDeviceSynchronize();
    cudaError_t err = cudaGetLastError();
    g_skip = false;
    char line[1 << 12];
    if (err != cudaSuccess) {
        snprintf(line, sizeof(line), "error: kernel execution failed (%s) at launch %lld\n", cudaGetErrorString(err),
                 g_launch);
        if (kInject) {
            put(line);
        } else {
            fputs(line, stderr);
            exit(1);
        }
    }
    if (!kInject && g_state) {
        static char profile[1 << 16];
        fi_profile_line(profile, sizeof(profile) - 1, g_launch, g_name.c_str(), g_ctas, g_state->counters);
        strcat(profile, "\n");
        put(profile);
        memset(g_state->counters, 0, sizeof(g_state->counters));
    } else if (g_selected_active) {
        report_selected(ctx);
        nvbit_enable_instrumented(ctx, f, false);
        g_selected_active = false;
    }
    g_launch++;
    pthread_mutex_unlock(&g_mutex);
}

void nvbit_at_term() {
    if (kInject && !g_reported) {
        char line[1400];
        if (!g_params_ok) {
            snprintf(line, sizeof(line), "result: not_injected; the injection info is unusable: %s\n", g_params_err);
        } else {
            snprintf(line, sizeof(line), "result: not_injected; the run made %lld launches and never reached launch "
                     "%lld\n", g_launch, g_params.kcount);
        }
        put(line);
    }
    if (g_log >= 0) close(g_log);
    g_log = -1;
}
