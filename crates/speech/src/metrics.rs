//! Word and character error rates: Levenshtein distance over words or characters divided by the
//! reference length — corpus-level (total edits / total reference length, as the papers report)
//! and the mean over utterances (deepspeech.pytorch's "WER").

/// Edit distance (substitutions, insertions, deletions all cost 1) between two sequences.
pub fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(x != y);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Error rates over a set of (reference, hypothesis) transcripts, in percent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorRates {
    /// Word errors / reference words, over the whole set.
    pub wer: f64,
    /// Character errors / reference characters (spaces included), over the whole set.
    pub cer: f64,
    /// The mean over utterances of each one's WER (an empty reference counts as 0 words: its
    /// utterance rate is 0 when the hypothesis is empty too, else 100 per inserted word).
    pub wer_mean_utterance: f64,
    pub words: usize,
    pub chars: usize,
    pub utterances: usize,
}

/// WER and CER of `pairs` of (reference, hypothesis).
pub fn error_rates<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> ErrorRates {
    let (mut word_edits, mut words, mut char_edits, mut chars) = (0usize, 0usize, 0usize, 0usize);
    let (mut sum_utt, mut n) = (0.0f64, 0usize);
    for (reference, hypothesis) in pairs {
        let (rw, hw): (Vec<&str>, Vec<&str>) = (
            reference.split_whitespace().collect(),
            hypothesis.split_whitespace().collect(),
        );
        let we = edit_distance(&rw, &hw);
        let (rc, hc): (Vec<char>, Vec<char>) = (
            rw.join(" ").chars().collect(),
            hw.join(" ").chars().collect(),
        );
        char_edits += edit_distance(&rc, &hc);
        chars += rc.len();
        word_edits += we;
        words += rw.len();
        sum_utt += 100.0 * we as f64 / rw.len().max(1) as f64;
        n += 1;
    }
    let pct = |e: usize, total: usize| 100.0 * e as f64 / total.max(1) as f64;
    ErrorRates {
        wer: pct(word_edits, words),
        cer: pct(char_edits, chars),
        wer_mean_utterance: sum_utt / n.max(1) as f64,
        words,
        chars,
        utterances: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_each_kind_of_edit() {
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
        assert_eq!(edit_distance::<u8>(b"", b"abc"), 3);
        assert_eq!(edit_distance(b"abc", b""), 3);
        assert_eq!(edit_distance(b"abc", b"abc"), 0);
        assert_eq!(edit_distance(&["a", "b"], &["b"]), 1);
    }

    #[test]
    fn corpus_and_mean_rates_differ_as_defined() {
        let r = error_rates([("ONE TWO THREE FOUR", "ONE TOO THREE FOUR"), ("YES", "NO")]);
        assert_eq!((r.words, r.utterances), (5, 2));
        assert!((r.wer - 40.0).abs() < 1e-12, "{}", r.wer);
        assert!((r.wer_mean_utterance - 62.5).abs() < 1e-12);
        // Characters: "TWO"→"TOO" is 1 edit of 18; "YES"→"NO" is 3 of 3.
        assert!((r.cer - 100.0 * 4.0 / 21.0).abs() < 1e-12, "{}", r.cer);
        let perfect = error_rates([("A B", " A  B ")]);
        assert_eq!((perfect.wer, perfect.cer), (0.0, 0.0));
    }
}
