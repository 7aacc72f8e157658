// The device logic of fi-campaign's NVBit tool, written once for nvcc (device) and g++ (host).
//
// Everything that decides which thread-instruction is hit and what it becomes lives here, as
// plain functions of masks, seeds and bits, so a host binary (tests/host_test.cpp) runs the same
// code the GPU runs and the test suite checks it without a GPU. No printf and no assert: NVBit
// >= 1.7 refuses to load a tool whose injected functions use them.
//
// Floating-point: the sampler uses only +, -, *, / (each correctly rounded, never fused) and
// exact bit manipulation, so the host, the device and numpy (models/sampler.py) give the same
// bits. On the device the _rn intrinsics forbid contraction; the host build passes
// -ffp-contract=off.
#pragma once

#include <stdint.h>
#include <string.h>

#include "opcodes.h"

#if defined(__CUDACC__)
#define FI_HD __host__ __device__ __forceinline__
#else
#define FI_HD static inline
#endif

#define FI_SAMPLER "fi-campaign/lanes/1"
#define FI_INFO_FORMAT "fi-campaign/1"
#define FI_LOG_FORMAT "fi-campaign-tool/1"
#define FI_WARP 32

enum FiModel { FI_SINGLE_BIT = 0, FI_WARP_RANDOM = 1, FI_WARP_XOR = 2, FI_NUM_MODELS = 3 };
static const char* const FI_MODEL_NAMES[FI_NUM_MODELS] = {"single_bit", "warp_random", "warp_xor"};

// ---------------------------------------------------------------- exact arithmetic primitives

#if defined(__CUDA_ARCH__)
#define FI_ADD(a, b) __dadd_rn((a), (b))
#define FI_SUB(a, b) __dsub_rn((a), (b))
#define FI_MUL(a, b) __dmul_rn((a), (b))
#define FI_DIV(a, b) __ddiv_rn((a), (b))
FI_HD uint64_t fi_dbits(double x) { return (uint64_t)__double_as_longlong(x); }
FI_HD double fi_bitsd(uint64_t b) { return __longlong_as_double((long long)b); }
FI_HD uint32_t fi_fbits(float x) { return __float_as_uint(x); }
FI_HD float fi_bitsf(uint32_t b) { return __uint_as_float(b); }
FI_HD float fi_to_float(double x) { return __double2float_rn(x); }
FI_HD int fi_popc(uint32_t m) { return __popc(m); }
#else
#define FI_ADD(a, b) ((a) + (b))
#define FI_SUB(a, b) ((a) - (b))
#define FI_MUL(a, b) ((a) * (b))
#define FI_DIV(a, b) ((a) / (b))
FI_HD uint64_t fi_dbits(double x) { uint64_t b; memcpy(&b, &x, 8); return b; }
FI_HD double fi_bitsd(uint64_t b) { double x; memcpy(&x, &b, 8); return x; }
FI_HD uint32_t fi_fbits(float x) { uint32_t b; memcpy(&b, &x, 4); return b; }
FI_HD float fi_bitsf(uint32_t b) { float x; memcpy(&x, &b, 4); return x; }
FI_HD float fi_to_float(double x) { return (float)x; }
FI_HD int fi_popc(uint32_t m) { return __builtin_popcount(m); }
#endif

// ---------------------------------------------------------------- counting rule

// Whether an instruction of base group `group` advances the counter of `target` (a base group,
// gppr = everything with a destination, gp = everything with a general-register destination).
FI_HD bool fi_in_target(int group, int target) {
    if (target == FI_GPPR) return group != FI_NODEST;
    if (target == FI_GP) return group != FI_NODEST && group != FI_PR;
    return group == target;
}

// The base group of one static instruction: the opcode's group, except that an instruction whose
// first operand is not a writable general register (RZ, a uniform register, a predicate, memory)
// has nothing NVBit can corrupt, so it counts as nodest whatever its opcode (predicate writers
// keep pr).
FI_HD int fi_classify(int opcode_group, bool first_operand_is_gpr) {
    if (opcode_group == FI_PR || opcode_group == FI_NODEST) return opcode_group;
    return first_operand_is_gpr ? opcode_group : FI_NODEST;
}

