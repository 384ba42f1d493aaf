//! Loading a library of functions (FUNCTION LOAD): its `#!lua name=...` line, its code
//! compiled as `@user_function`, and its registration run in Redis 7.0's loading sandbox,
//! where the only global is `redis` with `register_function`, `log`, the `LOG_*`
//! constants and the version (anything else is "nonexistent"). Registration gives each
//! function's name, flags, description and callback; then the library's globals become the
//! script globals, for its callbacks and the helpers they call alike (as Redis does; `KEYS`
//! and `ARGV` do not exist for functions).

use std::time::{Duration, Instant};

use bytes::Bytes;
use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};
use zankv_commands::CommandError;

use crate::data::functions::{FunctionInfo, Library};

/// The chunk name of libraries, which error positions show.
pub(super) const LIBRARY_SOURCE: &str = "@user_function";
/// Most memory the Lua state that checks a library may take.
const CHECK_MEMORY: usize = 64 << 20;
/// How long a library's registration may run.
const LOAD_TIMEOUT: Duration = Duration::from_millis(500);

/// Written in Lua, with the untouched builtins: runs a compiled library in the loading
/// sandbox and answers what it registered: `{name, callback, flags, description}` each.
const LOADER: &str = r#"
local log, version, version_num, name_ok = ...
local error, type, pairs, ipairs, select, setmetatable, setfenv, tostring =
  error, type, pairs, ipairs, select, setmetatable, setfenv, tostring
