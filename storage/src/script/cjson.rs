//! `cjson`: JSON for scripts, as the lua-cjson library Redis embeds writes and reads it.
//!
//! Encoding: numbers with 14 significant digits (NaN and infinities refused), strings
//! with `/` escaped and control characters as `\u00XX`, a table whose keys are exactly
//! positive integers as an array (holes as `null`; a table sparser than twice its
//! element count past 10 is refused), any other table as an object (string and number
//! keys only), an empty table as `{}`. Decoding gives tables, numbers, strings, booleans
//! and `cjson.null`. Errors carry lua-cjson's texts.

use mlua::{LightUserData, Lua, Table, Value, Variadic};
use zankv_commands::number::format_double_g;

use super::args::{raise, string_arg, Fault};
use super::lua::{located, MEMORY_LIMIT};

/// Most values one `encode` writes.
const MAX_VALUES: usize = 1_000_000;
/// Deepest nesting either direction accepts.
const MAX_DEPTH: usize = 1000;

/// The `cjson` library.
pub(super) fn library(lua: &Lua) -> mlua::Result<Table> {
    let cjson = lua.create_table()?;
    cjson.raw_set(
        "encode",
        lua.create_function(|lua, args: Variadic<Value>| {
            let [value] = args.as_slice() else {
                return Err(raise(lua, Fault::Arg(1, "expected 1 argument".into())));
            };
            let mut out = Vec::new();
            let mut left = MAX_VALUES;
            encode(value, 0, &mut left, &mut out).map_err(|e| located(lua, &e))?;
            lua.create_string(&out)
        })?,
    )?;
    cjson.raw_set(
        "decode",
        lua.create_function(|lua, args: Variadic<Value>| {
            if args.len() != 1 {
                return Err(raise(lua, Fault::Arg(1, "expected 1 argument".into())));
            }
            // A number decodes as the text Lua writes it.
            let bytes = string_arg(lua, &args, 0, "no value").map_err(|f| raise(lua, f))?;
            let mut parser = Parser {
                lua,
                text: &bytes,
                at: 0,
            };
            parser.document().map_err(|e| match e {
                Failure::Lua(e) => e,
                Failure::Json(message) => located(lua, &message),
            })
        })?,
    )?;
    cjson.raw_set("null", null())?;
    Ok(cjson)
}

/// `cjson.null`.
fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

fn number(n: f64, out: &mut Vec<u8>) -> Result<(), String> {
    if !n.is_finite() {
        return Err("Cannot serialise number: must not be NaN or Inf".into());
    }
    out.extend_from_slice(format_double_g(n, 14).as_bytes());
    Ok(())
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..0x20 | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

fn encode(value: &Value, depth: usize, left: &mut usize, out: &mut Vec<u8>) -> Result<(), String> {
    // A table that holds itself would expand without end (and a table holding a long
    // string many times, in memory Lua does not count).
    if *left == 0 || out.len() > MEMORY_LIMIT {
        return Err(format!(
            "Cannot serialise, excessive nesting ({})",
            depth + 1
        ));
    }
    *left -= 1;
    match value {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => number(*i as f64, out)?,
        Value::Number(n) => number(*n, out)?,
        Value::String(s) => string(&s.as_bytes(), out),
        Value::Table(t) => {
            if depth >= MAX_DEPTH {
                return Err(format!(
                    "Cannot serialise, excessive nesting ({})",
                    depth + 1
                ));
            }
            table(t, depth + 1, left, out)?;
        }
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            ))
        }
    }
    Ok(())
}

/// The length of `t` as an array (lua-cjson's rule), or None for an object.
fn array_length(t: &Table) -> Result<Option<usize>, String> {
    let (mut max, mut items) = (0usize, 0usize);
    for pair in t.pairs::<Value, Value>() {
        let (key, _) = pair.map_err(|e| e.to_string())?;
        let index = match key {
            Value::Integer(i) if i >= 1 => i as usize,
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 && n < usize::MAX as f64 => n as usize,
            _ => return Ok(None),
        };
        max = max.max(index);
        items += 1;
    }
    if max > items * 2 && max > 10 {
        return Err("Cannot serialise table: excessively sparse array".into());
    }
    Ok((max > 0).then_some(max))
}

