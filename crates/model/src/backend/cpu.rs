//! The CPU backend: the engine's own kernels over `Vec<F>` buffers (see `backend.rs`). Each
//! operation slices its buffers and calls the layer function it names; nothing is copied that the
//! code before the seam did not copy.

use super::{Backend, DeviceError, HlstmAt, LstmAt, Operand, Update, XentTargets};
use crate::dropout::{dropout_backward, dropout_forward, dropout_mask, DropoutCtx};
use crate::embedding::{embedding_backward, embedding_forward};
use crate::hlstm::{
    hlstm_backward, hlstm_forward, HlstmGrads, HlstmShape, HlstmTape, HlstmWeights,
};
use crate::lstm::{lstm_backward, lstm_forward, LstmGrads, LstmShape, LstmTape, LstmWeights};
use kernels::gemm::matmul_ld;
use kernels::softmax::{softmax_xent_biased, XentGrad};
use kernels::support::Support;
use kernels::{Real, Trans};
use rayon::prelude::*;
use std::ops::Range;

/// This machine's CPUs, at the ISA level `kernels::isa` picked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu;

/// Parallel chunk of the optimizer passes (as before the seam, so the updates are identical).
const CHUNK: usize = 1 << 15;

/// Disjoint mutable slices of `buf` at `ranges`, which must be ascending and non-overlapping
/// (a layer's tensors are, in the layout).
fn split_ranges_mut<'a, F, const N: usize>(
    buf: &'a mut [F],
    ranges: [&Range<usize>; N],
) -> [&'a mut [F]; N] {
    let mut rest = buf;
    let mut consumed = 0;
    let mut out: [Option<&'a mut [F]>; N] = std::array::from_fn(|_| None);
    for (slot, r) in out.iter_mut().zip(ranges) {
        assert!(r.start >= consumed, "split_ranges_mut: ranges out of order");
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - consumed);
        let (head, tail) = tail.split_at_mut(r.len());
        *slot = Some(head);
        rest = tail;
        consumed = r.end;
    }
    out.map(|s| s.expect("every range was split"))
}

impl<F: Real> Backend<F> for Cpu {
    type Buf = Vec<F>;
    type Ids = Vec<u32>;
    type LstmTape = LstmTape<F>;
    type HlstmTape = HlstmTape<F>;

    fn describe(&self) -> String {
        format!("cpu ({})", kernels::isa::active().name())
    }

    fn zeros(&self, n: usize) -> Result<Vec<F>, DeviceError> {
        Ok(vec![F::ZERO; n])
    }
    fn upload(&self, host: &[F]) -> Result<Vec<F>, DeviceError> {
        Ok(host.to_vec())
    }
    fn adopt(&self, host: Vec<F>) -> Result<Vec<F>, DeviceError> {
        Ok(host)
    }
    fn release(&self, buf: Vec<F>) -> Result<Vec<F>, DeviceError> {
        Ok(buf)
    }
    fn download(&self, buf: &Vec<F>, out: &mut [F]) -> Result<(), DeviceError> {
        out.copy_from_slice(buf);
        Ok(())
    }
    fn len(&self, buf: &Vec<F>) -> usize {
        buf.len()
    }
    fn upload_ids(&self, ids: &[u32]) -> Result<Vec<u32>, DeviceError> {
        Ok(ids.to_vec())
    }
    fn copy(
        &self,
        src: &Vec<F>,
        src_at: usize,
        dst: &mut Vec<F>,
        dst_at: usize,
        n: usize,
    ) -> Result<(), DeviceError> {
        dst[dst_at..dst_at + n].copy_from_slice(&src[src_at..src_at + n]);
        Ok(())
    }
    fn fill_on(&self, buf: &mut Vec<F>, support: &Support, v: F) -> Result<(), DeviceError> {
        support.fill(buf, v);
        Ok(())
    }

