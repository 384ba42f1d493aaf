//! The libraries of functions (FUNCTION LOAD ...), stored in every partition as
//! replicated records: `0x00 F <library name>` → the library ([`Library::encode`]).
//!
//! A node that takes FUNCTION LOAD or RESTORE compiles the code and runs its registration
//! (`crate::script`), then proposes the library with what it registered; applying only
//! checks names and stores, so every replica stores the same records without running Lua.
//! Every partition holds every library (the proxy sends each change to all), so FCALL
//! finds its function in its own partition, and a library survives restarts, failovers
//! and snapshots like data. FLUSHALL leaves them, as in Redis.
//!
//! FUNCTION DUMP's payload is Redis 7.0's (an RDB fragment: each library's code, the RDB
//! version, a CRC64), so libraries move between Redis and zankv both ways.

use bytes::Bytes;
use zankv_commands::pattern::keys_match;
use zankv_commands::scripting::{FunctionRead, RestorePolicy};
use zankv_commands::{CommandError, Reply};

use super::{ExecError, ExecResult, ReadCtx, Txn, View};
use crate::engine::EngineError;
use crate::keys;

/// A function of a library, as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// Its name.
    pub name: Bytes,
    /// Its description, if given.
    pub description: Option<Bytes>,
    /// Its flags (`no-writes`, `allow-oom`, `allow-stale`, `no-cluster`,
    /// `allow-cross-slot-keys`).
    pub flags: Vec<Bytes>,
}

impl FunctionInfo {
    /// Whether it declared `no-writes` (FCALL_RO may run it; it may not write).
    pub fn no_writes(&self) -> bool {
        self.flags.iter().any(|f| f.as_ref() == b"no-writes")
    }
}

/// A library: its name, code and functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// The name its `#!lua name=` line gives.
    pub name: Bytes,
    /// The code, that line first.
    pub code: Bytes,
    /// What it registered, in order.
    pub functions: Vec<FunctionInfo>,
}

/// A change to the libraries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionChange {
    /// `FUNCTION LOAD [REPLACE]`.
    Load {
        /// REPLACE: a library of the same name is replaced.
        replace: bool,
        /// The library.
        library: Library,
    },
    /// FUNCTION DELETE.
    Delete(Bytes),
    /// FUNCTION FLUSH.
    Flush,
    /// FUNCTION RESTORE.
    Restore {
        /// What happens to the libraries there.
        policy: RestorePolicy,
        /// The payload's libraries.
        libraries: Vec<Library>,
    },
}

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Reads what [`put`] wrote from the front of `buf`.
fn take(buf: &mut &[u8]) -> Result<Bytes, EngineError> {
    let corrupt = || EngineError::Corruption("truncated library record".into());
    let len = u32::from_be_bytes(buf.get(..4).ok_or_else(corrupt)?.try_into().expect("4"));
    let len = len as usize;
    let bytes = buf.get(4..4 + len).ok_or_else(corrupt)?;
    let out = Bytes::copy_from_slice(bytes);
    *buf = &buf[4 + len..];
    Ok(out)
}

fn take_count(buf: &mut &[u8]) -> Result<usize, EngineError> {
    let n = u32::from_be_bytes(
        buf.get(..4)
            .ok_or_else(|| EngineError::Corruption("truncated library record".into()))?
            .try_into()
            .expect("4"),
    ) as usize;
    *buf = &buf[4..];
    // Every item takes four bytes at least: a corrupt count cannot make us allocate.
    if n.saturating_mul(4) > buf.len() {
        return Err(EngineError::Corruption(
            "library record count exceeds its size".into(),
        ));
    }
    Ok(n)
}