fn table(t: &Table, depth: usize, left: &mut usize, out: &mut Vec<u8>) -> Result<(), String> {
    if let Some(len) = array_length(t)? {
        out.push(b'[');
        for i in 1..=len {
            if i > 1 {
                out.push(b',');
            }
            let v: Value = t.raw_get(i).map_err(|e| e.to_string())?;
            encode(&v, depth, left, out)?;
        }
        out.push(b']');
        return Ok(());
    }
    out.push(b'{');
    let mut first = true;
    for pair in t.pairs::<Value, Value>() {
        let (key, value) = pair.map_err(|e| e.to_string())?;
        if !first {
            out.push(b',');
        }
        first = false;
        match &key {
            Value::String(s) => string(&s.as_bytes(), out),
            Value::Integer(i) => string(format_double_g(*i as f64, 14).as_bytes(), out),
            Value::Number(n) => string(format_double_g(*n, 14).as_bytes(), out),
            other => {
                return Err(format!(
                    "Cannot serialise {}: table key must be a number or string",
                    other.type_name()
                ))
            }
        }
        out.push(b':');
        encode(&value, depth, left, out)?;
    }
    out.push(b'}');
    Ok(())
}

/// Why decoding stopped.
enum Failure {
    Lua(mlua::Error),
    Json(String),
}

impl From<mlua::Error> for Failure {
    fn from(e: mlua::Error) -> Self {
        Failure::Lua(e)
    }
}

/// A token as lua-cjson names it in its errors.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Token {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str,
    Num,
    Bool,
    Null,
    Colon,
    Comma,
    End,
    Invalid,
}

impl Token {
    fn name(self) -> &'static str {
        match self {
            Token::ObjBegin => "T_OBJ_BEGIN",
            Token::ObjEnd => "T_OBJ_END",
            Token::ArrBegin => "T_ARR_BEGIN",
            Token::ArrEnd => "T_ARR_END",
            Token::Str => "T_STRING",
            Token::Num => "T_NUMBER",
            Token::Bool => "T_BOOLEAN",
            Token::Null => "T_NULL",
            Token::Colon => "T_COLON",
            Token::Comma => "T_COMMA",
            Token::End => "T_END",
            Token::Invalid => "invalid token",
        }
    }
}

