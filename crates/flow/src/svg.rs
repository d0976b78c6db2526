//! A small SVG writer for the run report's charts ([`crate::report`]): shapes and text, linear and
//! logarithmic scales with round ticks, a plot frame (title, legend row, grid, axes) and label
//! placement that avoids overlapping earlier labels and markers. The output has no scripts and no
//! external resources, so it can be inlined into a self-contained HTML page.

use std::fmt::Write;

/// Font stack of every text element.
pub const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";

/// Escapes text for SVG/HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Approximate width of `text` at font size `size` (no font metrics at hand: the average advance
/// of a sans-serif font, slightly generous).
pub fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.6
}

/// A stroke: colour, width and an optional dash pattern.
#[derive(Clone, Copy, Debug)]
pub struct Stroke {
    pub color: &'static str,
    pub width: f64,
    pub dash: Option<&'static str>,
}

impl Stroke {
    pub const fn solid(color: &'static str, width: f64) -> Stroke {
        Stroke {
            color,
            width,
            dash: None,
        }
    }
    pub const fn dashed(color: &'static str, width: f64) -> Stroke {
        Stroke {
            color,
            width,
            dash: Some("5 4"),
        }
    }
    fn attrs(&self) -> String {
        let mut s = format!(r#"stroke="{}" stroke-width="{}""#, self.color, self.width);
        if let Some(d) = self.dash {
            let _ = write!(s, r#" stroke-dasharray="{d}""#);
        }
        s
    }
}

/// Horizontal text alignment at the anchor point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// How a text element looks.
#[derive(Clone, Copy, Debug)]
pub struct TextStyle {
    pub size: f64,
    pub anchor: Anchor,
    pub color: &'static str,
    pub bold: bool,
    /// Rotation about the anchor point, degrees (−90: reads bottom to top).
    pub rotate: f64,
}

impl TextStyle {
    pub const fn new(size: f64) -> TextStyle {
        TextStyle {
            size,
            anchor: Anchor::Start,
            color: "#222",
            bold: false,
            rotate: 0.0,
        }
    }
    pub const fn anchor(mut self, a: Anchor) -> TextStyle {
        self.anchor = a;
        self
    }
    pub const fn color(mut self, c: &'static str) -> TextStyle {
        self.color = c;
        self
    }
    pub const fn bold(mut self) -> TextStyle {
        self.bold = true;
        self
    }
    pub const fn rotate(mut self, deg: f64) -> TextStyle {
        self.rotate = deg;
        self
    }
}

fn n(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// An SVG document being drawn.
#[derive(Clone, Debug)]
pub struct Svg {
    width: f64,
    height: f64,
    body: String,
}

impl Svg {
    pub fn new(width: f64, height: f64) -> Svg {
        Svg {
            width,
            height,
            body: String::new(),
        }
    }

    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), s: Stroke) {
        let _ = writeln!(
            self.body,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" {}/>"#,
            n(a.0),
            n(a.1),
            n(b.0),
            n(b.1),
            s.attrs()
        );
    }

    pub fn polyline(&mut self, pts: &[(f64, f64)], s: Stroke) {
        if pts.len() < 2 {
            return;
        }
        let p: Vec<String> = pts
            .iter()
            .map(|p| format!("{},{}", n(p.0), n(p.1)))
            .collect();
        let _ = writeln!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke-linejoin="round" {}/>"#,
            p.join(" "),
            s.attrs()
        );
    }

    /// A circle; `title` becomes a hover tooltip.
    pub fn circle(
        &mut self,
        c: (f64, f64),
        r: f64,
        fill: &str,
        stroke: Option<Stroke>,
        title: Option<&str>,
    ) {
        let st = stroke.map_or(String::new(), |s| s.attrs());
        match title {
            Some(t) => {
                let _ = writeln!(
                    self.body,
                    r#"<circle cx="{}" cy="{}" r="{}" fill="{fill}" {st}><title>{}</title></circle>"#,
                    n(c.0),
                    n(c.1),
                    n(r),
                    esc(t)
                );
            }
            None => {
                let _ = writeln!(
                    self.body,
                    r#"<circle cx="{}" cy="{}" r="{}" fill="{fill}" {st}/>"#,
                    n(c.0),
                    n(c.1),
                    n(r)
                );
            }
        }
    }

