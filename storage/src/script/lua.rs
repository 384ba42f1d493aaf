//! The Lua 5.1 states scripts run in: one per apply thread, sandboxed as Redis 7.0's, with
//! the `redis` library, `bit`, `cjson`, `cmsgpack` and `struct` (each in a module of its
//! own), and Redis's conversions between replies and Lua values. The errors of these
//! native libraries reach a script that catches them (`pcall`, `xpcall`'s handler,
//! `coroutine.resume`) as strings, as Redis's C libraries raise them.
//!
//! Sandbox: only Redis's allowed globals exist; reading a missing global or writing any
//! global is an error (`KEYS` and `ARGV` are set for each run, bypassing that). Errors a
//! script raises come back as Redis shapes them: their text (with `ERR ` before a plain
//! string), then ` script: <sha>, on @user_script:<line>.`.
//!
//! A count hook checks SCRIPT KILL every [`HOOK_EVERY`] instructions; once killed, the
//! script keeps failing at every check (and `pcall` does not catch it) until it ends.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use mlua::{
    chunk::ChunkMode, Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value,
    Variadic, VmState,
};
use tracing::{debug, info, warn};
use zankv_commands::number::{format_double, format_double_g};
use zankv_commands::{CommandError, Reply};

use super::call::{CallCtx, BAD_ARGUMENT, NO_ARGUMENTS};
use super::library::LIBRARY_SOURCE;
use super::{Running, ScriptJob};
use crate::data::functions::Library;

/// Instructions between two checks of SCRIPT KILL.
const HOOK_EVERY: u32 = 10_000;
/// Most memory one Lua state may take.
pub(super) const MEMORY_LIMIT: usize = 512 << 20;
/// Memory a Lua state may grow to before a full collection after a script.
const GC_FLOOR: usize = 32 << 20;
/// Most compiled scripts, and most loaded libraries, a Lua state keeps.
const MAX_LOADED: usize = 10_000;
/// Most tables converted into one reply.
const MAX_REPLY_ITEMS: usize = 1_000_000;
/// Deepest nesting of tables converted to a reply.
const MAX_DEPTH: usize = 1000;
/// The error a killed script fails with.
const KILLED: &str = "Script killed by user with SCRIPT KILL...";
/// The chunk name of scripts, which error positions show.
const SCRIPT_SOURCE: &str = "@user_script";
/// The Redis version scripts see (`redis.REDIS_VERSION`).
pub(super) const VERSION: (u32, u32, u32) = (7, 0, 0);

/// Globals a script can see (those Redis 7.0 leaves).
const ALLOWED_GLOBALS: &[&str] = &[
    "string",
    "math",
    "table",
    "coroutine",
    "bit",
    "cjson",
    "cmsgpack",
    "struct",
    "redis",
    "_G",
    "_VERSION",
    "assert",
    "collectgarbage",
    "error",
    "gcinfo",
    "getmetatable",
    "ipairs",
    "load",
    "loadstring",
    "next",
    "pairs",
    "pcall",
    "rawequal",
    "rawget",
    "rawset",
    "select",
    "setmetatable",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "xpcall",
];

/// Marks the errors `redis.call` and the `redis` library raise: their text follows,
/// already `CODE message`.
const CALL_ERROR: &str = "\u{0}redis.call:";

/// Written in Lua, with the untouched builtins: a `pcall` (and `xpcall`'s handler) that
/// hands the errors of `redis.call`, of the native libraries and `{err=...}` errors back
/// as their text and never catches a kill, and
/// the protection of the globals: the global table stays empty and reads through to the
/// table of allowed globals (`KEYS` and `ARGV` are set there), so every assignment to a
/// global fails; libraries are read through read-only views. Returns that table.
const PRELUDE: &str = r#"
local native = ...
local error, type, pcall, xpcall, rawset, tostring, setmetatable, getmetatable, next =
  error, type, pcall, xpcall, rawset, tostring, setmetatable, getmetatable, next
local loadstring, load = loadstring, load
local G = _G
local function readonly() error('Attempt to modify a readonly table', 2) end
-- A kill is never caught: whatever catches errors raises it again.
local function unless_killed(ok, ...)
  if not ok and native.killed() then native.kill() end
  return ok, ...
end
local function caught(ok, ...)
  if not ok then
    if native.killed() then native.kill() end
    local e = ...
    if type(e) == 'table' and type(e.err) == 'string' then return false, e.err end
    local text = native.error_text(e)
    if text then return false, text end
  end
  return ok, ...
