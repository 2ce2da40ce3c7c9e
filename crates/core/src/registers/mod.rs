//! Register maps as data and their pure decoding.
//!
//! A map (`firmware-config/inverters/<name>.toml`) says which registers to read, in which blocks,
//! and how each becomes a normalised [`Metric`](crate::domain::Metric), a
//! [`DeviceState`](crate::domain::DeviceState) or an [`Alarm`](crate::domain::Alarm). This module
//! owns the map format, decoding and its inverse (for the simulator), and SunSpec chain discovery
//! as pure steps. It never does I/O beyond reading map files, and never knows about sockets.
//!
//! The API other modules rely on: [`Catalog`], [`RegisterMap::plan`] (blocks of function code,
//! start, count) and [`RegisterMap::decode`] over `(start, words)` pairs.

mod codec;
mod model;
pub mod sunspec;
mod vectors;

pub use codec::{Decoded, RegisterImage};
pub use model::{
    DataType, FunctionCode, ModelLoc, Numbering, ReadBlock, RegisterMap, SunspecChain, Timing,
    WordOrder,
};

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// A map file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

impl MapError {
    pub fn file(&self) -> &str {
        match self {
            MapError::Io { file, .. }
            | MapError::Parse { file, .. }
            | MapError::Invalid { file, .. } => file,
        }
    }

    /// What is wrong, without the file and key.
    pub fn message(&self) -> String {
        match self {
            MapError::Io { source, .. } => format!("cannot read: {source}"),
            MapError::Parse { message, .. } | MapError::Invalid { message, .. } => message.clone(),
        }
    }

    /// The key at fault, when known.
    pub fn key(&self) -> Option<&str> {
        match self {
            MapError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Registers that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("register {address} was not in the blocks read")]
    Missing { address: u16 },
    #[error("no model this map knows is in the device's SunSpec chain")]
    NoKnownModel,
    #[error("SunSpec chain: {0}")]
    Chain(String),
}

/// The register maps built into the binary, so it works from any directory.
const BUILTIN: &[(&str, &str)] = &[
    (
        "huawei_sun2000",
        include_str!("../../../../firmware-config/inverters/huawei_sun2000.toml"),
    ),
    (
        "sungrow_sg",
        include_str!("../../../../firmware-config/inverters/sungrow_sg.toml"),
    ),
    (
        "sunspec",
        include_str!("../../../../firmware-config/inverters/sunspec.toml"),
    ),
    (
        "solis",
        include_str!("../../../../firmware-config/inverters/solis.toml"),
    ),
    (
        "growatt",
        include_str!("../../../../firmware-config/inverters/growatt.toml"),
    ),
];

/// Every register map available, by name (the file stem).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    maps: HashMap<String, Arc<RegisterMap>>,
}

impl Catalog {
    /// The built-in maps. Fails only if a built-in file is broken (its vectors are run here).
    pub fn builtin() -> Result<Catalog, MapError> {
        let mut maps = HashMap::new();
        for (name, text) in BUILTIN {
            let file = format!("firmware-config/inverters/{name}.toml (built in)");
            let map = RegisterMap::parse(name, &file, text)?;
            maps.insert((*name).to_owned(), Arc::new(map));
        }
        Ok(Catalog { maps })
    }

    /// The built-in maps plus every `*.toml` in `dir`, which replace built-ins of the same name.
    pub fn with_dir(dir: &Path) -> Result<Catalog, MapError> {
        let mut c = Catalog::builtin()?;
        c.add_dir(dir)?;
        Ok(c)
    }

    /// Adds (or replaces) maps from every `*.toml` in `dir`.
    pub fn add_dir(&mut self, dir: &Path) -> Result<(), MapError> {
        let io = |e| MapError::Io {
            file: dir.display().to_string(),
            source: e,
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let file = path.display().to_string();
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(|e| MapError::Io {
                file: file.clone(),
                source: e,
            })?;
            let map = RegisterMap::parse(name, &file, &text)?;
            self.maps.insert(name.to_owned(), Arc::new(map));
        }
        Ok(())
    }

    pub fn names(&self) -> HashSet<String> {
        self.maps.keys().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<Arc<RegisterMap>> {
        self.maps.get(name).cloned()
    }
}

#[cfg(test)]
mod tests;
