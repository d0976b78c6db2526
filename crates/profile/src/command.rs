//! `CommandEngine`: times any runtime through an external command that measures itself and
//! prints its samples as a JSON line (the contract is in docs/profiler.md).

use crate::{Engine, EngineInfo, Point, Prepared, ProfileError};
use serde_json::Value;
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The placeholders a template may use; each is also set as `SYMBIONT_<NAME>` in the
/// environment (`{gate_width}` → `SYMBIONT_GATE_WIDTH`).
pub const PLACEHOLDERS: [&str; 10] = [
    "hidden",
    "input",
    "gate_width",
    "layers",
    "batch",
    "seq",
    "threads",
    "dtype",
    "density",
    "format",
];

/// An engine that runs a shell command (`sh -c`) per configuration (one-shot mode) or keeps one
/// process alive and sends it one JSON configuration per line (persistent mode).
pub struct CommandEngine {
    template: String,
    persistent: bool,
    timeout: Duration,
    target_ms: f64,
    version: String,
    device: Option<String>,
    process: Option<Rc<RefCell<Persistent>>>,
}

impl CommandEngine {
    /// Checks the template: `{name}` with a lower-case name must be a known placeholder (a typo
    /// would otherwise reach the shell); other braces, such as JSON, stay as written.
    pub fn new(template: &str) -> Result<CommandEngine, ProfileError> {
        if template.trim().is_empty() {
            return Err(ProfileError::spec(
                "--command",
                template,
                "the command is empty",
            ));
        }
        for name in placeholders(template) {
            if !PLACEHOLDERS.contains(&name) {
                return Err(ProfileError::spec(
                    "--command",
                    template,
                    format!(
                        "unknown placeholder {{{name}}} (known: {})",
                        PLACEHOLDERS.join(", ")
                    ),
                ));
            }
        }
        Ok(CommandEngine {
            template: template.to_string(),
            persistent: false,
            timeout: Duration::from_secs(600),
            target_ms: 200.0,
            version: String::new(),
            device: None,
            process: None,
        })
    }

    /// Persistent mode: the command is started once, without placeholders.
    pub fn persistent(mut self, on: bool) -> Result<CommandEngine, ProfileError> {
        if on && !placeholders(&self.template).is_empty() {
            return Err(ProfileError::spec(
                "--command",
                &self.template,
                "a persistent command reads configurations from stdin and takes no placeholders",
            ));
        }
        self.persistent = on;
        Ok(self)
    }

    /// Longest wait for one run (one configuration) before the command is killed.
    pub fn timeout(mut self, t: Duration) -> CommandEngine {
        self.timeout = t;
        self
    }

    /// How long the sweep would like one run to spend timing; passed in seconds as
    /// `SYMBIONT_TARGET_S` (and `target_s` in persistent requests). A hint: the command decides.
    pub fn target_ms(mut self, ms: f64) -> CommandEngine {
        self.target_ms = ms;
        self
    }

    /// The engine version and device recorded in the table (e.g. "torch 2.11", "H200").
    pub fn provenance(mut self, version: Option<String>, device: Option<String>) -> CommandEngine {
        if let Some(v) = version {
            self.version = v;
        }
        self.device = device;
        self
    }

    /// The command line for a configuration: placeholders replaced by values (shell-quoted
    /// when they are not plain words).
    pub fn render(&self, p: &Point) -> String {
        let fields = p.fields();
        substitute(&self.template, |name| {
            fields
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| shell_word(v))
        })
    }

    fn env(&self, p: &Point) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = p
            .fields()
            .into_iter()
            .map(|(n, v)| (format!("SYMBIONT_{}", n.to_uppercase()), v))
            .collect();
        env.push((
            "SYMBIONT_TARGET_S".into(),
            (self.target_ms / 1e3).to_string(),
        ));
        env
    }
}

impl Engine for CommandEngine {
    fn info(&self) -> EngineInfo {
        let mut info = EngineInfo::new("command", self.version.clone());
        info.device = self.device.clone();
        info.self_timed = true;
        info.details.insert("command".into(), self.template.clone());
        let mode = if self.persistent {
            "persistent"
        } else {
            "one-shot"
        };
        info.details.insert("mode".into(), mode.into());
        info
    }