end
local env = {}
for k, v in next, G do env[k] = v end
for k in next, env do G[k] = nil end
env._G = G
env.pcall = function(f, ...) return caught(pcall(f, ...)) end
env.xpcall = function(f, h)
  if type(h) ~= 'function' then return unless_killed(xpcall(f, h)) end
  return unless_killed(xpcall(f, function(e) return h(native.error_text(e) or e) end))
end
local coroutine = {}
for k, v in next, env.coroutine do coroutine[k] = v end
local resume = coroutine.resume
local function resumed(ok, ...)
  if not ok then
    if native.killed() then native.kill() end
    local text = native.error_text((...))
    if text then return false, text end
  end
  return ok, ...
end
coroutine.resume = function(...) return resumed(resume(...)) end
env.coroutine = coroutine
-- Source only: Lua 5.1's bytecode loader can be fooled into memory corruption.
local function binary(s) return type(s) == 'string' and s:byte(1) == 27 end
env.loadstring = function(s, name)
  if binary(s) then return nil, 'binary chunks are not allowed' end
  return loadstring(s, '=(load)')
end
env.load = function(f, name)
  if type(f) ~= 'function' then return load(f, name) end
  local first = true
  return load(function()
    local piece = f()
    if first and type(piece) == 'string' and piece ~= '' then
      first = false
      if binary(piece) then error('binary chunks are not allowed', 0) end
    end
    return piece
  end, '=(load)')
end
local protected = { [G] = true, [env] = true }
env.rawset = function(t, k, v)
  if protected[t] then error('Attempt to modify a readonly table', 0) end
  return rawset(t, k, v)
end
env.setmetatable = function(t, mt)
  if protected[t] then error('Attempt to modify a readonly table', 0) end
  return setmetatable(t, mt)
end
for _, name in next, { 'redis', 'string', 'math', 'table', 'bit', 'cjson', 'cmsgpack', 'struct', 'coroutine' } do
  local lib = env[name]
  if lib then
    local view = setmetatable({}, { __index = lib, __newindex = readonly, __metatable = false })
    protected[view] = true
    env[name] = view
  end
end
-- Strings' methods read through the read-only view too, and their metatable is hidden.
local strings = getmetatable('')
strings.__index = env.string
strings.__metatable = false
setmetatable(env, {
  __index = function(_, k)
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end,
  __metatable = false,
})
setmetatable(G, { __index = env, __newindex = readonly, __metatable = false })
return env
"#;

thread_local! {
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
    /// The script running on this thread, for the kill hook.
    static CURRENT: RefCell<Option<Arc<Running>>> = const { RefCell::new(None) };
    /// The RESP version of the running script's conversions (`redis.setresp`).
    static RESP: Cell<u8> = const { Cell::new(2) };
    /// A bare state that only compiles (SCRIPT LOAD and EVAL check a new body with it).
    static COMPILER: RefCell<Option<Lua>> = const { RefCell::new(None) };
}

fn killed() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|r| r.killed()))
}

/// Compiles `source` as a script, for its errors only.
pub(super) fn compile_check(source: &[u8]) -> Result<(), CommandError> {
    COMPILER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let lua = Lua::new_with(StdLib::NONE, LuaOptions::new())
                .map_err(|e| CommandError::Internal(format!("starting Lua: {e}")))?;
            *slot = Some(lua);
        }
        let lua = slot.as_ref().expect("set above");
        match lua
            .load(source)
            .set_name(SCRIPT_SOURCE)
            .set_mode(ChunkMode::Text)
            .into_function()
        {
            Ok(_) => Ok(()),
            Err(e) => Err(compile_error(e)),
        }
    })
}

fn compile_error(e: mlua::Error) -> CommandError {
    match e {
        mlua::Error::SyntaxError { message, .. } => CommandError::ScriptCompile(message),
        other => CommandError::ScriptCompile(other.to_string()),
    }
}

/// What a job runs.
pub(super) enum Target<'a> {
    /// Its script (EVAL, EVALSHA).
    Script,
    /// A function of a library (FCALL).
    Function {
        /// The library, as stored in the partition.
        library: &'a Library,
        /// The function.
        name: &'a Bytes,
    },
}

