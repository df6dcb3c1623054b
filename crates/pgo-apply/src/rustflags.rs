//! Merging a backend's flags into the user's own build flags, for `pgo apply -- cargo build`.
//!
//! Setting `RUSTFLAGS` silently replaces the `build.rustflags` and `target.*.rustflags` of the
//! user's `.cargo/config.toml`, so a backend's [`EnvEdit::AppendFlags`] on `RUSTFLAGS` is turned
//! into one `CARGO_ENCODED_RUSTFLAGS` holding the flags cargo would have used ([`user_rustflags`],
//! which follows cargo's precedence and config merging) followed by the backend's, separated by
//! 0x1f so flags containing spaces survive. Other variables (`CFLAGS`, `GOFLAGS`, ...) get the
//! backend's flags appended to their value in the environment.
//!
//! It is not a cargo config implementation: it reads only what decides rustc flags
//! (`build.rustflags`, `build.target`, `target.<triple>.rustflags`, `target.'cfg(..)'.rustflags`
//! and their environment variables), not `--config` arguments of the build command, `include`,
//! or `[host]` tables. It does not run the build either.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use pgo_backend::EnvEdit;

use crate::cargo_profile::{CargoBuild, DebugLevel, ProfileSettings, profile_var};

/// One `rustc --print cfg` entry: `unix`, or `target_os="linux"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cfg {
    Name(String),
    KeyPair(String, String),
}

/// The platform `target.'cfg(..)'` keys are evaluated for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The target triple, e.g. `x86_64-unknown-linux-gnu`.
    pub triple: String,
    pub cfg: BTreeSet<Cfg>,
    /// True when `cfg` is everything rustc reports for the triple (from `rustc --print cfg`), so
    /// whatever is not in it is false, as cargo sees it. False when `cfg` was derived from the
    /// triple's name ([`Host::from_triple`]): predicates it does not model are then unknown.
    pub complete: bool,
}

/// The `key="value"` cfg keys [`Host::from_triple`] derives from a triple's name.
const DERIVED_KEYS: &[&str] = &[
    "target_arch",
    "target_os",
    "target_family",
    "target_env",
    "target_vendor",
    "target_abi",
    "target_pointer_width",
    "target_endian",
];

/// Bare cfg names whose value [`Host::from_triple`] knows. `debug_assertions` is true because
/// cargo evaluates `target.'cfg(..)'` against a plain `rustc --print cfg`, which reports it
/// even for `--release` builds.
const DERIVED_NAMES: &[&str] = &["unix", "windows", "debug_assertions"];

/// Names cargo never sees in a target's cfg (`cfg(feature = "..")`, `cfg(test)` are always
/// false in `.cargo/config.toml`).
const NEVER_SET: &[&str] = &["feature", "test", "proc_macro", "doc", "doctest", "miri"];

impl Host {
    /// The cfg of `triple` as far as its name tells: arch, os, family, env, vendor, abi,
    /// pointer width, endianness, `unix`/`windows`, and `debug_assertions` (see
    /// [`Host::complete`]). Never fails; an unusual triple gets fewer known values.
    pub fn from_triple(triple: &str) -> Host {
        let parts: Vec<&str> = triple.split('-').collect();
        let arch_raw = parts.first().copied().unwrap_or("");
        let has = |name: &str| parts.iter().skip(1).any(|p| *p == name);
        let has_prefix = |name: &str| parts.iter().skip(1).any(|p| p.starts_with(name));

        let (arch, width, little) = match arch_raw {
            "x86_64" | "amd64" => ("x86_64", Some(64), Some(true)),
            "i386" | "i486" | "i586" | "i686" | "x86" => ("x86", Some(32), Some(true)),
            "aarch64" | "arm64" | "arm64e" | "arm64ec" => ("aarch64", Some(64), Some(true)),
            "aarch64_be" => ("aarch64", Some(64), Some(false)),
            "wasm32" => ("wasm32", Some(32), Some(true)),
            "wasm64" => ("wasm64", Some(64), Some(true)),
            "powerpc64le" => ("powerpc64", Some(64), Some(true)),
            "powerpc64" => ("powerpc64", Some(64), Some(false)),
            "powerpc" => ("powerpc", Some(32), Some(false)),
            "s390x" => ("s390x", Some(64), Some(false)),
            "sparc64" => ("sparc64", Some(64), Some(false)),
            "loongarch64" => ("loongarch64", Some(64), Some(true)),
            a if a.starts_with("riscv64") => ("riscv64", Some(64), Some(true)),
            a if a.starts_with("riscv32") => ("riscv32", Some(32), Some(true)),
            a if a.starts_with("arm") || a.starts_with("thumb") => {
                ("arm", Some(32), Some(!a.ends_with("eb")))
            }
            a => (a, None, None),
        };

        let os = if has_prefix("android") || has_prefix("androideabi") {
            "android"
        } else if has("linux") {
            "linux"
        } else if has_prefix("darwin") || has("macos") {
            "macos"
        } else if has("ios") {
            "ios"
        } else if has("windows") {
            "windows"
        } else if has("wasi") || parts.iter().any(|p| p.starts_with("wasip")) {
            "wasi"
        } else if has("emscripten") {
            "emscripten"
        } else if let Some(p) = parts.iter().skip(1).find(|p| {
            [
                "freebsd",
                "netbsd",
                "openbsd",
                "dragonfly",
                "illumos",
                "solaris",
                "fuchsia",
                "redox",
                "haiku",
                "uefi",
                "hermit",
                "none",
                "cuda",
            ]
            .contains(p)
        }) {
            p
        } else if arch.starts_with("wasm") {
            "unknown"
        } else {
            ""
        };

        let unix_os = [
            "linux",
            "android",
            "macos",
            "ios",
            "freebsd",
            "netbsd",
            "openbsd",
            "dragonfly",
            "illumos",
            "solaris",
            "fuchsia",
            "redox",
            "haiku",
            "emscripten",
        ];
        let mut families = Vec::new();
        if unix_os.contains(&os) {
            families.push("unix");
        }
        if os == "windows" {
            families.push("windows");
        }
        if arch.starts_with("wasm") {
            families.push("wasm");
        }

        // The last part carries env and abi: gnu, musl, msvc, gnueabihf, musleabi, gnux32, ...
        let last = if parts.len() >= 4 || (parts.len() == 3 && os != "linux") {
            parts.last().copied().unwrap_or("")
        } else {
            ""
        };
        let (env, abi) = ["gnu", "musl", "msvc", "sgx", "uclibc", "newlib", "ohos"]
            .iter()
            .find(|e| last.starts_with(**e))
            .map(|e| (*e, &last[e.len()..]))
            .unwrap_or(("", ""));
        let abi = if abi.is_empty() && last.starts_with("eabi") {
            last
        } else {
            abi
        };
        let vendor = parts
            .get(1)
            .filter(|v| {
                [
                    "unknown",
                    "pc",
                    "apple",
                    "fortanix",
                    "nvidia",
                    "sun",
                    "wrs",
                    "uwp",
                    "kmc",
                    "nintendo",
                    "sony",
                    "espressif",
                    "win7",
                ]
                .contains(*v)
            })
            .copied()
            .unwrap_or("unknown");

        let mut cfg = BTreeSet::new();
        let mut kv = |k: &str, v: &str| {
            cfg.insert(Cfg::KeyPair(k.to_string(), v.to_string()));
        };
        if !arch.is_empty() {
            kv("target_arch", arch);
        }
        if !os.is_empty() {
            kv("target_os", os);
        }
        for f in &families {
            kv("target_family", f);
        }
        kv("target_env", env);
        kv("target_abi", abi);
        kv("target_vendor", vendor);
        if let Some(w) = width {
            kv("target_pointer_width", &w.to_string());
        }
        if let Some(l) = little {
            kv("target_endian", if l { "little" } else { "big" });
        }
        for f in &families {
            if *f == "unix" || *f == "windows" {
                cfg.insert(Cfg::Name(f.to_string()));
            }
        }
        cfg.insert(Cfg::Name("debug_assertions".to_string()));
        Host {
            triple: triple.to_string(),
            cfg,
            complete: false,
        }
    }

