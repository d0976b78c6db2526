//! safetensors I/O: named tensors with PyTorch `state_dict` names, atomic writes, and loading
//! a language model (its shape inferred from the tensors) with errors that name the tensor.

use crate::{LanguageModel, LmConfig, ModelError};
use kernels::Real;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// A tensor read from a file, kept as raw little-endian bytes until asked for.
#[derive(Clone, Debug)]
struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// The contents of one safetensors file.
#[derive(Clone, Debug)]
pub struct TensorFile {
    path: String,
    tensors: HashMap<String, RawTensor>,
    metadata: HashMap<String, String>,
}

impl TensorFile {
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: file.clone(),
            source,
        })?;
        Self::from_bytes(&file, &bytes)
    }

    /// Parses the bytes of a safetensors file; `label` stands for its path in error messages.
    pub fn from_bytes(label: &str, bytes: &[u8]) -> Result<Self, ModelError> {
        let file = label.to_string();
        let st = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Format {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| ModelError::Format {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                (
                    name,
                    RawTensor {
                        dtype: view.dtype(),
                        shape: view.shape().to_vec(),
                        bytes: view.data().to_vec(),
                    },
                )
            })
            .collect();
        Ok(Self {
            path: file,
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// The tensors of a `state_dict` in memory, readable like a file (`label` stands for the
    /// path in error messages): no round trip through the disk.
    pub fn from_tensors(label: &str, tensors: &[OutTensor<'_>]) -> TensorFile {
        let raw = |t: &OutTensor<'_>| {
            let (dtype, bytes): (Dtype, Vec<u8>) = match &t.data {
                TensorData::F32(d) => {
                    (Dtype::F32, d.iter().flat_map(|v| v.to_le_bytes()).collect())
                }
                TensorData::F32Owned(d) => {
                    (Dtype::F32, d.iter().flat_map(|v| v.to_le_bytes()).collect())
                }
                TensorData::I64(d) => {
                    (Dtype::I64, d.iter().flat_map(|v| v.to_le_bytes()).collect())
                }
            };
            RawTensor {
                dtype,
                shape: t.shape.clone(),
                bytes,
            }
        };
        TensorFile {
            path: label.to_string(),
            tensors: tensors.iter().map(|t| (t.name.clone(), raw(t))).collect(),
            metadata: HashMap::new(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort();
        v
    }

    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Result<&[usize], ModelError> {
        Ok(&self.raw(name)?.shape)
    }

    fn raw(&self, name: &str) -> Result<&RawTensor, ModelError> {
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                file: self.path.clone(),
                name: name.to_string(),
            })
    }

    fn check_shape(
        &self,
        name: &str,
        t: &RawTensor,
        want: Option<&[usize]>,
    ) -> Result<(), ModelError> {
        if let Some(want) = want {
            // A scalar stored as [] or [1] is the same thing.
            let same = t.shape == want
                || (t.shape.iter().product::<usize>() == 1 && want.iter().product::<usize>() == 1);
            if !same {
                return Err(ModelError::Shape {
                    file: self.path.clone(),
                    name: name.to_string(),
                    got: t.shape.clone(),
                    want: want.to_vec(),
                });
            }
        }
        Ok(())
    }

    /// `Ok` when the file holds tensor `name` of shape `want` (the shape check of
    /// [`TensorFile::floats`] without reading the values).
    pub fn check(&self, name: &str, want: &[usize]) -> Result<(), ModelError> {
        self.check_shape(name, self.raw(name)?, Some(want))
    }

    /// A floating-point tensor as f64 values (F32, F64, F16 and BF16 are read). NaN or an
    /// infinity anywhere is an error naming the tensor and index.
    pub fn floats(&self, name: &str, want: Option<&[usize]>) -> Result<Vec<f64>, ModelError> {
        let t = self.raw(name)?;
        self.check_shape(name, t, want)?;
        let b = &t.bytes;
        let values: Vec<f64> = match t.dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            Dtype::F64 => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64)
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])) as f64)
                .collect(),
            other => {
                return Err(ModelError::Dtype {
                    file: self.path.clone(),
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(ModelError::NonFinite {
                file: self.path.clone(),
                name: name.to_string(),
                index,
                value,
            });
        }
        Ok(values)
    }

    /// An integer tensor (I64 or I32) as i64 values.
    pub fn ints(&self, name: &str, want: Option<&[usize]>) -> Result<Vec<i64>, ModelError> {
        let t = self.raw(name)?;
        self.check_shape(name, t, want)?;
        let b = &t.bytes;
        match t.dtype {
            Dtype::I64 => Ok(b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect()),
            Dtype::I32 => Ok(b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect()),
            other => Err(ModelError::Dtype {
                file: self.path.clone(),
                name: name.to_string(),
                dtype: format!("{other:?} (expected I64 or I32)"),
            }),
        }
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: value = f * 2^-24.
            return if sign != 0 { -(f as f32) } else { f as f32 } * (1.0 / 16_777_216.0);
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// One tensor to write: name, shape, values.
pub struct OutTensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData<'a>,
}

/// Values of an [`OutTensor`].
pub enum TensorData<'a> {
    F32(&'a [f32]),
    F32Owned(Vec<f32>),
    I64(Vec<i64>),
}

/// Writes `tensors` to `path` atomically (a temporary file in the same directory, fsync, rename):
/// a crash leaves either the old file or the new one, never a torn one.
pub fn write_tensors(
    path: &Path,
    tensors: &[OutTensor<'_>],
    metadata: HashMap<String, String>,
) -> Result<(), ModelError> {
    let file = path.display().to_string();
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| match &t.data {
            TensorData::F32(d) => d.iter().flat_map(|v| v.to_le_bytes()).collect(),
            TensorData::F32Owned(d) => d.iter().flat_map(|v| v.to_le_bytes()).collect(),
            TensorData::I64(d) => d.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, b) in tensors.iter().zip(&bytes) {
        let dtype = match t.data {
            TensorData::I64(_) => Dtype::I64,
            _ => Dtype::F32,
        };
        let view = TensorView::new(dtype, t.shape.clone(), b).map_err(|e| ModelError::Format {
            file: file.clone(),
            reason: format!("tensor `{}`: {e}", t.name),
        })?;
        views.push((t.name.clone(), view));
    }
    let mut out =
        safetensors::serialize(views, Some(metadata)).map_err(|e| ModelError::Format {
            file: file.clone(),
            reason: e.to_string(),
        })?;
    canonicalize_header(&mut out);
    write_atomic(path, &out)
}

/// Rewrites the JSON header with sorted keys (same length, space padded). The safetensors
/// crate writes the metadata from a HashMap in random order; sorted, the same tensors always
/// give the same bytes, so checkpoints of identical runs compare equal with `cmp`.
fn canonicalize_header(buf: &mut [u8]) {
    let Some(len_bytes) = buf.get(..8) else {
        return;
    };
    let n = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
    let Some(header) = buf.get(8..8 + n) else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(header) else {
        return;
    };
    // serde_json's map is a BTreeMap (no preserve_order feature): keys come out sorted.
    let sorted = value.to_string();
    if sorted.len() <= n {
        let dst = &mut buf[8..8 + n];
        dst[..sorted.len()].copy_from_slice(sorted.as_bytes());
        dst[sorted.len()..].fill(b' ');
    }
}

/// Flushes a directory's entries to disk (after a rename or a new file in it): without it a crash
/// soon after can lose the rename even though the file's data was synced. A no-op where
/// directories cannot be opened (not Unix).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The folder holding `path` ("." for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes bytes to `path` through a temporary file, fsync and a rename, then syncs the folder so
/// the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let io = |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    sync_dir(parent_dir(path)).map_err(io)
}

impl<F: Real> LanguageModel<F> {
    /// The parameters as (state_dict name, shape, f32 values), in layout order.
    pub fn state_dict(&self) -> Vec<OutTensor<'static>> {
        self.layout
            .tensors()
            .iter()
            .map(|t| OutTensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                data: TensorData::F32Owned(
                    self.params[t.range()]
                        .iter()
                        .map(|v| v.to_f64() as f32)
                        .collect(),
                ),
            })
            .collect()
    }

    /// Saves the weights as safetensors with PyTorch names.
    pub fn save(
        &self,
        path: &Path,
        mut metadata: HashMap<String, String>,
    ) -> Result<(), ModelError> {
        metadata.insert("format".into(), "pt".into());
        metadata.insert("symbiont.arch".into(), "lstm-lm".into());
        write_tensors(path, &self.state_dict(), metadata)
    }

    /// Copies every tensor of the layout from `file` (shapes must match exactly).
    pub fn load_params(&mut self, file: &TensorFile) -> Result<(), ModelError> {
        for t in self.layout.tensors().to_vec() {
            let v = file.floats(&t.name, Some(&t.shape))?;
            for (p, x) in self.params[t.range()].iter_mut().zip(v) {
                *p = F::from_f64(x);
            }
        }
        Ok(())
    }

    /// Builds a model from a PyTorch word-language-model `state_dict` file: vocabulary,
    /// widths and depth are read from the tensor shapes; `dropout` is not stored in weights.
    pub fn from_file(file: &TensorFile, dropout: f64) -> Result<Self, ModelError> {
        let enc = file.shape("encoder.weight")?.to_vec();
        // Both sizes must be backed by data: [V, 0] holds nothing whatever V claims (and an
        // embedding width of 0 would read as "same as hidden").
        if enc.len() != 2 || enc.contains(&0) {
            return Err(ModelError::Shape {
                file: file.path().into(),
                name: "encoder.weight".into(),
                got: enc,
                want: vec![0, 0],
            });
        }
        // H-LSTM layers are recognised by their gate MLP weights; M comes from their shape.
        let hlstm = file.contains("rnn.weight_ih1_l0");
        let (ih, hh) = if hlstm {
            ("weight_ih1", "weight_hh1")
        } else {
            ("weight_ih", "weight_hh")
        };
        let layers = (0..)
            .take_while(|l| file.contains(&format!("rnn.{ih}_l{l}")))
            .count();
        if layers == 0 {
            return Err(ModelError::MissingTensor {
                file: file.path().into(),
                name: "rnn.weight_ih_l0".into(),
            });
        }
        let (mut sizes, mut gate_hidden) = (Vec::with_capacity(layers), 0);
        for l in 0..layers {
            let name = format!("rnn.{hh}_l{l}");
            let shape = file.shape(&name)?.to_vec();
            let h = shape.get(1).copied().unwrap_or(0);
            // LSTM: (4H, H). H-LSTM: (4M, H) with the same M in every layer.
            let rows_ok = shape.len() == 2 && shape[0] % 4 == 0 && shape[0] > 0 && h > 0;
            // `first`, not `[0]`: a 0-D tensor reaches this line (found by fuzzing).
            let m = if hlstm {
                shape.first().copied().unwrap_or(0) / 4
            } else {
                h
            };
            if !rows_ok || (!hlstm && shape[0] != 4 * h) || (hlstm && l > 0 && m != gate_hidden) {
                let want_rows = if hlstm { 4 * gate_hidden.max(1) } else { 4 * h };
                return Err(ModelError::Shape {
                    file: file.path().into(),
                    name,
                    got: shape,
                    want: vec![want_rows, h],
                });
            }
            if hlstm {
                gate_hidden = m;
            }
            sizes.push(h);
        }
        let uniform = sizes.iter().all(|&h| h == sizes[0]);
        let config = LmConfig {
            vocab: enc[0],
            // 0 means "same as hidden", the canonical form of the common case.
            embedding: if enc[1] == sizes[0] { 0 } else { enc[1] },
            hidden: sizes[0],
            hidden_sizes: if uniform { Vec::new() } else { sizes },
            layers,
            dropout,
            gate_hidden,
            gate_dropout: 0.0,
        };
        // Every tensor of the model must be in the file with its shape before the parameters
        // are allocated: sizes taken from some tensors (the vocabulary from the encoder) must
        // not allocate a model that the others (a missing or smaller decoder) do not back.
        config.validate()?;
        for t in Self::layout_of(&config).0.tensors() {
            file.check(&t.name, &t.shape)?;
        }
        let mut model = Self::new(config)?;
        model.load_params(file)?;
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> LanguageModel<f32> {
        let mut m = LanguageModel::new(LmConfig::lstm(9, 4, 2)).unwrap();
        m.init_uniform(0.3, 5);
        m
    }

    #[test]
    fn write_atomic_syncs_the_folder_and_reports_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("symbiont-model-{}-sync", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(
            !dir.join("a.txt.tmp").exists(),
            "the temporary file is renamed away"
        );
        assert!(sync_dir(&dir).is_ok());
        assert!(sync_dir(&dir.join("missing")).is_err());
        let err = write_atomic(&dir.join("missing/b.txt"), b"x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing/b.txt"), "{err}");
        assert_eq!(parent_dir(Path::new("bare.txt")), Path::new("."));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn save_load_roundtrip_and_errors_name_the_tensor() {
        let dir = std::env::temp_dir().join(format!("symbiont-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.safetensors");
        let m = tiny();
        m.save(&path, HashMap::new()).unwrap();
        let f = TensorFile::read(&path).unwrap();
        let back = LanguageModel::<f32>::from_file(&f, 0.0).unwrap();
        assert_eq!(back.config, m.config);
        assert_eq!(back.params, m.params);
        assert!(f.names().contains(&"rnn.bias_hh_l1"));

        // A model of another width refuses the file and names the tensor.
        let mut other = LanguageModel::<f32>::new(LmConfig {
            hidden: 5,
            ..m.config.clone()
        })
        .unwrap();
        let err = other.load_params(&f).unwrap_err().to_string();
        assert!(
            err.contains("encoder.weight") || err.contains("rnn.weight_ih_l0"),
            "{err}"
        );

        // Missing tensor.
        let partial: Vec<OutTensor> = m
            .state_dict()
            .into_iter()
            .filter(|t| t.name != "decoder.bias")
            .collect();
        write_tensors(&path, &partial, HashMap::new()).unwrap();
        let err = LanguageModel::<f32>::from_file(&TensorFile::read(&path).unwrap(), 0.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing tensor `decoder.bias`"), "{err}");

        // Garbage.
        std::fs::write(&path, b"not a safetensors file").unwrap();
        let err = TensorFile::read(&path).unwrap_err().to_string();
        assert!(err.contains("not a valid safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn f16_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}
