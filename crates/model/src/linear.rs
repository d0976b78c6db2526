//! Fully connected layer `y = x W^T + b` with W stored (out, in) as in PyTorch's nn.Linear.

use kernels::reduce::add_column_sums;
use kernels::{matmul, Real, Trans};

/// x: (N, I), w: (O, I), b: (O) → y: (N, O).
pub fn linear_forward<F: Real>(
    x: &[F],
    w: &[F],
    b: &[F],
    n: usize,
    i: usize,
    o: usize,
    y: &mut [F],
) {
    for row in y[..n * o].chunks_exact_mut(o) {
        row.copy_from_slice(b);
    }
    matmul(n, o, i, F::ONE, x, Trans::N, w, Trans::T, F::ONE, y);
}

/// Accumulates dw += dy^T x and db += colsum(dy); writes dx = dy w when `dx` is given.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<F: Real>(
    x: &[F],
    w: &[F],
    dy: &[F],
    n: usize,
    i: usize,
    o: usize,
    dw: &mut [F],
    db: &mut [F],
    dx: Option<&mut [F]>,
) {
    matmul(o, i, n, F::ONE, dy, Trans::T, x, Trans::N, F::ONE, dw);
    add_column_sums(&dy[..n * o], o, db);
    if let Some(dx) = dx {
        matmul(n, i, o, F::ONE, dy, Trans::N, w, Trans::N, F::ZERO, dx);
    }
}