    fn prepare(&mut self, point: &Point) -> Result<Box<dyn Prepared>, ProfileError> {
        if !self.persistent {
            return Ok(Box::new(OneShot {
                command: self.render(point),
                env: self.env(point),
                timeout: self.timeout,
            }));
        }
        if self.process.is_none() {
            self.process = Some(Rc::new(RefCell::new(Persistent::start(&self.template)?)));
        }
        Ok(Box::new(PersistentRun {
            process: Rc::clone(self.process.as_ref().expect("started above")),
            request: request_line(point, self.target_ms),
            timeout: self.timeout,
        }))
    }
}

struct OneShot {
    command: String,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Prepared for OneShot {
    fn run(&mut self) -> Result<Vec<f64>, ProfileError> {
        let fail = |reason: String, tail: String| ProfileError::Command {
            command: self.command.clone(),
            reason,
            stderr_tail: tail,
        };
        let mut child = shell(&self.command)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("could not start `sh`: {e}"), String::new()))?;
        let out = read_all(child.stdout.take().expect("piped"));
        let err = read_all(child.stderr.take().expect("piped"));
        let status = wait_with_timeout(&mut child, self.timeout);
        let stdout = out.join().unwrap_or_default();
        let tail = tail_of(&err.join().unwrap_or_default());
        let status = match status {
            Some(s) => s,
            None => {
                return Err(fail(
                    format!("timed out after {:?} and was killed", self.timeout),
                    tail,
                ))
            }
        };
        if !status.success() {
            return Err(fail(format!("failed ({status})"), tail));
        }
        match stdout.lines().rev().find_map(parse_result_line) {
            Some(Ok(samples)) => Ok(samples),
            Some(Err(why)) => Err(fail(why, tail)),
            None => Err(fail(
                "printed no result line: the last line of stdout that is a JSON object with \"samples_ms\": [numbers] or \"median_ms\": number".into(),
                tail,
            )),
        }
    }
}

/// A long-lived command: one JSON configuration per line on its stdin, one JSON result per
/// line on its stdout.
struct Persistent {
    command: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Persistent {
    fn start(command: &str) -> Result<Persistent, ProfileError> {
        let mut child = shell(command)
            .env("SYMBIONT_PERSISTENT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ProfileError::Command {
                command: command.into(),
                reason: format!("could not start `sh`: {e}"),
                stderr_tail: String::new(),
            })?;
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Drained continuously so a chatty command never blocks on a full pipe.
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let mut err = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.len() > 16_384 {
                    let cut = s.len() - 8192;
                    let cut = (cut..s.len())
                        .find(|&i| s.is_char_boundary(i))
                        .unwrap_or(cut);
                    s.drain(..cut);
                }
            }
        });
        Ok(Persistent {
            command: command.into(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        })
    }

    fn fail(&mut self, reason: String) -> ProfileError {
        // Give the reader a moment to collect the last words of a dying process.
        std::thread::sleep(Duration::from_millis(50));
        let tail = tail_of(&self.stderr.lock().unwrap_or_else(|e| e.into_inner()));
        ProfileError::Command {
            command: self.command.clone(),
            reason,
            stderr_tail: tail,
        }
    }

    fn request(&mut self, line: &str, timeout: Duration) -> Result<Vec<f64>, ProfileError> {
        let sent = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{line}").and_then(|_| stdin.flush()),
            None => Err(std::io::Error::other("stdin closed")),
        };
        if let Err(e) = sent {
            let status = self.child.try_wait().ok().flatten();
            let why = match status {
                Some(s) => format!("exited ({s}) before it was sent {line}"),
                None => format!("could not be sent {line}: {e}"),
            };
            return Err(self.fail(why));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(out) => match parse_result_line(&out) {
                    Some(Ok(samples)) => return Ok(samples),
                    Some(Err(why)) => return Err(self.fail(format!("answered {line} with: {why}"))),
                    None => continue, // log lines and other chatter
                },
                Err(RecvTimeoutError::Timeout) => {
                    kill_group(&mut self.child);
                    return Err(self.fail(format!(
                        "gave no answer to {line} within {timeout:?} and was killed"
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = wait_with_timeout(&mut self.child, Duration::from_secs(2));
                    let how =
                        status.map_or("closed its stdout".to_string(), |s| format!("exited ({s})"));
                    return Err(self.fail(format!("{how} before answering {line}")));
                }
            }
        }
    }
}

impl Drop for Persistent {
    fn drop(&mut self) {
        self.stdin = None; // EOF: the command's signal to exit
        if wait_with_timeout(&mut self.child, Duration::from_secs(2)).is_none() {
            kill_group(&mut self.child);
        }
    }
}

