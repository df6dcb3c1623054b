//! External backends: any program named `pgo-backend-NAME` on `PATH` serves `--backend NAME`.
//!
//! The protocol (version 1), one exchange per `pgo apply`:
//! - pgo starts the program with no arguments, in the build's working directory, and writes
//!   one JSON object to its stdin (then closes it):
//!   `{"protocol": "pgo-backend/1", "backend": NAME, "decisions": PATH, "profile": PATH,
//!   "profiles": [PATH...], "target": {"language", "build_command", "workdir",
//!   "output_binary"}, "out_dir": PATH}`. `decisions` is a pgo decisions file (schema
//!   `pgo-decisions`, read its `version`), `profile` the merged input profiles as gzipped pprof,
//!   `profiles` the files the user gave; `out_dir` exists and is the backend's own.
//! - The program writes one JSON object to stdout, a [`Plan`]: `{"artifacts": [{"path",
//!   "kind", "summary"}], "env": [{"how": "set", "name", "value"} | {"how": "append_flags",
//!   "name", "flags": [...]}], "post_build": [{"description", "command": [...], "output"}],
//!   "notes": [...]}` (every field may be left out), and exits 0. Anything it prints on stderr
//!   is shown to the user. A non-zero exit fails `pgo apply` with the program's last stderr line.
//!
//! `fixtures/external-backend` is a working example.

use crate::{Backend, Plan, Request};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const PROTOCOL: &str = "pgo-backend/1";

/// The JSON written to an external backend's stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireRequest {
    pub protocol: String,
    pub backend: String,
    pub decisions: PathBuf,
    pub profile: PathBuf,
    pub profiles: Vec<PathBuf>,
    pub target: crate::Target,
    pub out_dir: PathBuf,
}

/// A `pgo-backend-NAME` program.
pub struct External {
    name: String,
    program: PathBuf,
}

impl External {
    /// Finds `pgo-backend-NAME` on `PATH`.
    pub fn find(name: &str) -> Option<External> {
        let file = format!("pgo-backend-{name}");
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(&file))
            .find(|p| is_executable(p))
            .map(|program| External {
                name: name.to_string(),
                program,
            })
    }

    pub fn program(&self) -> &Path {
        &self.program
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

impl Backend for External {
    fn name(&self) -> &str {
        &self.name
    }

    fn plan(&self, request: &Request<'_>) -> Result<Plan, String> {
        let program = self.program.display();
        // The backend reads files, not our memory: put the decisions and the merged profile on
        // disk in its directory.
        let decisions = request.out_dir.join("decisions.json");
        pgo_profile::write_atomic(&decisions, request.decisions.to_json().as_bytes())
            .map_err(|e| format!("{}: {e}", decisions.display()))?;
        let profile = request.out_dir.join("merged.pb.gz");
        pgo_profile::write_profile(&profile, request.profile)
            .map_err(|e| format!("{}: {e}", profile.display()))?;
        let wire = WireRequest {
            protocol: PROTOCOL.into(),
            backend: self.name.clone(),
            decisions,
            profile,
            profiles: request.profile_paths.to_vec(),
            target: request.target.clone(),
            out_dir: request.out_dir.to_path_buf(),
        };
        let mut child = Command::new(&self.program)
            .current_dir(&request.target.workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{program}: cannot start: {e}"))?;
        let body = serde_json::to_vec(&wire).expect("the request serializes");
        {
            let mut stdin = child.stdin.take().expect("stdin is piped");
            // A backend that exits without reading is reported by its exit status below.
            let _ = stdin.write_all(&body);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{program}: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.trim().is_empty() {
            for line in stderr.lines() {
                eprintln!("pgo-backend-{}: {line}", self.name);
            }
        }
        if !out.status.success() {
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            return Err(format!(
                "{program} failed ({}){}",
                out.status,
                last.map(|l| format!(": {l}")).unwrap_or_default()
            ));
        }
        let plan: Plan = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!("{program}: its answer is not a pgo-backend/1 plan (JSON on stdout): {e}")
        })?;
        for a in &plan.artifacts {
            if !a.path.exists() {
                return Err(format!(
                    "{program}: says it wrote {}, which does not exist",
                    a.path.display()
                ));
            }
        }
        Ok(plan)
    }
}
