//! A grid company's settlement statement for a simulated fleet: what the county would receive at
//! the end of each month, as Excel on a Chinese Windows saves it (CSV, GBK, Chinese headers).
//!
//! Settled energy is the metered figure less 1% of line and transformer losses, rounded to whole
//! kWh as statements are; one station's latest month is settled about 8% below its meter, so that
//! reconciliation has something real to flag and explain.

use crate::config::Deployment;
use crate::domain::{Fen, StationId, StationKind, WattHours, YearMonth};
use crate::energy::{self, metered, settlement};
use crate::store::Store;
use chrono::{DateTime, Utc};
use std::path::Path;

/// Settled over metered for every station-month (1% losses between inverter and grid meter).
const LOSS_PERMILLE: i64 = 990;
/// Settled over metered for the odd station-month.
const ODD_PERMILLE: i64 = 920;

/// One line of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    pub station: StationId,
    pub station_name: String,
    pub month: YearMonth,
    pub energy: WattHours,
    pub amount: Option<Fen>,
}

/// `wh × permille / 1000`, rounded half up to whole kWh.
fn settle_wh(metered: WattHours, permille: i64) -> WattHours {
    let scaled = i128::from(metered.0) * i128::from(permille);
    // To whole kWh: divide by 1,000 (permille) and by 1,000 (Wh per kWh), half up.
    let kwh = (scaled + 500_000) / 1_000_000;
    WattHours(i64::try_from(kwh * 1000).unwrap_or(i64::MAX))
}

/// Energy in whole kWh times a price in 1/10,000 yuan per kWh, rounded half up to the fen once.
fn amount_of(energy: WattHours, price: crate::domain::Price) -> Option<Fen> {
    let kwh = energy.0 / 1000;
    let ten_thousandths = kwh.checked_mul(price.0)?;
    Some(Fen(ten_thousandths.checked_add(50)? / 100))
}

/// The station whose latest month is settled ~8% low: `odd` when given, else the last village
/// station by id.
fn odd_station(d: &Deployment, odd: Option<&StationId>) -> Option<StationId> {
    odd.cloned().or_else(|| {
        d.stations
            .iter()
            .filter(|s| s.kind == StationKind::Village)
            .map(|s| s.id.clone())
            .max()
    })
}

/// Statement lines for `months` (oldest first) from the store's metered figures. Station-months
/// without metered energy are left out (the grid company settles what it measured).
pub async fn statement_lines(
    store: &Store,
    d: &Deployment,
    months: &[YearMonth],
    odd: Option<&StationId>,
    now: DateTime<Utc>,
) -> Result<Vec<StatementLine>, energy::Error> {
    let (Some(&first), Some(&last)) = (months.iter().min(), months.iter().max()) else {
        return Ok(Vec::new());
    };
    let odd = odd_station(d, odd);
    let mut out = Vec::new();
    for s in &d.stations {
        let figures = metered::station_months(store, d, s, first, last, now).await?;
        let price = d.tariffs.iter().find(|t| t.id == s.tariff).map(|t| t.price);
        for f in &figures {
            let month = YearMonth::of(f.first_day);
            if !months.contains(&month) || f.energy.0 <= 0 {
                continue;
            }
            let permille = if Some(&s.id) == odd.as_ref() && month == last {
                ODD_PERMILLE
            } else {
                LOSS_PERMILLE
            };
            let energy = settle_wh(f.energy, permille);
            out.push(StatementLine {
                station: s.id.clone(),
                station_name: s.name.clone(),
                month,
                energy,
                amount: price.and_then(|p| amount_of(energy, p)),
            });
        }
    }
    out.sort_by(|a, b| (a.month, &a.station).cmp(&(b.month, &b.station)));
    Ok(out)
}

/// The statement as GBK-encoded CSV with the headers the grid company uses.
pub fn to_gbk_csv(lines: &[StatementLine]) -> Vec<u8> {
    let mut text = String::from("电站编号,电站名称,结算月份,上网电量(kWh),结算金额(元)\r\n");
    for l in lines {
        text.push_str(&format!(
            "{},{},{},{},{}\r\n",
            l.station,
            l.station_name.replace(',', " "),
            l.month,
            l.energy.0 / 1000,
            l.amount.map_or_else(String::new, |a| a.to_string())
        ));
    }
    encoding_rs::GBK.encode(&text).0.into_owned()
}

