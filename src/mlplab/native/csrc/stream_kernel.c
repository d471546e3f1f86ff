/* The native chunk kernel of the streaming forward pass (loaded by mlplab/stream/native.py).

   Per block of 4096 rows (X, y_hat and the block's counts stay in L1/L2 cache):

   * `forward_block`: y_hat, 8 rows per AVX2 instruction (rows de-interleaved with blends and one permute per
     input), sigmoid from an inline exp (Cephes' polynomial, Estrin's scheme) and an IEEE division, so the
     same bits come out on every FMA-capable x86 machine. A NaN or inf input shows in the first hidden unit's
     pre-activation (a multiply-add of every input), checked by one integer max per 8 rows.
   * `stats_loop`: one pass over the block's y_hat for min, max, positives, the histogram and the exact sum.
     The histogram class comes straight from floor(y * nb / (hi - lo) + offset); the map is monotone, so
     checking it at each float32 edge and just below it proves it right for every float32; the (few) edges it
     gets wrong are counted by comparisons. `class_ge` then packs the block's classes into bytes, 32 to a
     vector, and counts #(class >= k) with byte compares: fewer instructions than a table increment per row.
     The exact sum splits each y_hat, in float64, into three parts that are multiples of 2**S, 2**(S - 41)
     and 2**(S - 82), S set from the previous block's largest |y_hat|; each part's per-block float64 sum
     cannot round, and is then added to int64 counts of 2**(16p - 150).
   * Blocks the fast path cannot vouch for (a non-finite input or y_hat, the last partial block of a call, a
     y_hat outside the sum's window) are redone by `exact_stats`: comparisons with every edge and float64 sums
     per exponent bucket, the way the portable (non-AVX2) build does every block.

   Tested bit for bit against `summary.summarize_y` (tests/test_stream_kernel.py). */
#define _GNU_SOURCE /* pthread_setname_np */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* D, H, A1, A2 come from -D flags: inputs, hidden units, activation codes (0 identity, 1 relu, 2 sigmoid). */
#if !defined(D) || !defined(H) || !defined(A1) || !defined(A2)
#error "compile with -DD=<inputs> -DH=<hidden units> -DA1=<code> -DA2=<code> (see load_native in stream/native.py)"
#elif A1 < 0 || A1 > 2 || A2 < 0 || A2 > 2
#error "A1 and A2 are activation codes: 0 identity, 1 relu, 2 sigmoid"
#endif
#define EXPMASK 0x7f800000u
#define BLOCK 4096 /* rows per block: X, y and the per-block counts stay in L1/L2 */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));
#define V8(c) ((v8f){c, c, c, c, c, c, c, c})
#define V8I(c) ((v8i){c, c, c, c, c, c, c, c})
static inline uint32_t bits(float v) { uint32_t b; memcpy(&b, &v, 4); return b; }

/* running totals of one call; hist has nb + 2 counts (underflow, the bins, overflow) */
typedef struct {
    int64_t cnt, pos, *hist, *isums;
    float mn, mx;
} totals;

/* histogram counts from ge[k] = #(y >= edges[k]) and top = #(y == edges[nb]); the last bin is closed */
static void add_hist(const int64_t *ge, int64_t cnt, int64_t top, int nb, int64_t *hist) {
    hist[0] += cnt - ge[0];
    for (int k = 0; k < nb; k++) hist[k + 1] += ge[k] - ge[k + 1];
    hist[nb] += top;
    hist[nb + 1] += ge[nb] - top;
}

/* Statistics of y[0:m] (m <= BLOCK) the plain way, for the rare blocks the fast path leaves: comparisons with
   every edge, and float64 sums per 16-exponent bucket (a bucket's values are multiples of its smallest ulp and
   below 2**40 of them, so 4096 add up exactly). what: 1 counts, min, max, positives; 2 histogram; 4 sum.
   A non-finite y_hat counts in none of them. */
