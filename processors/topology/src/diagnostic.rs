//! What the loader says about a file: where (file, line, column), what is wrong, and
//! what to do about it.

use std::fmt;
use std::path::{Path, PathBuf};

/// Whether a finding stops `topology check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Legal, but probably not what an operator wants (the check still passes).
    Warning,
    /// The topology cannot be applied as written.
    Error,
}

/// A place in a topology file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` of `source`, the text of `file`.
    pub fn at(file: &Path, source: &str, offset: usize) -> Location {
        let offset = offset.min(source.len());
        let before = &source.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // Columns count characters, not bytes, so they match what an editor shows.
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        Location {
            file: file.to_owned(),
            line,
            column,
        }
    }

    /// The start of a file, for findings about a file as a whole.
    pub fn file(file: &Path) -> Location {
        Location {
            file: file.to_owned(),
            line: 1,
            column: 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One finding: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Location,
    /// What is wrong, in one sentence.
    pub message: String,
    /// What to change, concretely.
    pub fix: String,
}

impl Diagnostic {
    pub fn error(location: Location, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            location,
            message: message.into(),
            fix: fix.into(),
        }
    }

    pub fn warning(location: Location, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            location,
            message: message.into(),
            fix: fix.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `topology/topics.toml:12:1: error: ...` then `  fix: ...`, the shape compilers use,
/// so editors and CI logs link the location.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}: {severity}: {}", self.location, self.message)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// Prints diagnostics one after another (errors first, then by place).
pub fn render(diagnostics: &[Diagnostic]) -> String {
    let mut sorted: Vec<&Diagnostic> = diagnostics.iter().collect();
    sorted.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.location.cmp(&b.location))
    });
    let mut out = String::new();
    for d in sorted {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_columns() {
        let src = "a = 1\nbé = 2\n";
        let file = Path::new("t.toml");
        assert_eq!(Location::at(file, src, 0).line, 1);
        let l = Location::at(file, src, 6);
        assert_eq!((l.line, l.column), (2, 1));
        // `=` after a two-byte character is the fourth character of line 2.
        let eq = src.find("= 2").expect("present");
        assert_eq!(Location::at(file, src, eq).column, 4);
        assert_eq!(Location::at(file, src, 10_000).line, 3);
    }

    #[test]
    fn display_names_the_file_line_and_fix() {
        let d = Diagnostic::error(
            Location {
                file: "topology/topics.toml".into(),
                line: 7,
                column: 3,
            },
            "bad",
            "do this",
        );
        assert_eq!(
            d.to_string(),
            "topology/topics.toml:7:3: error: bad\n  fix: do this"
        );
    }
}
