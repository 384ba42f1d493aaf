//! `struct`: binary strings for scripts, as the lua-struct library Redis 7.0 embeds (with
//! Redis's bounds checks) packs, unpacks and measures them: `struct.pack(fmt, ...)`,
//! `struct.unpack(fmt, s [, pos])` (the values, then the 1-based position after them) and
//! `struct.size(fmt)`.
//!
//! Formats: ` ` is skipped; `>` and `<` make what follows big- or little-endian (little at
//! first, the machine's; `=` is no option in this version); `!n` sets the largest alignment
//! (a power of two; 8 without `n`; 1 at first, so nothing is aligned); `x` is a zero byte;
//! `b`/`B`, `h`/`H`, `l`/`L`, `T` and `in`/`In` are signed/unsigned integers of 1, 2, 8, 8
//! and `n` bytes (4 without `n`, at most 32); `f` and `d` are a float and a double; `cn` is
//! `n` bytes (1 without `n`; `c0` packs the whole string, and unpacks as many bytes as the
//! value read just before, which it replaces); `s` is a zero-terminated string. An item of
//! `k` bytes but `c` is aligned to `min(k, alignment)` from the start of the string (a
//! width that is no power of two pads as lua-struct computes it, without error). In
//! `size`, letters and digits that are no option count for nothing.
//!
//! Numbers go through C's conversions as Redis's x86-64 build makes them: a packed integer
//! is the number truncated to 64 bits (NaN and numbers out of range as the processor
//! converts them), its bytes past the eighth zero; an unpacked integer keeps the low 64
//! bits of its bytes and, when signed, is sign-extended from where lua-struct's shift lands
//! (its width in bits less one, modulo 64). Arguments convert as Lua's do: numeric strings
//! are numbers, numbers are strings of 14 significant digits. A format ends at its first
//! zero byte.
//!
//! Invariants: nothing is read outside the data (every read is checked first, with C's
//! wrapping offsets, as lua-struct checks it); errors carry lua-struct's texts, a bad
//! argument named as Lua names the function that was called (`?` when it cannot tell), all
//! placed at the calling line. Unpacking refuses more results than Lua 5.1
//! lets a C function return (`stack overflow (too many results)`), and, unlike Redis, up
//! to two fewer: mlua keeps the arguments on the stack under the results it pushes.

use mlua::{IntoLua, Lua, Table, Value, Variadic};

use super::args::{number_arg, raise, string_arg, type_name, Fault};
use super::lua::MEMORY_LIMIT;

/// Widest integer (`in`, `In`), in bytes.
const MAX_INT_SIZE: u64 = 32;
/// Alignment of `!` without a number: the machine's largest.
const MAX_ALIGN: u64 = 8;
/// Largest number in a format (C's `INT_MAX`).
const MAX_NUMBER: u64 = 2_147_483_647;
/// Most stack slots a C function may use in Lua 5.1 (`LUAI_MAXCSTACK`).
const MAX_C_STACK: usize = 8000;
/// 2^63, as a double.
const TWO_TO_63: f64 = 9_223_372_036_854_775_808.0;

/// The `struct` library.
pub(super) fn library(lua: &Lua) -> mlua::Result<Table> {
    let lib = lua.create_table()?;
    lib.raw_set(
        "pack",
        lua.create_function(|lua, args: Variadic<Value>| {
            let packed = pack(lua, &args).map_err(|f| raise(lua, f))?;
            lua.create_string(packed)
        })?,
    )?;
    lib.raw_set(
        "unpack",
        lua.create_function(|lua, args: Variadic<Value>| {
            unpack(lua, &args)
                .map(Variadic::from)
                .map_err(|f| raise(lua, f))
        })?,
    )?;
    lib.raw_set(
        "size",
        lua.create_function(|lua, args: Variadic<Value>| {
            size(lua, &args).map_err(|f| raise(lua, f))
        })?,
    )?;
    Ok(lib)
}

/// A value `unpack` returns. It becomes a Lua value only as it is returned, so a long
/// list of strings holds no more than one of mlua's references at a time.
enum Unpacked {
    Number(f64),
    Bytes(Vec<u8>),
}

impl IntoLua for Unpacked {
    fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        match self {
            Unpacked::Number(n) => Ok(Value::Number(n)),
            Unpacked::Bytes(bytes) => lua.create_string(bytes).map(Value::String),
        }
    }
}

