// Opcode -> instruction group of fi-campaign's NVBit tool, for sm_70 (Volta) to sm_90 (Hopper).
//
// One table for all five architectures: a SASS opcode name means the same thing on every SM that
// has it, so each entry carries the first SM that has it instead of five copies of the list.
// Names follow the instruction-set tables of NVIDIA's CUDA Binary Utilities documentation.
//
// The rule for an opcode that is not in the table, or that is listed only for a later SM than the
// one running: it is counted in `others` (and in the UNKNOWN opcode counter of the profile), never
// in fp32 as stock NVBitFI's map default does. A group that writes registers is kept only when the
// instruction's first operand is a general register other than RZ (fi_classify in fi_logic.h).
#pragma once

#include <string.h>

enum FiGroup {
    FI_FP64 = 0,
    FI_FP32 = 1,
    FI_FP16 = 2,
    FI_MMA = 3,
    FI_LD = 4,
    FI_PR = 5,
    FI_NODEST = 6,
    FI_OTHERS = 7,
    FI_GPPR = 8,
    FI_GP = 9,
    FI_NUM_GROUPS = 10,
    FI_NUM_BASE_GROUPS = 8,
};

static const char* const FI_GROUP_NAMES[FI_NUM_GROUPS] = {
    "fp64", "fp32", "fp16", "mma", "ld", "pr", "nodest", "others", "gppr", "gp"};

struct FiOpcode {
    const char* name;
    int group;
    int first_sm;
};

