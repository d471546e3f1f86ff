"""An optional compiled kernel: the whole d-h-1 forward and the summary statistics in one pass over a chunk.

Torch runs the network op by op (matmul, add, activation, ...), each op a full pass over memory; for a
3-2-1 network that is far slower than reading the data. This small C loop, specialised for (d, h, sigma_1,
sigma_2) at compile time so the compiler unrolls and vectorises it (AVX2: 8 rows per instruction, glibc's
vector expf), reads each row once. It is built on first use with the system C compiler (`$CC`, else `cc`)
into a per-user cache and loaded with ctypes (which releases the GIL, so a reader thread runs alongside).
No compiler: `load_native` returns None and the torch kernel is used.

Statistics are computed exactly as `summary.summarize_y` defines them (tests compare the two bit for bit):
finiteness from bits, histogram from comparisons with the float32 edges, and the sum exact, through float64
sums per 4096-row block and 16-exponent bucket turned into int64 counts of that bucket's smallest ulp.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

import numpy as np

from mlplab.cbuild import build
from mlplab.stream.summary import EXACT_BLOCK_ROWS

ACT_CODES = {"identity": 0, "relu": 1, "sigmoid": 2}

C_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>
/* vector expf from glibc's libmvec (math.h declares it only under full -ffast-math) */
__attribute__((simd("notinbranch"))) float expf(float);
/* D, H, A1, A2 come from -D flags: inputs, hidden units, activation codes (0 identity, 1 relu, 2 sigmoid). */
#define EXPMASK 0x7f800000u
static inline float act(float t, int a) { return a == 0 ? t : (a == 1 ? (t > 0.f ? t : 0.f) : 1.f / (1.f + expf(-t))); }
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));
#define V8(c) ((v8f){c, c, c, c, c, c, c, c})
#define V8I(c) ((v8i){c, c, c, c, c, c, c, c})
static inline uint32_t bits(float v) { uint32_t b; memcpy(&b, &v, 4); return b; }

/* y[r] = sigma2(sum_j sigma1(X[r,:] W1[:,j] + b1[j]) W2[j] + b2), rows r < n (n a multiple of 64). */
static void forward_rows(const float *restrict X, int64_t n, const float *restrict W1, const float *restrict b1,
                         const float *restrict W2, float b2, float *restrict y) {
    float w1[D * H], bb1[H], w2[H];
    for (int i = 0; i < D * H; i++) w1[i] = W1[i];
    for (int j = 0; j < H; j++) { bb1[j] = b1[j]; w2[j] = W2[j]; }
    for (int64_t r = 0; r < n; r++) {
        const float *x = X + r * D;
        float z2 = b2;
        for (int j = 0; j < H; j++) {
            float z = bb1[j];
            for (int k = 0; k < D; k++) z += x[k] * w1[k * H + j];
            z2 += act(z, A1) * w2[j];
        }
        y[r] = act(z2, A2);
    }
}

/* One chunk: forward, non-finite policy (0 error, 1 skip, 2 keep), statistics.
   counts: [0] nonfinite input rows, [1] first such row (-1), [2] nonfinite y_hat, [3] counted, [4] positives.
   isums: 16 int64, the exact sum of the finite y_hat whose float32 exponent field lies in [16p, 16p + 16),
   in units of 2**(16p - 150) (per 4096-row block a float64 sum is exact: below 2**51 units);
   minmax: [min, max]; hist: nb + 2 counts. n <= 2**21 rows per call (keeps isums below 2**60). */
void mlp_chunk(const float *restrict X, int64_t n, const float *W1, const float *b1, const float *W2, float b2,
               int policy, float *restrict y, const float *edges, int nb, int64_t *counts, int64_t *isums,
               float *minmax, int64_t *hist) {
    const int64_t B = 4096;
    float pad_x[64 * D], pad_y[64];
    int64_t nfin = 0, first = -1, cnt = 0, pos = 0, top = 0, ge[nb + 1];
    float mn = INFINITY, mx = -INFINITY, hi = edges[nb];
    for (int k = 0; k <= nb; k++) ge[k] = 0;
    for (int64_t s = 0; s < n; s += B) {
        int64_t m = n - s < B ? n - s : B, full = m & ~(int64_t)63;
        /* the same vector loop for every row, also the tail (zero-padded), so a row's y_hat never
           depends on where the chunk boundaries fall */
        forward_rows(X + s * D, full, W1, b1, W2, b2, y + s);
        if (full < m) {
            memset(pad_x, 0, sizeof pad_x);
            memcpy(pad_x, X + (s + full) * D, (size_t)(m - full) * D * sizeof(float));
            forward_rows(pad_x, 64, W1, b1, W2, b2, pad_y);
            memcpy(y + s + full, pad_y, (size_t)(m - full) * sizeof(float));
        }
        int32_t nbad = 0;  /* branch-free count first; the rare slow pass only when there are bad rows */
        for (int64_t i = 0; i < m * D; i++) nbad += (bits(X[s * D + i]) & EXPMASK) == EXPMASK;
        if (nbad) {
            for (int64_t r = s; r < s + m; r++) {
                uint32_t bad = 0;
                for (int k = 0; k < D; k++) bad |= (bits(X[r * D + k]) & EXPMASK) == EXPMASK;
                if (!bad) continue;
                if (first < 0) first = r;
                nfin++;
                if (policy == 1) { uint32_t q = 0x7fc00000u; memcpy(&y[r], &q, 4); }
            }
        }
        if (policy == 0 && nfin) break;
        /* branch-free statistics of this block (y is in L1), 8 lanes at a time: a non-finite y_hat
           becomes -inf in vv (below every edge, in no count) and +inf in the min */
        float vv[4096 + 8];
        int64_t m8 = (m + 7) & ~(int64_t)7;
        memcpy(vv, y + s, (size_t)m * sizeof(float));
        for (int64_t i = m; i < m8; i++) memcpy(&vv[i], &(uint32_t){0x7fc00000u}, 4);
        v8i vcnt = {0}, vpos = {0}, vtop = {0}, present = {0};
        v8f vmn = V8(INFINITY), vmx = V8(-INFINITY);
        for (int64_t i = 0; i < m8; i += 8) {
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
        int32_t buckets = 0;
        for (int l = 0; l < 8; l++) {
            cnt += vcnt[l]; pos += vpos[l]; top += vtop[l]; buckets |= present[l];
            mn = vmn[l] < mn ? vmn[l] : mn;
            mx = vmx[l] > mx ? vmx[l] : mx;
        }
        for (int k0 = 0; k0 <= nb; k0 += 4) {  /* ge[k] = number of finite y_hat >= edges[k]; 4 edges a pass */
            v8i acc[4] = {{0}, {0}, {0}, {0}};
            v8f e[4];
            for (int q = 0; q < 4; q++) e[q] = V8(edges[k0 + q <= nb ? k0 + q : nb]);
            for (int64_t i = 0; i < m8; i += 8) {
                v8f x;
                memcpy(&x, vv + i, sizeof x);
                for (int q = 0; q < 4; q++) acc[q] -= x >= e[q];  /* a true lane compares as -1 */
            }
            for (int q = 0; q < 4 && k0 + q <= nb; q++)
                for (int l = 0; l < 8; l++) ge[k0 + q] += acc[q][l];
        }
        for (int p = 0; p < 16; p++) {  /* exact float64 sums per 16-exponent bucket present in the block */
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
            isums[p] += (int64_t)ldexp(bs, 150 - 16 * p);  /* an exact integer count of 2**(16p-150) */
        }
    }
    hist[0] = cnt - ge[0];  /* underflow, bins [e_k, e_k+1), the last one closed, overflow */
    for (int k = 0; k < nb; k++) hist[k + 1] = ge[k] - ge[k + 1];
    hist[nb] += top;
    hist[nb + 1] = ge[nb] - top;
    counts[0] = nfin; counts[1] = first; counts[2] = n - cnt; counts[3] = cnt; counts[4] = pos;
    minmax[0] = mn; minmax[1] = mx;
}
"""