// The warp leader: the lowest active lane, the one lane that adds the warp's count.
FI_HD int fi_leader(uint32_t active) {
    for (int lane = 0; lane < FI_WARP; lane++)
        if (active & (1u << lane)) return lane;
    return -1;
}

// Rank of `lane` among the lanes of `mask` below it: a lane's offset in the warp's block of
// thread-instruction indices [base, base + popc(mask)).
FI_HD int fi_rank(uint32_t mask, int lane) {
    return fi_popc(mask & (lane == 0 ? 0u : (0xFFFFFFFFu >> (FI_WARP - lane))));
}

// The lane holding thread-instruction `iid` when the warp's predicated-on lanes `pred_mask` took
// indices base.. in lane order, or -1 when iid is not in this warp's block.
FI_HD int fi_selected_lane(uint32_t pred_mask, uint64_t base, uint64_t iid) {
    uint32_t n = (uint32_t)fi_popc(pred_mask);
    if (iid < base || iid >= base + n) return -1;
    uint32_t want = (uint32_t)(iid - base);
    for (int lane = 0; lane < FI_WARP; lane++) {
        if (!(pred_mask & (1u << lane))) continue;
        if (want == 0) return lane;
        want--;
    }
    return -1;
}

// Counter indices in the device buffer: one per opcode (UNKNOWN last), then one per group.
FI_HD int fi_group_counter(int group) { return FI_NUM_OPCODE_COUNTERS + group; }
#define FI_NUM_COUNTERS (FI_NUM_OPCODE_COUNTERS + FI_NUM_GROUPS)

// What one warp-instruction adds: n predicated-on threads to its opcode, its base group, and to
// gppr / gp when it has a destination. Written for a plain array so host and device share it.
FI_HD void fi_count_into(unsigned long long* counters, int opcode_id, int group, unsigned long long n) {
    counters[opcode_id] += n;
    counters[fi_group_counter(group)] += n;
    if (fi_in_target(group, FI_GPPR)) counters[fi_group_counter(FI_GPPR)] += n;
    if (fi_in_target(group, FI_GP)) counters[fi_group_counter(FI_GP)] += n;
}

// ---------------------------------------------------------------- register choice, bits, masks

// Which of `ndest` destination registers is hit: (int)(ndest * op_seed) in float, as stock.
FI_HD int fi_dest_index(float op_seed, int ndest) {
    int i = (int)((float)ndest * op_seed);
    if (i < 0) return 0;
    return i >= ndest ? ndest - 1 : i;
}

// single_bit: bit (int)(32 * bit_seed) in float, 0 = least significant mantissa bit.
FI_HD int fi_bit_position(float bit_seed) {
    int b = (int)(32.0f * bit_seed);
    return b < 0 ? 0 : (b > 31 ? 31 : b);
}
FI_HD uint32_t fi_single_bit_mask(float bit_seed) { return 1u << fi_bit_position(bit_seed); }

// warp_xor: the CAROL / 2022-PR mask (uint32)(0xFFFFFFFF * bit_seed), computed in float32 as
// those builds compute it, so its low bits are zero above 2^24.
FI_HD uint32_t fi_xor_mask(float bit_seed) { return (uint32_t)(4294967295.0f * bit_seed); }

// Destination registers written by one instruction. mem_bytes is NVBit's access size for loads
// (0 when unknown). Tensor-core shapes: m x n accumulators of `bits` over the 32 lanes of a warp
// (HMMA/IMMA/BMMA/DMMA) or the 128 lanes of a warpgroup (Hopper's *GMMA).
FI_HD int fi_parse_uint(const char* s, int* out) {
    int n = 0, v = 0;
    while (s[n] >= '0' && s[n] <= '9') v = v * 10 + (s[n++] - '0');
    *out = v;
    return n;
}

FI_HD bool fi_has(const char* s, const char* part) {
    for (; *s; s++) {
        int i = 0;
        while (part[i] && s[i] == part[i]) i++;
        if (!part[i]) return true;
    }
    return false;
}

