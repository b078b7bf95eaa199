//! clap's usage errors as regsweep prints them: what is wrong and clap's tips, without the
//! usage block (`--help` has it), built from the error's kind and context through clap's
//! [`ErrorFormatter`] API. A value parser's [`BadValue`] is shown as it is, since it
//! names the variable and the value already.

use std::error::Error as _;
use std::fmt::Write as _;

use clap::builder::StyledStr;
use clap::error::{ContextKind, ContextValue, ErrorFormatter, ErrorKind};

use super::parsers::BadValue;

/// Formats a clap error as `error: …` plus one `  tip: …` line per suggestion.
pub struct Terse;

/// A clap error formatted by [`Terse`].
pub type UsageMessage = clap::error::Error<Terse>;

impl ErrorFormatter for Terse {
    fn format_error(error: &clap::error::Error<Self>) -> StyledStr {
        let mut out = StyledStr::new();
        let _ = write!(out, "error: {}", what(error));
        for tip in tips(error) {
            let _ = write!(out, "\n  tip: {tip}");
        }
        out
    }
}

/// The message of a usage error: the text after `error: `, tips on lines of their own.
pub fn message(error: clap::Error) -> String {
    let terse: UsageMessage = error.apply();
    let text = terse.render().to_string();
    text.strip_prefix("error: ").unwrap_or(&text).to_owned()
}

/// What is wrong, from the error's kind and context.
fn what(error: &clap::error::Error<Terse>) -> String {
    let arg = string(error, ContextKind::InvalidArg);
    let value = string(error, ContextKind::InvalidValue);
    match (error.kind(), arg, value) {
        (ErrorKind::ValueValidation, Some(arg), Some(value)) => {
            match error.source().and_then(|s| s.downcast_ref::<BadValue>()) {
                Some(bad) => bad.to_string(),
                None => match error.source() {
                    Some(why) => format!("invalid value '{value}' for '{arg}': {why}"),
                    None => format!("invalid value '{value}' for '{arg}'"),
                },
            }
        }
        (ErrorKind::InvalidValue, Some(arg), Some(value)) => {
            let mut s = if value.is_empty() {
                format!("a value is required for '{arg}' but none was supplied")
            } else {
                format!("invalid value '{value}' for '{arg}'")
            };
            if let Some(ContextValue::Strings(valid)) = error.get(ContextKind::ValidValue)
                && !valid.is_empty()
            {
                let _ = write!(s, "\n  [possible values: {}]", valid.join(", "));
            }
            s
        }
        (ErrorKind::UnknownArgument, Some(arg), _) => format!("unexpected argument '{arg}' found"),
        (ErrorKind::TooManyValues, Some(arg), Some(value)) => {
            format!("unexpected value '{value}' for '{arg}' found; no more were expected")
        }
        (ErrorKind::NoEquals, Some(arg), _) => {
            format!("equal sign is needed when assigning values to '{arg}'")
        }
        (ErrorKind::ArgumentConflict, Some(arg), _) => conflict(error, &arg),
        (ErrorKind::MissingRequiredArgument, _, _) => match strings(error, ContextKind::InvalidArg)
        {
            Some(args) => format!(
                "the following required arguments were not provided: {}",
                args.join(", ")
            ),
            None => kind_text(error),
        },
        (ErrorKind::InvalidSubcommand, _, _) => {
            match string(error, ContextKind::InvalidSubcommand) {
                Some(sub) => format!("unrecognized subcommand '{sub}'"),
                None => kind_text(error),
            }
        }
        _ => kind_text(error),
    }
}

/// `the argument 'A' cannot be used with 'B'` (or with several, or twice).
fn conflict(error: &clap::error::Error<Terse>, arg: &str) -> String {
    match error.get(ContextKind::PriorArg) {
        Some(ContextValue::String(prior)) if prior == arg => {
            format!("the argument '{arg}' cannot be used multiple times")
        }
        Some(ContextValue::String(prior)) => {
            format!("the argument '{arg}' cannot be used with '{prior}'")
        }
        Some(ContextValue::Strings(prior)) => {
            format!(
                "the argument '{arg}' cannot be used with: {}",
                prior.join(", ")
            )
        }
        _ => format!(
            "the argument '{arg}' cannot be used with one or more of the other specified arguments"
        ),
    }
}

/// clap's tips: a similar argument, subcommand or value, and its free-form suggestions.
fn tips(error: &clap::error::Error<Terse>) -> Vec<String> {
    let mut tips = Vec::new();
    for (kind, what) in [
        (ContextKind::SuggestedSubcommand, "subcommand"),
        (ContextKind::SuggestedArg, "argument"),
        (ContextKind::SuggestedValue, "value"),
    ] {
        match error.get(kind) {
            Some(ContextValue::String(one)) => {
                tips.push(format!("a similar {what} exists: '{one}'"));
            }
            Some(ContextValue::Strings(many)) if many.len() == 1 => {
                tips.push(format!("a similar {what} exists: '{}'", many[0]));
            }
            Some(ContextValue::Strings(many)) if !many.is_empty() => {
                let quoted: Vec<String> = many.iter().map(|s| format!("'{s}'")).collect();
                tips.push(format!("some similar {what}s exist: {}", quoted.join(", ")));
            }
            _ => {}
        }
    }
    if let Some(ContextValue::StyledStrs(more)) = error.get(ContextKind::Suggested) {
        tips.extend(more.iter().map(ToString::to_string));
    }
    tips
}

/// A context value that is one string.
fn string(error: &clap::error::Error<Terse>, kind: ContextKind) -> Option<String> {
    match error.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A context value that is a list of strings.
fn strings(error: &clap::error::Error<Terse>, kind: ContextKind) -> Option<Vec<String>> {
    match error.get(kind) {
        Some(ContextValue::Strings(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The kind's own description, where the context says nothing more.
fn kind_text(error: &clap::error::Error<Terse>) -> String {
    error
        .kind()
        .as_str()
        .unwrap_or("the command line is not valid")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::message;
    use crate::config::Cli;

    fn error_of(args: &[&str]) -> String {
        let mut argv = vec!["regsweep"];
        argv.extend_from_slice(args);
        message(Cli::try_parse_from(argv).expect_err("a usage error"))
    }

    #[test]
    fn a_misspelt_flag_names_it_and_the_near_one() {
        let e = error_of(&["--hash-tag-patern", "x"]);
        assert!(
            e.starts_with("unexpected argument '--hash-tag-patern' found"),
            "{e}"
        );
        assert!(
            e.contains("\n  tip: a similar argument exists: '--hash-tag-pattern'"),
            "{e}"
        );
        assert!(!e.contains("Usage"), "{e}");
    }

    #[test]
    fn a_bad_value_is_the_parser_s_own_line() {
        let e = error_of(&["--hash-tag-keep", "ten"]);
        assert_eq!(
            e,
            r#"HASH_TAG_KEEP "ten" is not a non-negative whole number"#
        );
    }

    #[test]
    fn a_missing_argument_and_a_wrong_choice_are_named() {
        let e = error_of(&["plan"]);
        assert!(
            e.contains("required arguments were not provided") && e.contains("--out"),
            "{e}"
        );
        let e = error_of(&["--output", "yaml"]);
        assert!(
            e.contains("'yaml'") && e.contains("[possible values: text, json]"),
            "{e}"
        );
    }
}