    /// A diamond (a square turned 45°) of half-diagonal `r`.
    pub fn diamond(&mut self, c: (f64, f64), r: f64, fill: &str, stroke: Stroke) {
        let (x, y) = c;
        let _ = writeln!(
            self.body,
            r#"<polygon points="{},{} {},{} {},{} {},{}" fill="{fill}" {}/>"#,
            n(x),
            n(y - r),
            n(x + r),
            n(y),
            n(x),
            n(y + r),
            n(x - r),
            n(y),
            stroke.attrs()
        );
    }

    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, stroke: Option<Stroke>) {
        let st = stroke.map_or(String::new(), |s| s.attrs());
        let _ = writeln!(
            self.body,
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{fill}" {st}/>"#,
            n(x),
            n(y),
            n(w.max(0.0)),
            n(h.max(0.0))
        );
    }

    pub fn text(&mut self, p: (f64, f64), text: &str, t: TextStyle) {
        let anchor = match t.anchor {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        };
        let mut attrs = format!(
            r#"x="{}" y="{}" font-size="{}" text-anchor="{anchor}" fill="{}""#,
            n(p.0),
            n(p.1),
            t.size,
            t.color
        );
        if t.bold {
            attrs.push_str(r#" font-weight="bold""#);
        }
        if t.rotate != 0.0 {
            let _ = write!(
                attrs,
                r#" transform="rotate({} {} {})""#,
                t.rotate,
                n(p.0),
                n(p.1)
            );
        }
        let _ = writeln!(self.body, "<text {attrs}>{}</text>", esc(text));
    }

    /// The document. `standalone` adds the XML namespace a `.svg` file needs; inline SVG in HTML
    /// does without it (and so without any `http://` reference).
    pub fn finish(&self, standalone: bool) -> String {
        let ns = if standalone {
            r#" xmlns="http://www.w3.org/2000/svg""#
        } else {
            ""
        };
        format!(
            "<svg{ns} width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"{FONT}\" role=\"img\">\n\
             <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n{}</svg>\n",
            self.body,
            w = n(self.width),
            h = n(self.height),
        )
    }
}

/// A map from data values to pixels, linear or logarithmic.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    p0: f64,
    p1: f64,
}

/// A round step near `span / count`: 1, 2 or 5 times a power of ten.
pub fn nice_step(span: f64, count: usize) -> f64 {
    let raw = (span / count.max(1) as f64).max(1e-12);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    };
    m * mag
}