impl Library {
    /// Appends the library: name, code, then each function's name, description (empty:
    /// none, marked by a flag byte) and flags.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put(out, &self.name);
        put(out, &self.code);
        out.extend_from_slice(&(self.functions.len() as u32).to_be_bytes());
        for f in &self.functions {
            put(out, &f.name);
            match &f.description {
                Some(d) => {
                    out.push(1);
                    put(out, d);
                }
                None => out.push(0),
            }
            out.extend_from_slice(&(f.flags.len() as u32).to_be_bytes());
            for flag in &f.flags {
                put(out, flag);
            }
        }
    }

    /// Reads [`Library::encode`]'s output from the front of `buf`.
    pub fn decode(buf: &mut &[u8]) -> Result<Library, EngineError> {
        let name = take(buf)?;
        let code = take(buf)?;
        let n = take_count(buf)?;
        let mut functions = Vec::with_capacity(n);
        for _ in 0..n {
            let fname = take(buf)?;
            let description = match buf.first() {
                Some(0) => {
                    *buf = &buf[1..];
                    None
                }
                Some(1) => {
                    *buf = &buf[1..];
                    Some(take(buf)?)
                }
                _ => {
                    return Err(EngineError::Corruption(
                        "bad description flag in library record".into(),
                    ))
                }
            };
            let nflags = take_count(buf)?;
            let mut flags = Vec::with_capacity(nflags);
            for _ in 0..nflags {
                flags.push(take(buf)?);
            }
            functions.push(FunctionInfo {
                name: fname,
                description,
                flags,
            });
        }
        Ok(Library {
            name,
            code,
            functions,
        })
    }

    fn record(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

impl FunctionChange {
    /// Appends the change (kind byte first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            FunctionChange::Load { replace, library } => {
                out.push(1);
                out.push(u8::from(*replace));
                library.encode(out);
            }
            FunctionChange::Delete(name) => {
                out.push(2);
                put(out, name);
            }
            FunctionChange::Flush => out.push(3),
            FunctionChange::Restore { policy, libraries } => {
                out.push(4);
                out.push(match policy {
                    RestorePolicy::Flush => 0,
                    RestorePolicy::Append => 1,
                    RestorePolicy::Replace => 2,
                });
                out.extend_from_slice(&(libraries.len() as u32).to_be_bytes());
                for l in libraries {
                    l.encode(out);
                }
            }
        }
    }

    /// Reads [`FunctionChange::encode`]'s output, all of `buf`.
    pub fn decode(mut buf: &[u8]) -> Result<FunctionChange, EngineError> {
        let corrupt = |what: &str| EngineError::Corruption(format!("function change: {what}"));
        let (&kind, rest) = buf.split_first().ok_or_else(|| corrupt("empty"))?;
        buf = rest;
        let change = match kind {
            1 => {
                let (&replace, rest) = buf.split_first().ok_or_else(|| corrupt("truncated"))?;
                buf = rest;
                FunctionChange::Load {
                    replace: replace == 1,
                    library: Library::decode(&mut buf)?,
                }
            }
            2 => FunctionChange::Delete(take(&mut buf)?),
            3 => FunctionChange::Flush,
            4 => {
                let (&policy, rest) = buf.split_first().ok_or_else(|| corrupt("truncated"))?;
                buf = rest;
                let policy = match policy {
                    0 => RestorePolicy::Flush,
                    1 => RestorePolicy::Append,
                    2 => RestorePolicy::Replace,
                    _ => return Err(corrupt("restore policy")),
                };
                let n = take_count(&mut buf)?;
                let mut libraries = Vec::with_capacity(n);
                for _ in 0..n {
                    libraries.push(Library::decode(&mut buf)?);
                }
                FunctionChange::Restore { policy, libraries }
            }
            _ => return Err(corrupt("unknown kind")),
        };
        if !buf.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(change)
    }
}

