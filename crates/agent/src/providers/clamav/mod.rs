//! The `clamav` provider: ClamAV's clamd and clamonacc on Linux.
//!
//! **What it owns.** A managed block at the top of clamd.conf
//! (`config_path`), between `# BEGIN rampart managed` and
//! `# END rampart managed`; the rest of the file is the administrator's and
//! is never changed. ClamAV keeps the first occurrence of a directive, so the
//! block's values win (`conf.rs`). It also runs clamonacc while real-time
//! protection is on: started by the agent, it outlives the agent (protection
//! does not pause while the agent restarts) and the next agent adopts it.
//!
//! | setting | directives |
//! |---|---|
//! | `scan_archives` | `ScanArchive yes/no` |
//! | `pua_protection` | `DetectPUA yes` (block) / `no` (off); `audit` is not applicable |
//! | `max_file_size_mb`, `max_scan_size_mb` | `MaxFileSize nM`, `MaxScanSize nM` |
//! | `excluded_paths` | `ExcludePath ^/dir/` or `^/file$`; folders also `OnAccessExcludePath` |
//! | `excluded_extensions` | `ExcludePath \.ext$` |
//! | `real_time_protection` | `OnAccessPrevention yes` + `OnAccessIncludePath` (from the agent configuration) + `OnAccessExcludeUname` (clamd's `User`, else `clamav`; clamonacc requires one) + clamonacc running; `false`: `OnAccessPrevention no` and no clamonacc |
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
//! back as `null` (not in force; the next pass restarts it) — unless this
//! agent saw that clamd load the same value before the change, so that a
//! hand edit of one line puts only that setting out of force. Real-time
//! protection reads back `true` only while a clamonacc that loaded the
//! file's current on-access lines runs. A hand edit of the file therefore
//! shows up as drift and is corrected by the next enforcement. `clamconf`
//! refusing the new file, a restart that fails (the previous file is then
//! restored and clamd restarted with it) and clamonacc exiting are errors
//! in ClamAV's own words.
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
