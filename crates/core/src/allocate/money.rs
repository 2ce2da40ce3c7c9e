//! Exact money arithmetic: revenue lines, instalments and largest-remainder splits.
//!
//! Everything is integer: energy in Wh, prices in 1/10,000 yuan per kWh, money in fen. Intermediate
//! products are `i128`, so no line can overflow before the final conversion is checked.

use super::Error;
use crate::domain::{Fen, Price, WattHours};
use serde::{Deserialize, Serialize};

/// Wh × (1/10,000 yuan per kWh) = 1/100,000 fen, so a line in fen is `Wh × price / 100,000`.
const WH_PRICE_PER_FEN: i128 = 100_000;

/// `n / d` rounded half away from zero (half-up for the positive amounts of a statement); `d > 0`.
pub fn div_half_up(n: i128, d: i128) -> i128 {
    let q = n / d;
    let r = n % d;
    if 2 * r.abs() >= d {
        q + n.signum()
    } else {
        q
    }
}

fn to_fen(v: i128, what: &str) -> Result<Fen, Error> {
    i64::try_from(v)
        .map(Fen)
        .map_err(|_| Error::Overflow(what.to_owned()))
}

/// One revenue line `R(E × price)`: computed exactly, rounded half-up to the fen once (docs/policy.md 2).
pub fn revenue_line(energy: WattHours, price: Price) -> Result<Fen, Error> {
    let exact = i128::from(energy.0) * i128::from(price.0);
    to_fen(div_half_up(exact, WH_PRICE_PER_FEN), "revenue line")
}

/// `amount × num / den`, rounded half-up to the fen (attendance-scaled wages).
pub fn prorate(amount: Fen, num: u32, den: u32) -> Result<Fen, Error> {
    if den == 0 {
        return Err(Error::Input("a proportion with a zero denominator".into()));
    }
    let exact = i128::from(amount.0) * i128::from(num);
    to_fen(div_half_up(exact, i128::from(den)), "prorated amount")
}

/// How an annual amount is cut into twelve instalments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Instalment {
    /// Months 1-11 get X/12 rounded half-up to the fen, month 12 the remainder: 5,000.00 of rent is
    /// 416.67 × 11 + 416.63, as docs/policy.md section 8 shows. Falls back to `Floor` for amounts under
    /// 0.66 yuan, where rounding up would leave month 12 negative.
    #[default]
    HalfUp,
    /// Months 1-11 get floor(X/12), month 12 the remainder (docs/policy.md section 3 as written).
    Floor,
}

/// The instalment of an annual amount in `month` (1..=12). The twelve instalments sum to `annual`
/// exactly and none is negative when `annual` is not.
pub fn instalment(annual: Fen, month: u32, rule: Instalment) -> Result<Fen, Error> {
    if !(1..=12).contains(&month) {
        return Err(Error::Input(format!("month {month} is not 1..=12")));
    }
    let x = i128::from(annual.0);
    let floor = x.div_euclid(12);
    let mut part = match rule {
        Instalment::Floor => floor,
        Instalment::HalfUp => div_half_up(x, 12),
    };
    if x >= 0 && part * 11 > x {
        part = floor;
    }
    let v = if month == 12 { x - part * 11 } else { part };
    to_fen(v, "instalment")
}

/// Splits `total` (≥ 0) by integer weights with the largest-remainder method (docs/policy.md 4): each part
/// gets the floor of its exact share, then the leftover fen go one each to the largest remainders,
/// ties to the smaller key (ascending village code). The parts sum to `total` exactly.
pub fn split_largest_remainder<K: Ord + Clone>(
    total: Fen,
    weights: &[(K, u64)],
) -> Result<Vec<(K, Fen)>, Error> {
    if total.is_negative() {
        return Err(Error::Input(format!(
            "cannot split a negative amount {total}"
        )));
    }
    let sum: u128 = weights.iter().map(|(_, w)| u128::from(*w)).sum();
    if sum == 0 {
        return Err(Error::Input("cannot split by weights that sum to 0".into()));
    }
    let sum = sum as i128;
    let t = i128::from(total.0);
    let mut parts: Vec<(usize, i128, i128)> = weights
        .iter()
        .enumerate()
        .map(|(i, (_, w))| {
            let exact = t * i128::from(*w);
            (i, exact / sum, exact % sum)
        })
        .collect();
    let given: i128 = parts.iter().map(|p| p.1).sum();
    let leftover = usize::try_from(t - given).unwrap_or(0);
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| {
        parts[b]
            .2
            .cmp(&parts[a].2)
            .then_with(|| weights[a].0.cmp(&weights[b].0))
    });
    for &i in order.iter().take(leftover) {
        parts[i].1 += 1;
    }
    parts
        .into_iter()
        .map(|(i, v, _)| Ok((weights[i].0.clone(), to_fen(v, "split part")?)))
        .collect()
}

/// Checked sum of amounts.
pub fn sum(amounts: impl IntoIterator<Item = Fen>) -> Result<Fen, Error> {
    amounts.into_iter().try_fold(Fen::ZERO, |a, b| {
        a.checked_add(b)
            .ok_or_else(|| Error::Overflow("sum of amounts".into()))
    })
}

pub(crate) fn add(a: Fen, b: Fen) -> Result<Fen, Error> {
    a.checked_add(b)
        .ok_or_else(|| Error::Overflow(format!("{a} + {b}")))
}

pub(crate) fn sub(a: Fen, b: Fen) -> Result<Fen, Error> {
    a.checked_sub(b)
        .ok_or_else(|| Error::Overflow(format!("{a} - {b}")))
}
