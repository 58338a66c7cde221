//! The two exposition formats `/metrics` speaks, and how it picks one.
//!
//! prometheus-client encodes only OpenMetrics text. Scrapers that ask for it (Prometheus does,
//! in its `Accept` header) get that as it is; everything else gets the Prometheus text format
//! 0.0.4, made from the OpenMetrics text by [`openmetrics_to_prometheus`]: the differences that
//! matter are the counters' descriptor names (`_total` in 0.0.4), the `# EOF` and `# UNIT`
//! lines, `_created` series, exemplars and timestamps in seconds (milliseconds in 0.0.4).

use std::fmt::Write;

use mime::Mime;

/// Content type of the OpenMetrics text exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text exposition.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, for scrapers that ask for it.
    OpenMetrics,
    /// Prometheus text 0.0.4: the default.
    Prometheus,
}

impl Format {
    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Prometheus => PROMETHEUS,
        }
    }
}

/// The format to answer a request with this `Accept` header in: the acceptable media range with
/// the highest `q` (the first listed on a tie); Prometheus text when the header is missing or
/// names nothing hookrelay serves (as the Prometheus client libraries do).
pub fn negotiate(accept: Option<&str>) -> Format {
    let mut best: Option<(f32, Format)> = None;
    for range in accept.unwrap_or("").split(',') {
        let Ok(mime) = range.trim().parse::<Mime>() else {
            continue;
        };
        let Some(format) = offered(&mime) else {
            continue;
        };
        let q = mime
            .get_param("q")
            .and_then(|q| q.as_str().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, format));
        }
    }
    best.map_or(Format::Prometheus, |(_, format)| format)
}

/// The format that serves media range `mime`, if any.
fn offered(mime: &Mime) -> Option<Format> {
    let version = mime.get_param("version").map(|v| v.as_str().to_owned());
    match (mime.type_().as_str(), mime.subtype().as_str()) {
        // 0.0.1 is the draft Prometheus 2 also offers; the 1.0.0 text is what it parses.
        ("application", "openmetrics-text")
            if matches!(version.as_deref(), None | Some("1.0.0" | "0.0.1")) =>
        {
            Some(Format::OpenMetrics)
        }
        // Any text/plain version: hookrelay's names are plain ASCII, so a 0.0.4 body is also
        // valid in the later text versions.
        ("text", "plain") | ("text", "*") | ("*", "*") => Some(Format::Prometheus),
        _ => None,
    }
}

/// Rewrites an OpenMetrics text exposition (as prometheus-client writes it) as Prometheus text
/// 0.0.4. Metric types 0.0.4 lacks become what 0.0.4 has: `info` a gauge named `…_info`,
/// `unknown` untyped; `stateset` and `gaugehistogram` (prometheus-client writes neither) lose
/// their TYPE line and so are untyped.
pub fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // The family the samples being read belong to: (name, OpenMetrics type).
    let mut family: (&str, &str) = ("", "unknown");
    for line in openmetrics.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let (keyword, rest) = comment.split_once(' ').unwrap_or((comment, ""));
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            match keyword {
                "TYPE" => {
                    family = (name, text);
                    if let Some(kind) = prometheus_type(text) {
                        let _ = writeln!(out, "# TYPE {} {kind}", series_name(name, text));
                    }
                }
                "HELP" => {
                    let kind = type_of(openmetrics, name);
                    let _ = writeln!(out, "# HELP {} {}", series_name(name, kind), help(text));
                }
                // EOF, UNIT and anything else 0.0.4 does not know.
                _ => {}
            }
        } else if !line.is_empty() {
            if let Some(sample) = sample(line, family) {
                out.push_str(&sample);
                out.push('\n');
            }
        }
    }
    out
}

/// The OpenMetrics type of family `name` (the TYPE line follows its HELP line).
fn type_of<'a>(openmetrics: &'a str, name: &str) -> &'a str {
    openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.split_once(' '))
        .find(|(family, _)| *family == name)
        .map_or("unknown", |(_, kind)| kind)
}

/// The name 0.0.4 descriptors use: the sample's name for the types whose one sample has a
/// suffix.
fn series_name(name: &str, kind: &str) -> String {
    match kind {
        "counter" => format!("{name}_total"),
        "info" => format!("{name}_info"),
        _ => name.to_string(),
    }
}

fn prometheus_type(kind: &str) -> Option<&'static str> {
    match kind {
        "counter" => Some("counter"),
        "gauge" | "info" => Some("gauge"),
        "histogram" => Some("histogram"),
        "summary" => Some("summary"),
        "unknown" => Some("untyped"),
        _ => None,
    }
}

/// HELP text unescaped from OpenMetrics (`\\`, `\n`, `\"`) and escaped for 0.0.4 (`\\`, `\n`).
fn help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push_str("\\\\"),
        }
    }
    out
}

/// One sample line in 0.0.4: without an exemplar, the timestamp in milliseconds; `None` for
/// an OpenMetrics-only `_created` series.
fn sample(line: &str, (family, kind): (&str, &str)) -> Option<String> {
    let end = series_end(line);
    let (series, rest) = line.split_at(end);
    let name = series.split('{').next().unwrap_or(series);
    let created = matches!(kind, "counter" | "histogram" | "summary")
        && name.strip_prefix(family) == Some("_created");
    if created {
        return None;
    }
    // Value, optional timestamp, optional ` # {exemplar labels} value [timestamp]`.
    let rest = rest.split(" # ").next().unwrap_or(rest);
    let mut fields = rest.split_whitespace();
    let value = fields.next().unwrap_or("");
    let mut out = format!("{series} {value}");
    if let Some(seconds) = fields.next().and_then(|t| t.parse::<f64>().ok()) {
        let _ = write!(out, " {}", (seconds * 1000.0).round() as i64);
    }
    Some(out)
}

/// Where the series (name and label set) of a sample line ends, skipping over quoted label
/// values (which may hold spaces, `}` and `#`).
fn series_end(line: &str) -> usize {
    let Some(open) = line.find(['{', ' ']) else {
        return line.len();
    };
    if line.as_bytes()[open] == b' ' {
        return open;
    }
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line.char_indices().skip_while(|(i, _)| *i <= open) {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return i + 1,
            _ => {}
        }
    }
    line.len()
}

#[cfg(test)]
mod tests;