    /// A host from `rustc --print cfg` output for `triple`: one entry a line.
    pub fn from_print_cfg(triple: &str, print_cfg: &str) -> Host {
        let cfg = print_cfg
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| match l.split_once('=') {
                Some((k, v)) => Cfg::KeyPair(k.trim().to_string(), unquote(v.trim()).to_string()),
                None => Cfg::Name(l.to_string()),
            })
            .collect();
        Host {
            triple: triple.to_string(),
            cfg,
            complete: true,
        }
    }

    /// The host rustc builds for: the `host:` line of `rustc -vV` and its `rustc --print cfg`,
    /// running the `RUSTC` of `env` (else `rustc`) in `workdir` (where rustup picks the
    /// toolchain from `rust-toolchain.toml`).
    pub fn detect(workdir: &Path, env: &impl Fn(&str) -> Option<String>) -> Result<Host, String> {
        let rustc = env("RUSTC")
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "rustc".to_string());
        let run = |args: &[&str]| -> Result<String, String> {
            let out = Command::new(&rustc)
                .args(args)
                .current_dir(workdir)
                .output()
                .map_err(|e| format!("cannot run `{rustc}`: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "`{rustc} {}` failed ({}): {}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let vv = run(&["-vV"])?;
        let triple = vv
            .lines()
            .find_map(|l| l.strip_prefix("host:"))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("`{rustc} -vV` printed no `host:` line"))?;
        let cfg = run(&["--print", "cfg"])?;
        Ok(Host::from_print_cfg(&triple, &cfg))
    }

    /// Whether a bare cfg name / a key is known to this host (so its absence means false).
    fn knows_name(&self, name: &str) -> bool {
        self.complete
            || NEVER_SET.contains(&name)
            || DERIVED_NAMES.contains(&name)
            || self.cfg.contains(&Cfg::Name(name.to_string()))
    }

    fn knows_key(&self, key: &str) -> bool {
        self.complete
            || NEVER_SET.contains(&key)
            || (DERIVED_KEYS.contains(&key)
                && self
                    .cfg
                    .iter()
                    .any(|c| matches!(c, Cfg::KeyPair(k, _) if k == key)))
    }
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// Which of cargo's mutually exclusive flag sources is in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagSource {
    /// `CARGO_ENCODED_RUSTFLAGS` (0x1f-separated).
    EncodedEnv,
    /// `RUSTFLAGS` (split at spaces).
    Env,
    /// `target.<triple>.rustflags` and the matching `target.'cfg(..)'.rustflags`, joined.
    Target,
    /// `build.rustflags`.
    Build,
    /// No flags from anywhere.
    Nothing,
}

/// The rustflags cargo would use for a build in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFlags {
    pub flags: Vec<String>,
    pub source: FlagSource,
    /// Where the flags were defined, in the order they were joined, e.g.
    /// `/home/u/proj/.cargo/config.toml build.rustflags` or `RUSTFLAGS`.
    pub origins: Vec<String>,
    /// Things that may make the result differ from cargo's (unknown cfg predicates, ...).
    pub warnings: Vec<String>,
}

impl UserFlags {
    /// Where the flags came from, for people: `RUSTFLAGS`, or the config files and keys.
    pub fn describe(&self) -> String {
        if self.origins.is_empty() {
            "no RUSTFLAGS and no rustflags in .cargo/config.toml".to_string()
        } else {
            self.origins.join(", ")
        }
    }
}

/// A parsed config file.
pub(crate) struct ConfigFile {
    pub(crate) path: PathBuf,
    pub(crate) table: toml::Table,
}

/// A `string or array of strings` config value with its definitions merged as cargo does.
struct StringList {
    flags: Vec<String>,
    origins: Vec<String>,
}

