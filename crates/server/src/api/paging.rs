//! Paging of device lists the server computes in memory (report device
//! lists, the preview's affected devices): a limit and a cursor after the
//! last device of the page before, in the list's own order.

use crate::error::{ApiError, ApiResult};

/// A page of a device list in its order — a rank (what needs attention
/// first in reports; 0 where there is none), then the name; the cursor is
/// the (rank, name) of the page's last device, hex-encoded.
pub struct Paging {
    limit: usize,
    after: Option<(u8, String)>,
}

impl Paging {
    /// The page asked for: at most `limit` (1 to 1000; everything when
    /// `None`), after `cursor`. A wrong one is a 400 naming it.
    pub fn of(limit: Option<u32>, cursor: Option<&str>) -> ApiResult<Paging> {
        let limit = match limit {
            None => usize::MAX,
            Some(n) if (1..=1000).contains(&n) => n as usize,
            Some(n) => {
                return Err(ApiError::BadRequest(format!(
                    "limit: {n} is out of range; expected 1 to 1000"
                )))
            }
        };
        let after = cursor
            .map(|c| {
                Paging::decode(c).ok_or_else(|| {
                    ApiError::BadRequest(
                        "cursor: not a cursor this server gave; start again without one".into(),
                    )
                })
            })
            .transpose()?;
        Ok(Paging { limit, after })
    }

    fn decode(text: &str) -> Option<(u8, String)> {
        if !text.len().is_multiple_of(2) || text.len() > 4096 {
            return None;
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        let text = String::from_utf8(bytes).ok()?;
        let (rank, name) = text.split_once('\n')?;
        Some((rank.parse().ok()?, name.to_string()))
    }

    fn encode((rank, name): &(u8, String)) -> String {
        format!("{rank}\n{name}")
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The page of `rows` (already in order) and the next page's cursor.
    pub fn cut<T>(
        &self,
        rows: Vec<T>,
        key: impl Fn(&T) -> (u8, String),
    ) -> (Vec<T>, Option<String>) {
        let mut rest = rows.into_iter().filter(|r| match &self.after {
            Some(after) => {
                let (rank, name) = key(r);
                (rank, name.as_bytes()) > (after.0, after.1.as_bytes())
            }
            None => true,
        });
        let page: Vec<T> = rest.by_ref().take(self.limit).collect();
        let next = if rest.next().is_some() {
            page.last().map(|r| Paging::encode(&key(r)))
        } else {
            None
        };
        (page, next)
    }
}