static void exact_stats(const float *y, int64_t m, const float *edges, int nb, int what, totals *T) {
    float vv[BLOCK + 8], hi = edges[nb];
    int64_t m8 = (m + 7) & ~(int64_t)7, ge[nb + 1];
    memcpy(vv, y, (size_t)m * sizeof(float));
    for (int64_t i = m; i < m8; i++) memcpy(&vv[i], &(uint32_t){0x7fc00000u}, 4);
    v8i vcnt = {0}, vpos = {0}, vtop = {0}, present = {0};
    v8f vmn = V8(INFINITY), vmx = V8(-INFINITY);
    for (int64_t i = 0; i < m8; i += 8) {  /* a non-finite y_hat becomes -inf in vv: below every edge */
        v8f x;
        memcpy(&x, vv + i, sizeof x);
        v8u b = (v8u)x;
        v8i fin = (b & EXPMASK) != EXPMASK;  /* -1 where finite */
        v8f lo = (v8f)(((v8i)x & fin) | ((v8i)V8(-INFINITY) & ~fin));
        v8f up = (v8f)(((v8i)x & fin) | ((v8i)V8(INFINITY) & ~fin));
        memcpy(vv + i, &lo, sizeof lo);
        vcnt -= fin;
        vpos -= lo >= V8(0.5f);
        vtop -= lo == V8(hi);
        v8i gt = lo > vmx, lt = up < vmn;
        vmx = (v8f)(((v8i)lo & gt) | ((v8i)vmx & ~gt));
        vmn = (v8f)(((v8i)up & lt) | ((v8i)vmn & ~lt));
        present |= (v8i)((v8u){1, 1, 1, 1, 1, 1, 1, 1} << ((b >> 27) & 15)) & fin;
    }
    int64_t cnt = 0, top = 0;
    int32_t buckets = 0;
    for (int l = 0; l < 8; l++) {
        cnt += vcnt[l]; top += vtop[l]; buckets |= present[l];
        if (what & 1) {
            T->pos += vpos[l];
            T->mn = vmn[l] < T->mn ? vmn[l] : T->mn;
            T->mx = vmx[l] > T->mx ? vmx[l] : T->mx;
        }
    }
    if (what & 1) T->cnt += cnt;
    if (what & 2) {
        for (int k0 = 0; k0 <= nb; k0 += 4) {  /* 4 edges a pass */
            v8i acc[4] = {{0}, {0}, {0}, {0}};
            v8f e[4];
            for (int q = 0; q < 4; q++) e[q] = V8(edges[k0 + q <= nb ? k0 + q : nb]);
            for (int64_t i = 0; i < m8; i += 8) {
                v8f x;
                memcpy(&x, vv + i, sizeof x);
                for (int q = 0; q < 4; q++) acc[q] -= x >= e[q];  /* a true lane compares as -1 */
            }
            for (int q = 0; q < 4 && k0 + q <= nb; q++) {
                ge[k0 + q] = 0;
                for (int l = 0; l < 8; l++) ge[k0 + q] += acc[q][l];
            }
        }
        add_hist(ge, cnt, top, nb, T->hist);
    }
    for (int p = 0; p < 16 && (what & 4); p++) {  /* exact float64 sums per 16-exponent bucket present */
        if (!(buckets >> p & 1)) continue;
        v4d acc0 = {0}, acc1 = {0};
        for (int64_t i = 0; i < m8; i += 8) {
            v8f x;
            memcpy(&x, vv + i, sizeof x);
            v8u b = (v8u)x;
            v8i sel = (((b >> 27) & 15) == (v8u)V8I(p)) & ((b & EXPMASK) != EXPMASK);
            x = (v8f)((v8i)x & sel);  /* +0.0 outside the bucket */
            v4f h0, h1;
            memcpy(&h0, &x, sizeof h0);
            memcpy(&h1, (float *)&x + 4, sizeof h1);
            acc0 += __builtin_convertvector(h0, v4d);
            acc1 += __builtin_convertvector(h1, v4d);
        }
        double bs = (acc0[0] + acc0[1]) + (acc0[2] + acc0[3]) + (acc1[0] + acc1[1]) + (acc1[2] + acc1[3]);
        T->isums[p] += (int64_t)ldexp(bs, 150 - 16 * p);  /* an exact integer count of 2**(16p-150) */
    }
}

/* Rows s..s+m-1 holding NaN or inf: counted, the first remembered, y_hat set to NaN under skip (policy 1). */
static int64_t nonfinite_rows(const float *X, int64_t s, int64_t m, int policy, float *yb, int64_t *first) {
    int32_t nbad = 0;  /* branch-free count first; the slow pass only when there are bad rows */
    for (int64_t i = 0; i < m * D; i++) nbad += (bits(X[s * D + i]) & EXPMASK) == EXPMASK;
    if (!nbad) return 0;
    int64_t nfin = 0;
    for (int64_t r = s; r < s + m; r++) {
        uint32_t bad = 0;
        for (int k = 0; k < D; k++) bad |= (bits(X[r * D + k]) & EXPMASK) == EXPMASK;
        if (!bad) continue;
        if (*first < 0) *first = r;
        nfin++;
        if (policy == 1) { uint32_t q = 0x7fc00000u; memcpy(&yb[r - s], &q, 4); }
    }
    return nfin;
}

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define HMAX 64  /* direct histogram: classes -1..nb as bytes, nb <= 62 */
#define GEPASS 11 /* thresholds per pass of class_ge, their byte counters in registers (20 bins: 21, 2 passes) */
#define MAXBAD 3 /* edges the direct class gets wrong that are counted by comparisons instead */

typedef struct {  /* per-block vector accumulators */
    __m256 mn, mx;
    __m256i pos, bad, ge[MAXBAD];
    __m256d s[3][2], res;
} vacc;

/* Parameters broadcast once. Weights into a sigmoid unit are stored negated (exactly): it receives -t. */
typedef struct {
    __m256 w1[D * H], b1[H], w2[H], b2;
    __m256 hinv, hoff, hoffi, hlo, hhi, badv[MAXBAD];  /* the histogram (see hist_class) */
    __m256d c[3];  /* 1.5 * 2**(S + 52): adding then subtracting it rounds a double to a multiple of 2**S */
} params;

static inline __m256 keep(__m256 v) { __asm__("" : "+x"(v)); return v; }  /* no fast-math folding across */
static inline __m256d keepd(__m256d v) { __asm__("" : "+x"(v)); return v; }

/* sigma(t), given u = t (identity, relu) or u = -t (sigmoid). exp(u) by u = n ln2 + r, |r| <= ln2/2, and
   Cephes' expf polynomial (within 2 ulp); u is clamped so 2**n stays a normal float. */