    fn embedding_forward(
        &self,
        params: &Vec<F>,
        table: Range<usize>,
        e: usize,
        tokens: &Vec<u32>,
        out: &mut Vec<F>,
    ) -> Result<(), DeviceError> {
        embedding_forward(&params[table], e, tokens, &mut out[..tokens.len() * e]);
        Ok(())
    }
    fn embedding_backward(
        &self,
        dout: &Vec<F>,
        e: usize,
        tokens: &Vec<u32>,
        grads: &mut Vec<F>,
        table: Range<usize>,
    ) -> Result<(), DeviceError> {
        embedding_backward(&dout[..tokens.len() * e], e, tokens, &mut grads[table]);
        Ok(())
    }
    fn dropout_forward(
        &self,
        ctx: &DropoutCtx,
        site: u64,
        x: &Vec<F>,
        x_at: usize,
        mask: &mut Vec<F>,
        out: &mut Vec<F>,
    ) -> Result<(), DeviceError> {
        let n = out.len();
        dropout_forward(ctx, site, &x[x_at..x_at + n], &mut mask[..n], out);
        Ok(())
    }
    fn dropout_mask(
        &self,
        ctx: &DropoutCtx,
        site: u64,
        mask: &mut Vec<F>,
    ) -> Result<(), DeviceError> {
        dropout_mask(ctx, site, mask);
        Ok(())
    }
    fn multiply(&self, d: &mut Vec<F>, mask: &Vec<F>, n: usize) -> Result<(), DeviceError> {
        dropout_backward(&mask[..n], &mut d[..n]);
        Ok(())
    }
    fn add_into(
        &self,
        dst: &mut Vec<F>,
        range: Range<usize>,
        src: &Vec<F>,
    ) -> Result<(), DeviceError> {
        let n = range.len();
        dst[range]
            .iter_mut()
            .zip(&src[..n])
            .for_each(|(d, &g)| *d += g);
        Ok(())
    }

