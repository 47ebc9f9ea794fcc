//! The tracking plan the service enforces, reloadable without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use touchpoint_tracking_plan::TrackingPlan;

/// A loaded plan and its version string.
#[derive(Debug)]
pub struct LoadedPlan {
    /// The parsed plan.
    pub plan: TrackingPlan,
    /// Recorded on every stored message.
    pub version: Arc<str>,
}

/// Why the plan could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid plan.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Shared handle to the current plan.
pub struct PlanHandle {
    path: PathBuf,
    current: RwLock<Arc<LoadedPlan>>,
}

impl PlanHandle {
    /// Loads the plan at `path`.
    pub fn load(path: &Path) -> Result<PlanHandle, PlanError> {
        let loaded = read(path)?;
        Ok(PlanHandle {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    /// The file the plan is read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The plan in force now.
    pub fn current(&self) -> Arc<LoadedPlan> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the file; on error the previous plan stays in force.
    pub fn reload(&self) -> Result<Arc<LoadedPlan>, PlanError> {
        let loaded = Arc::new(read(&self.path)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded.clone();
        tracing::info!(version = %loaded.version, "tracking plan reloaded");
        Ok(loaded)
    }
}

fn read(path: &Path) -> Result<LoadedPlan, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
        path: path.to_owned(),
        source,
    })?;
    let plan = touchpoint_tracking_plan::parse(&text).map_err(|e| PlanError::Parse {
        path: path.to_owned(),
        line: e.line,
        message: e.kind.to_string(),
    })?;
    let version: Arc<str> = plan.version().into();
    Ok(LoadedPlan { plan, version })
}
