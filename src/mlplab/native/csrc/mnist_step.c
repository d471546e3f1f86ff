/* The compiled small-batch training step of the MNIST MLP: forward, backward and Adam in one call, Adam fused
   into the weight-gradient pass (loaded by mlplab/mnist/native_step.py, whose docstring gives the
   mathematics and the reasons). */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif
typedef float v8f __attribute__((vector_size(32), aligned(4)));  /* 8 floats, unaligned access allowed */
#define V8(c) ((v8f){c, c, c, c, c, c, c, c})
#define MAXL 16
#define R restrict
#define PASTE_(a, b) a##b
#define PASTE(a, b) PASTE_(a, b) /* PASTE(fwd_, NB) is fwd_3 when NB is 3 */

static inline float hsum(v8f a) {
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

typedef struct { float b1, b2, one_b1, one_b2, step_size, inv_bc2_sqrt, eps, wd; } adam_t;

/* torch's Adam on 8 weights w with gradients g: m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
   w <- w - step_size * m / (sqrt(v) / sqrt(1 - b2^t) + eps), with g += wd * w first */
static inline v8f adam8(v8f w, v8f g, float *R mp, float *R vp, adam_t o) {
    g += V8(o.wd) * w;
    v8f m = *(v8f *)mp * V8(o.b1) + g * V8(o.one_b1);
    v8f v = *(v8f *)vp * V8(o.b2) + g * g * V8(o.one_b2);
    *(v8f *)mp = m;
    *(v8f *)vp = v;
    v8f root;
    for (int l = 0; l < 8; l++) root[l] = sqrtf(v[l]);
    return w - V8(o.step_size) * m / (root * V8(o.inv_bc2_sqrt) + V8(o.eps));
}

#define NB 1
#include "mnist_step_rows.h"
#undef NB
#define NB 2
#include "mnist_step_rows.h"
#undef NB
#define NB 3
#include "mnist_step_rows.h"
#undef NB
#define NB 4
#include "mnist_step_rows.h"
#undef NB
#define NB 5
#include "mnist_step_rows.h"
#undef NB
#define NB 6
#include "mnist_step_rows.h"
#undef NB
#define NB 7
#include "mnist_step_rows.h"
#undef NB
#define NB 8
#include "mnist_step_rows.h"
#undef NB

/* fwd and bwd on n = 1..8 rows: the row kernels instantiated for each row count */
static void fwd(const float *A, int n, int in, const float *W, const float *bias, int out, float alpha, float *Z) {
    switch (n) {
        case 1: fwd_1(A, in, W, bias, out, alpha, Z); break;
        case 2: fwd_2(A, in, W, bias, out, alpha, Z); break;
        case 3: fwd_3(A, in, W, bias, out, alpha, Z); break;
        case 4: fwd_4(A, in, W, bias, out, alpha, Z); break;
        case 5: fwd_5(A, in, W, bias, out, alpha, Z); break;
        case 6: fwd_6(A, in, W, bias, out, alpha, Z); break;
        case 7: fwd_7(A, in, W, bias, out, alpha, Z); break;
        case 8: fwd_8(A, in, W, bias, out, alpha, Z); break;
    }
}
static void bwd(const float *dZ, int n, int out, const float *A, int in, float alpha, float *W, float *mW,
                float *vW, float *dA, adam_t o) {
    switch (n) {
        case 1: bwd_1(dZ, out, A, in, alpha, W, mW, vW, dA, o); break;
        case 2: bwd_2(dZ, out, A, in, alpha, W, mW, vW, dA, o); break;
        case 3: bwd_3(dZ, out, A, in, alpha, W, mW, vW, dA, o); break;
        case 4: bwd_4(dZ, out, A, in, alpha, W, mW, vW, dA, o); break;
        case 5: bwd_5(dZ, out, A, in, alpha, W, mW, vW, dA, o); break;
        case 6: bwd_6(dZ, out, A, in, alpha, W, mW, vW, dA, o); break;
        case 7: bwd_7(dZ, out, A, in, alpha, W, mW, vW, dA, o); break;
        case 8: bwd_8(dZ, out, A, in, alpha, W, mW, vW, dA, o); break;
    }
}

/* One training step on n <= 8 rows. L layers; widths[0] = input size, widths[k + 1] = layer k's outputs
   (every layer's input width % 8 == 0). P[6k..6k+5] = W, b, m_W, v_W, m_b, v_b of layer k (W row-major
   (out, in)); steps: 2L float32 step counters. Xall, yall: the whole training set; index: the batch's rows.
   K[k]: n x widths[k+1] dropout keep flags (k < L-1: 1 keeps a unit, 0 drops it), p the dropout rate.
   ftz: treat subnormals as zero during the call. work: scratch floats (`workspace_floats`).
   Writes the mean cross-entropy to *loss. */
void mlp_train_step(int L, const int *widths, float **P, float *steps, const float *Xall, const int64_t *yall,
                    const int64_t *index, int n, float **K, float p, double lr, double beta1, double beta2,
                    double eps, double wd, int ftz, float *work, float *loss) {
#if defined(__SSE__)
    /* ftz: subnormal numbers as zero for the length of the call (Adam's moments reach them, and each one
       costs ~100 cycles); the caller's floating-point mode is restored on return */
    unsigned int csr = _mm_getcsr();
    if (ftz) _mm_setcsr(csr | 0x8040);  /* FTZ | DAZ */
#endif
    int d = widths[0], C = widths[L], widest = 0;
    float s = 1.f / (1.f - p);
    for (int k = 0; k < L; k++) widest = widths[k] > widest ? widths[k] : widest;
    float *X = work, *act[MAXL];
    int64_t off = (int64_t)n * d;
    for (int k = 0; k < L; k++) { act[k] = work + off; off += (int64_t)n * widths[k + 1]; }
    float *dZ = work + off, *dA = work + off + (int64_t)n * widest;
    for (int b = 0; b < n; b++) memcpy(X + (int64_t)b * d, Xall + index[b] * d, (size_t)d * sizeof(float));

    /* forward: act[k] = A'_k = relu(Z_k) * m_k for k < L-1 (the scale s goes into the next product), then
       the logits */
    const float *in = X;
    for (int k = 0; k < L; k++) {
        int o = widths[k + 1];
        fwd(in, n, widths[k], P[6 * k], P[6 * k + 1], o, k > 0 ? s : 1.f, act[k]);
        if (k < L - 1)
            for (int64_t e = 0; e < (int64_t)n * o; e++) {
                float z = act[k][e];
                act[k][e] = (z > 0.f && K[k][e] != 0.f) ? z : 0.f;
            }
        in = act[k];
    }
    /* loss = mean_b -log softmax(z_b)[y_b];  dZ = (softmax - onehot) / n */
    double total = 0.0;
    for (int b = 0; b < n; b++) {
        float *z = act[L - 1] + (int64_t)b * C, mx = z[0], se = 0.f;
        for (int c = 1; c < C; c++) mx = z[c] > mx ? z[c] : mx;
        for (int c = 0; c < C; c++) se += expf(z[c] - mx);
        float lse = mx + logf(se);
        int64_t t = yall[index[b]];
        total += (double)(lse - z[t]);
        for (int c = 0; c < C; c++) dZ[(int64_t)b * C + c] = (expf(z[c] - lse) - (c == t ? 1.f : 0.f)) / (float)n;
    }
    *loss = (float)(total / n);

    /* backward with Adam, last layer first; every parameter's step counter goes up by one, as in torch */
    for (int q = 0; q < 2 * L; q++) steps[q] += 1.f;
    double t = steps[0];
    adam_t o = {(float)beta1, (float)beta2, (float)(1 - beta1), (float)(1 - beta2),
                (float)(lr / (1 - pow(beta1, t))), (float)(1 / sqrt(1 - pow(beta2, t))), (float)eps, (float)wd};
    for (int k = L - 1; k >= 0; k--) {
        int o_k = widths[k + 1], i_k = widths[k];
        const float *A = k > 0 ? act[k - 1] : X;
        float *bias = P[6 * k + 1], *mb = P[6 * k + 4], *vb = P[6 * k + 5];
        for (int i = 0; i < o_k; i++) {  /* the bias: g = sum_b dZ[b, i] */
            float g = 0.f;
            for (int b = 0; b < n; b++) g += dZ[(int64_t)b * o_k + i];
            g += o.wd * bias[i];
            mb[i] = mb[i] * o.b1 + g * o.one_b1;
            vb[i] = vb[i] * o.b2 + g * g * o.one_b2;
            bias[i] -= o.step_size * mb[i] / (sqrtf(vb[i]) * o.inv_bc2_sqrt + o.eps);
        }
        if (k > 0) memset(dA, 0, (size_t)n * i_k * sizeof(float));
        bwd(dZ, n, o_k, A, i_k, k > 0 ? s : 1.f, P[6 * k], P[6 * k + 2], P[6 * k + 3], k > 0 ? dA : 0, o);
        if (k > 0)  /* dZ_{k-1} = dA'_{k-1} where A'_{k-1} > 0 */
            for (int64_t e = 0; e < (int64_t)n * i_k; e++) dZ[e] = A[e] > 0.f ? dA[e] : 0.f;
    }
#if defined(__SSE__)
    _mm_setcsr(csr);
#endif
}