/// Every library stored, in name order.
pub fn libraries(view: &(impl View + ?Sized)) -> Result<Vec<Library>, EngineError> {
    let (start, end) = keys::library_space();
    let mut out = Vec::new();
    let mut failure = None;
    view.scan(&start, &end, false, &mut |_, v| {
        let mut buf = v;
        match Library::decode(&mut buf) {
            Ok(l) => out.push(l),
            Err(e) => failure = Some(e),
        }
        failure.is_none()
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The library that registered `function`, and the function.
pub fn find(
    view: &(impl View + ?Sized),
    function: &[u8],
) -> Result<Option<(Library, FunctionInfo)>, EngineError> {
    for library in libraries(view)? {
        // Function names are found in any case, as Redis finds them.
        if let Some(f) = library
            .functions
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(function))
            .cloned()
        {
            return Ok(Some((library, f)));
        }
    }
    Ok(None)
}

/// Applies a change to the libraries.
pub fn apply(txn: &mut Txn<'_>, change: &FunctionChange) -> ExecResult {
    match change {
        FunctionChange::Load { replace, library } => {
            let existing = libraries(txn)?;
            add(txn, &existing, library, *replace)?;
            Ok(Reply::Bulk(library.name.clone()))
        }
        FunctionChange::Delete(name) => {
            let key = keys::library_key(name);
            if txn.get(&key)?.is_none() {
                return Err(CommandError::LibraryNotFound.into());
            }
            txn.delete(key);
            Ok(Reply::OK)
        }
        FunctionChange::Flush => {
            let (start, end) = keys::library_space();
            txn.delete_range(start, end);
            Ok(Reply::OK)
        }
        FunctionChange::Restore {
            policy,
            libraries: restored,
        } => {
            let mut existing = libraries(txn)?;
            if *policy == RestorePolicy::Flush {
                existing.clear();
            }
            // All or nothing: check every library against what is there (and the earlier
            // ones of the payload) before writing any.
            let mut after = existing.clone();
            for library in restored {
                check(&after, library, *policy == RestorePolicy::Replace).map_err(|e| {
                    // RESTORE words the taken name its own way.
                    match e {
                        ExecError::Command(CommandError::LibraryExists(name)) => {
                            CommandError::LibraryExistsRestore(name).into()
                        }
                        other => other,
                    }
                })?;
                after.retain(|l| l.name != library.name);
                after.push(library.clone());
            }
            if *policy == RestorePolicy::Flush {
                let (start, end) = keys::library_space();
                txn.delete_range(start, end);
            }
            for library in restored {
                txn.put(keys::library_key(&library.name), library.record());
            }
            Ok(Reply::OK)
        }
    }
}

/// Checks that `library` may join `existing` (replacing its namesake when `replace`).
fn check(existing: &[Library], library: &Library, replace: bool) -> Result<(), ExecError> {
    if !replace && existing.iter().any(|l| l.name == library.name) {
        return Err(CommandError::LibraryExists(
            String::from_utf8_lossy(&library.name).into_owned(),
        )
        .into());
    }
    for other in existing.iter().filter(|l| l.name != library.name) {
        if let Some(f) = library.functions.iter().find(|f| {
            other
                .functions
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&f.name))
        }) {
            return Err(CommandError::FunctionExists(
                String::from_utf8_lossy(&f.name).into_owned(),
            )
            .into());
        }
    }
    Ok(())
}

fn add(
    txn: &mut Txn<'_>,
    existing: &[Library],
    library: &Library,
    replace: bool,
) -> Result<(), ExecError> {
    check(existing, library, replace)?;
    txn.put(keys::library_key(&library.name), library.record());
    Ok(())
}

/// FUNCTION LIST and DUMP.
pub fn read(ctx: &mut ReadCtx<'_>, read: &FunctionRead) -> ExecResult {
    match read {
        FunctionRead::List { pattern, with_code } => list(ctx.view, pattern.as_deref(), *with_code),
        FunctionRead::Dump => dump(ctx.view),
    }
}

/// `FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE]`.
pub fn list(view: &(impl View + ?Sized), pattern: Option<&[u8]>, with_code: bool) -> ExecResult {
    let mut out = Vec::new();
    for library in libraries(view)? {
        // The pattern ignores case, as Redis's does here.
        if pattern.is_some_and(|p| {
            !keys_match(&p.to_ascii_lowercase(), &library.name.to_ascii_lowercase())
        }) {
            continue;
        }
        let functions = library
            .functions
            .iter()
            .map(|f| {
                Reply::Map(vec![
                    (Reply::bulk("name"), Reply::Bulk(f.name.clone())),
                    (
                        Reply::bulk("description"),
                        Reply::bulk_or_nil(f.description.clone()),
                    ),
                    (
                        Reply::bulk("flags"),
                        Reply::Set(
                            f.flags
                                .iter()
                                .map(|x| Reply::StatusOwned(String::from_utf8_lossy(x).into()))
                                .collect(),
                        ),
                    ),
                ])
            })
            .collect();
        let mut fields = vec![
            (Reply::bulk("library_name"), Reply::Bulk(library.name)),
            (Reply::bulk("engine"), Reply::bulk("LUA")),
            (Reply::bulk("functions"), Reply::Array(functions)),
        ];
        if with_code {
            fields.push((Reply::bulk("library_code"), Reply::Bulk(library.code)));
        }
        out.push(Reply::Map(fields));
    }
    Ok(Reply::Array(out))
}