/// The config files cargo reads for a build in `workdir`, highest precedence (deepest) first,
/// `$CARGO_HOME/config.toml` last.
pub(crate) fn config_files(
    workdir: &Path,
    env: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Vec<ConfigFile>, String> {
    let workdir = absolute(workdir, workdir);
    let mut dirs: Vec<PathBuf> = workdir.ancestors().map(|d| d.join(".cargo")).collect();
    let home = env("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(|h| absolute(Path::new(&h), &workdir))
        .or_else(|| {
            env("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".cargo"))
        });
    if let Some(home) = home {
        let same = |a: &Path, b: &Path| {
            a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
        };
        if !dirs.iter().any(|d| same(d, &home)) {
            dirs.push(home);
        }
    }
    let mut files = Vec::new();
    for dir in dirs {
        // Cargo prefers the legacy extensionless `config` when both exist.
        let legacy = dir.join("config");
        let modern = dir.join("config.toml");
        let path = if legacy.is_file() {
            if modern.is_file() && !same_file(&legacy, &modern) {
                warnings.push(format!(
                    "both `{}` and `{}` exist; cargo uses `{}`, and so does pgo",
                    legacy.display(),
                    modern.display(),
                    legacy.display()
                ));
            }
            legacy
        } else if modern.is_file() {
            modern
        } else {
            continue;
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
        files.push(ConfigFile { path, table });
    }
    Ok(files)
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// `path` made absolute against `base` (itself made absolute against the current directory),
/// with `.` and `..` resolved lexically.
fn absolute(path: &Path, base: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else if base.is_absolute() {
        base.join(path)
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(base)
            .join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn lookup<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Value> {
    let (first, rest) = path.split_first()?;
    let value = table.get(*first)?;
    if rest.is_empty() {
        Some(value)
    } else {
        lookup(value.as_table()?, rest)
    }
}

/// Reads a cargo `StringList` (`build.rustflags`, `target.*.rustflags`): arrays from several
/// files are concatenated with higher-precedence files later; strings are not merged, the
/// highest-precedence one wins and is split at whitespace; an array and a string for the same
/// key is an error (cargo refuses to load such a config). The environment variable, when set,
/// is split at whitespace and appended. `None` when nothing defines the key.
fn string_list(
    files: &[ConfigFile],
    path: &[&str],
    env_name: Option<&str>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<StringList>, String> {
    let key = path
        .iter()
        .map(|p| {
            if p.contains(['.', '(', ' ', '"']) {
                format!("'{p}'")
            } else {
                p.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(".");
    let mut strings: Vec<(&ConfigFile, &str)> = Vec::new();
    let mut arrays: Vec<(&ConfigFile, Vec<String>)> = Vec::new();
    for file in files {
        let Some(value) = lookup(&file.table, path) else {
            continue;
        };
        match value {
            toml::Value::String(s) => strings.push((file, s)),
            toml::Value::Array(items) => {
                let list = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        format!(
                            "{}: `{key}` must be an array of strings",
                            file.path.display()
                        )
                    })?;
                arrays.push((file, list));
            }
            other => {
                return Err(format!(
                    "{}: `{key}` must be a string or an array of strings, not {}",
                    file.path.display(),
                    other.type_str()
                ));
            }
        }
    }
    if let (Some((sf, _)), Some((af, _))) = (strings.first(), arrays.first()) {
        return Err(format!(
            "`{key}` is a string in {} but an array in {}: cargo refuses to merge them",
            sf.path.display(),
            af.path.display()
        ));
    }
    let mut out = StringList {
        flags: Vec::new(),
        origins: Vec::new(),
    };
    let mut defined = false;
    if let Some((file, s)) = strings.first() {
        defined = true;
        out.flags.extend(s.split_whitespace().map(str::to_string));
        out.origins.push(format!("{} {key}", file.path.display()));
    }
    // `files` is deepest first; cargo places higher-precedence (deeper) arrays later.
    for (file, list) in arrays.into_iter().rev() {
        defined = true;
        out.flags.extend(list);
        out.origins.push(format!("{} {key}", file.path.display()));
    }
    if let Some(name) = env_name
        && let Some(value) = env(name)
    {
        defined = true;
        let before = out.flags.len();
        out.flags
            .extend(value.split_whitespace().map(str::to_string));
        if out.flags.len() > before {
            out.origins.push(name.to_string());
        }
    }
    Ok(defined.then_some(out))
}

/// The environment variable name of a config key, as cargo derives it.
fn env_key(path: &[&str]) -> String {
    let mut s = String::from("CARGO");
    for p in path {
        s.push('_');
        s.extend(p.chars().map(|c| {
            if c == '-' || c == '.' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        }));
    }
    s
}

/// The rustflags cargo would pass to rustc for a build run in `workdir`, following cargo's
/// precedence: `CARGO_ENCODED_RUSTFLAGS` (even when empty), else `RUSTFLAGS` (even when empty),
/// else `target.<triple>.rustflags` + the matching `target.'cfg(..)'.rustflags` (keys in sorted
/// order; only when the result is non-empty), else `build.rustflags`. Config files are read
/// from `workdir` and its parents (`.cargo/config`, else `.cargo/config.toml`) and then
/// `$CARGO_HOME/config.toml`; `CARGO_BUILD_RUSTFLAGS` and `CARGO_TARGET_<TRIPLE>_RUSTFLAGS` are
/// appended to the config's arrays. `build.target` (or `CARGO_BUILD_TARGET`) replaces `host`'s
/// triple when it names another one.
pub fn user_rustflags(
    workdir: &Path,
    env: &impl Fn(&str) -> Option<String>,
    host: &Host,
) -> Result<UserFlags, String> {
    let mut warnings = Vec::new();
    if let Some(encoded) = env("CARGO_ENCODED_RUSTFLAGS") {
        let flags = if encoded.is_empty() {
            Vec::new()
        } else {
            encoded.split('\x1f').map(str::to_string).collect()
        };
        return Ok(UserFlags {
            flags,
            source: FlagSource::EncodedEnv,
            origins: vec!["CARGO_ENCODED_RUSTFLAGS".to_string()],
            warnings,
        });
    }
    if let Some(plain) = env("RUSTFLAGS") {
        // Cargo splits RUSTFLAGS at spaces only (a tab stays inside a flag).
        let flags = plain
            .split(' ')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        return Ok(UserFlags {
            flags,
            source: FlagSource::Env,
            origins: vec!["RUSTFLAGS".to_string()],
            warnings,
        });
    }

    let files = config_files(workdir, env, &mut warnings)?;

    // The triple being built for: build.target when it names one, else the host.
    let target_host;
    let host = match build_target(&files, env, &mut warnings)? {
        Some(t) if t != host.triple => {
            warnings.push(format!(
                "build.target is `{t}`: flags are those for `{t}` (its cfg guessed from the name), \
                 and cargo gives build scripts and proc macros no rustflags"
            ));
            target_host = Host::from_triple(&t);
            &target_host
        }
        _ => host,
    };

    let mut flags = Vec::new();
    let mut origins = Vec::new();
    let triple_path = ["target", host.triple.as_str(), "rustflags"];
    if let Some(list) = string_list(&files, &triple_path, Some(&env_key(&triple_path)), env)? {
        flags.extend(list.flags);
        origins.extend(list.origins);
    }
    let cfg_keys: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| f.table.get("target").and_then(toml::Value::as_table))
        .flat_map(|t| t.keys())
        .map(String::as_str)
        .filter(|k| k.starts_with("cfg("))
        .collect();
    for key in cfg_keys {
        let path = ["target", key, "rustflags"];
        let Some(list) = string_list(&files, &path, None, env)? else {
            continue;
        };
        let matched = match key
            .strip_prefix("cfg(")
            .and_then(|k| k.strip_suffix(')'))
            .map(parse_cfg)
        {
            Some(Ok(expr)) => match eval_cfg(&expr, host) {
                Truth::True => true,
                Truth::False => false,
                Truth::Unknown => {
                    warnings.push(format!(
                        "cannot tell whether `target.'{key}'` applies to {} ({}); its rustflags \
                         are left out",
                        host.triple,
                        unknown_predicates(&expr, host).join(", ")
                    ));
                    false
                }
            },
            Some(Err(e)) => {
                warnings.push(format!(
                    "`target.'{key}'` is not a valid cfg expression: {e}"
                ));
                false
            }
            None => {
                warnings.push(format!("`target.'{key}'` is not a valid cfg expression"));
                false
            }
        };
        if matched {
            flags.extend(list.flags);
            origins.extend(list.origins);
        }
    }
    // Cargo falls through to build.rustflags when the target flags come out empty.
    if !flags.is_empty() {
        return Ok(UserFlags {
            flags,
            source: FlagSource::Target,
            origins,
            warnings,
        });
    }
    let build_path = ["build", "rustflags"];
    if let Some(list) = string_list(&files, &build_path, Some(&env_key(&build_path)), env)? {
        return Ok(UserFlags {
            flags: list.flags,
            source: FlagSource::Build,
            origins: list.origins,
            warnings,
        });
    }
    Ok(UserFlags {
        flags: Vec::new(),
        source: FlagSource::Nothing,
        origins: Vec::new(),
        warnings,
    })
}

/// `build.target` as a single triple (`CARGO_BUILD_TARGET` first, then the deepest config).
fn build_target(
    files: &[ConfigFile],
    env: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Option<String>, String> {
    if let Some(t) = env("CARGO_BUILD_TARGET").filter(|t| !t.trim().is_empty()) {
        return Ok(Some(t.trim().to_string()));
    }
    for file in files {
        match lookup(&file.table, &["build", "target"]) {
            None => continue,
            Some(toml::Value::String(t)) if t.ends_with(".json") => {
                warnings.push(format!(
                    "{}: build.target is a target spec file ({t}); flags are those for the host",
                    file.path.display()
                ));
                return Ok(None);
            }
            Some(toml::Value::String(t)) => return Ok(Some(t.clone())),
            Some(_) => {
                warnings.push(format!(
                    "{}: build.target is not a single triple; flags are those for the host",
                    file.path.display()
                ));
                return Ok(None);
            }
        }
    }
    Ok(None)
}

/// A parsed cfg expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CfgExpr {
    Name(String),
    KeyPair(String, String),
    All(Vec<CfgExpr>),
    Any(Vec<CfgExpr>),
    Not(Box<CfgExpr>),
}

/// Three-valued truth: a predicate the host does not know is `Unknown`; `any(true, unknown)`
/// is still true and `all(false, unknown)` still false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    Unknown,
}

fn eval_cfg(expr: &CfgExpr, host: &Host) -> Truth {
    let known = |b: bool| if b { Truth::True } else { Truth::False };
    match expr {
        CfgExpr::Name(n) => {
            if host.cfg.contains(&Cfg::Name(n.clone())) {
                Truth::True
            } else if host.knows_name(n) {
                Truth::False
            } else {
                Truth::Unknown
            }
        }
        CfgExpr::KeyPair(k, v) => {
            if host.cfg.contains(&Cfg::KeyPair(k.clone(), v.clone())) {
                Truth::True
            } else if host.knows_key(k) {
                Truth::False
            } else {
                Truth::Unknown
            }
        }
        CfgExpr::Not(e) => match eval_cfg(e, host) {
            Truth::Unknown => Truth::Unknown,
            t => known(t == Truth::False),
        },
        CfgExpr::All(es) => {
            let ts: Vec<Truth> = es.iter().map(|e| eval_cfg(e, host)).collect();
            if ts.contains(&Truth::False) {
                Truth::False
            } else if ts.contains(&Truth::Unknown) {
                Truth::Unknown
            } else {
                Truth::True
            }
        }
        CfgExpr::Any(es) => {
            let ts: Vec<Truth> = es.iter().map(|e| eval_cfg(e, host)).collect();
            if ts.contains(&Truth::True) {
                Truth::True
            } else if ts.contains(&Truth::Unknown) {
                Truth::Unknown
            } else {
                Truth::False
            }
        }
    }
}

fn unknown_predicates(expr: &CfgExpr, host: &Host) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(e: &CfgExpr, host: &Host, out: &mut Vec<String>) {
        match e {
            CfgExpr::Name(n) if !host.knows_name(n) => out.push(format!("unknown `{n}`")),
            CfgExpr::KeyPair(k, v) if !host.knows_key(k) => {
                out.push(format!("unknown `{k} = \"{v}\"`"))
            }
            CfgExpr::Not(e) => walk(e, host, out),
            CfgExpr::All(es) | CfgExpr::Any(es) => es.iter().for_each(|e| walk(e, host, out)),
            _ => {}
        }
    }
    walk(expr, host, &mut out);
    out
}

/// Parses the inside of `cfg(...)`: `name`, `key = "value"`, `all(..)`, `any(..)`, `not(..)`.
fn parse_cfg(s: &str) -> Result<CfgExpr, String> {
    let tokens = tokenize(s)?;
    let mut pos = 0;
    let expr = parse_expr(&tokens, &mut pos)?;
    if pos != tokens.len() {
        return Err(format!("unexpected `{}`", tokens[pos].text()));
    }
    Ok(expr)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    Eq,
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::Ident(s) => s.clone(),
            Token::Str(s) => format!("\"{s}\""),
            Token::LParen => "(".into(),
            Token::RParen => ")".into(),
            Token::Comma => ",".into(),
            Token::Eq => "=".into(),
        }
    }
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Token::LParen),
            ')' => out.push(Token::RParen),
            ',' => out.push(Token::Comma),
            '=' => out.push(Token::Eq),
            '"' => {
                let mut v = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => v.push(c),
                        None => return Err("unterminated string".into()),
                    }
                }
                out.push(Token::Str(v));
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut v = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_alphanumeric() || n == '_' {
                        v.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Ident(v));
            }
            c => return Err(format!("unexpected character `{c}`")),
        }
    }
    Ok(out)
}

