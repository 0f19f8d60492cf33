//! The shell-word lexer on arbitrary words and option combinations: Ok or an error, never a
//! panic (and bounded time: the pattern matcher is memoised).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use strata_dockerfile::heredoc::{heredocs_from_line, parse_heredoc_word};
use strata_dockerfile::lexer::Lexer;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let word = String::from_utf8_lossy(rest);
    let mut lex = Lexer::new(if flags & 1 == 0 { '\\' } else { '`' });
    lex.raw_quotes = flags & 2 != 0;
    lex.raw_escapes = flags & 4 != 0;
    lex.skip_process_quotes = flags & 8 != 0;
    lex.skip_unset_env = flags & 16 != 0;
    let env: BTreeMap<String, String> = [
        ("PWD", "/home"),
        ("EMPTY", ""),
        ("A", "a*b?c"),
        ("STAR", "\\*/"),
        ("LONG", "xxxxxxxxyyyyyyyyxxxxxxxxyyyyyyyy/a/b/c.txt"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let _ = lex.process(&word, &env);
    let _ = parse_heredoc_word(&word);
    let _ = heredocs_from_line(&word);
});
