//! Axis ticks on 1-2-5 steps and their labels.
//!
//! A step is 1, 2 or 5 times a power of ten, chosen so that about `target` intervals cover the
//! range; the first tick is at or below the smallest value and the last at or above the largest,
//! each a whole number of steps from zero (so zero is a tick whenever the range spans it). Values
//! are computed from the step's integer mantissa and decimal exponent, so `0.3` is 0.3 and not
//! `0.30000000000000004`.

use crate::http::i18n::Lang;

/// The ticks of one axis, ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticks {
    /// 1, 2 or 5.
    mantissa: i64,
    /// The step is `mantissa × 10^exponent`.
    exponent: i32,
    /// Multiples of the step, the first and the last tick.
    first: i64,
    last: i64,
}

impl Ticks {
    /// The distance between two ticks.
    pub fn step(&self) -> f64 {
        self.scaled(1)
    }

    /// The tick values, lowest first.
    pub fn values(&self) -> Vec<f64> {
        (self.first..=self.last).map(|k| self.scaled(k)).collect()
    }

    /// The lowest tick.
    pub fn lo(&self) -> f64 {
        self.scaled(self.first)
    }

    /// The highest tick.
    pub fn hi(&self) -> f64 {
        self.scaled(self.last)
    }

    /// `k` steps as a number: exact decimal division when the step is below one.
    fn scaled(&self, k: i64) -> f64 {
        let units = (k * self.mantissa) as f64;
        if self.exponent >= 0 {
            units * 10f64.powi(self.exponent)
        } else {
            units / 10f64.powi(-self.exponent)
        }
    }
}