/// Runs `job` on this thread's Lua state (made anew after SCRIPT FLUSH: `generation`).
pub(super) fn run(
    job: &ScriptJob,
    target: Target<'_>,
    generation: u64,
    running: &Arc<Running>,
    ctx: &mut CallCtx<'_>,
) -> Reply {
    VM.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|vm| vm.generation != generation) {
            *slot = None;
            match Vm::new(generation) {
                Ok(vm) => *slot = Some(vm),
                Err(e) => {
                    return Reply::Error(CommandError::Internal(format!("starting Lua: {e}")))
                }
            }
        }
        let vm = slot.as_mut().expect("set above");
        CURRENT.with(|c| *c.borrow_mut() = Some(running.clone()));
        RESP.with(|r| r.set(2));
        let reply = vm.run(job, target, ctx).unwrap_or_else(|e| {
            Reply::Error(CommandError::Script(format!(
                "ERR {} script: {}",
                root_message(&e),
                job.sha
            )))
        });
        CURRENT.with(|c| *c.borrow_mut() = None);
        // Lua's incremental collector keeps up with small scripts; one that left much
        // garbage behind is collected now, not in the middle of the next one.
        if vm.lua.used_memory() > vm.baseline_memory.saturating_mul(4).max(GC_FLOOR) {
            let _ = vm.lua.gc_collect();
            vm.baseline_memory = vm.lua.used_memory();
        }
        reply
    })
}

/// One thread's Lua state.
struct Vm {
    lua: Lua,
    generation: u64,
    /// Compiled scripts by SHA1.
    functions: HashMap<String, Function>,
    /// The `redis` table, whose `call` and `pcall` are set for each run.
    redis: Table,
    /// The allowed globals, behind the (empty, read-only) global table.
    env: Table,
    /// `xpcall(f, error_info)` with the arguments after `f`.
    runner: Function,
    /// Runs a library's registration ([`super::library`]).
    loader: Function,
    /// Libraries loaded, by the SHA1 of their code: their callbacks by function name.
    libraries: HashMap<String, Vec<(Bytes, Function)>>,
    /// Memory in use after the last full collection.
    baseline_memory: usize,
}

