//! Analytics output: reaction series as JSON rows, CSV, and a server-drawn SVG
//! chart (no JS chart library). All text put into SVG is escaped.

use std::{collections::BTreeMap, fmt::Write};

use time::{
    format_description::well_known::{Iso8601, Rfc3339},
    Date, OffsetDateTime, PrimitiveDateTime,
};

use crate::{
    protocol::timestamp_seconds,
    store::analytics::{Bucket, Point},
};

/// Colours of stamps 1–6 (readable on the dark page and in print).
const COLOURS: [&str; 6] = [
    "#ffd54f", "#4dd0e1", "#64b5f6", "#f06292", "#ba68c8", "#ff7043",
];

/// The colour of a stamp id.
pub fn colour(stamp_id: i32) -> &'static str {
    COLOURS[(stamp_id.max(1) as usize - 1) % COLOURS.len()]
}

/// Parses an ISO 8601 time: RFC 3339 (`2026-11-22T08:00:00Z`), ISO 8601's
/// other forms (`20261122T080000Z`), and without an offset (a date-time, or a
/// date at midnight) as UTC. A `+` offset that arrived as a space (a query
/// string written unencoded: `08:00:00 09:00`) reads as `+`.
pub fn parse_time(raw: &str) -> Option<OffsetDateTime> {
    let raw = raw.trim();
    let with_plus = raw
        .rfind(' ')
        .map(|i| format!("{}+{}", &raw[..i], &raw[i + 1..]));
    let candidates = std::iter::once(raw).chain(with_plus.as_deref());
    for text in candidates {
        if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
            return Some(t);
        }
        if let Ok(t) = OffsetDateTime::parse(text, &Iso8601::DEFAULT) {
            return Some(t);
        }
    }
    if let Ok(t) = PrimitiveDateTime::parse(raw, &Iso8601::DEFAULT) {
        return Some(t.assume_utc());
    }
    Date::parse(raw, &Iso8601::DEFAULT)
        .ok()
        .map(|d| d.midnight().assume_utc())
}

/// The time range of a reaction series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesRange {
    /// The buckets from the one holding `from` up to `to` (exclusive).
    Span {
        /// Start (its bucket is included).
        from: OffsetDateTime,
        /// End, exclusive.
        to: OffsetDateTime,
    },
    /// Nothing: the one bound the query gives lies beyond the stream's life
    /// on the side of the bound it leaves out (a `from` after the stream, a
    /// `to` before it began). The range collapses onto that bound.
    Empty {
        /// The given bound, reported as both `from` and `to`.
        at: OffsetDateTime,
    },
}

/// The range of a series from the query's `from` and `to`, each defaulting
/// to its end of the stream's life (`life_from`, `life_to`). `None` only when
/// both are given and `from` is after `to`; a range inverted by a default is
/// [`SeriesRange::Empty`], not an error.
pub fn series_range(
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
    life_from: OffsetDateTime,
    life_to: OffsetDateTime,
) -> Option<SeriesRange> {
    match (from, to) {
        (Some(from), Some(to)) if from > to => None,
        (Some(from), None) if from > life_to => Some(SeriesRange::Empty { at: from }),
        (None, Some(to)) if life_from > to => Some(SeriesRange::Empty { at: to }),
        (from, to) => Some(SeriesRange::Span {
            from: from.unwrap_or(life_from),
            to: to.unwrap_or(life_to),
        }),
    }
}

/// Escapes text for XML/HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The series as CSV: `bucket_start,stamp_id,stamp_name,count`.
pub fn csv(points: &[Point]) -> String {
    let mut out = String::from("bucket_start,stamp_id,stamp_name,count\n");
    for p in points {
        let name = if p.stamp_name.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", p.stamp_name.replace('"', "\"\""))
        } else {
            p.stamp_name.clone()
        };
        let _ = writeln!(
            out,
            "{},{},{},{}",
            timestamp_seconds(p.start),
            p.stamp_id,
            name,
            p.count
        );
    }
    out
}

