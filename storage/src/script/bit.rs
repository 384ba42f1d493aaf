//! `bit`: LuaBitOp's 32-bit operations on numbers, as Redis embeds them (`tobit`, `tohex`,
//! `bnot`, `band`, `bor`, `bxor`, `lshift`, `rshift`, `arshift`, `rol`, `ror`, `bswap`).
//!
//! Invariants: every argument is read as LuaBitOp reads it (a number or numeric string,
//! rounded to an integer whose low 32 bits are kept) and refused in Lua's words
//! ([`super::args`]); results are numbers in -2^31..2^31.

use mlua::{Lua, Table, Value, Variadic};

use super::args::{number_arg, raise};

/// Argument `i` (from 0) normalised as LuaBitOp does: rounded, its low 32 bits kept.
fn arg(lua: &Lua, args: &[Value], i: usize) -> mlua::Result<i32> {
    let n = number_arg(lua, args, i, "no value").map_err(|f| raise(lua, f))?;
    Ok((n + 6_755_399_441_055_744.0).to_bits() as u32 as i32)
}

/// The `bit` library.
pub(super) fn library(lua: &Lua) -> mlua::Result<Table> {
    let bit = lua.create_table()?;
    let fold = |name: &str, op: fn(i32, i32) -> i32| -> mlua::Result<()> {
        let f = lua.create_function(move |lua, args: Variadic<Value>| {
            // LuaBitOp reads the first argument, then the others from the last.
            let mut acc = arg(lua, &args, 0)?;
            for i in (1..args.len()).rev() {
                acc = op(acc, arg(lua, &args, i)?);
            }
            Ok(f64::from(acc))
        })?;
        bit.raw_set(name, f)
    };
    fold("band", |a, b| a & b)?;
    fold("bor", |a, b| a | b)?;
    fold("bxor", |a, b| a ^ b)?;
    let shift = |name: &str, op: fn(i32, u32) -> i32| -> mlua::Result<()> {
        let f = lua.create_function(move |lua, args: Variadic<Value>| {
            let x = arg(lua, &args, 0)?;
            let n = (arg(lua, &args, 1)? & 31) as u32;
            Ok(f64::from(op(x, n)))
        })?;
        bit.raw_set(name, f)
    };
    shift("lshift", |x, n| ((x as u32) << n) as i32)?;
    shift("rshift", |x, n| ((x as u32) >> n) as i32)?;
    shift("arshift", |x, n| x >> n)?;
    shift("rol", |x, n| (x as u32).rotate_left(n) as i32)?;
    shift("ror", |x, n| (x as u32).rotate_right(n) as i32)?;
    let unary = |name: &str, op: fn(i32) -> i32| -> mlua::Result<()> {
        let f = lua.create_function(move |lua, args: Variadic<Value>| {
            Ok(f64::from(op(arg(lua, &args, 0)?)))
        })?;
        bit.raw_set(name, f)
    };
    unary("tobit", |x| x)?;
    unary("bnot", |x| !x)?;
    unary("bswap", i32::swap_bytes)?;
    bit.raw_set(
        "tohex",
        lua.create_function(|lua, args: Variadic<Value>| {
            let x = arg(lua, &args, 0)? as u32;
            // Only an absent count is the default: an explicit nil is refused.
            let n = match args.get(1) {
                None => 8,
                Some(_) => arg(lua, &args, 1)?,
            };
            let (upper, width) = (n < 0, n.unsigned_abs().min(8) as usize);
            let hex = if upper {
                format!("{x:08X}")
            } else {
                format!("{x:08x}")
            };
            Ok(hex[8 - width..].to_string())
        })?,
    )?;
    Ok(bit)
}
