//! `- job:` blocks (a command run on cron schedules whose output becomes a datasource
//! sample), the command-line and cron rules they must pass, and the external job
//! files (`external_job_file`) read when `allow_external_jobs` is set.
//!
//! Commands run without a shell: they are split into argv with POSIX shell quoting
//! (`shell-words`), and unquoted shell operators are refused rather than passed on
//! as literal arguments (the original agent passed them on silently). Schedules are
//! standard 5-field cron expressions read by `croner` with POSIX semantics (the
//! original swapped day-of-month and day-of-week and numbered Monday 0).

use std::path::{Path, PathBuf};

use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};

use super::error::{ConfigError, ConfigWarning};
use super::file::Config;
use super::schema::{JOB_KEYS, TOP_KEYS};
use super::yaml::{Ctx, Node, line, unknown_key_message};
use crate::model::Uri;

/// One `- job:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobConfig {
    /// Line of the `job` key.
    pub line: usize,
    /// The file the job was read from, as named in diagnostics (the config file as
    /// the caller gave it, or an external job file as resolved).
    pub file: PathBuf,
    /// The (local) uri the command's output is sent to.
    pub uri: String,
    /// The command as written.
    pub command: String,
    /// The command split into program and arguments. A program written as a
    /// relative path (`./x.sh`, `bin/x`) is resolved against the directory of
    /// the file that declares the job; a bare name (`df`) is looked up in
    /// `PATH` when it runs.
    pub argv: Vec<String>,
    /// `enabled` (default true); disabled jobs are kept but never scheduled.
    pub enabled: bool,
    /// Cron expressions; the job runs when any of them matches.
    pub schedules: Vec<String>,
    /// `timeout` in microseconds: the command is stopped after this long.
    pub timeout_us: Option<u64>,
    /// `supplies`: the datapoints (local uris) the output carries, sorted and
    /// each once. Sent to the server with the datasource (`send_ds_info`).
    pub supplies: Vec<String>,
}

/// The end of every refusal of a shell operator.
const NO_SHELL: &str = "the command runs without a shell: pipes and redirections are not supported; put them in a script and run the script";

/// Read one `job` block whose key is on `key_line`.
pub(super) fn parse_job(ctx: &mut Ctx<'_>, key_line: usize, node: &Node) -> Option<JobConfig> {
    let block = ctx.block("job", node, JOB_KEYS)?;
    let errors_before = ctx.errors.len();
    let missing = |ctx: &mut Ctx<'_>, key: &str, what: &str| {
        ctx.error(
            key_line,
            format!("job: missing required key `{key}` ({what})"),
        );
    };

    let uri = match block.raw("uri") {
        None => {
            missing(ctx, "uri", "the uri the output is sent to");
            None
        }
        Some(n) => ctx.string("job.uri", n).and_then(|text| match Uri::parse(&text) {
            Ok(Uri::Local(local)) => Some(local),
            Ok(Uri::Global { owner, .. }) => {
                ctx.error(
                    line(n),
                    format!(
                        "job.uri: {text:?} names an owner; a job writes to the agent's own uris: drop the `{owner}:` prefix"
                    ),
                );
                None
            }
            Err(e) => {
                ctx.error(line(n), format!("job.uri: {e}"));
                None
            }
        }),
    };
    let command = match block.raw("command") {
        None => {
            missing(ctx, "command", "the program to run and its arguments");
            None
        }
        Some(n) => ctx.string("job.command", n).and_then(|text| {
            for warning in unexpanded_variables(&text) {
                ctx.warn(line(n), warning);
            }
            match split_command(&text) {
                Ok(mut argv) => {
                    if let Some(program) = argv.first_mut() {
                        *program = resolve_program(&ctx.dir, program);
                    }
                    Some((text, argv))
                }
                Err(e) => {
                    ctx.error(line(n), format!("job.command: {e}"));
                    None
                }
            }
        }),
    };
    let enabled = match block.get("enabled") {
        Some(n) => ctx.boolean("job.enabled", n).unwrap_or(true),
        None => true,
    };
    let schedules = match block.raw("schedule") {
        None => {
            missing(
                ctx,
                "schedule",
                "one or more cron expressions such as '*/5 * * * *'",
            );
            Vec::new()
        }
        Some(n) => {
            let items = ctx.list("job.schedule", n);
            if items.is_empty() {
                ctx.error(
                    line(n),
                    "job.schedule: give at least one cron expression such as '*/5 * * * *'",
                );
            }
            let mut schedules = Vec::new();
            for item in items {
                let Some(expr) = ctx.string("job.schedule", item) else {
                    continue;
                };
                match parse_cron(&expr) {
                    Ok(_) => schedules.push(expr),
                    Err(e) => ctx.error(
                        line(item),
                        format!("job.schedule: {}", cron_message(&expr, &e)),
                    ),
                }
            }
            schedules
        }
    };
    let timeout_us = block
        .get("timeout")
        .and_then(|n| ctx.duration_us("job.timeout", n));
    let mut supplies = Vec::new();
    if let Some(n) = block.get("supplies") {
        for item in ctx.list("job.supplies", n) {
            let Some(text) = ctx.string("job.supplies", item) else {
                continue;
            };
            match Uri::parse(&text) {
                Ok(Uri::Local(local)) => supplies.push(local),
                Ok(Uri::Global { .. }) => ctx.error(
                    line(item),
                    format!("job.supplies: {text:?} names an owner; a datasource supplies the agent's own uris"),
                ),
                Err(e) => ctx.error(line(item), format!("job.supplies: {e}")),
            }
        }
        supplies.sort();
        supplies.dedup();
    }

    if ctx.errors.len() > errors_before {
        return None;
    }
    let (command, argv) = command?;
    Some(JobConfig {
        line: key_line,
        file: ctx.file.clone(),
        uri: uri?,
        command,
        argv,
        enabled,
        schedules,
        timeout_us,
        supplies,
    })
}

