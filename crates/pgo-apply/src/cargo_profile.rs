//! The Cargo profile a build command uses, and its settings as Cargo resolves them.
//!
//! pgo needs debug info in every build it profiles or applies a profile to (line tables and
//! linkage names), while `cargo build --release` has none by default and, since Cargo 1.77,
//! strips the symbols' debug info when `debug` is off. A rustflag (`-Cdebuginfo`) would fight
//! that default and could lower a user's `debug = "full"`; setting the profile's `debug` key
//! through `CARGO_PROFILE_<NAME>_DEBUG` only when it resolves lower does neither.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::rustflags::{ConfigFile, config_files, lookup};

/// What a build command tells about the Cargo build it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CargoBuild {
    /// The profile name (`dev`, `release`, `bench`, a custom one).
    pub profile: String,
    /// `--manifest-path`, when given.
    pub manifest_path: Option<PathBuf>,
    /// `--bin NAME`s, when given: the programs the user asked for.
    pub bins: Vec<String>,
    /// `--target-dir`, when given.
    pub target_dir: Option<PathBuf>,
    /// False when the command is not `cargo` itself (a script or make that may run it): then
    /// the profile is assumed to be `release`.
    pub from_command: bool,
}

impl CargoBuild {
    /// `cargo metadata` of this build's workspace (its `--manifest-path`, else the one of
    /// `workdir`), with the dependency graph or (`no_deps`) only the workspace's packages; `None`
    /// when cargo fails or prints no JSON.
    pub fn metadata(&self, workdir: &Path, no_deps: bool) -> Option<serde_json::Value> {
        let mut cmd = std::process::Command::new("cargo");
        cmd.current_dir(workdir)
            .arg("metadata")
            .args(no_deps.then_some("--no-deps"))
            .args(["--format-version", "1"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(manifest) = &self.manifest_path {
            cmd.arg("--manifest-path").arg(manifest);
        }
        let out = cmd.output().ok().filter(|o| o.status.success())?;
        serde_json::from_slice(&out.stdout).ok()
    }
}

/// The directories of every package a build compiles, its dependencies' included, from its
/// `cargo metadata` (with the dependency graph: [`CargoBuild::metadata`]).
pub fn package_dirs(metadata: &serde_json::Value) -> Vec<PathBuf> {
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["manifest_path"].as_str())
        .filter_map(|m| Path::new(m).parent().map(Path::to_path_buf))
        .collect()
}

/// The Cargo build of `command` (`cargo build --release`, `cargo +stable bench`, `cargo install
/// --profile dist`, ...). Anything but a cargo invocation is assumed to run `cargo build
/// --release` somewhere inside.
pub fn cargo_build(command: &[impl AsRef<OsStr>]) -> CargoBuild {
    let assumed = CargoBuild {
        profile: "release".into(),
        manifest_path: None,
        bins: Vec::new(),
        target_dir: None,
        from_command: false,
    };
    let args: Vec<&str> = command
        .iter()
        .map(|a| a.as_ref().to_str().unwrap_or(""))
        .collect();
    let Some((program, rest)) = args.split_first() else {
        return assumed;
    };
    if Path::new(program).file_name() != Some(OsStr::new("cargo")) {
        return assumed;
    }
    // Options before the subcommand that take a value.
    const GLOBAL_VALUES: &[&str] = &["--config", "-Z", "-C", "--color"];
    let mut i = 0;
    let mut subcommand = None;
    while i < rest.len() {
        let a = rest[i];
        if a.starts_with('+') {
            i += 1;
        } else if GLOBAL_VALUES.contains(&a) {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            subcommand = Some(a);
            i += 1;
            break;
        }
    }
    let mut profile = match subcommand {
        Some("test" | "t") => "test",
        Some("bench") => "bench",
        Some("install") => "release",
        _ => "dev",
    }
    .to_string();
    let mut manifest_path = None;
    let mut bins = Vec::new();
    let mut target_dir = None;
    while i < rest.len() {
        let a = rest[i];
        let value = |name: &str| -> Option<(String, usize)> {
            if a == name {
                rest.get(i + 1).map(|v| (v.to_string(), 2))
            } else {
                a.strip_prefix(name)
                    .and_then(|v| v.strip_prefix('='))
                    .map(|v| (v.to_string(), 1))
            }
        };
        if a == "--" {
            break;
        } else if a == "--release" || a == "-r" {
            profile = "release".into();
            i += 1;
        } else if a == "--debug" && subcommand == Some("install") {
            profile = "dev".into();
            i += 1;
        } else if let Some((v, n)) = value("--profile") {
            profile = v;
            i += n;
        } else if let Some((v, n)) = value("--manifest-path") {
            manifest_path = Some(PathBuf::from(v));
            i += n;
        } else if let Some((v, n)) = value("--bin") {
            bins.push(v);
            i += n;
        } else if let Some((v, n)) = value("--target-dir") {
            target_dir = Some(PathBuf::from(v));
            i += n;
        } else {
            i += 1;
        }
    }
    CargoBuild {
        profile,
        manifest_path,
        bins,
        target_dir,
        from_command: true,
    }
}

/// How much debug info a profile asks for, in Cargo's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DebugLevel {
    None,
    LineDirectivesOnly,
    LineTablesOnly,
    Limited,
    Full,
}