struct PersistentRun {
    process: Rc<RefCell<Persistent>>,
    request: String,
    timeout: Duration,
}

impl Prepared for PersistentRun {
    fn run(&mut self) -> Result<Vec<f64>, ProfileError> {
        self.process
            .borrow_mut()
            .request(&self.request, self.timeout)
    }
}

/// The persistent-mode request for a configuration. Fields at their plain-LSTM defaults
/// (gate_width 0; format dense, or auto = the engine's choice) are left out, so that a script
/// that knows only dense LSTMs answers every such request and rejects, as an unknown key, what
/// it cannot time.
pub fn request_line(point: &Point, target_ms: f64) -> String {
    let mut v = serde_json::to_value(point).expect("a Point serializes");
    let obj = v.as_object_mut().expect("an object");
    if point.gate_width == 0 {
        obj.remove("gate_width");
    }
    if point.format == "dense" || point.format == "auto" {
        obj.remove("format");
    }
    obj.insert("target_s".into(), (target_ms / 1e3).into());
    v.to_string()
}

/// `sh -c COMMAND` in its own process group, so a timeout can kill everything it started.
fn shell(command: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(command).process_group(0);
    c
}

fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for the child; `None` (after killing its process group) when `timeout` passes first.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    let mut nap = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if start.elapsed() < timeout => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(20));
            }
            _ => {
                kill_group(child);
                return None;
            }
        }
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// The last 20 lines (at most 2000 characters) of a command's stderr.
fn tail_of(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let t = lines[lines.len().saturating_sub(20)..].join("\n");
    match t.char_indices().rev().nth(1999) {
        Some((i, _)) => format!("…{}", &t[i..]),
        None => t,
    }
}

/// A result line: `Some(Ok(samples))` for `{"samples_ms": [..]}` or `{"median_ms": x}`,
/// `Some(Err(..))` for `{"error": ".."}` or unusable numbers, `None` for anything else.
pub fn parse_result_line(line: &str) -> Option<Result<Vec<f64>, String>> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    let v: Value = serde_json::from_str(line).ok()?;
    let obj = v.as_object()?;
    if let Some(e) = obj.get("error") {
        return Some(Err(format!(
            "reported error: {}",
            e.as_str().map_or(e.to_string(), str::to_string)
        )));
    }
    let samples: Vec<Option<f64>> = match (obj.get("samples_ms"), obj.get("median_ms")) {
        (Some(Value::Array(a)), _) => a.iter().map(Value::as_f64).collect(),
        (Some(other), _) => return Some(Err(format!("\"samples_ms\" is not a list: {other}"))),
        (None, Some(m)) => vec![m.as_f64()],
        (None, None) => return None,
    };
    if samples.is_empty() {
        return Some(Err("\"samples_ms\" is empty".into()));
    }
    let ok: Option<Vec<f64>> = samples
        .into_iter()
        .map(|x| x.filter(|x| x.is_finite() && *x > 0.0))
        .collect();
    Some(ok.ok_or_else(|| {
        format!("latencies must be positive finite numbers of milliseconds: {line}")
    }))
}

/// Lower-case `{name}` placeholders in a template.
fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    substitute_with(template, |name| {
        out.push(name);
        None
    });
    out
}

fn substitute(template: &str, value: impl FnMut(&str) -> Option<String>) -> String {
    substitute_with(template, value)
}