/// Parse a cron expression exactly as the configuration validates it: five fields
/// (minute hour day-of-month month day-of-week), Sunday 0 or 7, names such as `MON`
/// and `JAN`, the `@hourly`/`@daily`/`@weekly`/`@monthly`/`@yearly` macros, and day-of-month
/// OR day-of-week when both are restricted (POSIX). Use it to build the schedule too.
pub fn parse_cron(expr: &str) -> Result<Cron, CronError> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .dom_and_dow(false)
        .alternative_weekdays(false)
        .build()
        .parse(expr)
}

fn cron_message(expr: &str, error: &CronError) -> String {
    format!(
        "invalid cron expression {expr:?} ({error}); expected 5 fields \"minute hour day-of-month month day-of-week\" (e.g. '*/5 * * * *', Sunday is 0 or 7) or @hourly, @daily, @weekly, @monthly, @yearly"
    )
}

/// Split a command into argv with POSIX shell quoting, refusing shell operators
/// (`|`, `||`, `&`, `&&`, `;`, `<`, `>`, `>>`, `$(`, backquotes) that are not quoted.
pub fn split_command(command: &str) -> Result<Vec<String>, String> {
    if let Some(op) = unquoted_operator(command) {
        return Err(format!("found `{op}` in {command:?}, but {NO_SHELL}"));
    }
    let argv = shell_words::split(command).map_err(|e| {
        format!("cannot split {command:?} into arguments: {e} (quote with '…' or \"…\" and close every quote)")
    })?;
    if argv.is_empty() {
        return Err(format!("{command:?} has no program to run"));
    }
    Ok(argv)
}

/// The program of a command as it is run: a relative path (it has a `/`:
/// `./x.sh`, `bin/x`) joined to `dir`; a bare name (looked up in `PATH` when
/// it runs) or an absolute path as written.
fn resolve_program(dir: &Path, program: &str) -> String {
    let path = Path::new(program);
    if program.contains('/') && path.is_relative() {
        let path = path.strip_prefix(".").unwrap_or(path);
        dir.join(path).to_string_lossy().into_owned()
    } else {
        program.to_owned()
    }
}

/// Where a quote or escape leaves the character being read.
#[derive(Clone, Copy, PartialEq)]
enum Quote {
    /// Between words.
    Delimiter,
    /// Inside an unquoted word.
    Word,
    /// After a backslash outside quotes.
    Escaped,
    /// Inside '…'.
    Single,
    /// Inside "…".
    Double,
    /// After a backslash inside "…".
    DoubleEscaped,
    /// After an unquoted `#` at the start of a word, to the end of the line.
    Comment,
}