impl Scale {
    /// A linear scale over `lo..hi` (widened when empty).
    pub fn linear(lo: f64, hi: f64) -> Scale {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            let d = lo.abs().max(1.0) * 0.1;
            (lo - d, hi + d)
        };
        Scale {
            lo,
            hi,
            log: false,
            p0: 0.0,
            p1: 1.0,
        }
    }

    /// A logarithmic scale over `lo..hi`; both must be positive.
    pub fn log(lo: f64, hi: f64) -> Scale {
        let lo = lo.max(1e-12);
        let hi = if hi > lo { hi } else { lo * 2.0 };
        Scale {
            lo,
            hi,
            log: true,
            p0: 0.0,
            p1: 1.0,
        }
    }

    /// Logarithmic when the values span more than `ratio`, linear (from zero when `from_zero`)
    /// otherwise; padded by `pad` of the span (a factor on the log scale).
    pub fn fit(lo: f64, hi: f64, ratio: f64, from_zero: bool, pad: f64) -> Scale {
        if lo > 0.0 && hi / lo > ratio {
            Scale::log(lo / (1.0 + pad), hi * (1.0 + pad))
        } else {
            let span = if from_zero {
                hi.abs()
            } else {
                (hi - lo).max(hi.abs() * 0.05)
            };
            let d = span.max(1e-9) * pad;
            let l = if from_zero { 0.0f64.min(lo) } else { lo - d };
            Scale::linear(l, hi + d)
        }
    }

    fn pixels(mut self, p0: f64, p1: f64) -> Scale {
        self.p0 = p0;
        self.p1 = p1;
        self
    }

    pub fn map(&self, v: f64) -> f64 {
        let t = if self.log {
            (v.max(1e-12).ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.p0 + t * (self.p1 - self.p0)
    }

    /// Round tick values inside the range.
    pub fn ticks(&self) -> Vec<f64> {
        if self.log && self.hi / self.lo > 3.0 {
            let mut out = Vec::new();
            let mults: &[f64] = if self.hi / self.lo > 300.0 {
                &[1.0]
            } else if self.hi / self.lo > 30.0 {
                &[1.0, 3.0]
            } else {
                &[1.0, 2.0, 5.0]
            };
            let mut e = self.lo.log10().floor() as i32;
            while 10f64.powi(e) <= self.hi {
                for m in mults {
                    let v = m * 10f64.powi(e);
                    if v >= self.lo && v <= self.hi {
                        out.push(v);
                    }
                }
                e += 1;
            }
            return out;
        }
        let step = nice_step(self.hi - self.lo, 6);
        let mut v = (self.lo / step).ceil() * step;
        let mut out = Vec::new();
        while v <= self.hi + step * 1e-9 {
            out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
            v += step;
        }
        out
    }

    /// A tick label: as many decimals as the tick spacing needs.
    pub fn label(&self, v: f64, ticks: &[f64]) -> String {
        let step = if self.log {
            v
        } else if ticks.len() > 1 {
            ticks[1] - ticks[0]
        } else {
            v.abs().max(1.0)
        };
        // (nudged: a step of 0.00999… from float steps still means two decimals)
        let dec = (-(step.abs() * (1.0 + 1e-9)).log10().floor()).clamp(0.0, 6.0) as usize;
        format!("{v:.dec$}")
    }
}

/// A legend entry's symbol.
#[derive(Clone, Copy, Debug)]
pub enum Mark {
    Line(Stroke),
    Dot {
        fill: &'static str,
        stroke: Stroke,
        r: f64,
    },
    Diamond(&'static str),
    Band(&'static str),
}

/// A chart: the frame is drawn on creation, data are then drawn through [`Plot::at`].
pub struct Plot {
    pub svg: Svg,
    pub x: Scale,
    pub y: Scale,
    /// Plot area: left, top, right, bottom (pixels).
    pub area: (f64, f64, f64, f64),
    taken: Vec<(f64, f64, f64, f64)>,
}

const LEGEND_SIZE: f64 = 11.5;

fn legend_width(label: &str) -> f64 {
    26.0 + text_width(label, LEGEND_SIZE) + 16.0
}

/// Legend entries split into rows that fit between `x0` and `x1`.
fn legend_rows(items: &[(Mark, &str)], x0: f64, x1: f64) -> Vec<std::ops::Range<usize>> {
    let mut rows = Vec::new();
    let (mut start, mut x) = (0, x0);
    for (k, (_, label)) in items.iter().enumerate() {
        let w = legend_width(label);
        if k > start && x + w - 16.0 > x1 {
            rows.push(start..k);
            (start, x) = (k, x0);
        }
        x += w;
    }
    if start < items.len() {
        rows.push(start..items.len());
    }
    rows
}

/// Chart axes: labels and scales.
pub struct Axes<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x: Scale,
    pub y: Scale,
}

impl Plot {
    /// A `width` × `height` chart with title, legend (wrapped onto as many rows as it needs,
    /// between the title and the plot area), grid, ticks and axis labels.
    pub fn new(width: f64, height: f64, axes: &Axes<'_>, legend: &[(Mark, &str)]) -> Plot {
        let rows = legend_rows(legend, 72.0, width - 24.0);
        let top = 34.0 + 18.0 * rows.len() as f64 + 8.0;
        let area = (72.0, top, width - 24.0, height - 48.0);
        let x = axes.x.pixels(area.0, area.2);
        let y = axes.y.pixels(area.3, area.1);
        let mut svg = Svg::new(width, height);
        svg.text((area.0, 22.0), axes.title, TextStyle::new(15.0).bold());
        let grid = Stroke::solid("#e6e6e6", 1.0);
        let xt = x.ticks();
        for &v in &xt {
            let px = x.map(v);
            svg.line((px, area.1), (px, area.3), grid);
            svg.line((px, area.3), (px, area.3 + 5.0), Stroke::solid("#444", 1.0));
            let t = TextStyle::new(11.0).anchor(Anchor::Middle).color("#444");
            svg.text((px, area.3 + 18.0), &x.label(v, &xt), t);
        }
        let yt = y.ticks();
        for &v in &yt {
            let py = y.map(v);
            svg.line((area.0, py), (area.2, py), grid);
            svg.line((area.0 - 5.0, py), (area.0, py), Stroke::solid("#444", 1.0));
            let t = TextStyle::new(11.0).anchor(Anchor::End).color("#444");
            svg.text((area.0 - 8.0, py + 4.0), &y.label(v, &yt), t);
        }
        let axis = Stroke::solid("#444", 1.2);
        svg.line((area.0, area.3), (area.2, area.3), axis);
        svg.line((area.0, area.1), (area.0, area.3), axis);
        let mid = TextStyle::new(12.0).anchor(Anchor::Middle);
        svg.text(((area.0 + area.2) / 2.0, height - 10.0), axes.x_label, mid);
        let ymid = (area.1 + area.3) / 2.0;
        svg.text((16.0, ymid), axes.y_label, mid.rotate(-90.0));
        let mut p = Plot {
            svg,
            x,
            y,
            area,
            taken: Vec::new(),
        };
        for (k, row) in rows.iter().enumerate() {
            p.legend_row(&legend[row.clone()], 40.0 + 18.0 * k as f64);
        }
        p
    }

    /// Pixel position of a data point.
    pub fn at(&self, x: f64, y: f64) -> (f64, f64) {
        (self.x.map(x), self.y.map(y))
    }

    fn legend_row(&mut self, items: &[(Mark, &str)], y: f64) {
        let mut x = self.area.0;
        for (mark, label) in items {
            match *mark {
                Mark::Line(s) => self.svg.line((x, y), (x + 20.0, y), s),
                Mark::Dot { fill, stroke, r } => {
                    self.svg.circle((x + 10.0, y), r, fill, Some(stroke), None)
                }
                Mark::Diamond(c) => self
                    .svg
                    .diamond((x + 10.0, y), 5.0, c, Stroke::solid(c, 1.0)),
                Mark::Band(c) => self.svg.rect(x, y - 6.0, 20.0, 12.0, c, None),
            }
            let t = TextStyle::new(LEGEND_SIZE).color("#333");
            self.svg.text((x + 26.0, y + 4.0), label, t);
            x += legend_width(label);
        }
    }

    /// Marks a rectangle (left, top, right, bottom) as taken, e.g. by a marker.
    pub fn occupy(&mut self, b: (f64, f64, f64, f64)) {
        self.taken.push(b);
    }

    fn text_box(p: (f64, f64), text: &str, t: TextStyle) -> (f64, f64, f64, f64) {
        let w = text_width(text, t.size);
        let x0 = match t.anchor {
            Anchor::Start => p.0,
            Anchor::Middle => p.0 - w / 2.0,
            Anchor::End => p.0 - w,
        };
        (
            x0 - 1.0,
            p.1 - t.size * 0.85,
            x0 + w + 1.0,
            p.1 + t.size * 0.25,
        )
    }

    /// Draws `text` at the first candidate (position, anchor) where it overlaps no earlier label
    /// or occupied box and stays inside the chart; where none fits, at the candidate overlapping
    /// least. Returns the position used.
    pub fn place(&mut self, cands: &[(f64, f64, Anchor)], text: &str, t: TextStyle) -> (f64, f64) {
        let (w, h) = (self.svg.width, self.svg.height);
        let mut best: Option<(f64, usize)> = None;
        for (k, &(x, y, a)) in cands.iter().enumerate() {
            let b = Plot::text_box((x, y), text, t.anchor(a));
            let outside = b.0 < 2.0 || b.2 > w - 2.0 || b.1 < 2.0 || b.3 > h - 2.0;
            let overlap: f64 = self.taken.iter().map(|o| overlap(&b, o)).sum();
            let cost = overlap + if outside { 1e6 } else { 0.0 };
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, k));
            }
            if cost == 0.0 {
                break;
            }
        }
        let Some((_, k)) = best else {
            return (0.0, 0.0);
        };
        let (x, y, a) = cands[k];
        let t = t.anchor(a);
        self.taken.push(Plot::text_box((x, y), text, t));
        self.svg.text((x, y), text, t);
        (x, y)
    }

    pub fn finish(&self, standalone: bool) -> String {
        self.svg.finish(standalone)
    }
}

