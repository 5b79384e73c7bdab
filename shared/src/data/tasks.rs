//! Task definitions (`tasks.json` format): source and target device lists.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SpaceError};
use crate::space::SearchSpace;

/// One few-shot transfer task: pretrain on `train`, transfer to each of `test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The paper's `--task_index` (0 = ND/FD, 1-4 = N1-N4/F1-F4, 5 = NA/FA).
    #[serde(default)]
    pub task_index: Option<u32>,
    /// Source devices.
    pub train: Vec<String>,
    /// Target devices.
    pub test: Vec<String>,
}

/// Tasks per space, keyed by name. Serialises to exactly the `tasks.json` layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSet(pub BTreeMap<SearchSpace, BTreeMap<String, Task>>);

impl TaskSet {
    /// Parses `tasks.json`-formatted text.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|source| SpaceError::Json {
            file: file.to_string(),
            source,
        })
    }

    /// Reads a task file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SpaceError::Io {
            path: name.clone(),
            source,
        })?;
        TaskSet::parse(&name, &text)
    }

    /// The tasks of a space, in name order (empty if none).
    pub fn tasks(&self, space: SearchSpace) -> impl Iterator<Item = (&str, &Task)> {
        self.0
            .get(&space)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v)))
    }

    /// One task by name.
    pub fn task(&self, space: SearchSpace, name: &str) -> Result<&Task> {
        self.0
            .get(&space)
            .and_then(|m| m.get(name))
            .ok_or_else(|| SpaceError::UnknownTask {
                space: space.to_string(),
                task: name.to_string(),
                known: self
                    .tasks(space)
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}
