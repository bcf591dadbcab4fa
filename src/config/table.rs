//! The mechanism behind the variable tables of `Config` (`vars.rs`) and
//! `KvConfig` (`kv/vars.rs`): [`EnvVar`], applying a table to a set of
//! variables, the parsers the entries share, and rendering a table into
//! the configuration tables of docs/configuration.md, the documentation of `from_vars` and
//! `.env.example`.

use std::borrow::Cow;
use std::time::Duration;

use super::{Problems, BOOL_ALLOWED, REDACTED};

/// One environment variable of a configuration `C`: its name, what it
/// sets, its default, the values it takes, what it does, and how a value
/// is applied. A table of these drives `from_vars` and the documentation.
pub(crate) struct EnvVar<C: 'static> {
    /// The heading it is listed under in `.env.example`.
    pub(crate) section: &'static str,
    pub(crate) name: &'static str,
    /// The setters it drives, comma-separated (`"connect_timeout, response_timeout"`).
    pub(crate) sets: &'static str,
    /// Its default as the variable would spell it, read from
    /// `C::default()`; empty when there is none.
    pub(crate) default: fn(&C) -> String,
    /// The values it takes (markdown, one line).
    pub(crate) values: &'static str,
    /// What it does (markdown, one paragraph).
    pub(crate) doc: &'static str,
    /// How the value is read before `apply` sees it.
    pub(crate) read: Read,
    /// Applies a value, read as `read` says.
    pub(crate) apply: fn(&mut C, &str) -> Result<(), Refused>,
}

/// How a variable's value is read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Trimmed; empty is the same as unset.
    Trimmed,
    /// Trimmed; empty is a value (an empty key prefix).
    TrimmedEmptyCounts,
    /// A password: not trimmed, empty is unset, never shown.
    Secret,
}

/// Why a variable's value was refused: one entry per problem, each with
/// the value to show (`None`: the variable's text) and what is allowed.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) Vec<(Option<String>, Cow<'static, str>)>);

impl Refused {
    /// A problem with part of the value (one item of a list), or with a
    /// value that must not be echoed as given (a URL).
    pub(crate) fn showing(value: impl Into<String>, allowed: impl Into<Cow<'static, str>>) -> Refused {
        Refused(vec![(Some(value.into()), allowed.into())])
    }
}

impl From<&'static str> for Refused {
    fn from(allowed: &'static str) -> Refused {
        Refused(vec![(None, allowed.into())])
    }
}

impl From<String> for Refused {
    fn from(allowed: String) -> Refused {
        Refused(vec![(None, allowed.into())])
    }
}

/// `*slot = value`, as a table entry's result.
pub(crate) fn set<T>(slot: &mut T, value: T) -> Result<(), Refused> {
    *slot = value;
    Ok(())
}

/// Applies each variable of `table` that `get` finds (and that is not
/// empty) onto `c`, in the table's order, recording every problem under
/// the variable's name.
pub(crate) fn apply_vars<C>(
    table: &[EnvVar<C>],
    c: &mut C,
    get: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) {
    for var in table {
        let Some(raw) = get(var.name) else { continue };
        let text = if var.read == Read::Secret { raw } else { raw.trim().to_string() };
        if text.is_empty() && var.read != Read::TrimmedEmptyCounts {
            continue;
        }
        if let Err(refused) = (var.apply)(c, &text) {
            let shown = if var.read == Read::Secret { REDACTED } else { text.as_str() };
            problems.refused(var.name, shown, refused);
        }
    }
}

/// Records each variable of `table` whose value in the process
/// environment is not valid UTF-8.
pub(crate) fn not_unicode<C>(table: &[EnvVar<C>], problems: &mut Problems) {
    for var in table {
        if let Err(std::env::VarError::NotUnicode(_)) = std::env::var(var.name) {
            problems.push(var.name, "<not valid UTF-8>", "valid UTF-8 text");
        }
    }
}

// ---------------------------------------------------------------------------
// Parsers of the table's entries.

pub(crate) fn boolean(v: &str) -> Result<bool, Refused> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(BOOL_ALLOWED.into()),
    }
}

/// A whole number from `min` to `max`.
pub(crate) fn int(v: &str, min: u64, max: u64, allowed: &'static str) -> Result<u64, Refused> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(allowed.into()),
    }
}

/// A count of 1 or more.
pub(crate) fn count(v: &str) -> Result<usize, Refused> {
    int(v, 1, usize::MAX as u64, "a whole number, 1 or more").map(|n| n as usize)
}

/// Milliseconds, at least `min`.
pub(crate) fn millis(v: &str, min: u64) -> Result<Duration, Refused> {
    match v.parse::<u64>() {
        Ok(n) if n >= min => Ok(Duration::from_millis(n)),
        _ => Err(format!("a whole number of milliseconds, {min} or more").into()),
    }
}

/// `d` in whole milliseconds, as a variable spells it.
pub(crate) fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

/// Seconds above zero, possibly fractional.
pub(crate) fn seconds(v: &str) -> Result<Duration, Refused> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "a number of seconds above zero, such as 2 or 0.5".into())
}

// ---------------------------------------------------------------------------
// Rendering a table for people.

/// A markdown table of `table`: variable, setters, default, values,
/// meaning. With `links`, each setter links to its documentation
/// (`Config::port`, for rustdoc).
pub(crate) fn markdown<C: Default>(table: &[EnvVar<C>], links: Option<&str>) -> String {
    let defaults = C::default();
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out =
        String::from("| variable | sets | default | values | meaning |\n| --- | --- | --- | --- | --- |\n");
    for var in table {
        let sets: Vec<String> = var
            .sets
            .split(", ")
            .map(|s| match links {
                Some(ty) if s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => {
                    format!("[`{s}`]({ty}::{s})")
                }
                _ => format!("`{s}`"),
            })
            .collect();
        let default = (var.default)(&defaults);
        let default = if default.is_empty() { "—".to_string() } else { format!("`{default}`") };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            var.name,
            cell(&sets.join(", ")),
            cell(&default),
            cell(var.values),
            cell(var.doc)
        ));
    }
    out
}

/// `.env.example`'s lines for `table`: under a heading per section, each
/// variable commented out with its default, after its meaning and values.
pub(crate) fn env_example<C: Default>(table: &[EnvVar<C>]) -> String {
    let defaults = C::default();
    let mut out = String::new();
    let mut section = "";
    for var in table {
        if var.section != section {
            section = var.section;
            if !out.is_empty() {
                out.push('\n');
            }
            let heading = format!("# --- {section} ");
            out.push_str(&format!("{heading:-<78}\n\n"));
        }
        let default = (var.default)(&defaults);
        let none = if default.is_empty() { " Default: none." } else { "" };
        let text = format!("{}{none} Values: {}.", var.doc, var.values).replace('`', "");
        for line in wrap(&text, 76) {
            out.push_str(&format!("# {line}\n"));
        }
        out.push_str(&format!("# {}={default}\n", var.name));
    }
    out
}

/// `text` in lines of at most `width` characters, broken between words.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
