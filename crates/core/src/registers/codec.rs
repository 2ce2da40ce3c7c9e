//! Pure decoding (register blocks → normalised readings) and its inverse (readings → register
//! image) used by the simulator and by the map self-tests.

use super::model::{AlarmKind, DataType, Field, RegisterMap, TextField, WordOrder};
use super::{sunspec, DecodeError};
use crate::domain::{Alarm, DeviceState, Readings};
use std::collections::BTreeMap;

/// Everything one poll yields: the readings plus what identifies the device.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    pub readings: Readings,
    pub serial: Option<String>,
    pub model: Option<String>,
}

/// A register image: PDU address → word. What a simulated device serves.
pub type RegisterImage = BTreeMap<u16, u16>;

/// Looks words up in the blocks a poll read.
struct Blocks<'a>(&'a [(u16, Vec<u16>)]);

impl Blocks<'_> {
    fn word(&self, address: u16) -> Option<u16> {
        self.0.iter().find_map(|(start, words)| {
            let i = usize::from(address.checked_sub(*start)?);
            words.get(i).copied()
        })
    }

    /// One or two consecutive words without allocating (the second is 0 when `n` is 1): numeric
    /// fields, states and alarms are never longer.
    fn short(&self, address: u16, n: u16) -> Result<[u16; 2], DecodeError> {
        debug_assert!((1..=2).contains(&n), "a short read is 1 or 2 words");
        let mut out = [0u16; 2];
        for (i, slot) in (0..n.min(2)).zip(out.iter_mut()) {
            let a = address
                .checked_add(i)
                .ok_or(DecodeError::Missing { address })?;
            *slot = self.word(a).ok_or(DecodeError::Missing { address: a })?;
        }
        Ok(out)
    }

    fn words(&self, address: u16, n: u16) -> Result<Vec<u16>, DecodeError> {
        (0..n)
            .map(|i| {
                let a = address
                    .checked_add(i)
                    .ok_or(DecodeError::Missing { address })?;
                self.word(a).ok_or(DecodeError::Missing { address: a })
            })
            .collect()
    }
}

fn join(order: WordOrder, w: &[u16]) -> u32 {
    let (hi, lo) = match order {
        WordOrder::HighFirst => (w[0], w[1]),
        WordOrder::LowFirst => (w[1], w[0]),
    };
    (u32::from(hi) << 16) | u32::from(lo)
}

fn split(order: WordOrder, v: u32) -> [u16; 2] {
    let hi = (v >> 16) as u16;
    let lo = (v & 0xFFFF) as u16;
    match order {
        WordOrder::HighFirst => [hi, lo],
        WordOrder::LowFirst => [lo, hi],
    }
}

/// Rounds away binary noise (0.1 × 2345 = 234.50000000000003) without touching real precision.
fn tidy(v: f64) -> f64 {
    let r = (v * 1e6).round() / 1e6;
    if r.is_finite() {
        r
    } else {
        v
    }
}

fn text(words: &[u16]) -> Option<String> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    let s: String = String::from_utf8_lossy(&bytes)
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    (!s.is_empty()).then_some(s)
}

impl RegisterMap {
    /// Decodes the blocks of one poll (`(start PDU address, words)`, as read by [`Self::plan`])
    /// into normalised readings. Values at their "not implemented" sentinel are left out.
    pub fn decode(&self, blocks: &[(u16, Vec<u16>)]) -> Result<Readings, DecodeError> {
        self.readings(&Blocks(blocks))
    }

    /// [`Self::decode`] plus the serial number and model the device reports.
    pub fn decode_full(&self, blocks: &[(u16, Vec<u16>)]) -> Result<Decoded, DecodeError> {
        let b = Blocks(blocks);
        let readings = self.readings(&b)?;
        let serial = self.read_text(&b, self.serial.as_ref())?;
        let mut model = self.read_text(&b, self.model.as_ref())?;
        if model.is_none() {
            if let Some(a) = self.model_code.as_ref().and_then(|l| self.place(l)) {
                let w = b.short(a, 1)?[0];
                if w != 0xFFFF {
                    model = Some(format!("0x{w:04X}"));
                }
            }
        }
        Ok(Decoded {
            readings,
            serial,
            model,
        })
    }

