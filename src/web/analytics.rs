//! Reaction analytics over HTTP: the JSON series, its CSV export, and the
//! server-rendered analytics page. Open to the stream's owner, its moderators
//! and admins.

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use askama::Template;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::{
    analytics::{chart_svg, csv, parse_time, series_range, SeriesRange},
    error::{ApiError, Code},
    protocol::{timestamp, timestamp_seconds},
    store::{
        analytics::{Bucket, Point},
        streams::Stream,
    },
    web::{
        extract::ById,
        i18n::PageLang,
        pages::{render_in, see_other, Chrome},
    },
};

/// Registers the analytics routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/streams/{id}/reactions", web::get().to(series_json))
        .route("/api/streams/{id}/reactions.csv", web::get().to(series_csv))
        .route("/streams/{id}/analytics", web::get().to(page));
}

#[derive(Deserialize)]
struct SeriesQuery {
    bucket: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// Why a visitor who does not moderate the stream is refused.
const REFUSAL: &str = "Only the stream's owner, its moderators and admins can see its analytics.";

struct Series {
    bucket: Bucket,
    from: OffsetDateTime,
    to: OffsetDateTime,
    points: Vec<Point>,
}

/// The stream `{id}`, if the visitor may see its analytics, and its series
/// as `q` asks.
async fn load(r: &ById, q: &SeriesQuery) -> Result<(Stream, Series), ApiError> {
    let (_, stream) = r.moderated_stream(REFUSAL).await?;
    let bucket = match q.bucket.as_deref() {
        None | Some("") => Bucket::Minute,
        Some(b) => Bucket::parse(b)
            .ok_or_else(|| ApiError::new(Code::Invalid, "bucket must be 10s, 1m or 1h."))?,
    };
    let time = |raw: &Option<String>, name: &str| -> Result<Option<OffsetDateTime>, ApiError> {
        match raw.as_deref() {
            None | Some("") => Ok(None),
            Some(t) => parse_time(t).map(Some).ok_or_else(|| {
                ApiError::new(Code::Invalid, format!("{name} must be an ISO 8601 time."))
            }),
        }
    };
    let range = series_range(
        time(&q.from, "from")?,
        time(&q.to, "to")?,
        stream.created_at,
        OffsetDateTime::now_utc() + Duration::seconds(1),
    )
    .ok_or_else(|| ApiError::new(Code::Invalid, "from must not be after to."))?;
    let (from, to, points) = match range {
        SeriesRange::Span { from, to } => (
            from,
            to,
            r.store
                .reaction_series(&r.tenant.slug, stream.id, bucket, from, to)
                .await?,
        ),
        SeriesRange::Empty { at } => (at, at, Vec::new()),
    };
    Ok((
        stream,
        Series {
            bucket,
            from,
            to,
            points,
        },
    ))
}

#[derive(Serialize)]
struct PointView<'a> {
    start: String,
    stamp_id: i32,
    stamp_name: &'a str,
    count: i64,
}

async fn series_json(r: ById, q: web::Query<SeriesQuery>) -> Result<HttpResponse, ApiError> {
    let (stream, s) = load(&r, &q).await?;
    let series: Vec<PointView<'_>> = s
        .points
        .iter()
        .map(|p| PointView {
            start: timestamp_seconds(p.start),
            stamp_id: p.stamp_id,
            stamp_name: &p.stamp_name,
            count: p.count,
        })
        .collect();
    let total: i64 = s.points.iter().map(|p| p.count).sum();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "stream_id": stream.id,
        "bucket": s.bucket.as_str(),
        "from": timestamp(s.from),
        "to": timestamp(s.to),
        "series": series,
        "total": total,
    })))
}

/// The series of [`series_json`] as a CSV download.
async fn series_csv(r: ById, q: web::Query<SeriesQuery>) -> Result<HttpResponse, ApiError> {
    let (stream, s) = load(&r, &q).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"stream-{}-reactions-{}.csv\"",
                stream.id,
                s.bucket.as_str()
            ),
        ))
        .body(csv(&s.points)))
}

/// A busy minute and the chat around it.
struct Moment {
    minute: String,
    total: i64,
    messages: Vec<(String, String)>,
}

/// A legend row.
struct StampTotal {
    id: i32,
    name: String,
    total: i64,
}

#[derive(Template)]
#[template(path = "analytics.html")]
struct AnalyticsPage {
    c: Chrome,
    stream: Stream,
    bucket: &'static str,
    chart: String,
    totals: Vec<StampTotal>,
    total: i64,
    moments: Vec<Moment>,
}

async fn page(req: HttpRequest, r: ById, lang: PageLang) -> Result<HttpResponse, ApiError> {
    if r.user().is_none() {
        let c = Chrome::new(&r, &lang, req.path());
        return Ok(see_other(&c.login_href));
    }
    let (_, stream) = r.moderated_stream(REFUSAL).await?;
    let end = stream.ended_at.unwrap_or_else(OffsetDateTime::now_utc);
    let life = end - stream.created_at;
    let bucket = if life > Duration::hours(12) {
        Bucket::Hour
    } else if life > Duration::minutes(15) {
        Bucket::Minute
    } else {
        Bucket::TenSeconds
    };
    let q = SeriesQuery {
        bucket: Some(bucket.as_str().into()),
        from: None,
        to: None,
    };
    let (_, s) = load(&r, &q).await?;
    let (store, slug) = (&r.store, &r.tenant.slug);
    let mut totals: Vec<StampTotal> = Vec::new();
    for st in store.stamps(slug).await? {
        let total = s
            .points
            .iter()
            .filter(|p| p.stamp_id == st.stamp_id)
            .map(|p| p.count)
            .sum();
        totals.push(StampTotal {
            id: st.stamp_id,
            name: st.stamp_name,
            total,
        });
    }
    let mut moments = Vec::new();
    for (minute, total) in store.top_minutes(slug, stream.id, 5).await? {
        let around = store
            .messages_between(
                slug,
                stream.room_id,
                minute - Duration::seconds(30),
                minute + Duration::seconds(90),
                6,
            )
            .await?;
        moments.push(Moment {
            minute: timestamp_seconds(minute),
            total,
            messages: around
                .into_iter()
                .map(|m| (m.username.unwrap_or_else(|| "system".into()), m.content))
                .collect(),
        });
    }
    let total = totals.iter().map(|t| t.total).sum();
    render_in(
        &lang,
        StatusCode::OK,
        AnalyticsPage {
            c: Chrome::new(&r, &lang, req.path()),
            chart: chart_svg(&s.points, s.bucket),
            bucket: s.bucket.as_str(),
            stream,
            totals,
            total,
            moments,
        },
    )
}
