//! The Penn Treebank corpus (Mikolov's 10k-word preprocessing): loading with MD5 verification,
//! the vocabulary (`<eos>` at every line end), and batchification into B parallel streams.

use crate::TrainError;
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The three splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub fn file_name(self) -> &'static str {
        match self {
            Split::Train => "ptb.train.txt",
            Split::Valid => "ptb.valid.txt",
            Split::Test => "ptb.test.txt",
        }
    }

    /// Published MD5 (the sums torchtext checks).
    pub fn md5(self) -> &'static str {
        match self {
            Split::Train => "f26c4b92c5fdc7b3f8c7cdcb991d8420",
            Split::Valid => "aa0affc06ff7c36e977d7cd49e3839bf",
            Split::Test => "8b80168b89c18661a38ef683c0dc3721",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "train" => Some(Split::Train),
            "valid" => Some(Split::Valid),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
}

pub const EOS: &str = "<eos>";

/// Word ↔ id, ids in order of first appearance in the training text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vocab {
    words: Vec<String>,
    index: HashMap<String, u32>,
}

impl Vocab {
    pub fn len(&self) -> usize {
        self.words.len()
    }
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
    pub fn words(&self) -> &[String] {
        &self.words
    }
    pub fn id(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }
    fn add(&mut self, word: &str) -> u32 {
        if let Some(&id) = self.index.get(word) {
            return id;
        }
        let id = self.words.len() as u32;
        self.words.push(word.to_string());
        self.index.insert(word.to_string(), id);
        id
    }

    /// One word per line (as written by [`Vocab::to_text`]).
    pub fn from_text(text: &str) -> Self {
        let mut v = Vocab::default();
        for w in text.lines() {
            v.add(w);
        }
        v
    }

    pub fn to_text(&self) -> String {
        let mut s = self.words.join("\n");
        s.push('\n');
        s
    }
}

/// Token ids of the three splits and the vocabulary built from train.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub dir: PathBuf,
    pub vocab: Vocab,
    pub train: Vec<u32>,
    pub valid: Vec<u32>,
    pub test: Vec<u32>,
}

impl Corpus {
    pub fn split(&self, s: Split) -> &[u32] {
        match s {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
            Split::Test => &self.test,
        }
    }
}

fn read_checked(dir: &Path, split: Split, verify: bool) -> Result<(PathBuf, String), TrainError> {
    let path = dir.join(split.file_name());
    let bytes = std::fs::read(&path).map_err(|e| TrainError::Data {
        path: path.display().to_string(),
        reason: format!(
            "cannot read ({e}); point --data-dir at a folder with ptb.{{train,valid,test}}.txt, or fetch PTB with tools/get-ptb.sh"
        ),
    })?;
    if verify {
        let got: String = Md5::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != split.md5() {
            return Err(TrainError::Checksum {
                path: path.display().to_string(),
                got,
                want: split.md5().into(),
            });
        }
    }
    let text = String::from_utf8(bytes).map_err(|e| TrainError::Data {
        path: path.display().to_string(),
        reason: format!("not UTF-8 text: {e}"),
    })?;
    Ok((path, text))
}

/// Tokenizes with a fixed vocabulary; unknown words are an error naming file and line.
pub fn tokenize(path: &Path, text: &str, vocab: &Vocab) -> Result<Vec<u32>, TrainError> {
    let mut out = Vec::with_capacity(text.len() / 5);
    for (n, line) in text.lines().enumerate() {
        for w in line.split_whitespace().chain(std::iter::once(EOS)) {
            out.push(vocab.id(w).ok_or_else(|| TrainError::UnknownWord {
                path: path.display().to_string(),
                line: n + 1,
                word: w.to_string(),
            })?);
        }
    }
    Ok(out)
}

/// Loads `dir/ptb.{train,valid,test}.txt`, verifying MD5s when `verify`.
pub fn load_ptb(dir: &Path, verify: bool) -> Result<Corpus, TrainError> {
    let (train_path, train_text) = read_checked(dir, Split::Train, verify)?;
    let mut vocab = Vocab::default();
    for line in train_text.lines() {
        for w in line.split_whitespace().chain(std::iter::once(EOS)) {
            vocab.add(w);
        }
    }
    // Without a single line there is no vocabulary (not even `<eos>`): every later step would
    // fail far from the cause (a model of 0 words) or divide by 0 tokens.
    if vocab.is_empty() {
        return Err(TrainError::Data {
            path: train_path.display().to_string(),
            reason: "no text: the training split needs at least one line".into(),
        });
    }
    let train = tokenize(&train_path, &train_text, &vocab)?;
    let (vp, vt) = read_checked(dir, Split::Valid, verify)?;
    let valid = tokenize(&vp, &vt, &vocab)?;
    let (tp, tt) = read_checked(dir, Split::Test, verify)?;
    let test = tokenize(&tp, &tt, &vocab)?;
    Ok(Corpus {
        dir: dir.to_path_buf(),
        vocab,
        train,
        valid,
        test,
    })
}