/// FUNCTION DUMP: Redis 7.0's payload (`0xf5` and the code of each library, as RDB
/// strings, then the RDB version and a CRC64 of everything before).
pub fn dump(view: &(impl View + ?Sized)) -> ExecResult {
    let mut out = Vec::new();
    for library in libraries(view)? {
        out.push(RDB_OPCODE_FUNCTION2);
        rdb_put_string(&mut out, &library.code);
    }
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(Reply::Bulk(Bytes::from(out)))
}

/// The codes of the libraries in a FUNCTION DUMP payload (zankv's or Redis 7.0's).
pub fn payload_codes(payload: &[u8]) -> Result<Vec<Bytes>, CommandError> {
    let bad = || CommandError::DumpPayload;
    if payload.len() < 10 {
        return Err(bad());
    }
    let (body, crc) = payload.split_at(payload.len() - 8);
    let crc = u64::from_le_bytes(crc.try_into().expect("8 bytes"));
    if crc64(0, body) != crc {
        return Err(bad());
    }
    let (body, version) = body.split_at(body.len() - 2);
    if u16::from_le_bytes(version.try_into().expect("2 bytes")) > RDB_VERSION {
        return Err(bad());
    }
    let mut rest = body;
    let mut codes = Vec::new();
    while let Some((&opcode, tail)) = rest.split_first() {
        if opcode != RDB_OPCODE_FUNCTION2 {
            return Err(bad());
        }
        rest = tail;
        codes.push(rdb_take_string(&mut rest).ok_or_else(bad)?);
    }
    Ok(codes)
}

/// RDB's opcode of a library (Redis 7.0's `RDB_OPCODE_FUNCTION2`).
const RDB_OPCODE_FUNCTION2: u8 = 0xf5;
/// Redis 7.0's RDB version.
const RDB_VERSION: u16 = 10;

/// Appends an RDB string: its length (6-, 14- or 32-bit form), then its bytes.
fn rdb_put_string(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len();
    if len < 1 << 6 {
        out.push(len as u8);
    } else if len < 1 << 14 {
        out.extend_from_slice(&[0x40 | (len >> 8) as u8, len as u8]);
    } else {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

/// An RDB length: (value, whether it names a special encoding).
fn rdb_take_length(buf: &mut &[u8]) -> Option<(u64, bool)> {
    let (&first, rest) = buf.split_first()?;
    *buf = rest;
    match first >> 6 {
        0 => Some((u64::from(first & 0x3f), false)),
        1 => {
            let (&second, rest) = buf.split_first()?;
            *buf = rest;
            Some(((u64::from(first & 0x3f) << 8) | u64::from(second), false))
        }
        2 if first == 0x80 => {
            let v = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?);
            *buf = &buf[4..];
            Some((u64::from(v), false))
        }
        2 if first == 0x81 => {
            let v = u64::from_be_bytes(buf.get(..8)?.try_into().ok()?);
            *buf = &buf[8..];
            Some((v, false))
        }
        3 => Some((u64::from(first & 0x3f), true)),
        _ => None,
    }
}

/// An RDB string: plain, or LZF-compressed (Redis compresses long ones); integer forms
/// are not used for library code.
fn rdb_take_string(buf: &mut &[u8]) -> Option<Bytes> {
    let (len, special) = rdb_take_length(buf)?;
    if !special {
        let len = usize::try_from(len).ok()?;
        let s = buf.get(..len)?;
        *buf = &buf[len..];
        return Some(Bytes::copy_from_slice(s));
    }
    // RDB_ENC_LZF: compressed length, original length, the compressed bytes.
    if len != 3 {
        return None;
    }
    let (clen, _) = rdb_take_length(buf)?;
    let (olen, _) = rdb_take_length(buf)?;
    let clen = usize::try_from(clen).ok()?;
    let olen = usize::try_from(olen).ok()?;
    let compressed = buf.get(..clen)?;
    *buf = &buf[clen..];
    lzf_decompress(compressed, olen).map(Bytes::from)
}

/// Largest library code a payload may hold once decompressed.
const MAX_CODE: usize = 64 << 20;

/// LZF decompression (the format Redis writes compressed RDB strings in); None for a
/// malformed input or a length past [`MAX_CODE`].
fn lzf_decompress(input: &[u8], expected: usize) -> Option<Vec<u8>> {
    if expected > MAX_CODE {
        return None;
    }
    let mut out: Vec<u8> = Vec::with_capacity(expected.min(input.len().saturating_mul(4)));
    let mut i = 0;
    while i < input.len() {
        let ctrl = usize::from(input[i]);
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            out.extend_from_slice(input.get(i..i + run)?);
            i += run;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(i)?);
                i += 1;
            }
            let back = ((ctrl & 0x1f) << 8) + usize::from(*input.get(i)?) + 1;
            i += 1;
            let start = out.len().checked_sub(back)?;
            for k in 0..len + 2 {
                let b = out[start + k];
                out.push(b);
            }
        }
        if out.len() > expected {
            return None;
        }
    }
    (out.len() == expected).then_some(out)
}

