//! Pattern warming: `SCAN <cursor> MATCH <pattern> COUNT <batch>` pages over the
//! warming's route, each page's keys loaded through the bounded warm fetch; an error reply
//! to `SCAN` (e.g. `-NOPERM` for a user without `SCAN`) ends it as it is. A `SCAN`
//! call is charged a tenth of a batch of the rate limit (it reads `COUNT` slots but returns
//! only names), so a sparse pattern over a large keyspace is paced too.

use bytes::Bytes;

use super::fetch::{End, Fetch};
use crate::protocol::command;
use crate::protocol::decode::scan_page;

/// The share of a batch a `SCAN` call is charged: `batch / SCAN_SHARE` keys.
const SCAN_SHARE: usize = 10;

/// Loads the keys matching `pattern`; `Err` ends the warming.
pub async fn pattern(fetch: &mut Fetch, pattern: &[u8]) -> Result<(), End> {
    let count = fetch.batch().to_string();
    let mut cursor = Bytes::from_static(b"0");
    loop {
        fetch.charge((fetch.batch() / SCAN_SHARE).max(1)).await?;
        let scan = command(&[
            b"SCAN",
            &cursor,
            b"MATCH",
            pattern,
            b"COUNT",
            count.as_bytes(),
        ]);
        let reply = fetch.call(scan).await?;
        let Some((next, keys)) = scan_page(&reply) else {
            if crate::protocol::decode::is_error(&reply) {
                return Err(End::Refused(reply));
            }
            let text = String::from_utf8_lossy(&reply[..reply.len().min(200)]);
            return Err(End::Failed(format!("SCAN answered {}", text.trim())));
        };
        fetch.keys(&keys).await?;
        if &next[..] == b"0" {
            return Ok(());
        }
        cursor = next;
    }
}
