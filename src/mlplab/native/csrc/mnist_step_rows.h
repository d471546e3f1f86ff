/* The row kernels fwd_<NB> and bwd_<NB> for a constant number NB of batch rows, so that every inner loop has a
   constant trip count and its accumulators live in registers. mnist_step.c includes this file once per
   NB = 1..8. bwd_da_<NB> is always inlined, so each of its two calls, with a constant `da`, is its own loop. */
#ifndef NB
#error "define NB (rows) before including mnist_step_rows.h, as mnist_step.c does"
#endif

/* Z[b, i] = alpha * <A[b, :], W[i, :]> + bias[i] for NB rows of A, i < out; in % 8 == 0. Two rows of W a
   pass, so each load of A feeds two multiply-adds. */
static void PASTE(fwd_, NB)(const float *R A, int in, const float *R W, const float *R bias, int out,
                             float alpha, float *R Z) {
    int i = 0;
    for (; i + 2 <= out; i += 2) {
        v8f acc0[NB], acc1[NB];
        for (int b = 0; b < NB; b++) acc0[b] = acc1[b] = V8(0.f);
        const float *w0 = W + (int64_t)i * in, *w1 = w0 + in;
        for (int j = 0; j < in; j += 8) {
            v8f u0 = *(const v8f *)(w0 + j), u1 = *(const v8f *)(w1 + j);
            for (int b = 0; b < NB; b++) {
                v8f a = *(const v8f *)(A + (int64_t)b * in + j);
                acc0[b] += u0 * a;
                acc1[b] += u1 * a;
            }
        }
        for (int b = 0; b < NB; b++) {
            Z[(int64_t)b * out + i] = alpha * hsum(acc0[b]) + bias[i];
            Z[(int64_t)b * out + i + 1] = alpha * hsum(acc1[b]) + bias[i + 1];
        }
    }
    for (; i < out; i++) {
        v8f acc[NB];
        for (int b = 0; b < NB; b++) acc[b] = V8(0.f);
        const float *w = W + (int64_t)i * in;
        for (int j = 0; j < in; j += 8)
            for (int b = 0; b < NB; b++) acc[b] += *(const v8f *)(w + j) * *(const v8f *)(A + (int64_t)b * in + j);
        for (int b = 0; b < NB; b++) Z[(int64_t)b * out + i] = alpha * hsum(acc[b]) + bias[i];
    }
}

/* One layer's backward pass and Adam, for each output unit i with c[b] = alpha * dZ[b, i]:
   g[i, j] = sum_b c[b] A[b, j];  dA[b, j] += c[b] W_old[i, j] (when da);  W, m, v <- Adam(W, g). */
static inline __attribute__((always_inline)) void PASTE(bwd_da_, NB)(
        const float *R dZ, int out, const float *R A, int in, float alpha, float *R W, float *R mW, float *R vW,
        float *R dA, adam_t o, const int da) {
    for (int i = 0; i < out; i++) {
        float c[NB];
        for (int b = 0; b < NB; b++) c[b] = alpha * dZ[(int64_t)b * out + i];
        float *R w = W + (int64_t)i * in, *R m = mW + (int64_t)i * in, *R v = vW + (int64_t)i * in;
        for (int j = 0; j < in; j += 8) {
            v8f wv = *(v8f *)(w + j), g = V8(0.f);
            for (int b = 0; b < NB; b++) {
                g += V8(c[b]) * *(const v8f *)(A + (int64_t)b * in + j);
                if (da) *(v8f *)(dA + (int64_t)b * in + j) += V8(c[b]) * wv;
            }
            *(v8f *)(w + j) = adam8(wv, g, m + j, v + j, o);
        }
    }
}

/* bwd_<NB>: with the error passed down to the layer below where there is one (dA given), else without */
static void PASTE(bwd_, NB)(const float *R dZ, int out, const float *R A, int in, float alpha, float *R W,
                            float *R mW, float *R vW, float *R dA, adam_t o) {
    if (dA)
        PASTE(bwd_da_, NB)(dZ, out, A, in, alpha, W, mW, vW, dA, o, 1);
    else
        PASTE(bwd_da_, NB)(dZ, out, A, in, alpha, W, mW, vW, dA, o, 0);
}