/// Walk `command` with the same rules as `shell_words::split` and call `f` with each
/// character that is neither quoted, escaped nor in a comment, and the next character.
fn for_each_unquoted(command: &str, mut f: impl FnMut(char, Option<char>) -> bool) {
    let mut state = Quote::Delimiter;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        state = match (state, c) {
            (Quote::Comment, '\n') => Quote::Delimiter,
            (Quote::Comment, _) => Quote::Comment,
            (Quote::Escaped, _) => Quote::Word,
            (Quote::Single, '\'') => Quote::Word,
            (Quote::Single, _) => Quote::Single,
            (Quote::Double, '"') => Quote::Word,
            (Quote::Double, '\\') => Quote::DoubleEscaped,
            (Quote::Double, _) | (Quote::DoubleEscaped, _) => Quote::Double,
            (Quote::Delimiter | Quote::Word, '\'') => Quote::Single,
            (Quote::Delimiter | Quote::Word, '"') => Quote::Double,
            (Quote::Delimiter | Quote::Word, '\\') => Quote::Escaped,
            (Quote::Delimiter | Quote::Word, ' ' | '\t' | '\n') => Quote::Delimiter,
            (Quote::Delimiter, '#') => Quote::Comment,
            (Quote::Delimiter | Quote::Word, _) => {
                if !f(c, next) {
                    return;
                }
                Quote::Word
            }
        };
    }
}

/// The first unquoted shell operator, as written (`|`, `||`, `>>`, `$(` …).
fn unquoted_operator(command: &str) -> Option<String> {
    let mut found = None;
    for_each_unquoted(command, |c, next| {
        let op = match (c, next) {
            ('|', Some('|')) => Some("||"),
            ('&', Some('&')) => Some("&&"),
            ('>', Some('>')) => Some(">>"),
            ('$', Some('(')) => Some("$("),
            ('|' | '&' | ';' | '<' | '>' | '`', _) => Some(match c {
                '|' => "|",
                '&' => "&",
                ';' => ";",
                '<' => "<",
                '>' => ">",
                _ => "`",
            }),
            _ => None,
        };
        found = op.map(str::to_owned);
        found.is_none()
    });
    found
}

/// Warnings for unquoted `$NAME` / `${…}`, which a shell would expand and komlogd does not.
fn unexpanded_variables(command: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    for_each_unquoted(command, |c, next| {
        if c == '$' && next.is_some_and(|n| n == '{' || n == '_' || n.is_ascii_alphabetic()) {
            warnings.push(format!(
                "job.command: `$` in {command:?} is passed to the program as it is: the command runs without a shell, so variables are not expanded; put the command in a script"
            ));
            return false;
        }
        true
    });
    warnings
}

/// What [`read_external_jobs`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalJobs {
    /// The jobs of every file that had no error, in file order.
    pub jobs: Vec<JobConfig>,
    /// The errors, each naming its file (a file with an error contributes no job).
    pub errors: Vec<ConfigError>,
    /// Ignored entries.
    pub warnings: Vec<ConfigWarning>,
}

/// Read the jobs of every `external_job_file`, if `allow_external_jobs` is true (else
/// nothing). Only `job` entries are taken; a file that cannot be read or has an error
/// is reported and skipped while the other files still load. Warnings are logged
/// with `tracing`; use [`read_external_jobs`] to get them.
pub fn load_external_jobs(config: &Config) -> (Vec<JobConfig>, Vec<ConfigError>) {
    let found = read_external_jobs(config);
    for warning in &found.warnings {
        tracing::warn!("{warning}");
    }
    (found.jobs, found.errors)
}

/// [`load_external_jobs`], returning the warnings too.
pub fn read_external_jobs(config: &Config) -> ExternalJobs {
    let mut out = ExternalJobs::default();
    if !config.allow_external_jobs {
        return out;
    }
    for path in &config.external_job_files {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                let message = if e.kind() == std::io::ErrorKind::NotFound {
                    "external job file not found".to_owned()
                } else {
                    format!("cannot read external job file: {e}")
                };
                out.errors.push(ConfigError {
                    file: path.clone(),
                    line: None,
                    column: None,
                    message,
                });
                continue;
            }
        };
        let (jobs, errors, warnings) = parse_external(path, &text);
        out.warnings.extend(warnings);
        if errors.is_empty() {
            out.jobs.extend(jobs);
        } else {
            out.errors.extend(errors);
        }
    }
    out
}

