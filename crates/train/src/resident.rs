//! What lives in the device's memory while [`crate::trainer::train`] runs: parameters,
//! gradients, optimizer state and the carried recurrent state. They move there when training
//! starts (on the CPU the vectors themselves move: no copy) and back when it returns; in between,
//! the host checkpoint is refreshed from them only to be saved or evaluated.

use crate::checkpoint::Checkpoint;
use crate::optim::OptimState;
use model::backend::{Backend, DeviceError};
use model::LmState;

/// The training state in `B`'s memory.
pub struct Resident<B: Backend<f32>> {
    pub params: B::Buf,
    pub grads: B::Buf,
    /// Momentum / first moment and second moment (`None` when the optimizer has none).
    pub m: Option<B::Buf>,
    pub v: Option<B::Buf>,
    pub carried: LmState<f32, B>,
}

/// Moves a host vector into `be`'s memory; an empty one (an unused optimizer buffer) stays out.
fn adopt_opt<B: Backend<f32>>(be: &B, v: Vec<f32>) -> Result<Option<B::Buf>, DeviceError> {
    if v.is_empty() {
        Ok(None)
    } else {
        be.adopt(v).map(Some)
    }
}

impl<B: Backend<f32>> Resident<B> {
    /// Moves the checkpoint's parameters, optimizer state and carried state to `be`, leaving
    /// them empty in `ckpt` until [`Self::restore`].
    pub fn adopt(be: &B, ckpt: &mut Checkpoint) -> Result<Self, DeviceError> {
        let n = ckpt.model.num_params();
        Ok(Self {
            params: be.adopt(std::mem::take(&mut ckpt.model.params))?,
            grads: be.zeros(n)?,
            m: adopt_opt(be, std::mem::take(&mut ckpt.optimizer.m))?,
            v: adopt_opt(be, std::mem::take(&mut ckpt.optimizer.v))?,
            carried: LmState::upload(be, &ckpt.carried)?,
        })
    }

    /// The parameters, the gradients and the optimizer's state buffers, borrowed together for
    /// an update or a hook.
    pub fn parts(&mut self) -> (&mut B::Buf, &B::Buf, OptimState<'_, B>) {
        let state = OptimState {
            m: self.m.as_mut(),
            v: self.v.as_mut(),
        };
        (&mut self.params, &self.grads, state)
    }

    /// Copies the device state into `ckpt` (for a save or an evaluation on the host); the device
    /// keeps its copy.
    pub fn sync(&self, be: &B, ckpt: &mut Checkpoint) -> Result<(), DeviceError> {
        let down = |buf: &B::Buf, host: &mut Vec<f32>| {
            host.resize(be.len(buf), 0.0);
            be.download(buf, host)
        };
        down(&self.params, &mut ckpt.model.params)?;
        if let Some(m) = &self.m {
            down(m, &mut ckpt.optimizer.m)?;
        }
        if let Some(v) = &self.v {
            down(v, &mut ckpt.optimizer.v)?;
        }
        ckpt.carried = self.carried.download(be)?;
        Ok(())
    }

    /// Drops the host copies [`Self::sync`] made (the device's are current).
    pub fn unsync(ckpt: &mut Checkpoint) {
        ckpt.model.params = Vec::new();
        ckpt.optimizer.m = Vec::new();
        ckpt.optimizer.v = Vec::new();
    }

    /// Moves everything back into `ckpt` (on the CPU without a copy).
    pub fn restore(self, be: &B, ckpt: &mut Checkpoint) -> Result<(), DeviceError> {
        ckpt.carried = self.carried.download(be)?;
        ckpt.model.params = be.release(self.params)?;
        if let Some(m) = self.m {
            ckpt.optimizer.m = be.release(m)?;
        }
        if let Some(v) = self.v {
            ckpt.optimizer.v = be.release(v)?;
        }
        Ok(())
    }
}