/// Ticks covering `[min, max]` in about `target` intervals (at least one). A range of one value
/// is widened to reach zero (or to `[0, 1]` when the value is zero); non-finite bounds count as
/// zero.
pub fn nice_ticks(min: f64, max: f64, target: usize) -> Ticks {
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let (mut lo, mut hi) = (finite(min.min(max)), finite(min.max(max)));
    if hi - lo <= 0.0 {
        if hi > 0.0 {
            lo = 0.0;
        } else if lo < 0.0 {
            hi = 0.0;
        } else {
            hi = 1.0;
        }
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mut exponent = raw.log10().floor() as i32;
    let fraction = raw / 10f64.powi(exponent);
    let mantissa = match fraction {
        f if f <= 1.0 + 1e-9 => 1,
        f if f <= 2.0 + 1e-9 => 2,
        f if f <= 5.0 + 1e-9 => 5,
        _ => {
            exponent += 1;
            1
        }
    };
    let step = mantissa as f64 * 10f64.powi(exponent);
    // A hair of slack so that 0.3 / 0.1 = 2.9999999999999996 still ends on the third step.
    let first = (lo / step + 1e-9).floor() as i64;
    let last = (hi / step - 1e-9).ceil() as i64;
    Ticks {
        mantissa,
        exponent,
        first,
        last: last.max(first + 1),
    }
}

/// The label of `value`, one of `ticks`, in `lang`.
///
/// Below 10,000 (by the largest tick's size) a plain number with as many decimals as the step
/// needs, trailing zeros dropped. From 10,000 up, Chinese counts in 万 (10^4) and 亿 (10^8), English in k (10^3),
/// M (10^6) and B (10^9): 12,000 is "1.2万" and "12k".
pub fn label(lang: Lang, value: f64, ticks: &Ticks) -> String {
    let largest = ticks.lo().abs().max(ticks.hi().abs());
    let (unit_exp, suffix) = if largest < 10_000.0 {
        (0, "")
    } else {
        match lang {
            Lang::Zh if largest >= 1e8 => (8, "亿"),
            Lang::Zh => (4, "万"),
            Lang::En if largest >= 1e9 => (9, "B"),
            Lang::En if largest >= 1e6 => (6, "M"),
            Lang::En => (3, "k"),
        }
    };
    let decimals = usize::try_from(unit_exp - ticks.exponent).unwrap_or(0);
    let shown = value / 10f64.powi(unit_exp);
    let mut text = format!("{shown:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    if text == "0" || text == "-0" {
        "0".to_owned()
    } else {
        format!("{text}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_one_two_five(step: f64) -> bool {
        let mag = 10f64.powi(step.log10().floor() as i32);
        let m = step / mag;
        [1.0, 2.0, 5.0].iter().any(|n| (m - n).abs() < 1e-9)
    }

    #[test]
    fn steps_are_one_two_five_and_the_ticks_cover_the_range() {
        let ranges = [
            (0.0, 1.0),
            (0.0, 7.3),
            (0.0, 93.0),
            (0.0, 100.0),
            (0.0, 101.0),
            (0.0, 0.0031),
            (0.0, 48.7),
            (-1234.0, 56_789.0),
            (-5.0, -0.2),
            (0.0, 9.9e11),
            (3.0, 3.2),
            (0.0, 1.0e15),
        ];
        for (min, max) in ranges {
            let t = nice_ticks(min, max, 5);
            let v = t.values();
            assert!(is_one_two_five(t.step()), "{min}..{max}: step {}", t.step());
            assert!(t.lo() <= min && t.hi() >= max, "{min}..{max}: {v:?}");
            // Tight: one step less at either end would not cover the range.
            assert!(t.lo() + t.step() > min, "{min}..{max}: {v:?}");
            assert!(t.hi() - t.step() < max, "{min}..{max}: {v:?}");
            let intervals = v.len() - 1;
            assert!((2..=6).contains(&intervals), "{min}..{max}: {v:?}");
            for w in v.windows(2) {
                let gap = w[1] - w[0];
                assert!(
                    (gap - t.step()).abs() <= t.step() * 1e-9,
                    "{min}..{max}: {v:?}"
                );
            }
            if min <= 0.0 && max >= 0.0 {
                assert!(v.contains(&0.0), "{min}..{max}: zero is a tick: {v:?}");
            }
        }
    }

    #[test]
    fn known_ranges_give_the_expected_ticks() {
        assert_eq!(
            nice_ticks(0.0, 100.0, 5).values(),
            [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(nice_ticks(0.0, 93.0, 5).values().last(), Some(&100.0));
        assert_eq!(
            nice_ticks(0.0, 0.3, 3).values(),
            [0.0, 0.1, 0.2, 0.3],
            "decimal steps are exact"
        );
        assert_eq!(nice_ticks(-30.0, 50.0, 4).step(), 20.0);
        assert_eq!(nice_ticks(-30.0, 50.0, 4).lo(), -40.0);
    }

    #[test]
    fn degenerate_ranges_still_make_an_axis() {
        assert_eq!(
            nice_ticks(0.0, 0.0, 5).values(),
            [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        );
        let one = nice_ticks(40.0, 40.0, 4);
        assert_eq!((one.lo(), one.hi()), (0.0, 40.0));
        let negative = nice_ticks(-7.0, -7.0, 4);
        assert_eq!((negative.lo(), negative.hi()), (-8.0, 0.0));
        let nan = nice_ticks(f64::NAN, f64::INFINITY, 5);
        assert_eq!((nan.lo(), nan.hi()), (0.0, 1.0));
        assert!(nice_ticks(0.0, 10.0, 0).values().len() >= 2);
    }

    #[test]
    fn labels_follow_each_languages_large_number_words() {
        let t = nice_ticks(0.0, 12_000.0, 6);
        assert_eq!(t.step(), 2000.0);
        assert_eq!(label(Lang::Zh, 12_000.0, &t), "1.2万");
        assert_eq!(label(Lang::En, 12_000.0, &t), "12k");
        assert_eq!(label(Lang::Zh, 0.0, &t), "0");
        assert_eq!(label(Lang::Zh, 10_000.0, &t), "1万", "no trailing zeros");

        let t = nice_ticks(0.0, 3.0e8, 3);
        assert_eq!(label(Lang::Zh, 3.0e8, &t), "3亿");
        assert_eq!(label(Lang::En, 3.0e8, &t), "300M");
        let t = nice_ticks(0.0, 4.0e9, 4);
        assert_eq!(label(Lang::En, 4.0e9, &t), "4B");

        let t = nice_ticks(-5000.0, 3000.0, 4);
        assert_eq!(label(Lang::Zh, -4000.0, &t), "-4000");
        let t = nice_ticks(0.0, 0.5, 5);
        assert_eq!(label(Lang::En, 0.3, &t), "0.3");
        assert_eq!(label(Lang::En, 0.0, &t), "0");
        let t = nice_ticks(-2.0e4, 2.0e4, 4);
        assert_eq!(label(Lang::Zh, -2.0e4, &t), "-2万");
    }
}