fn parse_expr(tokens: &[Token], pos: &mut usize) -> Result<CfgExpr, String> {
    let Some(Token::Ident(name)) = tokens.get(*pos) else {
        return Err(match tokens.get(*pos) {
            Some(t) => format!("expected a cfg name, found `{}`", t.text()),
            None => "expected a cfg name".into(),
        });
    };
    *pos += 1;
    match tokens.get(*pos) {
        Some(Token::LParen) if matches!(name.as_str(), "all" | "any" | "not") => {
            *pos += 1;
            let mut args = Vec::new();
            loop {
                if tokens.get(*pos) == Some(&Token::RParen) {
                    *pos += 1;
                    break;
                }
                args.push(parse_expr(tokens, pos)?);
                match tokens.get(*pos) {
                    Some(Token::Comma) => *pos += 1,
                    Some(Token::RParen) => {
                        *pos += 1;
                        break;
                    }
                    Some(t) => return Err(format!("expected `,` or `)`, found `{}`", t.text())),
                    None => return Err("missing `)`".into()),
                }
            }
            match name.as_str() {
                "all" => Ok(CfgExpr::All(args)),
                "any" => Ok(CfgExpr::Any(args)),
                _ => {
                    let mut args = args.into_iter();
                    match (args.next(), args.next()) {
                        (Some(e), None) => Ok(CfgExpr::Not(Box::new(e))),
                        _ => Err("not() takes exactly one predicate".into()),
                    }
                }
            }
        }
        Some(Token::Eq) => {
            *pos += 1;
            match tokens.get(*pos) {
                Some(Token::Str(v)) => {
                    *pos += 1;
                    Ok(CfgExpr::KeyPair(name.clone(), v.clone()))
                }
                _ => Err(format!("expected a string after `{name} =`")),
            }
        }
        _ => Ok(CfgExpr::Name(name.clone())),
    }
}

/// The environment a build runs with: what to set and what to unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergedEnv {
    /// In the order the backend's edits first named them: `Some(value)` sets the variable,
    /// `None` removes it from the build's environment.
    pub vars: Vec<(String, Option<String>)>,
    /// Conflicts and replacements the user should know about.
    pub warnings: Vec<String>,
    /// What was changed on the user's behalf and why.
    pub notes: Vec<String>,
    /// The user's own rustflags, when an edit touched them.
    pub user_rustflags: Option<UserFlags>,
}

impl MergedEnv {
    /// What the build gets for `name`: `Some(Some(v))` set, `Some(None)` unset, `None` untouched.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    /// Sets and removes the variables on `cmd`.
    pub fn apply(&self, cmd: &mut Command) {
        for (name, value) in &self.vars {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
    }
}

/// Options of rustc that take their value as the next argument.
const RUSTC_VALUE_OPTIONS: &[&str] = &[
    "-C",
    "--codegen",
    "-Z",
    "--cfg",
    "--check-cfg",
    "-L",
    "-l",
    "-A",
    "--allow",
    "-W",
    "--warn",
    "-D",
    "--deny",
    "-F",
    "--forbid",
    "--force-warn",
    "--cap-lints",
    "--edition",
    "--target",
    "--crate-type",
    "--crate-name",
    "--emit",
    "--print",
    "-o",
    "--out-dir",
    "--extern",
    "--sysroot",
    "--error-format",
    "--json",
    "--color",
    "--remap-path-prefix",
    "--explain",
    "--env-set",
];

/// Options of C compilers, linkers and friends that take their value as the next argument.
const GENERIC_VALUE_OPTIONS: &[&str] = &[
    "-mllvm",
    "-Xclang",
    "-Xlinker",
    "-Xassembler",
    "-Xpreprocessor",
    "-include",
    "-imacros",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-I",
    "-D",
    "-U",
    "-L",
    "-l",
    "-o",
    "-x",
    "-arch",
    "-target",
    "-MF",
    "-MT",
    "-MQ",
    "-z",
    "-T",
    "-u",
    "-e",
];

/// Flags that decide profile use or symbol names: two different ones of a kind conflict.
const RUSTC_CONFLICTING: &[&str] = &[
    "-C symbol-mangling-version",
    "-C profile-use",
    "-C profile-generate",
    "-Z profile-sample-use",
    "-Z symbol-mangling-version",
];
const GENERIC_CONFLICTING: &[&str] = &[
    "-fprofile-use",
    "-fprofile-sample-use",
    "-fprofile-instr-use",
    "-fprofile-generate",
    "-fprofile-instr-generate",
    "-fauto-profile",
    "-fcs-profile-generate",
    "-pgo",
];

/// Splits flags into units (an option and its separate value stay together).
fn units(flags: &[String], value_options: &[&str]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < flags.len() {
        if value_options.contains(&flags[i].as_str()) && i + 1 < flags.len() {
            out.push(vec![flags[i].clone(), flags[i + 1].clone()]);
            i += 2;
        } else {
            out.push(vec![flags[i].clone()]);
            i += 1;
        }
    }
    out
}

/// A rustc flag unit in one spelling: `-Cx`, `-C x`, `--codegen x`, `--codegen=x` all become
/// `-C x` (likewise `-Z`, `--cfg`, `--check-cfg`).
fn rustc_key(unit: &[String]) -> String {
    let first = unit.first().map(String::as_str).unwrap_or("");
    let second = unit.get(1).map(String::as_str);
    let long = [
        ("--codegen", "-C"),
        ("-C", "-C"),
        ("-Z", "-Z"),
        ("--cfg", "--cfg"),
        ("--check-cfg", "--check-cfg"),
    ];
    for (spelling, canon) in long {
        if first == spelling {
            if let Some(v) = second {
                return format!("{canon} {v}");
            }
        } else if let Some(v) = first
            .strip_prefix(spelling)
            .map(|v| v.strip_prefix('=').unwrap_or(v))
            .filter(|v| {
                !v.is_empty() && (spelling.len() == 2 || first.as_bytes()[spelling.len()] == b'=')
            })
        {
            return format!("{canon} {v}");
        }
    }
    unit.join(" ")
}

/// The conflict family of a normalized unit (`-C profile-use`), if it belongs to one.
fn conflict_family<'a>(key: &str, families: &[&'a str]) -> Option<&'a str> {
    let name = key.split('=').next().unwrap_or(key);
    families.iter().copied().find(|f| *f == name)
}

