//! CTC prefix beam search without a language model (Hannun et al. 2014, "First-pass large
//! vocabulary continuous speech recognition using bi-directional recurrent DNNs", algorithm 1
//! with the LM and insertion terms dropped): the label sequences kept per frame are scored by the
//! total probability of all their alignments so far, split into alignments ending in a blank and
//! alignments ending in a label, so that a repeated label is only counted as new after a blank.
//!
//! Prefixes live in a trie of ids (parent, last label) shared across frames, so extending a
//! prefix by one label is a hash lookup, not a clone; sequences are spelled out once, at the end.

use crate::ctc::{log_add, log_softmax};
use crate::labels::BLANK;
use std::collections::HashMap;

/// The root id: the empty prefix.
const ROOT: u32 = 0;

/// Every prefix ever proposed, as (parent id, last label); id 0 is the empty prefix.
struct Trie {
    nodes: Vec<(u32, u32)>,
    children: HashMap<(u32, u32), u32>,
}

impl Trie {
    fn new() -> Self {
        Trie {
            // The root's label is never read: `last` checks for the root first.
            nodes: vec![(ROOT, BLANK)],
            children: HashMap::new(),
        }
    }

    /// The id of `prefix` followed by `label`, made on first use.
    fn child(&mut self, prefix: u32, label: u32) -> u32 {
        let next = self.nodes.len() as u32;
        let id = *self.children.entry((prefix, label)).or_insert(next);
        if id == next {
            self.nodes.push((prefix, label));
        }
        id
    }

    /// The prefix's last label, `None` for the empty prefix.
    fn last(&self, prefix: u32) -> Option<u32> {
        (prefix != ROOT).then(|| self.nodes[prefix as usize].1)
    }

    /// The label sequence of `prefix`, first label first.
    fn spell(&self, mut prefix: u32) -> Vec<u32> {
        let mut out = Vec::new();
        while prefix != ROOT {
            let (parent, label) = self.nodes[prefix as usize];
            out.push(label);
            prefix = parent;
        }
        out.reverse();
        out
    }
}

/// One prefix on the beam: log probability of its alignments so far that end in a blank
/// (`blank`) and in its last label (`label`).
#[derive(Clone, Copy)]
struct Entry {
    prefix: u32,
    blank: f64,
    label: f64,
}

impl Entry {
    fn total(&self) -> f64 {
        log_add(self.blank, self.label)
    }
}

/// The next frame's entries, indexed by prefix id; a Vec in insertion order (not a HashMap's
/// iteration order) keeps the search, and so its tie-breaking, deterministic.
#[derive(Default)]
struct Frontier {
    entries: Vec<Entry>,
    index: HashMap<u32, usize>,
}

impl Frontier {
    fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
    }

    fn slot(&mut self, prefix: u32) -> &mut Entry {
        let entries = &mut self.entries;
        let i = *self.index.entry(prefix).or_insert_with(|| {
            entries.push(Entry {
                prefix,
                blank: f64::NEG_INFINITY,
                label: f64::NEG_INFINITY,
            });
            entries.len() - 1
        });
        &mut self.entries[i]
    }
}

/// Keeps the `beam` most probable entries, most probable first; ties go to the older prefix id
/// (so to the prefix proposed first), which makes the order total and reproducible.
fn prune(entries: &mut Vec<Entry>, beam: usize) {
    let key = |a: &Entry, b: &Entry| {
        b.total()
            .total_cmp(&a.total())
            .then(a.prefix.cmp(&b.prefix))
    };
    if entries.len() > beam {
        entries.select_nth_unstable_by(beam - 1, key);
        entries.truncate(beam);
    }
    entries.sort_unstable_by(key);
}

/// The `beam` best label sequences (blanks removed, repeats merged) of `logits` (T, C), blank
/// [`BLANK`], most probable first, each with the log probability of its alignments that survived
/// the pruning. That is a lower bound on log p(sequence | logits) = −`ctc_loss`, exact when no
/// alignment of the sequence passed through a pruned prefix (always, if `beam` is at least the
/// number of distinct prefixes). Sequences with probability zero are left out; the list is never
/// empty (T = 0 gives the empty sequence with log probability 0).
///
/// Cost: O(T · beam · C) hash operations, plus the trie's memory of O(T · beam · C) ids.
///
/// # Panics
/// If `beam` is 0 or `logits` is not T x C with C ≥ 1 (programming errors, as in `ctc_loss`:
/// the beam width is a fixed setting and the shape comes from the model).
pub fn prefix_beam_search_nbest(logits: &[f32], c: usize, beam: usize) -> Vec<(Vec<u32>, f64)> {
    assert!(beam > 0, "prefix_beam_search: beam must be at least 1");
    assert!(
        c > 0 && logits.len().is_multiple_of(c),
        "prefix_beam_search: logits are not T x C"
    );
    let lp = log_softmax(logits, c); // (T, C)
    let blank = BLANK as usize;
    let mut trie = Trie::new();
    let mut current = vec![Entry {
        prefix: ROOT,
        blank: 0.0,
        label: f64::NEG_INFINITY,
    }];
    let mut next = Frontier::default();
    for row in lp.chunks_exact(c) {
        next.clear();
        for e in &current {
            let total = e.total();
            // Stay on the same prefix: emit a blank, or repeat the last label without a blank
            // in between (which collapses into it).
            let stay = next.slot(e.prefix);
            stay.blank = log_add(stay.blank, total + row[blank]);
            let last = trie.last(e.prefix);
            if let Some(l) = last {
                stay.label = log_add(stay.label, e.label + row[l as usize]);
            }
            for k in (0..c as u32).filter(|&k| k != BLANK) {
                let p = row[k as usize];
                if p == f64::NEG_INFINITY {
                    continue;
                }
                // The same label again starts a new symbol only after a blank.
                let from = if last == Some(k) { e.blank } else { total };
                if from == f64::NEG_INFINITY {
                    continue;
                }
                let child = trie.child(e.prefix, k);
                let grow = next.slot(child);
                grow.label = log_add(grow.label, from + p);
            }
        }
        next.entries.retain(|e| e.total() > f64::NEG_INFINITY);
        prune(&mut next.entries, beam);
        std::mem::swap(&mut current, &mut next.entries);
        if current.is_empty() {
            // Every alignment has probability zero (a row that is −∞ everywhere): nothing to
            // rank; report the empty sequence rather than no answer.
            return vec![(Vec::new(), f64::NEG_INFINITY)];
        }
    }
    current
        .iter()
        .map(|e| (trie.spell(e.prefix), e.total()))
        .collect()
}

/// The most probable label sequence under CTC prefix beam search of width `beam` (see
/// [`prefix_beam_search_nbest`]); beam = 1 keeps one prefix per frame, which is usually, but not
/// always, the greedy decoding.
///
/// # Panics
/// If `beam` is 0 or `logits` is not T x C with C ≥ 1.
pub fn prefix_beam_search(logits: &[f32], c: usize, beam: usize) -> Vec<u32> {
    prefix_beam_search_nbest(logits, c, beam).swap_remove(0).0
}