// clang-format off
static const FiOpcode FI_OPCODES[] = {
    // fp32
    {"FADD", FI_FP32, 70}, {"FADD32I", FI_FP32, 70}, {"FFMA", FI_FP32, 70}, {"FFMA32I", FI_FP32, 70},
    {"FMUL", FI_FP32, 70}, {"FMUL32I", FI_FP32, 70}, {"FMNMX", FI_FP32, 70}, {"FSEL", FI_FP32, 70},
    {"FSET", FI_FP32, 70}, {"FSWZADD", FI_FP32, 70}, {"FRND", FI_FP32, 70}, {"MUFU", FI_FP32, 70},
    {"IPA", FI_FP32, 70}, {"FCMP", FI_FP32, 70},
    // fp64
    {"DADD", FI_FP64, 70}, {"DFMA", FI_FP64, 70}, {"DMUL", FI_FP64, 70}, {"DMNMX", FI_FP64, 70},
    // fp16 (packed half2 / bf16x2)
    {"HADD2", FI_FP16, 70}, {"HADD2_32I", FI_FP16, 70}, {"HFMA2", FI_FP16, 70}, {"HFMA2_32I", FI_FP16, 70},
    {"HMUL2", FI_FP16, 70}, {"HMUL2_32I", FI_FP16, 70}, {"HSET2", FI_FP16, 70}, {"HMNMX2", FI_FP16, 80},
    // tensor cores: warp-level MMA and Hopper's warpgroup GMMA
    {"HMMA", FI_MMA, 70}, {"IMMA", FI_MMA, 75}, {"BMMA", FI_MMA, 75}, {"DMMA", FI_MMA, 80},
    {"HGMMA", FI_MMA, 90}, {"IGMMA", FI_MMA, 90}, {"BGMMA", FI_MMA, 90}, {"QGMMA", FI_MMA, 90},
    // loads into general registers
    {"LD", FI_LD, 70}, {"LDC", FI_LD, 70}, {"LDG", FI_LD, 70}, {"LDL", FI_LD, 70}, {"LDS", FI_LD, 70},
    {"LDSM", FI_LD, 75}, {"SULD", FI_LD, 70}, {"TEX", FI_LD, 70}, {"TLD", FI_LD, 70}, {"TLD4", FI_LD, 70},
    {"TMML", FI_LD, 70}, {"TXD", FI_LD, 70}, {"TXQ", FI_LD, 70}, {"LDGSTS", FI_LD, 80},
    // predicate-only writers
    {"FSETP", FI_PR, 70}, {"DSETP", FI_PR, 70}, {"HSETP2", FI_PR, 70}, {"ISETP", FI_PR, 70},
    {"PSETP", FI_PR, 70}, {"PLOP3", FI_PR, 70}, {"FCHK", FI_PR, 70}, {"R2P", FI_PR, 70},
    {"VSETP", FI_PR, 70}, {"UISETP", FI_PR, 75}, {"UPLOP3", FI_PR, 75}, {"UPSETP", FI_PR, 75},
    {"UR2UP", FI_PR, 75}, {"ELECT", FI_PR, 90},
    // no destination: stores, reductions, control flow, barriers, memory ordering
    {"ST", FI_NODEST, 70}, {"STG", FI_NODEST, 70}, {"STL", FI_NODEST, 70}, {"STS", FI_NODEST, 70},
    {"STSM", FI_NODEST, 90}, {"STAS", FI_NODEST, 90}, {"SUST", FI_NODEST, 70}, {"SURED", FI_NODEST, 70},
    {"RED", FI_NODEST, 70}, {"REDG", FI_NODEST, 90}, {"REDAS", FI_NODEST, 90},
    {"BAR", FI_NODEST, 70}, {"BRA", FI_NODEST, 70}, {"BRX", FI_NODEST, 70}, {"BRXU", FI_NODEST, 75},
    {"JMP", FI_NODEST, 70}, {"JMX", FI_NODEST, 70}, {"JMXU", FI_NODEST, 75}, {"CALL", FI_NODEST, 70},
    {"RET", FI_NODEST, 70}, {"EXIT", FI_NODEST, 70}, {"BPT", FI_NODEST, 70}, {"BSSY", FI_NODEST, 70},
    {"BSYNC", FI_NODEST, 70}, {"BREAK", FI_NODEST, 70}, {"KILL", FI_NODEST, 70}, {"NOP", FI_NODEST, 70},
    {"WARPSYNC", FI_NODEST, 70}, {"YIELD", FI_NODEST, 70}, {"MEMBAR", FI_NODEST, 70},
    {"ERRBAR", FI_NODEST, 70}, {"CCTL", FI_NODEST, 70}, {"CCTLL", FI_NODEST, 70},
    {"CCTLT", FI_NODEST, 70}, {"DEPBAR", FI_NODEST, 70}, {"NANOSLEEP", FI_NODEST, 70},
    {"NANOTRAP", FI_NODEST, 70}, {"RTT", FI_NODEST, 70}, {"PMTRIG", FI_NODEST, 70},
    {"SETCTAID", FI_NODEST, 70}, {"SETLMEMBASE", FI_NODEST, 70}, {"LDGDEPBAR", FI_NODEST, 80},
    {"ARRIVES", FI_NODEST, 80}, {"ACQBULK", FI_NODEST, 90}, {"FENCE", FI_NODEST, 90},
    {"WARPGROUP", FI_NODEST, 90}, {"WARPGROUPSET", FI_NODEST, 90}, {"ENDCOLLECTIVE", FI_NODEST, 90},
    {"UTMALDG", FI_NODEST, 90}, {"UTMASTG", FI_NODEST, 90}, {"UTMAPF", FI_NODEST, 90},
    {"UTMACCTL", FI_NODEST, 90}, {"UTMACMDFLUSH", FI_NODEST, 90}, {"UTMAREDG", FI_NODEST, 90},
    {"UBLKCP", FI_NODEST, 90}, {"UBLKRED", FI_NODEST, 90}, {"UBLKPF", FI_NODEST, 90},
    {"UCGABAR_ARV", FI_NODEST, 90}, {"UCGABAR_WAIT", FI_NODEST, 90}, {"USETMAXREG", FI_NODEST, 90},
    {"UCCTL", FI_NODEST, 90}, {"CGAERRBAR", FI_NODEST, 90},
    // everything else that writes a general (or uniform) register
    {"IMAD", FI_OTHERS, 70}, {"IMADSP", FI_OTHERS, 70}, {"IMUL", FI_OTHERS, 70}, {"IADD", FI_OTHERS, 70},
    {"IADD3", FI_OTHERS, 70}, {"IADD32I", FI_OTHERS, 70}, {"IABS", FI_OTHERS, 70}, {"IDP", FI_OTHERS, 70},
    {"IDP4A", FI_OTHERS, 70}, {"IMNMX", FI_OTHERS, 70}, {"ISCADD", FI_OTHERS, 70}, {"LEA", FI_OTHERS, 70},
    {"LOP", FI_OTHERS, 70}, {"LOP3", FI_OTHERS, 70}, {"LOP32I", FI_OTHERS, 70}, {"SHF", FI_OTHERS, 70},
    {"SHL", FI_OTHERS, 70}, {"SHR", FI_OTHERS, 70}, {"MOV", FI_OTHERS, 70}, {"MOV32I", FI_OTHERS, 70},
    {"MOVM", FI_OTHERS, 75}, {"PRMT", FI_OTHERS, 70}, {"SEL", FI_OTHERS, 70}, {"SGXT", FI_OTHERS, 70},
    {"SHFL", FI_OTHERS, 70}, {"POPC", FI_OTHERS, 70}, {"FLO", FI_OTHERS, 70}, {"BREV", FI_OTHERS, 70},
    {"BMSK", FI_OTHERS, 70}, {"BMOV", FI_OTHERS, 70}, {"P2R", FI_OTHERS, 70}, {"S2R", FI_OTHERS, 70},
    {"CS2R", FI_OTHERS, 70}, {"B2R", FI_OTHERS, 70}, {"R2B", FI_OTHERS, 70}, {"LEPC", FI_OTHERS, 70},
    {"I2F", FI_OTHERS, 70}, {"F2I", FI_OTHERS, 70}, {"F2F", FI_OTHERS, 70}, {"I2I", FI_OTHERS, 70},
    {"I2FP", FI_OTHERS, 80}, {"F2IP", FI_OTHERS, 80}, {"I2IP", FI_OTHERS, 80}, {"F2FP", FI_OTHERS, 80},
    {"VABSDIFF", FI_OTHERS, 70}, {"VABSDIFF4", FI_OTHERS, 70},
    {"ATOM", FI_OTHERS, 70}, {"ATOMG", FI_OTHERS, 70}, {"ATOMS", FI_OTHERS, 70}, {"VOTE", FI_OTHERS, 70},
    {"MATCH", FI_OTHERS, 70}, {"QSPC", FI_OTHERS, 70}, {"REDUX", FI_OTHERS, 80}, {"SYNCS", FI_OTHERS, 90},
    {"GETLMEMBASE", FI_OTHERS, 70}, {"CSMTEST", FI_OTHERS, 90}, {"MEMSET", FI_OTHERS, 90},
    // Turing's uniform datapath: a uniform destination, so never a target (fi_classify)
    {"UMOV", FI_OTHERS, 75}, {"UIADD3", FI_OTHERS, 75}, {"UIMAD", FI_OTHERS, 75}, {"ULOP", FI_OTHERS, 75},
    {"ULOP3", FI_OTHERS, 75}, {"ULOP32I", FI_OTHERS, 75}, {"USHF", FI_OTHERS, 75}, {"USHL", FI_OTHERS, 75},
    {"USHR", FI_OTHERS, 75}, {"ULEA", FI_OTHERS, 75}, {"UPRMT", FI_OTHERS, 75}, {"USEL", FI_OTHERS, 75},
    {"UFLO", FI_OTHERS, 75}, {"UPOPC", FI_OTHERS, 75}, {"UBREV", FI_OTHERS, 75}, {"USGXT", FI_OTHERS, 75},
    {"UBMSK", FI_OTHERS, 75}, {"UP2UR", FI_OTHERS, 75}, {"ULDC", FI_OTHERS, 75}, {"S2UR", FI_OTHERS, 75},
    {"R2UR", FI_OTHERS, 75}, {"VOTEU", FI_OTHERS, 75}, {"UCLEA", FI_OTHERS, 75}, {"UIMNMX", FI_OTHERS, 80},
    {"USETSHMSZ", FI_OTHERS, 90}, {"UMEMSETS", FI_OTHERS, 90}, {"UVIADD", FI_OTHERS, 90},
    {"VIADD", FI_OTHERS, 90}, {"VIMNMX", FI_OTHERS, 90}, {"VIMNMX3", FI_OTHERS, 90}, {"VIADDMNMX", FI_OTHERS, 90}, {"VHMNMX", FI_OTHERS, 90},
};
// clang-format on