impl Vm {
    fn new(generation: u64) -> mlua::Result<Vm> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::new(),
        )?;
        lua.set_memory_limit(MEMORY_LIMIT)?;
        let globals = lua.globals();
        let redis = redis_library(&lua)?;
        globals.raw_set("redis", redis.clone())?;
        globals.raw_set("bit", super::bit::library(&lua)?)?;
        globals.raw_set("cjson", super::cjson::library(&lua)?)?;
        globals.raw_set("cmsgpack", super::cmsgpack::library(&lua)?)?;
        globals.raw_set("struct", super::structlib::library(&lua)?)?;
        let native = lua.create_table()?;
        native.raw_set("killed", lua.create_function(|_, ()| Ok(killed()))?)?;
        // Raises the kill again (whatever a handler made of it).
        native.raw_set(
            "kill",
            lua.create_function(|_, ()| Err::<(), _>(mlua::Error::RuntimeError(KILLED.into())))?,
        )?;
        // The text of an error raised by native code (redis.call's, a library's), which
        // a script that catches it sees as a string, as in Redis.
        native.raw_set(
            "error_text",
            lua.create_function(|_, e: Value| {
                Ok(match &e {
                    Value::Error(e) => {
                        let message = root_message(e);
                        Some(match message.strip_prefix(CALL_ERROR) {
                            Some(text) => text.to_string(),
                            None => message,
                        })
                    }
                    _ => None,
                })
            })?,
        )?;
        let handler = lua.create_function(error_info)?;
        let runner: Function = lua
            .load(
                "local h, xpcall, select, unpack = ...
                 return function(f, ...)
                   local n, args = select('#', ...), { ... }
                   return xpcall(function() return f(unpack(args, 1, n)) end, h)
                 end",
            )
            .set_name("=zankv")
            .call((
                handler,
                globals.raw_get::<Value>("xpcall")?,
                globals.raw_get::<Value>("select")?,
                globals.raw_get::<Value>("unpack")?,
            ))?;
        let loader = super::library::loader(&lua, redis.raw_get("log")?)?;
        let names: Vec<Value> = globals
            .clone()
            .pairs::<Value, Value>()
            .filter_map(|pair| pair.ok().map(|(k, _)| k))
            .collect();
        for name in names {
            let allowed = match &name {
                Value::String(s) => ALLOWED_GLOBALS.iter().any(|a| s.as_bytes() == a.as_bytes()),
                _ => false,
            };
            if !allowed {
                globals.raw_set(name, Value::Nil)?;
            }
        }
        let env: Table = lua.load(PRELUDE).set_name("=zankv").call(native)?;
        // Global: coroutines are checked too.
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            |_, _| {
                if killed() {
                    Err(mlua::Error::RuntimeError(KILLED.into()))
                } else {
                    Ok(VmState::Continue)
                }
            },
        )?;
        Ok(Vm {
            lua,
            generation,
            functions: HashMap::new(),
            redis,
            env,
            runner,
            loader,
            libraries: HashMap::new(),
            baseline_memory: 0,
        })
    }

    /// The callback of `name` in `library`, loading the library the first time.
    fn callback(&mut self, library: &Library, name: &Bytes) -> Result<Function, CommandError> {
        let key = zankv_commands::scripting::sha1_hex(&library.code);
        if !self.libraries.contains_key(&key) {
            // Libraries replaced or deleted stay loaded until the state forgets them all.
            if self.libraries.len() >= MAX_LOADED {
                self.libraries.clear();
            }
            let loaded = super::library::load(
                &self.lua,
                &self.loader,
                &library.code,
                false,
                Some(self.lua.globals()),
            )?;
            self.libraries.insert(key.clone(), loaded.callbacks);
        }
        self.libraries[&key]
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .ok_or(CommandError::FunctionNotFound)
    }

    fn run(
        &mut self,
        job: &ScriptJob,
        target: Target<'_>,
        ctx: &mut CallCtx<'_>,
    ) -> mlua::Result<Reply> {
        let (function, arguments_of_call, source) = match target {
            Target::Script => {
                let function = match self.script(job) {
                    Ok(f) => f,
                    Err(e) => return Ok(Reply::Error(e)),
                };
                self.env.raw_set("KEYS", strings(&self.lua, &job.keys)?)?;
                self.env.raw_set("ARGV", strings(&self.lua, &job.args)?)?;
                (function, MultiValue::new(), SCRIPT_SOURCE)
            }
            Target::Function { library, name } => {
                let function = match self.callback(library, name) {
                    Ok(f) => f,
                    Err(e) => return Ok(Reply::Error(e)),
                };
                // A function gets its keys and arguments as parameters; KEYS and ARGV
                // do not exist for it.
                self.env.raw_set("KEYS", Value::Nil)?;
                self.env.raw_set("ARGV", Value::Nil)?;
                let mut args = MultiValue::new();
                args.push_back(Value::Table(strings(&self.lua, &job.keys)?));
                args.push_back(Value::Table(strings(&self.lua, &job.args)?));
                (function, args, LIBRARY_SOURCE)
            }
        };
        let redis = self.redis.clone();
        let runner = self.runner.clone();
        let ctx = RefCell::new(ctx);
        let run_command = |args: MultiValue| match arguments(args) {
            Ok(argv) => ctx.borrow_mut().call(argv),
            Err(text) => Err(text.to_string()),
        };
        self.lua.scope(|scope| {
            // Native functions, so the error position is the caller's line even in
            // `return redis.call(...)` (a tail call to a Lua function would drop it).
            let call = scope.create_function(|lua, args: MultiValue| match run_command(args) {
                Ok(reply) => to_lua(lua, &reply, resp()),
                Err(text) => Err(mlua::Error::RuntimeError(format!(
                    "{CALL_ERROR}{}",
                    error_text(&text)
                ))),
            })?;
            let pcall = scope.create_function(|lua, args: MultiValue| match run_command(args) {
                Ok(reply) => to_lua(lua, &reply, resp()),
                Err(text) => Ok(Value::Table(error_table(lua, &text)?)),
            })?;
            redis.raw_set("call", call)?;
            redis.raw_set("pcall", pcall)?;
            let mut call_args = MultiValue::new();
            call_args.push_back(Value::Function(function));
            call_args.extend(arguments_of_call);
            let out: MultiValue = runner.call(call_args)?;
            let mut out = out.into_iter();
            let ok = matches!(out.next(), Some(Value::Boolean(true)));
            let value = out.next().unwrap_or(Value::Nil);
            Ok(if ok {
                from_lua(&value, resp(), 0, &Cell::new(MAX_REPLY_ITEMS))
            } else {
                raised(&value, &job.sha, source)
            })
        })
    }

    /// The compiled script of `job`, compiling it the first time.
    fn script(&mut self, job: &ScriptJob) -> Result<Function, CommandError> {
        Ok(match self.functions.get(&job.sha) {
            Some(f) => f.clone(),
            None => {
                let source = zankv_commands::scripting::lua_source(&job.body);
                match self
                    .lua
                    .load(source)
                    .set_name(SCRIPT_SOURCE)
                    .set_mode(ChunkMode::Text)
                    .into_function()
                {
                    Ok(f) => {
                        // Compiled scripts are dropped wholesale past a bound (the node's
                        // cache keeps the bodies; they compile again when run).
                        if self.functions.len() >= MAX_LOADED {
                            self.functions.clear();
                        }
                        self.functions.insert(job.sha.clone(), f.clone());
                        f
                    }
                    Err(e) => return Err(compile_error(e)),
                }
            }
        })
    }
}

