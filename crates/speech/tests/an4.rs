//! The real AN4 corpus (when `../shared/data/an4` is there) and malformed inputs written here.

use speech::an4::{load_split, Split};
use speech::features::{spectrogram, SpectrogramSpec};
use speech::wav::read_wav;
use std::path::{Path, PathBuf};

fn an4() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/an4");
    if d.join("etc/an4_train.fileids").is_file() {
        Some(d)
    } else {
        eprintln!("skipped: no AN4 at {}", d.display());
        None
    }
}

#[test]
fn the_real_corpus_loads_with_its_published_sizes() {
    let Some(dir) = an4() else { return };
    let train = load_split(&dir, Split::Train).unwrap();
    let test = load_split(&dir, Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (948, 130));
    assert_eq!(train[0].text, "YES");
    assert_eq!(test[0].text, "RUBOUT G M E F THREE NINE");
    // baselines.md: the test set has 773 words.
    let words: usize = test.iter().map(|u| u.text.split_whitespace().count()).sum();
    assert_eq!(words, 773);
    let spec = SpectrogramSpec::deepspeech(16_000);
    for u in test.iter().take(5) {
        let x = read_wav(&u.wav, 16_000).unwrap();
        let s = spectrogram(&x, spec).unwrap();
        assert_eq!(s.frames, 1 + x.len() / 160);
        assert_eq!(s.bins, 161);
        assert!(s.values.iter().all(|v| v.is_finite()));
    }
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("symbiont-speech-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(path: &Path, channels: u16, rate: u32, bits: u16, n: usize) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..n * channels as usize {
        if bits == 16 {
            w.write_sample((i % 100) as i16 * 100).unwrap();
        } else {
            w.write_sample((i % 100) as i8).unwrap();
        }
    }
    w.finalize().unwrap();
}

#[test]
fn bad_audio_files_are_named_with_what_is_wrong() {
    let d = temp("wav");
    let err = |p: &Path| read_wav(p, 16_000).unwrap_err().to_string();
    let good = d.join("good.wav");
    write(&good, 1, 16_000, 16, 800);
    assert_eq!(read_wav(&good, 16_000).unwrap().len(), 800);
    let rate = d.join("rate.wav");
    write(&rate, 1, 8_000, 16, 800);
    assert!(err(&rate).contains("rate.wav") && err(&rate).contains("8000 Hz"));
    let stereo = d.join("stereo.wav");
    write(&stereo, 2, 16_000, 16, 800);
    assert!(err(&stereo).contains("2 channels"));
    let eight = d.join("eight.wav");
    write(&eight, 1, 16_000, 8, 800);
    assert!(err(&eight).contains("16-bit"));
    let cut = d.join("cut.wav");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 301]).unwrap();
    assert!(err(&cut).contains("cut.wav"), "{}", err(&cut));
    let text = d.join("text.wav");
    std::fs::write(&text, "not audio at all").unwrap();
    assert!(err(&text).contains("not a readable WAV"), "{}", err(&text));
    assert!(err(&d.join("missing.wav")).contains("missing.wav"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn lists_and_transcriptions_must_agree() {
    let d = temp("lists");
    std::fs::create_dir_all(d.join("etc")).unwrap();
    std::fs::create_dir_all(d.join("wav/a/s")).unwrap();
    write(&d.join("wav/a/s/u1.wav"), 1, 16_000, 16, 800);
    let lists = |ids: &str, text: &str| {
        std::fs::write(d.join("etc/an4_test.fileids"), ids).unwrap();
        std::fs::write(d.join("etc/an4_test.transcription"), text).unwrap();
        load_split(&d, Split::Test).map_err(|e| e.to_string())
    };
    assert_eq!(
        lists("a/s/u1\n", "HELLO WORLD (u1)\n").unwrap()[0].text,
        "HELLO WORLD"
    );
    assert!(lists("a/s/u1\n", "HELLO (u2)\n")
        .unwrap_err()
        .contains(":1: transcribes `u2`"));
    assert!(lists("a/s/u1\na/s/u2\n", "HELLO (u1)\n")
        .unwrap_err()
        .contains("1 transcriptions for the 2 files"));
    assert!(lists("a/s/u1\n", "HELL0 (u1)\n")
        .unwrap_err()
        .contains("'0' has no label"));
    assert!(lists("a/s/u3\n", "HI (u3)\n")
        .unwrap_err()
        .contains("listed but missing"));
    let _ = std::fs::remove_dir_all(&d);
}