FI_HD int fi_mma_dest_regs(const char* opcode) {
    const char* dot = opcode;
    while (*dot && *dot != '.') dot++;
    if (!*dot) return 2;
    const char* shape = dot + 1;
    int m = 0, n = 0, bits = 32;
    bool gmma = fi_has(opcode, "GMMA");
    if (gmma) {
        int k = fi_parse_uint(shape, &m);
        if (shape[k] != 'x') return 2;
        fi_parse_uint(shape + k + 1, &n);
    } else {
        int digits = 0;
        while (shape[digits] >= '0' && shape[digits] <= '9') digits++;
        if (digits < 3) return 2;
        m = (shape[0] == '1' && shape[1] == '6') ? 16 : 8;
        n = 8;
    }
    if (fi_has(opcode, ".F16") && !fi_has(opcode, ".F32")) bits = 16;
    if (fi_has(opcode, "DMMA") || fi_has(opcode, ".F64")) bits = 64;
    const char* after_shape = shape;
    while (*after_shape && *after_shape != '.') after_shape++;
    // the accumulator type is the first type after the shape
    if (after_shape[0] == '.' && after_shape[1] == 'F' && after_shape[2] == '1' && after_shape[3] == '6') bits = 16;
    if (after_shape[0] == '.' && after_shape[1] == 'F' && after_shape[2] == '3' && after_shape[3] == '2') bits = 32;
    int lanes = gmma ? 128 : 32;
    int regs = (m * n / lanes) * bits / 32;
    if (fi_has(opcode, ".STEP")) regs = 2;  // Volta splits HMMA.884 into steps of one register pair
    return regs < 1 ? 1 : regs;
}

FI_HD int fi_dest_regs(const char* opcode, int group, int mem_bytes) {
    if (group == FI_FP64) return 2;
    if (group == FI_MMA) return fi_mma_dest_regs(opcode);
    if (group == FI_LD) {
        if (mem_bytes >= 8) return mem_bytes / 4;
        if (fi_has(opcode, ".128")) return 4;
        if (fi_has(opcode, ".64")) return 2;
        return 1;
    }
    if (fi_has(opcode, ".WIDE") || fi_has(opcode, ".F64.") || fi_has(opcode, ".S64.") || fi_has(opcode, ".U64."))
        return 2;
    return 1;
}

// ---------------------------------------------------------------- the lane sampler

// SplitMix64's finaliser (Steele, Lea, Flood 2014): output k of the generator seeded with s is
// fi_mix(s + (k + 1) * golden gamma). Lane L uses output L of the site's value seed.
FI_HD uint64_t fi_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
FI_HD uint64_t fi_lane_word(uint64_t value_seed, int lane) {
    return fi_mix(value_seed + (uint64_t)(lane + 1) * 0x9E3779B97F4A7C15ull);
}
// u in [0, 1): the word's top 53 bits; the sign: its lowest bit (1: negative).
FI_HD double fi_lane_u(uint64_t word) { return (double)(word >> 11) * (1.0 / 9007199254740992.0); }
FI_HD double fi_lane_sign(uint64_t word) { return (word & 1u) ? -1.0 : 1.0; }