impl DebugLevel {
    /// A `debug` value as Cargo accepts it: a bool, 0/1/2 or a name.
    pub fn parse(value: &toml::Value) -> Option<DebugLevel> {
        Some(match value {
            toml::Value::Boolean(true) => DebugLevel::Full,
            toml::Value::Boolean(false) => DebugLevel::None,
            toml::Value::Integer(0) => DebugLevel::None,
            toml::Value::Integer(1) => DebugLevel::Limited,
            toml::Value::Integer(2) => DebugLevel::Full,
            toml::Value::String(s) => return DebugLevel::from_name(s),
            _ => return None,
        })
    }

    /// A name or number as written in an environment variable or a backend's request.
    pub fn from_name(s: &str) -> Option<DebugLevel> {
        Some(match s.trim() {
            "0" | "none" | "false" => DebugLevel::None,
            "line-directives-only" => DebugLevel::LineDirectivesOnly,
            "line-tables-only" => DebugLevel::LineTablesOnly,
            "1" | "limited" => DebugLevel::Limited,
            "2" | "full" | "true" => DebugLevel::Full,
            _ => return None,
        })
    }

    /// Cargo's name for the level.
    pub fn name(self) -> &'static str {
        match self {
            DebugLevel::None => "none",
            DebugLevel::LineDirectivesOnly => "line-directives-only",
            DebugLevel::LineTablesOnly => "line-tables-only",
            DebugLevel::Limited => "limited",
            DebugLevel::Full => "full",
        }
    }
}

/// A resolved profile setting and where it came from (`Cargo.toml`, a config file, an
/// environment variable, or Cargo's default).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub value: toml::Value,
    pub origin: String,
}

/// The profile settings Cargo would use for `build` run in `workdir`: environment variables
/// (`CARGO_PROFILE_<NAME>_<KEY>`), then `.cargo/config.toml` files, then the workspace root's
/// `Cargo.toml`, following `inherits` (custom profiles; `test` inherits `dev`, `bench`
/// `release`). Per-package overrides (`[profile.*.package.*]`) are not read.
pub struct ProfileSettings {
    configs: Vec<ConfigFile>,
    manifest: Option<(PathBuf, toml::Table)>,
    profile: String,
}