/// Loads one split with a given vocabulary (evaluation of a saved model).
pub fn load_split(
    dir: &Path,
    split: Split,
    vocab: &Vocab,
    verify: bool,
) -> Result<Vec<u32>, TrainError> {
    let (path, text) = read_checked(dir, split, verify)?;
    tokenize(&path, &text, vocab)
}

/// Training batches per epoch for a stream of `tokens` cut into `batch` streams of `bptt` steps
/// (what [`Batched::full_batches`] gives, without building the batches).
pub fn batches_per_epoch(tokens: usize, batch: usize, bptt: usize) -> usize {
    (tokens / batch).saturating_sub(1) / bptt
}

/// The token stream cut into `batch` contiguous streams, stored time-major: (N, B) where
/// N = len / batch (the remainder is dropped, as everyone does).
#[derive(Clone, Debug)]
pub struct Batched {
    pub batch: usize,
    pub rows: usize,
    pub data: Vec<u32>,
}

impl Batched {
    pub fn new(tokens: &[u32], batch: usize) -> Self {
        let rows = tokens.len() / batch;
        let mut data = vec![0; rows * batch];
        for j in 0..batch {
            for t in 0..rows {
                data[t * batch + j] = tokens[j * rows + t];
            }
        }
        Self { batch, rows, data }
    }

    /// Number of full `bptt`-long batches (inputs need one more row for the targets).
    pub fn full_batches(&self, bptt: usize) -> usize {
        batches_per_epoch(self.rows * self.batch, self.batch, bptt)
    }

    /// Start rows of every batch including a final shorter one: (start, length).
    pub fn all_batches(&self, bptt: usize) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        let mut i = 0;
        while i + 1 < self.rows {
            let len = bptt.min(self.rows - 1 - i);
            v.push((i, len));
            i += len;
        }
        v
    }

    /// (inputs, targets) of `len` rows starting at row `start`: each (len, B).
    pub fn get(&self, start: usize, len: usize) -> (&[u32], &[u32]) {
        let b = self.batch;
        (
            &self.data[start * b..(start + len) * b],
            &self.data[(start + 1) * b..(start + 1 + len) * b],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batchify_makes_contiguous_streams_and_shifted_targets() {
        let tokens: Vec<u32> = (0..23).collect();
        let b = Batched::new(&tokens, 3); // rows = 7, token 21, 22 dropped
        assert_eq!(b.rows, 7);
        assert_eq!(&b.data[..6], &[0, 7, 14, 1, 8, 15]);
        assert_eq!(b.full_batches(2), 3);
        assert_eq!(b.all_batches(4), vec![(0, 4), (4, 2)]);
        let (x, y) = b.get(4, 2);
        assert_eq!(x, &[4, 11, 18, 5, 12, 19]);
        assert_eq!(y, &[5, 12, 19, 6, 13, 20]);
    }

    #[test]
    fn unknown_words_name_file_and_line() {
        let vocab = Vocab::from_text("a\nb\n<eos>\n");
        let err = tokenize(Path::new("x.txt"), "a b\nb c a\n", &vocab)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "x.txt:2: word `c` is not in the training vocabulary");
        assert_eq!(
            tokenize(Path::new("x.txt"), " a  b \n", &vocab).unwrap(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn checksum_mismatch_and_missing_files_are_clear() {
        let dir = std::env::temp_dir().join(format!("symbiont-ptb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = load_ptb(&dir, true).unwrap_err().to_string();
        assert!(
            err.contains("ptb.train.txt") && err.contains("get-ptb"),
            "{err}"
        );
        for s in [Split::Train, Split::Valid, Split::Test] {
            std::fs::write(dir.join(s.file_name()), " a b \n b a \n").unwrap();
        }
        let err = load_ptb(&dir, true).unwrap_err().to_string();
        assert!(err.contains("ptb.train.txt: MD5"), "{err}");
        let c = load_ptb(&dir, false).unwrap();
        assert_eq!(c.vocab.words(), &["a", "b", "<eos>"]);
        assert_eq!(c.train, vec![0, 1, 2, 1, 0, 2]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