/// C's conversion of a double to a signed 64-bit integer on x86-64: truncated, and the
/// smallest integer for NaN and numbers out of range.
fn c_signed(n: f64) -> i64 {
    if (-TWO_TO_63..TWO_TO_63).contains(&n) {
        n as i64
    } else {
        i64::MIN
    }
}

/// C's conversion of a double to an unsigned 64-bit integer as gcc compiles it for x86-64:
/// below 2^63 (NaN too) as [`c_signed`], negative numbers wrapping; from 2^63 by way of
/// the difference, which leaves 0 from 2^64 on.
fn c_unsigned(n: f64) -> u64 {
    if n >= TWO_TO_63 {
        (c_signed(n - TWO_TO_63) as u64) ^ (1 << 63)
    } else {
        c_signed(n) as u64
    }
}

/// C's conversion of a double to a float, as its bits: rounded to the nearest; a NaN
/// keeps its sign and the top of its payload, and is made quiet (as x86-64 converts it).
fn float_bits(n: f64) -> u32 {
    if n.is_nan() {
        let bits = n.to_bits();
        let sign = ((bits >> 63) as u32) << 31;
        let payload = ((bits >> 29) as u32) & 0x007f_ffff;
        sign | 0x7fc0_0000 | payload
    } else {
        (n as f32).to_bits()
    }
}

/// The float of `bits` as a double (a NaN keeps its sign and payload, made quiet).
fn float_value(bits: u32) -> f64 {
    let f = f32::from_bits(bits);
    if f.is_nan() {
        let sign = u64::from(bits >> 31) << 63;
        let payload = u64::from(bits & 0x007f_ffff) << 29;
        f64::from_bits(sign | 0x7ff8_0000_0000_0000 | payload)
    } else {
        f64::from(f)
    }
}

/// A format being read, and what its options have set so far.
struct Format {
    text: Vec<u8>,
    at: usize,
    /// Big-endian (`>`), else little-endian.
    big: bool,
    /// The largest alignment (`!`).
    align: u64,
}

impl Format {
    fn new(mut text: Vec<u8>) -> Format {
        // A C string: it ends at its first zero byte.
        if let Some(end) = text.iter().position(|&c| c == 0) {
            text.truncate(end);
        }
        Format {
            text,
            at: 0,
            big: false,
            align: 1,
        }
    }

    fn next_option(&mut self) -> Option<u8> {
        let opt = *self.text.get(self.at)?;
        self.at += 1;
        Some(opt)
    }

    /// The number written here, or `default` when there is none.
    fn number(&mut self, default: u64) -> Result<u64, Fault> {
        let mut n = None;
        while let Some(&c) = self.text.get(self.at) {
            if !c.is_ascii_digit() {
                break;
            }
            let digit = u64::from(c - b'0');
            let so_far = n.unwrap_or(0);
            if so_far > MAX_NUMBER / 10 || so_far * 10 > MAX_NUMBER - digit {
                return Err(Fault::Plain("integral size overflow".into()));
            }
            n = Some(so_far * 10 + digit);
            self.at += 1;
        }
        Ok(n.unwrap_or(default))
    }

    /// The size of an item of `opt` (its number read); 0 for the options that are no item.
    fn size(&mut self, opt: u8) -> Result<u64, Fault> {
        Ok(match opt {
            b'b' | b'B' | b'x' => 1,
            b'h' | b'H' => 2,
            b'f' => 4,
            b'l' | b'L' | b'T' | b'd' => 8,
            b'c' => self.number(1)?,
            b'i' | b'I' => {
                let n = self.number(4)?;
                if n > MAX_INT_SIZE {
                    return Err(Fault::Plain(format!(
                        "integral size {n} is larger than limit of {MAX_INT_SIZE}"
                    )));
                }
                n
            }
            _ => 0,
        })
    }

    /// The padding before an item of `opt` and `size` bytes at offset `at`.
    fn padding(&self, at: u64, opt: u8, size: u64) -> u64 {
        if size <= 1 || opt == b'c' {
            return 0;
        }
        let align = size.min(self.align);
        // lua-struct's arithmetic, kept for widths that are no power of two.
        (align - (at & (align - 1))) & (align - 1)
    }