static const int FI_NUM_OPCODES = (int)(sizeof(FI_OPCODES) / sizeof(FI_OPCODES[0]));
// the profile's last opcode counter: opcodes outside the table (counted in `others`)
static const int FI_OPCODE_UNKNOWN = FI_NUM_OPCODES;
static const int FI_NUM_OPCODE_COUNTERS = FI_NUM_OPCODES + 1;

// The table index of a short opcode (IMAD for IMAD.WIDE.U32), or FI_OPCODE_UNKNOWN when the
// opcode is not in the table or is listed only for a later SM than `sm`.
static inline int fi_opcode_id(const char* short_opcode, int sm) {
    for (int i = 0; i < FI_NUM_OPCODES; i++) {
        if (strcmp(FI_OPCODES[i].name, short_opcode) == 0) {
            return FI_OPCODES[i].first_sm <= sm ? i : FI_OPCODE_UNKNOWN;
        }
    }
    return FI_OPCODE_UNKNOWN;
}

static inline int fi_opcode_group(int opcode_id) {
    return opcode_id == FI_OPCODE_UNKNOWN ? FI_OTHERS : FI_OPCODES[opcode_id].group;
}

static inline const char* fi_opcode_name(int opcode_id) {
    return opcode_id == FI_OPCODE_UNKNOWN ? "UNKNOWN" : FI_OPCODES[opcode_id].name;
}
