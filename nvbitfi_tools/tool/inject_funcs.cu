// The functions NVBit inserts into the application's SASS. NVBit >= 1.7 refuses a tool whose
// injected functions call printf or assert, so they report only through the FiState buffer the
// host reads after the launch (tests/test_fi_tool.py fails if either appears here).
//
// Counting rule, identical in profile and inject mode: per thread, guard predicate respected,
// the warp leader (lowest active lane by lane id) adds the number of predicated-on lanes.
#include <stdint.h>

#include "fi_logic.h"

#if defined(FI_HAVE_NVBIT)
#include "nvbit_reg_rw.h"
#else
// NVBit's register access, resolved by libnvbit when the tool is built against it.
extern "C" __device__ __noinline__ int32_t nvbit_read_reg(uint64_t reg_num);
extern "C" __device__ __noinline__ void nvbit_write_reg(uint64_t reg_num, int32_t reg_val);
#endif

__device__ __forceinline__ int fi_laneid() {
    int lane;
    asm volatile("mov.u32 %0, %%laneid;" : "=r"(lane));
    return lane;
}

__device__ __forceinline__ unsigned long long fi_block_linear() {
    return blockIdx.x + (unsigned long long)gridDim.x * (blockIdx.y + (unsigned long long)gridDim.y * blockIdx.z);
}

__device__ __forceinline__ unsigned int fi_thread_in_block() {
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

// Adds one warp-instruction to the counters; returns the target counter's value before it (the
// warp's first thread-instruction index), or ~0 when the instruction is not in the target.
__device__ __forceinline__ unsigned long long fi_count_warp(FiState* st, int opcode_id, int group, int target,
                                                           unsigned long long n) {
    unsigned long long base = ~0ull;
    atomicAdd(&st->counters[opcode_id], n);
    unsigned long long g = atomicAdd(&st->counters[fi_group_counter(group)], n);
    if (group == target) base = g;
    if (fi_in_target(group, FI_GPPR)) {
        unsigned long long v = atomicAdd(&st->counters[fi_group_counter(FI_GPPR)], n);
        if (target == FI_GPPR) base = v;
    }
    if (fi_in_target(group, FI_GP)) {
        unsigned long long v = atomicAdd(&st->counters[fi_group_counter(FI_GP)], n);
        if (target == FI_GP) base = v;
    }
    return base;
}

// Profile mode, before every instruction.
extern "C" __device__ __noinline__ void fi_profile_count(int pred, int opcode_id, int group, uint64_t pstate) {
    FiState* st = (FiState*)pstate;
    uint32_t active = __activemask();
    uint32_t pmask = __ballot_sync(active, pred);
    if (fi_laneid() == fi_leader(active) && pmask) fi_count_warp(st, opcode_id, group, -1, fi_popc(pmask));
}

// Inject mode, before every instruction of the selected launch: the same count, and the warp
// whose block of indices holds the site's iid arms the fault for the point after the instruction.
extern "C" __device__ __noinline__ void fi_inject_count(int pred, int opcode_id, int group, uint32_t instr,
                                                        uint64_t pstate) {
    FiState* st = (FiState*)pstate;
    uint32_t active = __activemask();
    uint32_t pmask = __ballot_sync(active, pred);
    int lane = fi_laneid();
    int leader = fi_leader(active);
    unsigned long long base = ~0ull;
    if (lane == leader && pmask) base = fi_count_warp(st, opcode_id, group, st->target, fi_popc(pmask));
    base = __shfl_sync(active, base, leader);
    if (base == ~0ull) return;
    int selected = fi_selected_lane(pmask, base, st->iid);
    if (selected >= 0 && lane == leader && atomicCAS(&st->armed, 0u, 1u) == 0u) {
        uint32_t hit = fi_hit_lanes(st->model, pmask, selected);
        st->armed_instr = instr;
        st->armed_block = fi_block_linear();
        st->armed_warp = fi_thread_in_block() / FI_WARP;
        st->hit_lanes = hit;
        st->armed_lanes = hit;
        __threadfence();
        *(volatile unsigned int*)&st->armed = 2u;
    }
    __syncwarp(active);
}

// Inject mode, after every target-group instruction of the selected launch: the armed lanes
// read their destination register, apply the model and write it back (not in a DUMMY build).
extern "C" __device__ __noinline__ void fi_inject_apply(uint32_t instr, uint32_t reg, uint64_t pstate) {
    FiState* st = (FiState*)pstate;
    volatile FiState* vst = st;
    if (vst->armed != 2u || vst->armed_instr != instr) return;
    if (vst->armed_block != fi_block_linear() || vst->armed_warp != fi_thread_in_block() / FI_WARP) return;
    int lane = fi_laneid();
    uint32_t bit = 1u << lane;
    if (!(vst->armed_lanes & bit)) return;
    uint32_t before = (uint32_t)nvbit_read_reg(reg);
    uint32_t after = fi_fault(st->model, before, st->bit_seed, st->value_seed, lane, st->x_min, st->alpha);
#if !defined(FI_DUMMY)
    nvbit_write_reg(reg, (int32_t)after);
#else
    after = before;
#endif
    FiLane* rec = &st->lanes[lane];
    rec->reg = reg;
    rec->before = before;
    rec->after = after;
    rec->instr = instr;
    rec->tid = fi_thread_in_block() + fi_block_linear() * (unsigned long long)(blockDim.x * blockDim.y * blockDim.z);
    __threadfence();
    rec->valid = 1u;
    atomicOr(&st->injected_lanes, bit);
    if ((atomicAnd(&st->armed_lanes, ~bit) & ~bit) == 0u) *(volatile unsigned int*)&st->armed = 3u;
}
