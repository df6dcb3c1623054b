use std::fmt;
use std::path::Path;

/// A problem with one input or output file, shown to users as one line: `FILE: PROBLEM`.
///
/// Every error that reaches a user names the file it is about, so that a CI log line alone says
/// which of several inputs was bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The file the problem is about, as the user named it.
    pub file: String,
    /// What is wrong, without the file name; one line.
    pub problem: String,
}

impl Error {
    pub fn new(file: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Error {
            file: file.as_ref().display().to_string(),
            problem: problem.into(),
        }
    }

    /// Whether the file is a well-formed profile that has no samples (so it adds nothing to a
    /// merge), rather than a broken one.
    pub fn is_without_samples(&self) -> bool {
        self.problem == crate::validate::NO_SAMPLES
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Problems come from many sources (io, gzip, protobuf); keep the message on one line.
        let problem = self.problem.replace('\n', " ");
        if self.file.is_empty() {
            write!(f, "{problem}")
        } else {
            write!(f, "{}: {problem}", self.file)
        }
    }
}

impl std::error::Error for Error {}
