//! `Backend<f32>` for [`Cuda`]: memory, the layers' element-wise passes, GEMM, the fused softmax
//! cross-entropy and the optimizer updates, each checking the ranges it touches and then queueing
//! cuBLAS or a kernel of `kernels.cu`; the LSTM and H-LSTM layers are in `lstm.rs` / `hlstm.rs`.

use super::{
    fits, hlstm, l, lstm, rng_key, Arg, Cuda, CudaHlstmTape, CudaLstmTape, SUM_BLOCKS, THREADS,
};
use crate::backend::{Backend, DeviceError, HlstmAt, LstmAt, Operand, Update, XentTargets};
use crate::dropout::DropoutCtx;
use crate::hlstm::HlstmShape;
use crate::lstm::LstmShape;
use cudarc::driver::{CudaSlice, LaunchConfig};
use kernels::support::Support;
use std::ops::Range;

impl Backend<f32> for Cuda {
    type Buf = CudaSlice<f32>;
    type Ids = CudaSlice<u32>;
    type LstmTape = CudaLstmTape;
    type HlstmTape = CudaHlstmTape;

    fn describe(&self) -> String {
        format!("cuda:{} ({})", self.ordinal, self.name)
    }

    fn zeros(&self, n: usize) -> Result<CudaSlice<f32>, DeviceError> {
        self.alloc(n)
    }
    fn upload(&self, host: &[f32]) -> Result<CudaSlice<f32>, DeviceError> {
        self.to_device(host)
    }
    fn release(&self, buf: CudaSlice<f32>) -> Result<Vec<f32>, DeviceError> {
        let mut out = vec![0.0; buf.len()];
        self.to_host(&buf, &mut out)?;
        Ok(out)
    }
    fn download(&self, buf: &CudaSlice<f32>, out: &mut [f32]) -> Result<(), DeviceError> {
        self.to_host(buf, out)
    }
    fn len(&self, buf: &CudaSlice<f32>) -> usize {
        buf.len()
    }
    fn upload_ids(&self, ids: &[u32]) -> Result<CudaSlice<u32>, DeviceError> {
        self.to_device(ids)
    }
    fn copy(
        &self,
        src: &CudaSlice<f32>,
        src_at: usize,
        dst: &mut CudaSlice<f32>,
        dst_at: usize,
        n: usize,
    ) -> Result<(), DeviceError> {
        fits(src.len(), src_at, n, "copy (source)")?;
        fits(dst.len(), dst_at, n, "copy (destination)")?;
        self.copy_ptr(self.ptr(src, src_at), self.ptr(dst, dst_at), n, "copy")
    }
    fn fill_on(
        &self,
        buf: &mut CudaSlice<f32>,
        support: &Support,
        v: f32,
    ) -> Result<(), DeviceError> {
        if support.buffer_len() != buf.len() {
            return Err(DeviceError(format!(
                "cuda: fill: support of {} values for a buffer of {}",
                support.buffer_len(),
                buf.len()
            )));
        }
        let ranges = support.ranges();
        if let [only] = ranges {
            return self.fill_ptr(self.ptr(buf, only.start), only.len(), v);
        }
        // Many ranges: one launch, blockIdx.y picking the range (at most 65,535 per launch).
        for chunk in ranges.chunks(65_535) {
            let pairs: Vec<i64> = chunk
                .iter()
                .flat_map(|r| [r.start as i64, r.end as i64])
                .collect();
            let longest = chunk.iter().map(|r| r.len()).max().unwrap_or(0);
            let dev = self.to_device(&pairs)?;
            let cfg = LaunchConfig {
                grid_dim: (
                    longest.div_ceil(THREADS as usize).clamp(1, 1024) as u32,
                    chunk.len() as u32,
                    1,
                ),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // fill_ranges(float* x, const long long* ranges, float v)
            let args = [
                Arg::P(self.ptr(buf, 0)),
                Arg::P(self.ptr(&dev, 0)),
                Arg::F(v),
            ];
            self.launch(&self.k.fill_ranges, cfg, &args, "fill on a support")?;
        }
        Ok(())
    }

    fn embedding_forward(
        &self,
        params: &CudaSlice<f32>,
        table: Range<usize>,
        e: usize,
        tokens: &CudaSlice<u32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<(), DeviceError> {
        let n = tokens.len();
        fits(params.len(), table.start, table.len(), "embedding table")?;
        fits(out.len(), 0, n * e, "embedding output")?;
        // Token ids are checked against the vocabulary when data is loaded (as on the CPU,
        // where an id past the table is a panic); the table's range bounds every read.
        // embedding_fwd(const float* table, const unsigned* tokens, long long n, long long e,
        //               float* out)
        let args = [
            Arg::P(self.ptr(params, table.start)),
            Arg::P(self.ptr(tokens, 0)),
            l(n),
            l(e),
            Arg::P(self.ptr(out, 0)),
        ];
        self.launch_n(&self.k.embedding_fwd, n * e, &args, "embedding forward")
    }
    fn embedding_backward(
        &self,
        dout: &CudaSlice<f32>,
        e: usize,
        tokens: &CudaSlice<u32>,
        grads: &mut CudaSlice<f32>,
        table: Range<usize>,
    ) -> Result<(), DeviceError> {
        let n = tokens.len();
        fits(dout.len(), 0, n * e, "embedding gradient")?;
        fits(
            grads.len(),
            table.start,
            table.len(),
            "embedding table gradient",
        )?;
        // embedding_bwd(const float* dout, const unsigned* tokens, long long n, long long e,
        //               float* dtable)
        let args = [
            Arg::P(self.ptr(dout, 0)),
            Arg::P(self.ptr(tokens, 0)),
            l(n),
            l(e),
            Arg::P(self.ptr(grads, table.start)),
        ];
        self.launch_n(&self.k.embedding_bwd, n * e, &args, "embedding backward")
    }
    fn dropout_forward(
        &self,
        ctx: &DropoutCtx,
        site: u64,
        x: &CudaSlice<f32>,
        x_at: usize,
        mask: &mut CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<(), DeviceError> {
        let n = out.len();
        fits(x.len(), x_at, n, "dropout input")?;
        fits(mask.len(), 0, n, "dropout mask")?;
        let (x, m, o) = (self.ptr(x, x_at), self.ptr(mask, 0), self.ptr(out, 0));
        self.dropout(ctx, site, x, m, o, n)
    }
    fn dropout_mask(
        &self,
        ctx: &DropoutCtx,
        site: u64,
        mask: &mut CudaSlice<f32>,
    ) -> Result<(), DeviceError> {
        let n = mask.len();
        self.dropout(ctx, site, 0, self.ptr(mask, 0), 0, n)
    }
    fn multiply(
        &self,
        d: &mut CudaSlice<f32>,
        mask: &CudaSlice<f32>,
        n: usize,
    ) -> Result<(), DeviceError> {
        fits(d.len(), 0, n, "multiply")?;
        fits(mask.len(), 0, n, "multiply (mask)")?;
        // multiply(float* d, const float* m, long long n)
        let args = [Arg::P(self.ptr(d, 0)), Arg::P(self.ptr(mask, 0)), l(n)];
        self.launch_n(&self.k.multiply, n, &args, "multiply")
    }
    fn add_into(
        &self,
        dst: &mut CudaSlice<f32>,
        range: Range<usize>,
        src: &CudaSlice<f32>,
    ) -> Result<(), DeviceError> {
        let n = range.len();
        fits(dst.len(), range.start, n, "add_into")?;
        fits(src.len(), 0, n, "add_into (source)")?;
        // add_into(float* dst, const float* src, long long n)
        let args = [
            Arg::P(self.ptr(dst, range.start)),
            Arg::P(self.ptr(src, 0)),
            l(n),
        ];
        self.launch_n(&self.k.add_into, n, &args, "add_into")
    }

    fn lstm_tape(&self, s: LstmShape) -> Result<CudaLstmTape, DeviceError> {
        CudaLstmTape::new(self, s)
    }
    fn lstm_forward(
        &self,
        s: LstmShape,
        params: &CudaSlice<f32>,
        at: &LstmAt,
        x: &CudaSlice<f32>,
        h0: &CudaSlice<f32>,
        c0: &CudaSlice<f32>,
        tape: &mut CudaLstmTape,
    ) -> Result<(), DeviceError> {
        lstm::forward(self, s, params, at, x, h0, c0, tape)
    }
    fn lstm_output<'a>(&self, tape: &'a CudaLstmTape, s: LstmShape) -> (&'a CudaSlice<f32>, usize) {
        (&tape.hs, s.b * s.h)
    }
    fn lstm_final_state(
        &self,
        tape: &CudaLstmTape,
        s: LstmShape,
        h: &mut CudaSlice<f32>,
        c: &mut CudaSlice<f32>,
    ) -> Result<(), DeviceError> {
        let bh = s.b * s.h;
        self.copy(&tape.hs, s.t * bh, h, 0, bh)?;
        self.copy(&tape.cs, s.t * bh, c, 0, bh)
    }
    fn lstm_backward(
        &self,
        s: LstmShape,
        params: &CudaSlice<f32>,
        at: &LstmAt,
        x: &CudaSlice<f32>,
        dh: &CudaSlice<f32>,
        tape: &mut CudaLstmTape,
        grads: &mut CudaSlice<f32>,
        dx: Option<&mut CudaSlice<f32>>,
    ) -> Result<(), DeviceError> {
        lstm::backward(self, s, params, at, x, dh, tape, grads, dx)
    }

    fn hlstm_tape(&self, s: HlstmShape) -> Result<CudaHlstmTape, DeviceError> {
        CudaHlstmTape::new(self, s)
    }
    fn hlstm_forward(
        &self,
        s: HlstmShape,
        params: &CudaSlice<f32>,
        at: &HlstmAt,
        x: &CudaSlice<f32>,
        mask: Option<&CudaSlice<f32>>,
        h0: &CudaSlice<f32>,
        c0: &CudaSlice<f32>,
        tape: &mut CudaHlstmTape,
    ) -> Result<(), DeviceError> {
        hlstm::forward(self, s, params, at, x, mask, h0, c0, tape)
    }
    fn hlstm_output<'a>(
        &self,
        tape: &'a CudaHlstmTape,
        s: HlstmShape,
    ) -> (&'a CudaSlice<f32>, usize) {
        (&tape.hs, s.b * s.h)
    }
    fn hlstm_final_state(
        &self,
        tape: &CudaHlstmTape,
        s: HlstmShape,
        h: &mut CudaSlice<f32>,
        c: &mut CudaSlice<f32>,
    ) -> Result<(), DeviceError> {
        let bh = s.b * s.h;
        self.copy(&tape.hs, s.t * bh, h, 0, bh)?;
        self.copy(&tape.cs, s.t * bh, c, 0, bh)
    }
    fn hlstm_backward(
        &self,
        s: HlstmShape,
        params: &CudaSlice<f32>,
        at: &HlstmAt,
        x: &CudaSlice<f32>,
        dh: &CudaSlice<f32>,
        tape: &mut CudaHlstmTape,
        grads: &mut CudaSlice<f32>,
        dx: Option<&mut CudaSlice<f32>>,
    ) -> Result<(), DeviceError> {
        hlstm::backward(self, s, params, at, x, dh, tape, grads, dx)
    }

    fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: Operand<'_, CudaSlice<f32>>,
        b: Operand<'_, CudaSlice<f32>>,
        beta: f32,
        c: &mut CudaSlice<f32>,
        c_at: usize,
    ) -> Result<(), DeviceError> {
        fits(a.buf.len(), a.at, m * k, "gemm operand a")?;
        fits(b.buf.len(), b.at, k * n, "gemm operand b")?;
        fits(c.len(), c_at, m * n, "gemm output")?;
        self.gemm_ptr(
            m,
            n,
            k,
            alpha,
            (self.ptr(a.buf, a.at), a.trans),
            (self.ptr(b.buf, b.at), b.trans),
            beta,
            self.ptr(c, c_at),
        )
    }

