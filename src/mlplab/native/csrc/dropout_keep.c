/* The keep flags of dropout from a counter-based hash, eight entries per AVX2 instruction (loaded by
   mlplab/mnist/dropout.py, whose docstring gives the generator; `keep_flags_torch` there is the same hash in
   torch, bit for bit). */
#include <stdint.h>
static inline uint32_t lowbias32(uint32_t x) {  /* C. Wellons' 32-bit integer hash (xorshift-multiply) */
    x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
    return x;
}
/* out[e] = 1.0f if unit counter + e is kept (its 24-bit uniform >= p), else 0.0f, e < count */
void dropout_keep(uint64_t key, uint64_t counter, int64_t count, float p, float *restrict out) {
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    double t = (double)p * 16777216.0;
    uint32_t threshold = (uint32_t)t + ((double)(uint32_t)t < t);  /* ceil(p * 2^24): u >= p <=> x >= it */
    for (int64_t e = 0; e < count;) {  /* runs where the counter's high word is constant (a vector loop) */
        uint64_t i0 = counter + (uint64_t)e;
        uint32_t lo = (uint32_t)i0, k1h = k1 ^ ((uint32_t)(i0 >> 32) * 0x9e3779b9u);
        int64_t run = count - e, room = (int64_t)(0x100000000ull - lo);
        run = run < room ? run : room;
        float *o = out + e;
        for (int64_t r = 0; r < run; r++) {
            uint32_t x = lowbias32(lowbias32((lo + (uint32_t)r) ^ k0) ^ k1h);
            o[r] = (x >> 8) >= threshold ? 1.0f : 0.0f;
        }
        e += run;
    }
}