static inline __m256 act8(__m256 u, int a) {
    if (a == 0) return u;
    if (a == 1) return _mm256_max_ps(u, _mm256_setzero_ps());
    const __m256 magic = _mm256_set1_ps(12582912.0f), one = _mm256_set1_ps(1.0f);  /* 1.5 * 2**23 */
    __m256 x = _mm256_min_ps(_mm256_max_ps(u, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 t = keep(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic));  /* magic + n */
    __m256 n = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 r2 = _mm256_mul_ps(r, r), r4 = _mm256_mul_ps(r2, r2);  /* Estrin's scheme: a short chain */
    __m256 pa = _mm256_fmadd_ps(_mm256_set1_ps(1.6666665459e-1f), r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 pb = _mm256_fmadd_ps(_mm256_set1_ps(8.3334519073e-3f), r, _mm256_set1_ps(4.1665795894e-2f));
    __m256 pc = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), r, _mm256_set1_ps(1.3981999507e-3f));
    __m256 p = _mm256_fmadd_ps(r4, pc, _mm256_fmadd_ps(r2, pb, pa));
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, one));
    /* 2**n: t's low mantissa bits hold n (mod 2**9); shifted into the exponent field, plus the bias */
    __m256i e = _mm256_add_epi32(_mm256_slli_epi32(_mm256_castps_si256(t), 23), _mm256_set1_epi32(127 << 23));
    return _mm256_div_ps(one, _mm256_fmadd_ps(p, _mm256_castsi256_ps(e), one));
}

/* 8 rows: X (8, D) -> x[k] (8,) for each input k */
static inline void load_rows(const float *X, __m256 *x) {
#if D == 3
    __m256 v0 = _mm256_loadu_ps(X), v1 = _mm256_loadu_ps(X + 8), v2 = _mm256_loadu_ps(X + 16);
    x[0] = _mm256_permutevar8x32_ps(_mm256_blend_ps(_mm256_blend_ps(v0, v1, 0x92), v2, 0x24),
                                    _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5));
    x[1] = _mm256_permutevar8x32_ps(_mm256_blend_ps(_mm256_blend_ps(v0, v1, 0x24), v2, 0x49),
                                    _mm256_setr_epi32(1, 4, 7, 2, 5, 0, 3, 6));
    x[2] = _mm256_permutevar8x32_ps(_mm256_blend_ps(_mm256_blend_ps(v0, v1, 0x49), v2, 0x92),
                                    _mm256_setr_epi32(2, 5, 0, 3, 6, 1, 4, 7));
#elif D == 1
    x[0] = _mm256_loadu_ps(X);
#else
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(D));
    for (int k = 0; k < D; k++) x[k] = _mm256_i32gather_ps(X + k, idx, 4);
#endif
}

/* y for 8 rows at a time. Every row of every chunk goes through this one function, so y never depends on
   where a chunk starts. `bad` collects the bits (sign shifted out) of the first hidden pre-activation: every
   input enters it by a multiply-add, so a NaN or inf input (even times a zero weight) makes it NaN or inf. */
static __attribute__((noinline, noclone)) void forward_block(const float *restrict X, int64_t nv,
                                                             const params *restrict P, float *restrict y,
                                                             __m256i *bad) {
    __m256i b = *bad;
    for (int64_t i = 0; i < nv; i++) {
        __m256 x[D];
        load_rows(X + i * 8 * D, x);
        __m256 z2 = P->b2;
        for (int j = 0; j < H; j++) {
            __m256 z = P->b1[j];
            for (int k = 0; k < D; k++) z = _mm256_fmadd_ps(x[k], P->w1[k * H + j], z);
            if (j == 0) b = _mm256_max_epu32(b, _mm256_slli_epi32(_mm256_castps_si256(z), 1));
            z2 = _mm256_fmadd_ps(act8(z, A1), P->w2[j], z2);
        }
        _mm256_storeu_ps(y + i * 8, A2 == 2 ? z2 : act8(z2, A2));
    }
    if (A2 == 2)  /* sigma_2 in a second pass: two shorter dependency chains overlap better than one long */
        for (int64_t i = 0; i < nv; i++) _mm256_storeu_ps(y + i * 8, act8(_mm256_loadu_ps(y + i * 8), A2));
    *bad = b;
}

/* Histogram class of each lane: clamp(floor(v * hinv + hoff) + hoffi, -1, nb); monotone in v (a NaN gives
   -1). Where class >= k exactly when v >= edges[k] (`hist_setup` checks it at the edge and just below it,
   which by monotony settles every float32), #(y >= edges[k]) is read off the class counts. */
static inline __m256i hist_class(__m256 v, const params *P) {
    __m256 t = _mm256_add_ps(keep(_mm256_floor_ps(_mm256_fmadd_ps(v, P->hinv, P->hoff))), P->hoffi);
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(keep(t), P->hlo), P->hhi));
}

static int class_of(float v, const params *P) {
    int32_t c[8];
    _mm256_storeu_si256((__m256i *)c, hist_class(_mm256_set1_ps(v), P));
    return c[0];
}

/* Choose the class map with the fewest edges it gets wrong (those go to badk, counted by comparisons);
   returns their number, or -1 when the histogram must be done by comparisons alone. */
static int hist_setup(const float *edges, int nb, params *P, int *badk) {
    if (nb + 2 > HMAX) return -1;
    float lo = edges[0], hi = edges[nb], inv0 = (float)nb / (hi - lo);
    int best = -1;
    for (int cand = 0; cand < 10; cand++) {
        float inv = inv0;
        for (int u = 0; u < cand / 2; u++) inv = nextafterf(inv, cand & 1 ? INFINITY : 0.f);
        float off = -lo * inv, offi = cand & 1 ? 0.f : rintf(off);  /* integer part added after the floor */
        if (!(isfinite(inv) && inv > 0 && isfinite(off) && fabsf(off) < 4e6f)) continue;
        params Q = *P;
        Q.hinv = _mm256_set1_ps(inv); Q.hoff = _mm256_set1_ps(off - offi); Q.hoffi = _mm256_set1_ps(offi);
        Q.hlo = _mm256_set1_ps(-1.f); Q.hhi = _mm256_set1_ps((float)nb);
        int nbad = 0, ks[HMAX];
        for (int k = 0; k <= nb; k++)
            if (class_of(edges[k], &Q) < k || class_of(nextafterf(edges[k], -INFINITY), &Q) >= k) ks[nbad++] = k;
        if (nbad <= MAXBAD && (best < 0 || nbad < best)) {
            best = nbad;
            *P = Q;
            for (int q = 0; q < MAXBAD; q++) P->badv[q] = _mm256_set1_ps(q < nbad ? edges[ks[q]] : INFINITY);
            memcpy(badk, ks, (size_t)nbad * sizeof(int));
        }
        if (best == 0) break;
    }
    return best;
}