/// CRC-64/Jones, reflected, as Redis checksums RDB payloads.
fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    const POLY: u64 = 0x95ac_9329_ac4b_c9b5;
    for &b in data {
        crc ^= u64::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_is_redis_jones() {
        // Redis's own test vector (crc64.c).
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn dumps_round_trip_and_garbage_is_refused() {
        let mut payload = Vec::new();
        payload.push(RDB_OPCODE_FUNCTION2);
        rdb_put_string(&mut payload, &[b'x'; 100]);
        payload.extend_from_slice(&RDB_VERSION.to_le_bytes());
        let crc = crc64(0, &payload);
        payload.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(
            payload_codes(&payload).unwrap(),
            vec![Bytes::from(vec![b'x'; 100])]
        );
        assert_eq!(payload_codes(b"abc"), Err(CommandError::DumpPayload));
        let mut broken = payload.clone();
        broken[5] ^= 1;
        assert_eq!(payload_codes(&broken), Err(CommandError::DumpPayload));
    }

    #[test]
    fn lzf_literals_and_back_references() {
        // "abcabcabc": three literals, then a back reference of length 6 at distance 3.
        let compressed = [2, b'a', b'b', b'c', (4 << 5), 2];
        assert_eq!(
            lzf_decompress(&compressed, 9).unwrap(),
            b"abcabcabc".to_vec()
        );
        assert!(lzf_decompress(&[(1 << 5), 9], 3).is_none());
    }

    #[test]
    fn changes_round_trip() {
        let library = Library {
            name: Bytes::from_static(b"lib"),
            code: Bytes::from_static(b"#!lua name=lib\n"),
            functions: vec![
                FunctionInfo {
                    name: Bytes::from_static(b"f"),
                    description: Some(Bytes::from_static(b"d")),
                    flags: vec![Bytes::from_static(b"no-writes")],
                },
                FunctionInfo {
                    name: Bytes::from_static(b"g"),
                    description: None,
                    flags: vec![],
                },
            ],
        };
        for change in [
            FunctionChange::Load {
                replace: true,
                library: library.clone(),
            },
            FunctionChange::Delete(Bytes::from_static(b"lib")),
            FunctionChange::Flush,
            FunctionChange::Restore {
                policy: RestorePolicy::Replace,
                libraries: vec![library.clone(), library.clone()],
            },
        ] {
            let mut out = Vec::new();
            change.encode(&mut out);
            assert_eq!(FunctionChange::decode(&out).unwrap(), change);
            for cut in 0..out.len() {
                assert!(FunctionChange::decode(&out[..cut]).is_err());
            }
        }
    }
}