fn resp() -> u8 {
    RESP.with(Cell::get)
}

/// A Lua array of strings (KEYS, ARGV).
fn strings(lua: &Lua, items: &[Bytes]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(item)?)?;
    }
    Ok(t)
}

/// `redis.call`'s arguments as a command: strings, and numbers as Redis prints them.
fn arguments(args: MultiValue) -> Result<Vec<Bytes>, &'static str> {
    if args.is_empty() {
        return Err(NO_ARGUMENTS);
    }
    args.iter()
        .map(|a| match a {
            Value::String(s) => Ok(Bytes::copy_from_slice(&s.as_bytes())),
            Value::Integer(i) => Ok(Bytes::from(format_double(*i as f64))),
            Value::Number(n) => Ok(Bytes::from(format_double(*n))),
            _ => Err(BAD_ARGUMENT),
        })
        .collect()
}

/// Redis's Lua error table `{err = "CODE message"}` for an error text: a leading `-`
/// names the code (`ERR` when the text has no space), otherwise the code is `ERR`.
fn error_table(lua: &Lua, text: &str) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("err", error_text(text))?;
    Ok(t)
}

fn error_text(text: &str) -> String {
    let (code, message) = match text.strip_prefix('-') {
        Some(rest) => match rest.split_once(' ') {
            Some((code, message)) => (code, message),
            None => ("ERR", rest),
        },
        None => match text.split_once(' ') {
            // Already "CODE message" (the command errors of this server).
            Some((code, message)) if is_error_code(code) => (code, message),
            _ => ("ERR", text),
        },
    };
    format!("{code} {}", message.trim_matches(['\r', '\n']))
}

/// Whether `word` reads as an error code (upper-case letters, digits and `_`).
fn is_error_code(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The handler of a script's errors: Redis's `{err = text, line = n}`, the line being
/// where in the script the error was raised.
fn error_info(lua: &Lua, err: Value) -> mlua::Result<Table> {
    let text = match &err {
        Value::Table(t) => match t.raw_get::<Value>("err")? {
            Value::String(s) => s.to_string_lossy(),
            _ => "ERR unknown error".to_string(),
        },
        Value::String(s) => format!("ERR {}", s.to_string_lossy()),
        Value::Error(e) => {
            let message = root_message(e);
            with_code(message)
        }
        Value::Nil => "ERR nil".to_string(),
        Value::Boolean(b) => format!("ERR {b}"),
        Value::Integer(i) => format!("ERR {i}"),
        Value::Number(n) => format!("ERR {n}"),
        other => format!("ERR {}", other.type_name()),
    };
    let info = lua.create_table()?;
    info.raw_set("err", text)?;
    if let Some(line) = script_line(lua) {
        info.raw_set("line", line)?;
    }
    Ok(info)
}

/// The line of the innermost frame of the script's own code.
fn script_line(lua: &Lua) -> Option<usize> {
    for level in 1..256 {
        let frame = lua.inspect_stack(level, |d| {
            let source = d.source().source.map(|s| s.into_owned());
            (source, d.current_line())
        })?;
        if let (Some(source), Some(line)) = frame {
            if source == SCRIPT_SOURCE || source == LIBRARY_SOURCE {
                return Some(line);
            }
        }
    }
    None
}

/// An error raised by a library function, placed as Lua places them: `user_script:7: `
/// before the message when a script's line called it.
pub(super) fn located(lua: &Lua, message: &str) -> mlua::Error {
    let place = lua
        .inspect_stack(1, |d| {
            let source = d.source();
            match (source.short_src, d.current_line()) {
                (Some(src), Some(line)) if line > 0 => format!("{src}:{line}: "),
                _ => String::new(),
            }
        })
        .unwrap_or_default();
    mlua::Error::RuntimeError(format!("{place}{message}"))
}

/// The text Redis gives an error raised while loading a library: `ERR ` and its message.
pub(super) fn error_message_of(e: &mlua::Error) -> String {
    with_code(root_message(e))
}

/// An error's text with its Redis code: as `redis.call` and the `redis` library raise
/// it (marked, the code in it), else `ERR ` and the message.
fn with_code(message: String) -> String {
    match message.strip_prefix(CALL_ERROR) {
        Some(text) => text.to_string(),
        None => format!("ERR {message}"),
    }
}

/// An error of the `redis` library, whose `text` carries its code (`ERR ...`).
fn coded(text: &str) -> mlua::Error {
    mlua::Error::RuntimeError(format!("{CALL_ERROR}{text}"))
}

/// The message of the error at the root of `e` (a callback's error is wrapped).
fn root_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => root_message(cause),
        // A Lua error that left Lua carries its traceback: Redis shows the message only.
        mlua::Error::RuntimeError(m) | mlua::Error::MemoryError(m) => m
            .split_once("\nstack traceback:")
            .map_or(m.as_str(), |(message, _)| message)
            .to_string(),
        other => other.to_string(),
    }
}

