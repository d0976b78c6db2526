//! Embedding lookup: forward gathers rows, backward scatter-adds into the table gradient.

use kernels::Real;

/// `out[n, :] = table[tokens[n], :]`; table is (V, E), out is (N, E).
pub fn embedding_forward<F: Real>(table: &[F], e: usize, tokens: &[u32], out: &mut [F]) {
    assert_eq!(out.len(), tokens.len() * e);
    for (row, &tok) in out.chunks_exact_mut(e).zip(tokens) {
        let t = tok as usize * e;
        row.copy_from_slice(&table[t..t + e]);
    }
}

/// `dtable[tokens[n], :] += dout[n, :]`.
pub fn embedding_backward<F: Real>(dout: &[F], e: usize, tokens: &[u32], dtable: &mut [F]) {
    assert_eq!(dout.len(), tokens.len() * e);
    for (row, &tok) in dout.chunks_exact(e).zip(tokens) {
        let t = tok as usize * e;
        for (d, &g) in dtable[t..t + e].iter_mut().zip(row) {
            *d += g;
        }
    }
}
