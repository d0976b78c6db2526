//! The AN4 corpus laid out as in `../shared/data/an4`: `etc/an4_{train,test}.fileids` (one
//! `dir/speaker/utterance` per line), `etc/an4_{train,test}.transcription` (`<s> TEXT </s> (id)`
//! in the training list, `TEXT (id)` in the test one) and `wav/<fileid>.wav`. Lists and
//! transcriptions are matched line by line and must name the same utterance.

use crate::labels::encode;
use crate::SpeechError;
use std::path::{Path, PathBuf};

/// One utterance: its id, its audio file and its transcript (upper case, single spaces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Utterance {
    pub id: String,
    pub wav: PathBuf,
    pub text: String,
}

/// AN4's two lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn stem(self) -> &'static str {
        match self {
            Split::Train => "an4_train",
            Split::Test => "an4_test",
        }
    }
}

/// `line` of a transcription without `<s>`, `</s>` and the trailing `(id)`: (text, id).
pub fn parse_transcription(line: &str) -> Result<(String, String), String> {
    let line = line.trim();
    let open = line
        .rfind('(')
        .filter(|_| line.ends_with(')'))
        .ok_or("the line does not end with the utterance id in parentheses")?;
    let id = line[open + 1..line.len() - 1].trim().to_string();
    if id.is_empty() {
        return Err("the utterance id in parentheses is empty".into());
    }
    let words: Vec<&str> = line[..open]
        .split_whitespace()
        .filter(|w| *w != "<s>" && *w != "</s>")
        .collect();
    Ok((words.join(" ").to_uppercase(), id))
}

/// The utterances of `split` under `dir`. Every transcript must be encodable in the 29 labels
/// and every listed WAV must exist; errors name the file and line.
pub fn load_split(dir: &Path, split: Split) -> Result<Vec<Utterance>, SpeechError> {
    let etc = dir.join("etc");
    let ids_path = etc.join(format!("{}.fileids", split.stem()));
    let text_path = etc.join(format!("{}.transcription", split.stem()));
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| SpeechError::io(p, e));
    let (ids, texts) = (read(&ids_path)?, read(&text_path)?);
    let ids: Vec<&str> = ids.lines().filter(|l| !l.trim().is_empty()).collect();
    let texts: Vec<(usize, &str)> = texts
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    if ids.len() != texts.len() {
        return Err(SpeechError::invalid(
            &text_path,
            format!(
                "{} transcriptions for the {} files of {}",
                texts.len(),
                ids.len(),
                ids_path.display()
            ),
        ));
    }
    if ids.is_empty() {
        return Err(SpeechError::invalid(&ids_path, "lists no utterance"));
    }
    let mut out = Vec::with_capacity(ids.len());
    for (fileid, (line_no, line)) in ids.iter().zip(texts) {
        let at = format!("{}:{}", text_path.display(), line_no + 1);
        let (text, id) = parse_transcription(line).map_err(|r| SpeechError::invalid(&at, r))?;
        let fileid = fileid.trim();
        if fileid.rsplit('/').next() != Some(id.as_str()) {
            return Err(SpeechError::invalid(
                &at,
                format!("transcribes `{id}` where the file list has `{fileid}`"),
            ));
        }
        encode(&text).map_err(|r| SpeechError::invalid(&at, r))?;
        let wav = dir.join("wav").join(format!("{fileid}.wav"));
        if !wav.is_file() {
            return Err(SpeechError::invalid(&wav, "listed but missing"));
        }
        out.push(Utterance { id, wav, text });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcription_lines_lose_their_markers_and_keep_their_id() {
        assert_eq!(
            parse_transcription("<s> YES </s> (an251-fash-b)").unwrap(),
            ("YES".into(), "an251-fash-b".into())
        );
        assert_eq!(
            parse_transcription("RUBOUT G M E F THREE NINE (an406-fcaw-b)").unwrap(),
            ("RUBOUT G M E F THREE NINE".into(), "an406-fcaw-b".into())
        );
        assert!(parse_transcription("YES").is_err());
        assert!(parse_transcription("YES ()").is_err());
    }
}
