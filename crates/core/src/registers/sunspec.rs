//! SunSpec model-chain discovery, as pure steps: the poller does the reads, this module says what to
//! read next and what the answers mean.
//!
//! Discovery: read 2 registers at each candidate base looking for "SunS"; then at base+2 a model id
//! and its length L; the next model starts L+2 further; the chain ends at id 0xFFFF.

use super::model::{ModelLoc, SunspecChain};
use super::{DecodeError, RegisterImage};

/// "SunS" as two registers.
pub const MARKER: [u16; 2] = [0x5375, 0x6E53];

/// End-of-chain model id.
pub const END: u16 = 0xFFFF;

/// Guards against a device whose chain never ends.
const MAX_MODELS: usize = 64;

/// Whether two registers read at a base are the SunSpec marker.
pub fn is_marker(words: &[u16]) -> bool {
    words.len() >= 2 && words[0] == MARKER[0] && words[1] == MARKER[1]
}

/// The fixed length of the models the built-in map knows (model 160 depends on its module count).
pub fn model_len(id: u16, mppt_modules: u16) -> Option<u16> {
    match id {
        1 => Some(66),
        101..=103 => Some(50),
        111..=113 => Some(60),
        120 => Some(26),
        160 => Some(8 + 20 * mppt_modules),
        _ => None,
    }
}

/// The layout a simulated SunSpec device uses: models back to back after the marker.
pub fn default_chain(base: u16, ids: &[u16], mppt_modules: u16) -> Result<SunspecChain, String> {
    let mut models = Vec::with_capacity(ids.len());
    let mut address = base
        .checked_add(2)
        .ok_or_else(|| "base too high".to_owned())?;
    for id in ids {
        let len = model_len(*id, mppt_modules).ok_or_else(|| {
            format!("model {id} has no known length (use 1, 101-103, 111-113, 120, 160)")
        })?;
        models.push(ModelLoc {
            id: *id,
            address,
            len,
        });
        address = address
            .checked_add(len + 2)
            .ok_or_else(|| "chain runs past register 65535".to_owned())?;
    }
    Ok(SunspecChain { base, models })
}

/// Writes the marker, every model header and the end marker of a chain into an image.
pub fn write_chain(chain: &SunspecChain, img: &mut RegisterImage) {
    img.insert(chain.base, MARKER[0]);
    img.insert(chain.base.wrapping_add(1), MARKER[1]);
    let mut end = chain.base.wrapping_add(2);
    for m in &chain.models {
        img.insert(m.address, m.id);
        img.insert(m.address.wrapping_add(1), m.len);
        end = m.address.wrapping_add(m.len).wrapping_add(2);
    }
    img.insert(end, END);
    img.insert(end.wrapping_add(1), 0);
}

/// Walks a chain one header at a time.
#[derive(Debug, Clone)]
pub struct ChainWalker {
    chain: SunspecChain,
    next: u16,
}

/// What the walker wants after a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read 2 registers at this address next.
    Read(u16),
    Done(SunspecChain),
}

impl ChainWalker {
    /// Starts after the marker was found at `base`; the first header is at base + 2.
    pub fn new(base: u16) -> ChainWalker {
        ChainWalker {
            chain: SunspecChain {
                base,
                models: Vec::new(),
            },
            next: base.wrapping_add(2),
        }
    }

    /// The address of the header to read next.
    pub fn next_address(&self) -> u16 {
        self.next
    }

    /// Feeds the two registers read at [`Self::next_address`].
    pub fn feed(&mut self, words: &[u16]) -> Result<Step, DecodeError> {
        let [id, len] = match words {
            [id, len, ..] => [*id, *len],
            _ => return Err(DecodeError::Chain("short model header".into())),
        };
        if id == END {
            return Ok(Step::Done(self.chain.clone()));
        }
        if self.chain.models.len() >= MAX_MODELS {
            return Err(DecodeError::Chain(format!(
                "more than {MAX_MODELS} models without an end marker"
            )));
        }
        self.chain.models.push(ModelLoc {
            id,
            address: self.next,
            len,
        });
        self.next = self
            .next
            .checked_add(len)
            .and_then(|a| a.checked_add(2))
            .ok_or_else(|| DecodeError::Chain(format!("model {id} runs past register 65535")))?;
        Ok(Step::Read(self.next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walker_follows_a_written_chain() {
        let chain = default_chain(40000, &[1, 103, 160], 2).expect("chain");
        let mut img = RegisterImage::new();
        write_chain(&chain, &mut img);
        let read2 = |a: u16| {
            vec![
                img.get(&a).copied().unwrap_or(0),
                img.get(&(a + 1)).copied().unwrap_or(0),
            ]
        };
        assert!(is_marker(&read2(40000)));
        let mut w = ChainWalker::new(40000);
        let found = loop {
            match w.feed(&read2(w.next_address())).expect("step") {
                Step::Read(_) => continue,
                Step::Done(c) => break c,
            }
        };
        assert_eq!(found, chain);
        assert_eq!(found.models[1].address, 40070);
        assert_eq!(found.models[2].len, 48);
    }

    #[test]
    fn endless_chain_is_refused() {
        let mut w = ChainWalker::new(0);
        let mut result = Ok(Step::Read(0));
        for _ in 0..100 {
            result = w.feed(&[7, 0]);
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err());
    }
}
