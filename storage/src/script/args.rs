//! The arguments of the libraries written in Rust (`struct`, `bit`), read and refused as
//! Lua's C API does: numbers and strings coerce into each other as Lua's do, and a bad
//! argument is told in Lua's words (`bad argument #2 to 'band' (number expected, got
//! string)`), naming the function as its caller named it (`?` when Lua cannot tell, as
//! from `pcall`), placed at the calling line ([`located`]).

use mlua::{Lua, Value};

use super::lua::located;

/// Why a call fails.
pub(super) enum Fault {
    /// A bad argument: its number (from 1, as Lua counts them) and what is wrong.
    Arg(usize, String),
    /// Anything else wrong with the format or the data: the text.
    Plain(String),
    /// Lua's own failure (memory).
    Lua(mlua::Error),
}

impl From<mlua::Error> for Fault {
    fn from(e: mlua::Error) -> Self {
        Fault::Lua(e)
    }
}

/// The error raised for `fault`.
pub(super) fn raise(lua: &Lua, fault: Fault) -> mlua::Error {
    match fault {
        Fault::Arg(arg, message) => located(lua, &argument_error(lua, arg, &message)),
        Fault::Plain(message) => located(lua, &message),
        Fault::Lua(e) => e,
    }
}

/// Lua's text for a bad argument of the running function: named as its caller named it
/// (`?` when Lua cannot tell, as from `pcall`), `self` not counted in a method call.
fn argument_error(lua: &Lua, arg: usize, message: &str) -> String {
    let names = lua.inspect_stack(0, |d| {
        let names = d.names();
        (
            names.name.map(|n| n.into_owned()),
            names.name_what == Some("method"),
        )
    });
    let Some((name, method)) = names else {
        return format!("bad argument #{arg} ({message})");
    };
    let name = name.unwrap_or_else(|| "?".to_string());
    match (method, arg) {
        (true, 1) => format!("calling '{name}' on bad self ({message})"),
        (true, _) => format!(
            "bad argument #{} to '{name}' ({message})",
            arg.saturating_sub(1)
        ),
        (false, _) => format!("bad argument #{arg} to '{name}' ({message})"),
    }
}

/// Lua's name of the type of `v`.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        // Light and full userdata, and errors (userdata to Lua).
        _ => "userdata",
    }
}

/// Argument `i` (from 0) as a string (a number as Lua writes it); `absent` is what a
/// missing one is called.
pub(super) fn string_arg(
    lua: &Lua,
    args: &[Value],
    i: usize,
    absent: &str,
) -> Result<Vec<u8>, Fault> {
    let Some(v) = args.get(i) else {
        return Err(Fault::Arg(i + 1, format!("string expected, got {absent}")));
    };
    match lua.coerce_string(v.clone())? {
        Some(s) => Ok(s.as_bytes().to_vec()),
        None => Err(Fault::Arg(
            i + 1,
            format!("string expected, got {}", type_name(v)),
        )),
    }
}

/// Argument `i` (from 0) as a number (a numeric string as Lua reads it); `absent` is what
/// a missing one is called.
pub(super) fn number_arg(lua: &Lua, args: &[Value], i: usize, absent: &str) -> Result<f64, Fault> {
    let Some(v) = args.get(i) else {
        return Err(Fault::Arg(i + 1, format!("number expected, got {absent}")));
    };
    lua.coerce_number(v.clone())?
        .ok_or_else(|| Fault::Arg(i + 1, format!("number expected, got {}", type_name(v))))
}