// ln(t) for t in (0, 1]: t = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(f),
// f = (m - 1) / (m + 1), as an odd series to f^23 (|f| <= 0.1716: remainder below 1e-17).
FI_HD double fi_log(double t) {
    uint64_t b = fi_dbits(t);
    int e = (int)((b >> 52) & 0x7FF) - 1023;
    double m = fi_bitsd((b & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);
    if (m > 1.4142135623730951) {
        m = FI_MUL(m, 0.5);
        e += 1;
    }
    double f = FI_DIV(FI_SUB(m, 1.0), FI_ADD(m, 1.0));
    double s = FI_MUL(f, f);
    double p = FI_DIV(1.0, 23.0);
    for (int k = 21; k >= 3; k -= 2) p = FI_ADD(FI_MUL(p, s), FI_DIV(1.0, (double)k));
    double logm = FI_MUL(2.0, FI_ADD(f, FI_MUL(FI_MUL(f, s), p)));
    return FI_ADD(FI_MUL((double)e, 0.6931471805599453), logm);
}

// e^y for y in [0, 709]: y = n ln2 + g (Cody-Waite split of ln 2), e^g by its Taylor series to
// g^17 (|g| <= 0.35: remainder below 1e-22), times 2^n built from its bits.
FI_HD double fi_exp(double y) {
    double n = (double)(int64_t)FI_ADD(FI_MUL(y, 1.4426950408889634), 0.5);
    double g = FI_SUB(FI_SUB(y, FI_MUL(n, 6.93147180369123816490e-01)), FI_MUL(n, 1.90821492927058770002e-10));
    double fact = 1.0;
    for (int k = 2; k <= 17; k++) fact = FI_MUL(fact, (double)k);
    double p = FI_DIV(1.0, fact);
    for (int k = 16; k >= 0; k--) {
        fact = FI_DIV(fact, (double)(k + 1));
        p = FI_ADD(FI_MUL(p, g), FI_DIV(1.0, fact));
    }
    return FI_MUL(p, fi_bitsd((uint64_t)((int64_t)n + 1023) << 52));
}

// The power law's inverse CDF: r = x_min (1 - u)^(-1 / (alpha - 1)), saturated at the largest
// double (as models.powerlaw saturates numpy's overflow).
FI_HD double fi_relative_error(double u, double x_min, double alpha) {
    const double dmax = 1.7976931348623157e308;
    double t = FI_SUB(1.0, u);
    double y = FI_MUL(FI_DIV(-1.0, FI_SUB(alpha, 1.0)), fi_log(t));
    if (!(y <= 709.0)) return dmax;
    double r = FI_MUL(x_min, fi_exp(y));
    return r <= dmax ? r : dmax;
}

// warp_random for one lane: x (1 + s r) in double, rounded once to float32.
FI_HD float fi_lane_value(float x, uint64_t value_seed, int lane, double x_min, double alpha) {
    uint64_t w = fi_lane_word(value_seed, lane);
    double r = fi_relative_error(fi_lane_u(w), x_min, alpha);
    double factor = FI_ADD(1.0, FI_MUL(fi_lane_sign(w), r));
    return fi_to_float(FI_MUL((double)x, factor));
}

// What one lane's destination register becomes under a model (before -> after, as bits).
FI_HD uint32_t fi_fault(int model, uint32_t before, float bit_seed, uint64_t value_seed, int lane,
                        double x_min, double alpha) {
    if (model == FI_SINGLE_BIT) return before ^ fi_single_bit_mask(bit_seed);
    if (model == FI_WARP_XOR) return before ^ fi_xor_mask(bit_seed);
    return fi_fbits(fi_lane_value(fi_bitsf(before), value_seed, lane, x_min, alpha));
}

// ---------------------------------------------------------------- state shared with the device

struct FiLane {
    uint32_t valid;
    uint32_t reg;
    uint32_t before;
    uint32_t after;
    uint32_t instr;  // the tool's static instruction id (opcode and pc are looked up on the host)
    uint32_t pad;
    unsigned long long tid;  // flat thread id
};

// One device buffer (managed memory) read back by the host after the selected launch.
struct FiState {
    unsigned long long counters[FI_NUM_COUNTERS];
    // the site, copied from the injection-info file
    unsigned long long iid;
    unsigned long long value_seed;
    double x_min;
    double alpha;
    float bit_seed;
    int target;
    int model;
    int dummy;
    // set by the thread-instruction that matched iid, consumed at IPOINT_AFTER
    unsigned int armed;
    unsigned int armed_instr;
    unsigned int armed_lanes;  // lanes still to inject
    unsigned int hit_lanes;    // all lanes the fault applies to
    unsigned long long armed_block;
    unsigned int armed_warp;
    unsigned int injected_lanes;
    FiLane lanes[FI_WARP];
};

// Lanes a model corrupts once the matching thread-instruction is found: the thread itself, or
// (warp models) every lane of its warp whose guard predicate let it execute the instruction.
FI_HD uint32_t fi_hit_lanes(int model, uint32_t pred_mask, int selected_lane) {
    return model == FI_SINGLE_BIT ? (1u << selected_lane) : pred_mask;
}

// ---------------------------------------------------------------- host only: files and text
// (plain host functions: nvcc's device pass parses them but never compiles them for the GPU)

#include <stdio.h>
#include <stdlib.h>

struct FiParams {
    int model;
    int group;
    char kernel[1000];
    long long kcount;
    unsigned long long iid;
    float op_seed;
    float bit_seed;
    unsigned long long value_seed;
    double x_min;
    double alpha;
    int seen;  // bit set of keys read
};

enum { FI_K_FORMAT = 1, FI_K_MODEL = 2, FI_K_GROUP = 4, FI_K_KERNEL = 8, FI_K_KCOUNT = 16, FI_K_IID = 32,
       FI_K_OP = 64, FI_K_BIT = 128, FI_K_VSEED = 256, FI_K_XMIN = 512, FI_K_ALPHA = 1024, FI_K_SAMPLER = 2048 };

static inline int fi_index_of(const char* const* names, int n, const char* v) {
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], v) == 0) return i;
    return -1;
}