/// For `sunshare demo`, after the history is backfilled: settles the last `months` complete months
/// before `now` (the current month stays provisional), writes the statement to `write_to` when
/// given (so a user can open it or import it again by hand) and imports it. Station-months already
/// settled are left out, so calling it again on the same store imports nothing and succeeds (`None`).
pub async fn settle_demo_history(
    store: &Store,
    d: &Deployment,
    now: DateTime<Utc>,
    months: u32,
    write_to: Option<&Path>,
) -> Result<Option<settlement::ImportReport>, energy::Error> {
    let tz = d
        .stations
        .first()
        .map_or(chrono_tz::Asia::Shanghai, |s| s.timezone);
    let current = YearMonth::of(now.with_timezone(&tz).date_naive());
    let mut list = Vec::new();
    let mut m = current;
    for _ in 0..months {
        m = m.prev();
        list.push(m);
    }
    list.reverse();
    let mut lines = Vec::new();
    // A demo restarted on the same data directory keeps what it settled before.
    for l in statement_lines(store, d, &list, None, now).await? {
        if store.settlement(&l.station, l.month).await?.is_none() {
            lines.push(l);
        }
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let bytes = to_gbk_csv(&lines);
    let name = match write_to {
        Some(path) => {
            std::fs::write(path, &bytes).map_err(|source| energy::Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        }
        None => "demo-settlement.csv".to_owned(),
    };
    Ok(Some(
        settlement::import(store, d, &bytes, &name, now).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeviceId;
    use crate::energy::testing::{deployment, history, sh};

    #[test]
    fn settled_energy_and_amount_round_once() {
        assert_eq!(settle_wh(WattHours(36_000), 990), WattHours(36_000));
        assert_eq!(settle_wh(WattHours(1_234_567), 920), WattHours(1_136_000));
        // 1,136 kWh x 0.85 yuan = 965.60 yuan.
        assert_eq!(
            amount_of(WattHours(1_136_000), crate::domain::Price(8500)),
            Some(Fen(96_560))
        );
    }

    #[tokio::test]
    async fn a_simulated_statement_imports_and_one_station_is_flagged() -> anyhow::Result<()> {
        let t = crate::store::testing::sqlite().await?;
        let d = deployment();
        let tz = |_: &DeviceId| chrono_tz::Asia::Shanghai;
        // Three stations with the same March: a metered 36 kWh each.
        for dev in ["S1-INV1", "S2-INV1", "S3-INV1"] {
            t.store.write_samples(&history(dev, |_| false), &tz).await?;
        }
        let now = sh(4, 15, 12, 0);
        let march: YearMonth = "2026-03".parse()?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("statement.csv");
        let report = settle_demo_history(&t.store, &d, now, 2, Some(&path))
            .await?
            .expect("something to settle");
        assert_eq!(report.encoding, "gbk");
        assert_eq!(
            report.lines.len(),
            3,
            "February had no energy and is not settled"
        );
        assert!(
            report.warnings.is_empty(),
            "the demo's amounts are energy × tariff: {:?}",
            report.warnings
        );
        let bytes = std::fs::read(&path)?;
        assert!(std::str::from_utf8(&bytes).is_err(), "the file is GBK");
        let mut flagged = Vec::new();
        for s in &d.stations {
            let rows = energy::report::months(&t.store, &d, s, march, march, now).await?;
            let r = rows[0].reconciliation.clone().expect("settled");
            if r.flagged {
                flagged.push((s.id.to_string(), r.difference_pct.map(|p| p.round())));
                assert!(r.causes[0].explain().contains("grid meter"));
            }
        }
        // S3 (the last village station) is settled at 33 kWh against 36 metered: +9.1%.
        assert_eq!(flagged, vec![("S3".to_owned(), Some(9.0))]);
        // A restarted demo settles nothing twice.
        let again = settle_demo_history(&t.store, &d, now, 2, None).await?;
        assert!(again.is_none(), "{again:?}");
        Ok(())
    }
}
