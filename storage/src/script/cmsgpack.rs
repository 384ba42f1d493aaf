//! `cmsgpack`: MessagePack for scripts, as the lua-cmsgpack library Redis embeds writes
//! and reads it.
//!
//! Packing: integral numbers in the smallest integer form, others as a float32 when that
//! is exact, else a float64; strings in the smallest str form; a table whose keys are
//! exactly 1..n as an array (the empty table too), any other as a map; tables nested
//! deeper than 16 and values of other types as nil. `pack(a, b, ...)` concatenates.
//! Unpacking reads every value (`unpack`), one (`unpack_one`) or up to a limit
//! (`unpack_limit`), the last two answering first the offset to continue from (-1 at
//! the end), but for a limit and offset of 0, which reads every value as `unpack`.

use mlua::{Lua, LuaString, Table, Value, Variadic};

use super::args::{raise, Fault};
use super::lua::{located, MEMORY_LIMIT};

/// Most values one `pack` writes.
const MAX_VALUES: usize = 1_000_000;
/// Deepest table nesting packed (deeper ones become nil).
const MAX_NESTING: usize = 16;
/// Deepest nesting unpacked.
const MAX_UNPACK_DEPTH: usize = 1000;

/// The `cmsgpack` library.
pub(super) fn library(lua: &Lua) -> mlua::Result<Table> {
    let lib = lua.create_table()?;
    lib.raw_set(
        "pack",
        lua.create_function(|lua, args: Variadic<Value>| {
            if args.is_empty() {
                return Err(raise(
                    lua,
                    Fault::Arg(0, "MessagePack pack needs input.".into()),
                ));
            }
            let mut out = Vec::new();
            let mut left = MAX_VALUES;
            for v in args.iter() {
                pack(v, 0, &mut left, &mut out).map_err(|e| located(lua, &e))?;
            }
            lua.create_string(&out)
        })?,
    )?;
    lib.raw_set(
        "unpack",
        lua.create_function(|lua, data: LuaString| {
            let bytes = data.as_bytes().to_vec();
            let (values, _) = unpack_values(lua, &bytes, 0, usize::MAX)?;
            Ok(Variadic::from(values))
        })?,
    )?;
    lib.raw_set(
        "unpack_one",
        lua.create_function(|lua, (data, offset): (LuaString, Option<i64>)| {
            limited(lua, &data, 1, offset.unwrap_or(0))
        })?,
    )?;
    lib.raw_set(
        "unpack_limit",
        lua.create_function(
            |lua, (data, limit, offset): (LuaString, i64, Option<i64>)| {
                limited(lua, &data, limit, offset.unwrap_or(0))
            },
        )?,
    )?;
    Ok(lib)
}