// Parses the fi-campaign injection-info file (key: value lines). Returns 0, or -1 with one
// sentence in err: the tool then writes it to its log and injects nothing.
static inline int fi_parse_params(const char* text, FiParams* p, char* err, size_t errlen) {
    memset(p, 0, sizeof(*p));
    char line[1200];
    const char* s = text;
    int lineno = 0;
    while (*s) {
        size_t n = strcspn(s, "\n");
        lineno++;
        if (n >= sizeof(line)) {
            snprintf(err, errlen, "line %d of the injection info is too long", lineno);
            return -1;
        }
        memcpy(line, s, n);
        line[n] = 0;
        s += n + (s[n] == '\n');
        if (n && line[n - 1] == '\r') line[--n] = 0;
        if (n == 0) continue;
        char* colon = strstr(line, ": ");
        if (!colon) {
            snprintf(err, errlen, "line %d of the injection info is not 'key: value'", lineno);
            return -1;
        }
        *colon = 0;
        const char* key = line;
        const char* v = colon + 2;
        char* end = NULL;
        int bad = 0;
        if (strcmp(key, "format") == 0) {
            bad = strcmp(v, FI_INFO_FORMAT) != 0;
            p->seen |= FI_K_FORMAT;
        } else if (strcmp(key, "model") == 0) {
            p->model = fi_index_of(FI_MODEL_NAMES, FI_NUM_MODELS, v);
            bad = p->model < 0;
            p->seen |= FI_K_MODEL;
        } else if (strcmp(key, "group") == 0) {
            p->group = fi_index_of(FI_GROUP_NAMES, FI_NUM_GROUPS, v);
            bad = p->group < 0 || p->group == FI_PR || p->group == FI_NODEST;
            p->seen |= FI_K_GROUP;
        } else if (strcmp(key, "kernel") == 0) {
            bad = strlen(v) == 0 || strlen(v) >= sizeof(p->kernel) || strpbrk(v, " \t") != NULL;
            if (!bad) strcpy(p->kernel, v);
            p->seen |= FI_K_KERNEL;
        } else if (strcmp(key, "kcount") == 0) {
            p->kcount = strtoll(v, &end, 10);
            bad = end == v || *end || p->kcount < 0;
            p->seen |= FI_K_KCOUNT;
        } else if (strcmp(key, "iid") == 0) {
            p->iid = strtoull(v, &end, 10);
            bad = end == v || *end || v[0] == '-';
            p->seen |= FI_K_IID;
        } else if (strcmp(key, "op_seed") == 0 || strcmp(key, "bit_seed") == 0) {
            float f = strtof(v, &end);
            bad = end == v || *end || !(f >= 0.0f && f < 1.0f);
            if (key[0] == 'o') p->op_seed = f, p->seen |= FI_K_OP;
            else p->bit_seed = f, p->seen |= FI_K_BIT;
        } else if (strcmp(key, "value_seed") == 0) {
            p->value_seed = strtoull(v, &end, 10);
            bad = end == v || *end || v[0] == '-';
            p->seen |= FI_K_VSEED;
        } else if (strcmp(key, "x_min") == 0) {
            p->x_min = strtod(v, &end);
            bad = end == v || *end || !(p->x_min > 0.0 && p->x_min < 1.7976931348623157e308);
            p->seen |= FI_K_XMIN;
        } else if (strcmp(key, "alpha") == 0) {
            p->alpha = strtod(v, &end);
            bad = end == v || *end || !(p->alpha > 1.0 && p->alpha < 1.7976931348623157e308);
            p->seen |= FI_K_ALPHA;
        } else if (strcmp(key, "sampler") == 0) {
            bad = strcmp(v, FI_SAMPLER) != 0;
            p->seen |= FI_K_SAMPLER;
        } else {
            snprintf(err, errlen, "the injection info has an unknown key '%.40s' (line %d)", key, lineno);
            return -1;
        }
        if (bad) {
            snprintf(err, errlen, "the injection info's %.20s value '%.60s' is not valid (line %d)", key, v, lineno);
            return -1;
        }
    }
    int need = FI_K_FORMAT | FI_K_MODEL | FI_K_GROUP | FI_K_KERNEL | FI_K_KCOUNT | FI_K_IID | FI_K_OP | FI_K_BIT;
    if (p->model == FI_WARP_RANDOM) need |= FI_K_VSEED | FI_K_XMIN | FI_K_ALPHA | FI_K_SAMPLER;
    static const char* const keys[] = {"format", "model", "group", "kernel", "kcount", "iid", "op_seed",
                                       "bit_seed", "value_seed", "x_min", "alpha", "sampler"};
    for (int i = 0; i < 12; i++) {
        if ((need & (1 << i)) && !(p->seen & (1 << i))) {
            snprintf(err, errlen, "the injection info has no %s line", keys[i]);
            return -1;
        }
    }
    if (p->model == FI_WARP_RANDOM && p->group != FI_FP32) {
        snprintf(err, errlen, "warp_random reads the destination as a float32, so it needs group fp32, not %s",
                 FI_GROUP_NAMES[p->group]);
        return -1;
    }
    return 0;
}

