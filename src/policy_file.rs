//! The policy file (`--policy FILE`, TOML): per-repository-glob rules over the base policy.
//! It reads that one file and reports each mistake as one line naming file, rule and field.

use std::path::Path;

use serde::Deserialize;

use crate::plan::{Policies, Policy, Rule};
use crate::values::{hash_tag_regex, parse_duration_secs, regex, repo_globs};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Rules, first match wins.
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

/// One `[[rule]]`; a field left out comes from the command line and environment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    repos: Vec<String>,
    hash_tag_patterns: Option<Vec<String>>,
    hash_tag_keep: Option<usize>,
    keep_tags: Option<String>,
    older_than: Option<String>,
    min_age: Option<String>,
}

/// Reads and validates a policy file; every error names the file, the rule and the field.
pub fn load(path: &Path, base: &Policy) -> Result<Policies, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("policy file {}: {e}", path.display()))?;
    parse(&text, base).map_err(|e| format!("policy file {}: {e}", path.display()))
}

/// Parses a policy file's text over `base`.
pub fn parse(text: &str, base: &Policy) -> Result<Policies, String> {
    let file: File = toml::from_str(text).map_err(|e| {
        // toml's message spans several lines (the offending line, a caret): keep the gist.
        let msg = e.message().to_owned();
        match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}: {msg}")
            }
            None => msg,
        }
    })?;
    let mut rules = Vec::with_capacity(file.rule.len());
    for (i, spec) in file.rule.into_iter().enumerate() {
        let at = format!("rule {} (repos {:?})", i + 1, spec.repos);
        rules.push(rule(spec, base).map_err(|e| format!("{at}: {e}"))?);
    }
    Ok(Policies {
        base: base.clone(),
        rules,
    })
}

fn rule(spec: RuleSpec, base: &Policy) -> Result<Rule, String> {
    if spec.repos.is_empty() {
        return Err("repos is empty: name at least one repository glob".to_owned());
    }
    let repos = repo_globs("repos", &spec.repos)?;
    let mut policy = base.clone();
    if let Some(patterns) = spec.hash_tag_patterns {
        let mut it = patterns.iter();
        let first = it
            .next()
            .ok_or("hash_tag_patterns is empty: leave it out to use HASH_TAG_PATTERN")?;
        policy.hash_tag = hash_tag_regex("hash_tag_patterns", first)?;
        policy.extra_hash_tags = it
            .map(|p| hash_tag_regex("hash_tag_patterns", p))
            .collect::<Result<_, _>>()?;
    }
    if let Some(k) = spec.hash_tag_keep {
        policy.keep = k;
    }
    if let Some(k) = &spec.keep_tags {
        policy.keep_tags = Some(regex("keep_tags", k)?);
    }
    if let Some(o) = &spec.older_than {
        policy.older_than_secs = parse_duration_secs("older_than", o)?;
    }
    if let Some(m) = &spec.min_age {
        policy.min_age_secs = parse_duration_secs("min_age", m)?;
    }
    Ok(Rule {
        repos,
        patterns: spec.repos,
        policy,
    })
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;
    use crate::plan::DEFAULT_HASH_TAG_PATTERN;

    fn base() -> Policy {
        Policy::new(
            Regex::new(DEFAULT_HASH_TAG_PATTERN).expect("pattern"),
            10,
            3600,
            0,
        )
    }

    #[test]
    fn first_matching_rule_wins_and_gaps_come_from_the_base() {
        let p = parse(
            r#"
[[rule]]
repos = ["team-a/*"]
hash_tag_keep = 3
keep_tags = "^release-"

[[rule]]
repos = ["team-a/**", "infra/*"]
hash_tag_patterns = ["^[0-9a-f]{40}$", "^git-"]
older_than = "30d"
min_age = "2h"
"#,
            &base(),
        )
        .expect("valid");
        let a = p.for_repo("team-a/api");
        assert_eq!((a.keep, a.min_age_secs, a.older_than_secs), (3, 3600, 0));
        assert!(a.is_kept_tag("release-1") && !a.is_kept_tag("v1"));
        let deep = p.for_repo("team-a/x/y");
        assert_eq!(deep.keep, 10);
        assert_eq!(deep.older_than_secs, 30 * 86_400);
        assert_eq!(deep.min_age_secs, 7200);
        assert!(deep.is_hash_tag("git-abc") && !deep.is_hash_tag("abc1234"));
        assert_eq!(p.for_repo("other").keep, 10);
        assert!(p.for_repo("other").is_hash_tag("abc1234"));
    }

    #[test]
    fn errors_name_the_rule_and_the_field() {
        for (text, says) in [
            (
                "[[rule]]\nrepos = []\n",
                "rule 1 (repos []): repos is empty",
            ),
            (
                "[[rule]]\nrepos = [\"a\"]\nkeep_tags = \"(\"\n",
                "rule 1 (repos [\"a\"]): keep_tags \"(\" is not a valid regex",
            ),
            (
                "[[rule]]\nrepos = [\"a\"]\nolder_than = \"soon\"\n",
                "older_than \"soon\"",
            ),
            (
                "[[rule]]\nrepos = [\"a\"]\nhash_tag_kep = 3\n",
                "line 3: unknown field `hash_tag_kep`",
            ),
            (
                "[[rule]]\nrepos = [\"[\"]\n",
                "repos \"[\" is not a valid glob",
            ),
            ("[[rule]]\nrepos = [\"a\"]\nhash_tag_keep = -1\n", "line 3"),
        ] {
            let e = parse(text, &base()).expect_err(text);
            assert!(e.contains(says), "{e:?} should contain {says:?}");
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
    }
}