    fn lstm_tape(&self, s: LstmShape) -> Result<LstmTape<F>, DeviceError> {
        Ok(LstmTape::new(s))
    }
    fn lstm_forward(
        &self,
        s: LstmShape,
        params: &Vec<F>,
        at: &LstmAt,
        x: &Vec<F>,
        h0: &Vec<F>,
        c0: &Vec<F>,
        tape: &mut LstmTape<F>,
    ) -> Result<(), DeviceError> {
        lstm_forward(s, lstm_weights(params, at), x, h0, c0, tape);
        Ok(())
    }
    fn lstm_output<'a>(&self, tape: &'a LstmTape<F>, s: LstmShape) -> (&'a Vec<F>, usize) {
        (&tape.hs, s.b * s.h)
    }
    fn lstm_final_state(
        &self,
        tape: &LstmTape<F>,
        s: LstmShape,
        h: &mut Vec<F>,
        c: &mut Vec<F>,
    ) -> Result<(), DeviceError> {
        let (h_t, c_t) = tape.final_state(s);
        h.copy_from_slice(h_t);
        c.copy_from_slice(c_t);
        Ok(())
    }
    fn lstm_backward(
        &self,
        s: LstmShape,
        params: &Vec<F>,
        at: &LstmAt,
        x: &Vec<F>,
        dh: &Vec<F>,
        tape: &mut LstmTape<F>,
        grads: &mut Vec<F>,
        dx: Option<&mut Vec<F>>,
    ) -> Result<(), DeviceError> {
        let [dw_ih, dw_hh, db_ih, db_hh] =
            split_ranges_mut(grads, [&at.w_ih, &at.w_hh, &at.b_ih, &at.b_hh]);
        let tb = s.t * s.b;
        lstm_backward(
            s,
            lstm_weights(params, at),
            x,
            &dh[..tb * s.h],
            tape,
            LstmGrads {
                dw_ih,
                dw_hh,
                db_ih,
                db_hh,
            },
            dx.map(|d| &mut d[..tb * s.i]),
        );
        Ok(())
    }

    fn hlstm_tape(&self, s: HlstmShape) -> Result<HlstmTape<F>, DeviceError> {
        HlstmTape::new(s).map_err(|e| DeviceError(e.to_string()))
    }
    fn hlstm_forward(
        &self,
        s: HlstmShape,
        params: &Vec<F>,
        at: &HlstmAt,
        x: &Vec<F>,
        mask: Option<&Vec<F>>,
        h0: &Vec<F>,
        c0: &Vec<F>,
        tape: &mut HlstmTape<F>,
    ) -> Result<(), DeviceError> {
        let mask = mask.map(|m| &m[..]);
        hlstm_forward(s, hlstm_weights(params, at), x, mask, h0, c0, tape);
        Ok(())
    }
    fn hlstm_output<'a>(&self, tape: &'a HlstmTape<F>, s: HlstmShape) -> (&'a Vec<F>, usize) {
        (&tape.hs, s.b * s.h)
    }
    fn hlstm_final_state(
        &self,
        tape: &HlstmTape<F>,
        _s: HlstmShape,
        h: &mut Vec<F>,
        c: &mut Vec<F>,
    ) -> Result<(), DeviceError> {
        let (h_t, c_t) = tape.final_state();
        h.copy_from_slice(h_t);
        c.copy_from_slice(c_t);
        Ok(())
    }
    fn hlstm_backward(
        &self,
        s: HlstmShape,
        params: &Vec<F>,
        at: &HlstmAt,
        x: &Vec<F>,
        dh: &Vec<F>,
        tape: &mut HlstmTape<F>,
        grads: &mut Vec<F>,
        dx: Option<&mut Vec<F>>,
    ) -> Result<(), DeviceError> {
        let [dw_ih1, dw_hh1, db1, dw2, db2] =
            split_ranges_mut(grads, [&at.w_ih1, &at.w_hh1, &at.b1, &at.w2, &at.b2]);
        let tb = s.t * s.b;
        hlstm_backward(
            s,
            hlstm_weights(params, at),
            x,
            &dh[..tb * s.h],
            tape,
            HlstmGrads {
                dw_ih1,
                dw_hh1,
                db1,
                dw2,
                db2,
            },
            dx.map(|d| &mut d[..tb * s.i]),
        );
        Ok(())
    }

    fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        alpha: F,
        a: Operand<'_, Vec<F>>,
        b: Operand<'_, Vec<F>>,
        beta: F,
        c: &mut Vec<F>,
        c_at: usize,
    ) -> Result<(), DeviceError> {
        let (a_len, b_len) = (m * k, k * n);
        let lda = if a.trans == Trans::N { k } else { m };
        let ldb = if b.trans == Trans::N { n } else { k };
        matmul_ld(
            m,
            n,
            k,
            alpha,
            &a.buf[a.at..a.at + a_len],
            lda,
            a.trans,
            &b.buf[b.at..b.at + b_len],
            ldb,
            b.trans,
            beta,
            &mut c[c_at..c_at + m * n],
            n,
        );
        Ok(())
    }

    fn softmax_xent(
        &self,
        logits: &mut Vec<F>,
        v: usize,
        targets: &Vec<u32>,
        params: &Vec<F>,
        bias: Range<usize>,
        train: Option<XentTargets<'_, Vec<F>>>,
        row_loss: &mut [f64],
    ) -> Result<(), DeviceError> {
        let n = targets.len();
        let grad = train.map(|t| {
            t.dbias.fill(F::ZERO);
            XentGrad {
                scale: F::from_f64(t.scale as f64),
                dbias: Some(&mut t.dbias[..]),
                transposed: Some(&mut t.transposed[..n * v]),
            }
        });
        softmax_xent_biased(
            &mut logits[..n * v],
            v,
            targets,
            Some(&params[bias]),
            grad,
            row_loss,
        );
        Ok(())
    }

    fn sum_squares_on(&self, x: &Vec<F>, support: &Support) -> Result<f64, DeviceError> {
        Ok(support.sum_squares(x))
    }

    fn update(
        &self,
        params: &mut Vec<F>,
        grads: &Vec<F>,
        state: [Option<&mut Vec<F>>; 2],
        update: Update,
        support: &Support,
    ) -> Result<(), DeviceError> {
        assert_eq!(params.len(), grads.len(), "update: params and grads differ");
        let f = |x: f32| F::from_f64(x as f64);
        match (update, state) {
            // A zero gradient leaves the parameter as it is: visit only the support (the same
            // arithmetic as the dense pass, so the results are identical).
            (Update::Sgd { lr, gs, wd }, _) if wd == 0.0 => {
                let (lr, gs, wd) = (f(lr), f(gs), f(wd));
                support.par_zip_mut(params, grads, |p, g| sgd(p, g, lr, gs, wd));
            }
            (Update::Sgd { lr, gs, wd }, _) => {
                let (lr, gs, wd) = (f(lr), f(gs), f(wd));
                params
                    .par_chunks_mut(CHUNK)
                    .zip(grads.par_chunks(CHUNK))
                    .for_each(|(p, g)| sgd(p, g, lr, gs, wd));
            }
            (Update::Momentum { lr, gs, wd, mu }, [Some(m), _]) => {
                let (lr, gs, wd, mu) = (f(lr), f(gs), f(wd), f(mu));
                params
                    .par_chunks_mut(CHUNK)
                    .zip(grads.par_chunks(CHUNK))
                    .zip(m.par_chunks_mut(CHUNK))
                    .for_each(|((p, g), m)| {
                        for ((p, &g), m) in p.iter_mut().zip(g).zip(m) {
                            let g = gs * g + wd * *p;
                            *m = mu * *m + g;
                            *p -= lr * *m;
                        }
                    });
            }
            (a @ Update::Adam { .. }, [Some(m), Some(v)]) => adam(params, grads, m, v, a),
            (u, _) => {
                return Err(DeviceError(format!(
                    "update {u:?} was given the wrong optimizer state buffers"
                )))
            }
        }
        Ok(())
    }
}