struct Parser<'a> {
    lua: &'a Lua,
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn document(&mut self) -> Result<Value, Failure> {
        let value = self.value(0)?;
        let (token, start) = self.peek();
        if token != Token::End {
            return Err(expected("the end", token, start));
        }
        Ok(value)
    }

    fn skip_space(&mut self) {
        while self
            .text
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    /// The next token's kind and where it starts (not consumed).
    fn peek(&mut self) -> (Token, usize) {
        self.skip_space();
        let token = match self.text.get(self.at) {
            None => Token::End,
            Some(b'{') => Token::ObjBegin,
            Some(b'}') => Token::ObjEnd,
            Some(b'[') => Token::ArrBegin,
            Some(b']') => Token::ArrEnd,
            Some(b':') => Token::Colon,
            Some(b',') => Token::Comma,
            Some(b'"') => Token::Str,
            Some(b'-' | b'0'..=b'9') => Token::Num,
            Some(_) if self.rest_starts(b"true") || self.rest_starts(b"false") => Token::Bool,
            Some(_) if self.rest_starts(b"null") => Token::Null,
            Some(_) => Token::Invalid,
        };
        (token, self.at)
    }

    fn rest_starts(&self, word: &[u8]) -> bool {
        self.text[self.at..].starts_with(word)
    }

    fn value(&mut self, depth: usize) -> Result<Value, Failure> {
        let (token, start) = self.peek();
        match token {
            Token::ObjBegin | Token::ArrBegin if depth >= MAX_DEPTH => Err(Failure::Json(format!(
                "Found too many nested data structures ({}) at character {}",
                depth + 1,
                start + 1
            ))),
            Token::ObjBegin => self.object(depth + 1),
            Token::ArrBegin => self.array(depth + 1),
            Token::Str => Ok(Value::String(self.lua.create_string(self.string()?)?)),
            Token::Num => self.number(),
            Token::Bool => {
                let b = self.rest_starts(b"true");
                self.at += if b { 4 } else { 5 };
                Ok(Value::Boolean(b))
            }
            Token::Null => {
                self.at += 4;
                Ok(null())
            }
            other => Err(expected("value", other, start)),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, Failure> {
        self.at += 1;
        let t = self.lua.create_table()?;
        if self.peek().0 == Token::ObjEnd {
            self.at += 1;
            return Ok(Value::Table(t));
        }
        loop {
            let (token, start) = self.peek();
            if token != Token::Str {
                return Err(expected("object key string", token, start));
            }
            let key = self.lua.create_string(self.string()?)?;
            let (token, start) = self.peek();
            if token != Token::Colon {
                return Err(expected("colon", token, start));
            }
            self.at += 1;
            let value = self.value(depth)?;
            t.raw_set(key, value)?;
            match self.peek() {
                (Token::Comma, _) => self.at += 1,
                (Token::ObjEnd, _) => {
                    self.at += 1;
                    return Ok(Value::Table(t));
                }
                (token, start) => return Err(expected("comma or object end", token, start)),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, Failure> {
        self.at += 1;
        let t = self.lua.create_table()?;
        if self.peek().0 == Token::ArrEnd {
            self.at += 1;
            return Ok(Value::Table(t));
        }
        for i in 1.. {
            let value = self.value(depth)?;
            t.raw_set(i, value)?;
            match self.peek() {
                (Token::Comma, _) => self.at += 1,
                (Token::ArrEnd, _) => {
                    self.at += 1;
                    break;
                }
                (token, start) => return Err(expected("comma or array end", token, start)),
            }
        }
        Ok(Value::Table(t))
    }

    fn number(&mut self) -> Result<Value, Failure> {
        let start = self.at;
        while self
            .text
            .get(self.at)
            .is_some_and(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.at += 1;
        }
        std::str::from_utf8(&self.text[start..self.at])
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map(Value::Number)
            .ok_or_else(|| expected("value", Token::Invalid, start))
    }

    /// A string token's text, escapes resolved (the opening quote is at `self.at`).
    fn string(&mut self) -> Result<Vec<u8>, Failure> {
        let start = self.at;
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.text.get(self.at) else {
                return Err(expected("value", Token::Invalid, start));
            };
            self.at += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.text.get(self.at) else {
                        return Err(expected("value", Token::Invalid, start));
                    };
                    self.at += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let c = self
                                .code_point()
                                .ok_or_else(|| expected("value", Token::Invalid, start))?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(expected("value", Token::Invalid, start)),
                    }
                }
                _ => out.push(b),
            }
        }
    }

    /// The character of a `\u` escape (after the `u`), surrogate pairs joined.
    fn code_point(&mut self) -> Option<char> {
        let hex = |p: &mut Self| -> Option<u32> {
            let digits = std::str::from_utf8(p.text.get(p.at..p.at + 4)?).ok()?;
            let v = u32::from_str_radix(digits, 16).ok()?;
            p.at += 4;
            Some(v)
        };
        let first = hex(self)?;
        if (0xd800..0xdc00).contains(&first) {
            if self.text.get(self.at..self.at + 2)? != b"\\u" {
                return None;
            }
            self.at += 2;
            let second = hex(self)?;
            if !(0xdc00..0xe000).contains(&second) {
                return None;
            }
            return char::from_u32(0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00));
        }
        char::from_u32(first)
    }
}

fn expected(what: &str, found: Token, at: usize) -> Failure {
    Failure::Json(format!(
        "Expected {what} but found {} at character {}",
        found.name(),
        at + 1
    ))
}