impl ProfileSettings {
    pub fn load(
        workdir: &Path,
        build: &CargoBuild,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<ProfileSettings, String> {
        let mut warnings = Vec::new();
        let configs = config_files(workdir, env, &mut warnings)?;
        let manifest = match &build.manifest_path {
            Some(p) => Some(workdir.join(p)),
            None => nearest_manifest(workdir),
        };
        let manifest = match manifest {
            Some(path) => {
                let root = workspace_root(&path)?;
                let table = read_manifest(&root)?;
                Some((root, table))
            }
            None => None,
        };
        Ok(ProfileSettings {
            configs,
            manifest,
            profile: build.profile.clone(),
        })
    }

    /// The workspace manifest whose `[profile]` tables apply, if any.
    pub fn manifest(&self) -> Option<&Path> {
        self.manifest.as_ref().map(|(p, _)| p.as_path())
    }

    /// The build's profile and the profiles it inherits from, nearest first: each one's
    /// `inherits`, else Cargo's built-in parent (`test` and `doc` inherit `dev`, `bench`
    /// `release`). The chain ends at dev or release; the bound only guards against cycles.
    fn chain(&self, env: &impl Fn(&str) -> Option<String>) -> Vec<String> {
        let mut chain = vec![self.profile.clone()];
        while chain.len() < 16 {
            let profile = &chain[chain.len() - 1];
            let parent = match self.own(profile, "inherits", env) {
                Some(Setting {
                    value: toml::Value::String(parent),
                    ..
                }) => parent,
                _ => match profile.as_str() {
                    "test" | "doc" => "dev".into(),
                    "bench" => "release".into(),
                    _ => break,
                },
            };
            chain.push(parent);
        }
        chain
    }

    /// `key` of the build's profile as Cargo resolves it; `None` when nothing sets it (Cargo's
    /// built-in default applies).
    pub fn get(&self, key: &str, env: &impl Fn(&str) -> Option<String>) -> Option<Setting> {
        self.chain(env)
            .iter()
            .find_map(|profile| self.own(profile, key, env))
    }

    /// The `debug` level of the build's profile and where it is set (Cargo's defaults: `full`
    /// for dev, `none` for release).
    pub fn debug(&self, env: &impl Fn(&str) -> Option<String>) -> (Option<DebugLevel>, String) {
        if let Some(s) = self.get("debug", env) {
            return (DebugLevel::parse(&s.value), s.origin);
        }
        let dev = self.chain(env).last().is_some_and(|base| base == "dev");
        (
            Some(if dev {
                DebugLevel::Full
            } else {
                DebugLevel::None
            }),
            format!("Cargo's default for profile `{}`", self.profile),
        )
    }

    /// `key` set on `profile` itself, not inherited.
    fn own(
        &self,
        profile: &str,
        key: &str,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Option<Setting> {
        let var = profile_var(profile, key);
        if let Some(v) = env(&var) {
            let value = match v.as_str() {
                "true" => toml::Value::Boolean(true),
                "false" => toml::Value::Boolean(false),
                _ => v
                    .parse::<i64>()
                    .map(toml::Value::Integer)
                    .unwrap_or(toml::Value::String(v)),
            };
            return Some(Setting { value, origin: var });
        }
        // Config files come deepest (highest precedence) first.
        for file in &self.configs {
            if let Some(v) = lookup(&file.table, &["profile", profile, key]) {
                return Some(Setting {
                    value: v.clone(),
                    origin: format!("{} profile.{profile}.{key}", file.path.display()),
                });
            }
        }
        let (path, table) = self.manifest.as_ref()?;
        let v = lookup(table, &["profile", profile, key])?;
        Some(Setting {
            value: v.clone(),
            origin: format!("{} [profile.{profile}] {key}", path.display()),
        })
    }
}

/// The environment variable that sets `key` of Cargo profile `profile`.
pub fn profile_var(profile: &str, key: &str) -> String {
    let up = |s: &str| s.to_ascii_uppercase().replace('-', "_");
    format!("CARGO_PROFILE_{}_{}", up(profile), up(key))
}

fn nearest_manifest(workdir: &Path) -> Option<PathBuf> {
    let start = std::path::absolute(workdir).ok()?;
    start
        .ancestors()
        .map(|d| d.join("Cargo.toml"))
        .find(|p| p.is_file())
}

fn read_manifest(path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))
}

