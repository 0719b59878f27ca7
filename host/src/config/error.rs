//! Diagnostics: the errors that make a configuration file unusable and the
//! warnings that do not, each naming the file and line it comes from.

use std::fmt;
use std::path::PathBuf;

/// One problem that makes a configuration file unusable.
///
/// Displays as `file:line:column: message`, `file:line: message` or `file: message`,
/// depending on what is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as the caller named it (external job files: as resolved).
    pub file: PathBuf,
    /// 1-based line of the offending node, when the problem has one.
    pub line: Option<usize>,
    /// 1-based column, given for YAML syntax errors only.
    pub column: Option<usize>,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match (self.line, self.column) {
            (Some(line), Some(col)) => write!(f, "{file}:{line}:{col}: {}", self.message),
            (Some(line), None) => write!(f, "{file}:{line}: {}", self.message),
            (None, _) => write!(f, "{file}: {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in a configuration file (never empty when returned as an error).
///
/// Displays one error per line, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn display_lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Something in a configuration file that is ignored or suspicious but does not stop
/// the agent (a setting that has no effect). Displays as
/// `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The file, as the caller named it (external job files: as resolved).
    pub file: PathBuf,
    /// 1-based line of the node the warning is about.
    pub line: usize,
    /// What is ignored and why.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: Option<usize>, column: Option<usize>, message: &str) -> ConfigError {
        ConfigError {
            file: PathBuf::from("komlogd.yaml"),
            line,
            column,
            message: message.to_owned(),
        }
    }

    #[test]
    fn display_forms() {
        assert_eq!(
            err(Some(3), Some(7), "bad").to_string(),
            "komlogd.yaml:3:7: bad"
        );
        assert_eq!(err(Some(3), None, "bad").to_string(), "komlogd.yaml:3: bad");
        assert_eq!(err(None, None, "bad").to_string(), "komlogd.yaml: bad");
        let all = ConfigErrors(vec![err(Some(1), None, "a"), err(Some(2), None, "b")]);
        assert_eq!(all.to_string(), "komlogd.yaml:1: a\nkomlogd.yaml:2: b");
        let w = ConfigWarning {
            file: PathBuf::from("x.yaml"),
            line: 4,
            message: "hm".into(),
        };
        assert_eq!(w.to_string(), "x.yaml:4: hm");
    }
}
