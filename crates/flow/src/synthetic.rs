//! A synthetic corpus in PTB's file format (`ptb.{train,valid,test}.txt`, one sentence per line,
//! words separated by spaces), drawn from a small Markov source: learnable, so perplexity moves
//! within a few hundred steps. For tests and demos that must run without PTB.

use kernels::rng::CounterRng;
use std::path::Path;

/// Writes `dir/ptb.{train,valid,test}.txt` with `train_tokens` words of training text (a fifth
/// of that for valid and test) over `vocab` words `w0…`: each word is mostly followed by the next
/// one of its group of 8, else by a uniformly drawn word.
pub fn write_corpus(dir: &Path, vocab: usize, train_tokens: u64, seed: u64) -> std::io::Result<()> {
    let vocab = vocab.max(1);
    let words: Vec<String> = (0..vocab).map(|i| format!("w{i}")).collect();
    let rng = CounterRng::new(seed);
    let held_out = (train_tokens / 5).max(1);
    for (split, n, stream) in [
        ("train", train_tokens, 0u64),
        ("valid", held_out, 1),
        ("test", held_out, 2),
    ] {
        let mut text = String::new();
        let mut w = 0usize;
        for i in 0..n {
            w = if rng.uniform_f64(stream, i) < 0.8 {
                ((w / 8) * 8 + (w % 8 + 1) % 8).min(vocab - 1)
            } else {
                (rng.bits(stream + 10, i) % vocab as u64) as usize
            };
            text.push_str(&words[w]);
            text.push(if i % 12 == 11 || i + 1 == n {
                '\n'
            } else {
                ' '
            });
        }
        std::fs::write(dir.join(format!("ptb.{split}.txt")), text)?;
    }
    Ok(())
}
