"""A compiled training step for small batches: forward, backward and Adam in one C call, Adam fused into the
weight-gradient pass.

At batch 6 a training step of the default MLP is bound by memory traffic, not arithmetic: every step reads
all 567,434 weights in the forward pass, and the backward pass plus Adam read and write the weights, their
gradients and both Adam moments (some 20 MB). Torch runs that as ~40 separate kernels, each a full pass over
its operands, and Adam's kernel cannot see the gradient product that fills its input. Here one pass per layer
computes each weight's gradient from the batch (g = s·Σ_b dZ[b,i] A[b,j], n multiply-adds), propagates the
error to the layer below with the same, still old, weight (dA[b,j] += s·dZ[b,i] W[i,j]), and applies Adam to
the weight and its two moments while they are in registers: no gradient buffer, one read and one write of
W, m and v per step.

The mathematics is `ManualBackprop`'s (see mlplab.mnist.backprop: dropout scale s folded into the products,
the 0/1 masks drawn by `mlplab.mnist.dropout` from the run's generator, as for the torch engine) and
torch's Adam (`torch._fused_adam_`: m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g², w ← w − lr/(1−β1ᵗ) ·
m / (√v/√(1−β2ᵗ) + ε), weight decay added to g), in float32 with another summation order: results agree
with the torch engine to rounding, not bit for bit (tests/test_mnist_native.py). The optimizer's own state
tensors (exp_avg, exp_avg_sq, step) are updated in place, so checkpoints and resume are unchanged.

Used by the trainer for batches of at most `MAX_ROWS` rows on a CPU with a C compiler (see `applies`);
MLPLAB_NATIVE=0 switches it off.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import Any

import torch

from mlplab.native.loader import build
from mlplab.mnist.adam import plain_adam, shared_step_counter
from mlplab.mnist.dropout import DropoutStream
from mlplab.mnist.model import MLP

MAX_ROWS = 8  # the kernel is unrolled for 1..8 rows

_HEAD = r"""
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
"""

# Instantiated for NB = 1..8 batch rows (and DA = 0, 1), so every inner loop has a constant trip count and
# its accumulators live in registers.
_FWD = r"""
/* Z[b, i] = alpha * <A[b, :], W[i, :]> + bias[i] for NB rows of A, i < out; in % 8 == 0. Two rows of W a
   pass, so each load of A feeds two multiply-adds. */