/// `unpack_one`/`unpack_limit`: the offset to go on from (-1 at the end), then the values
/// (a limit and an offset of 0: every value, without the offset, as `unpack`).
fn limited(lua: &Lua, data: &LuaString, limit: i64, offset: i64) -> mlua::Result<Variadic<Value>> {
    let bytes = data.as_bytes().to_vec();
    let len = bytes.len();
    if offset < 0 || limit < 0 {
        return Err(located(
            lua,
            &format!("Invalid request to unpack with offset of {offset} and limit of {len}."),
        ));
    }
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    if start > len {
        return Err(located(
            lua,
            &format!("Start offset {offset} greater than input length {len}."),
        ));
    }
    if limit == 0 && offset == 0 {
        let (values, _) = unpack_values(lua, &bytes, 0, usize::MAX)?;
        return Ok(Variadic::from(values));
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let (values, end) = unpack_values(lua, &bytes, start, limit)?;
    let next = if end >= bytes.len() { -1 } else { end as i64 };
    let mut out = vec![Value::Integer(next)];
    out.extend(values);
    Ok(Variadic::from(out))
}

fn pack(value: &Value, depth: usize, left: &mut usize, out: &mut Vec<u8>) -> Result<(), String> {
    // Tables that hold themselves would expand without end (and a table holding a long
    // string many times, in memory Lua does not count).
    if *left == 0 || out.len() > MEMORY_LIMIT {
        return Err("MessagePack pack input too large.".into());
    }
    *left -= 1;
    match value {
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => pack_number(*i as f64, out),
        Value::Number(n) => pack_number(*n, out),
        Value::String(s) => {
            let s = s.as_bytes();
            let len = s.len();
            if len < 32 {
                out.push(0xa0 | len as u8);
            } else if len < 0x100 {
                out.extend_from_slice(&[0xd9, len as u8]);
            } else if len < 0x10000 {
                out.push(0xda);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                out.push(0xdb);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
            out.extend_from_slice(&s);
        }
        Value::Table(t) if depth < MAX_NESTING => {
            pack_table(t, depth + 1, left, out).map_err(|e| e.to_string())?
        }
        _ => out.push(0xc0),
    }
    Ok(())
}

fn pack_number(n: f64, out: &mut Vec<u8>) {
    const TWO_TO_63: f64 = 9_223_372_036_854_775_808.0;
    if n.fract() == 0.0 && (-TWO_TO_63..TWO_TO_63).contains(&n) {
        pack_integer(n as i64, out);
    } else if f64::from(n as f32) == n || n.is_nan() {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn pack_integer(i: i64, out: &mut Vec<u8>) {
    if i >= 0 {
        let u = i as u64;
        if u < 0x80 {
            out.push(u as u8);
        } else if u < 0x100 {
            out.extend_from_slice(&[0xcc, u as u8]);
        } else if u < 0x10000 {
            out.push(0xcd);
            out.extend_from_slice(&(u as u16).to_be_bytes());
        } else if u < 0x1_0000_0000 {
            out.push(0xce);
            out.extend_from_slice(&(u as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
    } else if i >= -32 {
        out.push(i as i8 as u8);
    } else if i >= -128 {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= -(1 << 31) {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

/// The length of `t` if its keys are exactly 1..n (lua-cmsgpack's array rule).
fn array_length(t: &Table) -> mlua::Result<Option<usize>> {
    let (mut count, mut max) = (0usize, 0usize);
    for pair in t.pairs::<Value, Value>() {
        let (key, _) = pair?;
        let index = match key {
            Value::Integer(i) if i >= 1 => i as usize,
            _ => return Ok(None),
        };
        count += 1;
        max = max.max(index);
    }
    Ok((max == count).then_some(count))
}

fn header(out: &mut Vec<u8>, len: usize, fix: u8, wide16: u8, wide32: u8) {
    if len < 16 {
        out.push(fix | len as u8);
    } else if len < 0x10000 {
        out.push(wide16);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(wide32);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn pack_table(t: &Table, depth: usize, left: &mut usize, out: &mut Vec<u8>) -> Result<(), String> {
    let lua_error = |e: mlua::Error| e.to_string();
    if let Some(len) = array_length(t).map_err(lua_error)? {
        header(out, len, 0x90, 0xdc, 0xdd);
        for i in 1..=len {
            pack(&t.raw_get::<Value>(i).map_err(lua_error)?, depth, left, out)?;
        }
        return Ok(());
    }
    let pairs: Vec<(Value, Value)> = t
        .pairs::<Value, Value>()
        .collect::<mlua::Result<_>>()
        .map_err(lua_error)?;
    header(out, pairs.len(), 0x80, 0xde, 0xdf);
    for (k, v) in &pairs {
        pack(k, depth, left, out)?;
        pack(v, depth, left, out)?;
    }
    Ok(())
}

/// Up to `limit` values from `data[start..]`, and where reading stopped.
fn unpack_values(
    lua: &Lua,
    data: &[u8],
    start: usize,
    limit: usize,
) -> mlua::Result<(Vec<Value>, usize)> {
    let mut reader = Reader {
        lua,
        data,
        at: start,
    };
    let mut values = Vec::new();
    while reader.at < data.len() && values.len() < limit {
        let value = reader.value(0).map_err(|e| match e {
            Bad::Lua(e) => e,
            Bad::Format => located(lua, "Bad data format in input."),
            Bad::Missing => located(lua, "Missing bytes in input."),
        })?;
        values.push(value);
    }
    Ok((values, reader.at))
}

enum Bad {
    Lua(mlua::Error),
    Format,
    Missing,
}

impl From<mlua::Error> for Bad {
    fn from(e: mlua::Error) -> Self {
        Bad::Lua(e)
    }
}

struct Reader<'a> {
    lua: &'a Lua,
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        let end = self.at.checked_add(n).ok_or(Bad::Missing)?;
        let data: &'a [u8] = self.data;
        let bytes = data.get(self.at..end).ok_or(Bad::Missing)?;
        self.at = end;
        Ok(bytes)
    }

    fn uint(&mut self, n: usize) -> Result<u64, Bad> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn value(&mut self, depth: usize) -> Result<Value, Bad> {
        if depth > MAX_UNPACK_DEPTH {
            return Err(Bad::Format);
        }
        let tag = self.take(1)?[0];
        let number = |n: f64| Ok(Value::Number(n));
        match tag {
            0x00..=0x7f => number(f64::from(tag)),
            0xe0..=0xff => number(f64::from(tag as i8)),
            0xc0 => Ok(Value::Nil),
            0xc2 => Ok(Value::Boolean(false)),
            0xc3 => Ok(Value::Boolean(true)),
            0xcc => number(self.uint(1)? as f64),
            0xcd => number(self.uint(2)? as f64),
            0xce => number(self.uint(4)? as f64),
            0xcf => number(self.uint(8)? as f64),
            0xd0 => number(f64::from(self.uint(1)? as u8 as i8)),
            0xd1 => number(f64::from(self.uint(2)? as u16 as i16)),
            0xd2 => number(f64::from(self.uint(4)? as u32 as i32)),
            0xd3 => number(self.uint(8)? as i64 as f64),
            0xca => number(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => number(f64::from_bits(self.uint(8)?)),
            0xa0..=0xbf => self.string(usize::from(tag & 0x1f)),
            0xd9 | 0xc4 => {
                let n = self.uint(1)? as usize;
                self.string(n)
            }
            0xda | 0xc5 => {
                let n = self.uint(2)? as usize;
                self.string(n)
            }
            0xdb | 0xc6 => {
                let n = self.uint(4)? as usize;
                self.string(n)
            }
            0x90..=0x9f => self.array(usize::from(tag & 0x0f), depth),
            0xdc => {
                let n = self.uint(2)? as usize;
                self.array(n, depth)
            }
            0xdd => {
                let n = self.uint(4)? as usize;
                self.array(n, depth)
            }
            0x80..=0x8f => self.map(usize::from(tag & 0x0f), depth),
            0xde => {
                let n = self.uint(2)? as usize;
                self.map(n, depth)
            }
            0xdf => {
                let n = self.uint(4)? as usize;
                self.map(n, depth)
            }
            _ => Err(Bad::Format),
        }
    }

    fn string(&mut self, n: usize) -> Result<Value, Bad> {
        let bytes = self.take(n)?;
        Ok(Value::String(self.lua.create_string(bytes)?))
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value, Bad> {
        // Every element takes a byte at least: a count past the input is malformed.
        if n > self.data.len() - self.at {
            return Err(Bad::Missing);
        }
        let t = self.lua.create_table_with_capacity(n, 0)?;
        for i in 1..=n {
            let v = self.value(depth + 1)?;
            t.raw_set(i, v)?;
        }
        Ok(Value::Table(t))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, Bad> {
        if n.saturating_mul(2) > self.data.len() - self.at {
            return Err(Bad::Missing);
        }
        let t = self.lua.create_table()?;
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            // A nil key cannot be stored (lua-cmsgpack skips it too).
            if !matches!(k, Value::Nil) {
                t.raw_set(k, v)?;
            }
        }
        Ok(Value::Table(t))
    }
}
