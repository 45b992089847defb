//! Building blocks of key exports, all pure and streaming: the masking
//! engine for free text ([`mask`], with its catalogue in [`detectors`]), CSV
//! formula-injection neutralisation ([`csv_safe`]), the JSON / NDJSON / CSV
//! writers ([`format`]) and the export row of one API key ([`row`]); and the
//! parts that drive them: one export run over the store ([`jobs`]), the
//! server's job pool with files, progress, download tokens and retention
//! ([`service`]), the import of a migration export ([`import`]) and the
//! `export`/`import` commands ([`cli`]).

mod checks;
pub mod cli;
pub mod csv_safe;
pub mod detectors;
pub mod format;
pub mod import;
pub mod jobs;
pub mod mask;
pub mod row;
pub mod service;

pub use detectors::{detector_kinds, DetectorKind, KindSet};
pub use mask::{Finding, MaskConfig, MaskMode, Masker, PseudonymKey};
