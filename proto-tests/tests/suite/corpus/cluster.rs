//! Cases that only run in cluster mode: multi-key commands across slots (untagged keys:
//! `a`, `b` and `c` have slots 15495, 3300 and 7365, one on each primary of a three-way
//! split), and the commands Redis Cluster itself answers otherwise than a standalone Redis,
//! whose cluster reply is pinned byte for byte.

use super::runner::Case;

const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";

/// MGET, DEL, UNLINK, EXISTS and TOUCH with keys on several nodes: the sidecar splits them
/// per slot, and the merged replies must equal a standalone Redis's. MSET and MSETNX across
/// slots get Redis Cluster's `-CROSSSLOT` (last in their cases: the reference ran them).
pub fn cross_slot() -> Vec<Case> {
    vec![
        Case::new(
            "cross-slot/mget",
            &[
                "SET a 1",
                "SET b 2",
                "SET c 3",
                "MGET a b c missing",
                "MGET c b a",
                "MGET a a b b",
                "GET a",
                "MGET a b c",
                "MGET a b c",
                "@other SET b changed",
                "MGET a b c",
                "RPUSH l x",
                "MGET a l c",
                "DEL b",
                "MGET a b c",
                "MGET missing1 missing2 missing3",
                "MGET",
            ],
        )
        .untagged(),
        Case::new(
            "cross-slot/counting",
            &[
                "SET a 1",
                "SET b 2",
                "SET c 3",
                "EXISTS a b c missing a",
                "TOUCH a b missing c",
                "GET a",
                "DEL a b missing",
                "EXISTS a b c",
                "MGET a b c",
                "SET a 1",
                "UNLINK c a b",
                "EXISTS a b c",
                "MGET a b c",
                "SET a 1",
                "SET b 2",
                "DEL a b c a",
                "DEL",
                "EXISTS",
                "TOUCH",
                "UNLINK",
            ],
        )
        .untagged(),
        Case::new(
            "cross-slot/one-slot-by-tag",
            &[
                "MSET {x}a 1 {x}b 2",
                "MGET {x}a {x}b a",
                "MSETNX {x}a 9 {x}c 9",
                "DEL {x}a {x}b",
                "MSETNX {x}a 9 {x}c 9",
                "MGET {x}a {x}c",
            ],
        )
        .untagged(),
        Case::new("cross-slot/mset", &["SET a 1", "GET a"])
            .untagged()
            .cluster_differs("MSET a 1 b 2 c 3", CROSSSLOT),
        Case::new("cross-slot/msetnx", &["SET a 1"])
            .untagged()
            .cluster_differs("MSETNX b 2 c 3", CROSSSLOT),
    ]
}

/// Commands Redis Cluster refuses where a standalone Redis obeys: through the sidecar they
/// must get the cluster's own error (each last in its case: the reference obeyed).
pub fn refused() -> Vec<Case> {
    fn err(text: &str) -> Vec<u8> {
        format!("-ERR {text}\r\n").into_bytes()
    }
    vec![
        Case::new("refused/select", &["SET k v", "SELECT 0", "GET k"])
            .cluster_differs("SELECT 1", &err("SELECT is not allowed in cluster mode")),
        Case::new("refused/swapdb", &["SET k v"])
            .cluster_differs("SWAPDB 0 1", &err("SWAPDB is not allowed in cluster mode")),
        Case::new("refused/move", &["SET k v"])
            .cluster_differs("MOVE k 1", &err("MOVE is not allowed in cluster mode")),
        Case::new("refused/copy-db", &["SET k v"]).cluster_differs(
            "COPY k k2 DB 1",
            &err("Copying to another database is not allowed in cluster mode"),
        ),
        Case::new("refused/sort-by", &["RPUSH l 2 1", "SORT l BY nosort"]).cluster_differs(
            "SORT l BY w_*",
            &err("BY option of SORT denied in Cluster mode."),
        ),
        Case::new("refused/sort-get", &["RPUSH l 2 1", "SORT l"]).cluster_differs(
            "SORT l GET h_*",
            &err("GET option of SORT denied in Cluster mode."),
        ),
    ]
}
