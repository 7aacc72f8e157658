// Host driver of the tool's device logic (fi_logic.h, opcodes.h), built with g++ by the test
// suite. It reads one query a line on stdin and answers one line each, so pytest can compare
// every answer with the Python side (models/sampler.py, nvbitfi_tools). Queries:
//   draws SEED                      -> 32 "u_bits sign" pairs (u as the hex of its double)
//   r SEED XMIN ALPHA               -> 32 hex doubles
//   value SEED XMIN ALPHA X_BITS... -> one hex float32 per lane
//   fault MODEL BEFORE BITSEED SEED LANE XMIN ALPHA -> hex after
//   masks BITSEED                   -> bit, single-bit mask, xor mask
//   dest OPSEED NDEST               -> register index
//   destregs OPCODE GROUP MEMBYTES  -> destination register count
//   classify SHORT_OPCODE SM GPR    -> group name
//   warp ACTIVE PRED BASE IID       -> leader, rank list, selected lane
//   params FILE                     -> the parsed fields, or "error: <sentence>"
//   profile INDEX KERNEL CTAS (OPCODE GROUP N)... -> one NVBit-igprofile line
//   lane LANE REG BEFORE AFTER OPCODE PC TID -> one log record
//   counts (GROUP N)...             -> the counts line
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "../fi_logic.h"

static std::vector<std::string> split(const std::string& line) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && line[i] == ' ') i++;
        size_t j = i;
        while (j < line.size() && line[j] != ' ') j++;
        if (j > i) out.push_back(line.substr(i, j - i));
        i = j;
    }
    return out;
}

static unsigned long long u64(const std::string& s) { return strtoull(s.c_str(), NULL, 0); }
static double dbl(const std::string& s) { return strtod(s.c_str(), NULL); }
static float flt(const std::string& s) { return strtof(s.c_str(), NULL); }

static void answer(const std::vector<std::string>& a) {
    const std::string& q = a[0];
    if (q == "draws") {
        for (int lane = 0; lane < FI_WARP; lane++) {
            uint64_t w = fi_lane_word(u64(a[1]), lane);
            printf("%016" PRIx64 " %d%s", fi_dbits(fi_lane_u(w)), (int)fi_lane_sign(w), lane < 31 ? " " : "\n");
        }
    } else if (q == "r") {
        for (int lane = 0; lane < FI_WARP; lane++) {
            double r = fi_relative_error(fi_lane_u(fi_lane_word(u64(a[1]), lane)), dbl(a[2]), dbl(a[3]));
            printf("%016" PRIx64 "%s", fi_dbits(r), lane < 31 ? " " : "\n");
        }
    } else if (q == "value") {
        for (size_t i = 4; i < a.size(); i++) {
            float x = fi_bitsf((uint32_t)u64(a[i]));
            printf("%08x%s", fi_fbits(fi_lane_value(x, u64(a[1]), (int)(i - 4), dbl(a[2]), dbl(a[3]))),
                   i + 1 < a.size() ? " " : "\n");
        }
    } else if (q == "fault") {
        printf("%08x\n", fi_fault(atoi(a[1].c_str()), (uint32_t)u64(a[2]), flt(a[3]), u64(a[4]), atoi(a[5].c_str()),
                                  dbl(a[6]), dbl(a[7])));
    } else if (q == "masks") {
        float s = flt(a[1]);
        printf("%d %08x %08x\n", fi_bit_position(s), fi_single_bit_mask(s), fi_xor_mask(s));
    } else if (q == "dest") {
        printf("%d\n", fi_dest_index(flt(a[1]), atoi(a[2].c_str())));
    } else if (q == "destregs") {
        printf("%d\n", fi_dest_regs(a[1].c_str(), fi_index_of(FI_GROUP_NAMES, FI_NUM_GROUPS, a[2].c_str()),
                                    atoi(a[3].c_str())));
    } else if (q == "classify") {
        int id = fi_opcode_id(a[1].c_str(), atoi(a[2].c_str()));
        printf("%s %s\n", FI_GROUP_NAMES[fi_classify(fi_opcode_group(id), a[3] == "1")], fi_opcode_name(id));
    } else if (q == "warp") {
        uint32_t active = (uint32_t)u64(a[1]), pred = (uint32_t)u64(a[2]) & active;
        printf("%d", fi_leader(active));
        for (int lane = 0; lane < FI_WARP; lane++)
            if (pred & (1u << lane)) printf(" %d", fi_rank(pred, lane));
        printf(" | %d\n", fi_selected_lane(pred, u64(a[3]), u64(a[4])));
    } else if (q == "params") {
        FILE* f = fopen(a[1].c_str(), "rb");
        std::string text;
        char buf[4096];
        size_t n;
        while (f && (n = fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
        if (f) fclose(f);
        FiParams p;
        char err[256];
        if (fi_parse_params(text.c_str(), &p, err, sizeof(err)) != 0) {
            printf("error: %s\n", err);
        } else {
            printf("model %s group %s kernel %s kcount %lld iid %llu op %08x bit %08x vseed %llu xmin %016" PRIx64
                   " alpha %016" PRIx64 "\n",
                   FI_MODEL_NAMES[p.model], FI_GROUP_NAMES[p.group], p.kernel, p.kcount, p.iid,
                   fi_fbits(p.op_seed), fi_fbits(p.bit_seed), p.value_seed, fi_dbits(p.x_min), fi_dbits(p.alpha));
        }
    } else if (q == "profile") {
        unsigned long long counters[FI_NUM_COUNTERS] = {0};
        for (size_t i = 4; i + 2 < a.size(); i += 3) {
            int id = a[i] == "UNKNOWN" ? FI_OPCODE_UNKNOWN : fi_opcode_id(a[i].c_str(), 90);
            int group = fi_index_of(FI_GROUP_NAMES, FI_NUM_GROUPS, a[i + 1].c_str());
            fi_count_into(counters, id, group, u64(a[i + 2]));
        }
        static char line[1 << 16];
        fi_profile_line(line, sizeof(line), (long long)u64(a[1]), a[2].c_str(), u64(a[3]), counters);
        printf("%s\n", line);
    } else if (q == "lane") {
        FiLane l = {1, (uint32_t)u64(a[2]), (uint32_t)u64(a[3]), (uint32_t)u64(a[4]), 0, 0, u64(a[7])};
        char line[512];
        fi_lane_record(line, sizeof(line), atoi(a[1].c_str()), &l, a[5].c_str(), (unsigned)u64(a[6]));
        fputs(line, stdout);
    } else if (q == "counts") {
        unsigned long long counters[FI_NUM_COUNTERS] = {0};
        for (size_t i = 1; i + 1 < a.size(); i += 2)
            counters[fi_group_counter(fi_index_of(FI_GROUP_NAMES, FI_NUM_GROUPS, a[i].c_str()))] = u64(a[i + 1]);
        char line[1024];
        fi_counts_line(line, sizeof(line), counters);
        fputs(line, stdout);
    } else {
        printf("error: unknown query %s\n", q.c_str());
    }
}

int main() {
    char buf[1 << 16];
    while (fgets(buf, sizeof(buf), stdin)) {
        std::string line(buf);
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
        std::vector<std::string> a = split(line);
        if (!a.empty()) answer(a);
        fflush(stdout);
    }
    return 0;
}
