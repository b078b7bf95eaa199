//! The process's exit codes, as a type: every stage returns an [`Exit`], and a run made of
//! several steps (a cleanup, then a collection) keeps the worst with [`Exit::merge`].

/// How a run ended; `--help` lists the codes ("Exit codes").
/// The variants are declared in order of severity, which [`Exit::merge`] relies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exit {
    /// 0: everything done.
    Ok,
    /// 4: finished, but something was skipped (a repository failed closed, a warning, a
    /// deletion skipped because storage changed).
    Skipped,
    /// 3: finished, some deletions failed.
    Partial,
    /// 2: usage error (a flag or environment variable is wrong).
    Usage,
    /// 1: fatal error before deleting (or a stop that makes every further delete fail).
    Fatal,
    /// 130: stopped by SIGINT or SIGTERM.
    Interrupted,
}

impl Exit {
    /// The number the process exits with.
    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Fatal => 1,
            Exit::Usage => 2,
            Exit::Partial => 3,
            Exit::Skipped => 4,
            Exit::Interrupted => 130,
        }
    }

    /// The exit of a run whose steps ended `self` and `other`: the worse of the two (in the
    /// order of the variants: skipped beats ok, a failed delete beats a skip, and so on).
    pub fn merge(self, other: Exit) -> Exit {
        self.max(other)
    }

    /// Whether the run went through (0, or 4: everything it did succeeded).
    pub fn succeeded(self) -> bool {
        matches!(self, Exit::Ok | Exit::Skipped)
    }

    /// Exits the process with this code.
    pub fn exit(self) -> ! {
        std::process::exit(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn the_worse_step_decides_the_exit() {
        assert_eq!(Exit::Ok.merge(Exit::Skipped), Exit::Skipped);
        assert_eq!(Exit::Skipped.merge(Exit::Ok), Exit::Skipped);
        assert_eq!(Exit::Skipped.merge(Exit::Partial), Exit::Partial);
        assert_eq!(Exit::Partial.merge(Exit::Fatal), Exit::Fatal);
        assert_eq!(Exit::Fatal.merge(Exit::Interrupted), Exit::Interrupted);
        assert_eq!(Exit::Ok.merge(Exit::Ok), Exit::Ok);
    }

    #[test]
    fn codes_are_the_documented_numbers() {
        let codes: Vec<i32> = [
            Exit::Ok,
            Exit::Fatal,
            Exit::Usage,
            Exit::Partial,
            Exit::Skipped,
            Exit::Interrupted,
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 130]);
    }
}
