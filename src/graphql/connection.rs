//! Connections (conventions.md "GraphQL"): `first` (default 50, at most
//! 500) and `after`, keyset cursors on (sort value, id) so pages stay stable
//! while records are added or removed. A cursor is opaque base64 of the
//! ordering it belongs to, the sort value and the id.

use super::error::GqlError;
use async_graphql::SimpleObject;
use base64::Engine;
use uuid::Uuid;

pub const DEFAULT_PAGE: i32 = 50;
pub const MAX_PAGE: i32 = 500;

#[derive(SimpleObject, Clone, Debug, Default)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

/// A node's position in one ordering: compared as (value, id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SortKey {
    pub value: String,
    pub id: Uuid,
}

impl SortKey {
    /// A time (or its absence, which sorts first) as a fixed-width string.
    pub fn time(t: Option<chrono::DateTime<chrono::Utc>>, id: Uuid) -> Self {
        let value = t.map_or_else(String::new, |t| {
            format!("{:020}", t.timestamp_micros().max(0))
        });
        SortKey { value, id }
    }

    pub fn number(n: u64, id: Uuid) -> Self {
        SortKey {
            value: format!("{n:020}"),
            id,
        }
    }

    /// Names sort ignoring case.
    pub fn text(s: &str, id: Uuid) -> Self {
        SortKey {
            value: s.to_lowercase(),
            id,
        }
    }
}

/// One page of nodes with their cursors.
pub struct Page<T> {
    pub edges: Vec<(String, T)>,
    pub total_count: usize,
    pub page_info: PageInfo,
}

/// Sorts `items` by `key` in the named ordering (`ordering` also tags the
/// cursors, so a cursor from another ordering is refused) and cuts the page
/// after the `after` cursor.
pub fn paginate<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> SortKey,
    ordering: &str,
    descending: bool,
    first: i32,
    after: Option<&str>,
) -> Result<Page<T>, GqlError> {
    if !(0..=MAX_PAGE).contains(&first) {
        return Err(GqlError::bad_input(format!(
            "`first` must be between 0 and {MAX_PAGE}"
        )));
    }
    let mut keyed: Vec<(SortKey, T)> = items.into_iter().map(|t| (key(&t), t)).collect();
    keyed.sort_by(|a, b| {
        if descending {
            b.0.cmp(&a.0)
        } else {
            a.0.cmp(&b.0)
        }
    });
    let total_count = keyed.len();
    let start = match after {
        None => 0,
        Some(cursor) => {
            let after = decode_cursor(cursor, ordering)?;
            keyed.partition_point(|(k, _)| if descending { *k >= after } else { *k <= after })
        }
    };
    let end = start
        .saturating_add(usize::try_from(first).unwrap_or(0))
        .min(total_count);
    let edges: Vec<(String, T)> = keyed
        .into_iter()
        .skip(start)
        .take(end - start)
        .map(|(k, t)| (encode_cursor(ordering, &k), t))
        .collect();
    let page_info = PageInfo {
        has_next_page: end < total_count,
        has_previous_page: start > 0,
        start_cursor: edges.first().map(|e| e.0.clone()),
        end_cursor: edges.last().map(|e| e.0.clone()),
    };
    Ok(Page {
        edges,
        total_count,
        page_info,
    })
}

fn encode_cursor(ordering: &str, key: &SortKey) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{ordering}\n{}\n{}", key.value, key.id))
}

fn decode_cursor(cursor: &str, ordering: &str) -> Result<SortKey, GqlError> {
    let bad = || GqlError::bad_input("`after` is not a cursor from this list");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (tag, rest) = text.split_once('\n').ok_or_else(bad)?;
    let (value, id) = rest.rsplit_once('\n').ok_or_else(bad)?;
    if tag != ordering {
        return Err(GqlError::bad_input(
            "`after` is a cursor from a different ordering",
        ));
    }
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(SortKey {
        value: value.to_string(),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::now_v7()).collect()
    }

    #[test]
    fn pages_walk_the_whole_list_in_order_both_ways() {
        let items = ids(7);
        for desc in [false, true] {
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = paginate(
                    items.clone(),
                    |id| SortKey::text("same", *id),
                    "t",
                    desc,
                    3,
                    after.as_deref(),
                )
                .unwrap();
                assert_eq!(page.total_count, 7);
                seen.extend(page.edges.iter().map(|e| e.1));
                if !page.page_info.has_next_page {
                    break;
                }
                after = page.page_info.end_cursor;
            }
            let mut expected = items.clone();
            if desc {
                expected.reverse();
            }
            assert_eq!(seen, expected);
        }
    }

    #[test]
    fn a_cursor_stays_valid_when_its_node_is_gone() {
        let items = ids(4);
        let page = paginate(
            items.clone(),
            |id| SortKey::number(1, *id),
            "t",
            false,
            2,
            None,
        )
        .unwrap();
        let cursor = page.page_info.end_cursor.unwrap();
        let remaining: Vec<_> = items.iter().copied().filter(|i| *i != items[1]).collect();
        let next = paginate(
            remaining,
            |id| SortKey::number(1, *id),
            "t",
            false,
            2,
            Some(&cursor),
        )
        .unwrap();
        assert_eq!(
            next.edges.iter().map(|e| e.1).collect::<Vec<_>>(),
            vec![items[2], items[3]]
        );
        assert!(!next.page_info.has_next_page);
        assert!(next.page_info.has_previous_page);
    }

    #[test]
    fn bad_arguments_are_user_errors() {
        let items = ids(2);
        let k = |id: &Uuid| SortKey::number(1, *id);
        assert!(paginate(items.clone(), k, "t", false, 501, None).is_err());
        assert!(paginate(items.clone(), k, "t", false, -1, None).is_err());
        assert!(paginate(items.clone(), k, "t", false, 1, Some("garbage")).is_err());
        let page = paginate(items.clone(), k, "t", false, 1, None).unwrap();
        let cursor = page.page_info.end_cursor.unwrap();
        assert!(paginate(items.clone(), k, "other", false, 1, Some(&cursor)).is_err());
        let empty = paginate(items, k, "t", false, 0, None).unwrap();
        assert!(empty.edges.is_empty() && empty.page_info.has_next_page);
    }
}