/// The manifest of the workspace `manifest` belongs to: itself when it has `[workspace]`, the
/// one `package.workspace` names, else the nearest ancestor with `[workspace]` (Cargo reads
/// profiles from the workspace root only).
fn workspace_root(manifest: &Path) -> Result<PathBuf, String> {
    let table = read_manifest(manifest)?;
    if table.contains_key("workspace") {
        return Ok(manifest.to_path_buf());
    }
    let dir = manifest.parent().unwrap_or(Path::new("/"));
    if let Some(rel) = lookup(&table, &["package", "workspace"]).and_then(|v| v.as_str()) {
        return Ok(dir.join(rel).join("Cargo.toml"));
    }
    for ancestor in dir.ancestors().skip(1) {
        let candidate = ancestor.join("Cargo.toml");
        if candidate.is_file() && read_manifest(&candidate)?.contains_key("workspace") {
            return Ok(candidate);
        }
    }
    Ok(manifest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(args: &[&str]) -> CargoBuild {
        cargo_build(args)
    }

    #[test]
    fn the_profile_comes_from_the_subcommand_and_its_flags() {
        assert_eq!(build(&["cargo", "build", "--release"]).profile, "release");
        assert_eq!(build(&["cargo", "build"]).profile, "dev");
        assert_eq!(build(&["/usr/bin/cargo", "b", "-r"]).profile, "release");
        assert_eq!(build(&["cargo", "+stable", "bench"]).profile, "bench");
        assert_eq!(build(&["cargo", "test"]).profile, "test");
        assert_eq!(
            build(&["cargo", "install", "--path", "."]).profile,
            "release"
        );
        assert_eq!(build(&["cargo", "install", "--debug"]).profile, "dev");
        assert_eq!(
            build(&["cargo", "--config", "x=1", "build", "--profile", "dist"]).profile,
            "dist"
        );
        assert_eq!(build(&["cargo", "build", "--profile=dist"]).profile, "dist");
        assert_eq!(
            build(&["cargo", "run", "--", "--release"]).profile,
            "dev",
            "arguments after -- are the program's"
        );
        let b = build(&["cargo", "build", "-r", "--manifest-path", "a/Cargo.toml"]);
        assert_eq!(b.manifest_path, Some(PathBuf::from("a/Cargo.toml")));
        assert!(b.from_command);
        let b = build(&[
            "cargo",
            "build",
            "-r",
            "--bin",
            "app",
            "--bin=tool",
            "--target-dir",
            "/t",
        ]);
        assert_eq!(b.bins, ["app", "tool"]);
        assert_eq!(b.target_dir, Some(PathBuf::from("/t")));
        let m = build(&["make", "all"]);
        assert_eq!(m.profile, "release");
        assert!(!m.from_command);
    }

    #[test]
    fn debug_levels_parse_as_cargo_spells_them() {
        use toml::Value::*;
        assert_eq!(DebugLevel::parse(&Boolean(true)), Some(DebugLevel::Full));
        assert_eq!(DebugLevel::parse(&Integer(1)), Some(DebugLevel::Limited));
        assert_eq!(DebugLevel::parse(&Integer(0)), Some(DebugLevel::None));
        assert_eq!(
            DebugLevel::parse(&String("line-tables-only".into())),
            Some(DebugLevel::LineTablesOnly)
        );
        assert_eq!(DebugLevel::parse(&Integer(7)), None);
        assert!(DebugLevel::LineTablesOnly < DebugLevel::Limited);
        assert_eq!(
            profile_var("release-lto", "debug"),
            "CARGO_PROFILE_RELEASE_LTO_DEBUG"
        );
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn settings_resolve_through_env_config_workspace_and_inherits() {
        let dir = std::env::temp_dir().join(format!("pgo-cargo-profile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(
            &dir.join("Cargo.toml"),
            "[workspace]\nmembers = [\"app\"]\n[profile.release]\nstrip = true\n\
             [profile.dist]\ninherits = \"release\"\ndebug = \"line-tables-only\"\n\
             [profile.fast]\ninherits = \"release\"\n",
        );
        write(
            &dir.join("app/Cargo.toml"),
            "[package]\nname = \"app\"\n[profile.release]\ndebug = 2\n",
        );
        let app = dir.join("app");
        let no_env = |_: &str| None;
        let at = |args: &[&str]| ProfileSettings::load(&app, &build(args), &no_env).unwrap();

        // A member's own [profile] is ignored, as Cargo does: the workspace root's applies.
        let release = at(&["cargo", "build", "--release"]);
        assert_eq!(release.manifest(), Some(dir.join("Cargo.toml").as_path()));
        let (level, origin) = release.debug(&no_env);
        assert_eq!(level, Some(DebugLevel::None));
        assert!(origin.contains("default"), "{origin}");
        assert_eq!(
            release.get("strip", &no_env).map(|s| s.value),
            Some(toml::Value::Boolean(true))
        );

        let dist = at(&["cargo", "build", "--profile", "dist"]);
        assert_eq!(dist.debug(&no_env).0, Some(DebugLevel::LineTablesOnly));
        // Inherited from release, which sets it.
        assert!(dist.get("strip", &no_env).is_some());
        // A custom profile without debug gets release's default.
        let fast = at(&["cargo", "build", "--profile", "fast"]);
        assert_eq!(fast.debug(&no_env).0, Some(DebugLevel::None));
        assert_eq!(
            at(&["cargo", "test"]).debug(&no_env).0,
            Some(DebugLevel::Full)
        );

        // A config file overrides the manifest; the environment overrides both.
        write(
            &app.join(".cargo/config.toml"),
            "[profile.dist]\ndebug = \"full\"\n",
        );
        let dist = at(&["cargo", "build", "--profile", "dist"]);
        let (level, origin) = dist.debug(&no_env);
        assert_eq!(level, Some(DebugLevel::Full));
        assert!(origin.contains("config.toml"), "{origin}");
        let env = |k: &str| (k == "CARGO_PROFILE_DIST_DEBUG").then(|| "0".to_string());
        assert_eq!(dist.debug(&env).0, Some(DebugLevel::None));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