/// The reply to a script that raised an error (`info` from [`error_info`]).
fn raised(info: &Value, sha: &str, source: &str) -> Reply {
    let (text, line) = match info {
        Value::Table(t) => (
            t.raw_get::<Option<String>>("err").ok().flatten(),
            t.raw_get::<Option<usize>>("line").ok().flatten(),
        ),
        _ => (None, None),
    };
    let text = text.unwrap_or_else(|| "ERR unknown error".into());
    Reply::Error(CommandError::Script(match line {
        Some(line) => format!("{text} script: {sha}, on {source}:{line}."),
        None => format!("{text} script: {sha}"),
    }))
}

/// A Lua number as Redis makes it an integer reply (C's conversion: out of range and NaN
/// give the smallest integer).
fn lua_integer(n: f64) -> i64 {
    const TWO_TO_63: f64 = 9_223_372_036_854_775_808.0;
    if n.is_nan() || !(-TWO_TO_63..TWO_TO_63).contains(&n) {
        i64::MIN
    } else {
        n.trunc() as i64
    }
}

/// A Lua value returned by a script, as its reply (Redis 7.0's conversion).
fn from_lua(value: &Value, resp: u8, depth: usize, left: &Cell<usize>) -> Reply {
    // A table that holds itself would expand without end: depth and size are bounded.
    if depth > MAX_DEPTH || left.get() == 0 {
        return Reply::Error(CommandError::Script("ERR reached lua stack limit".into()));
    }
    match value {
        Value::Nil => Reply::Nil,
        Value::Boolean(b) if resp == 3 => Reply::Boolean(*b),
        Value::Boolean(true) => Reply::Integer(1),
        Value::Boolean(false) => Reply::Nil,
        Value::Integer(i) => Reply::Integer(*i),
        Value::Number(n) => Reply::Integer(lua_integer(*n)),
        Value::String(s) => Reply::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Table(t) => {
            left.set(left.get() - 1);
            table_reply(t, resp, depth, left)
        }
        _ => Reply::Nil,
    }
}

fn table_reply(t: &Table, resp: u8, depth: usize, left: &Cell<usize>) -> Reply {
    let field = |name: &str| t.raw_get::<Value>(name).unwrap_or(Value::Nil);
    if let Value::String(err) = field("err") {
        let text = err.to_string_lossy();
        // The proxy takes ERR_CLUSTER_CHANGED for "not applied" and sends the request
        // again: a script that wrote must never answer it.
        return Reply::Error(CommandError::Script(
            if text.starts_with("ERR_CLUSTER_CHANGED") {
                format!("ERR {text}")
            } else {
                text
            },
        ));
    }
    if let Value::String(ok) = field("ok") {
        return Reply::StatusOwned(one_line(&ok.to_string_lossy()));
    }
    match field("double") {
        Value::Number(n) => return Reply::Double(n),
        Value::Integer(i) => return Reply::Double(i as f64),
        _ => {}
    }
    if let Value::String(digits) = field("big_number") {
        return Reply::BigNumber(Bytes::from(one_line(&digits.to_string_lossy())));
    }
    if let Value::Table(map) = field("map") {
        let pairs = map
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, v)| {
                (
                    from_lua(&k, resp, depth + 1, left),
                    from_lua(&v, resp, depth + 1, left),
                )
            })
            .collect();
        return Reply::Map(pairs);
    }
    if let Value::Table(set) = field("set") {
        let items = set
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, _)| from_lua(&k, resp, depth + 1, left))
            .collect();
        return Reply::Set(items);
    }
    if let Value::Table(v) = field("verbatim_string") {
        if let Ok(Value::String(s)) = v.raw_get::<Value>("string") {
            return Reply::Verbatim(Bytes::copy_from_slice(&s.as_bytes()));
        }
    }
    let mut items = Vec::new();
    for i in 1.. {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(from_lua(&v, resp, depth + 1, left)),
        }
    }
    Reply::Array(items)
}