/// Appends the units of `added` not already in `existing` (compared by `key`); returns the
/// merged flags and warnings about conflicting flags of `existing`.
fn merge_units(
    existing: &[String],
    added: &[String],
    value_options: &[&str],
    key: fn(&[String]) -> String,
    families: &[&str],
    var: &str,
    existing_from: &str,
) -> (Vec<String>, Vec<String>) {
    let existing_units = units(existing, value_options);
    let added_units = units(added, value_options);
    let mut seen: BTreeSet<String> = existing_units.iter().map(|u| key(u)).collect();
    let added_keys: BTreeSet<String> = added_units.iter().map(|u| key(u)).collect();
    let mut warnings = Vec::new();
    for u in &existing_units {
        let k = key(u);
        if let Some(family) = conflict_family(&k, families)
            && !added_keys.contains(&k)
        {
            let ours: Vec<&String> = added_keys
                .iter()
                .filter(|a| conflict_family(a, families).is_some())
                .collect();
            warnings.push(format!(
                "{var}: your `{}` (from {existing_from}) {} pgo's flags{}",
                u.join(" "),
                if ours.is_empty() {
                    format!("sets {family} outside of")
                } else {
                    "conflicts with".to_string()
                },
                if ours.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        ours.iter()
                            .map(|s| format!("`{s}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ));
        }
    }
    let mut merged = existing.to_vec();
    for u in added_units {
        if seen.insert(key(&u)) {
            merged.extend(u);
        }
    }
    (merged, warnings)
}

fn generic_key(unit: &[String]) -> String {
    unit.join(" ")
}

/// What a backend's edits do to one variable.
#[derive(Debug, Clone)]
struct VarPlan {
    /// The backend replaced the user's value with this.
    set: Option<String>,
    appended: Vec<String>,
}

fn is_rustflags(name: &str) -> bool {
    name == "RUSTFLAGS" || name == "CARGO_ENCODED_RUSTFLAGS"
}

/// The environment for a build in `workdir` with the backend's `edits` applied:
///
/// - `AppendFlags` on `RUSTFLAGS` (or `CARGO_ENCODED_RUSTFLAGS`) sets `CARGO_ENCODED_RUSTFLAGS`
///   to the user's flags ([`user_rustflags`]) followed by the added ones, and unsets
///   `RUSTFLAGS`, so config rustflags are kept and flags with spaces survive;
/// - `AppendFlags` on anything else appends to the variable's value in `env`, space-separated;
/// - `Set` sets the value, with a warning when the user had a different one.
///
/// Added flags the user already has (in any spelling of `-C`/`-Z`/`--cfg`) are not repeated;
/// the user's own profile or symbol-mangling flags that differ from the backend's are reported
/// as conflicts in [`MergedEnv::warnings`].
///
/// `CargoDebugAtLeast` sets `CARGO_PROFILE_<NAME>_DEBUG` for `cargo`'s profile when the
/// profile resolves to less debug info (see [`crate::cargo_profile`]).
pub fn merged_env(
    edits: &[EnvEdit],
    workdir: &Path,
    env: &impl Fn(&str) -> Option<String>,
    host: &Host,
    cargo: &CargoBuild,
) -> Result<MergedEnv, String> {
    // Both rustflags variables are one logical variable, keyed "RUSTFLAGS".
    let mut plans: Vec<(String, VarPlan)> = Vec::new();
    let mut out = MergedEnv::default();
    for edit in edits {
        if let EnvEdit::CargoDebugAtLeast { level } = edit {
            cargo_debug_at_least(level, workdir, env, cargo, &mut out)?;
            continue;
        }
        let name = if is_rustflags(edit.name()) {
            "RUSTFLAGS"
        } else {
            edit.name()
        };
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(format!("invalid environment variable name {name:?}"));
        }
        let idx = match plans.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                plans.push((
                    name.to_string(),
                    VarPlan {
                        set: None,
                        appended: Vec::new(),
                    },
                ));
                plans.len() - 1
            }
        };
        let plan = &mut plans[idx].1;
        match edit {
            EnvEdit::Set { value, .. } => {
                plan.set = Some(value.clone());
                plan.appended.clear();
            }
            EnvEdit::CargoDebugAtLeast { .. } => {}
            EnvEdit::AppendFlags { flags, .. } => {
                for f in flags {
                    if f.is_empty() {
                        out.warnings.push(format!(
                            "{name}: an empty flag from the backend was dropped"
                        ));
                    } else {
                        plan.appended.push(f.clone());
                    }
                }
            }
        }
    }

    for (name, plan) in plans {
        if name == "RUSTFLAGS" {
            rust_vars(&plan, workdir, env, host, &mut out)?;
        } else {
            generic_var(&name, &plan, env, &mut out)?;
        }
    }
    Ok(out)
}

/// Raises the debug level of `cargo`'s profile to `level` when it resolves lower.
fn cargo_debug_at_least(
    level: &str,
    workdir: &Path,
    env: &impl Fn(&str) -> Option<String>,
    cargo: &CargoBuild,
    out: &mut MergedEnv,
) -> Result<(), String> {
    let wanted = DebugLevel::from_name(level)
        .ok_or_else(|| format!("the backend asks for an unknown debug level {level:?}"))?;
    let settings = ProfileSettings::load(workdir, cargo, env)?;
    let (current, origin) = settings.debug(env);
    let profile = &cargo.profile;
    if let Some(strip) = settings.get("strip", env) {
        let strips_debug = match &strip.value {
            toml::Value::Boolean(b) => *b,
            toml::Value::String(s) => s == "debuginfo" || s == "symbols",
            _ => false,
        };
        if strips_debug {
            // The binary pgo builds is the one profiled next: stripped, its profile would
            // have no lines and no inline frames (with `symbols`, not even function names).
            let var = profile_var(profile, "strip");
            out.vars.push((var.clone(), Some("none".to_string())));
            out.notes.push(format!(
                "{var}=none: Cargo profile `{profile}` strips debug info (strip = {}, {}); pgo \
                 needs the symbols and debug info of the binaries it profiles and builds (strip \
                 a copy for shipping: `objcopy --strip-debug`)",
                strip.value, strip.origin
            ));
        }
    }
    if current.is_some_and(|c| c >= wanted) {
        return Ok(());
    }
    let var = profile_var(profile, "debug");
    out.vars
        .push((var.clone(), Some(wanted.name().to_string())));
    out.notes.push(format!(
        "{var}={}: Cargo profile `{profile}`{} has debug = {} ({origin}); pgo needs line \
         tables and linkage names in the binaries it profiles and builds (debug info does not \
         change the generated code)",
        wanted.name(),
        if cargo.from_command {
            ""
        } else {
            " (assumed: the build command is not cargo)"
        },
        current.map_or("an unknown value", DebugLevel::name),
    ));
    Ok(())
}

fn rust_vars(
    plan: &VarPlan,
    workdir: &Path,
    env: &impl Fn(&str) -> Option<String>,
    host: &Host,
    out: &mut MergedEnv,
) -> Result<(), String> {
    let user = user_rustflags(workdir, env, host)?;
    out.warnings.extend(user.warnings.iter().cloned());
    let (base, base_from) = match &plan.set {
        Some(value) => {
            let ours: Vec<String> = value
                .split(' ')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if !user.flags.is_empty() && user.flags != ours {
                out.warnings.push(format!(
                    "RUSTFLAGS: the backend replaces your rustflags `{}` (from {}) with `{value}`",
                    user.flags.join(" "),
                    user.describe()
                ));
            }
            (ours, "the backend".to_string())
        }
        None => (user.flags.clone(), user.describe()),
    };
    let (flags, warnings) = merge_units(
        &base,
        &plan.appended,
        RUSTC_VALUE_OPTIONS,
        rustc_key,
        RUSTC_CONFLICTING,
        "RUSTFLAGS",
        &base_from,
    );
    out.warnings.extend(warnings);
    if let Some(bad) = flags.iter().find(|f| f.contains('\x1f')) {
        return Err(format!(
            "rustflag {bad:?} contains the 0x1f separator of CARGO_ENCODED_RUSTFLAGS"
        ));
    }
    out.vars.push((
        "CARGO_ENCODED_RUSTFLAGS".to_string(),
        Some(flags.join("\x1f")),
    ));
    out.vars.push(("RUSTFLAGS".to_string(), None));
    out.user_rustflags = Some(user);
    Ok(())
}

fn generic_var(
    name: &str,
    plan: &VarPlan,
    env: &impl Fn(&str) -> Option<String>,
    out: &mut MergedEnv,
) -> Result<(), String> {
    let user = env(name);
    let split = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_string).collect() };
    let (base, base_from) = match &plan.set {
        Some(value) => {
            if let Some(u) = user.as_deref().filter(|u| *u != value) {
                out.warnings.push(format!(
                    "{name}: the backend replaces your value `{u}` with `{value}`"
                ));
            }
            if plan.appended.is_empty() {
                out.vars.push((name.to_string(), Some(value.clone())));
                return Ok(());
            }
            (split(value), "the backend".to_string())
        }
        None => (
            user.as_deref().map(split).unwrap_or_default(),
            "the environment".to_string(),
        ),
    };
    for f in &plan.appended {
        if f.chars().any(char::is_whitespace) {
            out.warnings.push(format!(
                "{name}: flag `{f}` contains whitespace, which {name} cannot carry; it will be \
                 split"
            ));
        }
    }
    let (flags, warnings) = merge_units(
        &base,
        &plan.appended,
        GENERIC_VALUE_OPTIONS,
        generic_key,
        GENERIC_CONFLICTING,
        name,
        &base_from,
    );
    out.warnings.extend(warnings);
    let value = match (&plan.set, &user) {
        // Keep the user's value byte for byte and append only what is new.
        (None, Some(u)) if !u.trim().is_empty() => {
            let new = &flags[base.len().min(flags.len())..];
            if new.is_empty() {
                u.clone()
            } else {
                format!("{} {}", u.trim_end(), new.join(" "))
            }
        }
        _ => flags.join(" "),
    };
    out.vars.push((name.to_string(), Some(value)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn release() -> CargoBuild {
        crate::cargo_profile::cargo_build(&["cargo", "build", "--release"])
    }

    fn linux() -> Host {
        Host::from_triple("x86_64-unknown-linux-gnu")
    }

    /// tmp/outer/.cargo/config.toml, tmp/outer/proj/.cargo/config.toml, tmp/home/config.toml.
    struct Tree {
        _dir: tempfile::TempDir,
        proj: PathBuf,
        outer: PathBuf,
        home: PathBuf,
    }

    fn tree(proj_cfg: Option<&str>, outer_cfg: Option<&str>, home_cfg: Option<&str>) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let outer = dir.path().join("outer");
        let proj = outer.join("proj");
        let home = dir.path().join("home");
        fs::create_dir_all(proj.join(".cargo")).unwrap();
        fs::create_dir_all(outer.join(".cargo")).unwrap();
        fs::create_dir_all(&home).unwrap();
        if let Some(c) = proj_cfg {
            fs::write(proj.join(".cargo/config.toml"), c).unwrap();
        }
        if let Some(c) = outer_cfg {
            fs::write(outer.join(".cargo/config.toml"), c).unwrap();
        }
        if let Some(c) = home_cfg {
            fs::write(home.join("config.toml"), c).unwrap();
        }
        Tree {
            _dir: dir,
            proj,
            outer,
            home,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn build_rustflags_arrays_join_home_first_deepest_last() {
        let t = tree(
            Some("[build]\nrustflags = [\"--cfg\", \"deep\"]\n"),
            Some("[build]\nrustflags = [\"--cfg\", \"outer\"]\n"),
            Some("[build]\nrustflags = [\"--cfg\", \"home\"]\n"),
        );
        let home = t.home.to_str().unwrap().to_string();
        let u = user_rustflags(&t.proj, &env_of(&[("CARGO_HOME", &home)]), &linux()).unwrap();
        assert_eq!(
            u.flags,
            s(&["--cfg", "home", "--cfg", "outer", "--cfg", "deep"])
        );
        assert_eq!(u.source, FlagSource::Build);
        assert_eq!(u.origins.len(), 3);
        assert!(u.origins[0].ends_with("home/config.toml build.rustflags"));
        assert!(u.origins[2].ends_with("proj/.cargo/config.toml build.rustflags"));

        // CARGO_BUILD_RUSTFLAGS is appended (split at any whitespace).
        let u = user_rustflags(
            &t.proj,
            &env_of(&[
                ("CARGO_HOME", &home),
                ("CARGO_BUILD_RUSTFLAGS", "--cfg\tenvb"),
            ]),
            &linux(),
        )
        .unwrap();
        assert_eq!(u.flags[6..], s(&["--cfg", "envb"]));
        assert_eq!(u.origins.last().unwrap(), "CARGO_BUILD_RUSTFLAGS");
    }

    #[test]
    fn strings_are_not_merged_the_deepest_wins_and_mixing_is_an_error() {
        let t = tree(
            Some("[build]\nrustflags = \"--cfg deep  -Copt-level=2\"\n"),
            Some("[build]\nrustflags = \"--cfg outer\"\n"),
            None,
        );
        let home = t.home.to_str().unwrap().to_string();
        let u = user_rustflags(&t.proj, &env_of(&[("CARGO_HOME", &home)]), &linux()).unwrap();
        assert_eq!(u.flags, s(&["--cfg", "deep", "-Copt-level=2"]));

        let t = tree(
            Some("[build]\nrustflags = \"--cfg deep\"\n"),
            None,
            Some("[build]\nrustflags = [\"--cfg\", \"home\"]\n"),
        );
        let home = t.home.to_str().unwrap().to_string();
        let err = user_rustflags(&t.proj, &env_of(&[("CARGO_HOME", &home)]), &linux()).unwrap_err();
        assert!(err.contains("refuses to merge"), "{err}");
    }

    #[test]
    fn env_vars_take_precedence_in_cargo_order() {
        let t = tree(
            Some("[build]\nrustflags = [\"--cfg\", \"deep\"]\n"),
            None,
            None,
        );
        let home = t.home.to_str().unwrap().to_string();
        let u = user_rustflags(
            &t.proj,
            &env_of(&[("CARGO_HOME", &home), ("RUSTFLAGS", " -Ca=1  --cfg\tx ")]),
            &linux(),
        )
        .unwrap();
        assert_eq!(u.source, FlagSource::Env);
        // Split at spaces only, as cargo does.
        assert_eq!(u.flags, s(&["-Ca=1", "--cfg\tx"]));

        let u = user_rustflags(
            &t.proj,
            &env_of(&[
                ("CARGO_HOME", &home),
                ("RUSTFLAGS", "-Cignored"),
                ("CARGO_ENCODED_RUSTFLAGS", "--cfg\x1ffeature=\"a b\""),
            ]),
            &linux(),
        )
        .unwrap();
        assert_eq!(u.source, FlagSource::EncodedEnv);
        assert_eq!(u.flags, s(&["--cfg", "feature=\"a b\""]));

        // An empty RUSTFLAGS still wins over the config: no flags at all.
        let u = user_rustflags(
            &t.proj,
            &env_of(&[("CARGO_HOME", &home), ("RUSTFLAGS", "")]),
            &linux(),
        )
        .unwrap();
        assert_eq!((u.flags.len(), u.source), (0, FlagSource::Env));
        let u = user_rustflags(
            &t.proj,
            &env_of(&[("CARGO_HOME", &home), ("CARGO_ENCODED_RUSTFLAGS", "")]),
            &linux(),
        )
        .unwrap();
        assert_eq!((u.flags.len(), u.source), (0, FlagSource::EncodedEnv));
    }

    #[test]
    fn target_flags_replace_build_flags_and_cfg_keys_join_sorted() {
        let t = tree(
            Some(concat!(
                "[build]\nrustflags = [\"--cfg\", \"build\"]\n",
                "[target.'cfg(unix)']\nrustflags = [\"--cfg\", \"unix_deep\"]\n",
                "[target.'cfg(windows)']\nrustflags = [\"--cfg\", \"win\"]\n",
            )),
            Some(concat!(
                "[target.'cfg(target_os = \"linux\")']\nrustflags = [\"--cfg\", \"linux\"]\n",
                "[target.x86_64-unknown-linux-gnu]\nrustflags = \"--cfg triple\"\n",
            )),
            Some(
                "[target.'cfg(all(target_arch = \"x86_64\", not(target_env = \"msvc\")))']\n\
                 rustflags = [\"--cfg\", \"home_all\"]\n",
            ),
        );
        let home = t.home.to_str().unwrap().to_string();
        let u = user_rustflags(&t.proj, &env_of(&[("CARGO_HOME", &home)]), &linux()).unwrap();
        assert_eq!(u.source, FlagSource::Target);
        // target.<triple> first, then cfg keys in sorted key order.
        assert_eq!(
            u.flags,
            s(&[
                "--cfg",
                "triple",
                "--cfg",
                "home_all",
                "--cfg",
                "linux",
                "--cfg",
                "unix_deep"
            ])
        );
        assert!(u.warnings.is_empty(), "{:?}", u.warnings);

        let u = user_rustflags(
            &t.proj,
            &env_of(&[
                ("CARGO_HOME", &home),
                (
                    "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                    "--cfg envt",
                ),
            ]),
            &linux(),
        )
        .unwrap();
        assert_eq!(u.flags[..4], s(&["--cfg", "triple", "--cfg", "envt"]));

        // Another host: only the windows entry applies.
        let u = user_rustflags(
            &t.proj,
            &env_of(&[("CARGO_HOME", &home)]),
            &Host::from_triple("x86_64-pc-windows-msvc"),
        )
        .unwrap();
        assert_eq!(u.flags, s(&["--cfg", "win"]));
    }

    #[test]
    fn empty_target_flags_fall_through_to_build() {
        let t = tree(
            Some(
                "[build]\nrustflags = [\"--cfg\", \"build\"]\n[target.x86_64-unknown-linux-gnu]\nrustflags = []\n",
            ),
            None,
            None,
        );
        let home = t.home.to_str().unwrap().to_string();
        let u = user_rustflags(&t.proj, &env_of(&[("CARGO_HOME", &home)]), &linux()).unwrap();
        assert_eq!(
            (u.flags, u.source),
            (s(&["--cfg", "build"]), FlagSource::Build)
        );
    }

    #[test]
    fn unknown_predicates_do_not_match_and_warn() {
        let t = tree(
            Some(concat!(
                "[target.'cfg(target_feature = \"avx2\")']\nrustflags = [\"--cfg\", \"avx\"]\n",
                "[target.'cfg(any(unix, target_feature = \"avx2\"))']\nrustflags = [\"--cfg\", \"any\"]\n",
                "[target.'cfg(all(unix, target_has_atomic = \"64\"))']\nrustflags = [\"--cfg\", \"all\"]\n",
                "[target.'cfg(feature = \"x\")']\nrustflags = [\"--cfg\", \"feat\"]\n",
                "[target.'cfg(unix,)']\nrustflags = [\"--cfg\", \"bad\"]\n",
            )),
            None,
            None,
        );
        let home = t.home.to_str().unwrap().to_string();
        let u = user_rustflags(&t.proj, &env_of(&[("CARGO_HOME", &home)]), &linux()).unwrap();
        assert_eq!(u.flags, s(&["--cfg", "any"]));
        assert_eq!(u.warnings.len(), 3, "{:?}", u.warnings);
        assert!(u.warnings.iter().any(|w| w.contains("target_has_atomic")));
        assert!(u.warnings.iter().any(|w| w.contains("avx2")));
        assert!(u.warnings.iter().any(|w| w.contains("not a valid cfg")));

        // With rustc's full cfg list nothing is unknown.
        let full = Host::from_print_cfg(
            "x86_64-unknown-linux-gnu",
            "unix\ntarget_os=\"linux\"\ntarget_feature=\"sse2\"\ntarget_has_atomic=\"64\"\n",
        );
        let u = user_rustflags(&t.proj, &env_of(&[("CARGO_HOME", &home)]), &full).unwrap();
        assert_eq!(u.flags, s(&["--cfg", "all", "--cfg", "any"]));
        assert_eq!(u.warnings.len(), 1, "{:?}", u.warnings);
    }

    #[test]
    fn legacy_config_wins_over_config_toml_and_home_is_read_once() {
        let t = tree(
            Some("[build]\nrustflags = [\"--cfg\", \"toml\"]\n"),
            None,
            None,
        );
        fs::write(
            t.proj.join(".cargo/config"),
            "[build]\nrustflags = [\"--cfg\", \"legacy\"]\n",
        )
        .unwrap();
        // CARGO_HOME is one of the ancestors' .cargo: read once.
        fs::write(
            t.outer.join(".cargo/config.toml"),
            "[build]\nrustflags = [\"--cfg\", \"outer\"]\n",
        )
        .unwrap();
        let home = t.outer.join(".cargo");
        let u = user_rustflags(
            &t.proj,
            &env_of(&[("CARGO_HOME", home.to_str().unwrap())]),
            &linux(),
        )
        .unwrap();
        assert_eq!(u.flags, s(&["--cfg", "outer", "--cfg", "legacy"]));
        assert!(u.warnings[0].contains("both"), "{:?}", u.warnings);
    }

    #[test]
    fn home_defaults_to_dot_cargo_in_home() {
        let t = tree(None, None, None);
        let home_dir = t.home.parent().unwrap().join("user");
        fs::create_dir_all(home_dir.join(".cargo")).unwrap();
        fs::write(
            home_dir.join(".cargo/config.toml"),
            "build.rustflags = [\"-Ctarget-cpu=native\"]\n",
        )
        .unwrap();
        let u = user_rustflags(
            &t.proj,
            &env_of(&[("HOME", home_dir.to_str().unwrap())]),
            &linux(),
        )
        .unwrap();
        assert_eq!(u.flags, s(&["-Ctarget-cpu=native"]));
    }

    #[test]
    fn bad_configs_are_errors_not_panics() {
        for cfg in [
            "[build\n",
            "build.rustflags = 3\n",
            "build.rustflags = [1]\n",
            "build = 3\n",
        ] {
            let t = tree(Some(cfg), None, None);
            let home = t.home.to_str().unwrap().to_string();
            let r = user_rustflags(&t.proj, &env_of(&[("CARGO_HOME", &home)]), &linux());
            if cfg == "build = 3\n" {
                assert_eq!(r.unwrap().flags, Vec::<String>::new());
            } else {
                assert!(r.is_err(), "{cfg}");
            }
        }
    }

    #[test]
    fn build_target_selects_the_triple() {
        let t = tree(
            Some(concat!(
                "[build]\ntarget = \"aarch64-unknown-linux-musl\"\n",
                "[target.'cfg(target_arch = \"aarch64\")']\nrustflags = [\"--cfg\", \"arm\"]\n",
                "[target.'cfg(target_arch = \"x86_64\")']\nrustflags = [\"--cfg\", \"x86\"]\n",
            )),
            None,
            None,
        );
        let home = t.home.to_str().unwrap().to_string();
        let u = user_rustflags(&t.proj, &env_of(&[("CARGO_HOME", &home)]), &linux()).unwrap();
        assert_eq!(u.flags, s(&["--cfg", "arm"]));
        assert!(u.warnings[0].contains("build.target"));
    }

    #[test]
    fn triples_and_cfg_expressions() {
        let h = Host::from_triple("aarch64-apple-darwin");
        assert!(
            h.cfg
                .contains(&Cfg::KeyPair("target_os".into(), "macos".into()))
        );
        assert!(h.cfg.contains(&Cfg::Name("unix".into())));
        let h = Host::from_triple("armv7-unknown-linux-gnueabihf");
        assert!(
            h.cfg
                .contains(&Cfg::KeyPair("target_env".into(), "gnu".into()))
        );
        assert!(
            h.cfg
                .contains(&Cfg::KeyPair("target_abi".into(), "eabihf".into()))
        );
        assert!(
            h.cfg
                .contains(&Cfg::KeyPair("target_arch".into(), "arm".into()))
        );
        let h = Host::from_triple("wasm32-unknown-unknown");
        assert!(
            h.cfg
                .contains(&Cfg::KeyPair("target_family".into(), "wasm".into()))
        );
        for weird in ["", "-", "x", "---", "é-ü"] {
            let _ = Host::from_triple(weird);
        }
        let linux = linux();
        let t = |e: &str| eval_cfg(&parse_cfg(e).unwrap(), &linux);
        assert_eq!(t("unix"), Truth::True);
        assert_eq!(t("windows"), Truth::False);
        assert_eq!(t("target_family = \"unix\""), Truth::True);
        assert_eq!(
            t("all(unix, target_env=\"gnu\", target_pointer_width = \"64\")"),
            Truth::True
        );
        assert_eq!(t("any(windows, target_os = \"macos\")"), Truth::False);
        assert_eq!(t("not(any())"), Truth::True);
        assert_eq!(t("all()"), Truth::True);
        assert_eq!(t("not(foo)"), Truth::Unknown);
        assert_eq!(t("all(windows, foo)"), Truth::False);
        for bad in [
            "",
            "(",
            "all(",
            "a =",
            "not(a, b)",
            "a = b",
            "\"x",
            "all(a b)",
            "a)",
        ] {
            assert!(parse_cfg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merged_env_keeps_config_flags_and_encodes() {
        let t = tree(
            Some("[build]\nrustflags = [\"--cfg\", \"from_config\", \"-Copt-level=3\"]\n"),
            None,
            None,
        );
        let home = t.home.to_str().unwrap().to_string();
        let edits = vec![
            EnvEdit::AppendFlags {
                name: "RUSTFLAGS".into(),
                flags: s(&[
                    "--cfg",
                    "from_pgo",
                    "-C",
                    "opt-level=3",
                    "--cfg",
                    "from_config",
                    "-Cllvm-args=-foo bar",
                ]),
            },
            EnvEdit::AppendFlags {
                name: "CFLAGS".into(),
                flags: s(&["-fprofile-sample-use=/p.prof", "-O2"]),
            },
            EnvEdit::Set {
                name: "GOFLAGS".into(),
                value: "-pgo=/x.pprof".into(),
            },
        ];
        let env = env_of(&[
            ("CARGO_HOME", &home),
            ("CFLAGS", "-O2  -g"),
            ("GOFLAGS", "-mod=vendor"),
        ]);
        let m = merged_env(&edits, &t.proj, &env, &linux(), &release()).unwrap();
        assert_eq!(
            m.get("CARGO_ENCODED_RUSTFLAGS"),
            Some(Some(
                "--cfg\x1ffrom_config\x1f-Copt-level=3\x1f--cfg\x1ffrom_pgo\x1f-Cllvm-args=-foo bar"
            ))
        );
        assert_eq!(m.get("RUSTFLAGS"), Some(None));
        assert_eq!(
            m.get("CFLAGS"),
            Some(Some("-O2  -g -fprofile-sample-use=/p.prof"))
        );
        assert_eq!(m.get("GOFLAGS"), Some(Some("-pgo=/x.pprof")));
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        assert!(m.warnings[0].contains("GOFLAGS"));
        assert_eq!(m.user_rustflags.unwrap().source, FlagSource::Build);
        assert_eq!(m.vars.len(), 4);
    }

    #[test]
    fn merged_env_reports_conflicts() {
        let t = tree(None, None, None);
        let home = t.home.to_str().unwrap().to_string();
        let edits = vec![EnvEdit::AppendFlags {
            name: "RUSTFLAGS".into(),
            flags: s(&[
                "-Zprofile-sample-use=/a.prof",
                "-Csymbol-mangling-version=v0",
            ]),
        }];
        let env = env_of(&[
            ("CARGO_HOME", &home),
            (
                "RUSTFLAGS",
                "-C profile-use=/old.profdata --codegen symbol-mangling-version=v0 -Ctarget-cpu=native",
            ),
        ]);
        let m = merged_env(&edits, &t.proj, &env, &linux(), &release()).unwrap();
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        assert!(m.warnings[0].contains("profile-use=/old.profdata"));
        // The identical mangling flag (other spelling) is not repeated.
        let flags: Vec<&str> = m
            .get("CARGO_ENCODED_RUSTFLAGS")
            .unwrap()
            .unwrap()
            .split('\x1f')
            .collect();
        assert_eq!(
            flags,
            [
                "-C",
                "profile-use=/old.profdata",
                "--codegen",
                "symbol-mangling-version=v0",
                "-Ctarget-cpu=native",
                "-Zprofile-sample-use=/a.prof"
            ]
        );

        let env = env_of(&[
            ("CARGO_HOME", &home),
            ("RUSTFLAGS", "-Csymbol-mangling-version=legacy"),
        ]);
        let m = merged_env(&edits, &t.proj, &env, &linux(), &release()).unwrap();
        assert!(m.warnings[0].contains("conflicts with"), "{:?}", m.warnings);
    }

    #[test]
    fn merged_env_edge_cases() {
        let t = tree(None, None, None);
        let home = t.home.to_str().unwrap().to_string();
        let env = env_of(&[("CARGO_HOME", &home)]);
        // Nothing to do.
        assert_eq!(
            merged_env(&[], &t.proj, &env, &linux(), &release()).unwrap(),
            MergedEnv::default()
        );
        // Set then append, on an unset variable; empty flags dropped.
        let edits = vec![
            EnvEdit::Set {
                name: "LDFLAGS".into(),
                value: "-Wl,-q".into(),
            },
            EnvEdit::AppendFlags {
                name: "LDFLAGS".into(),
                flags: s(&["", "-Wl,--emit-relocs", "-Wl,-q"]),
            },
            EnvEdit::AppendFlags {
                name: "CARGO_ENCODED_RUSTFLAGS".into(),
                flags: s(&["-C"]),
            },
        ];
        let m = merged_env(&edits, &t.proj, &env, &linux(), &release()).unwrap();
        assert_eq!(m.get("LDFLAGS"), Some(Some("-Wl,-q -Wl,--emit-relocs")));
        assert_eq!(m.get("CARGO_ENCODED_RUSTFLAGS"), Some(Some("-C")));
        // Invalid names and separators are errors.
        let bad = [EnvEdit::Set {
            name: "A=B".into(),
            value: String::new(),
        }];
        assert!(merged_env(&bad, &t.proj, &env, &linux(), &release()).is_err());
        let bad = [EnvEdit::AppendFlags {
            name: "RUSTFLAGS".into(),
            flags: s(&["a\x1fb"]),
        }];
        assert!(merged_env(&bad, &t.proj, &env, &linux(), &release()).is_err());
    }

    #[test]
    fn a_cargo_profile_without_enough_debug_info_gets_it_through_its_variable() {
        let t = tree(None, None, None);
        let home = t.home.display().to_string();
        let env = |k: &str| (k == "CARGO_HOME").then(|| home.clone());
        let edits = [EnvEdit::CargoDebugAtLeast {
            level: "limited".into(),
        }];
        let manifest = t.proj.join("Cargo.toml");
        let at = |args: &[&str]| {
            merged_env(
                &edits,
                &t.proj,
                &env,
                &linux(),
                &crate::cargo_profile::cargo_build(args),
            )
            .unwrap()
        };
        // Cargo's release default is no debug info: raised, and the user is told why.
        fs::write(&manifest, "[package]\nname = \"p\"\n").unwrap();
        let m = at(&["cargo", "build", "--release"]);
        assert_eq!(m.get("CARGO_PROFILE_RELEASE_DEBUG"), Some(Some("limited")));
        assert!(m.notes[0].contains("Cargo's default"), "{:?}", m.notes);
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        // dev has full debug info already; a custom profile's variable follows its name.
        assert!(at(&["cargo", "build"]).vars.is_empty());
        fs::write(
            &manifest,
            "[package]\nname = \"p\"\n[profile.dist]\ninherits = \"release\"\nstrip = true\n",
        )
        .unwrap();
        let m = at(&["cargo", "build", "--profile", "dist"]);
        assert_eq!(m.get("CARGO_PROFILE_DIST_DEBUG"), Some(Some("limited")));
        // Stripping would take the debug info away again: turned off, and said so.
        assert_eq!(m.get("CARGO_PROFILE_DIST_STRIP"), Some(Some("none")));
        assert!(
            m.notes.iter().any(|n| n.contains("strips debug info")),
            "{:?}",
            m.notes
        );
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        // strip = "debuginfo" (symbols kept) takes the lines too; strip = false is left alone.
        for (strip, turned_off) in [
            ("\"debuginfo\"", true),
            ("\"symbols\"", true),
            ("false", false),
        ] {
            fs::write(
                &manifest,
                format!("[package]\nname = \"p\"\n[profile.release]\nstrip = {strip}\n"),
            )
            .unwrap();
            let m = at(&["cargo", "build", "--release"]);
            let want = turned_off.then_some("none");
            assert_eq!(
                m.get("CARGO_PROFILE_RELEASE_STRIP").flatten(),
                want,
                "strip = {strip}"
            );
        }
        // The user's own level is never lowered.
        for debug in ["2", "true", "\"full\"", "1", "\"limited\""] {
            fs::write(
                &manifest,
                format!("[package]\nname = \"p\"\n[profile.release]\ndebug = {debug}\n"),
            )
            .unwrap();
            let m = at(&["cargo", "build", "--release"]);
            assert!(
                m.vars.is_empty() && m.notes.is_empty(),
                "debug = {debug}: {m:?}"
            );
        }
        // line-tables-only has no linkage names: raised.
        fs::write(
            &manifest,
            "[package]\nname = \"p\"\n[profile.release]\ndebug = \"line-tables-only\"\n",
        )
        .unwrap();
        let m = at(&["cargo", "build", "--release"]);
        assert_eq!(m.get("CARGO_PROFILE_RELEASE_DEBUG"), Some(Some("limited")));
        // An unreadable manifest is an error naming it.
        fs::write(&manifest, "[package\n").unwrap();
        let err = merged_env(&edits, &t.proj, &env, &linux(), &release()).unwrap_err();
        assert!(err.contains("Cargo.toml is not valid TOML"), "{err}");
    }

    #[test]
    fn rustc_keys() {
        let k = |v: &[&str]| rustc_key(&s(v));
        assert_eq!(k(&["-Copt-level=3"]), "-C opt-level=3");
        assert_eq!(k(&["-C", "opt-level=3"]), "-C opt-level=3");
        assert_eq!(k(&["--codegen", "opt-level=3"]), "-C opt-level=3");
        assert_eq!(k(&["--codegen=opt-level=3"]), "-C opt-level=3");
        assert_eq!(k(&["--cfg=x"]), "--cfg x");
        assert_eq!(k(&["--cfgx"]), "--cfgx");
        assert_eq!(k(&["-Zfoo"]), "-Z foo");
        assert_eq!(k(&["-C"]), "-C");
        assert_eq!(k(&[]), "");
    }
}
