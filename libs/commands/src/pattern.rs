//! Redis glob-style patterns (KEYS, SCAN MATCH, HSCAN MATCH).
//!
//! Supported syntax, as in Redis: `*` any run of bytes, `?` one byte, `[abc]`, `[^abc]`,
//! `[a-z]` classes (an unterminated class ends at the pattern's end), and `\x` for a literal
//! `x`. Matching is byte-wise and case-sensitive. Every token but `*` consumes exactly one
//! byte, so backtracking to the last `*` is enough and matching is O(pattern × subject).

enum Token<'a> {
    Star,
    Any,
    Literal(u8),
    Class { negate: bool, body: &'a [u8] },
}

fn next_token(p: &[u8]) -> (Token<'_>, usize) {
    match p[0] {
        b'*' => (Token::Star, 1),
        b'?' => (Token::Any, 1),
        b'\\' if p.len() >= 2 => (Token::Literal(p[1]), 2),
        b'[' => {
            let mut i = 1;
            let negate = p.get(1) == Some(&b'^');
            if negate {
                i += 1;
            }
            let start = i;
            while i < p.len() && p[i] != b']' {
                if p[i] == b'\\' && i + 1 < p.len() {
                    i += 1;
                }
                i += 1;
            }
            let body = &p[start..i];
            let used = if i < p.len() { i + 1 } else { i };
            (Token::Class { negate, body }, used)
        }
        c => (Token::Literal(c), 1),
    }
}

fn class_matches(body: &[u8], c: u8) -> bool {
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\\' && i + 1 < body.len() {
            if body[i + 1] == c {
                return true;
            }
            i += 2;
        } else if i + 2 < body.len() && body[i + 1] == b'-' {
            let (mut lo, mut hi) = (body[i], body[i + 2]);
            if lo > hi {
                std::mem::swap(&mut lo, &mut hi);
            }
            if (lo..=hi).contains(&c) {
                return true;
            }
            i += 3;
        } else {
            if body[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

/// Whether `subject` matches the glob `pattern`, as Redis's `stringmatchlen`: the empty
/// string matches only the empty pattern (not even `*`).
pub fn glob_match(pattern: &[u8], subject: &[u8]) -> bool {
    if subject.is_empty() {
        return pattern.is_empty();
    }
    let (mut p, mut s) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            let (token, used) = next_token(&pattern[p..]);
            match token {
                Token::Star => {
                    backtrack = Some((p + used, s));
                    p += used;
                    continue;
                }
                _ if s < subject.len() => {
                    let c = subject[s];
                    let ok = match token {
                        Token::Any => true,
                        Token::Literal(l) => l == c,
                        Token::Class { negate, body } => class_matches(body, c) != negate,
                        Token::Star => unreachable!("handled above"),
                    };
                    if ok {
                        p += used;
                        s += 1;
                        continue;
                    }
                }
                _ => {}
            }
        } else if s == subject.len() {
            return true;
        }
        match backtrack {
            Some((bp, bs)) if bs < subject.len() => {
                backtrack = Some((bp, bs + 1));
                p = bp;
                s = bs + 1;
            }
            _ => return false,
        }
    }
}

/// Whether a key or field matches the `pattern` of KEYS or of a SCAN's MATCH, which take
/// a lone `*` for everything, the empty string included.
pub fn keys_match(pattern: &[u8], subject: &[u8]) -> bool {
    pattern == b"*" || glob_match(pattern, subject)
}

#[cfg(test)]
mod tests {
    use super::{glob_match, keys_match};

    #[test]
    fn globs() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", false),
            ("**", "", false),
            ("", "", true),
            ("a*", "a", true),
            ("*", "abc", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbb", false),
            ("h?llo", "hello", true),
            ("h[ae]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("*a*b*", "xxaxxbxx", true),
            ("k[", "k", false),
            ("a\\", "a\\", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(glob_match(p.as_bytes(), s.as_bytes()), *want, "{p} ~ {s}");
        }
        assert!(keys_match(b"*", b""));
        assert!(!keys_match(b"**", b""));
        assert!(keys_match(b"a?", b"ab"));
    }
}