/// A status or big number on one line (Redis turns line breaks into spaces).
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// A command's reply as `redis.call` hands it to the script (Redis 7.0's conversion for
/// the script's RESP version).
fn to_lua(lua: &Lua, reply: &Reply, resp: u8) -> mlua::Result<Value> {
    let table_with = |key: &str, value: Value| -> mlua::Result<Value> {
        let t = lua.create_table()?;
        t.raw_set(key, value)?;
        Ok(Value::Table(t))
    };
    let array = |items: &mut dyn Iterator<Item = mlua::Result<Value>>| -> mlua::Result<Value> {
        let t = lua.create_table()?;
        for (i, item) in items.enumerate() {
            t.raw_set(i + 1, item?)?;
        }
        Ok(Value::Table(t))
    };
    let string = |b: &[u8]| lua.create_string(b).map(Value::String);
    let nested = |r: &Reply| to_lua(lua, r, resp);
    Ok(match reply {
        Reply::Status(s) => table_with("ok", string(s.as_bytes())?)?,
        Reply::StatusOwned(s) => table_with("ok", string(s.as_bytes())?)?,
        Reply::Error(e) => Value::Table(error_table(lua, &e.to_string())?),
        Reply::Integer(i) => Value::Number(*i as f64),
        Reply::Bulk(b) => string(b)?,
        Reply::Nil | Reply::NilArray if resp == 3 => Value::Nil,
        Reply::Nil | Reply::NilArray => Value::Boolean(false),
        Reply::Verbatim(b) if resp == 3 => {
            let v = lua.create_table()?;
            v.raw_set("format", "txt")?;
            v.raw_set("string", lua.create_string(b)?)?;
            table_with("verbatim_string", Value::Table(v))?
        }
        Reply::Verbatim(b) => string(b)?,
        Reply::Double(d) if resp == 3 => table_with("double", Value::Number(*d))?,
        Reply::Double(d) => string(format_double(*d).as_bytes())?,
        // Redis builds the double from the printed text (17 decimals), not the exact value.
        Reply::Coordinate(d) if resp == 3 => {
            let printed = zankv_commands::reply::human_coordinate(*d);
            table_with("double", Value::Number(printed.parse().unwrap_or(*d)))?
        }
        Reply::Coordinate(d) => string(zankv_commands::reply::human_coordinate(*d).as_bytes())?,
        Reply::Boolean(b) if resp == 3 => Value::Boolean(*b),
        Reply::Boolean(b) => Value::Number(f64::from(u8::from(*b))),
        Reply::BigNumber(digits) if resp == 3 => table_with("big_number", string(digits)?)?,
        Reply::BigNumber(digits) => string(digits)?,
        Reply::Set(items) if resp == 3 => {
            let set = lua.create_table()?;
            for item in items {
                set.raw_set(nested(item)?, true)?;
            }
            table_with("set", Value::Table(set))?
        }
        Reply::Array(items) | Reply::Set(items) | Reply::Push(items) | Reply::Frames(items) => {
            array(&mut items.iter().map(nested))?
        }
        Reply::Map(pairs) if resp == 3 => {
            let map = lua.create_table()?;
            for (k, v) in pairs {
                map.raw_set(nested(k)?, nested(v)?)?;
            }
            table_with("map", Value::Table(map))?
        }
        Reply::Pairs(pairs) if resp == 3 => array(&mut pairs.iter().map(|(k, v)| {
            let pair = lua.create_table()?;
            pair.raw_set(1, nested(k)?)?;
            pair.raw_set(2, nested(v)?)?;
            Ok(Value::Table(pair))
        }))?,
        Reply::Map(pairs) | Reply::Pairs(pairs) => {
            array(&mut pairs.iter().flat_map(|(k, v)| [nested(k), nested(v)]))?
        }
    })
}