class NativeKernel:
    """ctypes wrapper of one compiled (d, h, sigma_1, sigma_2) kernel."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._fn = lib.mlp_chunk
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        self._fn.argtypes = [p, i64, p, p, p, ctypes.c_float, ctypes.c_int, p, p, ctypes.c_int, p, p, p, p]
        self._fn.restype = None

    def __call__(self, X: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: float, policy: int,
                 y: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Run on X (n, d) float32 C-contiguous, n <= 2**21; fills y (n,); returns counts, isums, minmax, hist."""
        n = X.shape[0]
        assert n <= EXACT_BLOCK_ROWS and X.flags.c_contiguous and y.flags.c_contiguous
        counts = np.zeros(5, np.int64)
        sums = np.zeros(16, np.int64)
        minmax = np.zeros(2, np.float32)
        hist = np.zeros(len(edges) + 1, np.int64)

        def ptr(a: np.ndarray) -> int:
            return a.ctypes.data

        self._fn(ptr(X), n, ptr(W1), ptr(b1), ptr(W2), b2, policy, ptr(y), ptr(edges), len(edges) - 1,
                 ptr(counts), ptr(sums), ptr(minmax), ptr(hist))
        return counts, sums, minmax, hist


def units_from_isums(isums: np.ndarray) -> int:
    """The native kernel's per-bucket int64 counts as one exact int in units of 2**-149."""
    total = sum(int(v) << (16 * p) for p, v in enumerate(isums.tolist()))  # units of 2**-150
    assert total % 2 == 0, "float32 sums are whole multiples of 2**-149"
    return total >> 1


@lru_cache(maxsize=32)
def load_native(d: int, h: int, act1: str, act2: str) -> NativeKernel | None:
    """Compile (once, cached on disk) and load the kernel for this network; None if impossible here.

    Set MLPLAB_NATIVE=0 to switch it off.
    """
    defines = [f"-DD={d}", f"-DH={h}", f"-DA1={ACT_CODES[act1]}", f"-DA2={ACT_CODES[act2]}"]
    # libmvec holds the vector expf that -ffast-math lets GCC call
    lib = build(C_SOURCE, f"mlp_{d}x{h}_{act1}_{act2}", defines, libs=("-lmvec", "-lm"))
    return NativeKernel(lib) if lib is not None else None