/* Statistics of y[0 : 8 nv] into the block's accumulators. A NaN or inf y_hat shows as a non-finite min,
   max or sum, and the caller then redoes the block the plain way. The exact sum: y = h1 + h2 + h3 + rest,
   hq a multiple of 2**Sq with S(q+1) = Sq - 41 and |h1| < 2**(S1 + 40): per lane and block (512 values)
   each float64 sum of hq is exact; rest must be 0. */
static inline __attribute__((always_inline)) void stats_loop(const float *restrict y, int64_t nv,
                                                             const params *restrict P, vacc *restrict A,
                                                             int32_t *restrict cls, int dohist, int dopos,
                                                             int nbad, const float *pf) {
    vacc a = *A;
    for (int64_t i = 0; i < nv; i++) {
        __m256 v = _mm256_loadu_ps(y + i * 8);
        _mm_prefetch((const char *)(pf + i * 8 * D), _MM_HINT_T0);  /* the next block's X, 8 rows a step */
        _mm_prefetch((const char *)(pf + i * 8 * D + 16), _MM_HINT_T0);
        a.mn = _mm256_min_ps(a.mn, v);
        a.mx = _mm256_max_ps(a.mx, v);
        if (dopos)
            a.pos = _mm256_sub_epi32(a.pos, _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_set1_ps(0.5f), _CMP_GE_OQ)));
        for (int q = 0; q < nbad; q++)
            a.ge[q] = _mm256_sub_epi32(a.ge[q], _mm256_castps_si256(_mm256_cmp_ps(v, P->badv[q], _CMP_GE_OQ)));
        __m256d d[2] = {_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))};
        __m256d l[2];
        for (int q = 0; q < 2; q++) {
            l[q] = d[q];
            for (int lev = 0; lev < 2; lev++) {
                __m256d h = keepd(_mm256_sub_pd(keepd(_mm256_add_pd(l[q], P->c[lev])), P->c[lev]));
                a.s[lev][q] = _mm256_add_pd(a.s[lev][q], h);
                l[q] = _mm256_sub_pd(l[q], h);
            }
        }
        /* the third level only for the 8 rows where some lane has bits below 2**(S - 41): y_hat below
           ~2**(S - 18) (rare; in lanes that are 0 the third level adds zeros and leaves zeros) */
        __m256i left = _mm256_or_si256(_mm256_castpd_si256(l[0]), _mm256_castpd_si256(l[1]));
        if (__builtin_expect(!_mm256_testz_si256(left, left), 0)) {
            for (int q = 0; q < 2; q++) {
                __m256d h = keepd(_mm256_sub_pd(keepd(_mm256_add_pd(l[q], P->c[2])), P->c[2]));
                a.s[2][q] = _mm256_add_pd(a.s[2][q], h);
                a.res = _mm256_or_pd(a.res, _mm256_sub_pd(l[q], h));  /* any bit left (or a -0.0): redone */
            }
        }
        if (dohist) _mm256_store_si256((__m256i *)(cls + i * 8), hist_class(v, P));  /* counted in class_ge */
    }
    *A = a;
}

static __attribute__((noinline)) void stats_block(const float *y, int64_t nv, const params *P, vacc *A,
                                                  int32_t *cls, int dohist, int dopos, int nbad, const float *pf) {
    if (!dohist) stats_loop(y, nv, P, A, cls, 0, 1, 0, pf);
    else if (nbad == 0 && !dopos) stats_loop(y, nv, P, A, cls, 1, 0, 0, pf);
    else if (nbad == 0) stats_loop(y, nv, P, A, cls, 1, 1, 0, pf);
    else if (nbad == 1) stats_loop(y, nv, P, A, cls, 1, dopos, 1, pf);
    else if (nbad == 2) stats_loop(y, nv, P, A, cls, 1, dopos, 2, pf);
    else stats_loop(y, nv, P, A, cls, 1, dopos, 3, pf);
}

/* ge[k] = #(class >= k), k = 0..nb, of the 8 nv classes (int32, -1..nb) in cls. The classes are packed into
   bytes, 32 to a vector, and compared with GEPASS thresholds at a time; each compare adds 1 to a byte counter
   where it holds, and a block (at most 128 vectors of bytes) cannot overflow one. */
