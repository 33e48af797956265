//! The `clamav` provider: ClamAV's clamd and clamonacc on Linux.
//!
//! **What it owns.** A managed block at the top of clamd.conf
//! (`config_path`), between `# BEGIN rampart managed` and
//! `# END rampart managed`; the rest of the file is the administrator's and
//! is never changed. ClamAV keeps the first occurrence of a directive, so the
//! block's values win (`conf.rs`). It also runs clamonacc, as its own child,
//! while real-time protection is on.
//!
//! | setting | directives |
//! |---|---|
//! | `scan_archives` | `ScanArchive yes/no` |
//! | `pua_protection` | `DetectPUA yes` (block) / `no` (off); `audit` is not applicable |
//! | `max_file_size_mb`, `max_scan_size_mb` | `MaxFileSize nM`, `MaxScanSize nM` |
//! | `excluded_paths` | `ExcludePath ^/dir/` or `^/file$`; folders also `OnAccessExcludePath` |
//! | `excluded_extensions` | `ExcludePath \.ext$` |
//! | `real_time_protection` | `OnAccessPrevention yes` + `OnAccessIncludePath` (from the agent configuration) + clamonacc running; `false`: `OnAccessPrevention no` and no clamonacc |
//! | `excluded_processes` | none: not applicable (clamonacc excludes users, not processes) |
//!
//! **Apply.** The new file is checked with `clamconf` (ClamAV's own parser)
//! when it is installed, then replaced atomically. clamd's `RELOAD` command
//! only reloads the signature database — clamd reads clamd.conf once, at
//! start (checked with ClamAV 1.4: an `ExcludePath` added before `RELOAD`
//! is ignored by `CONTSCAN` until clamd restarts) — so the provider runs
//! `restart_command` and waits until clamd answers `PING` again. clamonacc,
//! which also reads the file only at start, is restarted after it.
//!
//! **Read-back.** The block is read again and translated back to settings;
//! clamd must answer `PING`, and the clamd process holding the socket (found
//! through `/proc`) must have started after clamd.conf last changed —
//! otherwise it runs an older configuration, and the clamd settings read
//! back as `null` (not in force; the next pass restarts it). Real-time
//! protection reads back `true` only while a clamonacc started after the
//! last change runs. A hand edit of the file therefore shows up as drift
//! and is corrected by the next enforcement.
//!
//! **Removal.** Every ClamAV setting's removal is `revert`: its lines leave
//! the block, so clamd's own default (or the administrator's line below the
//! block) applies again; reverting real-time protection stops clamonacc.

pub mod conf;
pub mod config;

#[cfg(unix)]
mod clamd;
#[cfg(unix)]
mod procs;
#[cfg(unix)]
mod provider;

#[cfg(unix)]
pub use provider::ClamavProvider;