    fn readings(&self, b: &Blocks<'_>) -> Result<Readings, DecodeError> {
        let mut out = Decoded::default();
        out.readings.values.reserve_exact(self.fields.len());
        for f in &self.fields {
            let Some(address) = self.place(&f.loc) else {
                continue;
            };
            if let Some(v) = self.field_value(b, f, address)? {
                out.readings.set(f.metric, v);
            }
        }
        if let Some((t, a)) = self.state_table() {
            {
                let raw = u32::from(b.short(a, 1)?[0]);
                let state = t
                    .values
                    .iter()
                    .find(|(r, _, _)| *r == raw)
                    .map_or(t.otherwise, |(_, s, _)| *s);
                out.readings.state = Some(state);
            }
        }
        for t in &self.alarms {
            let Some(a) = self.place(&t.loc) else {
                continue;
            };
            if !t.only_in_states.is_empty() {
                let state = out.readings.state.unwrap_or(DeviceState::Unknown);
                if !t.only_in_states.contains(&state) {
                    continue;
                }
            }
            let w = b.short(a, t.words)?;
            let raw = if t.words == 2 {
                join(self.word_order, &w)
            } else {
                u32::from(w[0])
            };
            let all_ones = if t.words == 2 { u32::MAX } else { 0xFFFF };
            match t.kind {
                AlarmKind::Bits => {
                    // An all-ones bit field is "not implemented", not every alarm at once.
                    if raw == all_ones {
                        continue;
                    }
                    for bit in 0..(16 * u32::from(t.words)) {
                        if raw & (1 << bit) == 0 {
                            continue;
                        }
                        let listed = t.entries.iter().find(|(b, _, _, _)| *b == bit);
                        out.readings.alarms.push(match listed {
                            Some((_, en, zh, grid)) => Alarm {
                                code: format!("{}.b{bit}", t.code),
                                text_en: en.clone(),
                                text_zh: zh.clone(),
                                grid_loss: *grid,
                            },
                            None => Alarm {
                                code: format!("{}.b{bit}", t.code),
                                text_en: format!("unlisted alarm bit {bit}"),
                                text_zh: format!("未定义的告警位 {bit}"),
                                grid_loss: false,
                            },
                        });
                    }
                }
                AlarmKind::Code => {
                    if raw == 0 || raw == all_ones {
                        continue;
                    }
                    let listed = t.entries.iter().find(|(v, _, _, _)| *v == raw);
                    out.readings.alarms.push(match listed {
                        Some((_, en, zh, grid)) => Alarm {
                            code: format!("{}.0x{raw:04X}", t.code),
                            text_en: en.clone(),
                            text_zh: zh.clone(),
                            grid_loss: *grid,
                        },
                        None => Alarm {
                            code: format!("{}.0x{raw:04X}", t.code),
                            text_en: format!("fault code {raw}"),
                            text_zh: format!("故障代码 {raw}"),
                            grid_loss: false,
                        },
                    });
                }
            }
        }
        Ok(out.readings)
    }

    fn read_text(
        &self,
        b: &Blocks<'_>,
        t: Option<&TextField>,
    ) -> Result<Option<String>, DecodeError> {
        let Some(t) = t else { return Ok(None) };
        let Some(a) = self.place(&t.loc) else {
            return Ok(None);
        };
        Ok(text(&b.words(a, t.words)?))
    }

    fn field_value(
        &self,
        b: &Blocks<'_>,
        f: &Field,
        address: u16,
    ) -> Result<Option<f64>, DecodeError> {
        let one = || b.short(address, 1).map(|w| w[0]);
        let two = || b.short(address, 2).map(|w| join(self.word_order, &w));
        let (bits, raw) = match f.ty {
            DataType::U16 | DataType::Enum16 => {
                let w = one()?;
                (u32::from(w), f64::from(w))
            }
            DataType::I16 => {
                let w = one()?;
                (u32::from(w), f64::from(w as i16))
            }
            DataType::U32 | DataType::Acc32 => {
                let v = two()?;
                (v, f64::from(v))
            }
            DataType::I32 => {
                let v = two()?;
                (v, f64::from(v as i32))
            }
            DataType::Float32 => {
                let v = two()?;
                (v, f64::from(f32::from_bits(v)))
            }
            // Rejected when the map is compiled.
            DataType::String | DataType::Bitfield16 | DataType::Bitfield32 | DataType::Sunssf => {
                return Ok(None)
            }
        };
        if f.sentinel == Some(bits) || (f.nan_is_sentinel && raw.is_nan()) {
            return Ok(None);
        }
        let mut value = raw * f.factor;
        if let Some(sf_loc) = &f.scale_factor {
            let Some(sf_addr) = self.place(sf_loc) else {
                return Ok(None);
            };
            let sf = b.short(sf_addr, 1)?[0] as i16;
            if !(-10..=10).contains(&sf) {
                // 0x8000: the scale factor itself is not implemented.
                return Ok(None);
            }
            value *= 10f64.powi(i32::from(sf));
        }
        Ok(Some(tidy(value)))
    }

