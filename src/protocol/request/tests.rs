//! Request parsing: Redis's accept/refuse decisions, resumed versus one-shot parsing,
//! linear cost for huge requests.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::protocol::{string2ll, ProtocolError};

const LIMITS: Limits = Limits {
    max_bulk_bytes: 1024,
    max_array_len: 8,
    max_inline_bytes: 64,
};

type Parsed = Result<Option<Vec<Vec<u8>>>, RequestError>;

fn parse(input: &[u8]) -> Parsed {
    let mut buf = BytesMut::from(input);
    parse_request(&mut buf, &LIMITS).map(|r| r.map(|r| r.args.iter().map(|a| a.to_vec()).collect()))
}

fn words(ws: &[&str]) -> Vec<Vec<u8>> {
    ws.iter().map(|w| w.as_bytes().to_vec()).collect()
}

fn err(what: &'static str) -> Parsed {
    Err(RequestError::Protocol(ProtocolError(what)))
}

/// Every request and the final outcome when `input` is fed in `chunk`-byte pieces to one
/// parser, each parse resuming where the last stopped.
fn feed(input: &[u8], chunk: usize, limits: &Limits) -> (Vec<Request>, Option<RequestError>, u64) {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match parser.next(&mut buf, limits) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => break,
                Err(e) => return (out, Some(e), parser.examined()),
            }
        }
    }
    (out, None, parser.examined())
}

fn args_of(reqs: &[Request]) -> Vec<(Bytes, Vec<Bytes>)> {
    reqs.iter()
        .map(|r| (r.raw.clone(), r.args.to_vec()))
        .collect()
}