static __attribute__((noinline)) void class_ge(const int32_t *restrict cls, int64_t nv, int nb, int64_t *ge) {
    int8_t bytes[BLOCK] __attribute__((aligned(32)));
    int64_t nq = (nv + 3) / 4;
    const __m256i none = _mm256_set1_epi32(-1);  /* past the end: class -1, which no threshold counts */
    for (int64_t g = 0; g < nq; g++) {
        const __m256i *c = (const __m256i *)(cls + g * 32);
        int64_t left = nv - 4 * g;
        __m256i p01 = _mm256_packs_epi32(_mm256_load_si256(c), left > 1 ? _mm256_load_si256(c + 1) : none);
        __m256i p23 = left > 3 ? _mm256_packs_epi32(_mm256_load_si256(c + 2), _mm256_load_si256(c + 3))
                               : _mm256_packs_epi32(left > 2 ? _mm256_load_si256(c + 2) : none, none);
        /* the order of the rows does not matter here */
        _mm256_store_si256((__m256i *)(bytes + g * 32), _mm256_packs_epi16(p01, p23));
    }
    for (int k0 = 0; k0 <= nb; k0 += GEPASS) {  /* a constant count: the counters stay in registers */
        __m256i acc[GEPASS], th[GEPASS];
        for (int q = 0; q < GEPASS; q++) {
            acc[q] = _mm256_setzero_si256();
            th[q] = _mm256_set1_epi8((char)(k0 + q - 1));  /* class > k - 1 */
        }
        for (int64_t g = 0; g < nq; g++) {
            __m256i b = _mm256_load_si256((const __m256i *)(bytes + g * 32));
            for (int q = 0; q < GEPASS; q++) acc[q] = _mm256_sub_epi8(acc[q], _mm256_cmpgt_epi8(b, th[q]));
        }
        for (int q = 0; q < GEPASS && k0 + q <= nb; q++) {
            int64_t t[4];
            __m256i s4 = _mm256_sad_epu8(acc[q], _mm256_setzero_si256());  /* 4 sums of 8 byte counters */
            memcpy(t, &s4, 32);
            ge[k0 + q] = t[0] + t[1] + t[2] + t[3];
        }
    }
}

static void vacc_init(vacc *a) {
    a->mn = _mm256_set1_ps(INFINITY); a->mx = _mm256_set1_ps(-INFINITY);
    a->pos = a->bad = _mm256_setzero_si256();
    for (int q = 0; q < MAXBAD; q++) a->ge[q] = _mm256_setzero_si256();
    for (int q = 0; q < 3; q++) a->s[q][0] = a->s[q][1] = _mm256_setzero_pd();
    a->res = _mm256_setzero_pd();
}

static int64_t hsum_i(__m256i v) {
    int32_t t[8];
    memcpy(t, &v, 32);
    int64_t s = 0;
    for (int l = 0; l < 8; l++) s += t[l];
    return s;
}

/* v, an exact float64 multiple of 2**-150 below 2**200, into the int64 counts of 2**(16p - 150) */
static void add_exact(double v, int64_t *isums) {
    if (v == 0) return;
    uint64_t b;
    memcpy(&b, &v, 8);
    int neg = b >> 63, E = (int)((b >> 52) & 0x7ff) - 1075;
    uint64_t M = (b & ((1ull << 52) - 1)) | (1ull << 52);
    if (E < -150) { M >>= -150 - E; E = -150; }  /* only zero bits go */
    int u = E + 150, p = u / 16;
    unsigned __int128 t = (unsigned __int128)M << (u % 16);  /* below 2**68 */
    int64_t parts[3] = {(int64_t)(t & 0xffff), (int64_t)((t >> 16) & 0xffff), (int64_t)(t >> 32)};
    for (int q = 0; q < 3; q++) isums[p + q] += neg ? -parts[q] : parts[q];
}

/* the fast path's statistics of one finite block: into T (false: the block must be redone the plain way) */
static int merge_block(const vacc *a, const int32_t *cls, int64_t m, const float *edges, int nb, int dohist,
                       int dopos, int half, int nbad, const int *badk, const float *y, int *S, totals *T) {
    float mn[8], mx[8];
    memcpy(mn, &a->mn, 32); memcpy(mx, &a->mx, 32);
    float bmn = mn[0], bmx = mx[0];
    for (int l = 1; l < 8; l++) { bmn = mn[l] < bmn ? mn[l] : bmn; bmx = mx[l] > bmx ? mx[l] : bmx; }
    double t[3][4];
    int ok = isfinite(bmn) && isfinite(bmx);  /* an inf y_hat shows here, a NaN in the sums */
    for (int q = 0; q < 3; q++) {
        __m256d v = _mm256_add_pd(a->s[q][0], a->s[q][1]);
        memcpy(t[q], &v, 32);
        ok &= isfinite(t[q][0] + t[q][1] + t[q][2] + t[q][3]);
    }
    if (!ok) return 0;
    T->mn = bmn < T->mn ? bmn : T->mn;
    T->mx = bmx > T->mx ? bmx : T->mx;
    T->cnt += m;
    if (dopos) T->pos += hsum_i(a->pos);
    if (dohist) {
        int64_t ge[HMAX];
        class_ge(cls, m / 8, nb, ge);  /* ge[k] = #(class >= k) = #(y >= edges[k]) at the good edges */
        for (int q = 0; q < nbad; q++) ge[badk[q]] = hsum_i(a->ge[q]);
        if (!dopos) T->pos += ge[half];
        int64_t top = 0;  /* #(y == edges[nb]), counted only for a block that reaches it */
        if (bmx >= edges[nb])
            for (int64_t i = 0; i < m; i++) top += y[i] == edges[nb];
        add_hist(ge, m, top, nb, T->hist);
    } else {
        exact_stats(y, m, edges, nb, 2, T);
    }
    float amax = fmaxf(fabsf(bmn), fabsf(bmx));
    int E = amax > 0 ? ilogbf(amax) + 1 : -150;  /* |y| < 2**E */
    double r[4];
    memcpy(r, &a->res, 32);
    if (E <= *S + 40 && !(r[0] || r[1] || r[2] || r[3]))
        for (int q = 0; q < 3; q++) add_exact((t[q][0] + t[q][1]) + (t[q][2] + t[q][3]), T->isums);
    else
        exact_stats(y, m, edges, nb, 4, T);
    *S = (E < -110 ? -110 : E) - 39;  /* the next block's window */
    return 1;
}
#else
/* vector expf from glibc's libmvec (math.h declares it only under full -ffast-math) */
__attribute__((simd("notinbranch"))) float expf(float);
/* portable: y[r] = sigma2(sum_j sigma1(X[r,:] W1[:,j] + b1[j]) W2[j] + b2), n a multiple of 64 */
static inline float act(float t, int a) { return a == 0 ? t : (a == 1 ? (t > 0.f ? t : 0.f) : 1.f / (1.f + expf(-t))); }
static void forward_rows(const float *restrict X, int64_t n, const float *restrict W1, const float *restrict b1,
                         const float *restrict W2, float b2, float *restrict y) {
    for (int64_t r = 0; r < n; r++) {
        const float *x = X + r * D;
        float z2 = b2;
        for (int j = 0; j < H; j++) {
            float z = b1[j];
            for (int k = 0; k < D; k++) z += x[k] * W1[k * H + j];
            z2 += act(z, A1) * W2[j];
        }
        y[r] = act(z2, A2);
    }
}
#endif

