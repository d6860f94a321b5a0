//! Cursor pagination over read models. Ids are UUID v7, so "newest first" is descending id order and the
//! cursor is simply the last id of a page, wrapped so clients treat it as opaque.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// A page request, already validated: 1 ≤ limit ≤ 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    /// Return only items older than this id.
    pub before_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Encodes the id of a page's last item as an opaque cursor.
pub fn encode_cursor(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{last_id}"))
}

/// Decodes a cursor produced by [`encode_cursor`]; `None` for anything else.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let id = text.strip_prefix("v1:")?;
    uuid::Uuid::parse_str(id).ok()?;
    Some(id.to_owned())
}

/// Splits `limit + 1` fetched rows into a page and the cursor to the next one.
pub fn into_page<T, I: std::fmt::Display>(
    mut rows: Vec<T>,
    limit: i64,
    id_of: impl Fn(&T) -> I,
) -> Page<T> {
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if has_more {
        rows.last()
            .map(|last| encode_cursor(&id_of(last).to_string()))
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(decode_cursor(&encode_cursor(&id)), Some(id));
        assert_eq!(decode_cursor("not-a-cursor"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("v1:'; drop")), None);
    }

    #[test]
    fn a_full_page_points_to_the_next() {
        let page = into_page(vec!["c", "b", "a"], 2, |s| *s);
        assert_eq!(page.items, vec!["c", "b"]);
        assert!(page.next_cursor.is_some());
        let last = into_page(vec!["a"], 2, |s| *s);
        assert_eq!(last.next_cursor, None);
    }
}
