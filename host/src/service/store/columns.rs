//! The one place where the service's domain types become text columns and
//! back: each enum has one spelling, used by the SQL and by the dashboard
//! (through `Display`); a value the store cannot read back is
//! [`StoreError::Corrupt`].

use std::fmt;

use nasflat_shared::SearchSpace;

use super::{StoreError, StoreResult, int};
use crate::service::domain::{JobState, Purpose, Subject, TransferState, Trigger};

/// A domain value stored as one text column.
pub trait Column: Sized + Copy + 'static {
    /// Every value with its spelling.
    const ALL: &'static [(Self, &'static str)];
    /// What the column holds (for corruption messages).
    const WHAT: &'static str;
}

/// The stored spelling of a value.
pub fn text<T: Column + PartialEq>(value: T) -> &'static str {
    T::ALL
        .iter()
        .find(|(v, _)| *v == value)
        .map_or("", |(_, name)| name)
}

/// The value a stored spelling names.
pub fn parse<T: Column + PartialEq>(stored: &str) -> StoreResult<T> {
    T::ALL
        .iter()
        .find(|(_, name)| *name == stored)
        .map(|(v, _)| *v)
        .ok_or_else(|| StoreError::Corrupt(format!("{} `{stored}`", T::WHAT)))
}

impl Column for Purpose {
    const ALL: &'static [(Self, &'static str)] = &[
        (Purpose::Sample, "sample"),
        (Purpose::Extra, "extra"),
        (Purpose::Verify, "verify"),
        (Purpose::Model, "model"),
        (Purpose::Adhoc, "adhoc"),
    ];
    const WHAT: &'static str = "job purpose";
}

impl Column for JobState {
    const ALL: &'static [(Self, &'static str)] = &[
        (JobState::Queued, "queued"),
        (JobState::Leased, "leased"),
        (JobState::Done, "done"),
        (JobState::Failed, "failed"),
    ];
    const WHAT: &'static str = "job state";
}

impl Column for TransferState {
    const ALL: &'static [(Self, &'static str)] = &[
        (TransferState::Queued, "queued"),
        (TransferState::Running, "running"),
        (TransferState::Done, "done"),
        (TransferState::Failed, "failed"),
    ];
    const WHAT: &'static str = "transfer state";
}

impl Column for Trigger {
    const ALL: &'static [(Self, &'static str)] =
        &[(Trigger::Auto, "auto"), (Trigger::Manual, "manual")];
    const WHAT: &'static str = "transfer trigger";
}

impl Column for SearchSpace {
    const ALL: &'static [(Self, &'static str)] =
        &[(SearchSpace::Nb201, "nb201"), (SearchSpace::Fbnet, "fbnet")];
    const WHAT: &'static str = "search space";
}

macro_rules! display_as_column {
    ($($ty:ty),*) => {
        $(impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(text(*self))
            }
        })*
    };
}

display_as_column!(Purpose, JobState, TransferState, Trigger);

/// The `kind` column of a subject.
const ARCH: &str = "arch";
const MODEL: &str = "model";

/// A subject's columns: (kind, space, arch_index, model_id).
pub fn subject_columns(
    subject: &Subject,
) -> (
    &'static str,
    Option<&'static str>,
    Option<i64>,
    Option<String>,
) {
    match subject {
        Subject::Arch { space, arch_index } => {
            (ARCH, Some(text(*space)), Some(int(*arch_index)), None)
        }
        Subject::Model { model_id } => (MODEL, None, None, Some(model_id.clone())),
    }
}

/// The subject of (space, arch_index, model_id) columns: an architecture
/// when a space is set, a model otherwise.
pub fn subject(
    space: Option<&str>,
    arch_index: Option<i64>,
    model_id: Option<String>,
) -> StoreResult<Subject> {
    match (space, arch_index, model_id) {
        (Some(space), Some(index), None) => Ok(Subject::Arch {
            space: parse(space)?,
            arch_index: usize::try_from(index)
                .map_err(|_| StoreError::Corrupt(format!("arch_index {index}")))?,
        }),
        (None, None, Some(model_id)) => Ok(Subject::Model { model_id }),
        (space, index, model) => Err(StoreError::Corrupt(format!(
            "neither an architecture nor a model: space {space:?}, arch_index {index:?}, model_id {model:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling reads back as its value, and an unknown one is corrupt.
    #[test]
    fn spellings_round_trip() {
        fn check<T: Column + PartialEq + fmt::Debug>() {
            for (v, name) in T::ALL {
                assert_eq!(text(*v), *name);
                assert_eq!(parse::<T>(name).ok(), Some(*v));
            }
            assert!(parse::<T>("bogus").is_err());
        }
        check::<Purpose>();
        check::<JobState>();
        check::<TransferState>();
        check::<Trigger>();
        check::<SearchSpace>();
        let arch = Subject::Arch {
            space: SearchSpace::Fbnet,
            arch_index: 7,
        };
        let (_, space, index, model) = subject_columns(&arch);
        assert_eq!(subject(space, index, model).ok(), Some(arch));
        assert!(subject(Some("nb201"), None, None).is_err());
    }
}
