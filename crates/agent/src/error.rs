//! The agent library's error type. Errors the agent acts on are typed in the
//! module that raises them (`ChannelError`, `VerifyError`, `ProviderError`,
//! `ConfigError`, `OnboardError`); this enum gathers them for the commands.

use std::path::PathBuf;

use crate::channel::ChannelError;
use crate::config::ConfigError;
use crate::onboard::OnboardError;
use crate::verify::VerifyError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Onboard(#[from] OnboardError),
    #[error(transparent)]
    Pki(#[from] rampart_pki::PkiError),
    /// A file of the state directory (or one a provider owns) could not be
    /// read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file the agent wrote itself does not parse: someone edited it, or
    /// the disk lost it.
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    /// A command that needs a trust was run before `onboard`.
    #[error("this device is not onboarded (state directory {}); run `rampart-agent onboard --package FILE` first", .0.display())]
    NotOnboarded(PathBuf),
    /// The tenant deleted the device, or it was offboarded.
    #[error("the device's trust was revoked ({0}); onboard it again with a new package")]
    Revoked(String),
    /// `run` found another `run` using the same state directory.
    #[error("another `rampart-agent run` is using the state directory {}; stop it first", .0.display())]
    Busy(PathBuf),
    /// `check-drift` could not get an answer from the running agent, or
    /// the read-back failed there.
    #[error("drift check: {0}")]
    DriftCheck(String),
    /// `offboard` could not get an answer from the running agent, or
    /// offboarding failed there.
    #[error("offboard: {0}")]
    Offboard(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
