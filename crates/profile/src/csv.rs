//! CSV export and import of latency tables: one row per configuration, the target repeated on
//! every row (RFC 4180 quoting).

use crate::table::{EngineRecord, LatencyTable, TablePoint, Target};
use crate::ProfileError;

/// Column order of the export. On import the configuration columns without a default
/// (hidden, layers, batch, seq, threads, dtype) and `median_ms` are required.
pub const COLUMNS: [&str; 25] = [
    "label",
    "engine",
    "engine_version",
    "device",
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
    "median_ms",
    "p10_ms",
    "p90_ms",
    "ci_low_ms",
    "ci_high_ms",
    "noise",
    "repetitions",
    "visits",
    "converged",
    "verified",
    "verify_median_ms",
];

pub fn to_csv(table: &LatencyTable) -> String {
    let mut out = COLUMNS.join(",") + "\n";
    let opt = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
    let optu = |v: Option<usize>| v.map_or(String::new(), |x| x.to_string());
    let optb = |v: Option<bool>| v.map_or(String::new(), |x| x.to_string());
    for t in &table.targets {
        for p in &t.points {
            let row = [
                t.label.clone(),
                t.engine.name.clone(),
                t.engine.version.clone(),
                t.device.clone(),
                p.hidden.to_string(),
                p.input.to_string(),
                p.gate_width.to_string(),
                p.layers.to_string(),
                p.batch.to_string(),
                p.seq.to_string(),
                p.threads.to_string(),
                p.dtype.clone(),
                p.density.to_string(),
                p.format.clone(),
                p.median_ms.to_string(),
                opt(p.p10_ms),
                opt(p.p90_ms),
                opt(p.ci_low_ms),
                opt(p.ci_high_ms),
                opt(p.noise),
                optu(p.repetitions),
                optu(p.visits),
                optb(p.converged),
                optb(p.verified),
                opt(p.verify_median_ms),
            ];
            let cells: Vec<String> = row.iter().map(|c| quote(c)).collect();
            out += &(cells.join(",") + "\n");
        }
    }
    out
}

fn quote(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

/// Reads a CSV table (as exported, or written by hand / another tool). Rows with the same
/// label, engine, version and device form one target; missing target columns default to
/// "imported" / "unknown".
pub fn from_csv(text: &str, file: &str) -> Result<LatencyTable, ProfileError> {
    let rows = parse(text)
        .map_err(|(line, why)| ProfileError::table(file, format!("line {line}"), why))?;
    let Some((_, header)) = rows.first() else {
        return Err(ProfileError::table(
            file,
            "line 1",
            "empty file: expected a header row",
        ));
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    if let Some(h) = header.iter().find(|h| !COLUMNS.contains(&h.as_str())) {
        return Err(ProfileError::table(
            file,
            "line 1",
            format!("unknown column `{h}` (known: {})", COLUMNS.join(", ")),
        ));
    }
    let mut table = LatencyTable::new(Vec::new());
    for (line, row) in &rows[1..] {
        if row.len() == 1 && row[0].trim().is_empty() {
            continue;
        }
        if row.len() != header.len() {
            return Err(ProfileError::table(
                file,
                format!("line {line}"),
                format!("{} cells for {} columns", row.len(), header.len()),
            ));
        }
        let r = Row {
            header: &header,
            row,
            line: *line,
            file,
        };
        let point = r.point()?;
        let label = r
            .text("label")
            .or_else(|| r.text("engine"))
            .unwrap_or_else(|| "imported".into());
        let target = Target {
            label,
            engine: EngineRecord {
                name: r.text("engine").unwrap_or_else(|| "imported".into()),
                version: r.text("engine_version").unwrap_or_default(),
                details: Default::default(),
            },
            device: r.text("device").unwrap_or_else(|| "unknown".into()),
            host: None,
            measured_at: None,
            symbiont_version: None,
            settings: None,
            points: Vec::new(),
        };
        let i = match table.targets.iter().position(|t| t.key() == target.key()) {
            Some(i) => i,
            None => {
                table.targets.push(target);
                table.targets.len() - 1
            }
        };
        table.targets[i].points.push(point);
    }
    table.validate(file)?;
    Ok(table)
}

struct Row<'a> {
    header: &'a [String],
    row: &'a [String],
    line: usize,
    file: &'a str,
}

impl Row<'_> {
    fn text(&self, col: &str) -> Option<String> {
        let i = self.header.iter().position(|h| h == col)?;
        Some(self.row[i].trim().to_string()).filter(|s| !s.is_empty())
    }

    fn err(&self, col: &str, why: String) -> ProfileError {
        ProfileError::table(self.file, format!("line {} column `{col}`", self.line), why)
    }

    fn num<T: std::str::FromStr>(&self, col: &str) -> Result<Option<T>, ProfileError> {
        match self.text(col) {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| self.err(col, format!("`{s}` is not a valid value"))),
        }
    }

    fn need<T: std::str::FromStr>(&self, col: &str) -> Result<T, ProfileError> {
        self.num(col)?
            .ok_or_else(|| self.err(col, "is required".into()))
    }

    fn point(&self) -> Result<TablePoint, ProfileError> {
        let hidden: usize = self.need("hidden")?;
        let density: f64 = self.num("density")?.unwrap_or(1.0);
        Ok(TablePoint {
            hidden,
            input: self.num("input")?.unwrap_or(hidden),
            gate_width: self.num("gate_width")?.unwrap_or(0),
            layers: self.need("layers")?,
            batch: self.need("batch")?,
            seq: self.need("seq")?,
            threads: self.need("threads")?,
            dtype: self
                .text("dtype")
                .ok_or_else(|| self.err("dtype", "is required".into()))?,
            density,
            format: self
                .text("format")
                .unwrap_or_else(|| if density >= 1.0 { "dense" } else { "auto" }.into()),
            median_ms: self.need("median_ms")?,
            p10_ms: self.num("p10_ms")?,
            p90_ms: self.num("p90_ms")?,
            ci_low_ms: self.num("ci_low_ms")?,
            ci_high_ms: self.num("ci_high_ms")?,
            noise: self.num("noise")?,
            repetitions: self.num("repetitions")?,
            visits: self.num("visits")?,
            converged: self.num("converged")?,
            verified: self.num("verified")?,
            verify_median_ms: self.num("verify_median_ms")?,
            samples_ms: None,
        })
    }
}

/// A CSV record and the line it starts on.
type Record = (usize, Vec<String>);

/// RFC 4180 records; an error is the line and the reason.
fn parse(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let mut rows = Vec::new();
    let (mut row, mut cell) = (Vec::new(), String::new());
    let (mut line, mut start) = (1, 1);
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                cell.push(c);
            }
            (false, '"') if cell.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push((start, std::mem::take(&mut row)));
                line += 1;
                start = line;
            }
            (false, c) => cell.push(c),
        }
    }
    if quoted {
        return Err((start, "unterminated quoted cell".into()));
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push((start, row));
    }
    Ok(rows)
}
