//! Input mutation for the fuzz tests of the readers (safetensors, latency tables, TOML configs,
//! corpora; `tests/fuzz.rs` of each crate, `tools/fuzz.sh`): byte-level edits and a
//! structure-aware one that swaps the numbers of a text format for extreme values. The tests
//! draw the edits with proptest and check that a reader returns Ok or a clear error — never a
//! panic, an abort, a hang or an absurd allocation.

/// One edit of a byte string; positions wrap around its length.
#[derive(Clone, Copy, Debug)]
pub enum Edit {
    /// XOR one byte with a non-zero mask.
    Flip { at: usize, mask: u8 },
    /// Overwrite one byte.
    Set { at: usize, byte: u8 },
    /// Insert a byte.
    Insert { at: usize, byte: u8 },
    /// Remove up to `len` bytes.
    Remove { at: usize, len: usize },
    /// Cut the input at `at`.
    Truncate { at: usize },
    /// Repeat a slice of up to `len` bytes in place.
    Duplicate { at: usize, len: usize },
}

impl Edit {
    /// The edit a fuzz test drew as plain numbers (kind, position, value).
    pub fn from_draw(kind: u8, at: usize, value: u8) -> Edit {
        match kind % 6 {
            0 => Edit::Flip {
                at,
                mask: value.max(1),
            },
            1 => Edit::Set { at, byte: value },
            2 => Edit::Insert { at, byte: value },
            3 => Edit::Remove {
                at,
                len: usize::from(value % 16) + 1,
            },
            4 => Edit::Truncate { at },
            _ => Edit::Duplicate {
                at,
                len: usize::from(value) + 1,
            },
        }
    }
}

/// `input` with `edits` applied in order.
pub fn mutate(input: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = input.to_vec();
    for &e in edits {
        let n = out.len();
        let pos = |at: usize| if n == 0 { 0 } else { at % n };
        match e {
            Edit::Flip { at, mask } if n > 0 => out[pos(at)] ^= mask,
            Edit::Set { at, byte } if n > 0 => out[pos(at)] = byte,
            Edit::Insert { at, byte } => out.insert(at % (n + 1), byte),
            Edit::Remove { at, len } if n > 0 => {
                let s = pos(at);
                out.drain(s..(s + len).min(n));
            }
            Edit::Truncate { at } => out.truncate(at % (n + 1)),
            Edit::Duplicate { at, len } if n > 0 => {
                let s = pos(at);
                let piece = out[s..(s + len).min(n)].to_vec();
                out.splice(s..s, piece);
            }
            _ => {}
        }
    }
    out
}

/// Values that break naive numeric code: zero, signs, huge, tiny, non-finite, overflowing
/// integers, and non-numbers where a number belongs.
pub const EXTREME_NUMBERS: [&str; 16] = [
    "0",
    "-1",
    "-0.0",
    "1e300",
    "-1e300",
    "1e-320",
    "nan",
    "inf",
    "-inf",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "4294967296",
    "1000000000000",
    "\"x\"",
    "[]",
];

/// `text` with its `k`-th number (a run of digits, optionally signed, with `.`, `e`) replaced by
/// [`EXTREME_NUMBERS`]`[v]` for each `(k, v)` (indices wrap); the structure-aware mutation of
/// JSON, CSV and TOML inputs.
pub fn swap_numbers(text: &str, swaps: &[(usize, usize)]) -> String {
    let spans = number_spans(text);
    if spans.is_empty() {
        return text.to_string();
    }
    let mut chosen: Vec<(usize, &str)> = swaps
        .iter()
        .map(|&(k, v)| (k % spans.len(), EXTREME_NUMBERS[v % EXTREME_NUMBERS.len()]))
        .collect();
    chosen.sort_by_key(|&(k, _)| std::cmp::Reverse(k));
    chosen.dedup_by_key(|&mut (k, _)| k);
    let mut out = text.to_string();
    for (k, value) in chosen {
        let (s, e) = spans[k];
        out.replace_range(s..e, value);
    }
    out
}

/// Byte spans of the numbers in `text` (ASCII scan: a digit run with its sign, point and
/// exponent).
fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts =
            b[i].is_ascii_digit() || (b[i] == b'-' && i + 1 < b.len() && b[i + 1].is_ascii_digit());
        let inside_word = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if starts && !inside_word {
            let s = i;
            i += 1;
            while i < b.len()
                && (b[i].is_ascii_digit()
                    || matches!(b[i], b'.' | b'e' | b'E')
                    || (matches!(b[i], b'-' | b'+') && matches!(b[i - 1], b'e' | b'E')))
            {
                i += 1;
            }
            spans.push((s, i));
        } else {
            i += 1;
        }
    }
    spans
}

/// Cases per fuzz target: `SYMBIONT_FUZZ_CASES`, else 256 (the short run of the test command;
/// `tools/fuzz.sh` runs long ones).
pub fn cases() -> u32 {
    std::env::var("SYMBIONT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_do_what_they_say() {
        let s = b"abcdef";
        assert_eq!(mutate(s, &[Edit::Flip { at: 7, mask: 0x20 }]), b"aBcdef");
        assert_eq!(mutate(s, &[Edit::Insert { at: 6, byte: b'!' }]), b"abcdef!");
        assert_eq!(mutate(s, &[Edit::Remove { at: 4, len: 9 }]), b"abcd");
        assert_eq!(mutate(s, &[Edit::Truncate { at: 2 }]), b"ab");
        assert_eq!(mutate(s, &[Edit::Duplicate { at: 1, len: 2 }]), b"abcbcdef");
        assert_eq!(mutate(b"", &[Edit::Flip { at: 3, mask: 1 }]), b"");
    }

    #[test]
    fn numbers_are_found_and_swapped() {
        let t = r#"{"hidden": 200, "ms": -1.5e-3, "name": "h2o_1"} x = 7"#;
        assert_eq!(number_spans(t).len(), 3, "h2o_1 holds no number");
        assert_eq!(
            swap_numbers(t, &[(0, 6), (2, 3)]),
            r#"{"hidden": nan, "ms": -1.5e-3, "name": "h2o_1"} x = 1e300"#
        );
        assert_eq!(swap_numbers("no digits", &[(0, 0)]), "no digits");
    }
}