    fn softmax_xent(
        &self,
        logits: &mut CudaSlice<f32>,
        v: usize,
        targets: &CudaSlice<u32>,
        params: &CudaSlice<f32>,
        bias: Range<usize>,
        train: Option<XentTargets<'_, CudaSlice<f32>>>,
        row_loss: &mut [f64],
    ) -> Result<(), DeviceError> {
        let n = targets.len();
        fits(logits.len(), 0, n * v, "softmax logits")?;
        if bias.len() != v || row_loss.len() != n {
            return Err(DeviceError(format!(
                "cuda: softmax: bias of {} values and {} row losses for ({n}, {v}) logits",
                bias.len(),
                row_loss.len()
            )));
        }
        fits(params.len(), bias.start, v, "softmax bias")?;
        if n == 0 {
            return Ok(());
        }
        if v == 0 || v > u32::MAX as usize || n > i32::MAX as usize {
            return Err(DeviceError(format!(
                "cuda: softmax: cannot run ({n}, {v}) logits"
            )));
        }
        let loss = self.alloc::<f64>(n)?;
        let scale = train.as_ref().map_or(0.0, |t| t.scale);
        // xent_rows(float* logits, long long v, const unsigned* targets, const float* bias,
        //           float scale, int train, double* loss)
        let args = [
            Arg::P(self.ptr(logits, 0)),
            l(v),
            Arg::P(self.ptr(targets, 0)),
            Arg::P(self.ptr(params, bias.start)),
            Arg::F(scale),
            Arg::I(train.is_some() as i32),
            Arg::P(self.ptr(&loss, 0)),
        ];
        let rows = LaunchConfig {
            grid_dim: (n as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch(&self.k.xent_rows, rows, &args, "softmax cross-entropy")?;
        if let Some(t) = train {
            if t.dbias.len() != v {
                return Err(DeviceError(format!(
                    "cuda: softmax: bias gradient of {} values for V = {v}",
                    t.dbias.len()
                )));
            }
            if t.transposed.len() != n * v {
                *t.transposed = self.alloc(n * v)?;
            }
            // The bias gradient is the column sums of the gradient (written, as the CPU's).
            let g = self.ptr(logits, 0);
            self.col_sums_ptr(g, n, v, self.ptr(t.dbias, 0), false)?;
            let tiles = LaunchConfig {
                grid_dim: (v.div_ceil(32) as u32, n.div_ceil(32) as u32, 1),
                block_dim: (32, 8, 1),
                shared_mem_bytes: 0,
            };
            if n.div_ceil(32) > 65_535 {
                return Err(DeviceError(format!("cuda: softmax: {n} rows to transpose")));
            }
            // transpose(const float* in, float* out, long long rows, long long cols)
            let args = [Arg::P(g), Arg::P(self.ptr(t.transposed, 0)), l(n), l(v)];
            self.launch(&self.k.transpose, tiles, &args, "transposing the gradient")?;
        }
        self.to_host(&loss, row_loss)
    }

    fn sum_squares_on(&self, x: &CudaSlice<f32>, support: &Support) -> Result<f64, DeviceError> {
        if support.buffer_len() != x.len() {
            return Err(DeviceError(format!(
                "cuda: sum of squares: support of {} values for a buffer of {}",
                support.buffer_len(),
                x.len()
            )));
        }
        // The values outside the support are zero (the trait's contract), so the dense sum is
        // the sum over the support.
        let n = x.len();
        if n == 0 {
            return Ok(0.0);
        }
        let blocks = (n.div_ceil(THREADS as usize) as u32).min(SUM_BLOCKS);
        let partial = self.alloc::<f64>(blocks as usize)?;
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // sum_squares(const float* x, long long n, double* partial)
        let args = [Arg::P(self.ptr(x, 0)), l(n), Arg::P(self.ptr(&partial, 0))];
        self.launch(&self.k.sum_squares, cfg, &args, "sum of squares")?;
        let mut host = vec![0.0f64; blocks as usize];
        self.to_host(&partial, &mut host)?;
        Ok(host.iter().sum())
    }

    fn update(
        &self,
        params: &mut CudaSlice<f32>,
        grads: &CudaSlice<f32>,
        state: [Option<&mut CudaSlice<f32>>; 2],
        update: Update,
        _support: &Support,
    ) -> Result<(), DeviceError> {
        // Dense over the whole buffer: where the gradient is zero outside the support, plain
        // SGD without decay leaves those parameters as they are, as the CPU's sparse pass does.
        let n = params.len();
        if grads.len() != n {
            return Err(DeviceError(format!(
                "cuda: update: {n} parameters and {} gradients",
                grads.len()
            )));
        }
        for s in state.iter().flatten() {
            if s.len() != n {
                return Err(DeviceError(format!(
                    "cuda: update: optimizer state of {} values for {n} parameters",
                    s.len()
                )));
            }
        }
        let (p, g) = (Arg::P(self.ptr(params, 0)), Arg::P(self.ptr(grads, 0)));
        match (update, state) {
            (Update::Sgd { lr, gs, wd }, _) => {
                // sgd(float* p, const float* g, long long n, float lr, float gs, float wd)
                let args = [p, g, l(n), Arg::F(lr), Arg::F(gs), Arg::F(wd)];
                self.launch_n(&self.k.sgd, n, &args, "sgd update")
            }
            (Update::Momentum { lr, gs, wd, mu }, [Some(m), _]) => {
                // momentum(float* p, const float* g, float* m, long long n, float lr, float gs,
                //          float wd, float mu)
                let args = [
                    p,
                    g,
                    Arg::P(self.ptr(m, 0)),
                    l(n),
                    Arg::F(lr),
                    Arg::F(gs),
                    Arg::F(wd),
                    Arg::F(mu),
                ];
                self.launch_n(&self.k.momentum, n, &args, "momentum update")
            }
            (
                Update::Adam {
                    gs,
                    wd,
                    lr,
                    decoupled,
                    b1,
                    b2,
                    eps,
                    step_size,
                    inv_sqrt_bc2,
                },
                [Some(m), Some(v)],
            ) => {
                // adam(float* p, const float* g, float* m, float* v, long long n, float gs,
                //      float wd, float lr, int decoupled, float b1, float b2, float eps,
                //      float step_size, float inv_sqrt_bc2)
                let args = [
                    p,
                    g,
                    Arg::P(self.ptr(m, 0)),
                    Arg::P(self.ptr(v, 0)),
                    l(n),
                    Arg::F(gs),
                    Arg::F(wd),
                    Arg::F(lr),
                    Arg::I(decoupled as i32),
                    Arg::F(b1),
                    Arg::F(b2),
                    Arg::F(eps),
                    Arg::F(step_size),
                    Arg::F(inv_sqrt_bc2),
                ];
                self.launch_n(&self.k.adam, n, &args, "adam update")
            }
            (u, _) => Err(DeviceError(format!(
                "update {u:?} was given the wrong optimizer state buffers"
            ))),
        }
    }
}

impl Cuda {
    /// Dropout at `site` over n values: the mask at `mask`, and `out = x * mask` unless x = 0.
    fn dropout(
        &self,
        ctx: &DropoutCtx,
        site: u64,
        x: u64,
        mask: u64,
        out: u64,
        n: usize,
    ) -> Result<(), DeviceError> {
        // The same constants as dropout.rs: keep = 1/(1-p) rounded from f64, p compared in f32.
        let keep = (1.0 / (1.0 - ctx.p)) as f32;
        // dropout_fwd(unsigned long long key, unsigned long long stream, float p, float keep,
        //             const float* x, float* mask, float* out, long long n)
        let args = [
            Arg::U(rng_key(&ctx.rng)),
            Arg::U(ctx.stream(site)),
            Arg::F(ctx.p as f32),
            Arg::F(keep),
            Arg::P(x),
            Arg::P(mask),
            Arg::P(out),
            l(n),
        ];
        self.launch_n(&self.k.dropout_fwd, n, &args, "dropout")
    }
}
