//! The 29 output labels of DeepSpeech2 on English: CTC blank, apostrophe, A–Z and space, in
//! deepspeech.pytorch's order (`labels.json`: `_'ABCDEFGHIJKLMNOPQRSTUVWXYZ `).

/// Number of labels, blank included.
pub const LABELS: usize = 29;
/// The CTC blank's index.
pub const BLANK: u32 = 0;
const CHARS: &[u8; LABELS] = b"_'ABCDEFGHIJKLMNOPQRSTUVWXYZ ";

/// The label indices of `text` (upper-cased); an error names the first character without a label.
pub fn encode(text: &str) -> Result<Vec<u32>, String> {
    text.chars()
        .map(|ch| {
            let up = ch.to_ascii_uppercase();
            CHARS
                .iter()
                .position(|&c| c as char == up && up != '_')
                .map(|i| i as u32)
                .ok_or_else(|| format!("character {ch:?} has no label (labels: A–Z, ' and space)"))
        })
        .collect()
}

/// The text of label indices (blanks left out).
pub fn decode(labels: &[u32]) -> String {
    labels
        .iter()
        .filter(|&&l| l != BLANK && (l as usize) < LABELS)
        .map(|&l| CHARS[l as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_bad_characters() {
        let l = encode("it's A B").unwrap();
        assert_eq!(l[0], 10);
        assert_eq!(l[2], 1);
        assert_eq!(l[4], 28);
        assert_eq!(decode(&l), "IT'S A B");
        assert!(encode("a_b").unwrap_err().contains("'_'"));
        assert!(encode("3").unwrap_err().contains("'3'"));
        assert_eq!(decode(&[0, 2, 0, 0, 3]), "AB");
    }
}