    /// The options that set something or nothing (` `, `>`, `<`, `!n`); any other byte is
    /// an invalid option.
    fn control(&mut self, opt: u8) -> Result<(), Fault> {
        match opt {
            b' ' => {}
            b'>' => self.big = true,
            b'<' => self.big = false,
            b'!' => {
                let n = self.number(MAX_ALIGN)?;
                if !n.is_power_of_two() {
                    return Err(Fault::Plain(format!("alignment {n} is not a power of 2")));
                }
                self.align = n;
            }
            _ => {
                return Err(Fault::Arg(
                    1,
                    format!(
                        "invalid format option '{}'",
                        String::from_utf8_lossy(&[opt])
                    ),
                ))
            }
        }
        Ok(())
    }
}

/// Whether `opt` is an integer option.
fn is_integer(opt: u8) -> bool {
    matches!(
        opt,
        b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I'
    )
}

/// Little-endian `bytes` appended in the byte order asked.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8], big: bool) {
    if big {
        out.extend(bytes.iter().rev());
    } else {
        out.extend_from_slice(bytes);
    }
}

/// `N` bytes of the data in the byte order asked, as little-endian.
fn little_endian<const N: usize>(bytes: &[u8], big: bool) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    if big {
        out.reverse();
    }
    out
}

/// An integer read from `bytes`: their low 64 bits, sign-extended for a signed one from
/// where lua-struct's shift lands.
fn get_integer(bytes: &[u8], big: bool, signed: bool) -> f64 {
    let feed = |acc: u64, &b: &u8| (acc << 8) | u64::from(b);
    let l = if big {
        bytes.iter().fold(0, feed)
    } else {
        bytes.iter().rev().fold(0, feed)
    };
    if !signed {
        return l as f64;
    }
    // The sign bit's place, the shift counted modulo 64 as x86-64 counts it.
    let shift = (bytes.len() * 8).wrapping_sub(1) % 64;
    let mask = u64::MAX << shift;
    let l = if l & mask != 0 { l | mask } else { l };
    l as i64 as f64
}

