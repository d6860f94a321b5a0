//! Misbehaviour on demand, each the way real platforms misbehave: `Retry-After` in each of its forms, paging
//! that never ends, answers reshaped or lost on their way out.

/// A `Retry-After` value in each form RFC 9110 §10.2.3 allows, and the decimal some platforms send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryAfter {
    /// `Retry-After: 1`.
    Seconds(u64),
    /// `Retry-After: 0.75` or `2.0`, as Shopify sends it.
    Decimal(f64),
    /// `Retry-After: <HTTP-date>` this long after the answer is sent (whole seconds: the date has no more).
    DateIn(std::time::Duration),
}

impl RetryAfter {
    pub(crate) fn header_value(&self) -> String {
        match self {
            RetryAfter::Seconds(secs) => secs.to_string(),
            // `{:?}` always writes a fraction: `2.0`, `0.75`.
            RetryAfter::Decimal(secs) => format!("{secs:?}"),
            RetryAfter::DateIn(wait) => {
                actix_web::http::header::HttpDate::from(std::time::SystemTime::now() + *wait)
                    .to_string()
            }
        }
    }
}

/// Paging that never ends, as a platform with a bug (or a proxy caching the wrong thing) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingFault {
    /// The cursor is ignored (`starting_after`, `after`, `offset`): every request answers the first page,
    /// with the same continuation (HubSpot: `paging.next.after` always the same).
    IgnoresCursor,
    /// The continuation moves on (HubSpot's `after` grows) but every page holds the first page's records.
    RepeatsRecords,
    /// Keap: past its announced `count`, every page is full of records that were never counted.
    Endless,
}

/// A change made to a 200 answer on its way out.
pub(crate) enum Reshape {
    /// The first half of the body only, with a matching `Content-Length`.
    Truncate,
    /// The same JSON, pretty-printed.
    Pretty,
    /// The same JSON object without its arrays (no list of records).
    WithoutLists,
    /// The same JSON object without this top-level member (a paging flag, say).
    WithoutMember(String),
    /// The same JSON, its records without this top-level field.
    WithoutField(String),
    /// The same JSON, each record with one more top-level field `.0` whose value is the JSON text `.1`
    /// verbatim (see [`PlatformApi::raw_field`](crate::PlatformApi::raw_field)); the answer's headers kept.
    RawField(String, String),
    /// The same JSON, each of its lists cut to its first `.0` records; the answer's headers kept (see
    /// [`PlatformApi::cap_page_size`](crate::PlatformApi::cap_page_size)).
    CapRecords(usize),
    /// None: the request was served (whatever it changed stays changed) but the connection closes before
    /// its answer arrives ([`lost_answer`]).
    Lost,
}

/// An answer that never arrives: its body fails before its first byte, so the server closes the
/// connection, as one that breaks after the platform took a request and before its answer got through.
pub(crate) fn lost_answer() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(Lost)
}

/// The body of [`lost_answer`]: announced, never sent.
struct Lost;

impl actix_web::body::MessageBody for Lost {
    type Error = std::io::Error;

    fn size(&self) -> actix_web::body::BodySize {
        actix_web::body::BodySize::Sized(2)
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<actix_web::web::Bytes, Self::Error>>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::other(
            "the answer was lost (emulated)",
        ))))
    }
}