/// Parse one external job file.
fn parse_external(
    path: &Path,
    text: &str,
) -> (Vec<JobConfig>, Vec<ConfigError>, Vec<ConfigWarning>) {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut ctx = Ctx::new(path.to_path_buf(), dir, text);
    let doc = ctx.load();
    let mut jobs = Vec::new();
    for entry in ctx.entries(doc.as_ref()) {
        if entry.key == "job" {
            if let Some(job) = parse_job(&mut ctx, entry.line, entry.value) {
                jobs.push(job);
            }
        } else if TOP_KEYS.contains(&entry.key.as_str()) {
            ctx.warn(
                entry.line,
                format!(
                    "`{}` ignored: only `job` entries are read from an external job file",
                    entry.key
                ),
            );
        } else {
            ctx.error(
                entry.line,
                unknown_key_message(&entry.key, "in an external job file", &["job"]),
            );
        }
    }
    (jobs, ctx.errors, ctx.warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions() {
        for ok in [
            "*/10 * * * *",
            "1-10/2 * * * *",
            "0 0 * * 0",
            "0 0 * * 7",
            "0 9 * * MON-FRI",
            "@hourly",
            "@daily",
            "0 * * * *",
            "*/5 23 * * *",
            "0 0 1,15 * 3",
        ] {
            assert!(parse_cron(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "61 * * * *",
            "* * *",
            "abc",
            "",
            "0 0 * * * *",
            "* 24 * * *",
            "@reboot",
        ] {
            assert!(parse_cron(bad).is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn cron_is_posix() {
        use croner::Weekday::{Friday, Saturday, Sunday, Thursday, Wednesday};
        let day = |expr: &str, d: u32, w| {
            parse_cron(expr)
                .unwrap()
                .pattern
                .day_match(2026, 1, d, w)
                .unwrap()
        };
        // Day of month 1 or 15, OR Wednesday (POSIX), in January 2026 (the 1st is a Thursday).
        assert!(day("0 0 1,15 * 3", 7, Wednesday));
        assert!(day("0 0 1,15 * 3", 15, Thursday));
        assert!(!day("0 0 1,15 * 3", 2, Friday));
        // Sunday is 0 and 7.
        assert!(day("0 0 * * 7", 4, Sunday));
        assert!(day("0 0 * * 0", 4, Sunday));
        assert!(!day("0 0 * * 7", 3, Saturday));
        assert!(day("0 9 * * MON-FRI", 2, Friday));
        assert!(!day("0 9 * * MON-FRI", 3, Saturday));
    }

    #[test]
    fn commands_split_with_quoting() {
        assert_eq!(split_command("df -k").unwrap(), ["df", "-k"]);
        assert_eq!(split_command("df  -k").unwrap(), ["df", "-k"]);
        assert_eq!(
            split_command("sh -c 'df -k | head'").unwrap(),
            ["sh", "-c", "df -k | head"]
        );
        assert_eq!(
            split_command(r#"echo "a > b" 'c;d' e\|f"#).unwrap(),
            ["echo", "a > b", "c;d", "e|f"]
        );
        assert_eq!(
            split_command("echo a # comment | x").unwrap(),
            ["echo", "a"]
        );
    }

    #[test]
    fn shell_operators_are_refused() {
        for (cmd, op) in [
            ("df -k | head", "|"),
            ("df -k|head", "|"),
            ("a || b", "||"),
            ("a & b", "&"),
            ("a && b", "&&"),
            ("a; b", ";"),
            ("sort < f", "<"),
            ("echo a > f", ">"),
            ("echo a >> f", ">>"),
            ("echo $(date)", "$("),
            ("echo `date`", "`"),
            ("echo a 2>&1", ">"),
        ] {
            let err = split_command(cmd).unwrap_err();
            assert_eq!(
                err,
                format!("found `{op}` in {cmd:?}, but {NO_SHELL}"),
                "{cmd}"
            );
        }
    }

    #[test]
    fn other_command_errors() {
        assert_eq!(
            split_command("echo 'open").unwrap_err(),
            "cannot split \"echo 'open\" into arguments: missing closing quote (quote with '…' or \"…\" and close every quote)"
        );
        assert_eq!(
            split_command("# just a comment").unwrap_err(),
            "\"# just a comment\" has no program to run"
        );
    }

    #[test]
    fn variables_warn() {
        assert_eq!(unexpanded_variables("echo $HOME").len(), 1);
        assert_eq!(unexpanded_variables("echo ${HOME}").len(), 1);
        assert!(unexpanded_variables("echo '$HOME'").is_empty());
        assert!(unexpanded_variables("sh -c \"echo $HOME\"").is_empty());
        assert!(unexpanded_variables("echo 5$").is_empty());
    }
}