#[test]
fn parses_multibulk_and_keeps_raw_bytes() {
    let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
    let mut buf = BytesMut::from(&input[..]);
    let r = parse_request(&mut buf, &LIMITS).unwrap().unwrap();
    assert_eq!(&r.raw[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    assert_eq!(r.args, vec![Bytes::from("GET"), Bytes::from("k")]);
    assert_eq!(&buf[..], b"*1\r\n$4\r\nPING\r\n");
}

#[test]
fn requests_of_up_to_40_arguments_parse_whole_as_byte_by_byte() {
    // Whole, a canonical request of up to 32 arguments is read in one pass; byte by byte
    // the general parser reads it. Both must give the same requests, bytes and limit errors.
    let limits = Limits {
        max_array_len: 20,
        ..LIMITS
    };
    for n in 1..=40usize {
        let mut input = Vec::new();
        input.extend_from_slice(format!("*{n}\r\n$4\r\nMGET\r\n").as_bytes());
        for i in 1..n {
            let arg = "k".repeat(i % 7 + 1);
            input.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
        input.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        for limits in [
            &LIMITS,
            &limits,
            &Limits {
                max_array_len: 64,
                ..LIMITS
            },
        ] {
            let (whole, whole_err, _) = feed(&input, input.len(), limits);
            let (pieces, pieces_err, _) = feed(&input, 1, limits);
            assert_eq!(args_of(&whole), args_of(&pieces), "{n} arguments");
            assert_eq!(whole_err, pieces_err, "{n} arguments");
            if n <= limits.max_array_len {
                assert_eq!(whole.len(), 2, "{n} arguments, then PING");
                assert_eq!(whole[0].args.len(), n);
            } else {
                assert!(whole_err.is_some(), "{n} arguments over the limit");
            }
        }
    }
}

#[test]
fn every_prefix_of_a_request_is_incomplete() {
    let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
    for cut in 0..input.len() {
        assert_eq!(parse(&input[..cut]), Ok(None), "cut at {cut}");
    }
    assert!(parse(input).unwrap().is_some());
}

#[test]
fn inline_commands_split_like_redis() {
    let cases: &[(&[u8], &[&str])] = &[
        (b"PING\r\n", &["PING"]),
        (b"set  k  v\n", &["set", "k", "v"]),
        (b"SET k \"a b\\n\\x41\"\r\n", &["SET", "k", "a b\nA"]),
        (b"SET k 'it\\'s'\r\n", &["SET", "k", "it's"]),
        (b"\r\n\r\nPING\r\n", &["PING"]),
        (b"\n \t\x0b\x0c\r\nPING\r\n", &["PING"]),
        (b"ECHO a\x0bb\r\n", &["ECHO", "a\x0bb"]),
        (b"ECHO a\"b c\"\r\n", &["ECHO", "ab c"]),
        (b"ECHO \"\"\r\n", &["ECHO", ""]),
        (b"ECHO \"\\xZZ\\q\"\r\n", &["ECHO", "xZZq"]),
        (b"ECHO 'a\\nb'\r\n", &["ECHO", "a\\nb"]),
        (b"ECHO \"x\"\x0b\r\n", &["ECHO", "x"]),
        (b"ECHO a\rb\r\n", &["ECHO", "a", "b"]),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse(input),
            Ok(Some(words(want))),
            "{}",
            input.escape_ascii()
        );
    }
    assert_eq!(parse(b"PIN"), Ok(None));
}

#[test]
fn header_decimals_follow_string2ll() {
    assert_eq!(string2ll(b"0"), Some(0));
    assert_eq!(string2ll(b"123"), Some(123));
    assert_eq!(string2ll(b"-1"), Some(-1));
    assert_eq!(string2ll(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b""[..],
        b"-",
        b"+1",
        b" 1",
        b"1 ",
        b"1a",
        b"01",
        b"00",
        b"-0",
        b"-01",
        b"9223372036854775808",
        b"-9223372036854775809",
        b"000000000000000000001",
    ] {
        assert_eq!(string2ll(bad), None, "{}", bad.escape_ascii());
    }
}

#[test]
fn bad_frames_get_redis_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*01\r\n$4\r\nPING\r\n", "invalid multibulk length"),
        (b"*+1\r\n", "invalid multibulk length"),
        (b"* 1\r\n", "invalid multibulk length"),
        (b"*-0\r\n", "invalid multibulk length"),
        (b"*\r\n", "invalid multibulk length"),
        (b"*2147483648\r\n", "invalid multibulk length"),
        (b"*9\r\n", "invalid multibulk length"),
        (b"*1\n$4\r\nPING\r\n", "invalid multibulk length"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*1\r\n$-0\r\n", "invalid bulk length"),
        (b"*1\r\n$04\r\nPING\r\n", "invalid bulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$2000\r\n", "invalid bulk length"),
        (b"*1\r\n$\r\n", "invalid bulk length"),
        (b"SET k \"open\r\n", "unbalanced quotes in request"),
        (b"SET k \"a\"b\r\n", "unbalanced quotes in request"),
        (b"SET k 'a\r\n", "unbalanced quotes in request"),
        (b"SET k \"a\\\"\r\n", "unbalanced quotes in request"),
        (&[b'A'; 100], "too big inline request"),
        (
            b"*11111111111111111111111111111111111111\r\n",
            "invalid multibulk length",
        ),
        (b"a b c d e f g h i\r\n", "invalid multibulk length"),
    ];
    for (input, want) in cases {
        assert_eq!(parse(input), err(want), "{}", input.escape_ascii());
    }
    assert_eq!(
        parse(b"*2\r\n$3\r\nGET\r\n:1\r\n"),
        Err(RequestError::ExpectedBulk(b':'))
    );
    let mut long = b"*".to_vec();
    long.extend_from_slice(&[b'1'; 100]);
    assert_eq!(parse(&long), err("too big mbulk count string"));
    let mut long = b"*1\r\n$".to_vec();
    long.extend_from_slice(&[b'1'; 100]);
    assert_eq!(parse(&long), err("too big bulk count string"));
}

#[test]
fn expected_bulk_error_is_redis_text() {
    let mut out = BytesMut::new();
    RequestError::ExpectedBulk(b':').write_reply(&mut out);
    RequestError::ExpectedBulk(b'\n').write_reply(&mut out);
    RequestError::ExpectedBulk(0xff).write_reply(&mut out);
    RequestError::Protocol(ProtocolError("invalid bulk length")).write_reply(&mut out);
    assert_eq!(
        &out[..],
        &b"-ERR Protocol error: expected '$', got ':'\r\n\
           -ERR Protocol error: expected '$', got ' '\r\n\
           -ERR Protocol error: expected '$', got '\xff'\r\n\
           -ERR Protocol error: invalid bulk length\r\n"[..]
    );
}

#[test]
fn lines_wait_for_the_byte_after_cr_and_stop_at_nul() {
    // Redis needs one byte after a header's `\r` before it reads the header.
    assert_eq!(parse(b"*1\r"), Ok(None));
    assert_eq!(parse(b"*2\r\n:1\r"), Ok(None));
    // The type byte of a bulk is checked only once its line is complete.
    assert_eq!(parse(b"*2\r\n:1"), Ok(None));
    // strchr stops at NUL: the line never completes, until it is too big.
    assert_eq!(parse(b"*1\0\r\n$4\r\nPING\r\n"), Ok(None));
    assert_eq!(parse(b"PING\0\r\n"), Ok(None));
    let mut big = b"PING\0\r\n".to_vec();
    big.resize(100, b'x');
    assert_eq!(parse(&big), err("too big inline request"));
}

#[test]
fn non_canonical_requests_redis_accepts_are_reencoded() {
    let cases: &[(&[u8], &[&str])] = &[
        (b"*1\r\n$3\r\nGETX\r\n", &["GET"]),
        (b"*1\rX$4\r\nPING\r\n", &["PING"]),
        (b"*1\r\n$4\rXPING\r\n", &["PING"]),
        (b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\n\n", &["ECHO", "hi"]),
    ];
    for (input, want) in cases {
        let mut buf = BytesMut::from(*input);
        let r = parse_request(&mut buf, &LIMITS).unwrap().unwrap();
        let refs: Vec<&[u8]> = want.iter().map(|w| w.as_bytes()).collect();
        assert_eq!(
            r.raw,
            Request::from_args(&refs).raw,
            "{}",
            input.escape_ascii()
        );
        assert_eq!(r.args, Request::from_args(&refs).args);
    }
    // The skipped bytes are skipped whatever they are: here the next request's `*`.
    let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPING\r*1\r\n$4\r\nPING\r\n"[..]);
    let r = parse_request(&mut buf, &LIMITS).unwrap().unwrap();
    assert_eq!(r.args, vec![Bytes::from("PING")]);
    assert_eq!(parse(&buf), Ok(Some(words(&["1"]))));
}

#[test]
fn empty_requests_are_skipped() {
    for input in [
        &b"*0\r\n"[..],
        b"*-1\r\n",
        b"*-9223372036854775808\r\n",
        b"\r\n",
        b"\n",
        b"  \r\n",
    ] {
        let mut with_ping = input.to_vec();
        with_ping.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            parse(&with_ping),
            Ok(Some(words(&["PING"]))),
            "{}",
            input.escape_ascii()
        );
    }
}

#[test]
fn peek_get_finds_only_complete_canonical_get_frames() {
    let frame = b"*2\r\n$3\r\nget\r\n$3\r\nkey\r\n*1";
    assert_eq!(peek_get(frame, &LIMITS), Some((22, 17..20)));
    assert_eq!(
        peek_get(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n", &LIMITS),
        Some((19, 17..17))
    );
    assert_eq!(peek_get(&frame[..21], &LIMITS), None);
    for other in [
        &b"*2\r\n$3\r\nSET\r\n$3\r\nkey\r\n"[..],
        b"*2\r\n$3\r\nGET\r\n$-3\r\nkey\r\n",
        b"*2\r\n$3\r\nGET\r\n$3\r\nkeyX\r\n",
        b"*2\r\n$3\r\nGET\r\n$03\r\nkey\r\n",
        b"*2\r\n$3\r\nGET\r\n$+3\r\nkey\r\n",
        b"*2\r\n$3\r\nGET\r\n$3\rXkey\r\n",
        b"*2\r\n$3\r\nGET\r\n$2000\r\n",
    ] {
        assert_eq!(peek_get(other, &LIMITS), None, "{}", other.escape_ascii());
    }
}

/// Whatever peek_get accepts, the parser accepts as the same GET.
fn peek_agrees(input: &[u8]) {
    if let Some((len, key)) = peek_get(input, &LIMITS) {
        let mut buf = BytesMut::from(input);
        let r = parse_request(&mut buf, &LIMITS).unwrap().unwrap();
        assert_eq!(r.raw.len(), len);
        assert_eq!(&r.args[1][..], &input[key]);
    }
}

/// Random and mutated frames never panic; fed one byte at a time, in random pieces or all
/// at once, they give the same requests and the same error; every request re-encodes to
/// the bytes forwarded.
#[test]
fn arbitrary_input_never_panics_and_resumes_like_one_shot() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"*$\r\n0123456789-+GETSabc \"'\\x\0\x0b";
    let valid = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    for round in 0..20_000 {
        let mut input: Vec<u8> = if round % 2 == 0 {
            (0..next() % 40)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect()
        } else {
            valid.to_vec()
        };
        for _ in 0..(next() % 3) {
            let i = (next() as usize) % input.len().max(1);
            if let Some(b) = input.get_mut(i) {
                *b = alphabet[(next() % alphabet.len() as u64) as usize];
            }
        }
        let (whole, whole_err, _) = feed(&input, input.len(), &LIMITS);
        let (bytewise, bytewise_err, _) = feed(&input, 1, &LIMITS);
        let (pieces, pieces_err, _) = feed(&input, 1 + (next() % 7) as usize, &LIMITS);
        let shown = input.escape_ascii();
        assert_eq!(args_of(&whole), args_of(&bytewise), "{shown}");
        assert_eq!(args_of(&whole), args_of(&pieces), "{shown}");
        // An error found early in pieces may be a "too big" one found late all at once.
        if !input.contains(&0) {
            assert_eq!(whole_err, bytewise_err, "{shown}");
            assert_eq!(whole_err, pieces_err, "{shown}");
        }
        for r in &whole {
            assert!(!r.args.is_empty());
            let refs: Vec<&[u8]> = r.args.iter().map(|a| &a[..]).collect();
            assert_eq!(r.raw, Request::from_args(&refs).raw, "{shown}");
        }
        peek_agrees(&input);
    }
}

#[test]
fn huge_request_in_chunks_parses_in_linear_work() {
    const ARGS: usize = 1_000_000;
    let limits = Limits {
        max_bulk_bytes: 1 << 20,
        max_array_len: ARGS,
        max_inline_bytes: 64 << 10,
    };
    let mut input = BytesMut::new();
    let mut args: Vec<&[u8]> = vec![b"RPUSH", b"list"];
    args.resize(ARGS, b"v");
    write_command(&mut input, &args);
    let (one_shot, e, _) = feed(&input, input.len(), &limits);
    assert_eq!((one_shot.len(), e), (1, None));
    let (chunked, e, examined) = feed(&input, 64 << 10, &limits);
    assert_eq!(e, None);
    assert_eq!(args_of(&chunked), args_of(&one_shot));
    assert_eq!(chunked[0].args.len(), ARGS);
    assert!(
        examined <= 3 * input.len() as u64,
        "{examined} bytes examined for {} received",
        input.len()
    );
    // A partial request byte by byte costs no more per byte either.
    let (_, _, examined) = feed(&input[..100_000], 1, &limits);
    assert!(examined <= 3 * 100_000, "{examined}");
}

#[test]
fn header_without_cr_arriving_byte_by_byte_is_scanned_once() {
    let line = [b'1'; 60];
    let mut input = b"*".to_vec();
    input.extend_from_slice(&line);
    let (_, e, examined) = feed(&input, 1, &LIMITS);
    assert_eq!(e, None);
    assert!(examined <= 2 * input.len() as u64, "{examined}");
    let mut inline = vec![b'a'; 60];
    inline.push(b' ');
    let (_, e, examined) = feed(&inline, 1, &LIMITS);
    assert_eq!(e, None);
    assert!(examined <= 2 * inline.len() as u64, "{examined}");
}