fn substitute_with<'a>(
    template: &'a str,
    mut value: impl FnMut(&'a str) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            let name = &after[..name_len];
            match value(name) {
                Some(v) => out.push_str(&v),
                None => out.push_str(&rest[open..open + name_len + 2]),
            }
            rest = &after[name_len + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn shell_word(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_substitute_known_placeholders_and_keep_json() {
        let e = CommandEngine::new(r#"echo {hidden} {gate_width} '{"samples_ms":[1]}'"#).unwrap();
        let p = Point {
            gate_width: 64,
            ..Point::lstm(256)
        };
        assert_eq!(e.render(&p), r#"echo 256 64 '{"samples_ms":[1]}'"#);
        let err = CommandEngine::new("bench {hiden}")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown placeholder {hiden}"), "{err}");
        assert!(CommandEngine::new("x {hidden}")
            .unwrap()
            .persistent(true)
            .is_err());
        let q = Point {
            dtype: "f32; rm".into(),
            ..Point::lstm(8)
        };
        assert_eq!(
            CommandEngine::new("a {dtype}").unwrap().render(&q),
            "a 'f32; rm'"
        );
    }

    #[test]
    fn result_lines() {
        assert_eq!(
            parse_result_line(r#"{"samples_ms":[1.5, 2]}"#),
            Some(Ok(vec![1.5, 2.0]))
        );
        assert_eq!(
            parse_result_line(r#" {"median_ms": 3} "#),
            Some(Ok(vec![3.0]))
        );
        assert_eq!(parse_result_line(r#"{"other": 1}"#), None);
        assert_eq!(parse_result_line("warming up"), None);
        for bad in [
            r#"{"samples_ms":[]}"#,
            r#"{"samples_ms":[1,-2]}"#,
            r#"{"samples_ms":"x"}"#,
            r#"{"error":"oom"}"#,
        ] {
            assert!(matches!(parse_result_line(bad), Some(Err(_))), "{bad}");
        }
    }

    #[test]
    fn one_shot_reads_the_last_result_line_and_sees_the_environment() {
        let mut e = CommandEngine::new(
            r#"echo '{"samples_ms":[9]}'; echo "{\"samples_ms\":[$SYMBIONT_HIDDEN, {batch}]}"; echo done"#,
        )
        .unwrap();
        let p = Point {
            batch: 3,
            ..Point::lstm(7)
        };
        assert_eq!(e.prepare(&p).unwrap().run().unwrap(), vec![7.0, 3.0]);
    }

    #[test]
    fn one_shot_failures_name_the_command_and_show_stderr() {
        let p = Point::lstm(7);
        let mut e = CommandEngine::new("echo boom >&2; exit 3").unwrap();
        let err = e.prepare(&p).unwrap().run().unwrap_err().to_string();
        assert!(
            err.contains("`echo boom >&2; exit 3`") && err.contains("exit status: 3"),
            "{err}"
        );
        assert!(err.ends_with("stderr ---\nboom"), "{err}");
        let mut e = CommandEngine::new("echo 12ms").unwrap();
        let err = e.prepare(&p).unwrap().run().unwrap_err().to_string();
        assert!(err.contains("printed no result line"), "{err}");
        // A command that would run for 5 minutes: the 200 ms timeout ends it (a broken timeout
        // shows as the error missing, not as a race against a clock).
        let mut e = CommandEngine::new("sleep 300")
            .unwrap()
            .timeout(Duration::from_millis(200));
        let err = e.prepare(&p).unwrap().run().unwrap_err().to_string();
        assert!(err.contains("timed out"), "{err}");
    }

    #[test]
    fn requests_leave_out_plain_lstm_defaults() {
        let line = request_line(&Point::lstm(64), 250.0);
        let v: Value = serde_json::from_str(&line).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let want = [
            "batch", "density", "dtype", "hidden", "input", "layers", "seq", "target_s", "threads",
        ];
        assert_eq!(keys, want);
        assert_eq!(v["target_s"], 0.25);
        let h = Point {
            gate_width: 32,
            format: "csr".into(),
            density: 0.5,
            ..Point::lstm(64)
        };
        let v: Value = serde_json::from_str(&request_line(&h, 250.0)).unwrap();
        assert_eq!(
            (v["gate_width"].as_u64(), v["format"].as_str()),
            (Some(32), Some("csr"))
        );
    }

    #[test]
    fn persistent_mode_answers_one_line_per_configuration() {
        let script = r#"while read -r line; do
            h=$(echo "$line" | sed 's/.*"hidden":\([0-9]*\).*/\1/')
            echo "log: got $h"
            echo "{\"samples_ms\": [$h, $SYMBIONT_PERSISTENT]}"
        done"#;
        let mut e = CommandEngine::new(script)
            .unwrap()
            .persistent(true)
            .unwrap();
        for h in [5, 9] {
            let mut prep = e.prepare(&Point::lstm(h)).unwrap();
            assert_eq!(prep.run().unwrap(), vec![h as f64, 1.0]);
        }
        let mut dying = CommandEngine::new("read -r line; echo bye >&2; exit 1")
            .unwrap()
            .persistent(true)
            .unwrap();
        let err = dying
            .prepare(&Point::lstm(3))
            .unwrap()
            .run()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("before answering") && err.contains("bye"),
            "{err}"
        );
    }
}