// One NVBit-igprofile line, stock NVBitFI's layout with this tool's opcode list and ten groups.
static inline int fi_profile_line(char* buf, size_t len, long long index, const char* kernel,
                                  unsigned long long ctas, const unsigned long long* counters) {
    unsigned long long instrs = 0;
    for (int g = 0; g < FI_NUM_BASE_GROUPS; g++) instrs += counters[fi_group_counter(g)];
    int n = snprintf(buf, len, "NVBit-igprofile; index: %lld; kernel_name: %s; ctas: %llu; instrs: %llu;",
                     index, kernel, ctas, instrs);
    for (int i = 0; i < FI_NUM_OPCODE_COUNTERS && n > 0 && (size_t)n < len; i++)
        n += snprintf(buf + n, len - n, " %s: %llu,", fi_opcode_name(i), counters[i]);
    for (int g = 0; g < FI_NUM_GROUPS && n > 0 && (size_t)n < len; g++)
        n += snprintf(buf + n, len - n, " %s: %llu,", FI_GROUP_NAMES[g], counters[fi_group_counter(g)]);
    return n;
}

// One injected lane as the backend's parser reads it (nvbitfi_tools/toollog.py).
static inline int fi_lane_record(char* buf, size_t len, int lane, const FiLane* l, const char* opcode,
                                 unsigned int pc) {
    return snprintf(buf, len, "lane: %d; reg: R%u; opcode: %s; pc: 0x%x; tid: %llu; before: 0x%08x; after: 0x%08x\n",
                    lane, l->reg, opcode, pc, l->tid, l->before, l->after);
}

// The launch's group counts (up to the end of the launch) for the log.
static inline int fi_counts_line(char* buf, size_t len, const unsigned long long* counters) {
    int n = snprintf(buf, len, "counts:");
    for (int g = 0; g < FI_NUM_GROUPS && n > 0 && (size_t)n < len; g++)
        n += snprintf(buf + n, len - n, " %s %llu%s", FI_GROUP_NAMES[g], counters[fi_group_counter(g)],
                      g + 1 < FI_NUM_GROUPS ? "," : "\n");
    return n;
}