    /// The inverse of [`Self::decode_full`]: the registers a device would hold for these values.
    /// Metrics missing from `decoded` are written as their sentinel (or 0 where there is none).
    pub fn encode(&self, decoded: &Decoded) -> RegisterImage {
        let mut img = RegisterImage::new();
        if let Some(chain) = &self.chain {
            sunspec::write_chain(chain, &mut img);
        }
        let r = &decoded.readings;
        for f in &self.fields {
            let Some(address) = self.place(&f.loc) else {
                continue;
            };
            let mut factor = f.factor;
            if let Some(sf_loc) = &f.scale_factor {
                if let Some(a) = self.place(sf_loc) {
                    img.insert(a, f.encode_sf as u16);
                    factor *= 10f64.powi(i32::from(f.encode_sf));
                }
            }
            let words: Vec<u16> = match r.get(f.metric) {
                None => match f.sentinel {
                    Some(s) if f.ty.words() == 2 => split(self.word_order, s).to_vec(),
                    Some(s) => vec![s as u16],
                    None if f.ty == DataType::Float32 && f.nan_is_sentinel => {
                        split(self.word_order, f32::NAN.to_bits()).to_vec()
                    }
                    None => vec![0; usize::from(f.ty.words())],
                },
                Some(v) => {
                    // A counter is never shown ahead of the energy really produced.
                    let raw = if f.metric.is_counter() {
                        (v / factor + 1e-6).floor()
                    } else {
                        (v / factor).round()
                    };
                    match f.ty {
                        DataType::U16 | DataType::Enum16 => vec![raw.clamp(0.0, 65535.0) as u16],
                        DataType::I16 => vec![raw.clamp(-32768.0, 32767.0) as i16 as u16],
                        DataType::U32 | DataType::Acc32 => {
                            split(self.word_order, raw.clamp(0.0, 4_294_967_295.0) as u32).to_vec()
                        }
                        DataType::I32 => split(
                            self.word_order,
                            raw.clamp(-2_147_483_648.0, 2_147_483_647.0) as i32 as u32,
                        )
                        .to_vec(),
                        DataType::Float32 => {
                            split(self.word_order, ((v / factor) as f32).to_bits()).to_vec()
                        }
                        DataType::String
                        | DataType::Bitfield16
                        | DataType::Bitfield32
                        | DataType::Sunssf => vec![],
                    }
                }
            };
            put(&mut img, address, &words);
        }
        self.put_text(&mut img, self.serial.as_ref(), decoded.serial.as_deref());
        self.put_text(&mut img, self.model.as_ref(), decoded.model.as_deref());
        if self.model.is_none() {
            if let (Some(a), Some(m)) = (
                self.model_code.as_ref().and_then(|l| self.place(l)),
                decoded.model.as_deref(),
            ) {
                if let Some(v) = m
                    .strip_prefix("0x")
                    .and_then(|h| u16::from_str_radix(h, 16).ok())
                {
                    img.insert(a, v);
                }
            }
        }
        if let Some((t, a)) = self.state_table() {
            if let Some(state) = r.state {
                let raw = self.state_raw(t, state).unwrap_or_else(|| {
                    // A state the table cannot express: any unlisted value decodes to `otherwise`.
                    (0xFFF0..0xFFFF)
                        .find(|v| !t.values.iter().any(|(r, _, _)| r == v))
                        .unwrap_or(0xFFFE)
                });
                img.insert(a, raw as u16);
            }
        }
        for t in &self.alarms {
            let Some(a) = self.place(&t.loc) else {
                continue;
            };
            let mut raw: u32 = 0;
            for alarm in &r.alarms {
                let Some(rest) = alarm
                    .code
                    .strip_prefix(t.code.as_str())
                    .and_then(|s| s.strip_prefix('.'))
                else {
                    continue;
                };
                match t.kind {
                    AlarmKind::Bits => {
                        if let Some(bit) =
                            rest.strip_prefix('b').and_then(|b| b.parse::<u32>().ok())
                        {
                            if bit < 16 * u32::from(t.words) {
                                raw |= 1 << bit;
                            }
                        }
                    }
                    AlarmKind::Code => {
                        if let Some(v) = rest
                            .strip_prefix("0x")
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                        {
                            raw = v;
                        }
                    }
                }
            }
            if t.words == 2 {
                put(&mut img, a, &split(self.word_order, raw));
            } else {
                img.insert(a, raw as u16);
            }
        }
        img
    }

    fn put_text(&self, img: &mut RegisterImage, t: Option<&TextField>, value: Option<&str>) {
        let (Some(t), Some(value)) = (t, value) else {
            return;
        };
        let Some(a) = self.place(&t.loc) else { return };
        let mut bytes: Vec<u8> = value.bytes().take(usize::from(t.words) * 2).collect();
        bytes.resize(usize::from(t.words) * 2, 0);
        let words: Vec<u16> = bytes
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        put(img, a, &words);
    }

    /// Reads the plan's blocks out of an image (unset registers read 0).
    pub fn blocks_from(&self, img: &RegisterImage) -> Vec<(u16, Vec<u16>)> {
        self.plan()
            .iter()
            .map(|b| {
                let words = (0..b.count)
                    .map(|i| {
                        b.start
                            .checked_add(i)
                            .and_then(|a| img.get(&a).copied())
                            .unwrap_or(0)
                    })
                    .collect();
                (b.start, words)
            })
            .collect()
    }
}

fn put(img: &mut RegisterImage, address: u16, words: &[u16]) {
    for (i, w) in words.iter().enumerate() {
        if let Some(a) = u16::try_from(i).ok().and_then(|i| address.checked_add(i)) {
            img.insert(a, *w);
        }
    }
}