/* A run's network, policy and histogram, prepared once: weights and edges copied, the broadcasts and the
   histogram's class map (hist_setup) made. */
typedef struct {
    float W1[D * H], b1[H], W2[H], b2;
    int policy, nb;
    float *edges;  /* nb + 1, owned */
#if defined(__AVX2__) && defined(__FMA__)
    params P;
    int badk[MAXBAD], nbad, dohist, half, dopos;
#endif
} setup;

static int setup_init(setup *st, const float *W1, const float *b1, const float *W2, float b2, int policy,
                      const float *edges, int nb) {
    memcpy(st->W1, W1, sizeof st->W1); memcpy(st->b1, b1, sizeof st->b1); memcpy(st->W2, W2, sizeof st->W2);
    st->b2 = b2; st->policy = policy; st->nb = nb;
    st->edges = malloc((size_t)(nb + 1) * sizeof(float));
    if (st->edges == NULL) return -1;
    memcpy(st->edges, edges, (size_t)(nb + 1) * sizeof(float));
#if defined(__AVX2__) && defined(__FMA__)
    params *P = &st->P;
    float g1 = A1 == 2 ? -1.f : 1.f, g2 = A2 == 2 ? -1.f : 1.f;  /* a sigmoid unit receives -t (see act8) */
    for (int i = 0; i < D * H; i++) P->w1[i] = _mm256_set1_ps(g1 * W1[i]);
    for (int j = 0; j < H; j++) { P->b1[j] = _mm256_set1_ps(g1 * b1[j]); P->w2[j] = _mm256_set1_ps(g2 * W2[j]); }
    P->b2 = _mm256_set1_ps(g2 * b2);
    st->nbad = hist_setup(edges, nb, P, st->badk);
    st->dohist = st->nbad >= 0;
    st->half = -1;
    for (int k = 0; k <= nb && st->dohist; k++) st->half = edges[k] == 0.5f ? k : st->half;
    st->dopos = st->half < 0;  /* else the positives are #(y >= edges[half]) */
#endif
    return 0;
}

/* One chunk: forward, non-finite policy (0 error, 1 skip, 2 keep), statistics.
   counts: [0] nonfinite input rows, [1] first such row (-1), [2] nonfinite y_hat, [3] counted, [4] positives.
   isums: 18 int64, the exact sum of the finite y_hat is sum_p isums[p] 2**(16p - 150); minmax: [min, max];
   hist: nb + 2 counts. n <= 2**21 rows per call (keeps every isums[p] below 2**62). */
static void run_rows(const setup *st, const float *restrict X, int64_t n, float *y, int64_t *counts,
                     int64_t *isums, float *minmax, int64_t *hist) {
    const float *W1 = st->W1, *b1 = st->b1, *W2 = st->W2, *edges = st->edges;
    float b2 = st->b2;
    int policy = st->policy, nb = st->nb;
    (void)W1; (void)b1; (void)W2; (void)b2;
    int64_t nfin = 0, first = -1;
    totals T = {0, 0, hist, isums, INFINITY, -INFINITY};
    float ybuf[BLOCK] __attribute__((aligned(32)));  /* y_hat of a block when the caller keeps none (y NULL) */
#if defined(__AVX2__) && defined(__FMA__)
    params P = st->P;  /* a copy: P.c changes from block to block */
    const int *badk = st->badk;
    int nbad = st->nbad, dohist = st->dohist, half = st->half, dopos = st->dopos;
    int32_t cls[BLOCK] __attribute__((aligned(32)));  /* the histogram class of each y_hat of a block */
    int S = -38;  /* the exact sum's top level (see stats_loop), set from the previous block's max |y_hat| */
    for (int64_t s = 0; s < n; s += BLOCK) {
        int64_t m = n - s < BLOCK ? n - s : BLOCK, full = m & ~(int64_t)7;
        float *yb = y != NULL ? y + s : ybuf;
        for (int q = 0; q < 3; q++) P.c[q] = _mm256_set1_pd(ldexp(1.5, S - 41 * q + 52));
        vacc a;
        vacc_init(&a);
        forward_block(X + s * D, full / 8, &P, yb, &a.bad);
        stats_block(yb, full / 8, &P, &a, cls, dohist, dopos, nbad, X + (s + m < n ? s + m : s) * D);
        if (full < m) {  /* the tail, zero-padded through the same function */
            float pad_x[8 * D], pad_y[8];
            memset(pad_x, 0, sizeof pad_x);
            memcpy(pad_x, X + (s + full) * D, (size_t)(m - full) * D * sizeof(float));
            forward_block(pad_x, 1, &P, pad_y, &a.bad);
            memcpy(yb + full, pad_y, (size_t)(m - full) * sizeof(float));
        }
        int32_t bb[8], bad = 0;
        memcpy(bb, &a.bad, 32);
        for (int l = 0; l < 8; l++) bad |= (uint32_t)bb[l] >= 0xff000000u;  /* a NaN or inf input */
        if (!bad && full == m && merge_block(&a, cls, m, edges, nb, dohist, dopos, half, nbad, badk, yb, &S, &T))
            continue;
        nfin += nonfinite_rows(X, s, m, policy, yb, &first);
        if (policy == 0 && nfin) break;
        exact_stats(yb, m, edges, nb, 7, &T);
    }
#else
    float pad_x[64 * D], pad_y[64];
    for (int64_t s = 0; s < n; s += BLOCK) {
        int64_t m = n - s < BLOCK ? n - s : BLOCK, full = m & ~(int64_t)63;
        float *yb = y != NULL ? y + s : ybuf;
        forward_rows(X + s * D, full, W1, b1, W2, b2, yb);
        if (full < m) {  /* the tail, zero-padded through the same loop */
            memset(pad_x, 0, sizeof pad_x);
            memcpy(pad_x, X + (s + full) * D, (size_t)(m - full) * D * sizeof(float));
            forward_rows(pad_x, 64, W1, b1, W2, b2, pad_y);
            memcpy(yb + full, pad_y, (size_t)(m - full) * sizeof(float));
        }
        nfin += nonfinite_rows(X, s, m, policy, yb, &first);
        if (policy == 0 && nfin) break;
        exact_stats(yb, m, edges, nb, 7, &T);
    }
#endif
    counts[0] = nfin; counts[1] = first; counts[2] = n - T.cnt; counts[3] = T.cnt; counts[4] = T.pos;
    minmax[0] = T.mn; minmax[1] = T.mx;
}