local lower = string.lower
local order = { 'no-writes', 'allow-oom', 'allow-stale', 'no-cluster', 'allow-cross-slot-keys' }
local known = {}
for _, f in ipairs(order) do known[f] = true end
local function missing(_, k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
end
local function readonly() error('Attempt to modify a readonly table', 2) end
return function(chunk, runtime)
  local registered, seen = {}, {}
  local function register(...)
    local n = select('#', ...)
    local name, callback, flags, description
    local named = false
    if n == 1 then
      local args = ...
      if type(args) ~= 'table' then
        error('calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).', 0)
      end
      named = true
      for k, v in pairs(args) do
        if k == 'function_name' then name = v
        elseif k == 'callback' then callback = v
        elseif k == 'flags' then
          if type(v) ~= 'table' then
            error('flags argument to redis.register_function must be a table representing function flags', 0)
          end
          flags = v
        elseif k == 'description' then description = v
        else error('unknown argument given to redis.register_function', 0) end
      end
      if name == nil then error('redis.register_function must get a function name argument', 0) end
      if callback == nil then error('redis.register_function must get a callback argument', 0) end
    elseif n == 2 then
      name, callback = ...
    else
      error('wrong number of arguments to redis.register_function', 0)
    end
    if type(name) == 'number' then name = tostring(name) end
    if type(name) ~= 'string' then
      if named then
        error('function_name argument given to redis.register_function must be a string', 0)
      end
      error('first argument to redis.register_function must be a string', 0)
    end
    if not name_ok(name) then
      error('Library names can only contain letters, numbers, or underscores(_) and must be at least one character long', 0)
    end
    if type(callback) ~= 'function' then
      if named then
        error('callback argument given to redis.register_function must be a function', 0)
      end
      error('second argument to redis.register_function must be a function', 0)
    end
    if type(description) == 'number' then description = tostring(description) end
    if description ~= nil and type(description) ~= 'string' then
      error('description argument given to redis.register_function must be a string', 0)
    end
    -- Flags are a set: listed once each, in Redis's order.
    local given = {}
    for _, f in ipairs(flags or {}) do
      if type(f) ~= 'string' or not known[f] then error('unknown flag given', 0) end
      given[f] = true
    end
    local list = {}
    for _, f in ipairs(order) do
      if given[f] then list[#list + 1] = f end
    end
    local key = lower(name)
    if seen[key] then error('Function already exists in the library', 0) end
    seen[key] = true
    registered[#registered + 1] = {
      name = name, callback = callback, flags = list, description = description,
    }
  end
  local api = setmetatable({
    register_function = register, log = log,
    LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
    REDIS_VERSION = version, REDIS_VERSION_NUM = version_num,
  }, { __index = missing, __newindex = readonly, __metatable = false })
  -- The library's own globals: the loading API now; once registered, the script globals,
  -- so its callbacks and the helpers they call find `redis.call`, `string`, ... at run time.
  local globals = {
    __index = function(_, k)
      if k == 'redis' then return api end
      error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
    end,
    __newindex = readonly,
    __metatable = false,
  }
  setfenv(chunk, setmetatable({}, globals))
  chunk()
  if runtime then globals.__index = runtime end
  return registered
end
"#;

/// A library's name from its first line (`#!lua name=<name>`), and its code with that line
/// blanked (so line numbers stay the code's).
fn metadata(code: &[u8]) -> Result<(Bytes, &[u8]), CommandError> {
    if !code.starts_with(b"#!") {
        return Err(CommandError::MissingLibraryMetadata);
    }
    let Some(line_end) = code.iter().position(|&b| b == b'\n') else {
        return Err(CommandError::LibraryMetadataInvalid);
    };
    // Words split on any whitespace, as Redis splits them; the options first, then the
    // engine.
    let line = String::from_utf8_lossy(&code[..line_end]);
    let mut words = line.split_ascii_whitespace();
    let engine = words
        .next()
        .unwrap_or("#!")
        .trim_start_matches("#!")
        .to_string();
    let mut name = None;
    for word in words {
        match word.get(..5) {
            Some(key) if key.eq_ignore_ascii_case("name=") => {
                if name.is_some() {
                    return Err(CommandError::LibraryNameTwice);
                }
                name = Some(word[5..].to_string());
            }
            _ => return Err(CommandError::LibraryMetadata(word.to_string())),
        }
    }
    let name = name.ok_or(CommandError::LibraryNameMissing)?;
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(CommandError::EngineNotFound(engine));
    }
    if !valid_name(name.as_bytes()) {
        return Err(CommandError::LibraryNameInvalid);
    }
    Ok((Bytes::from(name), &code[line_end..]))
}

/// Library and function names: letters, digits and `_`, at least one.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// A library loaded into a Lua state: what it is, and its callbacks by function name.
pub(super) struct Loaded {
    pub(super) library: Library,
    pub(super) callbacks: Vec<(Bytes, Function)>,
}

/// The function that runs a library's registration in `lua` ([`LOADER`]), made while
/// the state's builtins are untouched; `redis_log` is the state's `redis.log`.
pub(super) fn loader(lua: &Lua, redis_log: Value) -> mlua::Result<Function> {
    let name_ok =
        lua.create_function(|_, name: mlua::LuaString| Ok(valid_name(&name.as_bytes())))?;
    let (major, minor, patch) = super::lua::VERSION;
    lua.load(LOADER).set_name("=zankv").call((
        redis_log,
        format!("{major}.{minor}.{patch}"),
        (major << 16) | (minor << 8) | patch,
        name_ok,
    ))
}

/// Loads `code` into `lua` with `loader` ([`loader`]): compiles it and runs its
/// registration (at most [`LOAD_TIMEOUT`] when `timed`; otherwise the state's own hook,
/// SCRIPT KILL's, stays); the library then sees `runtime` as its globals, if given.
pub(super) fn load(
    lua: &Lua,
    loader: &Function,
    code: &Bytes,
    timed: bool,
    runtime: Option<Table>,
) -> Result<Loaded, CommandError> {
    let (name, source) = metadata(code)?;
    let chunk = lua
        .load(source)
        .set_name(LIBRARY_SOURCE)
        .set_mode(mlua::chunk::ChunkMode::Text)
        .into_function()
        .map_err(|e| match e {
            mlua::Error::SyntaxError { message, .. } => CommandError::FunctionCompile(message),
            other => CommandError::FunctionCompile(other.to_string()),
        })?;
    let internal = |e: mlua::Error| CommandError::Internal(format!("loading a library: {e}"));
    if timed {
        let started = Instant::now();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(10_000),
            move |_, _| {
                if started.elapsed() > LOAD_TIMEOUT {
                    Err(mlua::Error::RuntimeError("FUNCTION LOAD timeout".into()))
                } else {
                    Ok(VmState::Continue)
                }
            },
        )
        .map_err(internal)?;
    }
    let registered = loader.call::<Table>((chunk, runtime));
    if timed {
        lua.remove_hook();
    }
    let registered = registered
        .map_err(|e| CommandError::RegisteringFunctions(super::lua::error_message_of(&e)))?;
    let mut functions = Vec::new();
    let mut callbacks = Vec::new();
    for entry in registered.sequence_values::<Table>() {
        let entry = entry.map_err(internal)?;
        let fname: mlua::LuaString = entry.raw_get("name").map_err(internal)?;
        let fname = Bytes::copy_from_slice(&fname.as_bytes());
        let callback: Function = entry.raw_get("callback").map_err(internal)?;
        let flags: Table = entry.raw_get("flags").map_err(internal)?;
        let flags = flags
            .sequence_values::<mlua::LuaString>()
            .map(|f| f.map(|f| Bytes::copy_from_slice(&f.as_bytes())))
            .collect::<mlua::Result<Vec<_>>>()
            .map_err(internal)?;
        let description: Option<mlua::LuaString> =
            entry.raw_get("description").map_err(internal)?;
        functions.push(FunctionInfo {
            name: fname.clone(),
            description: description.map(|d| Bytes::copy_from_slice(&d.as_bytes())),
            flags,
        });
        callbacks.push((fname, callback));
    }
    if functions.is_empty() {
        return Err(CommandError::NoFunctionsRegistered);
    }
    Ok(Loaded {
        library: Library {
            name,
            code: code.clone(),
            functions,
        },
        callbacks,
    })
}

/// Checks a library's code as FUNCTION LOAD does, in a Lua state of its own, and answers
/// the library.
pub fn check(code: &Bytes) -> Result<Library, CommandError> {
    let lua = Lua::new_with(StdLib::STRING, LuaOptions::new())
        .map_err(|e| CommandError::Internal(format!("starting Lua: {e}")))?;
    // Loading may not take the node's memory either.
    lua.set_memory_limit(CHECK_MEMORY)
        .map_err(|e| CommandError::Internal(format!("starting Lua: {e}")))?;
    let loader = super::lua::log_function(&lua)
        .and_then(|log| loader(&lua, Value::Function(log)))
        .map_err(|e| CommandError::Internal(format!("starting Lua: {e}")))?;
    load(&lua, &loader, code, true, None).map(|loaded| loaded.library)
}
