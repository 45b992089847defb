//! Building blocks of key exports, all pure and streaming: the masking
//! engine for free text ([`mask`], with its catalogue in [`detectors`]), CSV
//! formula-injection neutralisation ([`csv_safe`]), the JSON / NDJSON / CSV
//! writers ([`format`]) and the export row of one API key ([`row`]).
//!
//! This module does no I/O of its own beyond the `std::io::Write` it is
//! handed: reading the store, export jobs, files, download tokens and
//! progress belong to the code that drives these pieces.

mod checks;
pub mod csv_safe;
pub mod detectors;
pub mod format;
pub mod mask;
pub mod row;

pub use detectors::{detector_kinds, DetectorKind, KindSet};
pub use mask::{Finding, MaskConfig, MaskMode, Masker, PseudonymKey};