void mlp_chunk(const float *restrict X, int64_t n, const float *W1, const float *b1, const float *W2, float b2,
               int policy, float *y, const float *edges, int nb, int64_t *counts, int64_t *isums,
               float *minmax, int64_t *hist) {
    setup st;
    if (setup_init(&st, W1, b1, W2, b2, policy, edges, nb) != 0) { counts[3] = -1; return; }
    run_rows(&st, X, n, y, counts, isums, minmax, hist);
    free(st.edges);
}

/* A pool of worker threads for a run. The caller submits chunks (at most SLOTS unfinished at a time) and waits
   for each chunk's merged statistics; the workers take `sub` rows at a time from the oldest submitted chunk, so
   they go from one chunk to the next without waiting for each other or for the caller. Each worker keeps its
   own totals per chunk; they merge exactly (integer counts, min, max), so the split changes nothing. */
#include <pthread.h>
#define SLOTS 4
#define NCNT 5
#define NSUM 18

typedef struct {
    int state;  /* 0 free, 1 submitted, 2 finished */
    int64_t seq, n, next, taken, done, stop;
    const float *X;
    float *y;
    int64_t *cnt, *isums, *hist;  /* per worker: NCNT, NSUM, nb + 2 */
    float *minmax;                 /* per worker: 2 */
} job;

typedef struct {
    setup st;
    int nth, quit, nthreads_started;
    int64_t seq, sub;  /* sub: rows a worker takes at a time */
    pthread_t th[64];
    pthread_mutex_t mu;
    pthread_cond_t work, fin;
    job jobs[SLOTS];
} pool;

/* carry the int64 counts of 2**(16p - 150) so that each but the last is in [0, 2**16): sums of many stay small */
static void carry(int64_t *isums) {
    for (int p = 0; p < NSUM - 1; p++) {
        int64_t c = isums[p] >> 16;  /* floor division */
        isums[p] -= c * 65536;
        isums[p + 1] += c;
    }
}

/* statistics with nothing in them: counts (NCNT; [1], the first bad row, -1), isums (NSUM), min and max */
static void clear_stats(int64_t *c, int64_t *is, float *m) {
    memset(c, 0, NCNT * sizeof(int64_t));
    c[1] = -1;
    memset(is, 0, NSUM * sizeof(int64_t));
    m[0] = INFINITY;
    m[1] = -INFINITY;
}

/* add statistics (c2, is2, m2) whose rows start at row `row0` of the chunk into (c, is, m), exactly */
static void add_stats(int64_t *c, int64_t *is, float *m, const int64_t *c2, const int64_t *is2, const float *m2,
                      int64_t row0) {
    if (c2[0] && (c[1] < 0 || row0 + c2[1] < c[1])) c[1] = row0 + c2[1];
    c[0] += c2[0]; c[2] += c2[2]; c[3] += c2[3]; c[4] += c2[4];
    for (int p = 0; p < NSUM; p++) is[p] += is2[p];
    carry(is);
    m[0] = m2[0] < m[0] ? m2[0] : m[0];
    m[1] = m2[1] > m[1] ? m2[1] : m[1];
}

static job *oldest_open(pool *pl) {
    job *best = NULL;
    for (int j = 0; j < SLOTS; j++) {
        job *b = &pl->jobs[j];
        if (b->state == 1 && !b->stop && b->next < b->n && (best == NULL || b->seq < best->seq)) best = b;
    }
    return best;
}

typedef struct { pool *pl; int w; } worker_arg;

