//! Scripting, functions, connection commands and deterministic introspection.

use super::runner::Case;

const LIB: &str = "\"#!lua name=corpuslib\\nredis.register_function('getk', function(keys, args) return redis.call('GET', keys[1]) end)\\nredis.register_function{function_name='ro', callback=function(keys, args) return {keys[1], args[1], 42} end, flags={'no-writes'}}\\nredis.register_function('setk', function(keys, args) return redis.call('SET', keys[1], args[1]) end)\\nredis.register_function('boom', function(keys, args) return redis.error_reply('MYERR custom') end)\"";

/// FUNCTION LIST shows a library's functions in dict order (a per-process hash seed):
/// it is only called with one library of one function loaded.
const ONE: &str = "\"#!lua name=onelib\nredis.register_function{function_name='only', callback=function(keys, args) return args[1] end, flags={'no-writes'}, description='the only one'}\"";

pub fn scripting() -> Vec<Case> {
    vec![Case::new(
        "scripting/eval",
        &[
            "EVAL \"return 1\" 0",
            "EVAL \"return 'x'\" 0",
            "EVAL \"return {1, 'two', {3}}\" 0",
            "EVAL \"return redis.call('SET', KEYS[1], ARGV[1])\" 1 k v",
            "EVAL \"return redis.call('GET', KEYS[1])\" 1 k",
            "GET k",
            "EVAL \"return redis.call('GET', KEYS[1])\" 1 missing",
            "EVAL \"return nil\" 0",
            "EVAL \"return true\" 0",
            "EVAL \"return false\" 0",
            "EVAL \"return 3.99\" 0",
            "EVAL \"return {err='MY error'}\" 0",
            "EVAL \"return redis.status_reply('FINE')\" 0",
            "EVAL \"return redis.error_reply('custom')\" 0",
            "EVAL \"return redis.call('nosuch')\" 0",
            "EVAL \"return redis.pcall('INCR', KEYS[1])\" 1 k",
            "EVAL \"redis.setresp(3); return redis.call('HGETALL', KEYS[1])\" 1 h",
            "EVAL \"redis.setresp(3); return {double=1.5}\" 0",
            "EVAL \"return {map={a=1}}\" 0",
            "EVAL \"syntax error here\" 0",
            "EVAL \"return 1\" -1",
            "EVAL \"return 1\" 2 onlyone",
            "EVAL \"return #ARGV\" 0 a b \"\"",
            "SCRIPT LOAD \"return 'loaded'\"",
            "SCRIPT LOAD \"return redis.call('INCR', KEYS[1])\"",
            "EVALSHA 67159a2dbf9f8ed1e7ee7da8f9c22a8e2d9f3b26 0",
            "SCRIPT EXISTS 67159a2dbf9f8ed1e7ee7da8f9c22a8e2d9f3b26 0000000000000000000000000000000000000000",
            "EVALSHA ffffffffffffffffffffffffffffffffffffffff 0",
            "EVALSHA short 0",
            "EVAL_RO \"return redis.call('GET', KEYS[1])\" 1 k",
            "EVAL_RO \"return redis.call('SET', KEYS[1], 'x')\" 1 k",
            "SCRIPT FLUSH",
            "SCRIPT EXISTS 67159a2dbf9f8ed1e7ee7da8f9c22a8e2d9f3b26",
            "SCRIPT NOSUCH",
            "EVAL",
        ],
    )]
}

pub fn functions() -> Vec<Case> {
    vec![Case::new(
        "functions",
        &[
            &format!("FUNCTION LOAD {LIB}"),
            &format!("FUNCTION LOAD {LIB}"),
            &format!("FUNCTION LOAD REPLACE {LIB}"),
            "FUNCTION LIST LIBRARYNAME nothing",
            "FCALL setk 1 fk fv",
            "FCALL getk 1 fk",
            "GET fk",
            "FCALL_RO ro 1 key arg",
            "FCALL_RO setk 1 fk x",
            "FCALL boom 0",
            "FCALL nosuch 0",
            "FCALL getk -1",
            "FUNCTION LOAD \"#!lua name=bad\\nnot lua\"",
            "FUNCTION LOAD \"no shebang\"",
            "FUNCTION DELETE nosuchlib",
            "FUNCTION DELETE corpuslib",
            "FCALL getk 1 fk",
            &format!("FUNCTION LOAD {ONE}"),
            "FUNCTION LIST",
            "FUNCTION LIST WITHCODE LIBRARYNAME one*",
            "FCALL_RO only 0 a",
            "FUNCTION FLUSH",
            "FUNCTION LIST",
            "FUNCTION NOSUCH",
        ],
    )]
}

pub fn connection() -> Vec<Case> {
    vec![
        Case::new(
            "connection/basic",
            &[
                "PING",
                "PING hello",
                "PING \"\"",
                "PING a b",
                "ECHO \"\\r\\n\\0\"",
                "ECHO",
                "ECHO \"\"",
                "CLIENT GETNAME",
                "CLIENT SETNAME corpus",
                "CLIENT GETNAME",
                "CLIENT SETNAME \"has space\"",
                "CLIENT SETNAME \"\"",
                "CLIENT GETNAME",
                "CLIENT ID",
                "SELECT 1",
                "SET k db1",
                "GET k",
                "SELECT 0",
                "GET k",
                "SELECT 16",
                "SELECT -1",
                "SELECT x",
                "NOSUCHCOMMAND",
                "NOSUCHCOMMAND with \"args\"",
                "\"\"",
                "get",
                "gEt k",
            ],
        ),
        Case::new(
            "connection/hello",
            &[
                "HELLO",
                "GET missing",
                "HELLO 3",
                "GET missing",
                "ZADD z 1.5 a",
                "ZSCORE z a",
                "HELLO 2",
                "GET missing",
                "ZSCORE z a",
                "HELLO 3 SETNAME viahello",
                "CLIENT GETNAME",
                "HELLO 4",
                "HELLO abc",
                "HELLO 3 AUTH default wrongpass",
                "HELLO 2",
                "CLIENT ID",
            ],
        ),
    ]
}

pub fn introspection() -> Vec<Case> {
    vec![Case::new(
        "introspection",
        &[
            "COMMAND COUNT",
            "@resp2 COMMAND INFO get mget nosuch",
            "COMMAND GETKEYS SET k v",
            "COMMAND GETKEYS MSET a 1 b 2",
            "COMMAND GETKEYS GET",
            "@resp2 COMMAND GETKEYSANDFLAGS LMOVE a b LEFT RIGHT",
            "@resp2 COMMAND DOCS get",
            "DBSIZE",
            "SET a 1",
            "DBSIZE",
            "EXISTS a",
            "TYPE a",
            "OBJECT ENCODING a",
            "SET big 12345678901234567890",
            "OBJECT ENCODING big",
            "SET emb abc",
            "OBJECT ENCODING emb",
            "LASTSAVE_IS_NOT_A_COMMAND",
            "CONFIG GET maxmemory-policy",
            "CONFIG GET hash-max-listpack-entries",
        ],
    )]
}