/// A line chart of reactions per stamp over time, as an SVG element.
pub fn chart_svg(points: &[Point], bucket: Bucket) -> String {
    const W: f64 = 760.0;
    const H: f64 = 300.0;
    const LEFT: f64 = 56.0;
    const RIGHT: f64 = 130.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 44.0;
    let mut svg = String::with_capacity(4096);
    let _ = write!(
        svg,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"chart-title\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"chart-title\">Reactions per stamp over time ({} buckets)</title>",
        bucket.as_str()
    );
    if points.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#9aa7b2\">No reactions yet</text></svg>",
            W / 2.0,
            H / 2.0
        );
        return svg;
    }
    let step = bucket.seconds();
    let first = points
        .iter()
        .map(|p| p.start.unix_timestamp())
        .min()
        .unwrap();
    let last = points
        .iter()
        .map(|p| p.start.unix_timestamp())
        .max()
        .unwrap();
    let n = ((last - first) / step + 1).max(1) as usize;
    // stamp -> (name, counts per bucket)
    let mut lines: BTreeMap<i32, (String, Vec<i64>)> = BTreeMap::new();
    for p in points {
        let i = ((p.start.unix_timestamp() - first) / step) as usize;
        let e = lines
            .entry(p.stamp_id)
            .or_insert_with(|| (p.stamp_name.clone(), vec![0; n]));
        e.1[i.min(n - 1)] += p.count;
    }
    let max = lines
        .values()
        .flat_map(|(_, v)| v.iter())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |i: usize| {
        LEFT + if n == 1 {
            plot_w / 2.0
        } else {
            plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: i64| TOP + plot_h - plot_h * v as f64 / max as f64;
    // Axes, grid and labels.
    for k in 0..=4 {
        let v = max * k / 4;
        let yy = y(v);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#2a333c\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\" fill=\"#c9d3dc\">{v}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    let label = |i: usize| {
        let t = OffsetDateTime::from_unix_timestamp(first + step * i as i64)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        if step < 60 {
            format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
        } else {
            format!("{:02}:{:02}", t.hour(), t.minute())
        }
    };
    let ticks: Vec<usize> = if n == 1 {
        vec![0]
    } else {
        vec![0, (n - 1) / 2, n - 1]
    };
    for i in ticks {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#c9d3dc\">{}</text>",
            x(i),
            TOP + plot_h + 16.0,
            label(i)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\" fill=\"#eef2f5\">Time (UTC)</text>\
         <text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\" fill=\"#eef2f5\" transform=\"rotate(-90 14 {:.1})\">Reactions per {}</text>",
        LEFT + plot_w / 2.0,
        H - 8.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        bucket.as_str()
    );
    // One line per stamp, and the legend.
    for (k, (id, (name, counts))) in lines.iter().enumerate() {
        let c = colour(*id);
        let pts: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let total: i64 = counts.iter().sum();
        let _ = write!(
            svg,
            "<polyline class=\"series\" data-stamp=\"{id}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        if n == 1 {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>",
                x(0),
                y(counts[0])
            );
        }
        let ly = TOP + 8.0 + 20.0 * k as f64;
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{c}\"/>\
             <text class=\"legend\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#eef2f5\">{} ({total})</text>",
            W - RIGHT + 12.0,
            ly - 10.0,
            W - RIGHT + 30.0,
            ly,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(secs: i64, id: i32, name: &str, count: i64) -> Point {
        Point {
            start: OffsetDateTime::from_unix_timestamp(secs).unwrap(),
            stamp_id: id,
            stamp_name: name.into(),
            count,
        }
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    #[test]
    fn series_ranges_default_to_the_life_and_are_empty_outside_it() {
        let (born, now) = (at(1_000), at(2_000));
        let span = |from, to| Some(SeriesRange::Span { from, to });
        assert_eq!(series_range(None, None, born, now), span(born, now));
        assert_eq!(
            series_range(Some(at(1_500)), None, born, now),
            span(at(1_500), now)
        );
        assert_eq!(
            series_range(None, Some(at(1_500)), born, now),
            span(born, at(1_500))
        );
        // Outside the life with the other end left out: empty, not invalid.
        assert_eq!(
            series_range(Some(at(3_000)), None, born, now),
            Some(SeriesRange::Empty { at: at(3_000) })
        );
        assert_eq!(
            series_range(None, Some(at(500)), born, now),
            Some(SeriesRange::Empty { at: at(500) })
        );
        // Both given: they are what counts, wherever the life is.
        assert_eq!(
            series_range(Some(at(3_000)), Some(at(4_000)), born, now),
            span(at(3_000), at(4_000))
        );
        assert_eq!(
            series_range(Some(at(3_000)), Some(at(3_000)), born, now),
            span(at(3_000), at(3_000))
        );
        assert_eq!(
            series_range(Some(at(3_000)), Some(at(2_999)), born, now),
            None
        );
    }

    #[test]
    fn csv_has_header_and_rows() {
        let text = csv(&[
            p(1_795_334_400, 1, ":smile:", 5),
            p(1_795_334_460, 2, "a,b", 1),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "bucket_start,stamp_id,stamp_name,count");
        assert_eq!(lines[1], "2026-11-22T08:00:00Z,1,:smile:,5");
        assert_eq!(lines[2], "2026-11-22T08:01:00Z,2,\"a,b\",1");
    }

    #[test]
    fn chart_draws_a_line_per_stamp_and_escapes_names() {
        let svg = chart_svg(
            &[
                p(0, 1, ":smile:", 3),
                p(60, 1, ":smile:", 1),
                p(60, 4, "<love>", 2),
            ],
            Bucket::Minute,
        );
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("&lt;love&gt; (2)"));
        assert!(svg.contains(":smile: (4)"));
        assert!(!svg.contains("<love>"));
        assert!(chart_svg(&[], Bucket::Minute).contains("No reactions yet"));
    }

    #[test]
    fn times_parse() {
        let at = |s: &str| parse_time(s).map(|t| t.unix_timestamp());
        let utc_8 = Some(1_795_334_400);
        assert_eq!(at("2026-11-22T08:00:00Z"), utc_8);
        assert_eq!(at("2026-11-22T17:00:00+09:00"), utc_8);
        assert_eq!(at("2026-11-22T17:00:00 09:00"), utc_8, "a + sent unencoded");
        assert_eq!(at("20261122T080000Z"), utc_8, "basic format");
        assert_eq!(at("2026-11-22T08:00:00"), utc_8, "no offset: UTC");
        assert_eq!(
            at("2026-11-22"),
            Some(1_795_305_600),
            "a date: midnight UTC"
        );
        assert!(parse_time("2026-11-22T08:00:00.5+09:00").is_some());
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("").is_none());
    }
}