static void *worker(void *arg) {
    pool *pl = ((worker_arg *)arg)->pl;
    int w = ((worker_arg *)arg)->w, nb = pl->st.nb;
    free(arg);
    pthread_setname_np(pthread_self(), "mlplab-kernel");  /* as top -H and ps -L show it */
    pthread_mutex_lock(&pl->mu);
    for (;;) {
        job *b = oldest_open(pl);
        if (b == NULL) {
            if (pl->quit) break;
            pthread_cond_wait(&pl->work, &pl->mu);
            continue;
        }
        int64_t s = b->next, e = s + pl->sub < b->n ? s + pl->sub : b->n;
        b->next = e;
        b->taken++;
        pthread_mutex_unlock(&pl->mu);
        int64_t cnt[NCNT], isums[NSUM] = {0}, *hist = b->hist + (int64_t)w * (nb + 2);
        float mm[2];
        run_rows(&pl->st, b->X + s * D, e - s, b->y != NULL ? b->y + s : NULL, cnt, isums, mm, hist);
        add_stats(b->cnt + (int64_t)w * NCNT, b->isums + (int64_t)w * NSUM, b->minmax + 2 * w, cnt, isums, mm, s);
        pthread_mutex_lock(&pl->mu);
        if (cnt[0] && pl->st.policy == 0) b->stop = 1;  /* an error: no new rows of this chunk are started */
        b->done++;
        if ((b->next >= b->n || b->stop) && b->done == b->taken) {
            b->state = 2;
            pthread_cond_broadcast(&pl->fin);
        }
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

void pool_free(pool *pl);

pool *pool_new(int nth, int64_t sub, const float *W1, const float *b1, const float *W2, float b2, int policy,
               const float *edges, int nb) {
    if (nth < 1 || nth > 64 || sub < 1 || sub > (1 << 21)) return NULL;
    size_t size = (sizeof(pool) + 63) / 64 * 64;
    pool *pl = aligned_alloc(64, size);  /* the setup holds AVX vectors: 32-byte alignment */
    if (pl == NULL) return NULL;
    memset(pl, 0, size);
    if (setup_init(&pl->st, W1, b1, W2, b2, policy, edges, nb) != 0) { free(pl); return NULL; }
    pl->nth = nth;
    pl->sub = sub;
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->work, NULL);
    pthread_cond_init(&pl->fin, NULL);
    for (int j = 0; j < SLOTS; j++) {
        job *b = &pl->jobs[j];
        b->cnt = malloc((size_t)nth * NCNT * sizeof(int64_t));
        b->isums = malloc((size_t)nth * NSUM * sizeof(int64_t));
        b->hist = malloc((size_t)nth * (nb + 2) * sizeof(int64_t));
        b->minmax = malloc((size_t)nth * 2 * sizeof(float));
        if (!b->cnt || !b->isums || !b->hist || !b->minmax) { pool_free(pl); return NULL; }
    }
    for (int w = 0; w < nth; w++) {
        worker_arg *a = malloc(sizeof *a);
        if (a == NULL) { pool_free(pl); return NULL; }
        a->pl = pl; a->w = w;
        if (pthread_create(&pl->th[w], NULL, worker, a) != 0) { free(a); pool_free(pl); return NULL; }
        pl->nthreads_started++;
    }
    return pl;
}

/* Queue rows X[0:n] (y_hat into y[0:n] unless NULL); returns the slot to wait on, -1 if all are taken. */
int pool_submit(pool *pl, const float *X, int64_t n, float *y) {
    pthread_mutex_lock(&pl->mu);
    int slot = -1;
    for (int j = 0; j < SLOTS && slot < 0; j++) if (pl->jobs[j].state == 0) slot = j;
    if (slot >= 0) {
        job *b = &pl->jobs[slot];
        int nb = pl->st.nb;
        b->X = X; b->y = y; b->n = n;
        b->next = b->taken = b->done = b->stop = 0;
        b->seq = pl->seq++;
        memset(b->hist, 0, (size_t)pl->nth * (nb + 2) * sizeof(int64_t));
        for (int w = 0; w < pl->nth; w++) clear_stats(b->cnt + w * NCNT, b->isums + w * NSUM, b->minmax + 2 * w);
        b->state = n > 0 ? 1 : 2;
        pthread_cond_broadcast(&pl->work);
    }
    pthread_mutex_unlock(&pl->mu);
    return slot;
}

/* Wait for a slot's chunk; its merged statistics as mlp_chunk gives them (isums carried). Frees the slot. */
void pool_wait(pool *pl, int slot, int64_t *counts, int64_t *isums, float *minmax, int64_t *hist) {
    job *b = &pl->jobs[slot];
    pthread_mutex_lock(&pl->mu);
    while (b->state != 2) pthread_cond_wait(&pl->fin, &pl->mu);
    int nb = pl->st.nb;
    clear_stats(counts, isums, minmax);
    memset(hist, 0, (size_t)(nb + 2) * sizeof(int64_t));
    for (int w = 0; w < pl->nth; w++) {
        add_stats(counts, isums, minmax, b->cnt + w * NCNT, b->isums + w * NSUM, b->minmax + 2 * w, 0);
        for (int k = 0; k < nb + 2; k++) hist[k] += b->hist[(int64_t)w * (nb + 2) + k];
    }
    b->state = 0;
    pthread_mutex_unlock(&pl->mu);
}

/* Finish every submitted chunk, stop the workers, free everything. */
void pool_free(pool *pl) {
    if (pl == NULL) return;
    pthread_mutex_lock(&pl->mu);
    pl->quit = 1;
    pthread_cond_broadcast(&pl->work);
    pthread_mutex_unlock(&pl->mu);
    for (int w = 0; w < pl->nthreads_started; w++) pthread_join(pl->th[w], NULL);
    for (int j = 0; j < SLOTS; j++) {
        free(pl->jobs[j].cnt); free(pl->jobs[j].isums); free(pl->jobs[j].hist); free(pl->jobs[j].minmax);
    }
    free(pl->st.edges);
    pthread_mutex_destroy(&pl->mu);
    pthread_cond_destroy(&pl->work);
    pthread_cond_destroy(&pl->fin);
    free(pl);
}