/// Plain SGD with L2 weight decay over one piece: `p -= lr · (gs · g + wd · p)`.
#[inline(always)]
fn sgd<F: Real>(p: &mut [F], g: &[F], lr: F, gs: F, wd: F) {
    for (p, &g) in p.iter_mut().zip(g) {
        *p -= lr * (gs * g + wd * *p);
    }
}

fn adam<F: Real>(params: &mut [F], grads: &[F], m: &mut [F], v: &mut [F], u: Update) {
    let Update::Adam {
        gs,
        wd,
        lr,
        decoupled,
        b1,
        b2,
        eps,
        step_size,
        inv_sqrt_bc2,
    } = u
    else {
        unreachable!("adam is called with Update::Adam")
    };
    let f = |x: f32| F::from_f64(x as f64);
    let (gs, wd, lr, b1, b2, eps) = (f(gs), f(wd), f(lr), f(b1), f(b2), f(eps));
    let (step_size, inv_sqrt_bc2) = (f(step_size), f(inv_sqrt_bc2));
    params
        .par_chunks_mut(CHUNK)
        .zip(grads.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                let g = gs * g;
                let g = if decoupled { g } else { g + wd * *p };
                if decoupled {
                    *p -= lr * wd * *p;
                }
                *m = b1 * *m + (F::ONE - b1) * g;
                *v = b2 * *v + (F::ONE - b2) * g * g;
                *p -= step_size * *m / (v.sqrt() * inv_sqrt_bc2 + eps);
            }
        });
}

fn lstm_weights<'a, F>(params: &'a [F], at: &LstmAt) -> LstmWeights<'a, F> {
    LstmWeights {
        w_ih: &params[at.w_ih.clone()],
        w_hh: &params[at.w_hh.clone()],
        b_ih: &params[at.b_ih.clone()],
        b_hh: &params[at.b_hh.clone()],
    }
}

fn hlstm_weights<'a, F>(params: &'a [F], at: &HlstmAt) -> HlstmWeights<'a, F> {
    HlstmWeights {
        w_ih1: &params[at.w_ih1.clone()],
        w_hh1: &params[at.w_hh1.clone()],
        b1: &params[at.b1.clone()],
        w2: &params[at.w2.clone()],
        b2: &params[at.b2.clone()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_ranges_mut_gives_the_ranges_asked_for() {
        let mut v: Vec<u32> = (0..10).collect();
        let [a, b] = split_ranges_mut(&mut v, [&(1..3), &(6..9)]);
        assert_eq!(a, &[1, 2]);
        assert_eq!(b, &[6, 7, 8]);
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn split_ranges_mut_refuses_overlap() {
        let mut v = vec![0u8; 10];
        let _ = split_ranges_mut(&mut v, [&(2..5), &(4..6)]);
    }
}