static void fwd_NB(const float *R A, int in, const float *R W, const float *R bias, int out, float alpha,
                   float *R Z) {
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
"""

_BWD = r"""
/* One layer's backward pass and Adam, for each output unit i with c[b] = alpha * dZ[b, i]:
   g[i, j] = sum_b c[b] A[b, j];  dA[b, j] += c[b] W_old[i, j] (when DA);  W, m, v <- Adam(W, g). */
static void bwd_NB_DA(const float *R dZ, int out, const float *R A, int in, float alpha, float *R W, float *R mW,
                      float *R vW, float *R dA, adam_t o) {
    for (int i = 0; i < out; i++) {
        float c[NB];
        for (int b = 0; b < NB; b++) c[b] = alpha * dZ[(int64_t)b * out + i];
        float *R w = W + (int64_t)i * in, *R m = mW + (int64_t)i * in, *R v = vW + (int64_t)i * in;
        for (int j = 0; j < in; j += 8) {
            v8f wv = *(v8f *)(w + j), g = V8(0.f);
            for (int b = 0; b < NB; b++) {
                g += V8(c[b]) * *(const v8f *)(A + (int64_t)b * in + j);
                if (DA) *(v8f *)(dA + (int64_t)b * in + j) += V8(c[b]) * wv;
            }
            *(v8f *)(w + j) = adam8(wv, g, m + j, v + j, o);
        }
    }
}
"""

_DISPATCH = r"""
static void fwd(const float *A, int n, int in, const float *W, const float *bias, int out, float alpha, float *Z) {
    switch (n) {
        CASES_FWD
    }
}
static void bwd(const float *dZ, int n, int out, const float *A, int in, float alpha, float *W, float *mW,
                float *vW, float *dA, adam_t o) {
    switch (n) {
        CASES_BWD
    }
}
"""

_STEP = r"""
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
"""


def _source() -> str:
    rows = range(1, 9)
    parts = [_HEAD]
    for nb in rows:
        parts.append(_FWD.replace("NB", str(nb)))
        parts += [_BWD.replace("NB", str(nb)).replace("DA", str(da)) for da in (0, 1)]
    fwd_cases = " ".join(f"case {nb}: fwd_{nb}(A, in, W, bias, out, alpha, Z); break;" for nb in rows)
    bwd_cases = " ".join(f"case {nb}: if (dA) bwd_{nb}_1(dZ, out, A, in, alpha, W, mW, vW, dA, o); "
                         f"else bwd_{nb}_0(dZ, out, A, in, alpha, W, mW, vW, dA, o); break;" for nb in rows)
    parts.append(_DISPATCH.replace("CASES_FWD", fwd_cases).replace("CASES_BWD", bwd_cases))
    parts.append(_STEP)
    return "".join(parts)


C_SOURCE = _source()


def workspace_floats(widths: list[int], n: int) -> int:
    """Floats of scratch `mlp_train_step` needs for n rows: the input, every layer's output, dZ and dA."""
    return n * sum(widths) + 2 * n * max(widths[:-1])


@lru_cache(maxsize=1)
def load() -> Any:
    """The compiled library (None where no compiler, or MLPLAB_NATIVE=0)."""
    lib = build(C_SOURCE, "mlp_train_step", [], libs=("-lm",))
    if lib is None:
        return None
    fn = lib.mlp_train_step
    p, f, d = ctypes.c_void_p, ctypes.c_float, ctypes.c_double
    fn.argtypes = [ctypes.c_int, p, p, p, p, p, p, ctypes.c_int, p, f, d, d, d, d, d, ctypes.c_int, p, p]
    fn.restype = None
    return fn


def applies(model: MLP, optimizer: torch.optim.Optimizer, batch_size: int) -> bool:
    """Whether the compiled step can train this model: CPU, float32, logits output, every layer's input width
    a multiple of 8, plain Adam (one group; no amsgrad/maximize/decoupled decay), at most MAX_ROWS rows."""
    layers = model.linears()
    first = layers[0].weight
    if (batch_size > MAX_ROWS or model.softmax_output or first.device.type != "cpu" or first.dtype != torch.float32
            or any(layer.in_features % 8 for layer in layers) or len(layers) > 16):
        return False
    return plain_adam(optimizer) and load() is not None


class NativeStep:
    """Binds the compiled step to a model, its Adam optimizer (state created here if still empty, exactly as
    torch's first `step()` would) and the training set; `step(perm, start, n, slot)` trains on the rows
    perm[start:start+n] and writes the mean loss to `losses[slot]`."""

    def __init__(self, model: MLP, optimizer: torch.optim.Optimizer, batch_size: int,
                 generator: torch.Generator, X_all: torch.Tensor, y_all: torch.Tensor, flush: bool = True,
                 dropout: DropoutStream | None = None) -> None:
        fn = load()
        assert fn is not None and applies(model, optimizer, batch_size)
        self._fn = fn
        self.p = float(model.dropout_rate)
        layers = model.linears()
        widths = [layers[0].in_features] + [layer.out_features for layer in layers]
        group = optimizer.param_groups[0]
        params = [q for layer in layers for q in (layer.weight, layer.bias)]
        for param in params:
            state = optimizer.state[param]
            if "exp_avg" not in state:  # torch.optim.Adam's own lazy initialisation
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.step_all = shared_step_counter(optimizer, params)  # the C code increments them all
        ptrs: list[int] = []
        for layer in layers:
            w, b = optimizer.state[layer.weight], optimizer.state[layer.bias]
            for t in (layer.weight, layer.bias, w["exp_avg"], w["exp_avg_sq"], b["exp_avg"], b["exp_avg_sq"]):
                assert t.is_contiguous() and t.dtype == torch.float32
                ptrs.append(t.data_ptr())
        self._keep = (params, [optimizer.state[q] for q in params])  # keeps every pointed-to tensor alive
        self._P = (ctypes.c_void_p * len(ptrs))(*ptrs)
        self._widths = (ctypes.c_int * len(widths))(*widths)
        self.L = len(layers)
        # the 0/1 keep flags of dropout; without dropout every unit is kept, once and for all
        self.masks = [torch.empty(batch_size, w) if self.p > 0 else torch.ones(batch_size, w) for w in widths[1:-1]]
        self._K = (ctypes.c_void_p * max(1, len(self.masks)))(*[m.data_ptr() for m in self.masks] or [0])
        self.dropout = dropout if dropout is not None else DropoutStream(generator, self.p)
        self._work = torch.empty(workspace_floats(widths, batch_size))
        self.X_all, self.y_all = X_all.contiguous(), y_all.contiguous()
        assert self.X_all.dtype == torch.float32 and self.y_all.dtype == torch.int64
        self._adam = (float(group["lr"]), float(group["betas"][0]), float(group["betas"][1]), float(group["eps"]),
                      float(group["weight_decay"]))
        self._mask_views: dict[int, list[torch.Tensor]] = {}
        self.flush = int(flush)

    @torch.no_grad()
    def step(self, perm: torch.Tensor, start: int, n: int, losses: torch.Tensor, slot: int) -> None:
        views = self._mask_views.get(n)
        if views is None:
            views = self._mask_views[n] = [m.view(-1)[: n * m.shape[1]] for m in self.masks]
        if self.p > 0:
            for mask in views:
                self.dropout.fill(mask)
        self._fn(self.L, self._widths, self._P, self.step_all.data_ptr(), self.X_all.data_ptr(),
                 self.y_all.data_ptr(), perm.data_ptr() + 8 * start, n, self._K, self.p, *self._adam, self.flush,
                 self._work.data_ptr(), losses.data_ptr() + 4 * slot)