fn overlap(a: &(f64, f64, f64, f64), b: &(f64, f64, f64, f64)) -> f64 {
    let w = (a.2.min(b.2) - a.0.max(b.0)).max(0.0);
    let h = (a.3.min(b.3) - a.1.max(b.1)).max(0.0);
    w * h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        let s = Scale::linear(0.0, 9.3);
        assert_eq!(s.ticks(), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        let l = Scale::log(80.0, 2000.0);
        assert_eq!(l.ticks(), vec![100.0, 200.0, 500.0, 1000.0, 2000.0]);
        let l = Scale::log(80.0, 9000.0);
        assert_eq!(l.ticks(), vec![100.0, 300.0, 1000.0, 3000.0]);
        assert_eq!(s.label(4.0, &s.ticks()), "4");
        let f = Scale::linear(0.1, 0.5);
        assert_eq!(f.label(0.2, &f.ticks()), "0.20");
        assert_eq!(f.label(4.18, &[4.18, 4.19]), "4.18");
    }

    #[test]
    fn map_and_escape() {
        let s = Scale::linear(0.0, 10.0).pixels(100.0, 200.0);
        assert_eq!(s.map(5.0), 150.0);
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn labels_avoid_each_other() {
        let axes = Axes {
            title: "t",
            x_label: "x",
            y_label: "y",
            x: Scale::linear(0.0, 1.0),
            y: Scale::linear(0.0, 1.0),
        };
        let mut p = Plot::new(400.0, 300.0, &axes, &[]);
        let c = [(100.0, 100.0, Anchor::Start), (100.0, 130.0, Anchor::Start)];
        assert_eq!(p.place(&c, "label", TextStyle::new(11.0)), (100.0, 100.0));
        assert_eq!(p.place(&c, "label", TextStyle::new(11.0)), (100.0, 130.0));
        assert!(p.finish(true).ends_with("</svg>\n"));
    }

    #[test]
    fn legend_wraps() {
        let m = Mark::Band("red");
        let items = [(m, "aaaaaaaaaa"), (m, "bbbbbbbbbb"), (m, "cc")];
        // Each of the long entries is 26 + 69 + 16 = 111 px wide.
        assert_eq!(legend_rows(&items, 0.0, 200.0), vec![0..1, 1..3]);
        assert_eq!(legend_rows(&items, 0.0, 1000.0), vec![0..3]);
        assert_eq!(
            legend_rows(&[], 0.0, 10.0),
            Vec::<std::ops::Range<usize>>::new()
        );
    }
}