/// `struct.pack(fmt, ...)`: the packed string.
fn pack(lua: &Lua, args: &[Value]) -> Result<Vec<u8>, Fault> {
    let mut format = Format::new(string_arg(lua, args, 0, "no value")?);
    let mut out = Vec::new();
    // The next argument. lua-struct pushes a nil above its arguments: the first missing
    // one is that nil.
    let mut next = 1;
    while let Some(opt) = format.next_option() {
        // The packed string is built outside Lua's memory: bounded by Lua's own limit.
        if out.len() > MEMORY_LIMIT {
            return Err(Fault::Plain("not enough memory".into()));
        }
        let size = format.size(opt)?;
        let padding = format.padding(out.len() as u64, opt, size);
        out.resize(out.len() + padding as usize, 0);
        match opt {
            _ if is_integer(opt) => {
                let value = c_unsigned(number_arg(lua, args, next, "nil")?);
                next += 1;
                let bytes: Vec<u8> = (0..size)
                    .map(|i| if i < 8 { (value >> (8 * i)) as u8 } else { 0 })
                    .collect();
                put_bytes(&mut out, &bytes, format.big);
            }
            b'x' => out.push(0),
            b'f' => {
                let bits = float_bits(number_arg(lua, args, next, "nil")?);
                next += 1;
                put_bytes(&mut out, &bits.to_le_bytes(), format.big);
            }
            b'd' => {
                let bits = number_arg(lua, args, next, "nil")?.to_bits();
                next += 1;
                put_bytes(&mut out, &bits.to_le_bytes(), format.big);
            }
            b'c' | b's' => {
                let s = string_arg(lua, args, next, "nil")?;
                next += 1;
                let len = s.len() as u64;
                let take = if size == 0 { len } else { size };
                if len < take {
                    // lua-struct blames the argument after the string.
                    return Err(Fault::Arg(next + 1, "string too short".into()));
                }
                out.extend_from_slice(&s[..take as usize]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => format.control(opt)?,
        }
    }
    Ok(out)
}

/// `struct.unpack(fmt, s [, pos])`: the values read, then the position after them.
fn unpack(lua: &Lua, args: &[Value]) -> Result<Vec<Unpacked>, Fault> {
    let mut format = Format::new(string_arg(lua, args, 0, "no value")?);
    let data = string_arg(lua, args, 1, "no value")?;
    let start = match args.get(2) {
        None | Some(Value::Nil) => 1,
        Some(v) => c_signed(
            lua.coerce_number(v.clone())?
                .ok_or_else(|| Fault::Arg(3, format!("number expected, got {}", type_name(v))))?,
        ),
    };
    if start == 0 {
        return Err(Fault::Arg(3, "offset must be 1 or greater".into()));
    }
    let len = data.len() as u64;
    let fits = |pos: u64, size: u64| size <= len && pos <= len - size;
    let too_short = || Fault::Arg(2, "data string too short".into());
    let too_many = || Fault::Plain("stack overflow (too many results)".into());
    // Offsets are C's size_t: a start before the string wraps around past its end.
    let mut pos = (start as u64).wrapping_sub(1);
    let mut values: Vec<Unpacked> = Vec::new();
    while let Some(opt) = format.next_option() {
        let mut size = format.size(opt)?;
        pos = pos.wrapping_add(format.padding(pos, opt, size));
        if !fits(pos, size) {
            return Err(too_short());
        }
        // Lua 5.1's room for the arguments, the values and two more.
        if args.len() + values.len() + 2 > MAX_C_STACK {
            return Err(too_many());
        }
        let at = pos as usize;
        match opt {
            _ if is_integer(opt) => {
                let bytes = &data[at..at + size as usize];
                let signed = opt.is_ascii_lowercase();
                values.push(Unpacked::Number(get_integer(bytes, format.big, signed)));
            }
            b'x' => {}
            b'f' => {
                let bits = u32::from_le_bytes(little_endian(&data[at..at + 4], format.big));
                values.push(Unpacked::Number(float_value(bits)));
            }
            b'd' => {
                let n = f64::from_le_bytes(little_endian(&data[at..at + 8], format.big));
                values.push(Unpacked::Number(n));
            }
            b'c' => {
                if size == 0 {
                    // As many bytes as the value just read says, in its place.
                    let previous = match values.last() {
                        Some(Unpacked::Number(n)) => Some(*n),
                        // A string counts if Lua reads it as a number.
                        Some(Unpacked::Bytes(bytes)) => {
                            lua.coerce_number(Value::String(lua.create_string(bytes)?))?
                        }
                        None => None,
                    };
                    let Some(n) = previous else {
                        return Err(Fault::Plain("format 'c0' needs a previous size".into()));
                    };
                    size = c_unsigned(n);
                    values.pop();
                    if !fits(pos, size) {
                        return Err(too_short());
                    }
                }
                values.push(Unpacked::Bytes(data[at..at + size as usize].to_vec()));
            }
            b's' => {
                let Some(zero) = data[at..].iter().position(|&c| c == 0) else {
                    return Err(Fault::Plain("unfinished string in data".into()));
                };
                values.push(Unpacked::Bytes(data[at..at + zero].to_vec()));
                size = zero as u64 + 1;
            }
            _ => format.control(opt)?,
        }
        pos = pos.wrapping_add(size);
    }
    // mlua pushes the results above the arguments (and perhaps an error it keeps ready),
    // with a slot to spare.
    if args.len() + values.len() + 3 > MAX_C_STACK {
        return Err(too_many());
    }
    values.push(Unpacked::Number(pos.wrapping_add(1) as i64 as f64));
    Ok(values)
}

/// `struct.size(fmt)`: the length of what `fmt` packs.
fn size(lua: &Lua, args: &[Value]) -> Result<f64, Fault> {
    let mut format = Format::new(string_arg(lua, args, 0, "no value")?);
    let mut pos: u64 = 0;
    while let Some(opt) = format.next_option() {
        let size = format.size(opt)?;
        pos = pos.wrapping_add(format.padding(pos, opt, size));
        if opt == b's' {
            return Err(Fault::Arg(1, "option 's' has no fixed size".into()));
        }
        if opt == b'c' && size == 0 {
            return Err(Fault::Arg(1, "option 'c0' has no fixed size".into()));
        }
        if !opt.is_ascii_alphanumeric() {
            format.control(opt)?;
        }
        pos = pos.wrapping_add(size);
    }
    Ok(pos as i64 as f64)
}

#[cfg(test)]
mod tests {
    use mlua::{Lua, LuaOptions, StdLib};

    /// `show(...)`: the values, strings in hex between double quotes and the others as
    /// `tostring` writes them, separated by spaces.
    const SHOW: &str = r#"
local function hex(s)
  return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end))
end
function show(...)
  local out = {}
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    if type(v) == 'string' then out[#out + 1] = '"' .. hex(v) .. '"'
    else out[#out + 1] = tostring(v) end
  end
  return table.concat(out, ' ')
end
"#;

    fn root_message(e: &mlua::Error) -> String {
        match e {
            mlua::Error::CallbackError { cause, .. } => root_message(cause),
            mlua::Error::RuntimeError(m) => m.clone(),
            other => other.to_string(),
        }
    }

    /// `show(<expr>)` run as line 1 of a script: `Ok:` and what it shows, or `Err:` and
    /// the error's message.
    fn run(lua: &Lua, expr: &str) -> String {
        match lua
            .load(format!("return show({expr})"))
            .set_name("@user_script")
            .eval::<String>()
        {
            Ok(shown) => format!("Ok:{shown}"),
            Err(e) => format!("Err:{}", root_message(&e)),
        }
    }

    /// Runs every case on one state, listing those whose result is not the expected one.
    fn check(cases: &[(&str, &str)]) {
        let lua = Lua::new_with(
            StdLib::STRING | StdLib::TABLE | StdLib::MATH,
            LuaOptions::new(),
        )
        .expect("Lua");
        lua.globals()
            .raw_set("struct", super::library(&lua).expect("library"))
            .expect("global");
        lua.load(SHOW).exec().expect("show");
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|&(expr, expected)| {
                let got = run(&lua, expr);
                (got != expected)
                    .then(|| format!("{expr}\n  expected {expected}\n  got      {got}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    // The expected results below are what redis-server 7.0.15 answers to the same
    // expressions.

    #[test]
    fn packs_as_redis() {
        check(&[
            (r"struct.pack('>I2', 258)", r#"Ok:"0102""#),
            (r"struct.pack('<I2', 258)", r#"Ok:"0201""#),
            (r"struct.pack('I', 1)", r#"Ok:"01000000""#),
            (r"struct.pack('b', -1)", r#"Ok:"ff""#),
            (r"struct.pack('B', 256)", r#"Ok:"00""#),
            (r"struct.pack('h', -2)", r#"Ok:"feff""#),
            (r"struct.pack('H', 70000)", r#"Ok:"7011""#),
            (r"struct.pack('l', -1)", r#"Ok:"ffffffffffffffff""#),
            (r"struct.pack('>l', 1)", r#"Ok:"0000000000000001""#),
            (r"struct.pack('T', 5)", r#"Ok:"0500000000000000""#),
            (
                r"struct.pack('i1i2i3i4i5i6i7i8', 1, 2, 3, 4, 5, 6, 7, 8)",
                r#"Ok:"010200030000040000000500000000060000000000070000000000000800000000000000""#,
            ),
            (r"struct.pack('<i9', -1)", r#"Ok:"ffffffffffffffff00""#),
            (r"struct.pack('>i9', -1)", r#"Ok:"00ffffffffffffffff""#),
            (
                r"struct.pack('<i16', -2)",
                r#"Ok:"feffffffffffffff0000000000000000""#,
            ),
            (r"struct.pack('i0', 1)", r#"Ok:"""#),
            (r"struct.pack('I', 1e20)", r#"Ok:"00000000""#),
            (
                r"struct.pack('<L', 2^63 + 2^62)",
                r#"Ok:"00000000000000c0""#,
            ),
            (
                r"struct.pack('<L', 2^64 - 2048)",
                r#"Ok:"00f8ffffffffffff""#,
            ),
            (r"struct.pack('<l', -1e20)", r#"Ok:"0000000000000080""#),
            (r"struct.pack('<L', 0/0)", r#"Ok:"0000000000000080""#),
            (r"struct.pack('<L', 1/0)", r#"Ok:"0000000000000000""#),
            (r"struct.pack('<b', 3.7)", r#"Ok:"03""#),
            (r"struct.pack('<b', -3.7)", r#"Ok:"fd""#),
            (r"struct.pack('<B', '12')", r#"Ok:"0c""#),
            (r"struct.pack('<B', ' 0x10 ')", r#"Ok:"10""#),
            (r"struct.pack('!4 b i', 1, 2)", r#"Ok:"0100000002000000""#),
            (
                r"struct.pack('!b l', 1, 2)",
                r#"Ok:"01000000000000000200000000000000""#,
            ),
            (
                r"struct.pack('!2b l', 1, 2)",
                r#"Ok:"01000200000000000000""#,
            ),
            (
                r"struct.pack('!b d', 1, 2)",
                r#"Ok:"01000000000000000000000000000040""#,
            ),
            (r"struct.pack('!i3', 1)", r#"Ok:"0000010000""#),
            (
                r"struct.pack('!bi6', 1, 2)",
                r#"Ok:"010000000000020000000000""#,
            ),
            (r"struct.pack('!64b', 1)", r#"Ok:"01""#),
            (
                r"struct.pack('<!4 b c2 i', 1, 'ab', 7)",
                r#"Ok:"0161620007000000""#,
            ),
            (
                r"struct.pack('<!4 b s i', 1, 'ab', 7)",
                r#"Ok:"0161620007000000""#,
            ),
            (r"struct.pack('>!4 h i', 1, 2)", r#"Ok:"0001000000000002""#),
            (r"struct.pack('b x b', 1, 2)", r#"Ok:"010002""#),
            (r"struct.pack('f', 1.5)", r#"Ok:"0000c03f""#),
            (r"struct.pack('>f', 1.5)", r#"Ok:"3fc00000""#),
            (r"struct.pack('>d', -2.25)", r#"Ok:"c002000000000000""#),
            (r"struct.pack('f', 1e300)", r#"Ok:"0000807f""#),
            (r"struct.pack('f', 0/0)", r#"Ok:"0000c0ff""#),
            (r"struct.pack('f', -(0/0))", r#"Ok:"0000c07f""#),
            (r"struct.pack('c3', 'abcdef')", r#"Ok:"616263""#),
            (r"struct.pack('c0', 'abcdef')", r#"Ok:"616263646566""#),
            (r"struct.pack('c', 12)", r#"Ok:"31""#),
            (
                r"struct.pack('c0', 2^53)",
                r#"Ok:"392e303037313939323534373431652b3135""#,
            ),
            (r"struct.pack('s', 'a\0b')", r#"Ok:"61006200""#),
            (r"struct.pack('s', 42)", r#"Ok:"343200""#),
            (r"struct.pack('b\0b', 1, 2)", r#"Ok:"01""#),
            (r"struct.pack('')", r#"Ok:"""#),
        ]);
    }

    #[test]
    fn unpacks_as_redis() {
        check(&[
            (r"struct.unpack('>I2', '\1\2')", "Ok:258 3"),
            (r"struct.unpack('<I2', '\1\2')", "Ok:513 3"),
            (r"struct.unpack('b', '\255')", "Ok:-1 2"),
            (r"struct.unpack('B', '\255')", "Ok:255 2"),
            (
                r"struct.unpack('<l', '\255\255\255\255\255\255\255\255')",
                "Ok:-1 9",
            ),
            (
                r"struct.unpack('<L', '\255\255\255\255\255\255\255\255')",
                "Ok:1.844674407371e+19 9",
            ),
            (r"struct.unpack('<i3', '\255\255\127')", "Ok:8388607 4"),
            (
                r"struct.unpack('<i9', '\128\0\0\0\0\0\0\0\0')",
                "Ok:-128 10",
            ),
            (r"struct.unpack('<i9', '\0\0\0\0\0\0\0\0\1')", "Ok:0 10"),
            (r"struct.unpack('>i9', '\0\0\0\0\0\0\0\0\1')", "Ok:1 10"),
            (
                r"struct.unpack('<i10', '\0\128\0\0\0\0\0\0\0\0')",
                "Ok:-32768 11",
            ),
            (
                r"struct.unpack('<i12', '\0\0\0\128\0\0\0\0\0\0\0\0')",
                "Ok:-2147483648 13",
            ),
            (
                r"struct.unpack('<i16', '\128' .. string.rep('\0', 15))",
                "Ok:128 17",
            ),
            (r"struct.unpack('<i32', string.rep('\255', 32))", "Ok:-1 33"),
            (r"struct.unpack('<i0', 'abc')", "Ok:0 1"),
            (r"struct.unpack('b', 'abc', 2)", "Ok:98 3"),
            (r"struct.unpack('', 'abc', 10)", "Ok:10"),
            (r"struct.unpack('', 'abc', -5)", "Ok:-5"),
            (r"struct.unpack('', 'abc', 2.7)", "Ok:2"),
            (r"struct.unpack('', 'abc', 1e30)", "Ok:-9.2233720368548e+18"),
            (r"struct.unpack('b', 'abc', '2')", "Ok:98 3"),
            (r"struct.unpack('b', 'abc', nil)", "Ok:97 2"),
            (r"struct.unpack('b', 12)", "Ok:49 2"),
            (r"struct.unpack('bc0', '\3abcd')", r#"Ok:"616263" 5"#),
            (r"struct.unpack('bc0b', '\2abc')", r#"Ok:"6162" 99 5"#),
            (r"struct.unpack('c1c0', '3abcd')", r#"Ok:"616263" 5"#),
            (r"struct.unpack('c3c0', '1.9abcd')", r#"Ok:"61" 5"#),
            (r"struct.unpack('sc0', '2\0abc')", r#"Ok:"6162" 5"#),
            (r"struct.unpack('c4c0', '1e30abc')", r#"Ok:"" 5"#),
            (r"struct.unpack('bc0', '\0abc')", r#"Ok:"" 2"#),
            (r"struct.unpack('!4bi', '\1\0\0\0\2\0\0\0')", "Ok:1 2 9"),
            (
                r"struct.unpack('!4bi', 'x\1\0\0\0\2\0\0\0', 2)",
                "Ok:1 512 9",
            ),
            (r"struct.unpack('!4 b c0', '\2xy')", r#"Ok:"7879" 4"#),
            (r"struct.unpack('!i6', '\0\0\0\0\1\0\0\0\0\0')", "Ok:1 11"),
            (r"struct.unpack('ss', 'ab\0cd\0')", r#"Ok:"6162" "6364" 7"#),
            (r"struct.unpack('s', '\0')", r#"Ok:"" 2"#),
            (r"struct.unpack('f', '\0\0\192\63')", "Ok:1.5 5"),
            (
                r"struct.unpack('>f', struct.pack('>f', 0.1))",
                "Ok:0.10000000149012 5",
            ),
            (
                r"struct.unpack('>d', struct.pack('>d', -2.25))",
                "Ok:-2.25 9",
            ),
            (r"struct.unpack('f', '\0\0\192\255')", "Ok:-nan 5"),
            (r"struct.unpack('d', '\0\0\0\0\0\0\240\127')", "Ok:inf 9"),
            (r"struct.unpack('d', struct.pack('d', -0.0))", "Ok:-0 9"),
            (r"struct.unpack(' b b ', 'ab')", "Ok:97 98 3"),
            (r"struct.unpack('b\0b', 'ab')", "Ok:97 2"),
            (
                r"struct.unpack('<!4 b s i', struct.pack('<!4 b s i', 1, 'ab', 7))",
                r#"Ok:1 "6162" 7 9"#,
            ),
            (
                r"select('#', struct.unpack(string.rep('b', 7995), string.rep('a', 8000)))",
                "Ok:7996",
            ),
            (
                r"select('#', struct.unpack(string.rep('b', 7998), string.rep('a', 8000)))",
                "Err:user_script:1: stack overflow (too many results)",
            ),
        ]);
    }

    #[test]
    fn measures_as_redis() {
        check(&[
            (r"struct.size('')", "Ok:0"),
            (r"struct.size('bhilT')", "Ok:23"),
            (r"struct.size('!bhilT')", "Ok:24"),
            (r"struct.size('!4bd')", "Ok:12"),
            (r"struct.size('!bi3')", "Ok:6"),
            (r"struct.size('!i7')", "Ok:13"),
            (r"struct.size('c10')", "Ok:10"),
            (r"struct.size('xbx')", "Ok:3"),
            (r"struct.size('fd')", "Ok:12"),
            (r"struct.size('!fd')", "Ok:16"),
            (r"struct.size('Z')", "Ok:0"),
            (r"struct.size(12)", "Ok:0"),
            (r"struct.size('b!2h')", "Ok:4"),
            (
                r"struct.size('c2147483647c2147483647c2147483647')",
                "Ok:6442450941",
            ),
        ]);
    }

    #[test]
    fn fails_as_redis() {
        let bad = |n: u32, f: &str, what: &str| {
            format!("Err:user_script:1: bad argument #{n} to '{f}' ({what})")
        };
        let plain = |what: &str| format!("Err:user_script:1: {what}");
        let cases: Vec<(&str, String)> = vec![
            (
                r"struct.pack('=I2', 258)",
                bad(1, "pack", "invalid format option '='"),
            ),
            (
                r"struct.pack('Z', 1)",
                bad(1, "pack", "invalid format option 'Z'"),
            ),
            (
                r"struct.pack('x3')",
                bad(1, "pack", "invalid format option '3'"),
            ),
            (
                r"struct.pack('i33', 1)",
                plain("integral size 33 is larger than limit of 32"),
            ),
            (
                r"struct.pack('c99999999999', 'ab')",
                plain("integral size overflow"),
            ),
            (
                r"struct.pack('!3', 1)",
                plain("alignment 3 is not a power of 2"),
            ),
            (
                r"struct.pack('!0', 1)",
                plain("alignment 0 is not a power of 2"),
            ),
            (
                r"struct.pack('i0')",
                bad(2, "pack", "number expected, got nil"),
            ),
            (
                r"struct.pack('bbb', 1, 'x', 3)",
                bad(3, "pack", "number expected, got string"),
            ),
            (
                r"struct.pack('<B', {})",
                bad(2, "pack", "number expected, got table"),
            ),
            (
                r"struct.pack('c3', 'ab')",
                bad(3, "pack", "string too short"),
            ),
            (
                r"struct.pack('bc2', 1, 'a')",
                bad(4, "pack", "string too short"),
            ),
            (
                r"struct.pack('s')",
                bad(2, "pack", "string expected, got nil"),
            ),
            (
                r"struct.pack('s', true)",
                bad(2, "pack", "string expected, got boolean"),
            ),
            (
                r"struct.pack()",
                bad(1, "pack", "string expected, got no value"),
            ),
            (
                r"struct.pack(12, 'x')",
                bad(1, "pack", "invalid format option '1'"),
            ),
            (
                r"struct:pack('b', 1)",
                plain("calling 'pack' on bad self (string expected, got table)"),
            ),
            (
                r"(function() local p = struct.pack return p('Z') end)()",
                bad(1, "p", "invalid format option 'Z'"),
            ),
            (
                r"struct.unpack('b', '')",
                bad(2, "unpack", "data string too short"),
            ),
            (
                r"struct.unpack('x', 'abc', 4)",
                bad(2, "unpack", "data string too short"),
            ),
            (
                r"struct.unpack('b', 'abc', 0)",
                bad(3, "unpack", "offset must be 1 or greater"),
            ),
            (
                r"struct.unpack('b', 'abc', -1)",
                bad(2, "unpack", "data string too short"),
            ),
            (
                r"struct.unpack('b', 'abc', 'z')",
                bad(3, "unpack", "number expected, got string"),
            ),
            (
                r"struct.unpack('Z', 'ab', 5)",
                bad(2, "unpack", "data string too short"),
            ),
            (
                r"struct.unpack('Z', 'ab')",
                bad(1, "unpack", "invalid format option 'Z'"),
            ),
            (
                r"struct.unpack('c0', 'abc')",
                plain("format 'c0' needs a previous size"),
            ),
            (
                r"struct.unpack('c1c0', 'xabcd')",
                plain("format 'c0' needs a previous size"),
            ),
            (
                r"struct.unpack('bc0c0', '\1a')",
                plain("format 'c0' needs a previous size"),
            ),
            (
                r"struct.unpack('bc0', '\255abc')",
                bad(2, "unpack", "data string too short"),
            ),
            (
                r"struct.unpack('Bc0', '\5abc')",
                bad(2, "unpack", "data string too short"),
            ),
            (
                r"struct.unpack('s', 'abc')",
                plain("unfinished string in data"),
            ),
            (
                r"struct.unpack('!4bi', '\1\0\0\0\2\0\0')",
                bad(2, "unpack", "data string too short"),
            ),
            (
                r"struct.unpack('i2147483648', 'ab')",
                plain("integral size overflow"),
            ),
            (
                r"struct.unpack('b')",
                bad(2, "unpack", "string expected, got no value"),
            ),
            (
                r"struct.unpack('b', true)",
                bad(2, "unpack", "string expected, got boolean"),
            ),
            (
                r"struct.unpack()",
                bad(1, "unpack", "string expected, got no value"),
            ),
            (
                r"struct.size('c0')",
                bad(1, "size", "option 'c0' has no fixed size"),
            ),
            (
                r"struct.size('bs')",
                bad(1, "size", "option 's' has no fixed size"),
            ),
            (
                r"struct.size('=')",
                bad(1, "size", "invalid format option '='"),
            ),
            (
                r"struct.size('i33')",
                plain("integral size 33 is larger than limit of 32"),
            ),
            (
                r"struct.size('!3')",
                plain("alignment 3 is not a power of 2"),
            ),
            (
                r"struct.size()",
                bad(1, "size", "string expected, got no value"),
            ),
        ];
        let cases: Vec<(&str, &str)> = cases.iter().map(|(e, r)| (*e, r.as_str())).collect();
        check(&cases);
    }
}