/// `redis.log`: to the node's log (target `zankv::script`) at the level given.
pub(super) fn log_function(lua: &Lua) -> mlua::Result<Function> {
    lua.create_function(|_, args: Variadic<Value>| {
        if args.len() < 2 {
            return Err(coded("ERR redis.log() requires two arguments or more."));
        }
        let level = match &args[0] {
            Value::Integer(i) => *i,
            Value::Number(n) => *n as i64,
            _ => return Err(coded("ERR First argument must be a number (log level).")),
        };
        if !(0..=3).contains(&level) {
            return Err(coded("ERR Invalid debug level."));
        }
        let words: Vec<String> = args
            .iter()
            .skip(1)
            .map(|v| match v {
                Value::String(s) => s.to_string_lossy(),
                Value::Integer(i) => i.to_string(),
                Value::Number(n) => n.to_string(),
                other => other.type_name().to_string(),
            })
            .collect();
        let message = words.join(" ");
        match level {
            0 | 1 => debug!(target: "zankv::script", "{message}"),
            2 => info!(target: "zankv::script", "{message}"),
            _ => warn!(target: "zankv::script", "{message}"),
        }
        Ok(())
    })
}

/// The `redis` library, but for `call` and `pcall` (written in Lua by [`PRELUDE`]).
fn redis_library(lua: &Lua) -> mlua::Result<Table> {
    let redis = lua.create_table()?;
    redis.raw_set(
        "sha1hex",
        lua.create_function(|_, args: Variadic<Value>| {
            let [value] = args.as_slice() else {
                return Err(coded("ERR wrong number of arguments"));
            };
            let body = match value {
                Value::String(s) => s.as_bytes().to_vec(),
                // Lua's own text for a number (14 digits).
                Value::Integer(i) => format_double_g(*i as f64, 14).into_bytes(),
                Value::Number(n) => format_double_g(*n, 14).into_bytes(),
                _ => Vec::new(),
            };
            Ok(zankv_commands::scripting::sha1_hex(&body))
        })?,
    )?;
    redis.raw_set(
        "error_reply",
        lua.create_function(|lua, args: Variadic<Value>| {
            let text = match args.as_slice() {
                [Value::String(s)] => {
                    let s = s.to_string_lossy();
                    if s.starts_with('-') {
                        s
                    } else {
                        format!("-{s}")
                    }
                }
                _ => "wrong number or type of arguments".to_string(),
            };
            error_table(lua, &text)
        })?,
    )?;
    redis.raw_set(
        "status_reply",
        lua.create_function(|lua, args: Variadic<Value>| match args.as_slice() {
            [Value::String(s)] => {
                let t = lua.create_table()?;
                t.raw_set("ok", s.clone())?;
                Ok(t)
            }
            _ => error_table(lua, "wrong number or type of arguments"),
        })?,
    )?;
    redis.raw_set("log", log_function(lua)?)?;
    redis.raw_set(
        "setresp",
        lua.create_function(|_, args: Variadic<Value>| {
            let [version] = args.as_slice() else {
                return Err(coded("ERR redis.setresp() requires one argument."));
            };
            // A number, or a string that reads as one (Lua's conversion).
            let version = match version {
                Value::String(s) => s.to_str().ok().and_then(|s| s.trim().parse::<f64>().ok()),
                Value::Integer(i) => Some(*i as f64),
                Value::Number(n) => Some(*n),
                _ => None,
            };
            match version {
                Some(v) if v == 2.0 || v == 3.0 => {
                    RESP.with(|r| r.set(v as u8));
                    Ok(())
                }
                _ => Err(coded("ERR RESP version must be 2 or 3.")),
            }
        })?,
    )?;
    redis.raw_set(
        "set_repl",
        lua.create_function(|_, args: Variadic<Value>| match args.as_slice() {
            // Effects are always replicated: the flags are accepted and change nothing.
            [Value::Integer(0..=3)] => Ok(()),
            [_] => Err(coded(
                "ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
            )),
            _ => Err(coded("ERR redis.set_repl() requires one argument.")),
        })?,
    )?;
    redis.raw_set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
    redis.raw_set("breakpoint", lua.create_function(|_, ()| Ok(false))?)?;
    redis.raw_set("debug", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    for (name, value) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
    ] {
        redis.raw_set(name, value)?;
    }
    let (major, minor, patch) = VERSION;
    redis.raw_set("REDIS_VERSION", format!("{major}.{minor}.{patch}"))?;
    redis.raw_set("REDIS_VERSION_NUM", (major << 16) | (minor << 8) | patch)?;
    Ok(redis)
}
