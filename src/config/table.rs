//! The mechanism behind the option tables of `Config` and `KvConfig`: the
//! [`options!`] macro, its [`Opt`] rows and [`Codec`]s, and rendering them
//! into docs/configuration.md, `from_vars`' docs and `.env.example`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::time::Duration;

use super::{Problems, REDACTED};
use crate::error::ConfigError;

/// Declares a configuration struct from one entry per option:
///
/// ```text
/// /// One doc sentence. Defaults to `X`.
/// field: Type = default; [v: Arg => conversion] [VARIABLE CODEC]
/// ```
///
/// The first bracket is the public setter `field(v: Arg)` (`[]`: none; an
/// attribute may precede `v`); the second the environment variable read
/// with a [`Codec`] (`[]`: none; `[VAR CODEC => setter]` names the setter
/// that covers it; `[VAR CODEC, ROW…]` adds [`Opt`] rows written by hand
/// after it; `[rows …]` has only those). Yields the struct (the doc on each
/// field), `Default`, `builder()`, the setters and `$table`, the rows in order.
macro_rules! options {
    (
        $(#[$meta:meta])*
        pub struct $C:ident, table $table:ident {
            $( $(#[doc = $doc:literal])+ $field:ident : $ty:ty = $default:expr ; [$($set:tt)*] [$($env:tt)*] )*
        }
    ) => {
        $(#[$meta])*
        pub struct $C { $( $(#[doc = $doc])+ pub(crate) $field: $ty, )* }

        impl Default for $C {
            fn default() -> Self {
                $C { $( $field: $default, )* }
            }
        }

        impl $C {
            /// The defaults (`default()`), to be changed with the setters.
            #[must_use]
            pub fn builder() -> Self {
                Self::default()
            }

            $( options!(@setter [$(#[doc = $doc])+] $field $($set)*); )*

            /// The fields, in the table's order (the order of problems).
            pub(crate) const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Checks each value that has a [`Codec`] ([`Self::validate`] adds the rest).
            fn check_values(&self, p: &mut $crate::config::Problems) {
                $( options!(@check self p $field $($env)*); )*
            }
        }

        /// Every option, in the order its variables are applied.
        pub(crate) const $table: &[&[$crate::config::Opt<$C>]] =
            &[ $( options!(@rows $C [concat!($($doc),+)] $field [$($set)*] $($env)*), )* ];
    };
    (@setter [$($doc:tt)*] $field:ident) => {};
    (@setter [$($doc:tt)*] $field:ident $(#[$attr:meta])* $v:ident : $arg:ty => $conv:expr) => {
        $($doc)*
        $(#[$attr])*
        #[must_use]
        pub fn $field(self, $v: $arg) -> Self {
            Self { $field: $conv, ..self }
        }
    };
    (@rows $C:ident [$doc:expr] $field:ident [$($set:tt)*]) => { &[] };
    (@rows $C:ident [$doc:expr] $field:ident [$($set:tt)*] rows $($row:expr),*) => { &[$($row),*] };
    (@rows $C:ident [$doc:expr] $field:ident [$($set:tt)*] $var:literal $codec:expr $(=> $sets:ident)? $(, $row:expr)*) => {
        &[$crate::config::Opt {
            var: $var,
            sets: options!(@sets $field $($sets)?),
            doc: $doc,
            values: $codec.values,
            read: $codec.read,
            default: |c: &$C| ($codec.show)(&c.$field),
            apply: |c: &mut $C, v| $codec.value(v).map(|value| c.$field = value),
        }, $($row),*]
    };
    (@check $s:ident $p:ident $field:ident $var:literal $codec:expr $(=> $sets:ident)? $(, $row:expr)*) => {
        if let Err(refused) = ($codec.check)(&$s.$field) {
            $p.refused(stringify!($field), &($codec.show)(&$s.$field), refused);
        }
    };
    (@check $s:ident $p:ident $field:ident $($rows:tt)*) => {};
    (@sets $field:ident) => { stringify!($field) };
    (@sets $field:ident $sets:ident) => { stringify!($sets) };
}
pub(crate) use options;

/// One environment variable: its name, how it is read and applied, and (for
/// the docs only) its setters, meaning, values and default as spelt (empty: none).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Opt<C: 'static> {
    pub(crate) var: &'static str,
    /// Comma-separated (`"connect_timeout, response_timeout"`).
    pub(crate) sets: &'static str,
    pub(crate) doc: &'static str,
    pub(crate) values: &'static str,
    pub(crate) read: Read,
    pub(crate) default: fn(&C) -> String,
    pub(crate) apply: fn(&mut C, &str) -> Result<(), Refused>,
}

/// The values of one type: what they are (for people), how they are read,
/// parsed and spelt, and what a value must be (`check`, also in `validate`).
pub(crate) struct Codec<T: 'static> {
    pub(crate) values: &'static str,
    pub(crate) read: Read,
    pub(crate) parse: Parse<T>,
    pub(crate) show: fn(&T) -> String,
    pub(crate) check: fn(&T) -> Result<(), Refused>,
}

/// How a variable's text becomes a value.
type Parse<T> = fn(&str) -> Result<T, Refused>;

impl<T: ToString> Codec<T> {
    /// Values spelt with `to_string`.
    pub(crate) const fn plain(values: &'static str, parse: Parse<T>) -> Self {
        Codec::new(values, parse, T::to_string)
    }
}

impl<T> Codec<T> {
    /// Read trimmed, any value allowed.
    pub(crate) const fn new(values: &'static str, parse: Parse<T>, show: fn(&T) -> String) -> Self {
        Codec { values, read: Read::Trimmed, parse, show, check: |_| Ok(()) }
    }

    /// With `check` as what a value must be (in a variable or set in code).
    pub(crate) const fn checked(self, check: fn(&T) -> Result<(), Refused>) -> Self {
        Codec { check, ..self }
    }

    /// A variable's value: parsed, then checked.
    pub(crate) fn value(&self, v: &str) -> Result<T, Refused> {
        (self.parse)(v).and_then(|value| (self.check)(&value).map(|()| value))
    }
}

/// `Err(allowed)` when `bad`.
pub(crate) fn refuse(bad: bool, allowed: &'static str) -> Result<(), Refused> {
    (!bad).then_some(()).ok_or_else(|| allowed.into())
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

impl<S: Into<Cow<'static, str>>> From<S> for Refused {
    fn from(allowed: S) -> Refused {
        Refused(vec![(None, allowed.into())])
    }
}

/// Reads `name` with `get` as `read` says and, unless it is unset (or
/// empty), hands it to `apply`, recording its problems under `name`.
pub(crate) fn apply_var(
    name: &str,
    read: Read,
    get: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
    apply: impl FnOnce(&str) -> Result<(), Refused>,
) {
    let Some(raw) = get(name) else { return };
    let text = if read == Read::Secret { raw } else { raw.trim().to_string() };
    if text.is_empty() && read != Read::TrimmedEmptyCounts {
        return;
    }
    if let Err(refused) = apply(&text) {
        problems.refused(name, if read == Read::Secret { REDACTED } else { &text }, refused);
    }
}

/// Applies each of `rows` onto `c`, in order.
pub(crate) fn apply_vars<'a, C: 'static>(
    rows: impl IntoIterator<Item = &'a Opt<C>>,
    c: &mut C,
    get: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) {
    for opt in rows {
        apply_var(opt.var, opt.read, get, problems, |v| (opt.apply)(c, v));
    }
}

/// `from_vars` on the process environment; a value that is not UTF-8 is a
/// problem (listed first).
pub(crate) fn read_env<T: Default>(
    from_vars: impl FnOnce(&dyn Fn(&str) -> Option<String>) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let problems = RefCell::new(Problems::default());
    let get = |name: &str| match std::env::var(name) {
        Err(std::env::VarError::NotUnicode(_)) => {
            problems.borrow_mut().push(name, "<not valid UTF-8>", "valid UTF-8 text");
            None
        }
        value => value.ok(),
    };
    let built = from_vars(&get);
    let mut problems = problems.into_inner();
    let built = problems.take(built).unwrap_or_default();
    problems.finish(built)
}

/// A whole number, 0 or more, that fits a `T`.
pub(crate) fn whole<T: TryFrom<u64>>(v: &str, allowed: &'static str) -> Result<T, Refused> {
    v.parse::<u64>().ok().and_then(|n| T::try_from(n).ok()).ok_or_else(|| allowed.into())
}

fn millis(v: &str) -> Result<Duration, Refused> {
    whole(v, "a whole number of milliseconds, 0 or more").map(Duration::from_millis)
}

/// Seconds above zero, possibly fractional.
fn seconds(v: &str) -> Result<Duration, Refused> {
    let secs = v.parse().ok().and_then(|s| Duration::try_from_secs_f64(s).ok());
    secs.filter(|d| !d.is_zero()).ok_or_else(|| "a number of seconds above zero, such as 2 or 0.5".into())
}

const AT_LEAST_1MS: &str = "None, or at least 1ms";

pub(crate) const BOOL: Codec<bool> = Codec::plain("boolean", |v| match v.to_ascii_lowercase().as_str() {
    "true" | "1" | "yes" => Ok(true),
    "false" | "0" | "no" => Ok(false),
    _ => Err("one of: true, false, 1, 0, yes, no".into()),
});
pub(crate) const COUNT: Codec<usize> = Codec::plain("1 or more", |v| whole(v, "a whole number, 1 or more"))
    .checked(|n| refuse(*n == 0, "1 or more"));
pub(crate) const COUNT_U32: Codec<u32> = Codec::plain("1 or more", |v| whole(v, "a whole number, 1 or more"))
    .checked(|n| refuse(*n == 0, "1 or more"));
pub(crate) const MILLIS: Codec<Duration> = Codec::new("milliseconds", millis, |d| d.as_millis().to_string());
pub(crate) const MILLIS_MIN_1: Codec<Duration> =
    Codec { values: "milliseconds, 1 or more", ..MILLIS }.checked(|d| refuse(d.is_zero(), "1 ms or more"));
pub(crate) const MILLIS_OFF: Codec<Option<Duration>> = Codec::new(
    "milliseconds (0: off)",
    |v| millis(v).map(|d| Some(d).filter(|d| !d.is_zero())),
    |d| d.unwrap_or_default().as_millis().to_string(),
)
.checked(|d| refuse(d.is_some_and(|d| d < Duration::from_millis(1)), AT_LEAST_1MS));
pub(crate) const SECS_OFF: Codec<Option<Duration>> = Codec::new(
    "seconds (0: off)",
    |v| Ok(Some(whole(v, "seconds, 0 (off) or more")?).filter(|s| *s > 0).map(Duration::from_secs)),
    |d| d.map_or(0.0, |d| d.as_secs_f64()).to_string(),
)
.checked(|d| refuse(d.is_some_and(|d| d < Duration::from_millis(1)), AT_LEAST_1MS));
pub(crate) const SECONDS: Codec<Duration> =
    Codec::new("seconds above zero, may be fractional (`0.5`)", seconds, |d| d.as_secs_f64().to_string())
        .checked(|d| refuse(d.is_zero(), "a duration above zero"));

/// Rendering the tables for people: docs/configuration.md, the tables of
/// `from_vars`' documentation and `.env.example` (checked by the
/// `docs_match_the_table` tests, which write them with
/// `TRADECACHE_WRITE_DOCS=1`).
#[cfg(test)]
pub(crate) mod render {
    use super::Opt;

    /// A variable as the documentation lists it.
    pub(crate) struct Line {
        pub(crate) var: String,
        pub(crate) sets: &'static str,
        pub(crate) default: String,
        pub(crate) values: &'static str,
        pub(crate) doc: String,
    }

    /// The lines of `rows`, with their defaults read from `defaults`.
    pub(crate) fn lines<'a, C: 'static>(
        rows: impl IntoIterator<Item = &'a Opt<C>>,
        defaults: &C,
    ) -> Vec<Line> {
        let rows = rows.into_iter();
        rows.map(|o| Line {
            var: o.var.into(),
            sets: o.sets,
            default: (o.default)(defaults),
            values: o.values,
            doc: o.doc.trim().into(),
        })
        .collect()
    }

    /// A markdown table of `lines`: variable, setters, default, values,
    /// meaning. With `links`, each setter links to its documentation
    /// (`Config::port`, for rustdoc).
    pub(crate) fn markdown(lines: &[Line], links: Option<&str>) -> String {
        let cell = |s: &str| s.replace('|', "\\|");
        let mut out = String::from(
            "| variable | sets | default | values | meaning |\n| --- | --- | --- | --- | --- |\n",
        );
        for l in lines {
            let sets: Vec<String> = l
                .sets
                .split(", ")
                .map(|s| links.map_or(format!("`{s}`"), |ty| format!("[`{s}`]({ty}::{s})")))
                .collect();
            let default = if l.default.is_empty() { "—".to_string() } else { format!("`{}`", l.default) };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                l.var,
                cell(&sets.join(", ")),
                cell(&default),
                cell(l.values),
                cell(&l.doc)
            ));
        }
        out
    }

    /// `.env.example`'s lines: each variable commented out with its default,
    /// after its meaning and values.
    pub(crate) fn env_example(lines: &[Line]) -> String {
        let mut out = String::new();
        for l in lines {
            let text = format!("{} Values: {}.", l.doc, l.values).replace('`', "");
            let mut line = String::new();
            for word in text.split_whitespace() {
                if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > 76 {
                    out.push_str(&format!("# {}\n", std::mem::take(&mut line)));
                }
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(word);
            }
            out.push_str(&format!("# {line}\n# {}={}\n\n", l.var, l.default));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    /// `from_env`: a variable whose value is not UTF-8 is a problem, and
    /// unset for `from_vars` (a variable of its own, so that no other test
    /// sees it).
    #[test]
    fn read_env_refuses_values_that_are_not_utf8() {
        let name = "TRADECACHE_TEST_NOT_UTF8";
        std::env::set_var(name, std::ffi::OsStr::from_bytes(b"ab\xffc"));
        let e = read_env(|get| {
            assert_eq!(get(name), None);
            Problems::default().finish(())
        })
        .unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!((e.problems[0].field.as_str(), e.problems[0].value.as_str()), (name, "<not valid UTF-8>"));
        let e = read_env(|_| Err::<(), _>(ConfigError::one("x", "1", "2"))).unwrap_err();
        assert_eq!(e.problems.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(), ["x"]);
        std::env::remove_var(name);
    }
}
