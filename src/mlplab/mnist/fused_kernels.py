"""The Triton kernels of `fused_step.FusedStep`: one training step of the MLP in 2L + L - 1 kernels for L layers
(eleven for the default 784-512-256-128-10 network) instead of about forty torch kernels.

On a GPU Triton compiles them; with TRITON_INTERPRET=1 in the environment when this module is imported, Triton's
interpreter runs them on CPU tensors, which is how the tests check them against the eager step. Every product
runs in full float32 (`input_precision="ieee"`: no TF32), divisions and square roots are rounded as IEEE asks
(`div_rn`, `sqrt_rn`: Triton's `/` and `sqrt` are faster approximations on a GPU), and every block size is a
power of two and at least 16 (what `tl.dot` asks).

Notation as in `backprop.py`: rows r of the batch (n of them), A'_k the masked activations relu(Z_k)⊙m_k, the
dropout scale s = 1/(1-p) passed as `alpha` to the products that read A'_k.
"""
# mypy: ignore-errors
# ruff: noqa: SIM102, SIM108
# (tl.constexpr in the annotations is how Triton marks compile-time arguments, which mypy reads as a variable;
# an `if` on a compile-time flag is kept apart from one on a run-time value, as Triton compiles them differently)

import triton
import triton.language as tl


@triton.jit
def forward_kernel(src, perm, step_ptr, x_out, w, bias, out, masks,
                   n, batch, K, N, mask_offset, H, alpha,
                   GATHER: tl.constexpr, DROPOUT: tl.constexpr,
                   BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """out = max((alpha·A Wᵀ + b) ⊙ m, 0) for a hidden layer: A (n, K), W (N, K), out (n, N).

    GATHER (the first layer): A's rows are src[perm[step·batch + r]], read straight from the resident data, and
    the programs of the first column block also write them to x_out for the weight gradient. DROPOUT: m is the
    0/1 block of the epoch's flags at step·batch·H + mask_offset, row-major (n, N)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    step = tl.load(step_ptr)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    row_ok = rm < n
    col_ok = rn < N
    if GATHER:
        rows = tl.load(perm + step * batch + rm, mask=row_ok, other=0)
    else:
        rows = rm.to(tl.int64)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        kk = k0 + rk
        a_ok = row_ok[:, None] & (kk[None, :] < K)
        a = tl.load(src + rows[:, None] * K + kk[None, :], mask=a_ok, other=0.0)
        if GATHER:
            if pid_n == 0:
                tl.store(x_out + rm[:, None] * K + kk[None, :], a, mask=a_ok)
        wt = tl.load(w + rn[None, :] * K + kk[:, None], mask=col_ok[None, :] & (kk[:, None] < K), other=0.0)
        acc += tl.dot(a, wt, input_precision="ieee")
    z = acc * alpha + tl.load(bias + rn, mask=col_ok, other=0.0)[None, :]
    ok = row_ok[:, None] & col_ok[None, :]
    if DROPOUT:
        z = z * tl.load(masks + step * batch * H + mask_offset + rm[:, None] * N + rn[None, :], mask=ok, other=0.0)
    tl.store(out + rm[:, None] * N + rn[None, :], tl.maximum(z, 0.0), mask=ok)


@triton.jit
def loss_kernel(a_in, w, bias, dz, labels, perm, step_ptr, losses, dead, skip, steps, powers, scalars,
                n, batch, K, C, n_steps, alpha, inv_n, threshold,
                SOFTMAX_OUT: tl.constexpr, ADVANCE: tl.constexpr,
                BM: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BT: tl.constexpr):
    """One program: the output layer z = alpha·A Wᵀ + b, the mean cross-entropy, dz = ∂loss/∂z into `dz`, and the
    step's bookkeeping (see `bookkeeping`)."""
    step = tl.load(step_ptr)
    rc = tl.arange(0, BC)
    rk = tl.arange(0, BK)
    c_ok = rc < C
    b = tl.load(bias + rc, mask=c_ok, other=0.0)
    total = tl.zeros((BM,), dtype=tl.float32)
    for r0 in range(0, n, BM):
        rm = r0 + tl.arange(0, BM)
        row_ok = rm < n
        acc = tl.zeros((BM, BC), dtype=tl.float32)
        for k0 in range(0, K, BK):
            kk = k0 + rk
            a = tl.load(a_in + rm[:, None] * K + kk[None, :], mask=row_ok[:, None] & (kk[None, :] < K), other=0.0)
            wt = tl.load(w + rc[None, :] * K + kk[:, None], mask=c_ok[None, :] & (kk[:, None] < K), other=0.0)
            acc += tl.dot(a, wt, input_precision="ieee")
        z = acc * alpha + b[None, :]
        if SOFTMAX_OUT:  # the model outputs probabilities, and the loss treats them as logits
            e = tl.where(c_ok[None, :], tl.exp(z - tl.max(tl.where(c_ok[None, :], z, -1e30), 1)[:, None]), 0.0)
            probs = tl.div_rn(e, tl.sum(e, 1)[:, None])
            z = probs
        shifted = z - tl.max(tl.where(c_ok[None, :], z, -1e30), 1)[:, None]
        ex = tl.where(c_ok[None, :], tl.exp(shifted), 0.0)
        sum_ex = tl.sum(ex, 1)
        label = tl.load(labels + tl.load(perm + step * batch + rm, mask=row_ok, other=0), mask=row_ok, other=0)
        hit = rc[None, :] == label[:, None]
        logp = shifted - tl.log(sum_ex)[:, None]
        total += tl.where(row_ok, -tl.sum(tl.where(hit, logp, 0.0), 1), 0.0)
        g = (tl.div_rn(ex, sum_ex[:, None]) - tl.where(hit, 1.0, 0.0)) * inv_n
        if SOFTMAX_OUT:  # back through the softmax: s ⊙ (g − Σ_j g_j s_j)
            g = probs * (g - tl.sum(g * probs, 1)[:, None])
        tl.store(dz + rm[:, None] * C + rc[None, :], g, mask=row_ok[:, None] & c_ok[None, :])
    loss = tl.sum(total, 0) * inv_n
    tl.store(losses + step, loss)
    bookkeeping(loss, dead, skip, steps, powers, scalars, n_steps, threshold, BT)
    if ADVANCE:
        tl.store(step_ptr, step + 1)


@triton.jit
def bookkeeping(loss, dead, skip, steps, powers, scalars, n_steps, threshold, BT: tl.constexpr):
    """After the loss: skip = dead (this step's Adam is skipped if an earlier loss diverged), dead |= the loss is
    NaN or over `threshold`; Adam's step counters t += 1 - skip; powers (float64: β1^t, β2^t, β1, β2, lr) advance
    with t; scalars = (lr / (1 - β1^t), sqrt(1 - β2^t)) for the Adam kernels of this step."""
    was_dead = tl.load(dead)
    tl.store(skip, was_dead)
    tl.store(dead, tl.where(loss <= threshold, was_dead, 1.0))  # NaN fails `<=`
    live = was_dead == 0.0
    rt = tl.arange(0, BT)
    t_ok = rt < n_steps
    tl.store(steps + rt, tl.load(steps + rt, mask=t_ok, other=0.0) + tl.where(live, 1.0, 0.0), mask=t_ok)
    p1 = tl.load(powers)
    p2 = tl.load(powers + 1)
    p1 = tl.where(live, p1 * tl.load(powers + 2), p1)
    p2 = tl.where(live, p2 * tl.load(powers + 3), p2)
    tl.store(powers, p1)
    tl.store(powers + 1, p2)
    bc1 = 1.0 - p1
    bc1 = tl.where(bc1 > 0.0, bc1, 1.0)  # t = 0 only before the first update, when Adam is skipped anyway
    tl.store(scalars, (tl.load(powers + 4) / bc1).to(tl.float32))
    tl.store(scalars + 1, tl.sqrt_rn((1.0 - p2).to(tl.float32)))


@triton.jit
def backward_kernel(dz, w, a_prev, dz_prev, n, O, I, alpha,
                    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """dz_prev = (alpha·dz W) ⊙ [a_prev > 0]: dz (n, O), W (O, I), a_prev and dz_prev (n, I)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BM + tl.arange(0, BM)
    rj = pid_n * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    row_ok = rm < n
    col_ok = rj < I
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for o0 in range(0, O, BK):
        oo = o0 + rk
        g = tl.load(dz + rm[:, None] * O + oo[None, :], mask=row_ok[:, None] & (oo[None, :] < O), other=0.0)
        wb = tl.load(w + oo[:, None] * I + rj[None, :], mask=(oo[:, None] < O) & col_ok[None, :], other=0.0)
        acc += tl.dot(g, wb, input_precision="ieee")
    ok = row_ok[:, None] & col_ok[None, :]
    a = tl.load(a_prev + rm[:, None] * I + rj[None, :], mask=ok, other=0.0)
    tl.store(dz_prev + rm[:, None] * I + rj[None, :], tl.where(a > 0.0, acc * alpha, 0.0), mask=ok)


@triton.jit
def adam_kernel(dz, a_in, w, bias, m_w, v_w, m_b, v_b, skip, scalars,
                n, O, I, alpha, beta1, beta2, eps, weight_decay,
                DECAY: tl.constexpr, BO: tl.constexpr, BI: tl.constexpr, BR: tl.constexpr):
    """The weight gradient alpha·dzᵀ A of a (BO, BI) tile, never written out, and Adam's update of that tile
    (torch's formula: m ← β1 m + (1-β1) g, v ← β2 v + (1-β2) g², p ← p − lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t)
    + eps)). The programs of the first column block also update the bias with db = Σ_r dz. Nothing is written
    when `skip` is 1."""
    pid_o = tl.program_id(0)
    pid_i = tl.program_id(1)
    ro = pid_o * BO + tl.arange(0, BO)
    ri = pid_i * BI + tl.arange(0, BI)
    rr = tl.arange(0, BR)
    o_ok = ro < O
    i_ok = ri < I
    g = tl.zeros((BO, BI), dtype=tl.float32)
    gb = tl.zeros((BO,), dtype=tl.float32)
    for r0 in range(0, n, BR):
        r = r0 + rr
        dzt = tl.load(dz + r[None, :] * O + ro[:, None], mask=(r[None, :] < n) & o_ok[:, None], other=0.0)
        a = tl.load(a_in + r[:, None] * I + ri[None, :], mask=(r[:, None] < n) & i_ok[None, :], other=0.0)
        g += tl.dot(dzt, a, input_precision="ieee")
        gb += tl.sum(dzt, 1)
    g = g * alpha
    write = tl.load(skip + 0 * ro) == 0.0  # (BO,): the flag for every row of the tile
    step_size = tl.load(scalars)
    bc2_sqrt = tl.load(scalars + 1)
    ok = o_ok[:, None] & i_ok[None, :] & write[:, None]
    adam_update(w, m_w, v_w, ro[:, None] * I + ri[None, :], ok, g, beta1, beta2, eps, weight_decay, step_size,
                bc2_sqrt, DECAY)
    adam_update(bias, m_b, v_b, ro, o_ok & write & ((0 * ro + pid_i) == 0), gb, beta1, beta2, eps, weight_decay,
                step_size, bc2_sqrt, DECAY)


@triton.jit
def adam_update(p_ptr, m_ptr, v_ptr, at, ok, g, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt,
                DECAY: tl.constexpr):
    """Adam's update, torch's formula, of the entries at offsets `at` (where `ok`) with gradient g."""
    p = tl.load(p_ptr + at, mask=ok, other=0.0)
    if DECAY:
        g = g + weight_decay * p
    m = beta1 * tl.load(m_ptr + at, mask=ok, other=0.0) + (1.0 - beta1) * g
    v = beta2 * tl.load(v_ptr + at, mask=ok, other=0.0) + (1.0 - beta2) * g * g
    tl.store(m_ptr + at, m, mask=ok)
    tl.store(v_ptr + at, v, mask=ok)
    tl.store(p_ptr + at, p - tl.div_rn(step_size * m, tl.div_rn(tl.sqrt_rn(v), bc2_sqrt) + eps), mask=ok)
